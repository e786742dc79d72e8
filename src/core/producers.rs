//! The producer table of exactly-once appends (`Group::append_idempotent`), as a pure
//! value: fed the idempotent entries of a log in log order, it answers whether a
//! (producer id, sequence) is fresh, already in the log, or out of order. The members
//! (`crate::idempotent`) and the simulator in `tests/sim.rs` both use it.
//!
//! Time comes from the log only (each idempotent entry carries the leader's clock when
//! it was appended), so every member holding the same log holds the same table.

use crate::types::EntryMeta;
use bytes::{BufMut, Bytes, BytesMut};
use std::collections::{HashMap, VecDeque};

/// Sequences remembered per producer (the newest ones).
pub const SEQUENCES_KEPT: usize = 1000;
/// Bytes in front of the host's payload in an `Idempotent` entry body.
pub const HEADER_SIZE: usize = 24;
/// Default `producerIdExpirationMs`.
pub const DEFAULT_EXPIRATION_MS: u64 = 86_400_000;
/// Expired producers are swept when the log clock has moved this far since the last sweep.
const SWEEP_EVERY_MS: i64 = 1000;

/// An `Idempotent` entry body: producer id, sequence, the leader's clock (ms since the
/// epoch), little-endian, then the host's payload.
pub fn encode_body(producer_id: u64, sequence: u64, time_ms: i64, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(HEADER_SIZE + payload.len());
    b.put_u64_le(producer_id);
    b.put_u64_le(sequence);
    b.put_i64_le(time_ms);
    b.put_slice(payload);
    b.freeze()
}

/// The header fields of an `Idempotent` entry body, `None` when it is too short.
pub fn decode_header(body: &[u8]) -> Option<(u64, u64, i64)> {
    if body.len() < HEADER_SIZE {
        return None;
    }
    let u = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().expect("8 bytes"));
    Some((u(0), u(8), u(16) as i64))
}

/// What the table says about a (producer, sequence) about to be appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// The producer's next sequence: append it.
    Fresh,
    /// Already in the log at this place: append nothing, answer with it.
    Duplicate(EntryMeta),
    /// Beyond the next sequence, older than what is remembered, or a producer the
    /// table does not know starting above 0. The text says which.
    OutOfOrder(String),
}

/// One producer: the places of its newest sequences, `first_seq` first.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Producer {
    first_seq: u64,
    metas: VecDeque<EntryMeta>,
    last_ms: i64,
}

impl Producer {
    fn next_seq(&self) -> u64 {
        self.first_seq + self.metas.len() as u64
    }
}

/// Producer id -> its newest sequences and where they are in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerTable {
    producers: HashMap<u64, Producer>,
    expiration_ms: i64,
    kept: usize,
    /// The newest entry time seen (the log's clock).
    clock_ms: i64,
    swept_ms: i64,
}

impl ProducerTable {
    /// A table forgetting a producer `expiration_ms` (of log time) after its last append.
    pub fn new(expiration_ms: u64) -> ProducerTable {
        ProducerTable::with_kept(expiration_ms, SEQUENCES_KEPT)
    }

    /// As [`ProducerTable::new`], remembering `kept` sequences per producer.
    pub fn with_kept(expiration_ms: u64, kept: usize) -> ProducerTable {
        ProducerTable {
            producers: HashMap::new(),
            expiration_ms: expiration_ms.min(i64::MAX as u64) as i64,
            kept: kept.max(1),
            clock_ms: i64::MIN,
            swept_ms: i64::MIN,
        }
    }

    /// Producers remembered.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    fn live(&self, producer_id: u64) -> Option<&Producer> {
        self.producers
            .get(&producer_id)
            .filter(|p| p.last_ms.saturating_add(self.expiration_ms) >= self.clock_ms)
    }

    /// Whether `sequence` of `producer_id` may be appended now.
    pub fn check(&self, producer_id: u64, sequence: u64) -> Check {
        let Some(p) = self.live(producer_id) else {
            return if sequence == 0 {
                Check::Fresh
            } else {
                Check::OutOfOrder(format!(
                    "producer {producer_id:#x} is not known (never seen, or expired after \
                     producerIdExpirationMs={}): its first sequence must be 0, not {sequence}",
                    self.expiration_ms
                ))
            };
        };
        let next = p.next_seq();
        if sequence == next {
            Check::Fresh
        } else if sequence > next {
            Check::OutOfOrder(format!(
                "producer {producer_id:#x}: sequence {sequence} skips ahead of the next one, {next}"
            ))
        } else if sequence < p.first_seq {
            Check::OutOfOrder(format!(
                "producer {producer_id:#x}: sequence {sequence} is older than the oldest \
                 remembered, {} (the last {} are kept)",
                p.first_seq, self.kept
            ))
        } else {
            Check::Duplicate(p.metas[(sequence - p.first_seq) as usize])
        }
    }

    /// Takes in one idempotent entry of the log, in log order. Returns false (and
    /// changes nothing) for a sequence that is not the producer's next one, which a log
    /// written through [`ProducerTable::check`] never holds. A producer not known yet
    /// starts at whatever sequence comes first (its older entries may have been
    /// retained away).
    pub fn apply(
        &mut self,
        producer_id: u64,
        sequence: u64,
        time_ms: i64,
        meta: EntryMeta,
    ) -> bool {
        self.clock_ms = self.clock_ms.max(time_ms);
        if self.clock_ms.saturating_sub(self.swept_ms) >= SWEEP_EVERY_MS {
            self.sweep();
        }
        let expiration = self.expiration_ms;
        let clock = self.clock_ms;
        let kept = self.kept;
        let p = self.producers.entry(producer_id).or_insert(Producer {
            first_seq: sequence,
            metas: VecDeque::new(),
            last_ms: time_ms,
        });
        if p.last_ms.saturating_add(expiration) < clock {
            // Expired and not swept yet: it starts over.
            *p = Producer {
                first_seq: sequence,
                metas: VecDeque::new(),
                last_ms: time_ms,
            };
        }
        if sequence != p.next_seq() {
            return false;
        }
        p.metas.push_back(meta);
        if p.metas.len() > kept {
            p.metas.pop_front();
            p.first_seq += 1;
        }
        p.last_ms = p.last_ms.max(time_ms);
        true
    }

    /// Takes in one entry body of kind `Idempotent`; false when it is malformed or out
    /// of order.
    pub fn apply_body(&mut self, body: &[u8], meta: EntryMeta) -> bool {
        match decode_header(body) {
            Some((producer, sequence, time_ms)) => self.apply(producer, sequence, time_ms, meta),
            None => false,
        }
    }

    fn sweep(&mut self) {
        let (expiration, clock) = (self.expiration_ms, self.clock_ms);
        self.producers
            .retain(|_, p| p.last_ms.saturating_add(expiration) >= clock);
        self.swept_ms = clock;
    }

    /// Heap bytes held, estimated from capacities (hash table slots and sequence rings).
    pub fn heap_bytes(&self) -> usize {
        let slot = std::mem::size_of::<(u64, Producer)>() + 1;
        self.producers.capacity() * slot
            + self
                .producers
                .values()
                .map(|p| p.metas.capacity() * std::mem::size_of::<EntryMeta>())
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(index: u64) -> EntryMeta {
        EntryMeta {
            index,
            term: 1,
            pos: index * 100,
        }
    }

    #[test]
    fn fresh_duplicate_and_gaps() {
        let mut t = ProducerTable::new(DEFAULT_EXPIRATION_MS);
        assert_eq!(t.check(7, 0), Check::Fresh);
        assert!(matches!(t.check(7, 1), Check::OutOfOrder(_)));
        assert!(t.apply(7, 0, 10, meta(1)));
        assert!(t.apply(7, 1, 10, meta(2)));
        assert_eq!(t.check(7, 0), Check::Duplicate(meta(1)));
        assert_eq!(t.check(7, 1), Check::Duplicate(meta(2)));
        assert_eq!(t.check(7, 2), Check::Fresh);
        assert!(matches!(t.check(7, 3), Check::OutOfOrder(m) if m.contains("skips ahead")));
        assert!(!t.apply(7, 5, 10, meta(3)));
        assert_eq!(t.check(7, 2), Check::Fresh);
    }

    #[test]
    fn keeps_the_newest_sequences_only() {
        let mut t = ProducerTable::with_kept(DEFAULT_EXPIRATION_MS, 3);
        for s in 0..5 {
            assert!(t.apply(1, s, 0, meta(s + 1)));
        }
        assert!(matches!(t.check(1, 1), Check::OutOfOrder(m) if m.contains("older")));
        assert_eq!(t.check(1, 2), Check::Duplicate(meta(3)));
        assert_eq!(t.check(1, 5), Check::Fresh);
    }

    #[test]
    fn producers_expire_by_log_time() {
        let mut t = ProducerTable::new(1000);
        assert!(t.apply(1, 0, 0, meta(1)));
        assert!(t.apply(2, 0, 500, meta(2)));
        assert_eq!(t.check(1, 0), Check::Duplicate(meta(1)));
        assert!(t.apply(2, 1, 1001, meta(3)));
        assert!(matches!(t.check(1, 1), Check::OutOfOrder(m) if m.contains("not known")));
        assert_eq!(t.check(1, 0), Check::Fresh);
        assert!(t.apply(1, 0, 1002, meta(4)));
        assert_eq!(t.check(1, 0), Check::Duplicate(meta(4)));
    }

    #[test]
    fn unknown_producer_starts_where_the_log_does() {
        let mut t = ProducerTable::new(DEFAULT_EXPIRATION_MS);
        assert!(t.apply(9, 40, 0, meta(1)));
        assert_eq!(t.check(9, 41), Check::Fresh);
        assert!(matches!(t.check(9, 39), Check::OutOfOrder(_)));
    }

    #[test]
    fn body_round_trip() {
        let b = encode_body(u64::MAX, 3, -5, b"xyz");
        assert_eq!(b.len(), HEADER_SIZE + 3);
        assert_eq!(decode_header(&b), Some((u64::MAX, 3, -5)));
        assert_eq!(&b[HEADER_SIZE..], b"xyz");
        assert_eq!(decode_header(&b[..10]), None);
    }

    #[test]
    fn memory_per_producer_and_sequence() {
        let mut t = ProducerTable::new(DEFAULT_EXPIRATION_MS);
        let producers = 1000u64;
        for p in 1..=producers {
            for s in 0..SEQUENCES_KEPT as u64 + 10 {
                t.apply(p, s, 0, meta(s + 1));
            }
        }
        let per_producer = t.heap_bytes() / producers as usize;
        println!("heap bytes per producer with {SEQUENCES_KEPT} sequences: {per_producer}");
        // 1,000 sequences of 24 bytes each, plus the ring's slack and the table slot.
        assert!(per_producer >= SEQUENCES_KEPT * 24, "{per_producer}");
        assert!(
            per_producer <= SEQUENCES_KEPT * 24 * 2 + 256,
            "{per_producer}"
        );
    }
}
