//! `kessai`: every party of the settlement system in one binary.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod admin;
mod bank;
mod bench;
mod bench_center;
mod bench_clearing;
mod bench_csp;
mod bench_prepaid;
mod card;
mod center;
mod clearing;
mod csp;
mod demo;
mod keys;
mod member;
mod pg_cluster;
mod pki;
mod prepaid;
mod store;
mod up;
mod wallet;

#[derive(Parser, Debug)]
#[command(name = "kessai", version, about = "kessai (決済): stored-value IC card settlement")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Signing keys: generate, publish as JWKS.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The local certificate authority for TLS and mutual TLS.
    #[command(subcommand)]
    Pki(PkiCommand),
    /// Emulated IC cards: personalize, inspect, serve to PC/SC.
    #[command(subcommand)]
    Card(CardCommand),
    /// Every party on one machine: center, mall and wallet, with a demo card that holds value.
    Up {
        /// Where the data lives (kept across restarts).
        #[arg(long, value_name = "DIR", default_value = "kessai-data")]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 8440)]
        center_port: u16,
        #[arg(long, default_value_t = 8443)]
        store_port: u16,
        #[arg(long, default_value_t = 8480)]
        wallet_port: u16,
        /// The credit service provider's port.
        #[arg(long, default_value_t = 8450)]
        csp_port: u16,
        /// The bank service provider's port (mutual TLS).
        #[arg(long, default_value_t = 8451)]
        bank_port: u16,
    },
    /// A complete purchase with no browser, against `up`'s parties in this process; prints a transcript.
    Demo {
        /// Purchases to make; with more than one, prints p50 and p99 of the purchase time.
        #[arg(long, default_value_t = 1, value_name = "N")]
        repeat: u32,
    },
    /// The settlement center (application server, security server, registry, ledger).
    #[command(subcommand)]
    Center(center::CenterCommand),
    /// Administer a center over its admin API (mutual TLS with the admin certificate).
    Admin(admin::AdminArgs),
    /// The bank service provider (the pool account, its deposits and
    /// statements, the deposit tokens it makes), and a writer of simulated
    /// statement files.
    Bank {
        /// The bank's TOML configuration (every command but `statement`).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: bank::BankCommand,
    },
    /// The credit service provider: deposit token keys, their delivery to the bank, its register.
    Csp {
        /// The provider's TOML configuration.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        #[command(subcommand)]
        command: csp::CspCommand,
    },
    /// The cardholder's wallet: local web UI and CLI.
    Wallet {
        /// The wallet's TOML configuration.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        #[command(subcommand)]
        command: wallet::WalletCommand,
    },
    /// The web shop / mall (member stores, signed bills, completions, downloads).
    Store {
        /// The store's TOML configuration (environment overrides KESSAI_STORE_*).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Without one, serve the mall.
        #[command(subcommand)]
        action: Option<store::StoreAction>,
    },
    /// Benchmarks that print figures.
    #[command(subcommand)]
    Bench(BenchCommand),
}

/// Where a passphrase comes from. Never the command line, where other
/// users could read it from the process list.
#[derive(Args, Debug, Default)]
struct PassphraseSource {
    /// Read the passphrase from this environment variable.
    #[arg(long, value_name = "VAR", conflicts_with = "passphrase_file")]
    passphrase_env: Option<String>,
    /// Read the passphrase from the first line of this file.
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// Write a new Ed25519 signing key (PKCS#8 PEM, mode 0600) and print its public JWK.
    Generate {
        /// The key file to create; an existing file is never overwritten.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        passphrase: PassphraseSource,
        /// First moment (Unix seconds) the key may be used, for rotation.
        #[arg(long, value_name = "UNIX_S")]
        not_before: Option<u64>,
        /// Last moment (Unix seconds) the key may be used.
        #[arg(long, value_name = "UNIX_S")]
        not_after: Option<u64>,
    },
    /// Seal a plain key file under a passphrase into a new file (the
    /// center's center.key, a mall's key): the same key, Argon2id and
    /// XChaCha20-Poly1305; then replace the plain file with it and shred
    /// the plain one.
    Seal {
        /// The plain key file.
        #[arg(long = "in", value_name = "FILE")]
        input: PathBuf,
        /// The sealed file to create; an existing file is never overwritten.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        passphrase: PassphraseSource,
    },
    /// Print a JWKS for public JWK files and/or private key files.
    Jwks {
        /// JWK (JSON) or PEM key files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        passphrase: PassphraseSource,
    },
}

#[derive(Subcommand, Debug)]
enum PkiCommand {
    /// Make a new local CA in DIR (ca.crt; its key in DIR/ca.key, or apart
    /// with --ca-key).
    Init {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        #[command(flatten)]
        key: pki::CaKey,
    },
    /// Issue a server or client certificate from the CA in DIR.
    Issue {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        #[command(flatten)]
        key: pki::CaKey,
        /// A TLS server certificate for NAME (DNS name or IP address).
        #[arg(long, value_name = "NAME", conflicts_with = "client", required_unless_present = "client")]
        server: Option<String>,
        /// A client certificate for mutual TLS, identifying NAME.
        #[arg(long, value_name = "NAME", requires = "party")]
        client: Option<String>,
        /// The party a client certificate acts as: center, store, operator
        /// (the admin API) or monitor (/metrics).
        #[arg(long, value_name = "PARTY", requires = "client")]
        party: Option<String>,
        /// More names the server answers to (repeatable).
        #[arg(long, value_name = "NAME")]
        san: Vec<String>,
    },
    /// Revoke the certificate issued for NAME: into the CA's revocation
    /// list (DIR/ca.crl), which the center and stores load when they start;
    /// its files move to DIR/revoked/, so NAME can be issued again.
    Revoke {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        #[command(flatten)]
        key: pki::CaKey,
        #[arg(long, value_name = "NAME")]
        name: String,
        /// key-compromise, superseded, affiliation-changed,
        /// cessation-of-operation or unspecified.
        #[arg(long, default_value = "unspecified")]
        reason: String,
    },
}

#[derive(Subcommand, Debug)]
enum CardCommand {
    /// Write new issuer master keys (JSON, hex, mode 0600) for diversification.
    MasterKeys {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Make a new card image: id, keys, currency, maximum balance; balance 0.
    Personalize {
        /// The image file to create (mode 0600; never overwritten).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// The card id: 16 lowercase hex digits.
        #[arg(long, value_name = "HEX")]
        card_id: String,
        /// ISO 4217 currency of the card's value.
        #[arg(long, default_value = "JPY")]
        currency: String,
        /// Most value the card may hold, in minor units.
        #[arg(long, value_name = "MINOR")]
        max_balance: u64,
        /// SCP03 key version number (1 to 127).
        #[arg(long, default_value_t = 1)]
        key_version: u8,
        /// Diversify the static keys from these issuer master keys.
        #[arg(long, value_name = "FILE", conflicts_with = "static_keys", required_unless_present = "static_keys")]
        master_keys: Option<PathBuf>,
        /// Use these static keys as they are.
        #[arg(long, value_name = "FILE")]
        static_keys: Option<PathBuf>,
    },
    /// Show a card image's public data (never its keys).
    Info {
        #[arg(long, value_name = "FILE")]
        image: PathBuf,
    },
    /// Serve a card image to a vpcd (vsmartcard) reader, so PC/SC software sees it.
    Serve {
        #[arg(long, value_name = "FILE")]
        image: PathBuf,
        /// The vpcd to connect to, e.g. 127.0.0.1:35963.
        #[arg(long, value_name = "HOST:PORT")]
        vpcd: String,
        /// Skip fsync after writes (benchmarks only: a power cut may lose the last transaction).
        #[arg(long)]
        no_fsync: bool,
    },
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Sign/s and verify/s of every message kind next to raw Ed25519 verify/s.
    Jws {
        /// Operations per measurement.
        #[arg(long, default_value_t = 20_000)]
        iterations: u32,
    },
    /// Ledger transfers/s at batch sizes 1, 10, 100, 1000 on SQLite and PostgreSQL, next to pgbench.
    Ledger {
        /// Seconds per batch size.
        #[arg(long, default_value_t = 3)]
        seconds: u64,
        /// A PostgreSQL URL to measure too (default: KESSAI_TEST_DATABASE_URL, as set by scripts/with-postgres).
        #[arg(long, value_name = "URL")]
        postgres: Option<String>,
        /// Directory of pgbench (default: KESSAI_TEST_PG_BIN).
        #[arg(long, value_name = "DIR")]
        pg_bin: Option<PathBuf>,
    },
    /// Settlements/s and latency of the center process over HTTPS, with in-process wallets and cards.
    Center(bench_center::Options),
    /// The credit service provider's redemptions/s and latency over loopback mutual TLS (#21).
    Csp {
        #[arg(long, default_value_t = 5_000)]
        redemptions: u32,
        /// Calls in flight at once.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// The bank's tokens made of deposits, /s and latency over loopback mutual TLS, and its statement in pages (#21).
    Bank {
        #[arg(long, default_value_t = 5_000)]
        seals: u32,
        /// Calls in flight at once.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// One clearing run over many posted settlements for many stores: its time and peak memory.
    Clearing {
        #[arg(long, default_value_t = 1_000_000)]
        settlements: u64,
        #[arg(long, default_value_t = 10_000)]
        stores: u32,
        /// SQLite in a temporary directory, or a throwaway PostgreSQL cluster.
        #[arg(long, value_enum, default_value = "sqlite")]
        database: bench_center::Database,
    },
    /// Payments/s from virtual prepaid cards (one request a payment, no card round trips).
    Prepaid {
        /// Members paying back to back, each from its own prepaid card.
        #[arg(long, default_value_t = 64)]
        members: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, value_enum, default_value = "sqlite")]
        database: bench_center::Database,
        /// Center instances (more than one needs --database postgres).
        #[arg(long, default_value_t = 1)]
        instances: usize,
        /// Where the center processes' log goes (default: discarded).
        #[arg(long)]
        center_log: Option<PathBuf>,
    },
    /// Full secure DEBIT sessions per second, in-process and over vpcd, with and without fsync.
    Card {
        /// Sessions per run without fsync (runs with fsync do a tenth).
        #[arg(long, default_value_t = 5_000)]
        sessions: usize,
    },
}

/// A purchase profile named on the command line.
pub(crate) fn parse_profile(s: &str) -> Result<kessai_core::profile::Profile, String> {
    kessai_core::profile::Profile::parse(s).ok_or_else(|| format!("{s:?}: offer, confirmed or direct"))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Keys(KeysCommand::Seal { input, out, passphrase }) => keys::seal(&input, &out, &passphrase),
        Command::Keys(KeysCommand::Generate { out, passphrase, not_before, not_after }) => {
            keys::generate(&out, &passphrase, not_before, not_after)
        }
        Command::Keys(KeysCommand::Jwks { files, passphrase }) => keys::jwks(&files, &passphrase),
        Command::Pki(PkiCommand::Init { dir, key }) => pki::init(&key.ca(&dir)),
        Command::Pki(PkiCommand::Issue { dir, key, server, client, party, san }) => {
            pki::issue(&key.ca(&dir), server, client.zip(party), &san)
        }
        Command::Pki(PkiCommand::Revoke { dir, key, name, reason }) => pki::revoke(&key.ca(&dir), &name, &reason),
        Command::Card(c) => run_card(c),
        Command::Store { config, action: None } => store::run(&config),
        Command::Store { config, action: Some(action) } => store::act(&config, action),
        Command::Center(c) => center::run(c),
        Command::Admin(args) => admin::run(args),
        Command::Bank { config, command } => bank::run(config.as_deref(), command),
        Command::Csp { config, command } => csp::run(&config, command),
        Command::Up { data_dir, center_port, store_port, wallet_port, csp_port, bank_port } => {
            let ports = up::Ports {
                center: center_port,
                store: store_port,
                wallet: wallet_port,
                csp: csp_port,
                bank: bank_port,
            };
            up::run(&data_dir, ports)
        }
        Command::Demo { repeat } => demo::run(repeat),
        Command::Wallet { config, command } => wallet::run(&config, command),
        Command::Bench(BenchCommand::Jws { iterations }) => bench::jws(iterations),
        Command::Bench(BenchCommand::Card { sessions }) => card::bench(sessions),
        Command::Bench(BenchCommand::Center(options)) => bench_center::run(&options),
        Command::Bench(BenchCommand::Csp { redemptions, concurrency }) => bench_csp::run(redemptions, concurrency),
        Command::Bench(BenchCommand::Bank { seals, concurrency }) => bench_csp::run_bank(seals, concurrency),
        Command::Bench(BenchCommand::Ledger { seconds, postgres, pg_bin }) => bench::ledger(seconds, postgres, pg_bin),
        Command::Bench(BenchCommand::Clearing { settlements, stores, database }) => {
            bench_clearing::run(settlements, stores, database)
        }
        Command::Bench(BenchCommand::Prepaid { members, seconds, database, instances, center_log }) => {
            bench_prepaid::run(members, seconds, database, instances, center_log.as_deref())
        }
    }
}

fn run_card(command: CardCommand) -> anyhow::Result<()> {
    match command {
        CardCommand::MasterKeys { out } => card::generate_master_keys(&out),
        CardCommand::Personalize { out, card_id, currency, max_balance, key_version, master_keys, static_keys } => {
            card::personalize(&card::PersonalizeArgs {
                out: &out,
                card_id: &card_id,
                currency: &currency,
                max_balance_minor: max_balance,
                key_version,
                master_keys: master_keys.as_deref(),
                static_keys: static_keys.as_deref(),
            })
        }
        CardCommand::Info { image } => card::info(&image),
        CardCommand::Serve { image, vpcd, no_fsync } => card::serve(&image, &vpcd, no_fsync),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kessai: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
