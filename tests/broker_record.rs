//! Message records against real records written by Java RocketMQ, and records this
//! library encodes read back by an independent decoder written here from the byte
//! layout (../shared/reference/rocketmq-store-format.md 1.3), not by the library's.

use bytes::Bytes;
use rmqraft::broker::record::{
    self, encode_properties, offset_msg_id, parse_offset_msg_id, MessageRecord,
};
use std::net::SocketAddr;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/rocketmq-store/v4.4-single/commitlog/00000000000000000000"
);

#[test]
fn decodes_all_47_java_records_with_crc_and_offsets() {
    let data = std::fs::read(FIXTURE).expect("fixture present");
    let mut pos = 0usize;
    let mut n = 0;
    loop {
        let magic = u32::from_be_bytes(data[pos + 4..pos + 8].try_into().unwrap());
        if magic == record::MAGIC_BLANK {
            let hole = i32::from_be_bytes(data[pos..pos + 4].try_into().unwrap());
            assert_eq!(
                pos + hole as usize,
                data.len(),
                "the blank record ends the file"
            );
            break;
        }
        let (rec, size) = MessageRecord::decode(&data[pos..]).expect("a Java record decodes");
        assert_eq!(
            rec.physical_offset as usize, pos,
            "PHYSICALOFFSET = position"
        );
        assert_eq!(rec.body_crc, record::body_crc(&rec.body));
        assert_eq!(rec.queue_offset, n as i64);
        assert_eq!(rec.topic, "abc");
        assert!(rec.keys().is_some() && rec.tags().is_some());
        assert_eq!(rec.encoded_len(), size);
        // The dispatch step's borrowed parse agrees with the full decode.
        let head = record::RecordHead::parse(&data[pos..]).expect("the head parses");
        assert_eq!(
            (head.size, head.topic, head.properties, head.queue_id),
            (
                size,
                rec.topic.as_str(),
                rec.properties.as_str(),
                rec.queue_id
            )
        );
        assert_eq!(
            (
                head.queue_offset,
                head.physical_offset,
                head.store_timestamp
            ),
            (rec.queue_offset, rec.physical_offset, rec.store_timestamp)
        );
        assert_eq!((head.keys(), head.tags()), (rec.keys(), rec.tags()));
        // Re-encoding gives the same bytes, but for the property order: compare the
        // decoded properties and everything before them.
        let again = rec.encode().unwrap();
        assert_eq!(again.len(), size);
        let props_at = size - 2 - rec.properties.len();
        assert_eq!(&again[..props_at], &data[pos..pos + props_at]);
        pos += size;
        n += 1;
    }
    assert_eq!(n, 47);
    assert_eq!(pos, 8084, "a 108-byte hole at 8084");
}

// ---- an independent decoder, from the reference layout only

struct Raw {
    total: i32,
    magic: u32,
    body_crc: u32,
    queue_id: i32,
    flag: i32,
    queue_offset: i64,
    physical_offset: i64,
    sys_flag: i32,
    born_ts: i64,
    born_host: Vec<u8>,
    store_ts: i64,
    store_host: Vec<u8>,
    reconsume: i32,
    prepared: i64,
    body: Vec<u8>,
    topic: String,
    props: Vec<(String, String)>,
}

fn raw_decode(b: &[u8]) -> Raw {
    let mut at = 0usize;
    let mut take = |n: usize| {
        let s = b[at..at + n].to_vec();
        at += n;
        s
    };
    let i32_ = |v: Vec<u8>| i32::from_be_bytes(v.try_into().unwrap());
    let i64_ = |v: Vec<u8>| i64::from_be_bytes(v.try_into().unwrap());
    let total = i32_(take(4));
    let magic = i32_(take(4)) as u32;
    let body_crc = i32_(take(4)) as u32;
    let queue_id = i32_(take(4));
    let flag = i32_(take(4));
    let queue_offset = i64_(take(8));
    let physical_offset = i64_(take(8));
    let sys_flag = i32_(take(4));
    let born_ts = i64_(take(8));
    let born_host = take(if sys_flag & 0x10 != 0 { 20 } else { 8 });
    let store_ts = i64_(take(8));
    let store_host = take(if sys_flag & 0x20 != 0 { 20 } else { 8 });
    let reconsume = i32_(take(4));
    let prepared = i64_(take(8));
    let body_len = i32_(take(4)) as usize;
    let body = take(body_len);
    let topic_len = if magic == 0xDAA320AB {
        i16::from_be_bytes(take(2).try_into().unwrap()) as usize
    } else {
        take(1)[0] as usize
    };
    let topic = String::from_utf8(take(topic_len)).unwrap();
    let props_len = i16::from_be_bytes(take(2).try_into().unwrap()) as usize;
    let props_s = String::from_utf8(take(props_len)).unwrap();
    assert_eq!(at, total as usize, "TOTALSIZE covers every field");
    let props = props_s
        .split('\u{2}')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('\u{1}').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    Raw {
        total,
        magic,
        body_crc,
        queue_id,
        flag,
        queue_offset,
        physical_offset,
        sys_flag,
        born_ts,
        born_host,
        store_ts,
        store_host,
        reconsume,
        prepared,
        body,
        topic,
        props,
    }
}

/// CRC32 (IEEE, reflected 0xEDB88320), bitwise: independent of the library's crate.
fn crc32_ieee(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn sample(topic: &str, born: &str, store: &str) -> MessageRecord {
    MessageRecord {
        queue_id: 3,
        flag: 7,
        queue_offset: 12345,
        physical_offset: 987_654_321,
        sys_flag: 0,
        born_timestamp: 1_700_000_000_123,
        born_host: born.parse().unwrap(),
        store_timestamp: 1_700_000_000_456,
        store_host: store.parse().unwrap(),
        reconsume_times: 2,
        prepared_transaction_offset: 0,
        body: Bytes::from_static(b"hello rocketmq"),
        topic: topic.to_string(),
        properties: encode_properties([("KEYS", "k1 k2"), ("TAGS", "TagA"), ("UNIQ_KEY", "X")]),
        body_crc: 0,
    }
}

#[test]
fn encoded_records_parse_with_an_independent_decoder() {
    for (topic, born, store, magic) in [
        ("T", "10.0.0.1:5555", "127.0.0.1:10911", 0xDAA320A7u32),
        (
            &*"t".repeat(127),
            "10.0.0.1:5555",
            "127.0.0.1:10911",
            0xDAA320A7,
        ),
        (
            &*"t".repeat(200),
            "10.0.0.1:5555",
            "127.0.0.1:10911",
            0xDAA320AB,
        ),
        ("T", "[2001:db8::1]:6000", "[::1]:10911", 0xDAA320A7),
    ] {
        let rec = sample(topic, born, store);
        let b = rec.encode().unwrap();
        let raw = raw_decode(&b);
        assert_eq!(raw.total as usize, b.len());
        assert_eq!(raw.magic, magic, "topic of {} bytes", topic.len());
        assert_eq!(raw.body_crc, crc32_ieee(b"hello rocketmq") & 0x7FFF_FFFF);
        assert_eq!(raw.queue_id, 3);
        assert_eq!(raw.flag, 7);
        assert_eq!(raw.queue_offset, 12345);
        assert_eq!(raw.physical_offset, 987_654_321);
        assert_eq!(raw.born_ts, 1_700_000_000_123);
        assert_eq!(raw.store_ts, 1_700_000_000_456);
        assert_eq!(raw.reconsume, 2);
        assert_eq!(raw.prepared, 0);
        assert_eq!(raw.body, b"hello rocketmq");
        assert_eq!(raw.topic, topic);
        let born: SocketAddr = born.parse().unwrap();
        let v6 = born.is_ipv6();
        assert_eq!(raw.sys_flag & 0x10 != 0, v6);
        assert_eq!(raw.sys_flag & 0x20 != 0, v6);
        assert_eq!(raw.born_host.len(), if v6 { 20 } else { 8 });
        assert_eq!(
            u32::from_be_bytes(raw.born_host[raw.born_host.len() - 4..].try_into().unwrap()),
            u32::from(born.port())
        );
        assert_eq!(raw.store_host.len(), if v6 { 20 } else { 8 });
        assert_eq!(
            raw.props,
            vec![
                ("KEYS".to_string(), "k1 k2".to_string()),
                ("TAGS".to_string(), "TagA".to_string()),
                ("UNIQ_KEY".to_string(), "X".to_string())
            ]
        );
        // The library reads its own record back too.
        let (back, n) = MessageRecord::decode(&b).unwrap();
        assert_eq!(n, b.len());
        assert_eq!(back.topic, topic);
    }
}

#[test]
fn offset_msg_ids_are_rocketmqs() {
    let host: SocketAddr = "10.1.30.38:8123".parse().unwrap();
    let id = offset_msg_id(&host, 0x1234);
    assert_eq!(id, "0A011E2600001FBB0000000000001234");
    assert_eq!(parse_offset_msg_id(&id), Some((host, 0x1234)));
    let v6: SocketAddr = "[::1]:10911".parse().unwrap();
    let id6 = offset_msg_id(&v6, 5);
    assert_eq!(id6.len(), 56);
    assert_eq!(parse_offset_msg_id(&id6), Some((v6, 5)));
    assert_eq!(parse_offset_msg_id("not an id"), None);
}

#[test]
fn bad_records_are_refused_without_panics() {
    let rec = sample("T", "10.0.0.1:1", "10.0.0.2:2");
    let body_at = 4 + 4 + 4 + 4 + 4 + 8 + 8 + 4 + 8 + 8 + 8 + 8 + 4 + 8 + 4;
    let mut c = rec.encode().unwrap().to_vec();
    c[body_at] ^= 1;
    let err = MessageRecord::decode(&c).unwrap_err();
    assert!(err.message().contains("BODYCRC"), "{err}");
    let mut d = rec.encode().unwrap().to_vec();
    d[4] = 0;
    assert!(MessageRecord::decode(&d)
        .unwrap_err()
        .message()
        .contains("magic"));
    let long = MessageRecord {
        properties: "x".repeat(32768),
        ..rec
    };
    assert!(long.encode().unwrap_err().message().contains("32767"));
}
