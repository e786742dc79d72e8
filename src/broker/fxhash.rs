//! A small, fast, non-cryptographic hash (the FxHash word mix) for the broker's maps on
//! the send and dispatch paths, and the index's persisted key hash. Not flood-resistant:
//! map keys are topics and queue ids the broker itself admits, and index collisions
//! are resolved by reading the message.

use std::hash::{BuildHasherDefault, Hasher};

const K: u64 = 0x517c_c1b7_2722_0a95;

#[derive(Debug, Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(K);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(b) ^ ((rest.len() as u64) << 59));
        }
    }
    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }
    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }
    #[inline]
    fn write_i32(&mut self, n: i32) {
        self.add(n as u32 as u64);
    }
    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }
    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

pub type FxBuild = BuildHasherDefault<FxHasher>;
pub type FxHashMap<K, V> = std::collections::HashMap<K, V, FxBuild>;

/// The index's 32-bit key hash of (`kind`, `topic`, `key`): the Fx mix of the bytes
/// `kind`, `topic`, `#`, `key`, then a final avalanche (so `% slots` spreads well).
/// Persisted in index files: never change it without a new index format.
pub fn key_hash(kind: u8, topic: &str, key: &str) -> u32 {
    let mut h = FxHasher::default();
    h.write_u8(kind);
    h.write(topic.as_bytes());
    h.write_u8(b'#');
    h.write(key.as_bytes());
    let mut x = h.finish();
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hash_is_stable_and_spreads() {
        // Persisted on disk: a change here is a format change.
        assert_eq!(key_hash(0, "T", "k"), key_hash(0, "T", "k"));
        assert_ne!(key_hash(0, "T", "k"), key_hash(1, "T", "k"));
        assert_ne!(key_hash(0, "Ta", "k"), key_hash(0, "T", "ak"));
        let slots = 1024u32;
        let mut used = vec![0u32; slots as usize];
        for n in 0..4096 {
            used[(key_hash(0, "topic", &format!("m{n:06}")) % slots) as usize] += 1;
        }
        assert!(used.iter().all(|&u| u < 16), "no slot takes many: {used:?}");
    }
}
