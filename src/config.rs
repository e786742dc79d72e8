//! Configuration from RocketMQ `broker.conf` text.
//!
//! `key = value` lines, `#`/`!` comments, blank lines ignored, whitespace trimmed. A host
//! passes its whole broker.conf: unknown keys are ignored (logged at debug; one that looks
//! like a misspelt known key is warned about, see [`crate::config_hints`]), a known key
//! with a bad value is a [`ErrorKind::Config`](crate::ErrorKind::Config) error naming the
//! key and the value.

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

/// When an append is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushDiskType {
    /// Acked once a quorum has the entry on disk (fdatasync done).
    SyncFlush,
    /// Acked once a quorum holds the entry in memory; flushed within `flushIntervalCommitLog`.
    AsyncFlush,
}

/// Which I/O path the engine's flusher takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlusherKind {
    /// io_uring when the kernel allows it, else pwrite + fdatasync.
    Auto,
    IoUring,
    Pwrite,
}

/// How a flush round is made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// fdatasync when a round touches at most two files, one syncfs per file system
    /// when it touches more (many groups in one engine).
    Auto,
    /// Always one fdatasync per file.
    Fdatasync,
    /// Always one syncfs(2) per file system: cheapest with many groups, but it also
    /// flushes whatever else is dirty on that file system.
    Syncfs,
}

/// One member of a group, as `dLegerPeers` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub id: String,
    pub addr: SocketAddr,
}

/// A shared secret. Its bytes never appear in `Debug` output or logs, and are zeroed on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    bytes: Vec<u8>,
}

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Secret {
        Secret {
            bytes: bytes.into(),
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(<{} bytes, redacted>)", self.bytes.len())
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        for b in self.bytes.iter_mut() {
            // SAFETY: `b` is a valid, aligned, exclusive reference; a volatile write keeps
            // the zeroing from being optimized away.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    }
}

/// Longest `dLegerSecret` accepted.
pub const SECRET_BYTES_MAX: usize = 1024;
/// Secrets shorter than this are accepted with a warning.
pub const SECRET_BYTES_RECOMMENDED_MIN: usize = 16;

/// Engine-wide settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// `brokerClusterName`: named in every peer handshake; peers of another cluster are refused.
    pub cluster_name: String,
    /// `rmqraftFlusher`: `auto` (default), `io_uring` or `pwrite`.
    pub flusher: FlusherKind,
    /// `rmqraftMaxFrameSize`: frames larger than this are refused before their body is read.
    pub frame_size_bytes_max: u32,
    /// `rmqraftSyncMode`: `auto` (default), `fdatasync` or `syncfs`.
    pub sync_mode: SyncMode,
    /// `dLegerSecret`: when set, every peer and client connection to or from this engine
    /// proves knowledge of it (HMAC-SHA256 challenge-response, docs/PROTOCOL.md). It is an
    /// engine key because the transport, and so the handshake, is shared by every group of
    /// the engine: hosts pass the whole broker.conf to `Engine::open`.
    pub secret: Option<Secret>,
    /// `rmqraftMetricsPort`: Prometheus text on `GET /metrics` at this port; 0 (the
    /// default) serves none.
    pub metrics_port: u16,
    /// `rmqraftMetricsHost`: the address the metrics port listens on (default 0.0.0.0).
    pub metrics_host: std::net::IpAddr,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            cluster_name: "DefaultCluster".to_string(),
            flusher: FlusherKind::Auto,
            frame_size_bytes_max: 64 << 20,
            sync_mode: SyncMode::Auto,
            secret: None,
            metrics_port: 0,
            metrics_host: std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        }
    }
}

/// Settings of one group member.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `dLegerGroup`
    pub group: String,
    /// `dLegerPeers`, in their written order (the order gives `self_peer`/`leader_peer`).
    pub peers: Vec<Peer>,
    /// `dLegerSelfId`
    pub self_id: String,
    /// Position of `self_id` in `peers`.
    pub self_index: usize,
    /// `storePathRootDir`: this member's files live under `<root>/dledger-<selfId>/`.
    pub store_root: PathBuf,
    /// `storePathCommitLog`: where a classic RocketMQ broker kept its commitlog, if not in
    /// `<root>/commitlog`; rmqraft only looks there to refuse starting over an old store.
    pub classic_commitlog_dir: Option<PathBuf>,
    /// `rmqraftTakeOverDLedger`: this member takes over the stopped DLedger broker's store
    /// `<root>/dledger-<selfId>/` in place (read only); its own files live beside it, in
    /// `<root>/rmqraft-<selfId>/` (README, "Upgrade from DLedger mode").
    pub dledger_takeover: bool,
    /// `rmqraftTakeOverDLedgerThrough`: serve the DLedger log's entries up to this index
    /// only (the prefix the members' copies agree on; `rmqraft store convert --dry-run`).
    pub dledger_takeover_through: Option<u64>,
    /// `mappedFileSizeCommitLog`
    pub segment_size_bytes: u64,
    /// `flushDiskType`
    pub flush: FlushDiskType,
    /// `flushIntervalCommitLog`: ASYNC_FLUSH flushes at least this often.
    pub async_flush_interval_ms: u64,
    /// `heartBeatTimeIntervalMs`
    pub heartbeat_interval_ms: u64,
    /// `maxHeartBeatLeak`: a follower that missed this many heartbeats starts an election;
    /// a leader that heard from no quorum for as long steps down.
    pub max_heartbeat_leak: u32,
    /// `preferredLeaderIds` (or `preferredLeaderId`), `;` or `,` separated.
    pub preferred_leader_ids: Vec<String>,
    /// `maxEntrySize`: the largest entry body accepted.
    pub entry_size_bytes_max: u32,
    /// `maxPendingRequestsNum`: appends in flight on the leader before `Busy`.
    pub pending_appends_max: usize,
    /// `maxPushWindow`: push batches in flight per follower.
    pub push_window_max: usize,
    /// `maxPushBatchSize`: bytes of entries in one push.
    pub push_batch_bytes_max: usize,
    /// `deleteWhen`: hours of the day (0-23) at which expired segments are deleted.
    pub delete_when_hours: Vec<u8>,
    /// `fileReservedTime`: hours a full segment is kept.
    pub file_reserved_hours: u64,
    /// `maxLeadershipTransferWaitIndex`: a transferee further behind is refused.
    pub transfer_lag_entries_max: u64,
    /// `maxWaitAckTimeMs`: an async append not committed by then completes with `Timeout`.
    pub append_wait_ms_max: u64,
    /// `rmqraftPrewriteSegments`: write segment files full of zeros before use (a
    /// background spare), since fdatasync into already-written blocks is much cheaper.
    pub prewrite_segments: bool,
}

impl GroupConfig {
    /// The base election timeout: `heartBeatTimeIntervalMs * maxHeartBeatLeak`.
    pub fn election_timeout_ms(&self) -> u64 {
        self.heartbeat_interval_ms * u64::from(self.max_heartbeat_leak)
    }

    /// The settings that decide durability, disk use and failover time, as logged at
    /// open: what the member really runs with, whatever the properties spelt.
    pub fn effective_summary(&self) -> String {
        let flush = match self.flush {
            FlushDiskType::SyncFlush => "SYNC_FLUSH".to_string(),
            FlushDiskType::AsyncFlush => format!(
                "ASYNC_FLUSH (flushIntervalCommitLog {} ms)",
                self.async_flush_interval_ms
            ),
        };
        let timeout = self.election_timeout_ms();
        format!(
            "flushDiskType {flush}; mappedFileSizeCommitLog {} ({} preallocated per segment{}); \
             heartbeat every {} ms, election after {}-{} ms without one \
             (heartBeatTimeIntervalMs {} x maxHeartBeatLeak {})",
            self.segment_size_bytes,
            human_bytes(self.segment_size_bytes),
            if self.prewrite_segments {
                ", and a zero-filled spare made ahead"
            } else {
                ""
            },
            self.heartbeat_interval_ms,
            timeout,
            2 * timeout,
            self.heartbeat_interval_ms,
            self.max_heartbeat_leak
        )
    }

    /// `<storePathRootDir>/dledger-<selfId>`, or `<storePathRootDir>/rmqraft-<selfId>`
    /// when the member takes over a DLedger store (which keeps the first name).
    pub fn member_dir(&self) -> PathBuf {
        if self.dledger_takeover {
            return self.store_root.join(format!("rmqraft-{}", self.self_id));
        }
        self.store_root.join(format!("dledger-{}", self.self_id))
    }

    /// The DLedger broker's store a taking-over member serves: `<root>/dledger-<selfId>`.
    pub fn dledger_store_dir(&self) -> Option<PathBuf> {
        self.dledger_takeover
            .then(|| self.store_root.join(format!("dledger-{}", self.self_id)))
    }

    pub fn self_peer(&self) -> &Peer {
        &self.peers[self.self_index]
    }

    pub fn peer_index(&self, id: &str) -> Option<usize> {
        self.peers.iter().position(|p| p.id == id)
    }
}

/// Parses broker.conf text into key/value pairs; later lines win.
pub fn parse_properties(text: &str) -> Result<HashMap<String, String>> {
    let mut map = HashMap::new();
    for (number, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(Error::config(format!(
                "line {}: expected 'key = value', found '{}'",
                number + 1,
                line
            )));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(Error::config(format!("line {}: empty key", number + 1)));
        }
        map.insert(key.to_string(), value.trim().to_string());
    }
    Ok(map)
}

/// The keys `EngineConfig::from_properties` reads.
pub const ENGINE_KEYS: &[&str] = &[
    "rmqraftSyncMode",
    "brokerClusterName",
    "rmqraftFlusher",
    "rmqraftMaxFrameSize",
    "dLegerSecret",
    "rmqraftMetricsPort",
    "rmqraftMetricsHost",
];
/// The keys `GroupConfig::from_properties` reads.
pub const GROUP_KEYS: &[&str] = &[
    "dLegerGroup",
    "dLegerPeers",
    "dLegerSelfId",
    "storePathRootDir",
    "storePathCommitLog",
    "mappedFileSizeCommitLog",
    "flushDiskType",
    "flushIntervalCommitLog",
    "heartBeatTimeIntervalMs",
    "maxHeartBeatLeak",
    "preferredLeaderIds",
    "preferredLeaderId",
    "maxEntrySize",
    "maxPendingRequestsNum",
    "maxPushWindow",
    "maxPushBatchSize",
    "deleteWhen",
    "fileReservedTime",
    "maxLeadershipTransferWaitIndex",
    "maxWaitAckTimeMs",
    "rmqraftPrewriteSegments",
    "rmqraftTakeOverDLedger",
    "rmqraftTakeOverDLedgerThrough",
];

struct Props {
    map: HashMap<String, String>,
}

impl Props {
    fn parse(text: &str, known: &[&str], scope: &str) -> Result<Props> {
        let map = parse_properties(text)?;
        // A host passes its whole broker.conf to the engine and to each group: a typo is
        // looked for among every key rmqraft reads.
        let readable: Vec<&str> = ENGINE_KEYS.iter().chain(GROUP_KEYS).copied().collect();
        crate::config_hints::warn_misspelt_keys(&map, &readable);
        for key in map.keys() {
            if !known.contains(&key.as_str()) {
                log::debug!("{scope} config: ignoring key '{key}'");
            }
        }
        Ok(Props { map })
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }

    fn required(&self, key: &str) -> Result<&str> {
        match self.get(key) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(Error::config(format!("{key}: required key is missing"))),
        }
    }

    fn number<T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy>(
        &self,
        key: &str,
        default: T,
        min: T,
        max: T,
    ) -> Result<T> {
        let Some(text) = self.get(key) else {
            return Ok(default);
        };
        let value: T = text
            .parse()
            .map_err(|_| Error::config(format!("{key}: '{text}' is not a whole number")))?;
        if value < min || value > max {
            return Err(Error::config(format!(
                "{key}: {value} is out of range [{min}, {max}]"
            )));
        }
        Ok(value)
    }
}

/// 1073741824 -> "1 GiB", 4194304 -> "4 MiB", 1500 -> "1500 bytes".
fn human_bytes(n: u64) -> String {
    for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if n >= size && n.is_multiple_of(size) {
            return format!("{} {unit}", n / size);
        }
    }
    format!("{n} bytes")
}

fn bad(key: &str, value: &str, why: &str) -> Error {
    Error::config(format!("{key}: '{value}' {why}"))
}

impl EngineConfig {
    pub fn from_properties(text: &str) -> Result<EngineConfig> {
        let props = Props::parse(text, ENGINE_KEYS, "engine")?;
        let mut config = EngineConfig::default();
        if let Some(name) = props.get("brokerClusterName") {
            if name.is_empty() || name.len() > 255 {
                return Err(bad("brokerClusterName", name, "must be 1 to 255 bytes"));
            }
            config.cluster_name = name.to_string();
        }
        if let Some(kind) = props.get("rmqraftFlusher") {
            config.flusher = match kind {
                "auto" => FlusherKind::Auto,
                "io_uring" => FlusherKind::IoUring,
                "pwrite" => FlusherKind::Pwrite,
                _ => {
                    return Err(bad(
                        "rmqraftFlusher",
                        kind,
                        "is not one of auto, io_uring, pwrite",
                    ))
                }
            };
        }
        if let Some(mode) = props.get("rmqraftSyncMode") {
            config.sync_mode = match mode {
                "auto" => SyncMode::Auto,
                "fdatasync" => SyncMode::Fdatasync,
                "syncfs" => SyncMode::Syncfs,
                _ => {
                    return Err(bad(
                        "rmqraftSyncMode",
                        mode,
                        "is not one of auto, fdatasync, syncfs",
                    ))
                }
            };
        }
        config.frame_size_bytes_max = props.number(
            "rmqraftMaxFrameSize",
            config.frame_size_bytes_max,
            4096,
            1 << 30,
        )?;
        config.metrics_port = props.number("rmqraftMetricsPort", 0u16, 0, u16::MAX)?;
        if let Some(host) = props.get("rmqraftMetricsHost") {
            config.metrics_host = host
                .parse()
                .map_err(|_| bad("rmqraftMetricsHost", host, "is not an IP address"))?;
        }
        if let Some(secret) = props.get("dLegerSecret") {
            if secret.is_empty() {
                // An empty value is more likely a mistake than a wish to turn auth off.
                return Err(Error::config(
                    "dLegerSecret: is empty; remove the line to turn authentication off",
                ));
            }
            if secret.len() > SECRET_BYTES_MAX {
                return Err(Error::config(format!(
                    "dLegerSecret: is {} bytes, at most {SECRET_BYTES_MAX} are allowed",
                    secret.len()
                )));
            }
            if secret.len() < SECRET_BYTES_RECOMMENDED_MIN {
                log::warn!(
                    "dLegerSecret is {} bytes; at least {SECRET_BYTES_RECOMMENDED_MIN} random bytes are recommended",
                    secret.len()
                );
            }
            config.secret = Some(Secret::new(secret.as_bytes()));
        }
        Ok(config)
    }
}

fn parse_peers(text: &str) -> Result<Vec<Peer>> {
    let mut peers: Vec<Peer> = Vec::new();
    for item in text.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((id, addr)) = item.split_once('-') else {
            return Err(bad("dLegerPeers", item, "is not 'id-host:port'"));
        };
        let id = id.trim();
        if id.is_empty()
            || id.len() > 64
            || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(bad(
                "dLegerPeers",
                item,
                "has an invalid peer id (letters, digits and '_', 1 to 64)",
            ));
        }
        let addr = addr
            .trim()
            .to_socket_addrs()
            .map_err(|e| bad("dLegerPeers", item, &format!("has no usable address: {e}")))?
            .next()
            .ok_or_else(|| bad("dLegerPeers", item, "has no address"))?;
        if peers.iter().any(|p| p.id == id) {
            return Err(bad("dLegerPeers", item, "repeats a peer id"));
        }
        peers.push(Peer {
            id: id.to_string(),
            addr,
        });
    }
    if peers.is_empty() {
        return Err(bad("dLegerPeers", text, "names no peer"));
    }
    if peers.len() > 15 {
        return Err(bad("dLegerPeers", text, "names more than 15 peers"));
    }
    Ok(peers)
}

fn parse_hours(text: &str) -> Result<Vec<u8>> {
    let mut hours = Vec::new();
    for part in text
        .split([';', ','])
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        match part.parse::<u8>() {
            Ok(h) if h < 24 => hours.push(h),
            _ => {
                return Err(bad(
                    "deleteWhen",
                    text,
                    "is not a list of hours 0-23 (e.g. '04' or '04;16')",
                ))
            }
        }
    }
    if hours.is_empty() {
        return Err(bad("deleteWhen", text, "names no hour"));
    }
    Ok(hours)
}

impl GroupConfig {
    pub fn from_properties(text: &str) -> Result<GroupConfig> {
        let props = Props::parse(text, GROUP_KEYS, "group")?;
        let group = props.required("dLegerGroup")?.to_string();
        if group.len() > 255 || group.chars().any(|c| c.is_control()) {
            return Err(bad(
                "dLegerGroup",
                &group,
                "must be 1 to 255 printable bytes",
            ));
        }
        let peers = parse_peers(props.required("dLegerPeers")?)?;
        let self_id = props.required("dLegerSelfId")?.to_string();
        let self_index = peers.iter().position(|p| p.id == self_id).ok_or_else(|| {
            bad(
                "dLegerSelfId",
                &self_id,
                "is not one of the ids in dLegerPeers",
            )
        })?;
        let store_root = PathBuf::from(props.required("storePathRootDir")?);
        let flush = match props.get("flushDiskType").unwrap_or("SYNC_FLUSH") {
            "SYNC_FLUSH" => FlushDiskType::SyncFlush,
            "ASYNC_FLUSH" => FlushDiskType::AsyncFlush,
            other => {
                return Err(bad(
                    "flushDiskType",
                    other,
                    "is not SYNC_FLUSH or ASYNC_FLUSH",
                ))
            }
        };
        let preferred_leader_ids: Vec<String> = props
            .get("preferredLeaderIds")
            .or_else(|| props.get("preferredLeaderId"))
            .unwrap_or("")
            .split([';', ','])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        for id in &preferred_leader_ids {
            if !peers.iter().any(|p| &p.id == id) {
                return Err(bad(
                    "preferredLeaderIds",
                    id,
                    "is not one of the ids in dLegerPeers",
                ));
            }
        }
        let segment_size_bytes =
            props.number("mappedFileSizeCommitLog", 1 << 30, 64 << 10, 1 << 40)?;
        // Unless set, the largest entry is 4 MiB, or half a segment for small segments.
        let default_entry_max = (4u64 << 20).min(segment_size_bytes / 2) as u32;
        let config = GroupConfig {
            group,
            peers,
            self_id,
            self_index,
            store_root,
            classic_commitlog_dir: props
                .get("storePathCommitLog")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            dledger_takeover: match props.get("rmqraftTakeOverDLedger").unwrap_or("false") {
                "true" => true,
                "false" => false,
                other => return Err(bad("rmqraftTakeOverDLedger", other, "is not true or false")),
            },
            dledger_takeover_through: match props.get("rmqraftTakeOverDLedgerThrough") {
                Some(_) => Some(props.number("rmqraftTakeOverDLedgerThrough", 0, 0, u64::MAX)?),
                None => None,
            },
            segment_size_bytes: props.number(
                "mappedFileSizeCommitLog",
                1 << 30,
                64 << 10,
                1 << 40,
            )?,
            flush,
            async_flush_interval_ms: props.number("flushIntervalCommitLog", 10, 1, 10_000)?,
            heartbeat_interval_ms: props.number("heartBeatTimeIntervalMs", 100, 5, 60_000)?,
            max_heartbeat_leak: props.number("maxHeartBeatLeak", 3, 2, 100)?,
            preferred_leader_ids,
            entry_size_bytes_max: props.number("maxEntrySize", default_entry_max, 1, 256 << 20)?,
            pending_appends_max: props.number("maxPendingRequestsNum", 10_000, 1, 10_000_000)?,
            push_window_max: props.number("maxPushWindow", 16, 1, 10_000)?,
            push_batch_bytes_max: props.number("maxPushBatchSize", 1 << 20, 4096, 64 << 20)?,
            delete_when_hours: parse_hours(props.get("deleteWhen").unwrap_or("04"))?,
            file_reserved_hours: props.number("fileReservedTime", 72, 0, 100_000)?,
            transfer_lag_entries_max: props.number(
                "maxLeadershipTransferWaitIndex",
                1000,
                0,
                u64::MAX,
            )?,
            append_wait_ms_max: props.number("maxWaitAckTimeMs", 5000, 1, 3_600_000)?,
            prewrite_segments: match props.get("rmqraftPrewriteSegments").unwrap_or("true") {
                "true" => true,
                "false" => false,
                other => {
                    return Err(bad(
                        "rmqraftPrewriteSegments",
                        other,
                        "is not true or false",
                    ))
                }
            },
        };
        if config.dledger_takeover_through.is_some() && !config.dledger_takeover {
            return Err(Error::config(
                "rmqraftTakeOverDLedgerThrough: set without rmqraftTakeOverDLedger=true",
            ));
        }
        if u64::from(config.entry_size_bytes_max) + 4096 > config.segment_size_bytes {
            return Err(Error::config(format!(
                "maxEntrySize: {} does not fit a segment of mappedFileSizeCommitLog {} bytes",
                config.entry_size_bytes_max, config.segment_size_bytes
            )));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    const BASE: &str = "dLegerGroup=g\ndLegerPeers=n0-127.0.0.1:1;n1-127.0.0.1:2;n2-127.0.0.1:3\n\
                        dLegerSelfId=n1\nstorePathRootDir=/tmp/x\n";

    #[test]
    fn parses_a_broker_conf_with_comments_and_unknown_keys() {
        let text = format!(
            "# comment\n\n  brokerRole = SYNC_MASTER \n{BASE}flushDiskType = ASYNC_FLUSH\n"
        );
        let c = GroupConfig::from_properties(&text).unwrap();
        assert_eq!(c.group, "g");
        assert_eq!(c.self_index, 1);
        assert_eq!(c.peers[2].addr.port(), 3);
        assert_eq!(c.flush, FlushDiskType::AsyncFlush);
        assert_eq!(c.member_dir(), PathBuf::from("/tmp/x/dledger-n1"));
        assert_eq!(c.segment_size_bytes, 1 << 30);
    }

    #[test]
    fn bad_values_name_the_key_and_value() {
        let cases = [
            ("flushDiskType=SOMETIMES", "flushDiskType: 'SOMETIMES'"),
            (
                "mappedFileSizeCommitLog=abc",
                "mappedFileSizeCommitLog: 'abc'",
            ),
            ("heartBeatTimeIntervalMs=0", "heartBeatTimeIntervalMs: 0"),
            ("deleteWhen=25", "deleteWhen: '25'"),
            ("preferredLeaderIds=n7", "preferredLeaderIds: 'n7'"),
        ];
        for (line, expected) in cases {
            let err = GroupConfig::from_properties(&format!("{BASE}{line}\n")).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config, "{line}");
            assert!(
                err.message().contains(expected),
                "{line}: {}",
                err.message()
            );
        }
    }

    #[test]
    fn missing_and_inconsistent_keys_are_errors() {
        let err = GroupConfig::from_properties("dLegerGroup=g\n").unwrap_err();
        assert!(err.message().contains("dLegerPeers"), "{}", err.message());
        let err = GroupConfig::from_properties(&BASE.replace("dLegerSelfId=n1", "dLegerSelfId=n9"))
            .unwrap_err();
        assert!(
            err.message().contains("dLegerSelfId: 'n9'"),
            "{}",
            err.message()
        );
        let err = GroupConfig::from_properties(&BASE.replace("127.0.0.1:2", "nohost")).unwrap_err();
        assert!(
            err.message().starts_with("dLegerPeers"),
            "{}",
            err.message()
        );
        let err = GroupConfig::from_properties("no equals sign here\n").unwrap_err();
        assert!(err.message().contains("line 1"), "{}", err.message());
    }

    #[test]
    fn engine_keys() {
        let c =
            EngineConfig::from_properties("brokerClusterName=RaftCluster\nrmqraftFlusher=pwrite\n")
                .unwrap();
        assert_eq!(c.cluster_name, "RaftCluster");
        assert_eq!(c.flusher, FlusherKind::Pwrite);
        let err = EngineConfig::from_properties("rmqraftFlusher=mmap").unwrap_err();
        assert!(err.message().contains("rmqraftFlusher: 'mmap'"));
        assert!(EngineConfig::from_properties("").is_ok());
    }

    #[test]
    fn secret_is_an_engine_key_and_never_printed() {
        let c = EngineConfig::from_properties("dLegerSecret = s3cr3t-s3cr3t-s3cr3t \n").unwrap();
        let secret = c.secret.as_ref().expect("secret set");
        assert_eq!(secret.as_bytes(), b"s3cr3t-s3cr3t-s3cr3t");
        assert!(!format!("{c:?}").contains("s3cr3t"), "{c:?}");
        assert!(EngineConfig::from_properties("").unwrap().secret.is_none());
        let err = EngineConfig::from_properties("dLegerSecret=").unwrap_err();
        assert!(err.message().starts_with("dLegerSecret:"), "{err}");
        let err = EngineConfig::from_properties(&format!("dLegerSecret={}", "x".repeat(2000)))
            .unwrap_err();
        assert!(err.message().starts_with("dLegerSecret:"), "{err}");
    }
}
