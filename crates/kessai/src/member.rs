//! `kessai wallet member`: the member keystore (seed 003/004 FIG. 10–11).
//! Passwords come from a prompt without echo, an environment variable or
//! a file; never from the command line.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use kessai_core::keyfile::Passphrase;
use kessai_core::member_store::{Cost, Variant, seed_from};
use kessai_core::random::{OsRandom, Random as _};
use kessai_wallet::member::MemberFile;
use zeroize::Zeroizing;

#[derive(Subcommand, Debug)]
pub enum MemberCommand {
    /// Make the keystore: a new signing key under password B, and that
    /// with the (empty) purchase history under password A.
    Init {
        /// The [0028] variant: the signing key under password A alone.
        #[arg(long)]
        password_a_only: bool,
        /// Mix something you type into the key's randomness (S3–S4).
        #[arg(long)]
        seed_text: bool,
        #[command(flatten)]
        a: PasswordA,
        #[command(flatten)]
        b: PasswordB,
    },
    /// The member's verification key and what the keystore holds (password A).
    Show {
        #[command(flatten)]
        a: PasswordA,
    },
    /// The member's purchase history, offline (password A).
    History {
        #[command(flatten)]
        a: PasswordA,
    },
}

#[derive(Args, Debug)]
pub struct PasswordA {
    /// Environment variable holding password A.
    #[arg(long, conflicts_with = "password_a_file")]
    password_a_env: Option<String>,
    /// File holding password A (first line).
    #[arg(long)]
    password_a_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct PasswordB {
    /// Environment variable holding password B.
    #[arg(long, conflicts_with = "password_b_file")]
    password_b_env: Option<String>,
    /// File holding password B (first line).
    #[arg(long)]
    password_b_file: Option<PathBuf>,
}

pub fn run(data_dir: &Path, command: MemberCommand) -> anyhow::Result<()> {
    let store = MemberFile::in_dir(data_dir);
    match command {
        MemberCommand::Init { password_a_only, seed_text, a, b } => {
            if store.exists() {
                bail!("{} exists: a member keystore is never overwritten", store.path().display());
            }
            let a = password("A", a.password_a_env.as_deref(), a.password_a_file.as_deref(), true)?;
            let b = match password_a_only {
                true => None,
                false => Some(password("B", b.password_b_env.as_deref(), b.password_b_file.as_deref(), true)?),
            };
            if b.as_ref().is_some_and(|b| b.same_as(&a)) {
                bail!("passwords A and B must differ");
            }
            let typed = match seed_text {
                true => Some(Zeroizing::new(
                    rpassword::prompt_password("Type anything to mix into the key's randomness: ")
                        .context("reading the text")?,
                )),
                false => None,
            };
            let mut randomness = Zeroizing::new([0u8; 32]);
            OsRandom.fill_bytes(&mut randomness[..]);
            let seed = seed_from(&randomness, typed.as_deref().map(String::as_str));
            let public = store.create(&seed, &a, b.as_ref(), Cost::default(), &mut OsRandom)?;
            println!("member keystore {}", store.path().display());
            println!("verification key {}", public.kid());
            println!("signing key under {}", if b.is_some() { "passwords A and B" } else { "password A only" });
            Ok(())
        }
        MemberCommand::Show { a } => {
            let a = password("A", a.password_a_env.as_deref(), a.password_a_file.as_deref(), false)?;
            let opened = store.open(&a)?;
            println!("member keystore {}", store.path().display());
            println!("verification key {}", opened.public().kid());
            println!("kind             ed25519");
            let variant = match opened.variant() {
                Variant::TwoPasswords => "passwords A and B",
                _ => "password A only",
            };
            println!("signing key      under {variant}");
            println!("purchases        {}", opened.history.len());
            Ok(())
        }
        MemberCommand::History { a } => {
            let a = password("A", a.password_a_env.as_deref(), a.password_a_file.as_deref(), false)?;
            let opened = store.open(&a)?;
            if opened.history.is_empty() {
                println!("no purchases recorded");
            }
            for e in &opened.history {
                println!(
                    "{}  {:<20} {:<24} {:>14}  {}",
                    e.at,
                    e.store,
                    e.order_id,
                    e.amount.to_string(),
                    e.settlement_id
                );
            }
            Ok(())
        }
    }
}

/// Password `which`: from the environment variable, the file, or a prompt
/// without echo (asked twice when `confirm`). An empty one is refused.
fn password(which: &str, env: Option<&str>, file: Option<&Path>, confirm: bool) -> anyhow::Result<Passphrase> {
    let text = match (env, file) {
        (Some(var), _) => {
            Zeroizing::new(std::env::var(var).with_context(|| format!("environment variable {var} is not set"))?)
        }
        (None, Some(path)) => {
            let all =
                Zeroizing::new(std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?);
            Zeroizing::new(all.lines().next().unwrap_or_default().to_owned())
        }
        (None, None) => {
            let first =
                Zeroizing::new(rpassword::prompt_password(format!("Password {which}: ")).with_context(|| {
                    format!(
                        "no password {which}: give --password-{}-env or a file, or run at a terminal",
                        which.to_lowercase()
                    )
                })?);
            if confirm {
                let again = Zeroizing::new(rpassword::prompt_password(format!("Password {which} again: "))?);
                if *again != *first {
                    bail!("the two entries of password {which} differ");
                }
            }
            first
        }
    };
    if text.is_empty() {
        bail!("password {which} is empty");
    }
    Ok(Passphrase::new(String::clone(&text)))
}
