//! Bodies of `BrokerAdmin` entries (kind 4): topic and consumer offset changes, so every
//! member applies the same changes in log order. Little-endian, strings as u16 length +
//! UTF-8. Layout in docs/MESSAGES.md.

use super::topic::TopicConfig;
use crate::error::{Error, Result};
use bytes::{BufMut, Bytes, BytesMut};

const OP_TOPIC_UPDATE: u8 = 1;
const OP_TOPIC_DELETE: u8 = 2;
const OP_CONSUMER_OFFSETS: u8 = 3;
const OP_OLD_LOG_DIGEST: u8 = 4;

/// One replicated broker state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminOp {
    TopicUpdate(TopicConfig),
    TopicDelete(String),
    /// A consumer group's offsets: (topic, queue id, next offset to consume).
    ConsumerOffsets {
        group: String,
        offsets: Vec<(String, i32, u64)>,
    },
    /// The leader's old-log digest (`crate::upgrade::OldLogDigest::encode`, u32 length
    /// first): every member compares its own old log with it.
    OldLogDigest(Bytes),
}

fn put_str(b: &mut BytesMut, s: &str) {
    b.put_u16_le(s.len() as u16);
    b.put_slice(s.as_bytes());
}

impl AdminOp {
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        match self {
            AdminOp::TopicUpdate(t) => {
                b.put_u8(OP_TOPIC_UPDATE);
                put_str(&mut b, &t.name);
                b.put_i32_le(t.read_queue_nums);
                b.put_i32_le(t.write_queue_nums);
                b.put_i32_le(t.perm);
            }
            AdminOp::TopicDelete(name) => {
                b.put_u8(OP_TOPIC_DELETE);
                put_str(&mut b, name);
            }
            AdminOp::ConsumerOffsets { group, offsets } => {
                b.put_u8(OP_CONSUMER_OFFSETS);
                put_str(&mut b, group);
                b.put_u32_le(offsets.len() as u32);
                for (topic, queue, offset) in offsets {
                    put_str(&mut b, topic);
                    b.put_i32_le(*queue);
                    b.put_u64_le(*offset);
                }
            }
            AdminOp::OldLogDigest(d) => {
                b.put_u8(OP_OLD_LOG_DIGEST);
                b.put_u32_le(d.len() as u32);
                b.put_slice(d);
            }
        }
        b.freeze()
    }

    pub fn decode(b: &[u8]) -> Result<AdminOp> {
        let mut r = Cur { b, at: 0 };
        let op = match r.u8()? {
            OP_TOPIC_UPDATE => AdminOp::TopicUpdate(TopicConfig {
                name: r.str()?,
                read_queue_nums: r.i32()?,
                write_queue_nums: r.i32()?,
                perm: r.i32()?,
            }),
            OP_TOPIC_DELETE => AdminOp::TopicDelete(r.str()?),
            OP_CONSUMER_OFFSETS => {
                let group = r.str()?;
                let n = r.u32()? as usize;
                let mut offsets = Vec::with_capacity(n.min(4096));
                for _ in 0..n {
                    offsets.push((r.str()?, r.i32()?, r.u64()?));
                }
                AdminOp::ConsumerOffsets { group, offsets }
            }
            OP_OLD_LOG_DIGEST => {
                let n = r.u32()? as usize;
                AdminOp::OldLogDigest(Bytes::copy_from_slice(r.take(n)?))
            }
            other => return Err(Error::corrupt(format!("unknown broker admin op {other}"))),
        };
        if r.at != b.len() {
            return Err(Error::corrupt("trailing bytes after a broker admin op"));
        }
        Ok(op)
    }
}

/// A bounds-checked little-endian reader (also used by the checkpoint).
pub(crate) struct Cur<'a> {
    pub b: &'a [u8],
    pub at: usize,
}

impl<'a> Cur<'a> {
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or_else(|| Error::corrupt("broker record truncated"))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.arr()?))
    }
    pub fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_le_bytes(self.arr()?))
    }
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.arr()?))
    }
    pub fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.arr()?))
    }
    pub fn str(&mut self) -> Result<String> {
        let n = self.u16()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| Error::corrupt("string is not UTF-8"))
    }
}

pub(crate) fn put_string(b: &mut BytesMut, s: &str) {
    put_str(b, s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_round_trip_and_truncation_is_refused() {
        for op in [
            AdminOp::TopicUpdate(TopicConfig {
                name: "T".into(),
                read_queue_nums: 8,
                write_queue_nums: 4,
                perm: 6,
            }),
            AdminOp::TopicDelete("T".into()),
            AdminOp::ConsumerOffsets {
                group: "g".into(),
                offsets: vec![("T".into(), 3, 99), ("U".into(), 0, 1)],
            },
        ] {
            let b = op.encode();
            assert_eq!(AdminOp::decode(&b).unwrap(), op);
            for cut in 0..b.len() {
                assert!(AdminOp::decode(&b[..cut]).is_err());
            }
        }
    }
}
