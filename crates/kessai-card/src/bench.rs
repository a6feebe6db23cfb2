//! Full secure DEBIT sessions per second: INITIALIZE UPDATE → EXTERNAL
//! AUTHENTICATE → READ BALANCE → DEBIT, in process and over the vpcd socket
//! on loopback, with and without fsync, plus CPU time per session.
//!
//! CPU time is the whole process's user + system time from
//! `/proc/self/stat` (Linux, 100 ticks per second), so the vpcd runs count
//! both the host and the card thread.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kessai_scp03::{Aes128Key, KeyVersion, StaticKeys, StatusWord};

use crate::app::Card;
use crate::image::{ImageError, KeySource, Personalization, create_image_file, personalize};
use crate::protocol::{CardId, Currency, TransferRequest, TxId, credit_command, debit_command, read_balance_command};
use crate::storage::{Durability, FileStorage, MemoryStorage, Storage};
use crate::terminal::{Terminal, TerminalError};
use crate::transport::vpcd::{VpcdListener, serve_vpcd};
use crate::transport::{InProcessReader, Reader, TransportError};

/// Linux's USER_HZ: clock ticks per second in `/proc/self/stat`.
const TICKS_PER_S: f64 = 100.0;
/// Fsync runs do this fraction of the sessions (they are slow).
const FSYNC_DIVISOR: usize = 10;
/// Minimum sessions of any run.
const MIN_SESSIONS: usize = 10;
/// Value put on the bench card before the runs, minor units.
const BENCH_FUNDS_MINOR: u64 = 1 << 60;

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Sessions per run without fsync (fsync runs do a tenth, at least 10).
    pub sessions: usize,
    /// Directory for the image files (a temporary directory is best).
    pub dir: PathBuf,
}

/// One run's figures.
#[derive(Clone, Debug)]
pub struct BenchResult {
    /// Transport and storage.
    pub name: String,
    /// Sessions completed.
    pub sessions: usize,
    /// Wall-clock time.
    pub wall: Duration,
    /// Process CPU time, if `/proc` is there.
    pub cpu: Option<Duration>,
}

impl BenchResult {
    /// Sessions per second (wall clock).
    pub fn sessions_per_s(&self) -> f64 {
        self.sessions as f64 / self.wall.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// CPU microseconds per session.
    pub fn cpu_us_per_session(&self) -> Option<f64> {
        self.cpu.map(|c| c.as_secs_f64() * 1e6 / self.sessions.max(1) as f64)
    }
}

/// All runs.
#[derive(Clone, Debug)]
pub struct BenchReport {
    /// One entry per run.
    pub results: Vec<BenchResult>,
}

/// Why the benchmark stopped.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Making or opening an image failed.
    #[error("image: {0}")]
    Image(#[from] ImageError),
    /// A session step failed.
    #[error("session: {0}")]
    Terminal(#[from] TerminalError),
    /// The transport failed.
    #[error("transport: {0}")]
    Transport(#[from] TransportError),
    /// A command was refused.
    #[error("card answered {0}")]
    Refused(StatusWord),
    /// Printing failed.
    #[error("output: {0}")]
    Output(#[from] std::io::Error),
    /// The card thread panicked.
    #[error("card thread panicked")]
    CardThread,
}

fn bench_keys() -> Result<StaticKeys, BenchError> {
    Ok(StaticKeys {
        version: KeyVersion::new(1).ok_or(ImageError::Personalization("key version"))?,
        enc: Aes128Key::new([0x11; 16]),
        mac: Aes128Key::new([0x22; 16]),
        dek: Aes128Key::new([0x33; 16]),
    })
}

fn personalization() -> Result<Personalization, BenchError> {
    Ok(Personalization {
        card_id: CardId(*b"BENCH-01"),
        keys: KeySource::Explicit(bench_keys()?),
        currency: Currency::new("JPY").map_err(|_| ImageError::Personalization("currency"))?,
        max_balance_minor: u64::MAX,
    })
}

fn request(n: u64) -> TransferRequest {
    let mut tx_id = [0u8; 16];
    tx_id[8..].copy_from_slice(&n.to_be_bytes());
    TransferRequest {
        tx_id: TxId(tx_id),
        amount_minor: 1,
        counterpart: *b"BENCHSTR",
        order_ref: [0; 16],
        time_unix_s: 1_790_000_000,
    }
}

/// A benchmark host challenge: distinct per session, not random (a real
/// host uses its RNG).
fn challenge(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

fn expect_ok(sw: StatusWord) -> Result<(), BenchError> {
    if sw == StatusWord::Success { Ok(()) } else { Err(BenchError::Refused(sw)) }
}

/// One full secure DEBIT session.
fn one_session<R: Reader>(t: &mut Terminal<R>, keys: &StaticKeys, n: u64) -> Result<(), BenchError> {
    let s = t.open_session(keys.clone(), challenge(n))?;
    let (s, r) = t.secure(s, &read_balance_command())?;
    expect_ok(r.sw())?;
    // As the center does: what it read of the log so far is collected.
    let counter = crate::protocol::BalanceReport::parse(r.data()).map_err(|_| BenchError::Refused(r.sw()))?.counter;
    let (s, r) = t.secure(s, &crate::protocol::log_collected_command(counter))?;
    expect_ok(r.sw())?;
    let (_, r) = t.secure(s, &debit_command(&request(n)))?;
    expect_ok(r.sw())
}

/// Selects and funds the card, then times `sessions` sessions.
fn timed<R: Reader>(name: &str, t: &mut Terminal<R>, sessions: usize) -> Result<BenchResult, BenchError> {
    let keys = bench_keys()?;
    t.select()?;
    let s = t.open_session(keys.clone(), challenge(u64::MAX))?;
    let mut funding = request(u64::MAX);
    funding.amount_minor = BENCH_FUNDS_MINOR;
    let (_, r) = t.secure(s, &credit_command(&funding))?;
    expect_ok(r.sw())?;
    let cpu_start = process_cpu();
    let start = Instant::now();
    for n in 0..sessions as u64 {
        one_session(t, &keys, n)?;
    }
    let wall = start.elapsed();
    let cpu = cpu_start.zip(process_cpu()).map(|(a, b)| b.saturating_sub(a));
    Ok(BenchResult { name: name.to_string(), sessions, wall, cpu })
}

fn in_process<S: Storage>(name: &str, card: Card<S>, sessions: usize) -> Result<BenchResult, BenchError> {
    timed(name, &mut Terminal::new(InProcessReader::new(card)), sessions)
}

fn over_vpcd<S: Storage + Send + 'static>(
    name: &str,
    card: Card<S>,
    sessions: usize,
) -> Result<BenchResult, BenchError> {
    let listener = VpcdListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let addr = listener.local_addr()?;
    let card_thread = std::thread::spawn(move || serve_vpcd(card, addr).map(drop));
    let mut t = Terminal::new(listener.accept()?);
    let result = timed(name, &mut t, sessions);
    drop(t);
    card_thread.join().map_err(|_| BenchError::CardThread)??;
    result
}

fn file_card(dir: &Path, name: &str, durability: Durability) -> Result<Card<FileStorage>, BenchError> {
    let path = dir.join(name);
    if path.exists() {
        std::fs::remove_file(&path)?;
    }
    create_image_file(&path, &personalization()?)?;
    Ok(Card::open(FileStorage::open(&path, durability)?)?)
}

/// Runs every configuration, prints a table to `out`, returns the figures.
pub fn run(options: &BenchOptions, out: &mut dyn Write) -> Result<BenchReport, BenchError> {
    let n = options.sessions.max(MIN_SESSIONS);
    let n_sync = (n / FSYNC_DIVISOR).max(MIN_SESSIONS);
    let dir = options.dir.as_path();
    let memory = || -> Result<Card<MemoryStorage>, BenchError> {
        Ok(Card::open(MemoryStorage::new(personalize(&personalization()?)?.to_vec()))?)
    };
    let results = vec![
        in_process("in-process, memory", memory()?, n)?,
        in_process("in-process, file, no fsync", file_card(dir, "b1.img", Durability::NoFsync)?, n)?,
        in_process("in-process, file, fsync", file_card(dir, "b2.img", Durability::Fsync)?, n_sync)?,
        over_vpcd("vpcd loopback, file, no fsync", file_card(dir, "b3.img", Durability::NoFsync)?, n)?,
        over_vpcd("vpcd loopback, file, fsync", file_card(dir, "b4.img", Durability::Fsync)?, n_sync)?,
    ];
    writeln!(
        out,
        "{:<32} {:>9} {:>12} {:>14}",
        "full secure DEBIT session", "sessions", "sessions/s", "CPU µs/session"
    )?;
    for r in &results {
        let cpu = r.cpu_us_per_session().map_or("n/a".to_string(), |c| format!("{c:.0}"));
        writeln!(out, "{:<32} {:>9} {:>12.0} {:>14}", r.name, r.sessions, r.sessions_per_s(), cpu)?;
    }
    Ok(BenchReport { results })
}

/// User + system CPU time of this process so far.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the ")" that ends the command name: state is field 3,
    // utime field 14 and stime field 15 (1-based, `man 5 proc`).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64((utime + stime) as f64 / TICKS_PER_S))
}
