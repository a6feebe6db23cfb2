//! The backup center (#19; seed 003/004 FIG. 2, item 23): the center's
//! database on a PostgreSQL primary with a synchronous hot standby
//! (`scripts/with-postgres-pair`). Members keep paying stores through a
//! center while the primary is killed with SIGKILL; the standby is
//! promoted and the address the center uses is moved to it (as a virtual
//! IP or a DNS name would be); the center reconnects by itself and the
//! payments go on. Afterwards every payment the center acknowledged is on
//! the promoted standby and the books balance.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::time::{Duration, Instant};

use kessai_core::Currency;
use kessai_core::ids::{PrepaidId, SettlementId};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::clearing::{Shop, instruction_token, shop};
use crate::prepaid::{Member, funded};
use crate::service::Setup;

/// The pair `scripts/with-postgres-pair` started, if any (under CI=true a
/// missing pair fails the test).
struct Pair {
    primary: String,
    standby: String,
    dir: std::path::PathBuf,
    as_postgres: bool,
    bin: std::path::PathBuf,
}

fn pair() -> Option<Pair> {
    let var = |name: &str| std::env::var(name).ok();
    match (var("KESSAI_TEST_PAIR_PRIMARY_URL"), var("KESSAI_TEST_PAIR_STANDBY_URL"), var("KESSAI_TEST_PAIR_DIR")) {
        (Some(primary), Some(standby), Some(dir)) => Some(Pair {
            primary,
            standby,
            dir: dir.into(),
            as_postgres: var("KESSAI_TEST_PAIR_AS_POSTGRES").as_deref() == Some("1"),
            bin: var("KESSAI_TEST_PG_BIN").unwrap_or_default().into(),
        }),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true: the failover test needs scripts/with-postgres-pair (KESSAI_TEST_PAIR_*)"
            );
            None
        }
    }
}

fn port_of(url: &str) -> u16 {
    let after = url.rsplit_once(':').unwrap().1;
    after.split('/').next().unwrap().parse().unwrap()
}

/// What the center's database URL names: a TCP forwarder on loopback
/// standing for the virtual address, moved to the new primary on
/// failover (its open connections cut, as a moved address cuts them).
struct Address {
    port: u16,
    target: Arc<AtomicU16>,
    connections: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
    _accepting: JoinHandle<()>,
}

impl Address {
    async fn to(target: u16) -> Address {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let target = Arc::new(AtomicU16::new(target));
        let connections = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (t, c) = (target.clone(), connections.clone());
        let accepting = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let to = t.load(Ordering::SeqCst);
                let forwarding = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", to)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                c.lock().unwrap().push(forwarding);
            }
        });
        Address { port, target, connections, _accepting: accepting }
    }

    fn move_to(&self, target: u16) {
        self.target.store(target, Ordering::SeqCst);
        for c in self.connections.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

fn pg(p: &Pair, program: &str) -> std::process::Command {
    if p.as_postgres {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(p.bin.join(program));
        c
    } else {
        std::process::Command::new(p.bin.join(program))
    }
}

/// SIGKILL to the primary's postmaster: no shutdown, no checkpoint.
fn kill_primary(p: &Pair) {
    let pid = std::fs::read_to_string(p.dir.join("primary/postmaster.pid")).unwrap();
    let pid = pid.lines().next().unwrap().trim().to_owned();
    let out = std::process::Command::new("kill").args(["-9", &pid]).output().unwrap();
    assert!(out.status.success(), "kill -9 {pid}: {}", String::from_utf8_lossy(&out.stderr));
}

fn promote_standby(p: &Pair) {
    let out =
        pg(p, "pg_ctl").arg("-D").arg(p.dir.join("standby")).args(["-w", "-t", "60", "promote"]).output().unwrap();
    assert!(out.status.success(), "promote: {}", String::from_utf8_lossy(&out.stderr));
}

/// One member paying the store back to back until `stop`: the payments the
/// center acknowledged, and how many failed.
async fn payer(
    s: &Setup,
    m: &Member,
    card: &PrepaidId,
    to: &Shop,
    seed: u64,
    stop: &AtomicBool,
) -> (Vec<SettlementId>, u64) {
    let mut rng = kessai_core::random::SeededRandom::new(seed);
    let (mut acknowledged, mut failed) = (Vec::new(), 0);
    while !stop.load(Ordering::SeqCst) {
        let (bill, token) = instruction_token(&s.center, m, card, to, 100, &mut rng);
        match s.center.pay_from_prepaid(&bill, &token, None).await {
            Ok(paid) => acknowledged.push(SettlementId::parse(&paid.settlement_id).unwrap()),
            Err(_) => {
                failed += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    (acknowledged, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backup_center_takes_over_and_every_acknowledged_payment_is_kept() {
    let Some(p) = pair() else { return };
    let address = Address::to(port_of(&p.primary)).await;
    let url = p.primary.replacen(&format!(":{}/", port_of(&p.primary)), &format!(":{}/", address.port), 1);
    let mut s = crate::service::setup_on(tempfile::tempdir().unwrap(), &url).await;
    let store = shop(&s.center, "store-a", None, &mut s.rng).await;
    let mut members = Vec::new();
    for _ in 0..3 {
        members.push(funded(&mut s, 90_000).await);
    }

    let stop = AtomicBool::new(false);
    let failing_over = async {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        // What the cluster manager does: promote the standby, move the
        // address to it (off this task: the payers go on meanwhile).
        let (dir, as_postgres, bin) = (p.dir.clone(), p.as_postgres, p.bin.clone());
        tokio::task::spawn_blocking(move || {
            let p = Pair { primary: String::new(), standby: String::new(), dir, as_postgres, bin };
            kill_primary(&p);
            promote_standby(&p);
        })
        .await
        .unwrap();
        // The new primary has no standby of its own yet: it stops waiting
        // for one (the operator's call until a new standby is attached).
        let (new_primary, psql) = (p.standby.clone(), p.bin.join("psql"));
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new(psql)
                .arg(&new_primary)
                .args(["-qAt", "-c", "ALTER SYSTEM RESET synchronous_standby_names", "-c", "SELECT pg_reload_conf()"])
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        })
        .await
        .unwrap();
        address.move_to(port_of(&p.standby));
        let moved = Instant::now();
        tokio::time::sleep(Duration::from_millis(3_000)).await;
        stop.store(true, Ordering::SeqCst);
        moved
    };
    let (results, moved) = tokio::join!(
        crate::prepaid::futures_join(members.iter().enumerate().map(|(n, (m, card))| payer(
            &s,
            m,
            card,
            &store,
            100 + n as u64,
            &stop
        ))),
        failing_over
    );
    let acknowledged: Vec<SettlementId> = results.iter().flat_map(|(a, _)| a.clone()).collect();
    let failed: u64 = results.iter().map(|(_, f)| f).sum();
    assert!(acknowledged.len() > 20, "payments went through: {}", acknowledged.len());
    eprintln!("failover: {} payments acknowledged, {failed} failed while the primary was down", acknowledged.len());

    // The center goes on by itself on the new primary.
    let (m, card) = &members[0];
    let mut rng = kessai_core::random::SeededRandom::new(7);
    let (bill, token) = instruction_token(&s.center, m, card, &store, 100, &mut rng);
    s.center.pay_from_prepaid(&bill, &token, None).await.expect("a payment after the failover");
    assert!(moved.elapsed() < Duration::from_secs(60));

    // On the promoted standby, read directly: every acknowledged payment,
    // and books that balance.
    let standby = kessai_center::db::CenterDb::open(&p.standby).await.unwrap();
    for id in &acknowledged {
        assert!(standby.prepaid_payment(id).await.unwrap().is_some(), "acknowledged payment {id} was lost");
    }
    let books = kessai_center::books::Books::new(standby.clone());
    books.ledger().check().await.unwrap();
    let mut held = i128::from(books.store_payable(&store.id, Currency::JPY).await.unwrap());
    for (_, card) in &members {
        held += i128::from(books.prepaid_balance(card).await.unwrap().unwrap_or(0));
    }
    assert_eq!(held, 3 * 90_000, "every yen is on a card or owed to the store");
    assert!(
        i128::from(books.store_payable(&store.id, Currency::JPY).await.unwrap()) >= 100 * acknowledged.len() as i128
    );
    standby.close().await;
}
