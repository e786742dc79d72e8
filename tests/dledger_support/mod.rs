//! For the DLedger takeover tests: a writer of `dledger-<selfId>/` directories laid out as
//! DLedger's DLedgerMmapFileStore and RocketMQ's DLedgerCommitLog write them
//! (../shared/reference/dledger.md, "Storage"; rocketmq-store-format.md 1.10), byte by
//! byte: big-endian 48-byte entry headers (magic, size = 48 + body, index, term, pos,
//! channel 0, chainCrc 0, bodyCrc 0, body length) with one classic message record as the
//! body of a NORMAL entry, its PHYSICALOFFSET = pos + 48; a blank (int -1, int bytes
//! left, zeros) when `size + 8` does not fit in the file; 32-byte index records (magic,
//! pos, size, index, term) at `index * 32`; `currterm` as Java properties.

#![allow(dead_code)]

use bytes::Bytes;
use rmqraft::broker::record::{encode_properties, MessageRecord};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

pub const HEADER: u64 = 48;
pub const INDEX_RECORD: u64 = 32;

/// One entry to write.
#[derive(Clone)]
pub enum Item {
    /// A NORMAL entry (magic 1) holding a message.
    Msg {
        term: u64,
        topic: String,
        queue_id: i32,
        keys: String,
        uniq: String,
        body: Bytes,
        store_host: SocketAddr,
    },
    /// A NOOP entry (magic 2, empty body), as a new DLedger leader appends one.
    Noop { term: u64 },
}

impl Item {
    pub fn term(&self) -> u64 {
        match self {
            Item::Msg { term, .. } | Item::Noop { term } => *term,
        }
    }
}

/// `n` items over `queues` queues of "TakeoverTopic": a NOOP at the start of each term,
/// the term going up every `per_term` items, every 9th message on "OtherTopic".
pub fn items(n: usize, queues: i32, per_term: usize) -> Vec<Item> {
    let mut out = Vec::with_capacity(n);
    let mut term = 1;
    for i in 0..n {
        if i % per_term == 0 {
            if i > 0 {
                term += 1;
            }
            out.push(Item::Noop { term });
            continue;
        }
        let (topic, queue_id) = if i % 9 == 4 {
            ("OtherTopic".to_string(), 0)
        } else {
            ("TakeoverTopic".to_string(), (i as i32) % queues)
        };
        out.push(Item::Msg {
            term,
            topic,
            queue_id,
            keys: format!("d{i:06} batch-{}", i / 10),
            uniq: format!("0A01D1ED{:08X}{:016X}", 3, i),
            body: Bytes::from(format!("dledger message {i}: {}", "q".repeat(i % 200))),
            store_host: "10.1.30.40:30911".parse().unwrap(),
        });
    }
    out
}

/// What the writer wrote.
pub struct Written {
    /// Each message: (commitlog offset = pos + 48, record, its bytes, entry index).
    pub records: Vec<(u64, MessageRecord, Bytes, u64)>,
    /// Each entry: (index, term, pos, size).
    pub entries: Vec<(u64, u64, u64, u32)>,
    /// Offset after the last entry.
    pub end: u64,
    pub segment_size: u64,
    pub last_term: u64,
}

/// Writes `items` as `dir` (a `dledger-<selfId>` directory) with data files of
/// `segment_size` and index files of `index_file_size`, entries from index 0, and
/// `currterm` with `curr_term` and voteLeader `vote`.
pub fn write(
    dir: &Path,
    segment_size: u64,
    index_file_size: u64,
    items: &[Item],
    curr_term: u64,
    vote: &str,
) -> Written {
    let data = dir.join("data");
    let index = dir.join("index");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&index).unwrap();
    let mut files: Vec<Vec<u8>> = vec![vec![0u8; segment_size as usize]];
    let mut index_bytes: Vec<u8> = Vec::new();
    let mut pos = 0u64;
    let mut next_qo: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut records = Vec::new();
    let mut entries = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let idx = i as u64;
        let (magic, body, rec) = match item {
            Item::Noop { .. } => (2i32, Bytes::new(), None),
            Item::Msg {
                topic,
                queue_id,
                keys,
                uniq,
                body,
                store_host,
                ..
            } => {
                let qo = next_qo.entry((topic.clone(), *queue_id)).or_insert(0);
                let rec = MessageRecord {
                    queue_id: *queue_id,
                    flag: 0,
                    queue_offset: *qo,
                    physical_offset: 0,
                    sys_flag: 0,
                    born_timestamp: 1_700_000_000_000 + i as i64,
                    born_host: "10.0.0.9:40000".parse().unwrap(),
                    store_timestamp: 1_700_000_000_100 + i as i64,
                    store_host: *store_host,
                    reconsume_times: 0,
                    prepared_transaction_offset: 0,
                    body: body.clone(),
                    topic: topic.clone(),
                    properties: encode_properties([
                        ("KEYS", keys.as_str()),
                        ("TAGS", "TagA"),
                        ("UNIQ_KEY", uniq.as_str()),
                        ("WAIT", "true"),
                    ]),
                    body_crc: 0,
                };
                *qo += 1;
                (1i32, Bytes::new(), Some(rec))
            }
        };
        let body_len = match &rec {
            Some(r) => r.encoded_len() as u64,
            None => body.len() as u64,
        };
        let size = HEADER + body_len;
        let in_file = pos % segment_size;
        if size + 8 > segment_size - in_file {
            // MmapFileList.preAppend: int -1, int bytes left, the rest zeros.
            let remaining = segment_size - in_file;
            let f = files.last_mut().unwrap();
            let at = in_file as usize;
            f[at..at + 4].copy_from_slice(&(-1i32).to_be_bytes());
            f[at + 4..at + 8].copy_from_slice(&(remaining as i32).to_be_bytes());
            pos += remaining;
            files.push(vec![0u8; segment_size as usize]);
        }
        let body = match rec {
            Some(mut r) => {
                // DLedgerCommitLog's AppendHook: PHYSICALOFFSET = pos + 48.
                r.physical_offset = (pos + HEADER) as i64;
                let bytes = r.encode().unwrap();
                let (r, _) = MessageRecord::decode(&bytes).unwrap();
                records.push((pos + HEADER, r, bytes.clone(), idx));
                bytes
            }
            None => body,
        };
        let mut h = Vec::with_capacity(size as usize);
        h.extend_from_slice(&magic.to_be_bytes());
        h.extend_from_slice(&(size as i32).to_be_bytes());
        h.extend_from_slice(&idx.to_be_bytes());
        h.extend_from_slice(&item.term().to_be_bytes());
        h.extend_from_slice(&pos.to_be_bytes());
        h.extend_from_slice(&0i32.to_be_bytes()); // channel
        h.extend_from_slice(&0i32.to_be_bytes()); // chainCrc
        h.extend_from_slice(&0i32.to_be_bytes()); // bodyCrc
        h.extend_from_slice(&(body.len() as i32).to_be_bytes());
        h.extend_from_slice(&body);
        let at = (pos % segment_size) as usize;
        files.last_mut().unwrap()[at..at + h.len()].copy_from_slice(&h);
        index_bytes.extend_from_slice(&magic.to_be_bytes());
        index_bytes.extend_from_slice(&pos.to_be_bytes());
        index_bytes.extend_from_slice(&(size as i32).to_be_bytes());
        index_bytes.extend_from_slice(&idx.to_be_bytes());
        index_bytes.extend_from_slice(&item.term().to_be_bytes());
        entries.push((idx, item.term(), pos, size as u32));
        pos += size;
    }
    for (n, f) in files.iter().enumerate() {
        std::fs::write(data.join(format!("{:020}", n as u64 * segment_size)), f).unwrap();
    }
    let mut from = 0u64;
    loop {
        let mut f = vec![0u8; index_file_size as usize];
        let upto = (index_bytes.len() as u64).min(from + index_file_size);
        if from < upto {
            f[..(upto - from) as usize].copy_from_slice(&index_bytes[from as usize..upto as usize]);
        }
        std::fs::write(index.join(format!("{from:020}")), f).unwrap();
        from += index_file_size;
        if from >= index_bytes.len() as u64 {
            break;
        }
    }
    // IOUtils.string2File of Properties.store: a comment line, then key=value lines.
    std::fs::write(
        dir.join("currterm"),
        format!("#Wed Dec 02 10:00:00 UTC 2026\ncurrTerm={curr_term}\nvoteLeader={vote}\n"),
    )
    .unwrap();
    Written {
        records,
        last_term: items.last().map_or(0, Item::term),
        entries,
        end: pos,
        segment_size,
    }
}

/// A RocketMQ config/ beside the DLedger directories, as in a store root.
pub fn write_config(root: &Path, queues: i32) {
    let cfg = root.join("config");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(
        cfg.join("topics.json"),
        format!(
            "{{\n\t\"topicConfigTable\":{{\n\t\t\"TakeoverTopic\":{{\n\t\t\t\"perm\":6,\n\t\t\t\
             \"readQueueNums\":{queues},\n\t\t\t\"topicName\":\"TakeoverTopic\",\n\t\t\t\
             \"writeQueueNums\":{queues}\n\t\t}}\n\t}}\n}}"
        ),
    )
    .unwrap();
    std::fs::write(
        cfg.join("consumerOffset.json"),
        "{\n\t\"offsetTable\":{\n\t\t\"TakeoverTopic@cg1\":{0:3,1:2\n\t\t}\n\t}\n}",
    )
    .unwrap();
}
