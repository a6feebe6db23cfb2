//! `kessai keys`: signing keys on disk and their public JWKS.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use kessai_core::jwk::{self, Ed25519Jwk, Jwks};
use kessai_core::keyfile::{self, Passphrase};
use kessai_core::keys::{SigningKey, Validity};
use kessai_core::limits::{MAX_KEY_FILE_BYTES, MAX_KEYS};
use kessai_core::random::OsRandom;
use kessai_core::time::Timestamp;

use crate::PassphraseSource;

impl PassphraseSource {
    /// The passphrase, if one was asked for; an empty one is refused.
    pub fn read(&self) -> anyhow::Result<Option<Passphrase>> {
        let text = match (&self.passphrase_env, &self.passphrase_file) {
            (Some(var), _) => std::env::var(var).with_context(|| format!("environment variable {var} is not set"))?,
            (None, Some(file)) => {
                let all = read_bounded(file)?;
                all.lines().next().unwrap_or("").to_owned()
            }
            (None, None) => return Ok(None),
        };
        if text.is_empty() {
            bail!("the passphrase is empty");
        }
        Ok(Some(Passphrase::new(text)))
    }
}

fn read_bounded(path: &Path) -> anyhow::Result<String> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.len() > MAX_KEY_FILE_BYTES as u64 * 4 {
        bail!("{} is too large to be a key file", path.display());
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

pub fn generate(out: &Path, source: &PassphraseSource, nbf: Option<u64>, exp: Option<u64>) -> anyhow::Result<()> {
    let window = Validity { not_before: nbf.map(Timestamp::from_unix_s), not_after: exp.map(Timestamp::from_unix_s) };
    if let (Some(a), Some(b)) = (window.not_before, window.not_after)
        && a > b
    {
        bail!("--not-before is after --not-after");
    }
    let passphrase = source.read()?;
    let key = SigningKey::generate(&mut OsRandom);
    let pem = match &passphrase {
        Some(p) => keyfile::encode_sealed(&key, p, &mut OsRandom),
        None => keyfile::encode_plain(&key),
    };
    kessai_tls::write_new_file(out, pem.as_bytes(), true).with_context(|| format!("writing {}", out.display()))?;
    let jwk = key.public().to_jwk(window);
    println!("{}", serde_json::to_string_pretty(&jwk)?);
    eprintln!(
        "wrote {} ({}, mode 0600); kid {}",
        out.display(),
        if passphrase.is_some() { "sealed under the passphrase" } else { "unencrypted" },
        key.kid()
    );
    Ok(())
}

/// `kessai keys seal`: a plain key file sealed into a new one.
pub fn seal(input: &Path, out: &Path, source: &PassphraseSource) -> anyhow::Result<()> {
    let bytes = kessai_tls::read_secret_file(input)?;
    let text = std::str::from_utf8(&bytes).with_context(|| format!("{} is not text", input.display()))?;
    if keyfile::is_sealed(text) {
        bail!("{} is sealed already", input.display());
    }
    let key = keyfile::decode(text, None).with_context(|| format!("{}", input.display()))?;
    let passphrase =
        source.read()?.context("give the passphrase to seal under: --passphrase-env VAR or --passphrase-file FILE")?;
    let pem = keyfile::encode_sealed(&key, &passphrase, &mut OsRandom);
    kessai_tls::write_new_file(out, pem.as_bytes(), true).with_context(|| format!("writing {}", out.display()))?;
    eprintln!(
        "wrote {} (sealed, mode 0600); kid {}. Put it in place of {} and shred that file",
        out.display(),
        key.kid(),
        input.display()
    );
    Ok(())
}

fn public_jwk(file: &Path, source: &PassphraseSource) -> anyhow::Result<Ed25519Jwk> {
    let text = read_bounded(file)?;
    if text.trim_start().starts_with('{') {
        let parsed = jwk::parse_jwk(text.as_bytes()).with_context(|| format!("{}", file.display()))?;
        return Ok(Ed25519Jwk::new(&parsed.public, parsed.not_before, parsed.not_after));
    }
    let passphrase = if keyfile::is_sealed(&text) {
        Some(
            source
                .read()?
                .with_context(|| format!("{} is sealed: give --passphrase-env or --passphrase-file", file.display()))?,
        )
    } else {
        None
    };
    let key = keyfile::decode(&text, passphrase.as_ref()).with_context(|| format!("{}", file.display()))?;
    Ok(key.public().to_jwk(Validity::always()))
}

pub fn jwks(files: &[PathBuf], source: &PassphraseSource) -> anyhow::Result<()> {
    if files.len() > MAX_KEYS {
        bail!("at most {MAX_KEYS} keys fit in one JWKS");
    }
    let mut by_kid = BTreeMap::new();
    for file in files {
        let jwk = public_jwk(file, source)?;
        by_kid.insert(jwk.kid.clone(), jwk);
    }
    let set = Jwks { keys: by_kid.into_values().collect() };
    println!("{}", serde_json::to_string_pretty(&set)?);
    Ok(())
}
