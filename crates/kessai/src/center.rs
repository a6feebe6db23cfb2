//! `kessai center`: run the settlement center, initialise its keys, issue cards.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use kessai_center::config::CenterConfig;

#[derive(Subcommand, Debug)]
pub enum CenterCommand {
    /// Serve the center until Ctrl-C or SIGTERM (initialising missing keys first).
    Run {
        /// The center's TOML configuration (environment overrides KESSAI_CENTER_*).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Prepare this instance's keys, then exit. A new database: create the
    /// KEK, issuer master keys and signing key if missing and record their
    /// fingerprints in it. A database that has keys: generate nothing; this
    /// instance must hold them (copied with --keys-from).
    Init {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// A directory holding issuer-master-keys.sealed and center.key of
        /// an instance of the same center (and its KEK as kek.hex, unless
        /// this instance's kek_file or KESSAI_CENTER_KEK already has it),
        /// copied into this one's paths (mode 0600) before the check.
        #[arg(long, value_name = "DIR")]
        keys_from: Option<PathBuf>,
    },
    /// Issue a card: personalize an image with diversified keys, load its
    /// initial value through a secure CREDIT, register it and book the value.
    IssueCard {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The card image to create (mode 0600).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// 16 lowercase hex digits.
        #[arg(long)]
        card_id: String,
        /// The issuer master key version; default the newest the center
        /// holds.
        #[arg(long)]
        key_version: Option<u8>,
        #[arg(long, default_value = "JPY")]
        currency: String,
        /// Most value the card may hold, in minor units.
        #[arg(long)]
        max_balance: u64,
        /// Value put on the card now, in minor units.
        #[arg(long, default_value_t = 0)]
        initial_value: u64,
    },
    /// Add an issuer master key version (default one above the newest) to
    /// the sealed key file; copy the new file to every instance, then
    /// restart them. With [hsm]: `kessai center hsm generate --version N`.
    AddKeyVersion {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        #[arg(long)]
        version: Option<u8>,
    },
    /// Re-key a card at hand to an issuer master key version (default the
    /// newest): PUT KEY in a secure session under its current keys, then
    /// the registry. Safe to run again after an interruption.
    RekeyCard {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The card image.
        #[arg(long, value_name = "FILE")]
        image: PathBuf,
        #[arg(long)]
        to_version: Option<u8>,
    },
    /// Import a statement of the center's pool (bank) or postal account
    /// (camt.053, camt.054 or a Zengin transfer notice): each credit issues
    /// the prepaid funding it pays, or goes to suspense for an operator.
    /// Importing a statement again changes nothing.
    ImportStatement {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Whose statement: `bank` (bank transfers) or `postal`.
        #[arg(long, value_enum, default_value = "bank")]
        source: StatementSource,
        /// The statement file.
        file: PathBuf,
    },
    /// Import the pool account's statement of a day (default yesterday's and
    /// today's, UTC) from the bank (`[tokens] bank_url`). A running center imports
    /// yesterday's and today's itself every `statement_every_s`.
    FetchStatement {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// YYYY-MM-DD.
        #[arg(long)]
        day: Option<String>,
    },
    /// Pay stores: clearing runs, bank files, what the bank says, fees.
    #[command(subcommand)]
    Clearing(crate::clearing::ClearingCommand),
    /// Give an operator a console login (#22): its name (its client
    /// certificate's), a role and a password of at least 12 characters.
    /// An existing operator gets the new role and password. With
    /// --disable, its login is refused from now on and its sessions end.
    /// Recorded in the operator trail.
    Operator {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The operator, as its client certificate names it.
        #[arg(long)]
        name: String,
        /// viewer (reads), operator (works the queues) or approver (decides).
        #[arg(long, required_unless_present = "disable")]
        role: Option<String>,
        /// Disable the operator's login instead.
        #[arg(long, conflicts_with = "role")]
        disable: bool,
        /// Where the password comes from (never the command line).
        #[command(flatten)]
        password: crate::PassphraseSource,
    },
    /// Examine every collected card log against the books (the running
    /// center does so hourly): print what differs, record each difference
    /// once; or, with --resolve, close an open difference.
    Audit {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Resolve the difference with this id (`aud_…`) instead.
        #[arg(long, requires_all = ["by", "note"])]
        resolve: Option<String>,
        /// The operator resolving it.
        #[arg(long)]
        by: Option<String>,
        /// Why it is resolved (what was found and done).
        #[arg(long)]
        note: Option<String>,
        /// List resolved differences too.
        #[arg(long)]
        all: bool,
    },
    /// Show, or set with --accept, the purchase profiles a store accepts
    /// (PROTOCOL §5.1): `offer` (SIG2, 3 round trips), `confirmed` and
    /// `direct` (second embodiment, no SIG2, 2 round trips).
    Profiles {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        #[arg(long)]
        store: String,
        /// Comma-separated, e.g. `offer` for a store that requires SIG2.
        #[arg(long, value_delimiter = ',')]
        accept: Vec<String>,
    },
    /// The last step of rotating the center's signing key: the database
    /// records this instance's signing key as the center's, so instances
    /// holding only it start. Allowed only when this instance publishes the
    /// key recorded now (`published_keys`); README, "Rotating the center's
    /// signing key".
    PromoteSigningKey {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Issuer master keys in the PKCS#11 token of the configuration's
    /// `[hsm]` (user PIN from its `pin_file` or `pin_env`).
    #[command(subcommand)]
    Hsm(HsmCommand),
}

#[derive(Subcommand, Debug)]
pub enum HsmCommand {
    /// Import the master keys of the sealed key file (`master_keys`, opened
    /// with the KEK) into the token, sensitive and not extractable; then
    /// remove the file from every instance (shred it) and keep it only in
    /// the issuer's offline backup.
    Import {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The sealed key file, if not the configuration's `master_keys`.
        #[arg(long, value_name = "FILE")]
        from: Option<PathBuf>,
    },
    /// Generate a key version's master keys inside the token: they exist
    /// nowhere else (back the token up as its maker says).
    Generate {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        #[arg(long, default_value_t = 1)]
        version: u8,
    },
    /// Generate the center's Ed25519 signing key pair in the token under
    /// `[hsm] signing_key_label` (never extractable) and print its public
    /// JWK: publish it (`published_keys`), then switch to it as a rotation
    /// does (README, "Rotating keys").
    GenerateSigningKey {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// List the key versions in the token and their check values.
    List {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

#[derive(Copy, Clone, Debug, clap::ValueEnum)]
pub enum StatementSource {
    Bank,
    Postal,
}

/// Loads the configuration and prepares the instance's keys
/// (`kessai_center::app::init`).
fn load(
    runtime: &tokio::runtime::Runtime,
    path: &std::path::Path,
    keys_from: Option<&std::path::Path>,
) -> anyhow::Result<CenterConfig> {
    let config = CenterConfig::load(path).with_context(|| format!("loading {}", path.display()))?;
    runtime.block_on(kessai_center::app::init(&config, keys_from)).context("the center's keys")?;
    Ok(config)
}

pub fn run(command: CenterCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    match command {
        CenterCommand::Init { config, keys_from } => {
            let config = load(&runtime, &config, keys_from.as_deref())?;
            println!("center {} initialised in {}", config.party_id, config.data_dir.display());
            Ok(())
        }
        CenterCommand::Run { config } => {
            // The keys are prepared as `init` does, once: a sealed key's
            // passphrase is asked for once.
            let config = CenterConfig::load(&config).with_context(|| format!("loading {}", config.display()))?;
            kessai_http::init_json_logs("center");
            runtime.block_on(async move {
                eprintln!("center {} listening on {}", config.party_id, config.listen);
                kessai_center::app::run(config, crate::store::shutdown_signal()).await
            })
        }
        CenterCommand::IssueCard { config, out, card_id, key_version, currency, max_balance, initial_value } => {
            let config = load(&runtime, &config, None)?;
            let req = kessai_center::issue::IssueCard {
                image: &out,
                card_id: kessai_core::ids::CardId::parse(&card_id).context("--card-id")?,
                key_version,
                currency: kessai_core::Currency::parse(&currency).context("--currency")?,
                max_balance_minor: max_balance,
                initial_value_minor: initial_value,
            };
            let info = runtime.block_on(kessai_center::issue::issue_card(&config, &req))?;
            println!("issued card {} into {} (mode 0600)", info.card_id, out.display());
            println!("  balance {} {}, maximum {}", info.balance_minor, info.currency.as_str(), info.max_balance_minor);
            Ok(())
        }
        CenterCommand::Clearing(command) => crate::clearing::run(&runtime, command),
        CenterCommand::Operator { config, name, role, disable, password } => {
            let config = CenterConfig::load(&config).with_context(|| format!("loading {}", config.display()))?;
            if disable {
                let disabled = runtime.block_on(async {
                    let center = kessai_center::app::open(&config).await?;
                    let done = center.db.disable_operator(&name, "center-host", center.clock.now()).await;
                    center.db.close().await;
                    anyhow::Ok(done?)
                })?;
                anyhow::ensure!(disabled, "no enabled operator {name}");
                println!("operator {name} may no longer log in; its sessions are ended");
                return Ok(());
            }
            let role = role.unwrap_or_default();
            let role = kessai_center::db::Role::parse(&role)
                .with_context(|| format!("--role: no role {role:?} (viewer, operator, approver)"))?;
            let password = password.read()?.context("a password: --passphrase-env or --passphrase-file")?;
            runtime.block_on(async {
                let center = kessai_center::app::open(&config).await?;
                let done = put_operator(&center, &name, role, password.as_str()).await;
                center.db.close().await;
                done
            })?;
            println!("operator {name} may log in to the console as {}", role.as_str());
            Ok(())
        }
        CenterCommand::Audit { config, resolve, by, note, all } => {
            let config = CenterConfig::load(&config).with_context(|| format!("loading {}", config.display()))?;
            runtime.block_on(async {
                let center = kessai_center::app::open(&config).await?;
                let done = audit(&center, resolve, by, note, all).await;
                center.db.close().await;
                done
            })
        }
        CenterCommand::Profiles { config, store, accept } => {
            use kessai_core::profile::{Profile, Profiles};
            let config = CenterConfig::load(&config).with_context(|| format!("loading {}", config.display()))?;
            let store = kessai_core::ids::StoreId::parse(&store).context("--store")?;
            let chosen = accept
                .iter()
                .map(|p| {
                    Profile::parse(p).with_context(|| format!("--accept: no profile {p:?} (offer, confirmed, direct)"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let profiles = runtime.block_on(async {
                let center = kessai_center::app::open(&config).await?;
                let done = async {
                    anyhow::ensure!(center.db.store(&store).await?.is_some(), "store {store} is not registered");
                    if !chosen.is_empty() {
                        let set = Profiles::of(&chosen).context("--accept: at least one profile")?;
                        center.db.set_store_profiles(&store, set, center.clock.now()).await?;
                    }
                    Ok(center.db.store_profiles(&store).await?)
                }
                .await;
                center.db.close().await;
                done
            })?;
            println!("{store} accepts purchases in: {}", profiles.to_text());
            Ok(())
        }
        CenterCommand::Hsm(command) => hsm(command),
        CenterCommand::AddKeyVersion { config, version } => {
            let config = CenterConfig::load(&config).with_context(|| format!("loading {}", config.display()))?;
            let added = kessai_center::app::add_master_key_version(&config, version)?;
            println!(
                "added issuer master key version {added} to {}; copy it to every instance and restart them: new cards \
                 get version {added}, and `kessai center rekey-card` moves cards to it",
                config.resolve(&config.master_keys).display()
            );
            Ok(())
        }
        CenterCommand::RekeyCard { config, image, to_version } => {
            let config = CenterConfig::load(&config).with_context(|| format!("loading {}", config.display()))?;
            let done = runtime.block_on(kessai_center::issue::rekey_card(&config, &image, to_version))?;
            let how = if done.card_had_them { " (the card had them already; the registry now says so)" } else { "" };
            println!("card {} re-keyed from key version {} to {}{how}", image.display(), done.from, done.to);
            Ok(())
        }
        CenterCommand::PromoteSigningKey { config } => {
            let config = CenterConfig::load(&config).with_context(|| format!("loading {}", config.display()))?;
            let kid = runtime.block_on(kessai_center::app::promote_signing_key(&config))?;
            println!("the center's database records signing key {kid}");
            Ok(())
        }
        CenterCommand::FetchStatement { config, day } => {
            let config = CenterConfig::load(&config).with_context(|| format!("loading {}", config.display()))?;
            let days = match day {
                Some(d) => vec![d],
                // Yesterday's too: a deposit booked before midnight.
                None => {
                    let now = kessai_core::time::Clock::now(&kessai_core::time::SystemClock);
                    [now.saturating_sub_s(86_400), now].map(|t| kessai_bank::Date::of(t).to_string()).to_vec()
                }
            };
            runtime.block_on(async {
                let center = kessai_center::app::open(&config).await?;
                let mut reports = Vec::new();
                for day in &days {
                    reports.push((day, center.fetch_statement(day).await));
                }
                center.db.close().await;
                let mut failed = Vec::new();
                for (day, report) in reports {
                    match report {
                        Ok(r) => {
                            println!(
                                "statement {} ({day}): {} matched, {} to suspense, {} to review, {} imported before, {} deferred",
                                r.statement, r.matched, r.suspense, r.review, r.already_imported, r.deferred
                            );
                            if r.deferred > 0 {
                                failed.push(format!("{day}: {} credits deferred", r.deferred));
                            }
                        }
                        Err(e) => failed.push(format!("{day}: {e}")),
                    }
                }
                anyhow::ensure!(failed.is_empty(), "fetch again: {}", failed.join("; "));
                anyhow::Ok(())
            })
        }
        CenterCommand::ImportStatement { config, source, file } => {
            let config = CenterConfig::load(&config).with_context(|| format!("loading {}", config.display()))?;
            let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let source = match source {
                StatementSource::Bank => kessai_center::prepaid::StatementSource::Bank,
                StatementSource::Postal => kessai_center::prepaid::StatementSource::Postal,
            };
            let report = runtime.block_on(async {
                let center = kessai_center::app::open(&config).await?;
                let report = center.import_statement(&bytes, source).await;
                center.db.close().await;
                report.with_context(|| format!("importing {}", file.display()))
            })?;
            println!(
                "statement {} ({}): {} matched, {} to suspense, {} to review, {} imported before, {} deferred, {} debits",
                report.statement,
                report.format,
                report.matched,
                report.suspense,
                report.review,
                report.already_imported,
                report.deferred,
                report.debits
            );
            anyhow::ensure!(
                report.deferred == 0,
                "{} credits deferred: the bank or the credit service provider did not answer; import the file again",
                report.deferred
            );
            Ok(())
        }
    }
}

/// `kessai center hsm`.
fn hsm(command: HsmCommand) -> anyhow::Result<()> {
    use kessai_center::security::IssuerKeys as _;
    let path = match &command {
        HsmCommand::Import { config, .. }
        | HsmCommand::Generate { config, .. }
        | HsmCommand::GenerateSigningKey { config }
        | HsmCommand::List { config } => config,
    };
    let config = CenterConfig::load(path).with_context(|| format!("loading {}", path.display()))?;
    let hsm = config.hsm.as_ref().with_context(|| format!("{} has no [hsm] section", path.display()))?;
    let pin = hsm.pin()?;
    let created = match command {
        HsmCommand::Import { from, .. } => {
            let mut source = config.clone();
            if let Some(from) = from {
                source.master_keys = from;
            }
            let masters = kessai_center::app::master_keys(&source)?;
            kessai_center::hsm::import(hsm, &pin, &masters)?
        }
        HsmCommand::Generate { version, .. } => vec![kessai_center::hsm::generate(hsm, &pin, version)?],
        HsmCommand::GenerateSigningKey { .. } => {
            let public = kessai_center::hsm::generate_signing_key(hsm, &pin)?;
            let jwk = public.to_jwk(kessai_core::keys::Validity::always());
            println!("{}", serde_json::to_string(&jwk)?);
            eprintln!("made the center's signing key in the token; kid {}", public.kid());
            return Ok(());
        }
        HsmCommand::List { .. } => Vec::new(),
    };
    for c in &created {
        println!("key version {}: created {}", c.version, c.labels.join(", "));
    }
    let keys = kessai_center::hsm::Pkcs11Keys::open(hsm, &pin)?;
    println!("{}", keys.location());
    for (version, values) in keys.check_values()? {
        let [enc, mac, dek] = values.map(|v| hex::encode(&v[..5]));
        println!("key version {version}: check values ENC {enc}, MAC {mac}, DEK {dek}");
    }
    Ok(())
}

/// `kessai center audit`: a run, or resolving one difference.
async fn audit(
    center: &kessai_center::service::Center,
    resolve: Option<String>,
    by: Option<String>,
    note: Option<String>,
    all: bool,
) -> anyhow::Result<()> {
    let now = center.clock.now();
    if let Some(id) = resolve {
        let (by, note) = (by.unwrap_or_default(), note.unwrap_or_default());
        anyhow::ensure!(!by.trim().is_empty() && !note.trim().is_empty(), "--by and --note must say who and why");
        let by = kessai_center::console::Actor { name: by, role: "cli".into() };
        anyhow::ensure!(center.db.resolve_difference(&id, &by, &note, now).await?, "no open difference {id}");
        println!("{id} resolved by {}", by.name);
        return Ok(());
    }
    let report = center.audit(now).await?;
    println!(
        "examined {} collected log records of {} cards: {} differences, {} new",
        report.records,
        report.cards,
        report.differences.len(),
        report.new
    );
    let rows = center.db.differences(!all, kessai_center::db::MAX_LIST).await?;
    for d in &rows {
        println!("{} {:<8} {} {:<16} counter {:>6}  {}", d.id, d.status, d.card_id, d.kind, d.counter, d.detail);
    }
    Ok(())
}

/// Gives operator `name` a console login in `role` (recorded in the trail
/// as done on the center's host).
pub async fn put_operator(
    center: &kessai_center::service::Center,
    name: &str,
    role: kessai_center::db::Role,
    password: &str,
) -> anyhow::Result<()> {
    let mut random = center.random.generator();
    let account = kessai_center::console::operator_account(name, role, password, random.as_mut())
        .map_err(|why| anyhow::anyhow!(why))?;
    center.db.put_operator(&account, "center-host", center.clock.now()).await?;
    Ok(())
}
