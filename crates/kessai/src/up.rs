//! `kessai up`: every party on one machine, on embedded defaults.
//!
//! Prepares a data directory once (a restart reuses it, data included): a
//! local CA with the server and client certificates; the center's keys
//! (KEK, sealed issuer master keys, signing key); the mall's signing key; a
//! demo card with value, issued through a secure CREDIT and booked in the
//! ledger; the mall and its member stores registered at the center. Then it
//! runs the center, the mall and the wallet until Ctrl-C, over TLS, with
//! mutual TLS between center and store.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use kessai_center::config::CenterConfig;
use kessai_center::db::StoreRecord;
use kessai_core::Currency;
use kessai_core::ids::CardId;
use kessai_core::keys::{SigningKey, Validity};
use kessai_core::random::OsRandom;
use kessai_http::party::ServiceConfig as _;
use kessai_store::{DemoSettings, StoreConfig};
use kessai_tls::{CaDir, Party, Role};
use kessai_wallet::WalletConfig;

/// The demo card: its id, limit and the value it starts with (JPY).
const DEMO_CARD_ID: &str = "4b45535341490001";
const DEMO_CARD_MAX_MINOR: u64 = 100_000;
const DEMO_CARD_VALUE_MINOR: u64 = 30_000;

/// The demo member's passwords (a demo: printed at start; a real member
/// chooses its own, never on a command line).
pub const DEMO_PASSWORD_A: &str = "demo password A";
pub const DEMO_PASSWORD_B: &str = "demo password B";
/// What the demo member's virtual prepaid card is funded with, by bank
/// transfer to the center's pool account (JPY).
const DEMO_PREPAID_MINOR: u64 = 20_000;
/// A transfer to the pool that quotes no request (the suspense queue).
const DEMO_STRAY_MINOR: u64 = 3_000;
/// Cash the demo member sends by registered mail (the cash queue).
const DEMO_CASH_MINOR: u64 = 10_000;
/// The demo member's bank deposit token (seed 002), on the demo card.
const DEMO_TOKEN_MINOR: u64 = 5_000;

#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub center: u16,
    pub store: u16,
    pub wallet: u16,
    /// The credit service provider's.
    pub csp: u16,
    /// The bank service provider's.
    pub bank: u16,
}

/// Everything `up` runs, prepared.
pub struct Prepared {
    pub dir: PathBuf,
    pub center: CenterConfig,
    pub store: StoreConfig,
    pub wallet: WalletConfig,
    pub card_image: PathBuf,
    pub csp: kessai_csp::ProviderConfig,
    pub bank: kessai_bsp::BankConfig,
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn ensure_pki(ca: &CaDir) -> anyhow::Result<()> {
    if !ca.exists() {
        ca.init()?;
    }
    if !ca.cert("localhost").exists() {
        ca.issue(Role::Server, "localhost", &["127.0.0.1".into()])?;
    }
    let clients = [
        ("center", Party::Center),
        ("admin", Party::Operator),
        (DEMO_VIEWER, Party::Operator),
        ("kessai-mall", Party::Store),
        // The pool account's bank (seed 002): it receives the provider's
        // token keys.
        ("bank", Party::Bank),
    ];
    for (client, party) in clients {
        // A demo made before certificates named their party: its client
        // certificates are replaced (the old one revoked as superseded).
        if ca.cert(client).exists() && !ca.issued_for(client, party)? {
            ca.revoke(client, kessai_tls::RevocationReason::Superseded)?;
        }
        if !ca.cert(client).exists() {
            ca.issue(Role::Client(party), client, &[])?;
        }
    }
    Ok(())
}

/// What this demo relaxes of how keys are kept in production (#23), for
/// its banner.
pub fn relaxed(p: &Prepared) -> Vec<String> {
    let kek = p.center.kek_file.as_deref().map(|k| k.display().to_string()).unwrap_or_default();
    vec![
        "Relaxed for a demo (do not run money this way; see README, \"Issuer master keys in an HSM\"):".to_owned(),
        "- issuer master keys in a key file unsealed into the center's memory, not in an HSM ([hsm]);".to_owned(),
        format!("- the KEK in {kek}: out of the data directory, but on the same disk, unencrypted;"),
        "- the center's and the mall's signing keys unsealed (no passphrase: kessai keys seal);".to_owned(),
        format!(
            "- the CA key in {}, beside the service keys it certifies (kessai pki --ca-key keeps it apart).",
            p.dir.join("ca").join("ca.key").display()
        ),
    ]
}

/// The demo center's KEK: in `dir/secrets`, apart from the center's data
/// directory (on the same disk: the banner says so). A demo directory
/// made by an earlier version kept it in the data directory: moved here.
fn demo_kek(dir: &Path) -> anyhow::Result<PathBuf> {
    let kek = dir.join("secrets").join("center-kek.hex");
    let old = dir.join("center").join("kek.hex");
    if old.exists() && !kek.exists() {
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(dir.join("secrets"))?;
        std::fs::rename(&old, &kek).with_context(|| format!("moving {} to {}", old.display(), kek.display()))?;
    }
    Ok(kek)
}

fn center_config(dir: &Path, ports: Ports) -> anyhow::Result<CenterConfig> {
    let text = format!(
        "party_id = \"center\"\nlisten = \"127.0.0.1:{p}\"\npublic_url = \"https://127.0.0.1:{p}\"\ndata_dir = \"{d}\"\n\
         kek_file = \"{k}\"\n[tls]\nca_dir = \"{ca}\"\nserver_name = \"localhost\"\nclient_name = \"center\"\n\
         operator_names = [\"{DEMO_VIEWER}\"]\n[tokens]\nprovider_url = \"https://127.0.0.1:{csp}\"\n\
         bank_url = \"https://127.0.0.1:{bank}\"\n",
        p = ports.center,
        csp = ports.csp,
        bank = ports.bank,
        d = dir.join("center").display(),
        k = demo_kek(dir)?.display(),
        ca = dir.join("ca").display()
    );
    let mut config = CenterConfig::from_toml(&text)?;
    config.apply_env(|name| std::env::var(name).ok())?;
    config.check()?;
    // Written out so that `kessai center … --config DIR/center.toml
    // …` works against this deployment too (a clearing run, a bank file).
    let path = dir.join("center.toml");
    std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
    Ok(config)
}

/// The mall's key, made here (once) so the center can be told its JWKS.
fn mall_key(store: &StoreConfig) -> anyhow::Result<SigningKey> {
    let path = store.resolve(&store.signing_key);
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
    kessai_store::signing_key(store)
}

/// Prepares `dir` (idempotent).
pub async fn prepare(dir: &Path, ports: Ports) -> anyhow::Result<Prepared> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let ca = CaDir::new(dir.join("ca"));
    ensure_pki(&ca).context("the local CA")?;
    let center = center_config(&dir, ports)?;
    kessai_center::app::init(&center, None).await.context("the center's keys")?;
    let bank = bank_once(&dir, ports).context("the bank service provider")?;
    let csp = provider_once(&dir, &center, &bank, ports).context("the credit service provider")?;
    let store = StoreConfig::demo(DemoSettings {
        data_dir: dir.join("store"),
        ca_dir: dir.join("ca"),
        server_name: "localhost".into(),
        client_name: Some("kessai-mall".into()),
        listen: loopback(ports.store),
        public_url: format!("https://127.0.0.1:{}", ports.store),
        center_id: "center".into(),
        center_url: format!("https://127.0.0.1:{}", ports.center),
        wallet_url: format!("http://127.0.0.1:{}", ports.wallet),
    })?;
    let card_image = dir.join("card.img");
    // Written out so that `kessai wallet --config DIR/wallet.toml …` works
    // against this deployment too.
    let wallet_toml = dir.join("wallet.toml");
    std::fs::write(
        &wallet_toml,
        format!(
            "data_dir = \"{}\"\nlisten = \"127.0.0.1:{}\"\nca_file = \"{}\"\n[center]\nurl = \"https://127.0.0.1:{}\"\n\
             party_id = \"center\"\n[reader]\nkind = \"in-process\"\nimage = \"{}\"\n",
            dir.join("wallet").display(),
            ports.wallet,
            ca.ca_cert().display(),
            ports.center,
            card_image.display()
        ),
    )
    .with_context(|| format!("writing {}", wallet_toml.display()))?;
    let wallet = WalletConfig::load(&wallet_toml)?;
    if !card_image.exists() {
        let req = kessai_center::issue::IssueCard {
            image: &card_image,
            card_id: CardId::parse(DEMO_CARD_ID)?,
            key_version: None,
            currency: Currency::JPY,
            max_balance_minor: DEMO_CARD_MAX_MINOR,
            // The value arrives through a charge once the parties run.
            initial_value_minor: 0,
        };
        kessai_center::issue::issue_card(&center, &req).await.context("issuing the demo card")?;
    }
    Ok(Prepared { dir, center, store, wallet, card_image, csp, bank })
}

/// Registers the mall (with its key and notify URL) and its members, as the
/// admin API does.
async fn register_mall(center: &kessai_center::service::Center, store: &StoreConfig) -> anyhow::Result<()> {
    // Where each store is paid: a demo account the first time, and from
    // then on whatever an operator made it (the console corrects one).
    let account = |id: &kessai_core::ids::StoreId, n: usize| {
        let id = id.clone();
        async move {
            let kept = center.db.store(&id).await?.and_then(|r| r.bank_account);
            anyhow::Ok(kept.or_else(|| Some(format!("zengin:0001-100-1-{:07}:ﾃﾞﾓ ｼﾖｳﾃﾝ", n + 1))))
        }
    };
    let mall = StoreRecord {
        id: store.mall_id.clone(),
        name: store.mall_name.clone(),
        mall: None,
        notify_url: Some(format!("{}/v1/completions", store.public_url)),
        client_name: Some("kessai-mall".into()),
        bank_account: account(&store.mall_id, 0).await?,
    };
    let by = kessai_center::console::Actor::api("kessai-up");
    center.register_store(&mall, &[(mall_key(store)?.public(), Validity::always())], &by).await?;
    for (n, m) in store.members.iter().enumerate() {
        let member = StoreRecord {
            id: m.id.clone(),
            name: m.name.clone(),
            mall: Some(store.mall_id.clone()),
            notify_url: None,
            client_name: None,
            bank_account: account(&m.id, n + 1).await?,
        };
        center.register_store(&member, &[], &by).await?;
    }
    Ok(())
}

/// Runs the three parties until `stop` fires.
pub async fn start(p: Prepared, stop: tokio::sync::watch::Receiver<bool>) -> anyhow::Result<()> {
    let center = Arc::new(kessai_center::app::open(&p.center).await?);
    register_mall(&center, &p.store).await.context("registering the mall")?;
    console_operators_once(&center, &p.dir).await.context("the console's operators")?;
    let for_wallet = center.clone();
    let center_listener = tokio::net::TcpListener::bind(p.center.listen)
        .await
        .with_context(|| format!("center on {}", p.center.listen))?;
    let store_listener =
        tokio::net::TcpListener::bind(p.store.listen).await.with_context(|| format!("store on {}", p.store.listen))?;
    let until = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stopped| *stopped).await;
    };
    let provider = Arc::new(kessai_csp::Provider::open(&p.csp, Arc::new(kessai_core::time::SystemClock)).await?);
    let csp_listener =
        tokio::net::TcpListener::bind(p.csp.listen).await.with_context(|| format!("provider on {}", p.csp.listen))?;
    let csp_config = p.csp.clone();
    let csp_task = kessai_csp::api::serve_on(&csp_config, provider, csp_listener, until(stop.clone()));
    let bank = Arc::new(kessai_bsp::Bank::open(&p.bank, Arc::new(kessai_core::time::SystemClock)).await?);
    let bank_listener =
        tokio::net::TcpListener::bind(p.bank.listen).await.with_context(|| format!("bank on {}", p.bank.listen))?;
    let bank_config = p.bank.clone();
    let fetching = tokio::spawn(kessai_bsp::fetch_keys_every(Arc::clone(&bank), p.bank.tokens.fetch_every_s));
    let teller = Arc::clone(&bank);
    let bank_task = kessai_bsp::api::serve_on(&bank_config, bank, bank_listener, until(stop.clone()));
    let center_config = p.center.clone();
    let center_task = kessai_center::app::serve_on(&center_config, center, center_listener, until(stop.clone()));
    let center = for_wallet;
    let store_task = kessai_store::serve_on(p.store.clone(), store_listener, until(stop.clone()));
    // The wallet's server opens the card image only after the first charge,
    // so one handle at a time writes it.
    let wallet_config = p.wallet.clone();
    let image = p.card_image.clone();
    let for_member = center.clone();
    let wallet_task = async move {
        charge_demo_card_once(&wallet_config, &image).await?;
        demo_member_once(&wallet_config, &for_member, &teller).await.context("the demo member")?;
        kessai_wallet::run(wallet_config, until(stop)).await
    };
    let ran = tokio::try_join!(csp_task, bank_task, center_task, store_task, wallet_task);
    fetching.abort();
    ran?;
    Ok(())
}

/// The bank service provider (seed 002) beside the center: the pool
/// account, its KEK apart in `dir/secrets`, its delivery key made once, the
/// center its client, the provider where it fetches token keys.
fn bank_once(dir: &Path, ports: Ports) -> anyhow::Result<kessai_bsp::BankConfig> {
    let text = format!(
        "bank_id = \"0999\"\npool_account = \"JP00KESSAIPOOL0001\"\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{d}\"\n\
         kek_file = \"{k}\"\ncenters = [\"center\"]\n[tls]\nca_dir = \"{ca}\"\nserver_name = \"localhost\"\n\
         [tokens]\nprovider_id = \"kessai-csp\"\nprovider_url = \"https://127.0.0.1:{csp}\"\nclient_name = \"bank\"\n",
        port = ports.bank,
        csp = ports.csp,
        d = dir.join("bank").display(),
        k = dir.join("secrets").join("bank-kek.hex").display(),
        ca = dir.join("ca").display(),
    );
    let config = kessai_bsp::BankConfig::from_toml(&text)?;
    // Written out so that `kessai bank --config DIR/bank.toml …` works
    // against this deployment too (a deposit, its keys).
    let path = dir.join("bank.toml");
    std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(dir.join("secrets"))?;
    config.init_kek()?;
    Ok(config)
}

/// The credit service provider (seed 002) beside the center: its
/// configuration naming the center as its client, with the bank's delivery
/// key; its KEK apart in `dir/secrets`; on the first start its token key
/// version 1, issuing for a year and redeeming for two.
fn provider_once(
    dir: &Path,
    center: &kessai_center::config::CenterConfig,
    bank: &kessai_bsp::BankConfig,
    ports: Ports,
) -> anyhow::Result<kessai_csp::ProviderConfig> {
    let delivery_key = kessai_bsp::delivery_key_once(&bank.data_dir.join(kessai_bsp::KEYS_DIR), &*bank.read_kek()?)?;
    let text = format!(
        "provider_id = \"{id}\"\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{d}\"\nkek_file = \"{k}\"\n\
         [tls]\nca_dir = \"{ca}\"\nserver_name = \"localhost\"\n\
         [[clients]]\nname = \"bank\"\ndelivery_key = {{ kty = \"OKP\", crv = \"X25519\", x = \"{x}\" }}\n\
         [[clients]]\nname = \"center\"\n",
        id = bank.tokens.provider_id,
        port = ports.csp,
        d = dir.join("csp").display(),
        k = dir.join("secrets").join("csp-kek.hex").display(),
        ca = dir.join("ca").display(),
        x = delivery_key.x,
    );
    let config = kessai_csp::ProviderConfig::from_toml(&text)?;
    // Written out so that `kessai csp --config DIR/csp.toml …` works
    // against this deployment too (a new key version, the register).
    let path = dir.join("csp.toml");
    std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(dir.join("secrets"))?;
    config.init_kek()?;
    let kek = config.read_kek()?;
    let keys = config.data_dir.join(kessai_csp::KEYS_DIR);
    // A demo directory from before the provider ran apart: the version the
    // center made itself seals its tokens; the provider takes it over.
    let taken = crate::csp::import_center_keys(center, &config)?;
    if !taken.is_empty() {
        eprintln!("the credit service provider took over the center's token key versions {taken:?}");
    }
    if kessai_csp::read_keys(&keys, &kek)?.keys().next().is_none() {
        let now = kessai_core::time::Clock::now(&kessai_core::time::SystemClock);
        let at = |days: u64| kessai_core::time::Timestamp::from_unix_s(now.unix_s().saturating_add(days * 86_400));
        kessai_csp::add_key(&keys, &kek, Some(1), (now, at(365)), at(730))?;
    }
    Ok(config)
}

/// On the first start the demo card is empty: it is charged with its value
/// the way a cardholder would do it — a credit card authorization (the
/// simulator's test card), a sealed CREDIT announced by SIG5, the card's
/// sealed answer, capture and posting.
async fn charge_demo_card_once(wallet: &WalletConfig, image: &Path) -> anyhow::Result<()> {
    let balance = kessai_card::public_info(&std::fs::read(image)?)?.balance_minor;
    if balance > 0 {
        return Ok(());
    }
    let mut last = String::new();
    // The center starts in this same process: retry while it comes up.
    for _ in 0..50 {
        let card = kessai_wallet::PaymentCardInput::parse("4242424242424242", "12/40", "123")
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let amount = kessai_core::Money::new(DEMO_CARD_VALUE_MINOR, Currency::JPY)?;
        match kessai_wallet::charge(wallet.clone(), amount, card, |_| {}).await {
            Ok(outcome) => {
                eprintln!(
                    "demo card charged: balance {} (authorization {})",
                    outcome.balance_after, outcome.funding_ref
                );
                return Ok(());
            }
            Err(e) => {
                last = e.to_string();
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
    anyhow::bail!("charging the demo card: {last}")
}

/// The demo console's second operator: it may look, not change.
pub const DEMO_VIEWER: &str = "viewer";

/// Where the demo console's passwords are kept (mode 0600), one
/// `NAME ROLE PASSWORD` a line.
pub fn console_passwords(dir: &Path) -> PathBuf {
    dir.join("secrets").join("console-passwords")
}

/// On the first start the console has no operators: `admin` (approver)
/// and `viewer` get logins under random passwords, written to
/// [`console_passwords`].
async fn console_operators_once(center: &kessai_center::service::Center, dir: &Path) -> anyhow::Result<()> {
    use kessai_center::db::Role;
    let file = console_passwords(dir);
    if file.exists() {
        return Ok(());
    }
    let mut lines = String::new();
    for (name, role) in [("admin", Role::Approver), (DEMO_VIEWER, Role::Viewer)] {
        let mut bytes = [0u8; 12];
        center.random.generator().fill_bytes(&mut bytes);
        let password = hex::encode(bytes);
        crate::center::put_operator(center, name, role, &password).await?;
        lines.push_str(&format!("{name} {} {password}\n", role.as_str()));
    }
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(file.parent().unwrap_or(dir))?;
    let mut out = std::fs::OpenOptions::new();
    std::os::unix::fs::OpenOptionsExt::mode(out.write(true).create_new(true), 0o600);
    std::io::Write::write_all(&mut out.open(&file)?, lines.as_bytes())?;
    Ok(())
}

/// On the first start the wallet has no member: one applies, the operator
/// approves (its letter read from the outbox, as `kessai admin outbox`
/// would), the wallet makes a keystore under the demo passwords and
/// registers its key, then opens a virtual prepaid card paid by bank
/// transfer, and the simulated bank's camt.053 of the pool account, quoting
/// its reference, is imported: the whole of FIG. 3–4 and 13.
async fn demo_member_once(
    wallet: &WalletConfig,
    center: &kessai_center::service::Center,
    bank: &kessai_bsp::Bank,
) -> anyhow::Result<()> {
    use kessai_core::keyfile::Passphrase;
    use kessai_core::member_store::{Cost, seed_from};
    use kessai_core::messages::DisplayText;
    use kessai_core::messages::prepaid::FundingMethod;
    use kessai_core::messages::registration::MemberDetails;
    use kessai_core::random::Random as _;
    use kessai_wallet::member::MemberFile;

    if kessai_wallet::member::member_number(&wallet.data_dir).is_some() {
        return Ok(());
    }
    let store = MemberFile::in_dir(&wallet.data_dir);
    let passwords = || (Passphrase::new(DEMO_PASSWORD_A.into()), Passphrase::new(DEMO_PASSWORD_B.into()));
    let application = center.apply("general", "Hanako Yamada", "hanako@example.jp").await?;
    let approved = center
        .approve_application(&application.application_id, &kessai_center::console::Actor::api("kessai-up"))
        .await?;
    let outbox = center.outbox().await?;
    let letter = outbox.iter().find(|l| l.member == approved.member).context("the letter in the outbox")?;
    let code = letter
        .text
        .lines()
        .find_map(|l| l.strip_prefix("Your activation code: "))
        .context("the activation code in the letter")?
        .to_owned();
    center.letter_sent(&letter.letter_id, &kessai_center::console::Actor::api("kessai-up")).await?;
    if !store.exists() {
        let store = MemberFile::in_dir(&wallet.data_dir);
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let (a, b) = passwords();
            let mut entropy = [0u8; 32];
            OsRandom.fill_bytes(&mut entropy);
            store.create(&seed_from(&entropy, None), &a, Some(&b), Cost::default(), &mut OsRandom)?;
            Ok(())
        })
        .await??;
    }
    let details = MemberDetails::General {
        name: DisplayText::parse("Hanako Yamada")?,
        address: DisplayText::parse("1-1 Marunouchi, Chiyoda-ku, Tokyo")?,
        birth_date: "1990-04-01".into(),
    };
    let (a, b) = passwords();
    kessai_wallet::member::register(wallet, &store, (&a, Some(&b)), &approved.member, &code, details).await?;
    let w = kessai_wallet::Wallet::open(wallet.clone()).await?;
    let opened = {
        let store = MemberFile::in_dir(&wallet.data_dir);
        let w_key = tokio::task::spawn_blocking(move || -> anyhow::Result<kessai_core::keys::SigningKey> {
            let (a, b) = passwords();
            Ok(store.open(&a)?.signing_key(Some(&b))?)
        })
        .await??;
        let member = kessai_core::ids::PartyId::parse(&approved.member)?;
        let signer = (member, w_key);
        let amount = kessai_core::Money::new(DEMO_PREPAID_MINOR, Currency::JPY)?;
        let request = kessai_core::ids::RequestId::parse("demo-prepaid-open")?;
        w.prepaid_fund(&signer, request, None, amount, FundingMethod::BankTransfer, None).await?
    };
    w.records().close().await;
    let reference = opened.reference.clone().context("a transfer quotes a reference")?;
    // The member's transfer reaches the pool account, and another quoting
    // nothing (work for the console: in suspense); the center imports the
    // bank's statement (its own loop may have imported it first).
    let jpy = |minor: u64| kessai_core::Money::new(minor, Currency::JPY);
    let quoted = kessai_bank::rf::Reference::parse(&reference).map_err(|e| anyhow::anyhow!("{e}"))?;
    bank.deposit(jpy(DEMO_PREPAID_MINOR)?, Some(&quoted), "YAMADA HANAKO").await?;
    bank.deposit(jpy(DEMO_STRAY_MINOR)?, None, "SUZUKI ICHIRO").await?;
    fetch_statements(center).await?;
    let funding = center.db.funding_by_reference(&reference).await?.context("the demo funding")?;
    anyhow::ensure!(
        funding.status == kessai_center::prepaid::FundingStatus::Issued,
        "the demo transfer did not match: {:?}",
        funding.status
    );
    // And the member asks to add cash sent by registered mail (awaiting
    // its count).
    let w = kessai_wallet::Wallet::open(wallet.clone()).await?;
    let store = MemberFile::in_dir(&wallet.data_dir);
    let w_key = tokio::task::spawn_blocking(move || -> anyhow::Result<kessai_core::keys::SigningKey> {
        let (a, b) = passwords();
        Ok(store.open(&a)?.signing_key(Some(&b))?)
    })
    .await??;
    let signer = (kessai_core::ids::PartyId::parse(&approved.member)?, w_key);
    let cash = kessai_core::Money::new(DEMO_CASH_MINOR, Currency::JPY)?;
    let request = kessai_core::ids::RequestId::parse("demo-prepaid-cash")?;
    let card = kessai_core::ids::PrepaidId::parse(&opened.prepaid_id)?;
    w.prepaid_fund(&signer, request, Some(card), cash, FundingMethod::Cash, None).await?;
    // A bank deposit token (seed 002) for the demo card, now the member's:
    // asked for, deposited, issued from the pool's statement, and stored
    // on the card.
    let by = kessai_center::console::Actor::api("kessai-up");
    let demo_card = CardId::parse(DEMO_CARD_ID)?;
    let after = serde_json::json!({ "member": approved.member, "instruction_required": false });
    let trail = by.did("card_member", DEMO_CARD_ID, serde_json::Value::Null, after);
    let now = kessai_core::time::Clock::now(&kessai_core::time::SystemClock);
    anyhow::ensure!(
        center.db.link_card_member(&demo_card, Some(&approved.member), false, now, trail).await?,
        "the demo card is not active"
    );
    let terms = kessai_core::messages::prepaid::TokenTerms {
        refund_account: "0005-123-1-7654321".into(),
        card_ref: "last4:4242".into(),
        // The account's holder as the bank has it: an unredeemed token's
        // payback needs no operator.
        refund_holder: Some("ﾃﾞﾓ ｶｲｲﾝ".into()),
    };
    let amount = kessai_core::Money::new(DEMO_TOKEN_MINOR, Currency::JPY)?;
    let request = kessai_core::ids::RequestId::parse("demo-deposit-token")?;
    let token = w.deposit_token(&signer, request, demo_card, amount, terms).await?;
    // The bank holds the provider's key versions before the deposit makes
    // its token: the provider starts in this same process.
    let mut fetched = bank.fetch_keys().await;
    for _ in 0..50 {
        if bank.keyring().keys().next().is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        fetched = bank.fetch_keys().await;
    }
    fetched.context("the provider's token keys")?;
    let quoted = kessai_bank::rf::Reference::parse(&token.reference).map_err(|e| anyhow::anyhow!("{e}"))?;
    bank.deposit(amount, Some(&quoted), "YAMADA HANAKO").await?;
    fetch_statements(center).await?;
    let stored = w.token_session(&kessai_wallet::TokenSessionCreate::default()).await?;
    anyhow::ensure!(stored.stored == [token.token_id.clone()], "the demo token was not stored: {stored:?}");
    w.records().close().await;
    eprintln!("demo card holds deposit token {} of JPY {DEMO_TOKEN_MINOR} ({})", token.token_id, token.reference);
    eprintln!(
        "demo member {} registered; virtual prepaid card {} funded with JPY {DEMO_PREPAID_MINOR} by bank transfer ({reference})",
        approved.member, opened.prepaid_id
    );
    Ok(())
}

/// Imports the bank's statements of yesterday and today (a deposit booked
/// just before midnight is on yesterday's).
async fn fetch_statements(center: &kessai_center::service::Center) -> anyhow::Result<()> {
    let now = kessai_core::time::Clock::now(&kessai_core::time::SystemClock);
    for at in [now.saturating_sub_s(86_400), now] {
        let report = center.fetch_statement(&kessai_bank::Date::of(at).to_string()).await?;
        anyhow::ensure!(report.deferred == 0, "the bank or the provider did not answer: {report:?}");
    }
    Ok(())
}

pub fn run(dir: &Path, ports: Ports) -> anyhow::Result<()> {
    kessai_http::init_json_logs("kessai-up");
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let p = prepare(dir, ports).await?;
        let ca = p.dir.join("ca").join("ca.crt");
        let balance = match kessai_card::public_info(&std::fs::read(&p.card_image)?)?.balance_minor {
            0 => format!("being charged with JPY {DEMO_CARD_VALUE_MINOR} by credit card (SIG5)"),
            b => format!("balance JPY {b}"),
        };
        println!("kessai is up — data in {}", p.dir.display());
        println!();
        println!("  shop    {}/", p.store.public_url);
        println!("  wallet  http://{}/   (card {DEMO_CARD_ID}, {balance})", p.wallet.listen);
        println!(
            "  center  {}   (admin: kessai admin --center {} --ca-dir {})",
            p.center.public_url,
            p.center.public_url,
            p.dir.join("ca").display()
        );
        println!(
            "  csp     https://{}   (credit service provider, mutual TLS only: kessai csp --config {})",
            p.csp.listen,
            p.dir.join("csp.toml").display()
        );
        println!(
            "  bank    https://{}   (the pool account's bank, mutual TLS only: kessai bank --config {} deposit | keys)",
            p.bank.listen,
            p.dir.join("bank.toml").display()
        );
        println!(
            "  console {}/console   (operators' client certificates in {}; logins in {})",
            p.center.public_url,
            p.dir.join("ca").display(),
            console_passwords(&p.dir).display()
        );
        println!(
            "  wallet CLI: kessai wallet --config {} balance | history | tokens | pay BILL_URL",
            p.dir.join("wallet.toml").display()
        );
        println!(
            "  demo member: password A \"{DEMO_PASSWORD_A}\", password B \"{DEMO_PASSWORD_B}\"; its virtual prepaid card \
             (JPY {DEMO_PREPAID_MINOR}, by bank transfer) pays at the shop's \"virtual prepaid card\" button"
        );
        println!();
        println!("  The parties use TLS from a local CA; let your browser trust {}", ca.display());
        println!("  (or start Chromium with --ignore-certificate-errors for a quick look). Ctrl-C stops everything.");
        println!();
        for line in relaxed(&p) {
            println!("  {line}");
        }
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            crate::store::shutdown_signal().await;
            let _ = tx.send(true);
        });
        start(p, rx).await
    })
}
