//! Where the image lives: a trait for the card's non-volatile memory, a file
//! implementation, an in-memory one, and a wrapper that cuts the power after
//! a chosen number of write operations (for anti-tearing tests).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The card's non-volatile memory. A write may be torn by a power cut;
/// only what was written before a successful `sync` is sure to survive.
pub trait Storage {
    /// Reads the whole image.
    fn read_image(&mut self) -> io::Result<Vec<u8>>;
    /// Writes `data` at `offset`: one write operation.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Makes every earlier write durable: one operation.
    fn sync(&mut self) -> io::Result<()>;
}

impl<S: Storage + ?Sized> Storage for Box<S> {
    fn read_image(&mut self) -> io::Result<Vec<u8>> {
        (**self).read_image()
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        (**self).write_at(offset, data)
    }
    fn sync(&mut self) -> io::Result<()> {
        (**self).sync()
    }
}

/// Whether `sync` reaches the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// `fsync` (`File::sync_data`) on every sync: the write survives a
    /// power cut before the response leaves the card.
    Fsync,
    /// No fsync: for benchmarks only.
    NoFsync,
}

/// An image file on disk.
#[derive(Debug)]
pub struct FileStorage {
    file: File,
    path: PathBuf,
    durability: Durability,
}

impl FileStorage {
    /// Opens an existing image file for reading and writing.
    pub fn open(path: &Path, durability: Durability) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Self { file, path: path.to_path_buf(), durability })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Storage for FileStorage {
    fn read_image(&mut self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.file.seek(SeekFrom::Start(0))?;
        self.file.read_to_end(&mut out)?;
        Ok(out)
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.file.seek(SeekFrom::Start(offset))?;
        self.file.write_all(data)
    }

    fn sync(&mut self) -> io::Result<()> {
        match self.durability {
            Durability::Fsync => self.file.sync_data(),
            Durability::NoFsync => Ok(()),
        }
    }
}

/// An image in memory that remembers what was synced, so a test can model
/// a power cut that loses unsynced writes as well as one that keeps them.
#[derive(Clone, Debug, Default)]
pub struct MemoryStorage {
    current: Vec<u8>,
    synced: Vec<u8>,
}

impl MemoryStorage {
    /// Storage holding `image` (as if synced).
    pub fn new(image: Vec<u8>) -> Self {
        Self { synced: image.clone(), current: image }
    }

    /// The image as it is now, synced or not.
    pub fn image(&self) -> &[u8] {
        &self.current
    }

    /// The memory after a power cut: with every write that reached the
    /// medium (`keep_unsynced`), or only with what was synced.
    pub fn after_power_cut(&self, keep_unsynced: bool) -> Self {
        let image = if keep_unsynced { &self.current } else { &self.synced };
        Self::new(image.clone())
    }
}

impl Storage for MemoryStorage {
    fn read_image(&mut self) -> io::Result<Vec<u8>> {
        Ok(self.current.clone())
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
        let end = start + data.len();
        if self.current.len() < end {
            self.current.resize(end, 0);
        }
        self.current[start..end].copy_from_slice(data);
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.synced.clone_from(&self.current);
        Ok(())
    }
}

/// Passes operations through until the power is cut before operation
/// number `cut_at` (0-based): that write lands only half-way (torn), that
/// sync does not happen, and every later operation fails.
#[derive(Debug)]
pub struct PowerCutStorage<S> {
    inner: S,
    cut_at: Option<usize>,
    ops: usize,
    cut: bool,
}

impl<S: Storage> PowerCutStorage<S> {
    /// Cuts the power at operation `cut_at`; `None` never cuts (counts only).
    pub fn new(inner: S, cut_at: Option<usize>) -> Self {
        Self { inner, cut_at, ops: 0, cut: false }
    }

    /// Cuts the power before the `n`-th operation from now (0 = the next).
    pub fn arm(&mut self, n: usize) {
        self.cut_at = Some(self.ops + n);
    }

    /// Write and sync operations seen so far.
    pub fn ops(&self) -> usize {
        self.ops
    }

    /// Whether the power was cut.
    pub fn is_cut(&self) -> bool {
        self.cut
    }

    /// The storage behind the wrapper.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Takes the storage out.
    pub fn into_inner(self) -> S {
        self.inner
    }

    fn step(&mut self) -> io::Result<bool> {
        if self.cut {
            return Err(power_cut());
        }
        let now = self.ops;
        self.ops += 1;
        Ok(self.cut_at == Some(now))
    }
}

fn power_cut() -> io::Error {
    io::Error::other("power cut")
}

impl<S: Storage> Storage for PowerCutStorage<S> {
    fn read_image(&mut self) -> io::Result<Vec<u8>> {
        if self.cut {
            return Err(power_cut());
        }
        self.inner.read_image()
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        if self.step()? {
            self.cut = true;
            self.inner.write_at(offset, &data[..data.len() / 2])?;
            return Err(power_cut());
        }
        self.inner.write_at(offset, data)
    }

    fn sync(&mut self) -> io::Result<()> {
        if self.step()? {
            self.cut = true;
            return Err(power_cut());
        }
        self.inner.sync()
    }
}
