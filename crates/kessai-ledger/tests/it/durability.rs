//! Durability: a child process (this test binary, re-run in "writer" mode) writes
//! batches in a loop and prints each batch's number only after its commit returned;
//! the test SIGKILLs it mid-stream, reopens the database, and proves every
//! acknowledged batch is stored whole, the batch in flight is stored whole or not at
//! all, and the invariants hold.

use std::process::Stdio;
use std::time::{Duration, Instant};

use kessai_ledger::{Ledger, NewAccount, NewTransfer};
use tokio::io::{AsyncBufReadExt as _, BufReader};

use crate::support::{Db, Location, TransferBuilder as _, account, transfer};

/// Names the database the writer child writes to: `sqlite:<path>` or
/// `postgres:<schema>` (the URL comes from `KESSAI_TEST_DATABASE_URL`).
const WRITER_ENV: &str = "KESSAI_LEDGER_DURABILITY_WRITER";
const EVENTS_PER_BATCH: usize = 100;
const CHAIN_LENGTH: usize = 3;
/// Rounds of the test: acknowledged batches to wait for, then a pause before the
/// kill, so the kill lands at different points of a batch.
const KILL_ROUNDS: [(u64, Duration); 3] =
    [(7, Duration::ZERO), (25, Duration::from_micros(700)), (61, Duration::from_millis(3))];
/// The writer stops by itself after this long, should nobody kill it.
const WRITER_RUN_MAX: Duration = Duration::from_secs(60);
const NOW: u64 = 1_700_000_000;

fn batch_ids(batch: u64) -> Vec<u128> {
    (0..EVENTS_PER_BATCH as u128).map(|n| (u128::from(batch + 1) << 16) | n).collect()
}

/// A linked chain of three transfers, then single transfers, among accounts 1..=3.
fn batch(batch: u64) -> Vec<NewTransfer> {
    batch_ids(batch)
        .into_iter()
        .enumerate()
        .map(|(n, id)| {
            let debit = 1 + (n as u128 % 3);
            let credit = 1 + ((n as u128 + 1) % 3);
            let event = transfer(id, debit, credit, 1 + n as u64).user_data(u128::from(batch));
            if n + 1 < CHAIN_LENGTH { event.linked() } else { event }
        })
        .collect()
}

/// The writer child. Started only by the tests below, with `WRITER_ENV` set.
#[tokio::test]
#[ignore = "the writer child of the durability tests, which start it themselves"]
async fn writer_child() {
    let Ok(spec) = std::env::var(WRITER_ENV) else {
        eprintln!("writer_child does nothing unless started by a durability test");
        return;
    };
    let ledger = match spec.split_once(':') {
        Some(("sqlite", path)) => Ledger::open_sqlite(path).await.unwrap(),
        Some(("postgres", schema)) => {
            let url = std::env::var("KESSAI_TEST_DATABASE_URL").unwrap();
            Ledger::connect_postgres(&url, Some(schema)).await.unwrap()
        }
        _ => panic!("bad {WRITER_ENV}: {spec}"),
    };
    let started = Instant::now();
    let mut number = 0;
    while started.elapsed() < WRITER_RUN_MAX {
        let results = ledger.create_transfers(&batch(number), NOW).await.unwrap();
        assert_eq!(results, vec![]);
        // Printed only after the commit returned: an acknowledgement.
        println!("ACK {number}");
        number += 1;
    }
}

async fn acknowledged_batches_survive_sigkill(db: Db) {
    for (acks_before_kill, pause) in KILL_ROUNDS {
        let Some(test) = db.open().await else { return };
        let accounts: Vec<NewAccount> = (1..=3).map(account).collect();
        assert_eq!(test.ledger.create_accounts(&accounts, NOW).await.unwrap(), vec![]);
        test.ledger.close().await;
        let last = write_until_killed(&test.location, acks_before_kill, pause).await;
        verify_after_kill(&test.location, last).await;
    }
}

/// Runs the writer child, SIGKILLs it after `acks_before_kill` acknowledgements and
/// `pause`, and returns the number of the last batch it acknowledged.
async fn write_until_killed(location: &Location, acks_before_kill: u64, pause: Duration) -> u64 {
    let spec = match location {
        Location::SqliteFile(path) => format!("sqlite:{}", path.display()),
        Location::PostgresSchema { schema, .. } => format!("postgres:{schema}"),
    };
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "durability::writer_child", "--ignored", "--nocapture", "--test-threads", "1"])
        .env(WRITER_ENV, spec)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acknowledged = Vec::new();
    while let Some(line) = tokio::time::timeout(WRITER_RUN_MAX, lines.next_line()).await.unwrap().unwrap() {
        // libtest may print "test durability::writer_child ... " before the first ACK.
        if let Some((_, number)) = line.split_once("ACK ") {
            acknowledged.push(number.parse::<u64>().unwrap());
            if acknowledged.len() as u64 == acks_before_kill {
                std::thread::sleep(pause);
                child.start_kill().unwrap(); // SIGKILL
            }
        }
    }
    let status = child.wait().await.unwrap();
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(status.signal(), Some(9), "the writer was not ended by SIGKILL: {status}");
    let last = *acknowledged.last().unwrap();
    assert_eq!(acknowledged, (0..=last).collect::<Vec<_>>(), "acknowledgements in order");
    last
}

async fn verify_after_kill(location: &Location, last_acknowledged: u64) {
    let ledger = location.open().await;
    if let Err(violation) = ledger.check().await {
        panic!("invariant broken after SIGKILL: {violation}");
    }
    for number in 0..=last_acknowledged {
        let found = ledger.lookup_transfers(&batch_ids(number)).await.unwrap();
        assert_eq!(found.len(), EVENTS_PER_BATCH, "acknowledged batch {number} lost transfers");
        assert!(found.iter().all(|t| t.user_data_128 == u128::from(number)));
    }
    // The batch in flight at the kill (and any after it) is all there or not at all.
    let mut stored_after = 0;
    for number in last_acknowledged + 1..last_acknowledged + 4 {
        let found = ledger.lookup_transfers(&batch_ids(number)).await.unwrap().len();
        assert!(found == 0 || found == EVENTS_PER_BATCH, "batch {number} half applied: {found} transfers");
        stored_after += found;
    }
    assert!(stored_after <= EVENTS_PER_BATCH, "more than one unacknowledged batch was committed");
    ledger.close().await;
}

#[tokio::test]
async fn acknowledged_batches_survive_sigkill_on_sqlite() {
    acknowledged_batches_survive_sigkill(Db::Sqlite).await;
}

#[tokio::test]
async fn acknowledged_batches_survive_sigkill_on_postgres() {
    acknowledged_batches_survive_sigkill(Db::Postgres).await;
}
