//! A service's own signing key at rest: the center's and the mall's.
//!
//! A key file may be sealed under a passphrase (`kessai_core::keyfile`,
//! Argon2id and XChaCha20-Poly1305) or plain. A sealed file's passphrase
//! comes from an environment variable, else a file of mode 0600, else a
//! prompt when the process has a terminal; a wrong passphrase or an
//! altered file is refused. A plain file is used with a warning: it is
//! what `kessai up` relaxes for a demo.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, bail};
use kessai_core::keyfile::{self, Passphrase};
use kessai_core::keys::SigningKey;
use kessai_core::limits::MAX_KEY_FILE_BYTES;
use zeroize::Zeroizing;

/// Where a sealed key's passphrase comes from, in this order.
#[derive(Debug, Clone, Copy)]
pub struct PassphraseFrom<'a> {
    /// An environment variable (e.g. `KESSAI_CENTER_KEY_PASSPHRASE`).
    pub env_var: &'a str,
    /// A file whose first line is the passphrase (mode 0600).
    pub file: Option<&'a Path>,
}

impl PassphraseFrom<'_> {
    /// The passphrase, if any source gives one; a terminal is asked last.
    pub fn read(&self, what: &Path) -> anyhow::Result<Option<Passphrase>> {
        if let Some(given) = self.read_given()? {
            return Ok(Some(given));
        }
        if std::io::stdin().is_terminal() {
            let text = Zeroizing::new(
                rpassword::prompt_password(format!("passphrase for {}: ", what.display()))
                    .context("reading the passphrase")?,
            );
            if !text.is_empty() {
                return Ok(Some(Passphrase::new(text.to_string())));
            }
        }
        Ok(None)
    }

    /// The passphrase from the environment or the file, never asked for.
    pub fn read_given(&self) -> anyhow::Result<Option<Passphrase>> {
        if let Some(text) = std::env::var(self.env_var).ok().filter(|v| !v.is_empty()) {
            return Ok(Some(Passphrase::new(text)));
        }
        if let Some(file) = self.file {
            let bytes = kessai_tls::read_secret_file(file)?;
            let text = std::str::from_utf8(&bytes).with_context(|| format!("{} is not text", file.display()))?;
            let line = text.lines().next().unwrap_or("");
            if line.is_empty() {
                bail!("{} holds no passphrase", file.display());
            }
            return Ok(Some(Passphrase::new(line.to_owned())));
        }
        Ok(None)
    }
}

/// Reads a service's signing key file: refused if others may read or
/// write it (`kessai_tls::read_secret_file`); a sealed one opened with the
/// passphrase from `from`, refused without one, with a wrong one, or when
/// altered.
pub fn load_signing_key(path: &Path, from: PassphraseFrom<'_>) -> anyhow::Result<SigningKey> {
    let bytes = kessai_tls::read_secret_file(path)?;
    if bytes.len() > MAX_KEY_FILE_BYTES {
        bail!("{} is too large for a key file", path.display());
    }
    let text = std::str::from_utf8(&bytes).with_context(|| format!("{} is not text", path.display()))?;
    if !keyfile::is_sealed(text) {
        tracing::warn!(path = %path.display(), "the signing key file is not sealed under a passphrase");
        return keyfile::decode(text, None).with_context(|| format!("reading {}", path.display()));
    }
    let Some(passphrase) = from.read(path)? else {
        bail!(
            "{} is sealed under a passphrase: set {}{}",
            path.display(),
            from.env_var,
            if from.file.is_none() { " (or give a passphrase file in the configuration)" } else { "" }
        );
    };
    keyfile::decode(text, Some(&passphrase)).with_context(|| format!("opening {}", path.display()))
}
