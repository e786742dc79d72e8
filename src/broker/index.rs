//! The message index: by each KEYS element (per topic) and by UNIQ_KEY (any topic), with
//! the store time for range queries. Kept in memory and appended to
//! `<broker dir>/index/keys`, one record per key (little-endian): u8 kind (0 key, 1
//! UNIQ_KEY), u16 length + `topic#key`, u64 commitlog offset, i64 store time ms. The
//! checkpoint names the file length it covers; the rest is rebuilt from the log.

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub const KIND_KEY: u8 = 0;
pub const KIND_UNIQ: u8 = 1;

/// Where a key points: a message's commitlog offset and store time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub commitlog_offset: u64,
    pub store_timestamp: i64,
}

pub struct KeyIndex {
    path: PathBuf,
    file: File,
    /// Bytes on disk (written).
    written: u64,
    pending: Vec<u8>,
    /// `topic#key` -> hits, oldest first.
    keys: HashMap<String, Vec<Hit>>,
    /// UNIQ_KEY -> hits (the same id may be stored twice, e.g. by a retried send).
    uniq: HashMap<String, Vec<Hit>>,
}

fn io(what: impl std::fmt::Display, e: std::io::Error) -> Error {
    Error::io(what, e)
}

impl KeyIndex {
    /// Opens the index keeping `len` bytes of its file; `Ok(None)` when the file is
    /// shorter (it must be rebuilt).
    pub fn open(dir: &Path, len: u64) -> Result<Option<KeyIndex>> {
        std::fs::create_dir_all(dir).map_err(|e| io(format!("create {}", dir.display()), e))?;
        let path = dir.join("keys");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io(format!("open {}", path.display()), e))?;
        let have = file
            .metadata()
            .map_err(|e| io(format!("stat {}", path.display()), e))?
            .len();
        if have < len {
            return Ok(None);
        }
        file.set_len(len)
            .map_err(|e| io(format!("truncate {}", path.display()), e))?;
        let mut buf = vec![0u8; len as usize];
        file.read_exact_at(&mut buf, 0)
            .map_err(|e| io(format!("read {}", path.display()), e))?;
        let mut idx = KeyIndex {
            path,
            file,
            written: len,
            pending: Vec::new(),
            keys: HashMap::new(),
            uniq: HashMap::new(),
        };
        let mut r = super::admin::Cur { b: &buf, at: 0 };
        while r.at < buf.len() {
            let kind = r.u8()?;
            let key = r.str()?;
            let hit = Hit {
                commitlog_offset: r.u64()?,
                store_timestamp: r.i64()?,
            };
            idx.insert(kind, key, hit);
        }
        Ok(Some(idx))
    }

    fn insert(&mut self, kind: u8, key: String, hit: Hit) {
        let map = if kind == KIND_UNIQ {
            &mut self.uniq
        } else {
            &mut self.keys
        };
        map.entry(key).or_default().push(hit);
    }

    /// Indexes one key of a message (`kind` KIND_KEY: `key` is `topic#key`).
    pub fn add(&mut self, kind: u8, key: &str, hit: Hit) {
        if key.len() > u16::MAX as usize {
            return;
        }
        self.pending.push(kind);
        self.pending
            .extend_from_slice(&(key.len() as u16).to_le_bytes());
        self.pending.extend_from_slice(key.as_bytes());
        self.pending
            .extend_from_slice(&hit.commitlog_offset.to_le_bytes());
        self.pending
            .extend_from_slice(&hit.store_timestamp.to_le_bytes());
        self.insert(kind, key.to_string(), hit);
    }

    pub fn by_key(&self, topic: &str, key: &str) -> &[Hit] {
        self.keys
            .get(&format!("{topic}#{key}"))
            .map_or(&[], Vec::as_slice)
    }

    pub fn by_uniq(&self, uniq: &str) -> &[Hit] {
        self.uniq.get(uniq).map_or(&[], Vec::as_slice)
    }

    /// Writes pending records and makes the file durable; returns the length covered.
    pub fn sync(&mut self) -> Result<u64> {
        if !self.pending.is_empty() {
            let mut f = &self.file;
            use std::io::Seek;
            f.seek(std::io::SeekFrom::Start(self.written))
                .and_then(|_| f.write_all(&self.pending))
                .and_then(|_| self.file.sync_data())
                .map_err(|e| io(format!("write {}", self.path.display()), e))?;
            self.written += self.pending.len() as u64;
            self.pending.clear();
        }
        Ok(self.written)
    }
}
