//! Tests against independent tools. Each is gated: when its tool is
//! missing it fails under `CI=true` and otherwise says why and returns.
//!
//! - yubikit: env `KESSAI_PYTHON` = a Python with `yubikey-manager`,
//!   `cryptography` and `cffi` installed (see `tests/yubikit_host.py`).
//! - PC/SC: `pcscd`, `vsmartcard-vpcd` and `opensc` (Debian packages), and
//!   this crate built with `--features pcsc`. The test starts its own
//!   `pcscd -f` and kills it at the end; no other pcscd may be running.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;

use kessai_card::protocol::{TransferKind, TxStatus};
use kessai_card::transport::vpcd::serve_vpcd;

use crate::{credit, keys, request, session, terminal};

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Fails under CI, otherwise explains the skip.
fn missing(reason: &str) {
    assert!(!in_ci(), "{reason} (CI=true: this external-tool test must run)");
    eprintln!("skipping: {reason}");
}

fn on_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(tool)).find(|p| p.is_file())
}

/// A card with 1000 on it, ready to be served.
fn funded_card() -> kessai_card::Card<kessai_card::MemoryStorage> {
    let mut t = terminal();
    let s = session(&mut t);
    credit(&mut t, s, 1, 1_000);
    let mut card = t.into_reader().into_card();
    card.reset();
    card
}

/// Kills and reaps a child process when dropped, even on panic.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn yubikit_is_an_independent_scp03_host() {
    let Some(python) = std::env::var_os("KESSAI_PYTHON") else {
        return missing("KESSAI_PYTHON is not set");
    };
    let import = Command::new(&python).args(["-c", "import yubikit.core.smartcard.scp"]).output();
    if !import.is_ok_and(|o| o.status.success()) {
        return missing("KESSAI_PYTHON cannot import yubikit");
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/yubikit_host.py");
    let k = keys();
    let tx_id = [0x42u8; 16];
    let child = Command::new(&python)
        .arg(&script)
        .args(["01", &hex::encode(k.enc.expose()), &hex::encode(k.mac.expose())])
        .args([&hex::encode(k.dek.expose()), &hex::encode(tx_id), "250"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Reaped(child);
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let port: u16 = first.strip_prefix("PORT ").unwrap().parse().unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let card = thread::spawn(move || serve_vpcd(funded_card(), addr));
    let result = lines.next().expect("yubikit printed no result").unwrap();
    assert!(child.0.wait().unwrap().success());
    let json: serde_json::Value = serde_json::from_str(&result).unwrap();
    assert_eq!(json["atr"], hex::encode(kessai_card::protocol::ATR));
    assert_eq!(json["balance_before"], 1_000);
    assert_eq!(json["balance_after"], 750);
    let raw = hex::decode(json["debit_result"].as_str().unwrap()).unwrap();
    let TxStatus::Applied(r) = TxStatus::parse(&raw).unwrap() else { panic!("{raw:02x?}") };
    assert_eq!((r.kind, r.amount_minor, r.balance_after_minor, r.counter), (TransferKind::Debit, 250, 750, 2));
    let card = card.join().unwrap().unwrap();
    assert_eq!(card.state().public_info().balance_minor, 750);
    let _ = request;
}

#[test]
fn real_pcsc_with_pcscd_vpcd_and_opensc() {
    let tools = ["pcscd", "opensc-tool"].map(|t| (t, on_path(t).or_else(|| sbin(t))));
    if let Some((tool, _)) = tools.iter().find(|(_, p)| p.is_none()) {
        return missing(&format!("{tool} not installed (apt-get install pcscd vsmartcard-vpcd opensc)"));
    }
    if !Path::new("/etc/reader.conf.d/vpcd").exists() {
        return missing("vsmartcard-vpcd not installed (no /etc/reader.conf.d/vpcd)");
    }
    #[cfg(not(feature = "pcsc"))]
    {
        missing("kessai-card was built without --features pcsc")
    }
    #[cfg(feature = "pcsc")]
    pcsc_session(tools[0].1.as_deref().unwrap(), tools[1].1.as_deref().unwrap());
}

fn sbin(tool: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/sbin"].iter().map(|d| Path::new(d).join(tool)).find(|p| p.is_file())
}

#[cfg(feature = "pcsc")]
fn pcsc_session(pcscd: &Path, opensc_tool: &Path) {
    use kessai_card::protocol::{BalanceReport, debit_command, read_balance_command, tag};
    use kessai_card::terminal::Terminal;
    use kessai_card::transport::pcsc::PcscReader;

    let running = Command::new("pgrep").args(["-x", "pcscd"]).output();
    assert!(!running.is_ok_and(|o| o.status.success()), "another pcscd is running; this test needs its own");
    // pcscd gets a reader.conf.d of its own: the vpcd driver the package
    // installed, on a free port below the ephemeral range (the package's
    // 35963 is inside it, where any client connection of the suite may hold
    // it), and a debug log kept for a failure's message.
    let dir = tempfile::tempdir().unwrap();
    let installed = std::fs::read_to_string("/etc/reader.conf.d/vpcd").unwrap();
    let libpath = installed.lines().find(|l| l.starts_with("LIBPATH")).expect("LIBPATH in the vpcd reader.conf");
    let port = (21_000u16..21_500).find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok()).unwrap();
    let conf = dir.path().join("reader.conf.d");
    std::fs::create_dir(&conf).unwrap();
    let reader = format!(
        "FRIENDLYNAME \"Virtual PCD\"\nDEVICENAME   /dev/null:0x{port:04X}\n{libpath}\nCHANNELID    0x{port:04X}\n"
    );
    std::fs::write(conf.join("vpcd"), reader).unwrap();
    let log_path = dir.path().join("pcscd.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let conf_arg = conf.to_str().unwrap().to_owned();
    let _pcscd = Reaped(
        Command::new(pcscd)
            .args(["-f", "-d", "-c", &conf_arg])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let vpcd = SocketAddr::from(([127, 0, 0, 1], port));
    let card = thread::spawn(move || serve_vpcd(funded_card(), vpcd));

    // opensc-tool reads the card id with plain SELECT and GET DATA.
    let select = kessai_card::protocol::select_command().to_bytes();
    let get_data = kessai_card::protocol::get_data_command(tag::CARD_ID).to_bytes();
    let colons = |b: &[u8]| b.iter().map(|x| format!("{x:02X}")).collect::<Vec<_>>().join(":");
    let mut output = None;
    let mut last = String::new();
    for _ in 0..50 {
        let o = Command::new(opensc_tool)
            .args(["-r", "0", "-s", &colons(&select), "-s", &colons(&get_data)])
            .output()
            .unwrap();
        if o.status.success() {
            output = Some(String::from_utf8_lossy(&o.stdout).into_owned());
            break;
        }
        last = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        thread::sleep(std::time::Duration::from_millis(200));
    }
    let output = output.unwrap_or_else(|| {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect();
        panic!("opensc-tool never reached the card: {last}\npcscd said:\n{}", tail.join("\n"))
    });
    assert_eq!(output.matches("SW1=0x90, SW2=0x00").count(), 2, "{output}");
    assert!(output.to_uppercase().contains("4B 53 00 00 00 00 00 01"), "card id in {output}");

    // Our host side through PC/SC: a full secure DEBIT.
    let mut t = Terminal::new(PcscReader::connect("Virtual PCD").unwrap());
    t.select().unwrap();
    let s = t.open_session(keys(), [8; 8]).unwrap();
    let (s, r) = t.secure(s, &debit_command(&request(2, 300))).unwrap();
    let TxStatus::Applied(result) = TxStatus::parse(r.data()).unwrap() else { panic!("{r:?}") };
    assert_eq!(result.balance_after_minor, 700);
    let (_, r) = t.secure(s, &read_balance_command()).unwrap();
    assert_eq!(BalanceReport::parse(r.data()).unwrap().balance_minor, 700);
    drop(t);
    drop(_pcscd); // pcscd goes, vpcd closes the socket, the card returns
    let card = card.join().unwrap().unwrap();
    assert_eq!(card.state().public_info().balance_minor, 700);
}
