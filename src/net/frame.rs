//! Frame encoding and decoding (see docs/PROTOCOL.md).
//!
//! A frame is a fixed 24-byte header, the address (group, from, to) and the message body,
//! all little-endian. The decoder is incremental: it validates the header (magic, version,
//! kind, flags, length against the configured limit) as soon as 24 bytes are buffered,
//! before any byte of the body is read or any room for it is reserved, then checks the
//! CRC32C of the whole frame and decodes the body with every length bounds-checked.
//! Entry and payload bodies are slices of the received buffer (no copy per body).

use super::msg::{
    ClientResponse, Frame, Message, PushRequest, PushResponse, StatusReport, VoteRequest,
    VoteResponse,
};
use crate::error::{Error, ErrorKind};
use crate::types::{Entry, EntryKind, EntryMeta, GroupStatus, Role};
use bytes::{Bytes, BytesMut};
use std::fmt;
use std::io::{self, Read};

/// First four bytes of every frame: "RQRF".
pub const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"RQRF");
/// The frame format version this code speaks.
pub const FRAME_VERSION: u8 = 1;
/// Bytes of the fixed header: magic, version, kind, flags, length, request id, CRC32C.
pub const HEADER_SIZE_BYTES: usize = 24;
/// Smallest valid frame: header, an empty group name, from and to.
pub const FRAME_SIZE_BYTES_MIN: usize = HEADER_SIZE_BYTES + 1 + 2;
/// Longest group name on the wire (its length is one byte).
pub const GROUP_NAME_BYTES_MAX: usize = u8::MAX as usize;
/// Smallest frame-size limit a decoder accepts (the configuration's own minimum).
pub const FRAME_SIZE_LIMIT_BYTES_MIN: u32 = 4096;

const OFFSET_LENGTH: usize = 8;
const OFFSET_CRC: usize = 20;
/// Bytes of one encoded entry before its body: index, term, kind, body length.
const ENTRY_HEADER_SIZE_BYTES: usize = 8 + 8 + 1 + 4;
/// Bytes of an encoded `StatusReport`.
const STATUS_REPORT_SIZE_BYTES: usize = 4 * 3 + 8 * 5 + 8 + 4;
/// Read granularity of [`Decoder::read_from`].
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Message kinds on the wire. The numbers never change.
pub mod kind {
    pub const VOTE: u8 = 1;
    pub const VOTE_RESP: u8 = 2;
    pub const PUSH: u8 = 3;
    pub const PUSH_RESP: u8 = 4;
    pub const TIMEOUT_NOW: u8 = 5;
    /// This member's old-log digest; the receiver answers with its own.
    pub const OLD_LOG: u8 = 6;
    /// The answer to `OLD_LOG`: the receiver's old-log digest.
    pub const OLD_LOG_RESP: u8 = 7;
    pub const CLIENT_APPEND: u8 = 16;
    pub const CLIENT_READ: u8 = 17;
    pub const CLIENT_STATUS: u8 = 18;
    pub const CLIENT_TRANSFER: u8 = 19;
    pub const CLIENT_RESP: u8 = 20;
    pub const CLIENT_APPEND_IDEMPOTENT: u8 = 21;
}

/// Why bytes could not be decoded as a frame. Any of these closes the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    BadMagic(u32),
    UnknownVersion(u8),
    UnknownKind(u8),
    /// Flag bits this version does not define.
    UnknownFlags(u16),
    /// The header announces more than the limit; refused before the body is read.
    TooLarge {
        length: u32,
        max: u32,
    },
    /// The header announces fewer bytes than a frame can have.
    TooShort(u32),
    BadCrc {
        expected: u32,
        actual: u32,
    },
    /// The body does not parse: a length past the end, a bad enum value, trailing bytes.
    Malformed(String),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::BadMagic(m) => write!(f, "bad frame magic {m:#010x}"),
            FrameError::UnknownVersion(v) => write!(f, "unknown frame version {v}"),
            FrameError::UnknownKind(k) => write!(f, "unknown message kind {k}"),
            FrameError::UnknownFlags(x) => write!(f, "unknown frame flags {x:#06x}"),
            FrameError::TooLarge { length, max } => {
                write!(
                    f,
                    "frame of {length} bytes exceeds the limit of {max} bytes"
                )
            }
            FrameError::TooShort(l) => write!(f, "frame length {l} is below the minimum"),
            FrameError::BadCrc { expected, actual } => {
                write!(
                    f,
                    "frame CRC32C mismatch: header {expected:#010x}, computed {actual:#010x}"
                )
            }
            FrameError::Malformed(why) => write!(f, "malformed frame: {why}"),
        }
    }
}

impl std::error::Error for FrameError {}

impl From<FrameError> for Error {
    fn from(e: FrameError) -> Error {
        let kind = match e {
            FrameError::TooLarge { .. } => ErrorKind::TooLarge,
            _ => ErrorKind::Corrupt,
        };
        Error::new(kind, e.to_string())
    }
}

fn malformed(why: impl Into<String>) -> FrameError {
    FrameError::Malformed(why.into())
}

fn message_kind(message: &Message) -> u8 {
    match message {
        Message::Vote(_) => kind::VOTE,
        Message::VoteResp(_) => kind::VOTE_RESP,
        Message::Push(_) => kind::PUSH,
        Message::PushResp(_) => kind::PUSH_RESP,
        Message::TimeoutNow { .. } => kind::TIMEOUT_NOW,
        Message::OldLog { .. } => kind::OLD_LOG,
        Message::OldLogResp { .. } => kind::OLD_LOG_RESP,
        Message::ClientAppend { .. } => kind::CLIENT_APPEND,
        Message::ClientAppendIdempotent { .. } => kind::CLIENT_APPEND_IDEMPOTENT,
        Message::ClientRead { .. } => kind::CLIENT_READ,
        Message::ClientStatus => kind::CLIENT_STATUS,
        Message::ClientTransfer { .. } => kind::CLIENT_TRANSFER,
        Message::ClientResp(_) => kind::CLIENT_RESP,
    }
}

fn body_len(message: &Message) -> usize {
    match message {
        Message::Vote(_) => 8 * 3 + 1,
        Message::VoteResp(_) => 8 + 1,
        Message::Push(p) => {
            8 * 4
                + 4
                + p.entries
                    .iter()
                    .map(|e| ENTRY_HEADER_SIZE_BYTES + e.body.len())
                    .sum::<usize>()
        }
        Message::PushResp(_) => 8 + 1 + 8 * 4,
        Message::TimeoutNow { .. } => 8,
        Message::OldLog { digest } | Message::OldLogResp { digest } => 4 + digest.len(),
        Message::ClientAppend { data } => 4 + data.len(),
        Message::ClientAppendIdempotent { data, .. } => 8 + 8 + 4 + data.len(),
        Message::ClientRead { .. } => 8,
        Message::ClientStatus => 0,
        Message::ClientTransfer { to_peer, .. } => 4 + to_peer.len() + 4,
        Message::ClientResp(r) => {
            let status = if r.status.is_some() {
                STATUS_REPORT_SIZE_BYTES
            } else {
                0
            };
            4 + 4 + r.message.len() + 4 + 8 * 3 + 4 + r.data.len() + 1 + status
        }
    }
}

/// The number of bytes [`encode`] writes for `frame`, or why it cannot be encoded
/// (a group name over 255 bytes, a length field that would overflow).
pub fn encoded_len(frame: &Frame) -> Result<usize, Error> {
    if frame.group.len() > GROUP_NAME_BYTES_MAX {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "group name '{}' is {} bytes, the wire allows {GROUP_NAME_BYTES_MAX}",
                frame.group,
                frame.group.len()
            ),
        ));
    }
    let too_long = |what: &str, len: usize| {
        Error::new(
            ErrorKind::TooLarge,
            format!("{what} of {len} bytes does not fit a frame"),
        )
    };
    match &frame.message {
        Message::ClientAppend { data } if data.len() > u32::MAX as usize => {
            return Err(too_long("append payload", data.len()))
        }
        Message::OldLog { digest } | Message::OldLogResp { digest }
            if digest.len() > u32::MAX as usize =>
        {
            return Err(too_long("old-log digest", digest.len()))
        }
        Message::ClientAppendIdempotent { data, .. } if data.len() > u32::MAX as usize => {
            return Err(too_long("append payload", data.len()))
        }
        Message::ClientResp(r) if r.data.len() > u32::MAX as usize => {
            return Err(too_long("response data", r.data.len()))
        }
        Message::ClientResp(r) if r.message.len() > u32::MAX as usize => {
            return Err(too_long("response message", r.message.len()))
        }
        Message::ClientTransfer { to_peer, .. } if to_peer.len() > u32::MAX as usize => {
            return Err(too_long("transfer target", to_peer.len()))
        }
        Message::Push(p) => {
            if p.entries.len() > u32::MAX as usize {
                return Err(too_long("entry count", p.entries.len()));
            }
            if let Some(e) = p.entries.iter().find(|e| e.body.len() > u32::MAX as usize) {
                return Err(too_long("entry body", e.body.len()));
            }
        }
        _ => {}
    }
    let total = HEADER_SIZE_BYTES + 1 + frame.group.len() + 2 + body_len(&frame.message);
    if total > u32::MAX as usize {
        return Err(too_long("frame", total));
    }
    Ok(total)
}

/// Appends the encoding of `frame` to `out`. On error `out` is left as it was.
pub fn encode(frame: &Frame, out: &mut Vec<u8>) -> Result<(), Error> {
    let total = encoded_len(frame)?;
    let start = out.len();
    out.reserve(total);
    out.extend_from_slice(&FRAME_MAGIC.to_le_bytes());
    out.push(FRAME_VERSION);
    out.push(message_kind(&frame.message));
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(total as u32).to_le_bytes());
    out.extend_from_slice(&frame.request_id.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.push(frame.group.len() as u8);
    out.extend_from_slice(frame.group.as_bytes());
    out.push(frame.from);
    out.push(frame.to);
    encode_body(&frame.message, out);
    debug_assert_eq!(
        out.len() - start,
        total,
        "encoded_len disagrees with encode"
    );
    let crc = frame_crc(&out[start..]);
    out[start + OFFSET_CRC..start + OFFSET_CRC + 4].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// CRC32C over the whole frame except the CRC field itself.
fn frame_crc(frame: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&frame[..OFFSET_CRC]);
    crc32c::crc32c_append(crc, &frame[OFFSET_CRC + 4..])
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u32(out, b.len() as u32);
    out.extend_from_slice(b);
}

fn encode_body(message: &Message, out: &mut Vec<u8>) {
    match message {
        Message::Vote(v) => {
            put_u64(out, v.term);
            put_u64(out, v.last_index);
            put_u64(out, v.last_term);
            out.push(u8::from(v.pre_vote) | u8::from(v.transfer) << 1);
        }
        Message::VoteResp(v) => {
            put_u64(out, v.term);
            out.push(u8::from(v.granted) | u8::from(v.pre_vote) << 1);
        }
        Message::Push(p) => {
            put_u64(out, p.term);
            put_u64(out, p.prev_index);
            put_u64(out, p.prev_term);
            put_u64(out, p.commit_index);
            put_u32(out, p.entries.len() as u32);
            for e in &p.entries {
                put_u64(out, e.index);
                put_u64(out, e.term);
                out.push(e.kind as u8);
                put_bytes(out, &e.body);
            }
        }
        Message::PushResp(p) => {
            put_u64(out, p.term);
            out.push(u8::from(p.success));
            put_u64(out, p.match_index);
            put_u64(out, p.flushed_index);
            put_u64(out, p.hint_index);
            put_u64(out, p.last_index);
        }
        Message::TimeoutNow { term } => put_u64(out, *term),
        Message::OldLog { digest } | Message::OldLogResp { digest } => put_bytes(out, digest),
        Message::ClientAppend { data } => put_bytes(out, data),
        Message::ClientAppendIdempotent {
            producer_id,
            sequence,
            data,
        } => {
            put_u64(out, *producer_id);
            put_u64(out, *sequence);
            put_bytes(out, data);
        }
        Message::ClientRead { index } => put_u64(out, *index),
        Message::ClientStatus => {}
        Message::ClientTransfer {
            to_peer,
            timeout_ms,
        } => {
            put_bytes(out, to_peer.as_bytes());
            put_u32(out, *timeout_ms);
        }
        Message::ClientResp(r) => {
            put_u32(out, r.result as u32);
            put_bytes(out, r.message.as_bytes());
            put_u32(out, r.leader_peer as u32);
            put_u64(out, r.meta.index);
            put_u64(out, r.meta.term);
            put_u64(out, r.meta.pos);
            put_bytes(out, &r.data);
            match &r.status {
                None => out.push(0),
                Some(s) => {
                    out.push(1);
                    put_u32(out, s.status.role as i32 as u32);
                    put_u32(out, s.status.self_peer as u32);
                    put_u32(out, s.status.leader_peer as u32);
                    put_u64(out, s.status.term);
                    put_u64(out, s.status.first_index);
                    put_u64(out, s.status.last_index);
                    put_u64(out, s.status.commit_index);
                    put_u64(out, s.status.flushed_index);
                    put_u64(out, s.append_tps.to_bits());
                    put_u32(out, s.pid);
                }
            }
        }
    }
}

/// A validated fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: u8,
    pub length: u32,
    pub request_id: u64,
    pub crc: u32,
}

/// Validates the fixed header in `bytes[..24]` against the limit `frame_size_bytes_max`.
pub fn decode_header(bytes: &[u8], frame_size_bytes_max: u32) -> Result<Header, FrameError> {
    assert!(
        bytes.len() >= HEADER_SIZE_BYTES,
        "decode_header needs {HEADER_SIZE_BYTES} bytes"
    );
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
    let magic = u32_at(0);
    if magic != FRAME_MAGIC {
        return Err(FrameError::BadMagic(magic));
    }
    if bytes[4] != FRAME_VERSION {
        return Err(FrameError::UnknownVersion(bytes[4]));
    }
    let kind = bytes[5];
    if !matches!(kind, 1..=7 | 16..=21) {
        return Err(FrameError::UnknownKind(kind));
    }
    let flags = u16_at(6);
    if flags != 0 {
        return Err(FrameError::UnknownFlags(flags));
    }
    let length = u32_at(OFFSET_LENGTH);
    if length > frame_size_bytes_max {
        return Err(FrameError::TooLarge {
            length,
            max: frame_size_bytes_max,
        });
    }
    if (length as usize) < FRAME_SIZE_BYTES_MIN {
        return Err(FrameError::TooShort(length));
    }
    let request_id = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    Ok(Header {
        kind,
        length,
        request_id,
        crc: u32_at(OFFSET_CRC),
    })
}

/// Decodes one complete frame (`bytes` must be exactly one frame).
pub fn decode(bytes: Bytes, frame_size_bytes_max: u32) -> Result<Frame, FrameError> {
    if bytes.len() < HEADER_SIZE_BYTES {
        return Err(malformed(format!(
            "{} bytes is shorter than a frame header",
            bytes.len()
        )));
    }
    let header = decode_header(&bytes, frame_size_bytes_max)?;
    if header.length as usize != bytes.len() {
        return Err(malformed(format!(
            "header says {} bytes, got {}",
            header.length,
            bytes.len()
        )));
    }
    decode_checked(header, bytes)
}

/// Decodes a frame whose header is valid and whose length matches `bytes`.
fn decode_checked(header: Header, bytes: Bytes) -> Result<Frame, FrameError> {
    let actual = frame_crc(&bytes);
    if actual != header.crc {
        return Err(FrameError::BadCrc {
            expected: header.crc,
            actual,
        });
    }
    let mut cur = Cursor {
        buf: bytes,
        pos: HEADER_SIZE_BYTES,
    };
    let group_len = cur.u8()? as usize;
    let group = cur.string(group_len, "group name")?;
    let from = cur.u8()?;
    let to = cur.u8()?;
    let message = decode_body(header.kind, &mut cur)?;
    if cur.remaining() != 0 {
        return Err(malformed(format!(
            "{} trailing bytes after the body",
            cur.remaining()
        )));
    }
    Ok(Frame {
        group,
        from,
        to,
        request_id: header.request_id,
        message,
    })
}

/// Bounds-checked reads over one frame's bytes.
struct Cursor {
    buf: Bytes,
    pos: usize,
}

impl Cursor {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], FrameError> {
        if n > self.remaining() {
            return Err(malformed(format!(
                "{what} needs {n} bytes, {} left in the frame",
                self.remaining()
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1, "u8")?[0])
    }
    fn u32(&mut self) -> Result<u32, FrameError> {
        Ok(u32::from_le_bytes(
            self.take(4, "u32")?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, FrameError> {
        Ok(u64::from_le_bytes(
            self.take(8, "u64")?.try_into().expect("8 bytes"),
        ))
    }
    fn bool(&mut self, what: &str) -> Result<bool, FrameError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(malformed(format!("{what}: {v} is not a boolean"))),
        }
    }
    /// `n` bytes as a slice of the frame (no copy).
    fn bytes(&mut self, n: usize, what: &str) -> Result<Bytes, FrameError> {
        self.take(n, what)?;
        Ok(self.buf.slice(self.pos - n..self.pos))
    }
    fn len_prefixed(&mut self, what: &str) -> Result<Bytes, FrameError> {
        let n = self.u32()? as usize;
        self.bytes(n, what)
    }
    fn string(&mut self, n: usize, what: &str) -> Result<String, FrameError> {
        let raw = self.take(n, what)?;
        match std::str::from_utf8(raw) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(malformed(format!("{what} is not UTF-8"))),
        }
    }
    fn len_prefixed_string(&mut self, what: &str) -> Result<String, FrameError> {
        let n = self.u32()? as usize;
        self.string(n, what)
    }
}

fn decode_body(kind: u8, cur: &mut Cursor) -> Result<Message, FrameError> {
    Ok(match kind {
        kind::VOTE => {
            let term = cur.u64()?;
            let last_index = cur.u64()?;
            let last_term = cur.u64()?;
            let flags = cur.u8()?;
            if flags & !0b11 != 0 {
                return Err(malformed(format!("vote flags {flags:#04x}")));
            }
            Message::Vote(VoteRequest {
                term,
                last_index,
                last_term,
                pre_vote: flags & 1 != 0,
                transfer: flags & 2 != 0,
            })
        }
        kind::VOTE_RESP => {
            let term = cur.u64()?;
            let flags = cur.u8()?;
            if flags & !0b11 != 0 {
                return Err(malformed(format!("vote response flags {flags:#04x}")));
            }
            Message::VoteResp(VoteResponse {
                term,
                granted: flags & 1 != 0,
                pre_vote: flags & 2 != 0,
            })
        }
        kind::PUSH => {
            let term = cur.u64()?;
            let prev_index = cur.u64()?;
            let prev_term = cur.u64()?;
            let commit_index = cur.u64()?;
            let count = cur.u32()? as usize;
            // The count is only trusted as far as the bytes left can hold that many entries.
            if count > cur.remaining() / ENTRY_HEADER_SIZE_BYTES {
                return Err(malformed(format!(
                    "{count} entries cannot fit in {} bytes",
                    cur.remaining()
                )));
            }
            let mut entries = Vec::with_capacity(count);
            for _ in 0..count {
                let index = cur.u64()?;
                let term = cur.u64()?;
                let raw_kind = cur.u8()?;
                let kind = EntryKind::from_u8(raw_kind)
                    .ok_or_else(|| malformed(format!("entry kind {raw_kind}")))?;
                let body = cur.len_prefixed("entry body")?;
                entries.push(Entry {
                    index,
                    term,
                    kind,
                    body,
                });
            }
            Message::Push(PushRequest {
                term,
                prev_index,
                prev_term,
                commit_index,
                entries,
            })
        }
        kind::PUSH_RESP => Message::PushResp(PushResponse {
            term: cur.u64()?,
            success: cur.bool("push response success")?,
            match_index: cur.u64()?,
            flushed_index: cur.u64()?,
            hint_index: cur.u64()?,
            last_index: cur.u64()?,
        }),
        kind::TIMEOUT_NOW => Message::TimeoutNow { term: cur.u64()? },
        kind::OLD_LOG => Message::OldLog {
            digest: cur.len_prefixed("old-log digest")?,
        },
        kind::OLD_LOG_RESP => Message::OldLogResp {
            digest: cur.len_prefixed("old-log digest")?,
        },
        kind::CLIENT_APPEND => Message::ClientAppend {
            data: cur.len_prefixed("append payload")?,
        },
        kind::CLIENT_APPEND_IDEMPOTENT => Message::ClientAppendIdempotent {
            producer_id: cur.u64()?,
            sequence: cur.u64()?,
            data: cur.len_prefixed("append payload")?,
        },
        kind::CLIENT_READ => Message::ClientRead { index: cur.u64()? },
        kind::CLIENT_STATUS => Message::ClientStatus,
        kind::CLIENT_TRANSFER => Message::ClientTransfer {
            to_peer: cur.len_prefixed_string("transfer target")?,
            timeout_ms: cur.u32()?,
        },
        kind::CLIENT_RESP => {
            let result = cur.u32()? as i32;
            let message = cur.len_prefixed_string("response message")?;
            let leader_peer = cur.u32()? as i32;
            let meta = EntryMeta {
                index: cur.u64()?,
                term: cur.u64()?,
                pos: cur.u64()?,
            };
            let data = cur.len_prefixed("response data")?;
            let status = if cur.bool("status presence")? {
                let raw_role = cur.u32()? as i32;
                let role = Role::from_i32(raw_role)
                    .ok_or_else(|| malformed(format!("role {raw_role}")))?;
                let status = GroupStatus {
                    role,
                    self_peer: cur.u32()? as i32,
                    leader_peer: cur.u32()? as i32,
                    term: cur.u64()?,
                    first_index: cur.u64()?,
                    last_index: cur.u64()?,
                    commit_index: cur.u64()?,
                    flushed_index: cur.u64()?,
                };
                let append_tps = f64::from_bits(cur.u64()?);
                Some(StatusReport {
                    status,
                    append_tps,
                    pid: cur.u32()?,
                })
            } else {
                None
            };
            Message::ClientResp(ClientResponse {
                result,
                message,
                leader_peer,
                meta,
                data,
                status,
            })
        }
        other => return Err(FrameError::UnknownKind(other)),
    })
}

/// Turns a byte stream into frames. Holds at most one partial frame plus one read chunk;
/// room for a frame's body is reserved only after its header passed [`decode_header`].
pub struct Decoder {
    buf: BytesMut,
    frame_size_bytes_max: u32,
    /// The validated header of the frame being assembled.
    pending: Option<Header>,
}

impl Decoder {
    pub fn new(frame_size_bytes_max: u32) -> Decoder {
        Decoder {
            buf: BytesMut::with_capacity(READ_CHUNK_BYTES),
            frame_size_bytes_max: frame_size_bytes_max.max(FRAME_SIZE_LIMIT_BYTES_MIN),
            pending: None,
        }
    }

    pub fn frame_size_bytes_max(&self) -> u32 {
        self.frame_size_bytes_max
    }

    /// Bytes buffered and not yet returned as frames.
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    /// Capacity of the internal buffer (for tests of the memory bound).
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Appends received bytes.
    pub fn extend(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Reads once from `r` into the buffer. Returns the bytes read (0 at end of stream).
    /// Reads at most what the frame being assembled still needs, or one chunk.
    pub fn read_from<R: Read>(&mut self, r: &mut R) -> io::Result<usize> {
        // Up to 1 MiB at once while a large frame is being assembled, else one chunk.
        let want = match self.pending {
            Some(h) => (h.length as usize)
                .saturating_sub(self.buf.len())
                .clamp(READ_CHUNK_BYTES, 16 * READ_CHUNK_BYTES),
            None => READ_CHUNK_BYTES,
        };
        let start = self.buf.len();
        if self.buf.capacity() - start < want {
            self.buf.reserve(want);
        }
        // Zeroing a chunk costs far less than the syscall and keeps this free of unsafe.
        self.buf.resize(start + want, 0);
        match r.read(&mut self.buf[start..]) {
            Ok(n) => {
                self.buf.truncate(start + n);
                Ok(n)
            }
            Err(e) => {
                self.buf.truncate(start);
                Err(e)
            }
        }
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed. After an error the
    /// stream is unusable: the caller closes the connection.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        let header = match self.pending {
            Some(h) => h,
            None => {
                if self.buf.len() < HEADER_SIZE_BYTES {
                    return Ok(None);
                }
                let h = decode_header(&self.buf[..HEADER_SIZE_BYTES], self.frame_size_bytes_max)?;
                self.pending = Some(h);
                h
            }
        };
        let length = header.length as usize;
        if self.buf.len() < length {
            // Room for the rest of this frame; bounded by the validated length.
            self.buf.reserve(length - self.buf.len());
            return Ok(None);
        }
        self.pending = None;
        let bytes = self.buf.split_to(length).freeze();
        decode_checked(header, bytes).map(Some)
    }

    /// Drops buffered bytes (after an error).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.pending = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_frames() -> Vec<Frame> {
        let status = GroupStatus {
            role: Role::Leader,
            self_peer: 1,
            leader_peer: 1,
            term: 7,
            first_index: 1,
            last_index: 99,
            commit_index: 98,
            flushed_index: 97,
        };
        let messages = vec![
            Message::Vote(VoteRequest {
                term: 3,
                last_index: 10,
                last_term: 2,
                pre_vote: true,
                transfer: false,
            }),
            Message::Vote(VoteRequest {
                term: u64::MAX,
                last_index: 0,
                last_term: 0,
                pre_vote: false,
                transfer: true,
            }),
            Message::VoteResp(VoteResponse {
                term: 3,
                granted: true,
                pre_vote: true,
            }),
            Message::VoteResp(VoteResponse {
                term: 4,
                granted: false,
                pre_vote: false,
            }),
            Message::Push(PushRequest {
                term: 5,
                prev_index: 9,
                prev_term: 4,
                commit_index: 8,
                entries: vec![],
            }),
            Message::Push(PushRequest {
                term: 5,
                prev_index: 9,
                prev_term: 4,
                commit_index: 8,
                entries: vec![
                    Entry {
                        index: 10,
                        term: 5,
                        kind: EntryKind::Noop,
                        body: Bytes::new(),
                    },
                    Entry {
                        index: 11,
                        term: 5,
                        kind: EntryKind::Normal,
                        body: Bytes::from(vec![7u8; 1024]),
                    },
                ],
            }),
            Message::PushResp(PushResponse {
                term: 5,
                success: true,
                match_index: 11,
                flushed_index: 10,
                hint_index: 0,
                last_index: 11,
            }),
            Message::TimeoutNow { term: 6 },
            Message::ClientAppend {
                data: Bytes::from_static(b"hello"),
            },
            Message::ClientAppendIdempotent {
                producer_id: 0x1234_5678_9abc_def0,
                sequence: 7,
                data: Bytes::from_static(b"once"),
            },
            Message::ClientRead { index: 42 },
            Message::ClientStatus,
            Message::ClientTransfer {
                to_peer: "n2".into(),
                timeout_ms: 3000,
            },
            Message::ClientResp(ClientResponse {
                result: -3,
                message: "not leader".into(),
                leader_peer: -1,
                meta: EntryMeta {
                    index: 1,
                    term: 2,
                    pos: 3,
                },
                data: Bytes::from_static(b"body"),
                status: None,
            }),
            Message::ClientResp(ClientResponse {
                result: 0,
                message: String::new(),
                leader_peer: 1,
                meta: EntryMeta::default(),
                data: Bytes::new(),
                status: Some(StatusReport {
                    status,
                    append_tps: 1234.5,
                    pid: 4242,
                }),
            }),
            Message::OldLog {
                digest: Bytes::from_static(b"RQOL digest"),
            },
            Message::OldLogResp {
                digest: Bytes::new(),
            },
        ];
        messages
            .into_iter()
            .enumerate()
            .map(|(i, message)| Frame {
                group: "RaftNode00".into(),
                from: i as u8,
                to: 2,
                request_id: 1000 + i as u64,
                message,
            })
            .collect()
    }

    #[test]
    fn every_message_round_trips() {
        for frame in sample_frames() {
            let mut out = Vec::new();
            encode(&frame, &mut out).unwrap();
            assert_eq!(out.len(), encoded_len(&frame).unwrap());
            let back = decode(Bytes::from(out), 1 << 20).unwrap();
            assert_eq!(back, frame);
        }
    }

    #[test]
    fn every_kind_passes_the_header_check() {
        let mut kinds: Vec<u8> = sample_frames()
            .iter()
            .map(|f| message_kind(&f.message))
            .collect();
        kinds.dedup();
        for k in [kind::OLD_LOG, kind::OLD_LOG_RESP] {
            assert!(kinds.contains(&k), "kind {k} has a sample");
        }
        for frame in sample_frames() {
            let mut out = Vec::new();
            encode(&frame, &mut out).unwrap();
            let h = decode_header(&out, 1 << 20).unwrap();
            assert_eq!(h.kind, message_kind(&frame.message));
        }
    }

    #[test]
    fn decoder_splits_a_stream_fed_byte_by_byte() {
        let frames = sample_frames();
        let mut stream = Vec::new();
        for f in &frames {
            encode(f, &mut stream).unwrap();
        }
        let mut dec = Decoder::new(1 << 20);
        let mut got = Vec::new();
        for b in &stream {
            dec.extend(std::slice::from_ref(b));
            while let Some(f) = dec.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, frames);
        assert_eq!(dec.buffered_len(), 0);
    }

    #[test]
    fn entry_bodies_share_the_received_buffer() {
        let frame = &sample_frames()[5];
        let mut out = Vec::new();
        encode(frame, &mut out).unwrap();
        let bytes = Bytes::from(out);
        let range = bytes.as_ptr_range();
        let back = decode(bytes.clone(), 1 << 20).unwrap();
        let Message::Push(p) = back.message else {
            panic!("not a push")
        };
        let body = &p.entries[1].body;
        assert!(range.contains(&body.as_ptr()), "entry body was copied");
    }

    #[test]
    fn header_errors_are_named() {
        let mut out = Vec::new();
        encode(&sample_frames()[0], &mut out).unwrap();
        let corrupt = |at: usize, v: u8| {
            let mut b = out.clone();
            b[at] = v;
            decode(Bytes::from(b), 1 << 20).unwrap_err()
        };
        assert!(matches!(corrupt(0, b'X'), FrameError::BadMagic(_)));
        assert_eq!(corrupt(4, 9), FrameError::UnknownVersion(9));
        assert_eq!(corrupt(5, 77), FrameError::UnknownKind(77));
        assert_eq!(corrupt(6, 1), FrameError::UnknownFlags(1));
        assert!(matches!(
            corrupt(out.len() - 1, 0xff),
            FrameError::BadCrc { .. }
        ));
        let err = decode(Bytes::from(out.clone()), FRAME_SIZE_LIMIT_BYTES_MIN).unwrap();
        assert_eq!(err, sample_frames()[0]);
        let mut big = out.clone();
        big[OFFSET_LENGTH..OFFSET_LENGTH + 4].copy_from_slice(&5000u32.to_le_bytes());
        let mut dec = Decoder::new(4096);
        dec.extend(&big[..HEADER_SIZE_BYTES]);
        assert_eq!(
            dec.next_frame().unwrap_err(),
            FrameError::TooLarge {
                length: 5000,
                max: 4096
            }
        );
        assert!(dec.buffer_capacity() < 5000 + READ_CHUNK_BYTES);
    }

    #[test]
    fn malformed_body_with_valid_crc_is_refused() {
        // A push announcing a billion entries in a small frame: refused without allocating.
        let mut frame = sample_frames()[4].clone();
        frame.request_id = 1;
        let mut out = Vec::new();
        encode(&frame, &mut out).unwrap();
        let count_at = out.len() - 4;
        out[count_at..].copy_from_slice(&1_000_000_000u32.to_le_bytes());
        let crc = frame_crc(&out);
        out[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            decode(Bytes::from(out), 1 << 20),
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn oversized_group_name_is_refused_by_encode() {
        let mut frame = sample_frames()[0].clone();
        frame.group = "g".repeat(256);
        let mut out = vec![1, 2, 3];
        let err = encode(&frame, &mut out).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert_eq!(out, vec![1, 2, 3]);
    }
}
