//! The broker.conf keys of the message layer (a group's properties carry them).

use crate::config::{parse_properties, GroupConfig};
use crate::error::{Error, Result};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The keys [`BrokerConfig::from_properties`] reads.
pub const BROKER_KEYS: &[&str] = &[
    "autoCreateTopicEnable",
    "defaultTopicQueueNums",
    "maxMessageSize",
    "messageDelayLevel",
    "dedupWindowMs",
    "producerIdExpirationMs",
    "listenPort",
    "namesrvAddr",
    "brokerIP1",
    "rmqraftOffsetCommitIntervalMs",
    "maxHashSlotNum",
    "maxIndexNum",
    "transactionTimeOut",
    "transactionCheckMax",
    "transactionCheckInterval",
];

/// RocketMQ's default `messageDelayLevel`.
pub const DEFAULT_DELAY_LEVELS: &str = "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerConfig {
    /// `autoCreateTopicEnable` (true): a send to an unknown topic creates it with
    /// `defaultTopicQueueNums` read and write queues and perm 6, as RocketMQ's TBW102.
    pub auto_create_topic: bool,
    /// `defaultTopicQueueNums` (8).
    pub default_topic_queue_nums: i32,
    /// `maxMessageSize` (4 MiB): the largest body a send accepts. The whole record must
    /// also fit the group's `maxEntrySize`, or the send is refused as too large.
    pub max_message_size: usize,
    /// `messageDelayLevel`, in milliseconds per level (level 1 first).
    pub delay_levels_ms: Vec<u64>,
    /// `dedupWindowMs` (60000).
    pub dedup_window_ms: u64,
    /// `producerIdExpirationMs` (86400000).
    pub producer_id_expiration_ms: u64,
    /// `listenPort` (10911): the port of the store host in records and offset msg ids.
    pub listen_port: u16,
    /// `namesrvAddr`: name servers, `host:port;host:port` (kept for the remoting layer).
    pub namesrv_addr: Vec<String>,
    /// The store host written into every record: `brokerIP1`, else this member's
    /// address in dLegerPeers when it is a specific address, else 127.0.0.1; with
    /// `listenPort` as its port.
    pub store_host: SocketAddr,
    /// `rmqraftOffsetCommitIntervalMs` (200): at most one consumer-offset entry per
    /// consumer group per interval.
    pub offset_commit_interval_ms: u64,
    /// `maxHashSlotNum` (1,000,000; RocketMQ's is 5,000,000): hash slots per index
    /// file. The open file's slots are held in memory: 4 bytes each.
    pub index_slots: u32,
    /// `maxIndexNum` (4,000,000; RocketMQ's is 20,000,000): keys per index file (20
    /// bytes each on disk).
    pub index_entries: u32,
    /// `transactionTimeOut` (6000 ms): a half message younger than this (from its born
    /// time) is not checked; CHECK_IMMUNITY_TIME_IN_SECONDS on the message overrides it.
    pub transaction_timeout_ms: u64,
    /// `transactionCheckMax` (15): checks of one half message before it is discarded
    /// into TRANS_CHECK_MAX_TIME_TOPIC.
    pub transaction_check_max: u32,
    /// `transactionCheckInterval` (60000 ms): how often the leader checks open halves.
    pub transaction_check_interval_ms: u64,
}

fn parse_bool(key: &str, v: &str) -> Result<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(Error::config(format!("{key}: '{v}' is not true or false"))),
    }
}

fn parse_num<T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy>(
    key: &str,
    v: Option<&String>,
    default: T,
    min: T,
    max: T,
) -> Result<T> {
    let Some(v) = v else { return Ok(default) };
    let n: T = v
        .parse()
        .map_err(|_| Error::config(format!("{key}: '{v}' is not a whole number")))?;
    if n < min || n > max {
        return Err(Error::config(format!(
            "{key}: {n} is out of range [{min}, {max}]"
        )));
    }
    Ok(n)
}

/// Parses RocketMQ's `messageDelayLevel`: space-separated durations with a unit
/// (`ms`, `s`, `m`, `h`, `d`).
pub fn parse_delay_levels(text: &str) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    for item in text.split_whitespace() {
        let (num, unit) = match item.find(|c: char| !c.is_ascii_digit()) {
            Some(i) => item.split_at(i),
            None => (item, ""),
        };
        let factor = match unit {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => {
                return Err(Error::config(format!(
                    "messageDelayLevel: '{item}' needs a unit: ms, s, m, h or d"
                )))
            }
        };
        let n: u64 = num
            .parse()
            .map_err(|_| Error::config(format!("messageDelayLevel: '{item}' is not a duration")))?;
        out.push(n.saturating_mul(factor));
    }
    if out.is_empty() {
        return Err(Error::config("messageDelayLevel: no level given"));
    }
    Ok(out)
}

impl BrokerConfig {
    /// Reads the message keys from broker.conf text; `group` gives the member's address.
    pub fn from_properties(text: &str, group: &GroupConfig) -> Result<BrokerConfig> {
        let p = parse_properties(text)?;
        let auto_create_topic = match p.get("autoCreateTopicEnable") {
            Some(v) => parse_bool("autoCreateTopicEnable", v)?,
            None => true,
        };
        let default_topic_queue_nums = parse_num(
            "defaultTopicQueueNums",
            p.get("defaultTopicQueueNums"),
            8,
            1,
            1024,
        )?;
        let max_message_size = parse_num(
            "maxMessageSize",
            p.get("maxMessageSize"),
            4 * 1024 * 1024usize,
            1,
            i32::MAX as usize,
        )?;
        let delay_levels_ms = parse_delay_levels(
            p.get("messageDelayLevel")
                .map(String::as_str)
                .unwrap_or(DEFAULT_DELAY_LEVELS),
        )?;
        let dedup_window_ms = parse_num(
            "dedupWindowMs",
            p.get("dedupWindowMs"),
            60_000,
            0,
            u64::MAX / 2,
        )?;
        let producer_id_expiration_ms = parse_num(
            "producerIdExpirationMs",
            p.get("producerIdExpirationMs"),
            86_400_000,
            1,
            u64::MAX / 2,
        )?;
        let listen_port = parse_num("listenPort", p.get("listenPort"), 10911u16, 1, 65535)?;
        let namesrv_addr = p
            .get("namesrvAddr")
            .map(|v| {
                v.split(';')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        let ip = match p.get("brokerIP1") {
            Some(v) if !v.is_empty() => v
                .parse::<IpAddr>()
                .map_err(|_| Error::config(format!("brokerIP1: '{v}' is not an IP address")))?,
            _ => {
                let own = group.self_peer().addr.ip();
                if own.is_unspecified() {
                    IpAddr::V4(Ipv4Addr::LOCALHOST)
                } else {
                    own
                }
            }
        };
        let offset_commit_interval_ms = parse_num(
            "rmqraftOffsetCommitIntervalMs",
            p.get("rmqraftOffsetCommitIntervalMs"),
            200,
            1,
            60_000,
        )?;
        let index_slots = parse_num(
            "maxHashSlotNum",
            p.get("maxHashSlotNum"),
            1_000_000u32,
            16,
            50_000_000,
        )?;
        let index_entries = parse_num(
            "maxIndexNum",
            p.get("maxIndexNum"),
            4_000_000u32,
            16,
            100_000_000,
        )?;
        let transaction_timeout_ms = parse_num(
            "transactionTimeOut",
            p.get("transactionTimeOut"),
            6000u64,
            0,
            u64::MAX / 2,
        )?;
        let transaction_check_max = parse_num(
            "transactionCheckMax",
            p.get("transactionCheckMax"),
            15u32,
            0,
            1_000_000,
        )?;
        let transaction_check_interval_ms = parse_num(
            "transactionCheckInterval",
            p.get("transactionCheckInterval"),
            60_000u64,
            1,
            u64::MAX / 2,
        )?;
        Ok(BrokerConfig {
            transaction_timeout_ms,
            transaction_check_max,
            transaction_check_interval_ms,
            index_slots,
            index_entries,
            auto_create_topic,
            default_topic_queue_nums,
            max_message_size,
            delay_levels_ms,
            dedup_window_ms,
            producer_id_expiration_ms,
            listen_port,
            namesrv_addr,
            store_host: SocketAddr::new(ip, listen_port),
            offset_commit_interval_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "dLegerGroup=g\ndLegerPeers=n0-127.0.0.2:1;n1-127.0.0.1:2;n2-127.0.0.1:3\n\
                        dLegerSelfId=n0\nstorePathRootDir=/tmp/x\n";

    fn cfg(extra: &str) -> Result<BrokerConfig> {
        let text = format!("{BASE}{extra}");
        let g = GroupConfig::from_properties(&text).unwrap();
        BrokerConfig::from_properties(&text, &g)
    }

    #[test]
    fn defaults_are_rocketmqs() {
        let c = cfg("").unwrap();
        assert!(c.auto_create_topic);
        assert_eq!(c.default_topic_queue_nums, 8);
        assert_eq!(c.max_message_size, 4 << 20);
        assert_eq!(c.delay_levels_ms.len(), 18);
        assert_eq!(c.delay_levels_ms[0], 1000);
        assert_eq!(c.delay_levels_ms[17], 7_200_000);
        assert_eq!(c.store_host, "127.0.0.2:10911".parse().unwrap());
        assert_eq!(c.transaction_timeout_ms, 6000);
        assert_eq!(c.transaction_check_max, 15);
        assert_eq!(c.transaction_check_interval_ms, 60_000);
    }

    #[test]
    fn bad_values_name_the_key() {
        for (line, key) in [
            ("autoCreateTopicEnable=yes", "autoCreateTopicEnable"),
            ("defaultTopicQueueNums=0", "defaultTopicQueueNums"),
            ("maxMessageSize=x", "maxMessageSize"),
            ("messageDelayLevel=1s 5x", "messageDelayLevel"),
            ("listenPort=70000", "listenPort"),
            ("brokerIP1=host", "brokerIP1"),
            ("dedupWindowMs=-1", "dedupWindowMs"),
            ("transactionTimeOut=x", "transactionTimeOut"),
            ("transactionCheckMax=-1", "transactionCheckMax"),
            ("transactionCheckInterval=0", "transactionCheckInterval"),
        ] {
            let err = cfg(line).unwrap_err();
            assert!(err.message().starts_with(key), "{line}: {err}");
        }
        let c = cfg("brokerIP1=10.0.0.5\nlistenPort=30911\nmessageDelayLevel=100ms 1s").unwrap();
        assert_eq!(c.store_host, "10.0.0.5:30911".parse().unwrap());
        assert_eq!(c.delay_levels_ms, vec![100, 1000]);
    }
}
