//! RocketMQ commitlog message records, byte for byte as RocketMQ writes them
//! (`../shared/reference/rocketmq-store-format.md` section 1.3): big-endian, BODYCRC =
//! CRC32 (IEEE) & 0x7FFFFFFF, properties as `name 0x01 value 0x02` pairs. v1 magic for
//! topics up to 127 bytes, v2 (2-byte topic length) above.

use crate::error::{Error, ErrorKind, Result};
use bytes::{BufMut, Bytes, BytesMut};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// MAGICCODE of a v1 record (1-byte topic length).
pub const MAGIC_V1: u32 = 0xDAA3_20A7;
/// MAGICCODE of a v2 record (2-byte topic length).
pub const MAGIC_V2: u32 = 0xDAA3_20AB;
/// MAGICCODE of RocketMQ's end-of-file blank record.
pub const MAGIC_BLANK: u32 = 0xCBD4_3194;
/// Byte position of QUEUEOFFSET in a record.
pub const QUEUE_OFFSET_AT: usize = 20;
/// Byte position of PHYSICALOFFSET in a record.
pub const PHYSICAL_OFFSET_AT: usize = 28;
/// Longest PROPERTIES string (a Java short).
pub const PROPERTIES_BYTES_MAX: usize = 32767;
/// Longest topic a v1 record holds; longer ones are written as v2.
pub const TOPIC_V1_BYTES_MAX: usize = 127;

/// SYSFLAG bits (RocketMQ's `MessageSysFlag`).
pub mod sysflag {
    pub const COMPRESSED: i32 = 0x1;
    pub const MULTI_TAGS: i32 = 0x2;
    pub const TRANSACTION_MASK: i32 = 0xC;
    pub const TRANSACTION_PREPARED: i32 = 0x4;
    pub const TRANSACTION_ROLLBACK: i32 = 0xC;
    pub const BORNHOST_V6: i32 = 0x10;
    pub const STOREHOST_V6: i32 = 0x20;
}

/// Well-known property names (RocketMQ's `MessageConst`).
pub mod prop {
    pub const KEYS: &str = "KEYS";
    pub const TAGS: &str = "TAGS";
    /// MessageConst.PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX: its value is "UNIQ_KEY".
    pub const UNIQ_KEY: &str = "UNIQ_KEY";
    pub const WAIT: &str = "WAIT";
    pub const DELAY: &str = "DELAY";
    pub const REAL_TOPIC: &str = "REAL_TOPIC";
    pub const REAL_QID: &str = "REAL_QID";
    pub const RETRY_TOPIC: &str = "RETRY_TOPIC";
    pub const RECONSUME_TIME: &str = "RECONSUME_TIME";
    pub const MAX_RECONSUME_TIMES: &str = "MAX_RECONSUME_TIMES";
    pub const ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";
    pub const MIN_OFFSET: &str = "MIN_OFFSET";
    pub const MAX_OFFSET: &str = "MAX_OFFSET";
}

/// One decoded (or to-be-encoded) commitlog message record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    pub queue_id: i32,
    pub flag: i32,
    pub queue_offset: i64,
    pub physical_offset: i64,
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub store_timestamp: i64,
    pub store_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    pub body: Bytes,
    pub topic: String,
    /// The PROPERTIES string as stored (`name 0x01 value 0x02` pairs).
    pub properties: String,
    /// BODYCRC as stored (decode) or as computed (encode).
    pub body_crc: u32,
}

/// RocketMQ's BODYCRC: CRC32 (IEEE) of the body, top bit cleared.
pub fn body_crc(body: &[u8]) -> u32 {
    crc32fast::hash(body) & 0x7FFF_FFFF
}

/// Java's `String.hashCode` over the UTF-16 code units: RocketMQ's tags code and the
/// hash of its index keys.
pub fn java_string_hash(s: &str) -> i32 {
    let mut h: i32 = 0;
    for unit in s.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(unit as i32);
    }
    h
}

/// Encodes properties as RocketMQ does: `name 0x01 value 0x02` for every pair.
pub fn encode_properties<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut s = String::new();
    for (name, value) in pairs {
        s.push_str(name);
        s.push('\u{1}');
        s.push_str(value);
        s.push('\u{2}');
    }
    s
}

/// Decodes a PROPERTIES string as RocketMQ does: split on 0x02 then on the first 0x01;
/// segments without a name or a value are skipped.
pub fn decode_properties(s: &str) -> Vec<(String, String)> {
    s.split('\u{2}')
        .filter_map(|pair| {
            let (name, value) = pair.split_once('\u{1}')?;
            (!name.is_empty() && !value.is_empty()).then(|| (name.to_string(), value.to_string()))
        })
        .collect()
}

/// The value of property `name` in a PROPERTIES string.
pub fn property<'a>(properties: &'a str, name: &str) -> Option<&'a str> {
    properties.split('\u{2}').find_map(|pair| {
        let (n, v) = pair.split_once('\u{1}')?;
        (n == name && !v.is_empty()).then_some(v)
    })
}

fn put_host(buf: &mut BytesMut, addr: &SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => buf.put_slice(&ip.octets()),
        IpAddr::V6(ip) => buf.put_slice(&ip.octets()),
    }
    buf.put_i32(i32::from(addr.port()));
}

/// The bytes a record of this shape takes (RocketMQ's `calMsgLength`).
pub fn record_len(
    sys_flag: i32,
    body_len: usize,
    topic_len: usize,
    properties_len: usize,
) -> usize {
    let bh = if sys_flag & sysflag::BORNHOST_V6 != 0 {
        20
    } else {
        8
    };
    let sh = if sys_flag & sysflag::STOREHOST_V6 != 0 {
        20
    } else {
        8
    };
    let topic_len_field = if topic_len > TOPIC_V1_BYTES_MAX { 2 } else { 1 };
    4 + 4
        + 4
        + 4
        + 4
        + 8
        + 8
        + 4
        + 8
        + bh
        + 8
        + sh
        + 4
        + 8
        + 4
        + body_len
        + topic_len_field
        + topic_len
        + 2
        + properties_len
}

impl MessageRecord {
    /// SYSFLAG with the host bits set from the host addresses (the broker does so).
    pub fn effective_sys_flag(&self) -> i32 {
        let mut f = self.sys_flag & !(sysflag::BORNHOST_V6 | sysflag::STOREHOST_V6);
        if self.born_host.is_ipv6() {
            f |= sysflag::BORNHOST_V6;
        }
        if self.store_host.is_ipv6() {
            f |= sysflag::STOREHOST_V6;
        }
        f
    }

    /// The encoded length of this record.
    pub fn encoded_len(&self) -> usize {
        record_len(
            self.effective_sys_flag(),
            self.body.len(),
            self.topic.len(),
            self.properties.len(),
        )
    }

    /// Encodes the record (BODYCRC computed here; `body_crc` is ignored). Refuses a
    /// topic over 32767 bytes or properties over 32767 bytes.
    pub fn encode(&self) -> Result<Bytes> {
        if self.properties.len() > PROPERTIES_BYTES_MAX {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "properties of {} bytes exceed RocketMQ's limit of {PROPERTIES_BYTES_MAX}",
                    self.properties.len()
                ),
            ));
        }
        if self.topic.is_empty() || self.topic.len() > i16::MAX as usize {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("topic of {} bytes cannot be stored", self.topic.len()),
            ));
        }
        let total = self.encoded_len();
        let v2 = self.topic.len() > TOPIC_V1_BYTES_MAX;
        let mut buf = BytesMut::with_capacity(total);
        buf.put_i32(total as i32);
        buf.put_u32(if v2 { MAGIC_V2 } else { MAGIC_V1 });
        buf.put_u32(body_crc(&self.body));
        buf.put_i32(self.queue_id);
        buf.put_i32(self.flag);
        buf.put_i64(self.queue_offset);
        buf.put_i64(self.physical_offset);
        buf.put_i32(self.effective_sys_flag());
        buf.put_i64(self.born_timestamp);
        put_host(&mut buf, &self.born_host);
        buf.put_i64(self.store_timestamp);
        put_host(&mut buf, &self.store_host);
        buf.put_i32(self.reconsume_times);
        buf.put_i64(self.prepared_transaction_offset);
        buf.put_i32(self.body.len() as i32);
        buf.put_slice(&self.body);
        if v2 {
            buf.put_i16(self.topic.len() as i16);
        } else {
            buf.put_i8(self.topic.len() as i8);
        }
        buf.put_slice(self.topic.as_bytes());
        buf.put_i16(self.properties.len() as i16);
        buf.put_slice(self.properties.as_bytes());
        debug_assert_eq!(buf.len(), total);
        Ok(buf.freeze())
    }

    /// Decodes one record at the start of `b` (trailing bytes are allowed and ignored);
    /// returns it and its TOTALSIZE. Every length is checked; a BODYCRC mismatch, a bad
    /// magic or a TOTALSIZE that disagrees with the fields is `Corrupt`. Never panics.
    pub fn decode(b: &[u8]) -> Result<(MessageRecord, usize)> {
        Self::decode_in(b, None)
    }

    /// As [`MessageRecord::decode`], the body a slice of `b` rather than a copy.
    pub fn decode_shared(b: &Bytes) -> Result<(MessageRecord, usize)> {
        Self::decode_in(b, Some(b))
    }

    fn decode_in(b: &[u8], shared: Option<&Bytes>) -> Result<(MessageRecord, usize)> {
        let mut r = Reader { b, at: 0 };
        let total = r.i32()?;
        let magic = r.u32()?;
        if magic == MAGIC_BLANK {
            return Err(Error::corrupt(
                "a blank (end of file) record, not a message",
            ));
        }
        let v2 = match magic {
            MAGIC_V1 => false,
            MAGIC_V2 => true,
            other => return Err(Error::corrupt(format!("illegal magic code {other:#010x}"))),
        };
        if total < 0 || total as usize > b.len() {
            return Err(Error::corrupt(format!(
                "TOTALSIZE {total} exceeds the {} bytes there",
                b.len()
            )));
        }
        let total = total as usize;
        let mut r = Reader {
            b: &b[..total],
            at: 8,
        };
        let stored_crc = r.u32()?;
        let queue_id = r.i32()?;
        let flag = r.i32()?;
        let queue_offset = r.i64()?;
        let physical_offset = r.i64()?;
        let sys_flag = r.i32()?;
        let born_timestamp = r.i64()?;
        let born_host = r.host(sys_flag & sysflag::BORNHOST_V6 != 0)?;
        let store_timestamp = r.i64()?;
        let store_host = r.host(sys_flag & sysflag::STOREHOST_V6 != 0)?;
        let reconsume_times = r.i32()?;
        let prepared_transaction_offset = r.i64()?;
        let body_len = r.i32()?;
        if body_len < 0 {
            return Err(Error::corrupt(format!("negative body length {body_len}")));
        }
        let body_at = r.at;
        let body_bytes = r.take(body_len as usize)?;
        let body = match shared {
            Some(all) => all.slice(body_at..body_at + body_bytes.len()),
            None => Bytes::copy_from_slice(body_bytes),
        };
        let topic_len = if v2 {
            r.i16()? as i32
        } else {
            // RocketMQ reads the v1 topic length as a signed byte.
            r.take(1)?[0] as i8 as i32
        };
        if topic_len < 0 {
            return Err(Error::corrupt(format!("negative topic length {topic_len}")));
        }
        let topic = std::str::from_utf8(r.take(topic_len as usize)?)
            .map_err(|_| Error::corrupt("topic is not UTF-8"))?
            .to_string();
        let props_len = r.i16()?;
        if props_len < 0 {
            return Err(Error::corrupt(format!(
                "negative properties length {props_len}"
            )));
        }
        let properties = std::str::from_utf8(r.take(props_len as usize)?)
            .map_err(|_| Error::corrupt("properties are not UTF-8"))?
            .to_string();
        if r.at != total {
            return Err(Error::corrupt(format!(
                "TOTALSIZE {total} but the fields end at {}",
                r.at
            )));
        }
        let crc = body_crc(&body);
        if crc != stored_crc {
            return Err(Error::corrupt(format!(
                "BODYCRC {stored_crc:#x} but the body's is {crc:#x}"
            )));
        }
        Ok((
            MessageRecord {
                queue_id,
                flag,
                queue_offset,
                physical_offset,
                sys_flag,
                born_timestamp,
                born_host,
                store_timestamp,
                store_host,
                reconsume_times,
                prepared_transaction_offset,
                body,
                topic,
                properties,
                body_crc: stored_crc,
            },
            total,
        ))
    }

    /// The value of a property.
    pub fn property(&self, name: &str) -> Option<&str> {
        property(&self.properties, name)
    }

    pub fn tags(&self) -> Option<&str> {
        self.property(prop::TAGS)
    }

    pub fn keys(&self) -> Option<&str> {
        self.property(prop::KEYS)
    }

    pub fn uniq_key(&self) -> Option<&str> {
        self.property(prop::UNIQ_KEY)
    }

    /// The consume-queue tags code: `TAGS.hashCode()`, 0 without tags.
    pub fn tags_code(&self) -> i64 {
        self.tags().map_or(0, |t| i64::from(java_string_hash(t)))
    }

    /// RocketMQ's offset msg id of this record (store host + PHYSICALOFFSET).
    pub fn offset_msg_id(&self) -> String {
        offset_msg_id(&self.store_host, self.physical_offset)
    }
}

/// Patches QUEUEOFFSET and PHYSICALOFFSET of an encoded record in place.
pub fn stamp_offsets(record: &mut [u8], queue_offset: i64, physical_offset: i64) {
    record[QUEUE_OFFSET_AT..QUEUE_OFFSET_AT + 8].copy_from_slice(&queue_offset.to_be_bytes());
    record[PHYSICAL_OFFSET_AT..PHYSICAL_OFFSET_AT + 8]
        .copy_from_slice(&physical_offset.to_be_bytes());
}

/// RocketMQ's `MessageDecoder.createMessageId`: uppercase hex of the store host's
/// address (4 or 16 bytes), its port (4 bytes) and the commitlog offset (8 bytes):
/// 32 characters for IPv4, 56 for IPv6.
pub fn offset_msg_id(store_host: &SocketAddr, offset: i64) -> String {
    let mut b = BytesMut::with_capacity(28);
    put_host(&mut b, store_host);
    b.put_i64(offset);
    hex_upper(&b)
}

/// Parses an offset msg id back into (store host, commitlog offset); `None` if it is
/// not one (wrong length or not hex).
pub fn parse_offset_msg_id(id: &str) -> Option<(SocketAddr, i64)> {
    let bytes = unhex(id)?;
    let (ip, rest): (IpAddr, &[u8]) = match bytes.len() {
        16 => (
            IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(&bytes[..4]).ok()?)),
            &bytes[4..],
        ),
        28 => (
            IpAddr::V6(std::net::Ipv6Addr::from(
                <[u8; 16]>::try_from(&bytes[..16]).ok()?,
            )),
            &bytes[16..],
        ),
        _ => return None,
    };
    let port = i32::from_be_bytes(rest[..4].try_into().ok()?);
    let offset = i64::from_be_bytes(rest[4..12].try_into().ok()?);
    Some((SocketAddr::new(ip, u16::try_from(port).ok()?), offset))
}

pub(crate) fn hex_upper(b: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(HEX[(x >> 4) as usize] as char);
        s.push(HEX[(x & 15) as usize] as char);
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// The fields the dispatch step needs, borrowed from an encoded record: no body copy,
/// no allocation, and no BODYCRC check (the log entry's CRC32C covers these bytes;
/// [`MessageRecord::decode`] checks BODYCRC wherever a message is read back).
#[derive(Debug, Clone, Copy)]
pub struct RecordHead<'a> {
    pub queue_id: i32,
    pub queue_offset: i64,
    pub physical_offset: i64,
    pub store_timestamp: i64,
    pub topic: &'a str,
    pub properties: &'a str,
    /// TOTALSIZE.
    pub size: usize,
}

impl<'a> RecordHead<'a> {
    /// Parses the record at the start of `b`; every length is checked, as in
    /// [`MessageRecord::decode`].
    pub fn parse(b: &'a [u8]) -> Result<RecordHead<'a>> {
        let mut r = Reader { b, at: 0 };
        let total = r.i32()?;
        let magic = r.u32()?;
        let v2 = match magic {
            MAGIC_V1 => false,
            MAGIC_V2 => true,
            other => return Err(Error::corrupt(format!("illegal magic code {other:#010x}"))),
        };
        if total < 0 || total as usize > b.len() {
            return Err(Error::corrupt(format!(
                "TOTALSIZE {total} exceeds the {} bytes there",
                b.len()
            )));
        }
        let total = total as usize;
        let mut r = Reader {
            b: &b[..total],
            at: 8,
        };
        r.u32()?; // BODYCRC
        let queue_id = r.i32()?;
        r.i32()?; // FLAG
        let queue_offset = r.i64()?;
        let physical_offset = r.i64()?;
        let sys_flag = r.i32()?;
        r.i64()?; // BORNTIMESTAMP
        r.host(sys_flag & sysflag::BORNHOST_V6 != 0)?;
        let store_timestamp = r.i64()?;
        r.host(sys_flag & sysflag::STOREHOST_V6 != 0)?;
        r.i32()?; // RECONSUMETIMES
        r.i64()?; // PREPAREDTRANSACTIONOFFSET
        let body_len = r.i32()?;
        if body_len < 0 {
            return Err(Error::corrupt(format!("negative body length {body_len}")));
        }
        r.take(body_len as usize)?;
        let topic_len = if v2 {
            r.i16()? as i32
        } else {
            r.take(1)?[0] as i8 as i32
        };
        if topic_len < 0 {
            return Err(Error::corrupt(format!("negative topic length {topic_len}")));
        }
        let topic = std::str::from_utf8(r.take(topic_len as usize)?)
            .map_err(|_| Error::corrupt("topic is not UTF-8"))?;
        let props_len = r.i16()?;
        if props_len < 0 {
            return Err(Error::corrupt(format!(
                "negative properties length {props_len}"
            )));
        }
        let properties = std::str::from_utf8(r.take(props_len as usize)?)
            .map_err(|_| Error::corrupt("properties are not UTF-8"))?;
        if r.at != total {
            return Err(Error::corrupt(format!(
                "TOTALSIZE {total} but the fields end at {}",
                r.at
            )));
        }
        Ok(RecordHead {
            queue_id,
            queue_offset,
            physical_offset,
            store_timestamp,
            topic,
            properties,
            size: total,
        })
    }

    pub fn property(&self, name: &str) -> Option<&'a str> {
        property(self.properties, name)
    }

    pub fn tags(&self) -> Option<&'a str> {
        self.property(prop::TAGS)
    }

    pub fn keys(&self) -> Option<&'a str> {
        self.property(prop::KEYS)
    }

    pub fn uniq_key(&self) -> Option<&'a str> {
        self.property(prop::UNIQ_KEY)
    }
}

/// A bounds-checked big-endian reader.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.b.len());
        let Some(end) = end else {
            return Err(Error::corrupt(format!(
                "record truncated: {n} bytes wanted at {} of {}",
                self.at,
                self.b.len()
            )));
        };
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N]> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn i16(&mut self) -> Result<i16> {
        Ok(i16::from_be_bytes(self.arr()?))
    }
    fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(self.arr()?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.arr()?))
    }
    fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_be_bytes(self.arr()?))
    }
    fn host(&mut self, v6: bool) -> Result<SocketAddr> {
        let ip = if v6 {
            IpAddr::V6(std::net::Ipv6Addr::from(self.arr::<16>()?))
        } else {
            IpAddr::V4(Ipv4Addr::from(self.arr::<4>()?))
        };
        let port = self.i32()?;
        // Java stores the port as an int; anything outside u16 is kept as 0.
        Ok(SocketAddr::new(ip, u16::try_from(port).unwrap_or(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_hash_matches_known_values() {
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("TagA"), 2598919);
        assert_eq!(java_string_hash("hello"), 99162322);
    }

    #[test]
    fn decoder_never_panics_on_any_prefix_or_flip() {
        let rec = MessageRecord {
            queue_id: 1,
            flag: 0,
            queue_offset: 5,
            physical_offset: 48,
            sys_flag: 0,
            born_timestamp: 1,
            born_host: "[::1]:7".parse().unwrap(),
            store_timestamp: 2,
            store_host: "127.0.0.1:10911".parse().unwrap(),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: Bytes::from_static(b"body"),
            topic: "T".into(),
            properties: encode_properties([("TAGS", "a")]),
            body_crc: 0,
        };
        let b = rec.encode().unwrap();
        let (back, n) = MessageRecord::decode(&b).unwrap();
        assert_eq!(n, b.len());
        assert_eq!(back.born_host, rec.born_host);
        assert_eq!(RecordHead::parse(&b).unwrap().size, b.len());
        for cut in 0..b.len() {
            assert!(MessageRecord::decode(&b[..cut]).is_err());
            assert!(RecordHead::parse(&b[..cut]).is_err());
        }
        for i in 0..b.len() {
            let mut c = b.to_vec();
            c[i] ^= 0x80;
            let _ = MessageRecord::decode(&c);
            let _ = RecordHead::parse(&c);
        }
    }
}
