//! The member keystore on disk (#12, seed 003/004 FIG. 10–11): the file
//! `member.kms` in the wallet's data directory, in the format of
//! [`kessai_core::member_store`]. Made once (never overwritten), mode
//! 0600; every later change is written atomically: a new file beside it,
//! synced, renamed over it, the directory synced. A write interrupted at
//! any point leaves the old file whole.

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

use kessai_core::keyfile::Passphrase;
use kessai_core::keys::PublicKey;
use kessai_core::member_store::{self, Cost, HistoryEntry, MAX_MEMBER_STORE_BYTES, MemberStoreError, Opened};
use kessai_core::random::Random;
use zeroize::Zeroizing;

/// The keystore's name in the wallet's data directory.
pub const FILE_NAME: &str = "member.kms";

/// Why the keystore could not be made, read or changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MemberError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} exists: a member keystore is never overwritten")]
    Exists { path: PathBuf },
    #[error("no member keystore at {path}: make one with `kessai wallet member init`")]
    Missing { path: PathBuf },
    #[error(transparent)]
    Store(#[from] MemberStoreError),
}

/// Where a write may be stopped, to test that the old file survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopAt {
    /// Run to the end.
    Never,
    /// After the new file is written and synced, before it replaces the old.
    BeforeRename,
}

/// The member keystore of a wallet whose data directory is `data_dir`.
#[derive(Debug, Clone)]
pub struct MemberFile {
    path: PathBuf,
}

impl MemberFile {
    pub fn in_dir(data_dir: &Path) -> MemberFile {
        MemberFile { path: data_dir.join(FILE_NAME) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn exists(&self) -> bool {
        self.path.exists()
    }

    /// Makes the keystore: a key from `seed` (see
    /// [`member_store::seed_from`]) under `b` then `a`, or under `a` alone
    /// when `b` is `None`. Refused if one exists.
    pub fn create<R: Random + ?Sized>(
        &self,
        seed: &[u8; 32],
        a: &Passphrase,
        b: Option<&Passphrase>,
        cost: Cost,
        rng: &mut R,
    ) -> Result<PublicKey, MemberError> {
        if self.path.exists() {
            return Err(MemberError::Exists { path: self.path.clone() });
        }
        let (bytes, public) = member_store::create(seed, a, b, cost, rng)?;
        let io = |source| MemberError::Io { path: self.path.clone(), source };
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&self.path).map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => MemberError::Exists { path: self.path.clone() },
            _ => io(e),
        })?;
        file.write_all(&bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        sync_dir(&self.path).map_err(io)?;
        Ok(public)
    }

    /// Opens the keystore with password A.
    pub fn open(&self, a: &Passphrase) -> Result<Opened, MemberError> {
        Ok(member_store::open(&self.read()?, a)?)
    }

    /// Adds a purchase to the history (password A).
    pub fn record<R: Random + ?Sized>(
        &self,
        a: &Passphrase,
        entry: HistoryEntry,
        rng: &mut R,
    ) -> Result<(), MemberError> {
        let mut opened = self.open(a)?;
        opened.history.push(entry);
        self.replace(&opened.seal_random(rng)?, StopAt::Never)
    }

    /// Writes `bytes` over the keystore atomically (see the module doc),
    /// stopping where `stop` says (tests).
    pub fn replace(&self, bytes: &[u8], stop: StopAt) -> Result<(), MemberError> {
        let io = |source| MemberError::Io { path: self.path.clone(), source };
        let fresh = self.path.with_extension("kms.new");
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&fresh).map_err(io)?;
        file.write_all(bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        drop(file);
        if stop == StopAt::BeforeRename {
            return Ok(());
        }
        std::fs::rename(&fresh, &self.path).map_err(io)?;
        sync_dir(&self.path).map_err(io)
    }

    fn read(&self) -> Result<Zeroizing<Vec<u8>>, MemberError> {
        let file = File::open(&self.path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => MemberError::Missing { path: self.path.clone() },
            _ => MemberError::Io { path: self.path.clone(), source: e },
        })?;
        let mut bytes = Zeroizing::new(Vec::new());
        let limit = u64::try_from(MAX_MEMBER_STORE_BYTES).unwrap_or(u64::MAX) + 1;
        file.take(limit)
            .read_to_end(&mut bytes)
            .map_err(|source| MemberError::Io { path: self.path.clone(), source })?;
        if bytes.len() > MAX_MEMBER_STORE_BYTES {
            return Err(MemberStoreError::TooLarge.into());
        }
        Ok(bytes)
    }
}

fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}
