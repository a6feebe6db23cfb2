//! `kessai`: every party of the settlement system in one binary.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod bench;
mod keys;
mod pki;

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
    /// Make a new local CA in DIR (ca.crt, ca.key).
    Init {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// Issue a server or client certificate from the CA in DIR.
    Issue {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// A TLS server certificate for NAME (DNS name or IP address).
        #[arg(long, value_name = "NAME", conflicts_with = "client", required_unless_present = "client")]
        server: Option<String>,
        /// A client certificate for mutual TLS, identifying NAME.
        #[arg(long, value_name = "NAME")]
        client: Option<String>,
        /// More names the server answers to (repeatable).
        #[arg(long, value_name = "NAME")]
        san: Vec<String>,
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
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Keys(KeysCommand::Generate { out, passphrase, not_before, not_after }) => {
            keys::generate(&out, &passphrase, not_before, not_after)
        }
        Command::Keys(KeysCommand::Jwks { files, passphrase }) => keys::jwks(&files, &passphrase),
        Command::Pki(PkiCommand::Init { dir }) => pki::init(&dir),
        Command::Pki(PkiCommand::Issue { dir, server, client, san }) => pki::issue(&dir, server, client, &san),
        Command::Bench(BenchCommand::Jws { iterations }) => bench::jws(iterations),
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
