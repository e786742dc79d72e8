//! Byte layouts of every store file (docs/FORMAT.md describes them for humans).
//! All integers are little-endian.

use crate::error::{Error, Result};
use crate::types::{Entry, EntryKind, EntryMeta};
use bytes::{BufMut, Bytes, BytesMut};

/// "RQE1": an entry record.
pub const ENTRY_MAGIC: u32 = 0x3145_5152;
/// "RQB1": a blank record padding a segment's tail.
pub const BLANK_MAGIC: u32 = 0x3142_5152;
/// Fixed entry header; the body follows.
pub const ENTRY_HEADER_SIZE: usize = 48;
/// A blank record is its magic and size; it is written only when this much room is left.
pub const BLANK_RECORD_SIZE: usize = 8;

/// "RQI1": an index file header.
pub const INDEX_MAGIC: u32 = 0x3149_5152;
pub const INDEX_HEADER_SIZE: usize = 32;
pub const INDEX_RECORD_SIZE: usize = 32;

/// "RQT1": the term file.
pub const TERM_MAGIC: u32 = 0x3154_5152;
/// "RQC1": a checkpoint slot.
pub const CHECKPOINT_MAGIC: u32 = 0x3143_5152;
pub const CHECKPOINT_SLOT_SIZE: usize = 64;
/// The two checkpoint slots sit one sector apart so a torn write damages at most one.
pub const CHECKPOINT_SLOT_STRIDE: u64 = 512;
pub const FORMAT_VERSION: u16 = 1;

/// Longest `voted_for` peer id the term file holds.
pub const VOTE_ID_LEN_MAX: usize = 255;

pub fn segment_name(start: u64) -> String {
    format!("{start:020}")
}

pub fn parse_segment_name(name: &str) -> Option<u64> {
    if name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit()) {
        name.parse().ok()
    } else {
        None
    }
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Encodes an entry record: header (crc over header-with-zero-crc + body), then body.
pub fn encode_entry(entry: &Entry, pos: u64) -> Bytes {
    let total = ENTRY_HEADER_SIZE + entry.body.len();
    let mut buf = BytesMut::with_capacity(total);
    buf.put_u32_le(ENTRY_MAGIC);
    buf.put_u32_le(total as u32);
    buf.put_u64_le(entry.index);
    buf.put_u64_le(entry.term);
    buf.put_u64_le(pos);
    buf.put_u8(entry.kind as u8);
    buf.put_bytes(0, 3);
    buf.put_u32_le(entry.body.len() as u32);
    buf.put_u32_le(0); // crc, filled below
    buf.put_u32_le(0); // reserved
    buf.put_slice(&entry.body);
    let crc = crc32c::crc32c(&buf);
    buf[40..44].copy_from_slice(&crc.to_le_bytes());
    buf.freeze()
}

/// The fields of an entry header, unchecked beyond its shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryHeader {
    pub magic: u32,
    pub size: u32,
    pub index: u64,
    pub term: u64,
    pub pos: u64,
    pub kind: u8,
    pub body_len: u32,
    pub crc: u32,
}

pub fn decode_header(b: &[u8]) -> EntryHeader {
    EntryHeader {
        magic: le_u32(b, 0),
        size: le_u32(b, 4),
        index: le_u64(b, 8),
        term: le_u64(b, 16),
        pos: le_u64(b, 24),
        kind: b[32],
        body_len: le_u32(b, 36),
        crc: le_u32(b, 40),
    }
}

/// CRC32C of a whole record with its crc field taken as zero.
pub fn record_crc(record: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&record[..40]);
    let crc = crc32c::crc32c_append(crc, &[0u8; 4]);
    crc32c::crc32c_append(crc, &record[44..])
}

/// Checks a whole record (header and body) and returns its header, or why it is bad.
pub fn check_record(record: &[u8]) -> std::result::Result<EntryHeader, String> {
    check_record_with(record, true)
}

/// [`check_record`], with the CRC checked only when `verify_crc`: records this process
/// encoded itself and kept in memory have not been through a disk.
fn check_record_with(record: &[u8], verify_crc: bool) -> std::result::Result<EntryHeader, String> {
    if record.len() < ENTRY_HEADER_SIZE {
        return Err(format!(
            "record of {} bytes is shorter than a header",
            record.len()
        ));
    }
    let h = decode_header(record);
    if h.magic != ENTRY_MAGIC {
        return Err(format!("bad magic {:#010x}", h.magic));
    }
    if h.size as usize != record.len() || h.body_len as usize + ENTRY_HEADER_SIZE != record.len() {
        return Err(format!(
            "size {} / body length {} disagree with {} bytes",
            h.size,
            h.body_len,
            record.len()
        ));
    }
    if EntryKind::from_u8(h.kind).is_none() {
        return Err(format!("unknown entry kind {}", h.kind));
    }
    if !verify_crc {
        return Ok(h);
    }
    let crc = record_crc(record);
    if crc != h.crc {
        return Err(format!(
            "bad CRC32C (stored {:#010x}, computed {:#010x})",
            h.crc, crc
        ));
    }
    Ok(h)
}

/// Decodes a record that must be entry `index` at `pos`; `Corrupt` otherwise.
pub fn decode_entry(record: Bytes, index: u64, pos: u64) -> Result<(Entry, EntryMeta)> {
    decode_entry_with(record, index, pos, true)
}

/// [`decode_entry`] for a record from the in-memory tail cache: structure checked, CRC
/// not recomputed (the replication threads read every recent entry once per follower).
pub fn decode_cached_entry(record: Bytes, index: u64, pos: u64) -> Result<(Entry, EntryMeta)> {
    decode_entry_with(record, index, pos, false)
}

fn decode_entry_with(
    record: Bytes,
    index: u64,
    pos: u64,
    verify_crc: bool,
) -> Result<(Entry, EntryMeta)> {
    let h = check_record_with(&record, verify_crc)
        .map_err(|why| Error::corrupt(format!("entry {index} at log position {pos}: {why}")))?;
    if h.index != index || h.pos != pos {
        return Err(Error::corrupt(format!(
            "entry {index} at log position {pos}: record says index {} position {}",
            h.index, h.pos
        )));
    }
    let kind = EntryKind::from_u8(h.kind).expect("checked");
    let entry = Entry {
        index,
        term: h.term,
        kind,
        body: record.slice(ENTRY_HEADER_SIZE..),
    };
    Ok((
        entry,
        EntryMeta {
            index,
            term: h.term,
            pos,
        },
    ))
}

/// The bytes that pad a segment tail of `room` bytes.
pub fn blank_record(room: usize) -> Bytes {
    let mut buf = BytesMut::with_capacity(room.min(BLANK_RECORD_SIZE));
    if room >= BLANK_RECORD_SIZE {
        buf.put_u32_le(BLANK_MAGIC);
        buf.put_u32_le(room as u32);
    } else {
        buf.put_bytes(0, room);
    }
    buf.freeze()
}

/// Header of an index file: which entry its first record describes and the term of the
/// entry before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexHeader {
    pub first_index: u64,
    pub prev_term: u64,
}

pub fn encode_index_header(h: &IndexHeader) -> [u8; INDEX_HEADER_SIZE] {
    let mut b = [0u8; INDEX_HEADER_SIZE];
    b[0..4].copy_from_slice(&INDEX_MAGIC.to_le_bytes());
    b[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    b[8..16].copy_from_slice(&h.first_index.to_le_bytes());
    b[16..24].copy_from_slice(&h.prev_term.to_le_bytes());
    let crc = crc32c::crc32c(&b[..28]);
    b[28..32].copy_from_slice(&crc.to_le_bytes());
    b
}

pub fn decode_index_header(b: &[u8]) -> Option<IndexHeader> {
    if b.len() < INDEX_HEADER_SIZE
        || le_u32(b, 0) != INDEX_MAGIC
        || crc32c::crc32c(&b[..28]) != le_u32(b, 28)
    {
        return None;
    }
    Some(IndexHeader {
        first_index: le_u64(b, 8),
        prev_term: le_u64(b, 16),
    })
}

/// One index record: where entry `index` is and what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexRecord {
    pub pos: u64,
    pub term: u64,
    pub index: u64,
    pub size: u32,
}

pub fn put_index_record(buf: &mut BytesMut, r: &IndexRecord) {
    let start = buf.len();
    buf.put_u64_le(r.pos);
    buf.put_u64_le(r.term);
    buf.put_u64_le(r.index);
    buf.put_u32_le(r.size);
    let crc = crc32c::crc32c(&buf[start..start + 28]);
    buf.put_u32_le(crc);
}

pub fn decode_index_record(b: &[u8]) -> Option<IndexRecord> {
    if b.len() < INDEX_RECORD_SIZE || crc32c::crc32c(&b[..28]) != le_u32(b, 28) {
        return None;
    }
    Some(IndexRecord {
        pos: le_u64(b, 0),
        term: le_u64(b, 8),
        index: le_u64(b, 16),
        size: le_u32(b, 24),
    })
}

/// The term file: term and vote.
pub fn encode_term_file(term: u64, voted_for: Option<&str>) -> Vec<u8> {
    let vote = voted_for.unwrap_or("").as_bytes();
    let mut b = Vec::with_capacity(20 + vote.len());
    b.extend_from_slice(&TERM_MAGIC.to_le_bytes());
    b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    b.push(u8::from(voted_for.is_some()));
    b.push(vote.len() as u8);
    b.extend_from_slice(&term.to_le_bytes());
    b.extend_from_slice(vote);
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

pub fn decode_term_file(b: &[u8]) -> std::result::Result<(u64, Option<String>), String> {
    if b.len() < 20 {
        return Err(format!(
            "{} bytes, shorter than the 20-byte minimum",
            b.len()
        ));
    }
    if le_u32(b, 0) != TERM_MAGIC {
        return Err(format!("bad magic {:#010x}", le_u32(b, 0)));
    }
    let vote_len = b[7] as usize;
    if b.len() != 20 + vote_len {
        return Err(format!(
            "{} bytes where the header announces {}",
            b.len(),
            20 + vote_len
        ));
    }
    let crc_at = 16 + vote_len;
    if crc32c::crc32c(&b[..crc_at]) != le_u32(b, crc_at) {
        return Err("bad CRC32C".to_string());
    }
    let term = le_u64(b, 8);
    let voted_for = match b[6] {
        0 => None,
        1 => Some(
            String::from_utf8(b[16..crc_at].to_vec())
                .map_err(|_| "voted_for is not UTF-8".to_string())?,
        ),
        other => return Err(format!("bad vote flag {other}")),
    };
    Ok((term, voted_for))
}

/// One checkpoint slot: the newest valid slot (highest `seq`) wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Checkpoint {
    pub seq: u64,
    pub commit_index: u64,
    /// Entries up to `base_index` were removed by retention; `base_term` is the term of
    /// entry `base_index`.
    pub base_index: u64,
    pub base_term: u64,
}

pub fn encode_checkpoint(c: &Checkpoint) -> [u8; CHECKPOINT_SLOT_SIZE] {
    let mut b = [0u8; CHECKPOINT_SLOT_SIZE];
    b[0..4].copy_from_slice(&CHECKPOINT_MAGIC.to_le_bytes());
    b[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    b[8..16].copy_from_slice(&c.seq.to_le_bytes());
    b[16..24].copy_from_slice(&c.commit_index.to_le_bytes());
    b[24..32].copy_from_slice(&c.base_index.to_le_bytes());
    b[32..40].copy_from_slice(&c.base_term.to_le_bytes());
    let crc = crc32c::crc32c(&b[..60]);
    b[60..64].copy_from_slice(&crc.to_le_bytes());
    b
}

pub fn decode_checkpoint(b: &[u8]) -> Option<Checkpoint> {
    if b.len() < CHECKPOINT_SLOT_SIZE
        || le_u32(b, 0) != CHECKPOINT_MAGIC
        || crc32c::crc32c(&b[..60]) != le_u32(b, 60)
    {
        return None;
    }
    Some(Checkpoint {
        seq: le_u64(b, 8),
        commit_index: le_u64(b, 16),
        base_index: le_u64(b, 24),
        base_term: le_u64(b, 32),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_round_trip_and_every_flipped_byte_is_caught() {
        let e = Entry {
            index: 7,
            term: 3,
            kind: EntryKind::Normal,
            body: Bytes::from_static(b"hello"),
        };
        let rec = encode_entry(&e, 4096);
        assert_eq!(rec.len(), ENTRY_HEADER_SIZE + 5);
        let (back, meta) = decode_entry(rec.clone(), 7, 4096).unwrap();
        assert_eq!(back, e);
        assert_eq!(
            meta,
            EntryMeta {
                index: 7,
                term: 3,
                pos: 4096
            }
        );
        for i in 0..rec.len() {
            let mut bad = rec.to_vec();
            bad[i] ^= 0x40;
            assert!(
                decode_entry(Bytes::from(bad), 7, 4096).is_err(),
                "flip at byte {i} not caught"
            );
        }
    }

    #[test]
    fn small_files_round_trip() {
        let t = encode_term_file(9, Some("n2"));
        assert_eq!(decode_term_file(&t).unwrap(), (9, Some("n2".to_string())));
        assert_eq!(
            decode_term_file(&encode_term_file(1, None)).unwrap(),
            (1, None)
        );
        let mut bad = t.clone();
        bad[9] ^= 1;
        assert!(decode_term_file(&bad).is_err());
        let c = Checkpoint {
            seq: 2,
            commit_index: 5,
            base_index: 3,
            base_term: 1,
        };
        assert_eq!(decode_checkpoint(&encode_checkpoint(&c)), Some(c));
        let h = IndexHeader {
            first_index: 10,
            prev_term: 4,
        };
        assert_eq!(decode_index_header(&encode_index_header(&h)), Some(h));
        let mut buf = BytesMut::new();
        let r = IndexRecord {
            pos: 1,
            term: 2,
            index: 3,
            size: 4,
        };
        put_index_record(&mut buf, &r);
        assert_eq!(decode_index_record(&buf), Some(r));
        assert_eq!(segment_name(1 << 30), "00000000001073741824");
        assert_eq!(parse_segment_name("00000000001073741824"), Some(1 << 30));
        assert_eq!(parse_segment_name("0000000000107374182x"), None);
    }
}
