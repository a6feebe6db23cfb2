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
    /// Change password A, password B, or both, without registering again:
    /// the key and the history stay.
    Passwd {
        /// Change password A.
        #[arg(long)]
        change_a: bool,
        /// Change password B.
        #[arg(long)]
        change_b: bool,
        #[command(flatten)]
        a: PasswordA,
        #[command(flatten)]
        b: PasswordB,
        /// Environment variable holding the new password A.
        #[arg(long, conflicts_with = "new_password_a_file")]
        new_password_a_env: Option<String>,
        /// File holding the new password A (first line).
        #[arg(long)]
        new_password_a_file: Option<PathBuf>,
        /// Environment variable holding the new password B.
        #[arg(long, conflicts_with = "new_password_b_file")]
        new_password_b_env: Option<String>,
        /// File holding the new password B (first line).
        #[arg(long)]
        new_password_b_file: Option<PathBuf>,
    },
    /// Register with the center (step ⑦): the member number and activation
    /// code from the letter, the details, and the verification key, signed
    /// with the signing key (passwords A and B) and sent encrypted. With
    /// `--later`, kept under password A until `kessai wallet member send`
    /// ([0023], the first method).
    Register {
        /// Sign it now, keep it in the keystore, send it later (offline).
        #[arg(long)]
        later: bool,
        /// The member number from the letter (`m-…`).
        #[arg(long)]
        member: String,
        /// Environment variable holding the activation code.
        #[arg(long, conflicts_with = "code_file")]
        code_env: Option<String>,
        /// File holding the activation code (first line).
        #[arg(long)]
        code_file: Option<PathBuf>,
        /// `general` (a person) or `store` (a business).
        #[arg(long, default_value = "general")]
        kind: String,
        /// Your name, or the business's.
        #[arg(long)]
        name: String,
        #[arg(long)]
        address: String,
        /// A general member's date of birth, YYYY-MM-DD.
        #[arg(long)]
        birth_date: Option<String>,
        /// A store member's bank account, for its payouts.
        #[arg(long)]
        bank_account: Option<String>,
        #[command(flatten)]
        a: PasswordA,
        #[command(flatten)]
        b: PasswordB,
    },
    /// Replace the registered key (PROTOCOL §10.5): a new key, signed over
    /// by the current one (passwords A and B) and entered by the center;
    /// the keystore then holds the new key under the same passwords, with
    /// the history.
    ReplaceKey {
        /// Finish a replacement that was not answered (password A).
        #[arg(long)]
        resume: bool,
        /// Mix something you type into the new key's randomness (S3–S4).
        #[arg(long, conflicts_with = "resume")]
        seed_text: bool,
        #[command(flatten)]
        a: PasswordA,
        #[command(flatten)]
        b: PasswordB,
    },
    /// Send the registration kept by `register --later` (password A), or
    /// discard it.
    Send {
        /// Remove the kept registration without sending it.
        #[arg(long)]
        discard: bool,
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

pub fn run(
    config: &kessai_wallet::WalletConfig,
    runtime: &tokio::runtime::Runtime,
    command: MemberCommand,
) -> anyhow::Result<()> {
    let store = MemberFile::in_dir(&config.data_dir);
    match command {
        MemberCommand::Passwd {
            change_a,
            change_b,
            a,
            b,
            new_password_a_env,
            new_password_a_file,
            new_password_b_env,
            new_password_b_file,
        } => {
            if !change_a && !change_b {
                bail!("give --change-a, --change-b or both");
            }
            let a = password("A", a.password_a_env.as_deref(), a.password_a_file.as_deref(), false)?;
            let new_a = match change_a {
                true => Some(password("A (new)", new_password_a_env.as_deref(), new_password_a_file.as_deref(), true)?),
                false => None,
            };
            let b = match change_b {
                true => Some((
                    password("B", b.password_b_env.as_deref(), b.password_b_file.as_deref(), false)?,
                    password("B (new)", new_password_b_env.as_deref(), new_password_b_file.as_deref(), true)?,
                )),
                false => None,
            };
            store.change_passwords(&a, new_a.as_ref(), b.as_ref().map(|(old, new)| (old, new)), &mut OsRandom)?;
            println!("passwords changed; the key and the history are as they were");
            Ok(())
        }
        MemberCommand::ReplaceKey { resume, seed_text, a, b } => {
            let a = password("A", a.password_a_env.as_deref(), a.password_a_file.as_deref(), false)?;
            let replaced = match resume {
                true => runtime.block_on(kessai_wallet::member::finish_key_replacement(config, &store, &a))?,
                false => {
                    let member = kessai_wallet::member::member_number(&config.data_dir).with_context(|| {
                        let number = config.data_dir.join(kessai_wallet::member::NUMBER_FILE);
                        format!("{}: no member number; register first", number.display())
                    })?;
                    let b = match store.open(&a)?.variant() {
                        Variant::TwoPasswords => {
                            Some(password("B", b.password_b_env.as_deref(), b.password_b_file.as_deref(), false)?)
                        }
                        _ => None,
                    };
                    let seed = new_seed(seed_text)?;
                    runtime.block_on(kessai_wallet::member::replace_key(
                        config,
                        &store,
                        (&a, b.as_ref()),
                        &member,
                        &seed,
                    ))?
                }
            };
            println!("member {}", replaced["member"].as_str().unwrap_or_default());
            println!("verification key {} (replaced)", replaced["kid"].as_str().unwrap_or_default());
            Ok(())
        }
        MemberCommand::Send { discard, a } => {
            let a = password("A", a.password_a_env.as_deref(), a.password_a_file.as_deref(), false)?;
            if discard {
                match kessai_wallet::member::discard_kept_registration(&store, &a)? {
                    true => println!("the kept registration is discarded"),
                    false => println!("no registration was kept"),
                }
                return Ok(());
            }
            let entered = runtime.block_on(kessai_wallet::member::send_kept_registration(config, &store, &a))?;
            println!("registered as member {}", entered["member"].as_str().unwrap_or_default());
            println!("verification key {}", entered["kid"].as_str().unwrap_or_default());
            Ok(())
        }
        MemberCommand::Register {
            later,
            member,
            code_env,
            code_file,
            kind,
            name,
            address,
            birth_date,
            bank_account,
            a,
            b,
        } => {
            use kessai_core::messages::DisplayText;
            use kessai_core::messages::registration::MemberDetails;
            let text = |field: &str, s: &str| DisplayText::parse(s).with_context(|| format!("--{field}"));
            let details = match (kind.as_str(), birth_date, bank_account) {
                ("general", Some(birth_date), None) => MemberDetails::General {
                    name: text("name", &name)?,
                    address: text("address", &address)?,
                    birth_date,
                },
                ("store", None, Some(account)) => MemberDetails::Store {
                    business_name: text("name", &name)?,
                    address: text("address", &address)?,
                    bank_account: text("bank-account", &account)?,
                },
                ("general", ..) => bail!("a general member gives --birth-date (and no --bank-account)"),
                ("store", ..) => bail!("a store member gives --bank-account (and no --birth-date)"),
                (other, ..) => bail!("--kind {other:?}: general or store"),
            };
            let code = secret_text("activation code", code_env.as_deref(), code_file.as_deref(), false)?;
            let a = password("A", a.password_a_env.as_deref(), a.password_a_file.as_deref(), false)?;
            let variant = store.open(&a)?.variant();
            let b = match variant {
                Variant::TwoPasswords => {
                    Some(password("B", b.password_b_env.as_deref(), b.password_b_file.as_deref(), false)?)
                }
                _ => None,
            };
            if later {
                let expires =
                    kessai_wallet::member::keep_registration(&store, (&a, b.as_ref()), &member, &code, details)?;
                println!("registration signed and kept under password A, not sent");
                println!("send it before {expires} with `kessai wallet member send`");
                return Ok(());
            }
            let entered = runtime.block_on(kessai_wallet::member::register(
                config,
                &store,
                (&a, b.as_ref()),
                &member,
                &code,
                details,
            ))?;
            println!("registered as member {}", entered["member"].as_str().unwrap_or_default());
            println!("verification key {}", entered["kid"].as_str().unwrap_or_default());
            Ok(())
        }
        MemberCommand::Init { password_a_only, seed_text, a, b } => {
            if store.exists() {
                bail!("{} exists: a member keystore is never overwritten", store.path().display());
            }
            std::fs::create_dir_all(&config.data_dir)
                .with_context(|| format!("creating {}", config.data_dir.display()))?;
            let a = password("A", a.password_a_env.as_deref(), a.password_a_file.as_deref(), true)?;
            let b = match password_a_only {
                true => None,
                false => Some(password("B", b.password_b_env.as_deref(), b.password_b_file.as_deref(), true)?),
            };
            if b.as_ref().is_some_and(|b| b.same_as(&a)) {
                bail!("passwords A and B must differ");
            }
            let seed = new_seed(seed_text)?;
            let public = store.create(&seed, &a, b.as_ref(), Cost::default(), &mut OsRandom)?;
            println!("member keystore {}", store.path().display());
            println!("verification key {}", public.kid());
            let variant = if b.is_some() { Variant::TwoPasswords } else { Variant::PasswordAOnly };
            println!("signing key under {}", kessai_wallet::member::key_under(variant));
            Ok(())
        }
        MemberCommand::Show { a } => {
            let a = password("A", a.password_a_env.as_deref(), a.password_a_file.as_deref(), false)?;
            let view = kessai_wallet::member::view(&config.data_dir, &a)?;
            println!("member keystore {}", store.path().display());
            println!("verification key {}", view.kid);
            println!("kind             ed25519");
            println!("signing key      under {}", view.key_under);
            println!("purchases        {}", view.history.len());
            if view.replacement_under_way {
                println!("key              replacement under way (`kessai wallet member replace-key --resume`)");
            }
            if view.registration_kept {
                println!("registration     kept, not sent (`kessai wallet member send`)");
            }
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
                    e.at.utc(),
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

/// The member number and the signing key passwords A and B open (A only,
/// in the [0028] variant), for paying as that member.
pub fn signer(
    config: &kessai_wallet::WalletConfig,
    member: &str,
    a: &PasswordA,
    b: &PasswordB,
) -> anyhow::Result<(kessai_core::ids::PartyId, kessai_core::keys::SigningKey, Passphrase)> {
    let store = MemberFile::in_dir(&config.data_dir);
    let id = kessai_core::ids::PartyId::parse(member).context("the member number")?;
    let a = password("A", a.password_a_env.as_deref(), a.password_a_file.as_deref(), false)?;
    let opened = store.open(&a)?;
    let b = match opened.variant() {
        Variant::TwoPasswords => Some(password("B", b.password_b_env.as_deref(), b.password_b_file.as_deref(), false)?),
        _ => None,
    };
    Ok((id, opened.signing_key(b.as_ref())?, a))
}

/// Adds a completed payment to the member's purchase history in the
/// keystore (FIG. 10), under password A.
pub fn record_purchase(
    config: &kessai_wallet::WalletConfig,
    a: &Passphrase,
    record: &kessai_wallet::Record,
) -> anyhow::Result<()> {
    use kessai_core::time::Clock as _;
    let entry = kessai_wallet::member::history_entry(record, kessai_core::time::SystemClock.now());
    MemberFile::in_dir(&config.data_dir).record(a, entry, &mut OsRandom)?;
    Ok(())
}

/// A new key's seed: OS randomness, mixed with what the member types when
/// `seed_text` (S3–S4).
fn new_seed(seed_text: bool) -> anyhow::Result<Zeroizing<[u8; 32]>> {
    let typed = match seed_text {
        true => Some(Zeroizing::new(
            rpassword::prompt_password("Type anything to mix into the key's randomness: ")
                .context("reading the text")?,
        )),
        false => None,
    };
    let mut randomness = Zeroizing::new([0u8; 32]);
    OsRandom.fill_bytes(&mut randomness[..]);
    Ok(seed_from(&randomness, typed.as_deref().map(String::as_str)))
}

/// Password `which`: from the environment variable, the file, or a prompt
/// without echo (asked twice when `confirm`). An empty one is refused.
fn password(which: &str, env: Option<&str>, file: Option<&Path>, confirm: bool) -> anyhow::Result<Passphrase> {
    let text = secret_text(&format!("password {which}"), env, file, confirm)?;
    Ok(Passphrase::new(String::clone(&text)))
}

/// A secret `what` (a password, an activation code), as [`password`] reads it.
fn secret_text(what: &str, env: Option<&str>, file: Option<&Path>, confirm: bool) -> anyhow::Result<Zeroizing<String>> {
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
            let first = Zeroizing::new(rpassword::prompt_password(format!("{what}: ")).with_context(|| {
                format!("no {what}: give it in an environment variable or a file, or run at a terminal")
            })?);
            if confirm {
                let again = Zeroizing::new(rpassword::prompt_password(format!("{what} again: "))?);
                if *again != *first {
                    bail!("the two entries of {what} differ");
                }
            }
            first
        }
    };
    if text.is_empty() {
        bail!("{what} is empty");
    }
    Ok(text)
}
