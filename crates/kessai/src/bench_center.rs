//! `kessai bench center`: the center as its own processes (one or more
//! instances, each with its own data directory), on SQLite or on a
//! throwaway PostgreSQL cluster the bench starts, driven by in-process
//! wallets with emulated cards over HTTPS on loopback. With several
//! instances, each step of a purchase goes to another instance than the step
//! before. Prints which database and how many instances it measured;
//! settlements/s, p50/p99 per step and per settlement at full load and at
//! half that load; CPU time per settlement of the center processes, of
//! PostgreSQL and of the bench process (wallets, cards, store); HTTP round
//! trips and bytes per settlement; and on PostgreSQL pgbench's TPC-B against
//! the same cluster in the same run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kessai_card::protocol::{CardId as ChipCardId, Currency as ChipCurrency};
use kessai_card::terminal::Terminal;
use kessai_card::transport::{InProcessReader, Reader};
use kessai_card::{Card, KeySource, MemoryStorage, Personalization, personalize};
use kessai_core::ids::{CardId, OrderId, PartyId, StoreId};
use kessai_core::keys::{SigningKey, Validity};
use kessai_core::messages::DisplayText;
use kessai_core::messages::bill::LineItem;
use kessai_core::profile::Profile;
use kessai_core::random::OsRandom;
use kessai_core::time::SystemClock;
use kessai_core::{Currency, Money};
use kessai_http::HttpsClient;
use kessai_merchant::{BillRequest, Merchant};
use kessai_scp03::{CommandApdu, KeyVersion, ResponseApdu};
use serde_json::{Value, json};

/// A purchase's HTTP steps in `profile`, in order: one round trip each.
fn steps(profile: Profile) -> &'static [&'static str] {
    match profile {
        Profile::Offer => &["create", "balance", "complete"],
        Profile::Confirmed | Profile::Direct => &["create", "complete"],
    }
}

/// The most steps a purchase has.
const MAX_STEPS: usize = 3;
/// Value on each bench card, and the price of one purchase.
const CARD_VALUE_MINOR: u64 = 1_000_000_000;
const PRICE_MINOR: u64 = 100;

struct Sample {
    step_us: [u64; MAX_STEPS],
    total_us: u64,
    bytes: u64,
}

pub(crate) fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

pub(crate) fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("/proc stat")?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    Ok(f.get(11).context("utime")?.parse::<u64>()? + f.get(12).context("stime")?.parse::<u64>()?)
}

/// Where the center instances keep the issuer master keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Security {
    /// Unsealed from the key file into each center's memory.
    Memory,
    /// In a throwaway SoftHSM2 token (PKCS#11) the bench makes, with the
    /// center's signing key.
    Pkcs11,
}

/// What `kessai bench center` measures.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Concurrent wallets (each with its own card). 64 keep the center
    /// busy at full load on a 2-core host; with 16 it waits between steps.
    #[arg(long, default_value_t = 64)]
    pub wallets: usize,
    /// Seconds per phase (full load, then half load).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// The center's database: SQLite in its data directory, or a
    /// throwaway PostgreSQL cluster the bench starts and removes.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub database: Database,
    /// Center instances, each its own process and data directory
    /// (more than one needs --database postgres).
    #[arg(long, default_value_t = 1)]
    pub instances: usize,
    /// PostgreSQL: load pg_stat_statements and print the statements
    /// that took the most time, with their calls per settlement.
    #[arg(long)]
    pub pg_statements: bool,
    /// Where the center processes' log goes (default: discarded).
    #[arg(long)]
    pub center_log: Option<std::path::PathBuf>,
    /// The purchase profile: `offer` (SIG2, 3 round trips), `confirmed`
    /// or `direct` (second embodiment, 2 round trips).
    #[arg(long, default_value = "offer", value_parser = crate::parse_profile)]
    pub profile: Profile,
    /// Where the issuer master keys are, one run each in turn:
    /// `memory`, `pkcs11` (a throwaway SoftHSM2 token the bench makes),
    /// or `memory,pkcs11` to measure both in one sitting.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "memory")]
    pub security: Vec<Security>,
}

/// A throwaway SoftHSM2 token: its configuration (`SOFTHSM2_CONF` for the
/// processes that use it), and the `[hsm]` section naming it.
pub(crate) struct SoftHsmToken {
    conf: std::path::PathBuf,
    pin: String,
    section: String,
}

impl SoftHsmToken {
    /// Makes a token in `dir` with `softhsm2-util`.
    fn make(dir: &std::path::Path) -> anyhow::Result<SoftHsmToken> {
        let module = ["/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .context("SoftHSM2 is not installed (Debian package softhsm2)")?;
        let tokens = dir.join("softhsm-tokens");
        std::fs::create_dir_all(&tokens)?;
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}
objectstore.backend = file
log.level = ERROR
",
                tokens.display()
            ),
        )?;
        let mut secret = [0u8; 8];
        kessai_core::random::Random::fill_bytes(&mut OsRandom, &mut secret);
        let pin = hex::encode(secret);
        let out = std::process::Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", "kessai-bench", "--so-pin", &pin, "--pin", &pin])
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .context("running softhsm2-util")?;
        if !out.status.success() {
            bail!("softhsm2-util --init-token: {}", String::from_utf8_lossy(&out.stderr));
        }
        let section = format!(
            "[hsm]\nmodule = \"{module}\"\ntoken_label = \"kessai-bench\"\npin_env = \"KESSAI_BENCH_HSM_PIN\"\n"
        );
        Ok(SoftHsmToken { conf, pin, section })
    }

    /// What a process using the token needs in its environment.
    fn env(&self, cmd: &mut std::process::Command) {
        cmd.env("SOFTHSM2_CONF", &self.conf).env("KESSAI_BENCH_HSM_PIN", &self.pin);
    }
}

/// Which database the center instances use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Database {
    Sqlite,
    Postgres,
}

struct Setup {
    children: Vec<std::process::Child>,
    bases: Vec<String>,
    client: HttpsClient,
    merchant: Arc<Merchant>,
    cards: Vec<(CardId, Terminal<InProcessReader<MemoryStorage>>)>,
    // Dropped after the children: the cluster outlives the centers.
    pg: Option<crate::pg_cluster::PgCluster>,
    _dir: tempfile::TempDir,
}

impl Drop for Setup {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn kessai_cmd(args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new(std::env::current_exe()?).args(args).output()?;
    if !out.status.success() {
        bail!("kessai {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Center processes the bench started, with their database.
pub(crate) struct Centers {
    pub(crate) children: Vec<std::process::Child>,
    pub(crate) bases: Vec<String>,
    pub(crate) client: HttpsClient,
    pub(crate) admin: HttpsClient,
    /// The issuer master keys, for personalizing bench cards (read before
    /// a token takes them and the file is removed).
    pub(crate) masters: std::collections::BTreeMap<u8, kessai_scp03::diversify::MasterKeys>,
    pub(crate) pg: Option<crate::pg_cluster::PgCluster>,
    pub(crate) dir: tempfile::TempDir,
}

/// Starts `instances` center processes, each with its own data directory
/// (the first makes the keys, the others are provisioned with them), on
/// SQLite or a throwaway PostgreSQL cluster; `extra` is added to each
/// configuration (its sections after `[limits]`).
pub(crate) async fn start_centers(
    database: Database,
    instances: usize,
    pg_statements: bool,
    center_log: Option<&std::path::Path>,
    extra: &str,
    security: Security,
) -> anyhow::Result<Centers> {
    let dir = tempfile::tempdir()?;
    let token = match security {
        Security::Memory => None,
        Security::Pkcs11 => Some(SoftHsmToken::make(dir.path())?),
    };
    let ca = dir.path().join("ca");
    let ca_s = ca.to_str().context("path")?;
    kessai_cmd(&["pki", "init", "--dir", ca_s])?;
    kessai_cmd(&["pki", "issue", "--dir", ca_s, "--server", "localhost", "--san", "127.0.0.1"])?;
    kessai_cmd(&["pki", "issue", "--dir", ca_s, "--client", "center", "--party", "center"])?;
    kessai_cmd(&["pki", "issue", "--dir", ca_s, "--client", "admin", "--party", "operator"])?;
    let pg = match database {
        Database::Sqlite => None,
        Database::Postgres => Some(crate::pg_cluster::PgCluster::start(pg_statements)?),
    };
    let database_url = match &pg {
        Some(cluster) => format!("database_url = \"{}\"\n", cluster.create_database("kessai_bench")?),
        None => String::new(),
    };
    let mut configs = Vec::new();
    let mut bases = Vec::new();
    for i in 0..instances {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let config_path = dir.path().join(format!("center-{i}.toml"));
        std::fs::write(
            &config_path,
            format!(
                "party_id = \"center\"\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"https://127.0.0.1:{port}\"\n\
                 data_dir = \"{}\"\nkek_file = \"{}\"\n{database_url}delivery_interval_ms = 60000\n[tls]\nca_dir = \"{ca_s}\"\n\
                 server_name = \"localhost\"\nclient_name = \"center\"\n[limits]\nmax_body_bytes = 65536\n\
                 request_timeout_ms = 15000\nrate_per_client_per_s = 0\nrate_burst = 0\n{extra}",
                dir.path().join(format!("data-{i}")).display(),
                dir.path().join("center-kek.hex").display()
            ),
        )?;
        let config = kessai_center::config::CenterConfig::load(&config_path)?;
        // The first instance makes the keys; the others are provisioned
        // with them, as an operator adds instances.
        let keys_from = (i > 0).then(|| dir.path().join("data-0"));
        kessai_center::app::init(&config, keys_from.as_deref()).await?;
        configs.push((config_path, config));
        bases.push(format!("https://127.0.0.1:{port}"));
    }
    let masters = kessai_center::app::master_keys(&configs[0].1)?;
    if let Some(token) = &token {
        // The master keys the first instance made move into the token, as
        // an operator moves them, and the centers sign with a key the token
        // made, publishing the file's (a signing-key rotation): the
        // centers then run on the token alone.
        let file_key = configs[0].1.resolve(&configs[0].1.signing_key);
        let file_key = kessai_core::keyfile::decode(&std::fs::read_to_string(&file_key)?, None)?;
        let published = dir.path().join("center-file-key.jwk");
        std::fs::write(&published, serde_json::to_string(&file_key.public().to_jwk(Validity::always()))?)?;
        for (path, config) in &configs {
            let text = std::fs::read_to_string(path)?;
            let text = format!(
                "published_keys = [\"{}\"]\n{text}{}signing_key_label = \"kessai-bench-signing\"\n",
                published.display(),
                token.section
            );
            std::fs::write(path, text)?;
            if path == &configs[0].0 {
                let mut import = std::process::Command::new(std::env::current_exe()?);
                import.args(["center", "hsm", "import", "--config", path.to_str().context("path")?]);
                token.env(&mut import);
                let out = import.output()?;
                if !out.status.success() {
                    bail!("kessai center hsm import: {}", String::from_utf8_lossy(&out.stderr));
                }
                let mut signing = std::process::Command::new(std::env::current_exe()?);
                signing.args(["center", "hsm", "generate-signing-key", "--config", path.to_str().context("path")?]);
                token.env(&mut signing);
                let out = signing.output()?;
                if !out.status.success() {
                    bail!("kessai center hsm generate-signing-key: {}", String::from_utf8_lossy(&out.stderr));
                }
            }
            std::fs::remove_file(config.resolve(&config.master_keys))?;
        }
    }
    let log = |log: Option<&std::path::Path>| -> anyhow::Result<std::process::Stdio> {
        Ok(match log {
            Some(path) => std::fs::OpenOptions::new().create(true).append(true).open(path)?.into(),
            None => std::process::Stdio::null(),
        })
    };
    let mut children = Vec::new();
    for (config_path, _) in &configs {
        let mut run = std::process::Command::new(std::env::current_exe()?);
        run.args(["center", "run", "--config", config_path.to_str().context("path")?])
            .stdout(log(center_log)?)
            .stderr(log(center_log)?);
        if let Some(token) = &token {
            token.env(&mut run);
        }
        children.push(run.spawn()?);
    }
    let ca_dir = kessai_tls::CaDir::new(&ca);
    let client = HttpsClient::new(kessai_tls::client_config(&ca_dir.ca_cert(), None)?, 15_000);
    let admin = HttpsClient::new(kessai_tls::client_config(&ca_dir.ca_cert(), Some((&ca_dir, "admin")))?, 15_000);
    for base in &bases {
        wait_healthy(&client, base).await?;
    }
    Ok(Centers { children, bases, client, admin, masters, pg, dir })
}

async fn setup(o: &Options, security: Security) -> anyhow::Result<Setup> {
    let wallets = o.wallets;
    let Centers { children, bases, client, admin, masters, pg, dir } =
        start_centers(o.database, o.instances, o.pg_statements, o.center_log.as_deref(), "", security).await?;
    let master = masters.get(&1).context("key version 1")?.clone();
    let base = &bases[0];
    let merchant =
        Merchant::new(StoreId::parse("kessai-mall")?, SigningKey::generate(&mut OsRandom), PartyId::parse("center")?);
    let store = json!({ "id": "kessai-mall", "name": "Kessai Mall", "jwks": merchant.jwks() });
    admin.post_json(&format!("{base}/v1/admin/stores"), &store, &[]).await?;
    let mut cards = Vec::with_capacity(wallets);
    for n in 0..wallets {
        cards.push(bench_card(&admin, base, &master, n).await?);
    }
    Ok(Setup { children, bases, client, merchant: Arc::new(merchant), cards, pg, _dir: dir })
}

async fn wait_healthy(client: &HttpsClient, base: &str) -> anyhow::Result<()> {
    for _ in 0..200 {
        if client.get(&format!("{base}/healthz")).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the center did not start")
}

/// A card in memory with diversified keys and value, registered with the
/// same value in the books.
async fn bench_card(
    admin: &HttpsClient,
    base: &str,
    master: &kessai_scp03::diversify::MasterKeys,
    n: usize,
) -> anyhow::Result<(CardId, Terminal<InProcessReader<MemoryStorage>>)> {
    let mut id_bytes = [0x42, 0x45, 0x4e, 0x43, 0, 0, 0, 0];
    id_bytes[4..].copy_from_slice(&(n as u32).to_be_bytes());
    let id = CardId::from_bytes(id_bytes);
    let version = KeyVersion::new(1).context("kvn")?;
    let p = Personalization {
        card_id: ChipCardId(id_bytes),
        keys: KeySource::Diversified { master: master.clone(), version },
        currency: ChipCurrency::new("JPY").map_err(|e| anyhow::anyhow!("{e}"))?,
        max_balance_minor: CARD_VALUE_MINOR,
    };
    let card = Card::open(MemoryStorage::new(personalize(&p)?.to_vec()))?;
    let mut t = Terminal::new(InProcessReader::new(card));
    t.select().map_err(|e| anyhow::anyhow!("{e}"))?;
    let keys = kessai_scp03::diversify::diversify(master, &id_bytes, version);
    let s = t.open_session(keys, [7; 8]).map_err(|e| anyhow::anyhow!("{e}"))?;
    let req = kessai_card::protocol::TransferRequest {
        tx_id: kessai_card::protocol::TxId([0xEE; 16]),
        amount_minor: CARD_VALUE_MINOR,
        counterpart: *b"BENCH!!!",
        order_ref: [0; 16],
        time_unix_s: 0,
    };
    t.secure(s, &kessai_card::protocol::credit_command(&req)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let body = json!({ "card_id": id.to_string(), "key_version": 1, "currency": "JPY",
                       "max_balance_minor": CARD_VALUE_MINOR, "initial_value_minor": CARD_VALUE_MINOR });
    let (status, _) = admin.post_json(&format!("{base}/v1/admin/cards"), &body, &[]).await?;
    if !status.is_success() {
        bail!("registering a bench card: {status}");
    }
    Ok((id, t))
}

fn relay(card: &mut Terminal<InProcessReader<MemoryStorage>>, reply: &Value) -> anyhow::Result<Value> {
    let mut answers = Vec::new();
    for h in reply["apdus"].as_array().context("apdus")? {
        let cmd = CommandApdu::parse(&hex::decode(h.as_str().context("hex")?)?)?;
        let answer = card.reader_mut().transmit(&cmd.to_bytes())?;
        answers.push(hex::encode(ResponseApdu::parse(&answer)?.to_bytes()));
    }
    Ok(json!({ "responses": answers }))
}

/// What a wallet sends to create a purchase in `profile`: it reads the card
/// in the clear (second embodiment) and opens the session under the bill's
/// challenge, all before the first round trip.
fn create_body(
    t: &mut Terminal<InProcessReader<MemoryStorage>>,
    card: CardId,
    bill: &str,
    profile: Profile,
) -> anyhow::Result<Value> {
    use kessai_card::protocol::{PublicInfo, get_data_command, initialize_update_command, purchase_host_challenge};
    let mut transmit = |cmd: CommandApdu| -> anyhow::Result<ResponseApdu> {
        Ok(ResponseApdu::parse(&t.reader_mut().transmit(&cmd.to_bytes())?)?)
    };
    let mut body = json!({ "bill": bill, "card_id": card.to_string(), "profile": profile.as_str() });
    if profile != Profile::Offer {
        let info = PublicInfo::parse(transmit(get_data_command(0xDF10))?.data()).map_err(|e| anyhow::anyhow!("{e}"))?;
        body["card_read"] = json!({ "balance_minor": info.balance_minor, "counter": info.counter });
    }
    let hash = kessai_core::digest::Sha256Digest::of_token(bill);
    let challenge = purchase_host_challenge(hash.as_bytes(), &ChipCardId(*card.as_bytes()));
    body["initialize_update"] = json!(hex::encode(transmit(initialize_update_command(&challenge))?.to_bytes()));
    Ok(body)
}

/// One whole purchase, timed per step.
/// Step `i` goes to instance `(first + i) % instances`: with several, never
/// the one the step before went to.
async fn purchase(
    client: &HttpsClient,
    bases: &[String],
    first: usize,
    merchant: &Merchant,
    card: &mut (CardId, Terminal<InProcessReader<MemoryStorage>>),
    n: u64,
    profile: Profile,
) -> anyhow::Result<Sample> {
    let line = LineItem::new("bench", DisplayText::parse("Bench item")?, 1, Money::new(PRICE_MINOR, Currency::JPY)?)?;
    let request = BillRequest {
        order_id: OrderId::parse(&format!("b{}-{n}", card.0))?,
        member: None,
        store_name: DisplayText::parse("Kessai Mall")?,
        lines: vec![line],
        lifetime_s: 600,
        origin: kessai_core::messages::WebOrigin::parse("https://bench.kessai.test")?,
    };
    let bill = merchant.sign_bill(request, &mut OsRandom, &SystemClock)?;
    let start = Instant::now();
    let mut sample = Sample { step_us: [0; MAX_STEPS], total_us: 0, bytes: 0 };
    let mut reply = Value::Null;
    let mut id = String::new();
    let mut bearer = String::new();
    for (i, step) in steps(profile).iter().enumerate() {
        let base = &bases[(first + i) % bases.len()];
        let (url, body) = if i == 0 {
            (format!("{base}/v1/settlements"), create_body(&mut card.1, card.0, bill.token(), profile)?)
        } else {
            (format!("{base}/v1/settlements/{id}/{step}"), relay(&mut card.1, &reply)?)
        };
        let key = format!("{}-{n}-{step}", card.0);
        let t0 = Instant::now();
        let mut headers = vec![("idempotency-key", key.as_str())];
        if i > 0 {
            headers.push(("authorization", bearer.as_str()));
        }
        let (status, bytes) = client.post_json(&url, &body, &headers).await?;
        sample.step_us[i] = t0.elapsed().as_micros() as u64;
        sample.bytes += (body.to_string().len() + bytes.len()) as u64;
        if !status.is_success() {
            bail!("{step}: {status} {}", String::from_utf8_lossy(&bytes));
        }
        reply = serde_json::from_slice(&bytes)?;
        if i == 0 {
            id = reply["settlement_id"].as_str().context("settlement id")?.to_owned();
            bearer = format!("Bearer {}", reply["access_token"].as_str().context("access token")?);
        }
    }
    if reply["phase"] != "completed" {
        bail!("purchase ended {}", reply["phase"]);
    }
    sample.total_us = start.elapsed().as_micros() as u64;
    Ok(sample)
}

/// Runs every wallet for `duration`; with `interval`, each wallet starts a
/// purchase every `interval` (an open-loop rate), else back to back.
async fn phase(
    s: &mut Setup,
    duration: Duration,
    interval: Option<Duration>,
    profile: Profile,
) -> anyhow::Result<(Vec<Sample>, f64, Ticks)> {
    let cpu0 = s.center_ticks();
    let pg0 = s.pg_ticks();
    let own0 = cpu_ticks(std::process::id())?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    let wallets = u32::try_from(s.cards.len()).unwrap_or(1).max(1);
    for (i, mut card) in std::mem::take(&mut s.cards).into_iter().enumerate() {
        // Wallets start evenly spread over one interval, not all at once.
        let offset = interval.map_or(Duration::ZERO, |every| every * u32::try_from(i).unwrap_or(0) / wallets);
        let (client, bases, merchant) = (s.client.clone(), s.bases.clone(), s.merchant.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut n = 0u64;
            tokio::time::sleep(offset).await;
            while start.elapsed() < duration {
                n += 1;
                let nonce = start.elapsed().as_nanos() as u64;
                let first = i + usize::try_from(n).unwrap_or(0);
                samples.push(purchase(&client, &bases, first, &merchant, &mut card, nonce ^ n, profile).await?);
                if let Some(every) = interval {
                    let next = start + offset + every * u32::try_from(n).unwrap_or(u32::MAX);
                    tokio::time::sleep_until(next.into()).await;
                }
            }
            anyhow::Ok((card, samples))
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let (card, samples) = t.await??;
        s.cards.push(card);
        all.extend(samples);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = s.center_ticks().saturating_sub(cpu0);
    let pg = s.pg_ticks().saturating_sub(pg0);
    let own = cpu_ticks(std::process::id())? - own0;
    Ok((all, elapsed, Ticks { center: cpu, postgres: pg, bench: own }))
}

/// CPU time spent during a phase, in clock ticks.
struct Ticks {
    center: u64,
    postgres: u64,
    bench: u64,
}

impl Setup {
    fn center_ticks(&self) -> u64 {
        self.children.iter().filter_map(|c| cpu_ticks(c.id()).ok()).sum()
    }

    /// PostgreSQL's processes' (0 on SQLite). A backend that exits during
    /// a phase takes its ticks with it; the centers' pools keep theirs.
    fn pg_ticks(&self) -> u64 {
        self.pg.as_ref().map_or(0, |pg| pg.pids().into_iter().filter_map(|pid| cpu_ticks(pid).ok()).sum())
    }
}

/// `ticks`: the centers', PostgreSQL's, and this process's (wallets,
/// cards, store).
fn report(label: &str, samples: &[Sample], elapsed_s: f64, ticks: &Ticks, profile: Profile) {
    let n = samples.len().max(1) as f64;
    println!(
        "{label}: {} settlements in {elapsed_s:.1} s = {:.0} settlements/s",
        samples.len(),
        samples.len() as f64 / elapsed_s
    );
    for (i, step) in steps(profile).iter().enumerate() {
        let mut v: Vec<u64> = samples.iter().map(|s| s.step_us[i]).collect();
        v.sort_unstable();
        println!("  {step:<13} p50 {:>7.2} ms  p99 {:>7.2} ms", pct(&v, 0.5), pct(&v, 0.99));
    }
    let mut total: Vec<u64> = samples.iter().map(|s| s.total_us).collect();
    total.sort_unstable();
    println!(
        "  {:<13} p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
        "settlement",
        pct(&total, 0.5),
        pct(&total, 0.99),
        pct(&total, 1.0)
    );
    let tick_ms = 1000.0 / 100.0; // USER_HZ
    println!(
        "  CPU per settlement: center {:.2} ms, PostgreSQL {:.2} ms, bench process (wallets, cards, store) {:.2} ms",
        ticks.center as f64 * tick_ms / n,
        ticks.postgres as f64 * tick_ms / n,
        ticks.bench as f64 * tick_ms / n
    );
    let bytes: u64 = samples.iter().map(|s| s.bytes).sum();
    let trips = steps(profile).len();
    println!("  HTTP round trips per settlement: {trips}; JSON bytes per settlement: {:.0}", bytes as f64 / n);
}

/// This machine's speed just now, printed so runs can be compared: on a
/// shared host both move from run to run, and every figure with them.
/// SHA-256 on one core, and a round trip between two threads (what every
/// SQLite statement and every wake-up costs).
pub(crate) fn calibrate() -> String {
    format!("SHA-256 on one core {:.0} MB/s; thread round trip {:.1} µs", sha256_mb_s(), thread_round_trip_us())
}

fn thread_round_trip_us() -> f64 {
    const ROUNDS: u32 = 20_000;
    let (ping, pinged) = std::sync::mpsc::channel::<u32>();
    let (pong, ponged) = std::sync::mpsc::channel::<u32>();
    let echo = std::thread::spawn(move || {
        while let Ok(n) = pinged.recv() {
            if pong.send(n).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    for n in 0..ROUNDS {
        if ping.send(n).is_err() || ponged.recv().is_err() {
            break;
        }
    }
    let took = start.elapsed();
    drop(ping);
    let _ = echo.join();
    took.as_secs_f64() * 1e6 / f64::from(ROUNDS)
}

fn sha256_mb_s() -> f64 {
    const BYTES: usize = 64 << 20;
    let chunk = vec![0x5a_u8; 1 << 20];
    let start = Instant::now();
    let mut digest = kessai_core::digest::Sha256Digest::of(&chunk);
    for _ in 1..(BYTES >> 20) {
        digest = kessai_core::digest::Sha256Digest::of(&[digest.as_bytes().as_slice(), &chunk].concat());
    }
    std::hint::black_box(digest);
    BYTES as f64 / 1e6 / start.elapsed().as_secs_f64()
}

pub fn run(o: &Options) -> anyhow::Result<()> {
    let (wallets, seconds, instances, profile) = (o.wallets, o.seconds, o.instances, o.profile);
    if instances == 0 {
        bail!("--instances must be at least 1");
    }
    if instances > 1 && o.database == Database::Sqlite {
        bail!("several instances share one database: use --database postgres");
    }
    if o.security.is_empty() {
        bail!("--security: memory, pkcs11, or both");
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        for security in &o.security {
            let mut s = setup(o, *security).await?;
            let on = match &s.pg {
                Some(pg) => format!(
                    "PostgreSQL (a throwaway cluster on 127.0.0.1:{}, fsync on, READ COMMITTED with row locks)",
                    pg.port
                ),
                None => "SQLite (WAL, synchronous=FULL)".to_owned(),
            };
            let each =
                if instances > 1 { ", each step of a purchase on another instance than the step before" } else { "" };
            let keys = match security {
                Security::Memory => "issuer master keys in memory",
                Security::Pkcs11 => "issuer master keys and signing key in a SoftHSM2 token over PKCS#11",
            };
            println!(
                "kessai bench center — {instances} center instance(s), each its own process and data directory, on \
                 {on}; {keys}; {wallets} wallets over HTTPS{each}; purchases in the {profile} profile"
            );
            println!("machine now: {}", calibrate());
            // Measured warm, on either database. A running center's
            // PostgreSQL tables have statistics: without them the plans
            // cached while they were nearly empty scan them.
            let warm = Duration::from_secs(seconds.clamp(1, 3));
            phase(&mut s, warm, None, profile).await?;
            let analyzed = match &s.pg {
                Some(pg) => {
                    pg.analyze("kessai_bench", o.pg_statements)?;
                    ", then ANALYZE (as autovacuum would)"
                }
                None => "",
            };
            println!("warm-up: {} s of purchases{analyzed}, not measured", warm.as_secs());
            let (samples, elapsed, cpu) = phase(&mut s, Duration::from_secs(seconds), None, profile).await?;
            report("full load", &samples, elapsed, &cpu, profile);
            let rate = samples.len() as f64 / elapsed;
            // Half the load: each wallet starts one purchase per `every`, so
            // all together offer rate/2 whatever the latency.
            let every = Duration::from_secs_f64(wallets as f64 / (rate / 2.0).max(0.1));
            let (half, elapsed, cpu) = phase(&mut s, Duration::from_secs(seconds), Some(every), profile).await?;
            report("half load", &half, elapsed, &cpu, profile);
            if let (Some(pg), true) = (&s.pg, o.pg_statements) {
                let settled = (samples.len() + half.len()).max(1) as f64;
                println!(
                    "PostgreSQL statements by time (calls per settlement, total ms):\n{}",
                    pg.top_statements("kessai_bench", settled)?
                );
            }
            if let Some(pg) = &s.pg {
                // The same cluster, the centers idle: what PostgreSQL does
                // with its own simplest transactions on this machine now.
                let url = pg.create_database("pgbench")?;
                let clients = u32::try_from(wallets / 8).unwrap_or(u32::MAX).max(2);
                let duration = u32::try_from(seconds).unwrap_or(u32::MAX).max(1);
                let tps = kessai_ledger::bench::pgbench_tps(pg.bin(), &url, clients, duration).await?;
                println!("full load = {:.2}× pgbench TPC-B ({clients} clients) on the same cluster", rate / tps);
            }
        }
        println!("machine now: {}", calibrate());
        Ok(())
    })
}
