//! For the upgrade tests: copies of the Java-written fixtures, snapshots of every byte,
//! and a writer of classic commitlogs laid out as RocketMQ's CommitLog writes them
//! (rocketmq-store-format.md 1.2-1.3.5): records back to back, an 8-byte BLANK
//! (`remaining`, 0xCBD43194) when `size + 8` does not fit, every file its full size.

#![allow(dead_code)]

use bytes::Bytes;
use rmqraft::broker::record::{encode_properties, MessageRecord};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const BLANK_MAGIC: u32 = 0xCBD4_3194;

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/rocketmq-store")
        .join(name)
}

/// Every file under `root`: relative path -> (size, SHA-256).
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u64, [u8; 32])> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, (u64, [u8; 32])>) {
        for item in std::fs::read_dir(dir).unwrap() {
            let path = item.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.insert(
                    path.strip_prefix(root).unwrap().to_path_buf(),
                    (bytes.len() as u64, Sha256::digest(&bytes).into()),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for item in std::fs::read_dir(from).unwrap() {
        let item = item.unwrap();
        let target = to.join(item.file_name());
        if item.file_type().unwrap().is_dir() {
            copy_dir(&item.path(), &target);
        } else {
            std::fs::copy(item.path(), &target).unwrap();
            let mut perms = std::fs::metadata(&target).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            std::fs::set_permissions(&target, perms).unwrap();
        }
    }
}

/// One message the writer stores.
#[derive(Clone)]
pub struct OldMsg {
    pub topic: String,
    pub queue_id: i32,
    pub keys: String,
    pub uniq: String,
    pub tags: String,
    pub body: Bytes,
    pub born_host: SocketAddr,
    pub store_host: SocketAddr,
}

/// What the writer stored: each record as written, at its offset.
pub struct Written {
    pub records: Vec<(u64, MessageRecord, Bytes)>,
    /// Offset after the last record.
    pub end: u64,
    pub segment_size: u64,
}

/// `n` messages over `topics` x `queues`: every 7th topic name is 200 bytes long (a v2
/// record), every 5th message has IPv6 hosts.
pub fn messages(n: usize, queues: i32) -> Vec<OldMsg> {
    let long_topic = format!("LongTopic{}", "x".repeat(191));
    (0..n)
        .map(|i| {
            let (topic, queue_id) = if i % 7 == 3 {
                (long_topic.clone(), 0)
            } else {
                ("OrderTopic".to_string(), (i as i32) % queues)
            };
            let v6 = i % 5 == 1;
            let born: SocketAddr = if v6 {
                format!("[fd00::{:x}]:{}", i % 100 + 1, 40000 + i % 1000)
                    .parse()
                    .unwrap()
            } else {
                format!("10.0.0.{}:{}", i % 200 + 1, 40000 + i % 1000)
                    .parse()
                    .unwrap()
            };
            let store: SocketAddr = if v6 {
                "[fd00::1]:10911".parse().unwrap()
            } else {
                "10.1.30.38:10911".parse().unwrap()
            };
            OldMsg {
                topic,
                queue_id,
                keys: format!("m{i:06} order-{}", i / 3),
                uniq: format!("0A011E26{:08X}{:016X}", 7, i),
                tags: format!("Tag{}", i % 3),
                body: Bytes::from(format!("body of old message {i}: {}", "p".repeat(i % 300))),
                born_host: born,
                store_host: store,
            }
        })
        .collect()
}

/// Writes `msgs` as a classic commitlog in `dir` with segments of `segment_size`.
pub fn write_commitlog(dir: &Path, segment_size: u64, msgs: &[OldMsg]) -> Written {
    std::fs::create_dir_all(dir).unwrap();
    let mut files: Vec<Vec<u8>> = vec![vec![0u8; segment_size as usize]];
    let mut pos = 0u64;
    let mut next_qo: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut records = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        let qo = next_qo.entry((m.topic.clone(), m.queue_id)).or_insert(0);
        let mut rec = MessageRecord {
            queue_id: m.queue_id,
            flag: 0,
            queue_offset: *qo,
            physical_offset: 0,
            sys_flag: 0,
            born_timestamp: 1_700_000_000_000 + i as i64,
            born_host: m.born_host,
            store_timestamp: 1_700_000_000_100 + i as i64,
            store_host: m.store_host,
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: m.body.clone(),
            topic: m.topic.clone(),
            properties: encode_properties([
                ("KEYS", m.keys.as_str()),
                ("TAGS", m.tags.as_str()),
                ("UNIQ_KEY", m.uniq.as_str()),
                ("WAIT", "true"),
            ]),
            body_crc: 0,
        };
        let len = rec.encoded_len() as u64;
        let in_file = pos % segment_size;
        if len + 8 > segment_size - in_file {
            let remaining = segment_size - in_file;
            let f = files.last_mut().unwrap();
            f[in_file as usize..in_file as usize + 4]
                .copy_from_slice(&(remaining as i32).to_be_bytes());
            f[in_file as usize + 4..in_file as usize + 8]
                .copy_from_slice(&BLANK_MAGIC.to_be_bytes());
            pos += remaining;
            files.push(vec![0u8; segment_size as usize]);
        }
        rec.physical_offset = pos as i64;
        let bytes = rec.encode().unwrap();
        let at = (pos % segment_size) as usize;
        files.last_mut().unwrap()[at..at + bytes.len()].copy_from_slice(&bytes);
        records.push((pos, rec, bytes.clone()));
        pos += len;
        *qo += 1;
    }
    for (n, f) in files.iter().enumerate() {
        std::fs::write(dir.join(format!("{:020}", n as u64 * segment_size)), f).unwrap();
    }
    Written {
        records,
        end: pos,
        segment_size,
    }
}

/// A store root with `commitlog/` and config/*.json (fastjson style: tabs, unquoted
/// integer keys).
pub fn write_store(root: &Path, segment_size: u64, msgs: &[OldMsg], queues: i32) -> Written {
    let w = write_commitlog(&root.join("commitlog"), segment_size, msgs);
    let cfg = root.join("config");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(
        cfg.join("topics.json"),
        format!(
            "{{\n\t\"dataVersion\":{{\n\t\t\"counter\":2,\n\t\t\"timestamp\":1700000000000\n\t}},\n\t\
             \"topicConfigTable\":{{\n\t\t\"OrderTopic\":{{\n\t\t\t\"order\":false,\n\t\t\t\
             \"perm\":6,\n\t\t\t\"readQueueNums\":{queues},\n\t\t\t\"topicFilterType\":\"SINGLE_TAG\",\
             \n\t\t\t\"topicName\":\"OrderTopic\",\n\t\t\t\"topicSysFlag\":0,\n\t\t\t\
             \"writeQueueNums\":{queues}\n\t\t}}\n\t}}\n}}"
        ),
    )
    .unwrap();
    std::fs::write(
        cfg.join("consumerOffset.json"),
        "{\n\t\"offsetTable\":{\n\t\t\"OrderTopic@cg1\":{0:5,1:7\n\t\t}\n\t}\n}",
    )
    .unwrap();
    w
}
