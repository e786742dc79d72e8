//! Messages: a group as a RocketMQ broker's store (docs/MESSAGES.md).
//!
//! [`Broker`] opens over one [`Group`] member. Every message is one `Message` entry
//! holding a RocketMQ commitlog record ([`record`]); topic and consumer-offset changes
//! are `BrokerAdmin` entries ([`admin`]). On every member a dispatch thread reads
//! committed entries in log order (`Group::read_committed`) and builds the consume
//! queues ([`cq`]), the key index ([`index`]), the topic table and the consumer offsets,
//! and checkpoints them with the log index they cover; after a crash, or when the files
//! are missing, they are rebuilt from the log.
//!
//! Contract:
//! - Sends, topic changes and offset commits go to the leader (`NotLeader` elsewhere,
//!   naming the leader). `Ok` means committed under the group's flush policy.
//! - Reads (pull, offsets, lookups, topic list, offset fetch) work on every member and
//!   see committed, dispatched state only.
//! - A message's commitlog offset is its entry's body position in the group's log, the
//!   same on every member, so its offset msg id resolves everywhere.
//! - Queue offsets are assigned by the leader in log order (inside the append stamp);
//!   after any leadership change, or an entry appended around the broker, they are
//!   recomputed from the log (dispatched queues plus the inherited uncommitted tail).

pub mod admin;
pub mod config;
pub mod cq;
mod delay;
pub mod fxhash;
pub mod index;
pub mod record;
pub mod topic;
pub mod txn;

pub use config::BrokerConfig;
pub use record::MessageRecord;
pub use topic::TopicConfig;
pub use txn::{CheckListener, TxnCheck, TxnEnd};

use crate::engine::Group;
use crate::error::{Error, ErrorKind, Result};
use crate::types::{EntryKind, EntryPlace, Role};
use crate::wait::Slot;
use admin::AdminOp;
use bytes::{BufMut, Bytes, BytesMut};
use cq::{QueueFile, Unit};
use fxhash::FxHashMap;
use index::{Hit, IndexMeta, KeyIndex};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Entries the dispatch thread reads per round.
const DISPATCH_BATCH: usize = 1024;
/// Bytes of bodies the dispatch thread reads per round.
const DISPATCH_BATCH_BYTES: usize = 8 << 20;
/// How long the dispatch thread waits for a commit before looking at its checkpoint.
const DISPATCH_WAIT: Duration = Duration::from_millis(200);
/// How often the dispatch thread looks whether retention deleted segments.
const RETENTION_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// Checkpoint at most this often while entries arrive.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(2);
/// Attempts of a send whose queue offsets had to be recomputed meanwhile.
const STAMP_ATTEMPTS: usize = 8;
/// Most messages one pull returns.
pub const PULL_MAX: u32 = 1024;
const STALE: &str = "the leader's queue offsets are being recomputed";

/// A message to send.
#[derive(Debug, Clone, Default)]
pub struct Message {
    /// Required; RocketMQ's topic rules (`[%|a-zA-Z0-9_-]`, at most 127 bytes).
    pub topic: String,
    /// Tags (TAGS), `None` or empty for none.
    pub tags: Option<String>,
    /// Space-separated keys (KEYS); each is indexed.
    pub keys: Option<String>,
    /// User properties. A `UNIQ_KEY` pair (PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX) sets the message id;
    /// without one the broker makes one.
    pub properties: Vec<(String, String)>,
    /// 1 ..= maxMessageSize bytes.
    pub body: Bytes,
    /// -1: the broker picks a write queue (round robin).
    pub queue_id: i32,
    /// Stored as is.
    pub flag: i32,
    /// 0 none; 1..N: the Nth of messageDelayLevel (above N: N, as RocketMQ does). The
    /// message reaches its topic when due, delivered by the leader.
    pub delay_level: i32,
    /// 0: the send time.
    pub born_timestamp: i64,
    /// The producer's address; `None`: the store host.
    pub born_host: Option<SocketAddr>,
    /// SYSFLAG bits the client set (compression, multi tags, transaction type); the
    /// host bits are the broker's.
    pub sys_flag: i32,
    pub reconsume_times: i32,
}

impl Message {
    pub fn new(topic: impl Into<String>, body: impl Into<Bytes>) -> Message {
        Message {
            topic: topic.into(),
            body: body.into(),
            queue_id: -1,
            ..Default::default()
        }
    }
    pub fn with_tags(mut self, tags: impl Into<String>) -> Message {
        self.tags = Some(tags.into());
        self
    }
    pub fn with_keys(mut self, keys: impl Into<String>) -> Message {
        self.keys = Some(keys.into());
        self
    }
    pub fn with_queue(mut self, queue_id: i32) -> Message {
        self.queue_id = queue_id;
        self
    }
    pub fn with_delay_level(mut self, level: i32) -> Message {
        self.delay_level = level;
        self
    }
    pub fn with_property(mut self, name: impl Into<String>, value: impl Into<String>) -> Message {
        self.properties.push((name.into(), value.into()));
        self
    }
}

/// What a committed send tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendResult {
    /// The UNIQ_KEY (32 hex characters for an IPv4 host).
    pub msg_id: String,
    /// RocketMQ's offsetMsgId: store host + commitlog offset.
    pub offset_msg_id: String,
    pub topic: String,
    pub queue_id: i32,
    pub queue_offset: u64,
    /// The record's physical offset (its entry's body position).
    pub commitlog_offset: u64,
    /// The log index of its entry.
    pub index: u64,
}

/// A stored message as read back.
#[derive(Debug, Clone)]
pub struct MessageView {
    /// The log index of the message's entry.
    pub index: u64,
    /// The stored record, RocketMQ commitlog format.
    pub record: Bytes,
    pub decoded: MessageRecord,
    /// UNIQ_KEY, or the offset msg id when the record has none.
    pub msg_id: String,
    pub offset_msg_id: String,
}

impl MessageView {
    fn from_record(index: u64, record: Bytes) -> Result<MessageView> {
        let (decoded, len) = MessageRecord::decode_shared(&record)?;
        // A transaction's entry holds more records after the first.
        let record = if len < record.len() {
            record.slice(..len)
        } else {
            record
        };
        let offset_msg_id = decoded.offset_msg_id();
        let msg_id = decoded
            .uniq_key()
            .map(str::to_string)
            .unwrap_or_else(|| offset_msg_id.clone());
        Ok(MessageView {
            index,
            record,
            decoded,
            msg_id,
            offset_msg_id,
        })
    }
    pub fn topic(&self) -> &str {
        &self.decoded.topic
    }
    pub fn tags(&self) -> Option<&str> {
        self.decoded.tags()
    }
    pub fn keys(&self) -> Option<&str> {
        self.decoded.keys()
    }
    pub fn body(&self) -> &Bytes {
        &self.decoded.body
    }
    pub fn queue_id(&self) -> i32 {
        self.decoded.queue_id
    }
    pub fn queue_offset(&self) -> u64 {
        self.decoded.queue_offset as u64
    }
    pub fn commitlog_offset(&self) -> u64 {
        self.decoded.physical_offset as u64
    }
    /// All properties, system ones included.
    pub fn properties(&self) -> Vec<(String, String)> {
        record::decode_properties(&self.decoded.properties)
    }
}

/// What a pull found.
#[derive(Debug, Clone)]
pub struct PullResult {
    /// Matching messages in queue order.
    pub messages: Vec<MessageView>,
    /// Where the next pull starts: one past the last unit scanned; the queue's max
    /// when `offset` was past the end, its min when below the start.
    pub next_offset: u64,
    pub min_offset: u64,
    pub max_offset: u64,
}

/// A tag expression: `*` (or empty) for all, else `TagA || TagB`.
#[derive(Debug, Clone)]
struct TagFilter(Option<Vec<(i64, String)>>);

impl TagFilter {
    fn parse(expr: Option<&str>) -> TagFilter {
        match expr.map(str::trim) {
            None | Some("") | Some("*") => TagFilter(None),
            Some(e) => TagFilter(Some(
                e.split("||")
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(|t| (i64::from(record::java_string_hash(t)), t.to_string()))
                    .collect(),
            )),
        }
    }
    fn code_may_match(&self, code: i64) -> bool {
        self.0
            .as_ref()
            .is_none_or(|tags| tags.iter().any(|(c, _)| *c == code))
    }
    fn matches(&self, tags: Option<&str>) -> bool {
        match &self.0 {
            None => true,
            Some(want) => tags.is_some_and(|t| want.iter().any(|(_, w)| w == t)),
        }
    }
}

type QueueKey = (String, i32);

/// A queue key borrowed as `(&str, i32)`, so the dispatch step finds a queue without
/// allocating its topic (hashes and compares exactly as `(String, i32)` does).
trait QueueKeyRef {
    fn topic(&self) -> &str;
    fn queue(&self) -> i32;
}

impl QueueKeyRef for QueueKey {
    fn topic(&self) -> &str {
        &self.0
    }
    fn queue(&self) -> i32 {
        self.1
    }
}

impl QueueKeyRef for (&str, i32) {
    fn topic(&self) -> &str {
        self.0
    }
    fn queue(&self) -> i32 {
        self.1
    }
}

impl std::hash::Hash for dyn QueueKeyRef + '_ {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.topic().hash(h);
        self.queue().hash(h);
    }
}

impl PartialEq for dyn QueueKeyRef + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.queue() == other.queue() && self.topic() == other.topic()
    }
}

impl Eq for dyn QueueKeyRef + '_ {}

impl<'a> std::borrow::Borrow<dyn QueueKeyRef + 'a> for QueueKey {
    fn borrow(&self) -> &(dyn QueueKeyRef + 'a) {
        self
    }
}

/// Dispatched state, rebuilt from the log on every member.
struct State {
    /// Last log index applied.
    applied: u64,
    topics: BTreeMap<String, TopicConfig>,
    /// (consumer group, topic, queue) -> next offset to consume.
    offsets: BTreeMap<(String, String, i32), u64>,
    queues: FxHashMap<QueueKey, QueueFile>,
    index: KeyIndex,
    /// Entries up to this index rebuild only derived state (consume queues, index): the
    /// tables (topics, offsets, delay progress) came from a checkpoint covering them.
    rebuild_through: u64,
    /// The first log index retention kept, as last seen, and its entry's position:
    /// every message below that position is gone.
    first_retained: (u64, u64),
    last_retention_check: Instant,
    /// Retention moved min offsets since the last checkpoint.
    trimmed: bool,
    /// Delay level (1-based) -> next schedule queue offset to deliver, from the
    /// delivered messages' DELAY_FROM property.
    delay_progress: BTreeMap<i32, u64>,
    /// Open half messages (transactions not yet ended), by half queue offset.
    txn: txn::OpenHalves,
    last_checkpoint: Instant,
    checkpointed: u64,
}

/// The leader's queue offset counters, valid for one term and one log position.
struct Counters {
    /// False once a stamp found the log moved around them (an entry appended without
    /// the broker); the next append recomputes them.
    valid: bool,
    term: u64,
    /// The last log index these counters account for.
    through: u64,
    next: FxHashMap<QueueKey, u64>,
}

/// A message id a send stored (or is storing) on this leader, for UNIQ_KEY dedup.
struct DedupEntry {
    store_ts: i64,
    /// Log index once committed; 0 while in flight.
    index: u64,
    result: Option<SendResult>,
    waiters: Vec<SendCallback>,
    /// Found in the inherited tail at a recount (dropped at the next one).
    from_tail: bool,
}

type DedupMap = HashMap<(String, String), DedupEntry>;

/// The send result a stored record gives.
fn result_of(view: &MessageView) -> SendResult {
    let rec = &view.decoded;
    let (topic, queue_id) = if rec.topic == topic::SCHEDULE_TOPIC {
        (
            rec.property(record::prop::REAL_TOPIC)
                .unwrap_or(&rec.topic)
                .to_string(),
            rec.property(record::prop::REAL_QID)
                .and_then(|q| q.parse().ok())
                .unwrap_or(rec.queue_id),
        )
    } else {
        (rec.topic.clone(), rec.queue_id)
    };
    SendResult {
        msg_id: view.msg_id.clone(),
        offset_msg_id: view.offset_msg_id.clone(),
        topic,
        queue_id,
        queue_offset: rec.queue_offset as u64,
        commitlog_offset: rec.physical_offset as u64,
        index: view.index,
    }
}

/// Consumer offsets waiting to be replicated, per consumer group.
#[derive(Default)]
struct PendingOffsets {
    offsets: BTreeMap<(String, i32), u64>,
    waiters: Vec<Arc<Slot<u64>>>,
    last_append: Option<Instant>,
    in_flight: bool,
}

fn poisoned() -> Error {
    Error::new(
        ErrorKind::Panic,
        "a broker thread panicked holding its state",
    )
}

struct Inner {
    group: Arc<Group>,
    config: BrokerConfig,
    dir: PathBuf,
    state: Mutex<State>,
    /// Woken when the dispatch thread applied entries (pull long polling, waits).
    applied_cv: Condvar,
    counters: Arc<Mutex<Counters>>,
    round_robin: Mutex<FxHashMap<String, u32>>,
    pending: Mutex<HashMap<String, PendingOffsets>>,
    pending_cv: Condvar,
    dedup: Arc<Mutex<DedupMap>>,
    ids: ids::UniqIds,
    closing: AtomicBool,
    /// The old log below this member's own (an upgrade in place), its messages at their
    /// original offsets; the member's log maps to offsets from its divide on.
    old: Option<Arc<crate::upgrade::OldStore>>,
    /// Why this member refuses to serve: its old log differs from the leader's.
    old_refused: Mutex<Option<Error>>,
    /// The term in which this member, as leader, offered its old-log digest.
    old_offered_term: Mutex<u64>,
    /// Transactions: the check listener, halves being ended or checked here.
    txn: txn::Txn,
}

/// A RocketMQ broker's store over one group member. See the module doc for the contract.
pub struct Broker {
    inner: Arc<Inner>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub mod ids {
    //! UNIQ_KEY message ids, shaped as RocketMQ's MessageClientIDSetter makes them:
    //! uppercase hex of IP (4 bytes; for IPv6 hosts the last 4), pid (2), a per-process
    //! random (4, where Java puts the class loader's hash), milliseconds since the start
    //! of the current month (4) and a counter (2): 32 characters.
    use std::net::IpAddr;
    use std::sync::atomic::{AtomicU32, Ordering};

    pub struct UniqIds {
        prefix: String,
        counter: AtomicU32,
    }

    impl UniqIds {
        pub fn new(ip: IpAddr) -> UniqIds {
            let ip4 = match ip {
                IpAddr::V4(v) => v.octets(),
                IpAddr::V6(v) => {
                    let o = v.octets();
                    [o[12], o[13], o[14], o[15]]
                }
            };
            let mut b = Vec::with_capacity(10);
            b.extend_from_slice(&ip4);
            b.extend_from_slice(&(std::process::id() as u16).to_be_bytes());
            b.extend_from_slice(&fastrand::u32(..).to_be_bytes());
            UniqIds {
                prefix: super::record::hex_upper(&b),
                counter: AtomicU32::new(fastrand::u32(..)),
            }
        }

        /// A new id at `now_ms` (Unix time).
        pub fn next(&self, now_ms: i64) -> String {
            let since_month = (now_ms - month_start_ms(now_ms)).max(0) as u32;
            let n = self.counter.fetch_add(1, Ordering::Relaxed) as u16;
            let mut b = Vec::with_capacity(6);
            b.extend_from_slice(&since_month.to_be_bytes());
            b.extend_from_slice(&n.to_be_bytes());
            format!("{}{}", self.prefix, super::record::hex_upper(&b))
        }
    }

    /// Start of the UTC month containing `ms`.
    fn month_start_ms(ms: i64) -> i64 {
        let days = ms.div_euclid(86_400_000);
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5; // 0-based day of month
        (days - d) * 86_400_000
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn month_start() {
            // 2026-12-02T01:00:00Z -> 2026-12-01T00:00:00Z
            assert_eq!(super::month_start_ms(1_796_173_200_000), 1_796_083_200_000);
        }
    }
}

impl Broker {
    /// Opens the broker over `group`. `properties` is the member's broker.conf text (the
    /// message keys: autoCreateTopicEnable, defaultTopicQueueNums, maxMessageSize,
    /// messageDelayLevel, dedupWindowMs, producerIdExpirationMs, listenPort, namesrvAddr,
    /// brokerIP1). Loads the checkpoint under `<member dir>/broker/`, rebuilding what is
    /// missing from the log, and starts the dispatch and offset threads.
    pub fn open(group: Arc<Group>, properties: &str) -> Result<Broker> {
        let config = BrokerConfig::from_properties(properties, group.config())?;
        let dir = group.config().member_dir().join("broker");
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        let old = crate::upgrade::attach(&group, &dir)?;
        if let Some(old) = &old {
            group.set_old_log_digest(old.log.digest().encode());
        }
        let mut state = load_state(&dir, &config)?;
        if let Some(old) = &old {
            seed_old(&dir, &mut state, old, &config.delay_levels_ms)?;
        }
        log::info!(
            "{}/{}: broker state covers log index {}",
            group.group_name(),
            group.self_id(),
            state.applied
        );
        // Retention keeps what this state's checkpoint does not cover yet.
        group.hold_retention(state.checkpointed + 1);
        let ids = ids::UniqIds::new(config.store_host.ip());
        let inner = Arc::new(Inner {
            group,
            config,
            dir,
            state: Mutex::new(state),
            applied_cv: Condvar::new(),
            counters: Arc::new(Mutex::new(Counters {
                valid: false,
                term: 0,
                through: 0,
                next: FxHashMap::default(),
            })),
            round_robin: Mutex::new(FxHashMap::default()),
            pending: Mutex::new(HashMap::new()),
            pending_cv: Condvar::new(),
            dedup: Arc::new(Mutex::new(HashMap::new())),
            ids,
            closing: AtomicBool::new(false),
            old,
            old_refused: Mutex::new(None),
            old_offered_term: Mutex::new(0),
            txn: txn::Txn::default(),
        });
        let broker = Broker {
            inner: Arc::clone(&inner),
            threads: Mutex::new(Vec::new()),
        };
        let name = format!("{}-{}", inner.group.group_name(), inner.group.self_id());
        let spawn = |role: &str, body: Box<dyn FnOnce(Arc<Inner>) + Send>| {
            let inner = Arc::clone(&inner);
            std::thread::Builder::new()
                .name(format!("{role}-{name}"))
                .spawn(move || body(inner))
                .map_err(|e| Error::io("spawn a broker thread", e))
        };
        inner
            .group
            .broker_counters()
            .open
            .store(true, Ordering::Relaxed);
        let t1 = spawn("reput", Box::new(|i| i.dispatch_loop()))?;
        broker.threads.lock().map_err(|_| poisoned())?.push(t1);
        let t2 = spawn("offsets", Box::new(|i| i.offsets_loop()))?;
        broker.threads.lock().map_err(|_| poisoned())?.push(t2);
        let t3 = spawn("schedule", Box::new(|i| i.schedule_loop()))?;
        broker.threads.lock().map_err(|_| poisoned())?.push(t3);
        let t4 = spawn("txncheck", Box::new(|i| i.txn_check_loop()))?;
        broker.threads.lock().map_err(|_| poisoned())?.push(t4);
        Ok(broker)
    }

    /// The group member underneath (role, leader, status, role listener).
    pub fn group(&self) -> &Arc<Group> {
        &self.inner.group
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.inner.config
    }

    /// This member's role.
    pub fn role(&self) -> Result<Role> {
        Ok(self.inner.group.status()?.role)
    }

    /// Sends one message and waits until it is committed, at most `timeout`.
    pub fn send(&self, message: &Message, timeout: Duration) -> Result<SendResult> {
        let slot = Slot::new();
        let filler = Arc::clone(&slot);
        self.inner
            .send_async(message, Box::new(move |r| filler.fill(r)), timeout)?;
        slot.wait(timeout, "the message")
    }

    /// Sends without waiting for the commit. On `Ok(())`, `done` runs exactly once, on
    /// a library thread, with the final result; on `Err` nothing was stored and it never
    /// runs. A send to a topic that must be auto-created first waits for that creation
    /// (up to 5 s) before returning.
    pub fn send_async(&self, message: &Message, done: SendCallback) -> Result<()> {
        self.inner.send_async(message, done, Duration::from_secs(5))
    }

    /// Ends the transaction of an open half message (RocketMQ's END_TRANSACTION), on
    /// the leader: `Commit` stores the real message and closes the half in one entry
    /// (returns the real message's result), `Rollback` only closes it (`None`). The half
    /// is named by its commitlog offset, else by its UNIQ_KEY `msg_id` (a check stores
    /// the half again at a new offset). `producer_group`, when not empty, must be the
    /// half's PGROUP. `NotFound` when no such half is open (already ended, discarded or
    /// never prepared); `Busy` while the same half is being ended or checked.
    pub fn end_transaction(
        &self,
        producer_group: &str,
        commit_log_offset: u64,
        msg_id: &str,
        end: TxnEnd,
        timeout: Duration,
    ) -> Result<Option<SendResult>> {
        self.inner
            .end_transaction(producer_group, commit_log_offset, msg_id, end, timeout)
    }

    /// Sets (or with `None` clears) the listener the leader's check thread hands each
    /// checked half message to (the remoting layer sends CHECK_TRANSACTION_STATE).
    pub fn set_transaction_check_listener(&self, listener: Option<CheckListener>) {
        self.inner.set_check_listener(listener)
    }

    /// The open half messages as this member applied them, by half queue offset.
    pub fn open_transactions(&self) -> Result<Vec<txn::OpenTransaction>> {
        let st = self.inner.lock_state()?;
        Ok(st
            .txn
            .iter()
            .map(|(qo, h)| txn::OpenTransaction {
                half_queue_offset: *qo,
                commitlog_offset: h.commitlog_offset,
                msg_id: h.uniq.clone(),
                producer_group: h.producer_group.clone(),
                check_times: h.check_times.unwrap_or(0),
            })
            .collect())
    }

    /// Pulls committed messages of one queue from `offset`: at most `max` that match
    /// `tag_expression` (`None`, `""`, `"*"` for all, else `"TagA || TagB"`), in queue
    /// order. With nothing at `offset` yet, waits up to `wait` for new messages (long
    /// polling). Past the end: no messages, `next_offset` = the max. Below the start:
    /// no messages, `next_offset` = the min.
    pub fn pull(
        &self,
        topic: &str,
        queue_id: i32,
        offset: u64,
        max: u32,
        tag_expression: Option<&str>,
        wait: Duration,
    ) -> Result<PullResult> {
        self.inner
            .pull(topic, queue_id, offset, max, tag_expression, wait)
    }

    /// (min, max) offsets of a queue: min is the first message still stored (retention
    /// moves it up), max the next offset to be written.
    pub fn queue_offsets(&self, topic: &str, queue_id: i32) -> Result<(u64, u64)> {
        let st = self.inner.lock_state()?;
        let t = st.topic(topic)?;
        check_queue(t, queue_id)?;
        Ok(st
            .queues
            .get(&(topic.to_string(), queue_id))
            .map_or((0, 0), |q| (q.min, q.count)))
    }

    /// Messages of `topic` with `key` among their KEYS, stored in `[begin_ms, end_ms]`
    /// (0 = open), newest first, at most `max`.
    pub fn query_by_key(
        &self,
        topic: &str,
        key: &str,
        max: u32,
        begin_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<MessageView>> {
        let hits: Vec<Hit> = {
            let st = self.inner.lock_state()?;
            st.index.hits(index::KIND_KEY, topic, key, begin_ms)?
        };
        let end = if end_ms <= 0 { i64::MAX } else { end_ms };
        let mut out: Vec<MessageView> = Vec::new();
        for hit in hits {
            if out.len() >= max as usize {
                break;
            }
            // Index times are to the second.
            if hit.store_timestamp.saturating_add(999) < begin_ms || hit.store_timestamp > end {
                continue;
            }
            if out
                .iter()
                .any(|v| v.commitlog_offset() == hit.commitlog_offset)
            {
                continue;
            }
            let Some(view) = self.inner.read_message(hit.commitlog_offset)? else {
                continue;
            };
            let rec = &view.decoded;
            if rec.topic == topic
                && rec.store_timestamp >= begin_ms
                && rec.store_timestamp <= end
                && rec.keys().is_some_and(|k| k.split(' ').any(|k| k == key))
            {
                out.push(view);
            }
        }
        Ok(out)
    }

    /// The message with this id: an offset msg id naming a record at that commitlog
    /// offset first, then a UNIQ_KEY (any topic; the newest of equal ids). `NotFound`
    /// when neither names a message here.
    pub fn view_by_id(&self, msg_id: &str) -> Result<MessageView> {
        if let Some((host, offset)) = record::parse_offset_msg_id(msg_id) {
            if offset >= 0 {
                if let Some(view) = self.inner.read_message(offset as u64)? {
                    if view.decoded.store_host == host {
                        return Ok(view);
                    }
                }
            }
        }
        let hits: Vec<Hit> = {
            let st = self.inner.lock_state()?;
            st.index.hits(index::KIND_UNIQ, "", msg_id, 0)?
        };
        for hit in hits {
            if let Some(view) = self.inner.read_message(hit.commitlog_offset)? {
                if view.decoded.uniq_key() == Some(msg_id) {
                    return Ok(view);
                }
            }
        }
        Err(Error::new(
            ErrorKind::NotFound,
            format!("no message with id {msg_id} on this member"),
        ))
    }

    /// The message whose record starts at commitlog offset `offset` (VIEW_MESSAGE_BY_ID
    /// names messages so); `None` when no committed message starts there.
    pub fn view_at(&self, offset: u64) -> Result<Option<MessageView>> {
        self.inner.read_message(offset)
    }

    /// Creates or updates a topic (replicated) and waits until this member applied it.
    pub fn topic_update(
        &self,
        topic: &str,
        read_queue_nums: i32,
        write_queue_nums: i32,
        perm: i32,
        timeout: Duration,
    ) -> Result<()> {
        let t = TopicConfig {
            name: topic.to_string(),
            read_queue_nums,
            write_queue_nums,
            perm,
        };
        topic::validate_config(&t)?;
        self.inner.admin(AdminOp::TopicUpdate(t), timeout)
    }

    /// Deletes a topic, its consume queues and consumer offsets (replicated).
    pub fn topic_delete(&self, topic: &str, timeout: Duration) -> Result<()> {
        {
            let st = self.inner.lock_state()?;
            st.topic(topic)?;
        }
        self.inner
            .admin(AdminOp::TopicDelete(topic.to_string()), timeout)
    }

    /// Every topic, by name.
    pub fn topic_list(&self) -> Result<Vec<TopicConfig>> {
        let st = self.inner.lock_state()?;
        Ok(st.topics.values().cloned().collect())
    }

    /// One topic's config.
    pub fn topic(&self, topic: &str) -> Result<TopicConfig> {
        let st = self.inner.lock_state()?;
        st.topic(topic).cloned()
    }

    /// Creates `%RETRY%<consumer_group>` if it does not exist (RocketMQ does on a
    /// group's first heartbeat, pull or offset commit).
    pub fn ensure_retry_topic(&self, consumer_group: &str, timeout: Duration) -> Result<()> {
        self.inner.ensure_retry_topic(consumer_group, timeout)
    }

    /// A consumer's send-back of a message it failed to consume (RocketMQ's
    /// CONSUMER_SEND_MSG_BACK), by the message's commitlog offset. The message's
    /// reconsume count so far is its RECONSUMETIMES; below `max_reconsume_times` (16 in
    /// RocketMQ's clients) and with `delay_level` >= 0 it is stored again for
    /// `%RETRY%<group>` (created if needed), delayed by `delay_level`, or by level 3 +
    /// its reconsume count when 0, with RECONSUMETIMES + 1; otherwise (or with a negative
    /// `delay_level`) it goes to `%DLQ%<group>` at once. RETRY_TOPIC keeps the topic it
    /// was first sent to, ORIGIN_MESSAGE_ID its first id; the UNIQ_KEY stays.
    pub fn send_back(
        &self,
        consumer_group: &str,
        commitlog_offset: u64,
        delay_level: i32,
        max_reconsume_times: i32,
        timeout: Duration,
    ) -> Result<SendResult> {
        self.inner.send_back(
            consumer_group,
            commitlog_offset,
            delay_level,
            max_reconsume_times,
            timeout,
        )
    }

    /// Commits a consumer group's next offset for a queue (replicated). Commits are
    /// coalesced: at most one entry per consumer group per
    /// `rmqraftOffsetCommitIntervalMs`. With a nonzero `timeout` this waits until the
    /// entry holding this commit is committed and applied here; with zero it returns
    /// once queued (a later commit or a failover may lose it, as with RocketMQ's
    /// asynchronous commits). An unknown topic or queue is refused.
    pub fn consumer_offset_commit(
        &self,
        consumer_group: &str,
        topic: &str,
        queue_id: i32,
        offset: u64,
        timeout: Duration,
    ) -> Result<()> {
        self.inner
            .offset_commit(consumer_group, topic, queue_id, offset, timeout)
    }

    /// The committed next offset of a consumer group for a queue; `None` when it has
    /// none. On the leader, a commit still being replicated is included.
    pub fn consumer_offset_fetch(
        &self,
        consumer_group: &str,
        topic: &str,
        queue_id: i32,
    ) -> Result<Option<u64>> {
        if let Ok(p) = self.inner.pending.lock() {
            if let Some(v) = p
                .get(consumer_group)
                .and_then(|g| g.offsets.get(&(topic.to_string(), queue_id)))
            {
                return Ok(Some(*v));
            }
        }
        let st = self.inner.lock_state()?;
        Ok(st
            .offsets
            .get(&(consumer_group.to_string(), topic.to_string(), queue_id))
            .copied())
    }

    /// Every committed offset: (consumer group, topic, queue id, offset).
    pub fn consumer_offsets(&self) -> Result<Vec<(String, String, i32, u64)>> {
        let st = self.inner.lock_state()?;
        Ok(st
            .offsets
            .iter()
            .map(|((g, t, q), o)| (g.clone(), t.clone(), *q, *o))
            .collect())
    }

    /// The last log index this member's broker state applied.
    pub fn applied_index(&self) -> Result<u64> {
        Ok(self.inner.lock_state()?.applied)
    }

    /// Waits until this member applied log index `index`, at most `timeout`.
    pub fn wait_applied(&self, index: u64, timeout: Duration) -> Result<()> {
        self.inner.wait_applied(index, timeout)
    }

    /// Stops the broker's threads and checkpoints its state. The group stays open
    /// (close it after: closing the group first makes the checkpoint cover only what was
    /// applied, which is safe). Idempotent.
    pub fn close(&self) {
        if self.inner.closing.swap(true, Ordering::AcqRel) {
            return;
        }
        self.inner
            .group
            .broker_counters()
            .open
            .store(false, Ordering::Relaxed);
        self.inner.applied_cv.notify_all();
        self.inner.pending_cv.notify_all();
        let threads = match self.threads.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        };
        for t in threads {
            let _ = t.join();
        }
        if let Ok(mut st) = self.inner.state.lock() {
            match checkpoint(&self.inner.dir, &mut st) {
                Ok(()) => self.inner.group.hold_retention(st.checkpointed + 1),
                Err(err) => log::warn!("broker checkpoint at close: {err}"),
            }
        }
        // Waiting offset commits learn that their outcome is unknown.
        if let Ok(mut p) = self.inner.pending.lock() {
            for (_, g) in p.drain() {
                for w in g.waiters {
                    w.fill(Err(Error::closed("the broker")));
                }
            }
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.close();
    }
}

enum Dedup {
    /// `done` ran, or waits for the original send.
    Handled,
    /// A new message: send it with this callback; remove the key if the send fails at once.
    New(SendCallback, (String, String)),
}

/// Completes a `send_async` exactly once.
pub type SendCallback = Box<dyn FnOnce(Result<SendResult>) + Send>;

fn check_queue(t: &TopicConfig, queue_id: i32) -> Result<()> {
    if queue_id < 0 || queue_id >= t.queue_nums() {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "queue {queue_id} of topic {} does not exist (readQueueNums={}, writeQueueNums={})",
                t.name, t.read_queue_nums, t.write_queue_nums
            ),
        ));
    }
    Ok(())
}

impl State {
    fn topic(&self, name: &str) -> Result<&TopicConfig> {
        self.topics.get(name).ok_or_else(|| {
            Error::new(
                ErrorKind::NoTopic,
                format!("topic {name} does not exist on this group"),
            )
        })
    }

    /// Applies one committed entry.
    fn apply(
        &mut self,
        dir: &Path,
        delay_levels: &[u64],
        kind: EntryKind,
        body: &Bytes,
        body_pos: u64,
        index: u64,
    ) {
        let rebuilding = index <= self.rebuild_through;
        match kind {
            EntryKind::Message => {
                // One record, or a transaction's records back to back.
                let mut at = 0usize;
                while at < body.len() {
                    let bytes = &body[at..];
                    match record::RecordHead::parse(bytes) {
                        Ok(rec) => {
                            let size = rec.size;
                            let pos = body_pos + at as u64;
                            if !rebuilding {
                                txn::on_record(&mut self.txn, &rec, &bytes[..size], pos);
                            }
                            self.apply_record(dir, delay_levels, rec, pos, index, rebuilding);
                            at += size.max(1);
                        }
                        Err(err) => {
                            log::error!("entry {index}: not a message record at byte {at}: {err}");
                            break;
                        }
                    }
                }
            }
            EntryKind::BrokerAdmin => match AdminOp::decode(body) {
                Ok(AdminOp::TopicUpdate(t)) => {
                    if !rebuilding {
                        self.topics.insert(t.name.clone(), t);
                    }
                }
                Ok(AdminOp::TopicDelete(name)) => {
                    // Rebuilding, the tables already went past it; its queues go again.
                    if !rebuilding {
                        self.topics.remove(&name);
                        self.offsets.retain(|(_, t, _), _| *t != name);
                    }
                    let gone: Vec<QueueKey> = self
                        .queues
                        .keys()
                        .filter(|(t, _)| *t == name)
                        .cloned()
                        .collect();
                    for k in gone {
                        if let Some(q) = self.queues.remove(&k) {
                            q.remove();
                        }
                    }
                    let _ = std::fs::remove_dir_all(dir.join("consumequeue").join(&name));
                }
                Ok(AdminOp::ConsumerOffsets { group, offsets }) => {
                    if !rebuilding {
                        for (t, q, o) in offsets {
                            self.offsets.insert((group.clone(), t, q), o);
                        }
                    }
                }
                // Compared by the dispatch thread (Inner::check_old_digest).
                Ok(AdminOp::OldLogDigest(_)) => {}
                Err(err) => log::error!("entry {index}: bad broker admin entry: {err}"),
            },
            EntryKind::Normal | EntryKind::Noop | EntryKind::Idempotent => {}
        }
        self.applied = index;
    }

    /// Applies one message record of a committed entry: its consume queue unit, index
    /// keys and delay progress.
    fn apply_record(
        &mut self,
        dir: &Path,
        delay_levels: &[u64],
        rec: record::RecordHead<'_>,
        body_pos: u64,
        index: u64,
        rebuilding: bool,
    ) {
        let size = rec.size;
        if rec.physical_offset as u64 != body_pos {
            log::warn!(
                "entry {index}: record says commitlog offset {} but sits at {body_pos}",
                rec.physical_offset
            );
        }
        let tags_code = delay::tags_code(&rec, delay_levels);
        let key = (rec.topic, rec.queue_id);
        let key_ref: &dyn QueueKeyRef = &key;
        if !self.queues.contains_key(key_ref) {
            match QueueFile::open(&cq::queue_dir(dir, key.0, key.1), 0, 0) {
                Ok(Some(q)) => {
                    self.queues.insert((key.0.to_string(), key.1), q);
                }
                Ok(None) => unreachable!("an empty queue always opens"),
                Err(err) => {
                    log::error!("entry {index}: consume queue: {err}");
                    return;
                }
            }
        }
        let q = self.queues.get_mut(key_ref).expect("inserted above");
        let qo = rec.queue_offset as u64;
        if qo != q.count {
            // An empty queue starts where its first retained message is (the
            // log's beginning went with retention).
            if q.min == q.count && (rebuilding || qo > q.count) {
                if let Err(err) = q.restart_at(qo) {
                    log::error!("entry {index}: consume queue: {err}");
                }
            } else {
                log::warn!(
                    "entry {index}: {}:{} queue offset {qo} but the queue holds {}",
                    key.0,
                    key.1,
                    q.count
                );
            }
        }
        let unit = Unit {
            commitlog_offset: body_pos as i64,
            size: size as i32,
            tags_code,
        };
        if !rebuilding {
            if let Some((level, offset)) =
                rec.property(delay::DELAY_FROM).and_then(delay::parse_from)
            {
                let p = self.delay_progress.entry(level).or_insert(0);
                *p = (*p).max(offset + 1);
            }
        }
        if let Err(err) = q.push(unit) {
            log::error!("entry {index}: consume queue: {err}");
        }
        let hit = Hit {
            commitlog_offset: body_pos,
            store_timestamp: rec.store_timestamp,
        };
        let mut indexed = Ok(());
        if let Some(u) = rec.uniq_key() {
            indexed = indexed.and(self.index.add(index::KIND_UNIQ, "", u, hit));
        }
        if let Some(keys) = rec.keys() {
            for k in keys.split(' ').filter(|k| !k.is_empty()) {
                indexed = indexed.and(self.index.add(index::KIND_KEY, key.0, k, hit));
            }
        }
        if let Err(err) = indexed {
            log::error!("entry {index}: index: {err}");
        }
    }

    /// Retention kept entries from `first_index` on, the first at commitlog offset
    /// `first_pos` (its log position above the old log's divide, if any): consume queues
    /// and the index forget what lay below; a checkpoint
    /// names the new min offsets and index files before the files below go.
    fn trim(&mut self, dir: &Path, first_index: u64, first_pos: u64) {
        if first_index <= self.first_retained.0 {
            return;
        }
        self.first_retained = (first_index, first_pos);
        self.trimmed = true;
        for ((t, q), f) in self.queues.iter_mut() {
            let before = f.min;
            match f.trim(first_pos) {
                Ok(min) if min != before => {
                    log::debug!("{t}:{q}: retention moved the min offset {before} -> {min}")
                }
                Ok(_) => {}
                Err(err) => log::warn!("{t}:{q}: trimming the consume queue: {err}"),
            }
        }
        self.index.trim(first_pos);
        match checkpoint(dir, self) {
            Ok(()) if self.applied >= self.rebuild_through => {
                for f in self.queues.values_mut() {
                    f.remove_files_below_min();
                }
                self.index.remove_dropped();
            }
            Ok(()) => {}
            Err(err) => log::warn!("broker checkpoint after retention: {err}"),
        }
    }
}

// ------------------------------------------------------------------ checkpoint

/// "RQK1": the broker checkpoint.
const CHECKPOINT_MAGIC: u32 = 0x314B_5152;
/// Version 3: open half messages after the delay progress. Version 2 (index files and
/// queue min offsets) is read as is, with no open halves; version 1 (one `index/keys`
/// file) for its tables, its consume queues and index rebuilt.
const CHECKPOINT_VERSION: u16 = 3;

fn checkpoint(dir: &Path, st: &mut State) -> Result<()> {
    if st.applied == st.checkpointed && !st.trimmed && dir.join("checkpoint").exists() {
        return Ok(());
    }
    if st.applied < st.rebuild_through {
        // The tables are ahead of the derived state until the rebuild catches up.
        return Ok(());
    }
    for q in st.queues.values_mut() {
        q.sync()?;
    }
    let metas = st.index.sync()?;
    let mut b = BytesMut::new();
    b.put_u32_le(CHECKPOINT_MAGIC);
    b.put_u16_le(CHECKPOINT_VERSION);
    b.put_u64_le(st.applied);
    b.put_u64_le(st.index.min_phy());
    b.put_u32_le(metas.len() as u32);
    for m in &metas {
        b.put_u64_le(m.number);
        b.put_u32_le(m.slots);
        b.put_u32_le(m.capacity);
        b.put_u32_le(m.count);
        b.put_i64_le(m.begin_ts);
        b.put_i64_le(m.end_ts);
        b.put_u64_le(m.begin_phy);
        b.put_u64_le(m.end_phy);
    }
    b.put_u32_le(st.topics.len() as u32);
    for t in st.topics.values() {
        admin::put_string(&mut b, &t.name);
        b.put_i32_le(t.read_queue_nums);
        b.put_i32_le(t.write_queue_nums);
        b.put_i32_le(t.perm);
    }
    b.put_u32_le(st.offsets.len() as u32);
    for ((g, t, q), o) in &st.offsets {
        admin::put_string(&mut b, g);
        admin::put_string(&mut b, t);
        b.put_i32_le(*q);
        b.put_u64_le(*o);
    }
    b.put_u32_le(st.queues.len() as u32);
    for ((t, q), f) in &st.queues {
        admin::put_string(&mut b, t);
        b.put_i32_le(*q);
        b.put_u64_le(f.min);
        b.put_u64_le(f.count);
    }
    b.put_u32_le(st.delay_progress.len() as u32);
    for (level, offset) in &st.delay_progress {
        b.put_i32_le(*level);
        b.put_u64_le(*offset);
    }
    txn::put_open(&mut b, &st.txn);
    let crc = crc32c::crc32c(&b);
    b.put_u32_le(crc);
    let tmp = dir.join("checkpoint.tmp");
    let path = dir.join("checkpoint");
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&b)?;
        f.sync_data()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| Error::io(format!("write {}", path.display()), e))?;
    st.checkpointed = st.applied;
    st.trimmed = false;
    st.last_checkpoint = Instant::now();
    Ok(())
}

/// What a checkpoint holds.
struct Saved {
    version: u16,
    applied: u64,
    index_min_phy: u64,
    index: Vec<IndexMeta>,
    topics: BTreeMap<String, TopicConfig>,
    offsets: BTreeMap<(String, String, i32), u64>,
    /// (topic, queue id, min, count).
    queues: Vec<(String, i32, u64, u64)>,
    delay_progress: BTreeMap<i32, u64>,
    txn: txn::OpenHalves,
}

fn new_state(index: KeyIndex) -> State {
    State {
        applied: 0,
        topics: BTreeMap::new(),
        offsets: BTreeMap::new(),
        queues: FxHashMap::default(),
        index,
        delay_progress: BTreeMap::new(),
        txn: txn::OpenHalves::new(),
        last_checkpoint: Instant::now(),
        checkpointed: 0,
        rebuild_through: 0,
        first_retained: (0, 0),
        last_retention_check: Instant::now(),
        trimmed: false,
    }
}

fn empty_state(dir: &Path, config: &BrokerConfig) -> Result<State> {
    let _ = std::fs::remove_dir_all(dir.join("consumequeue"));
    let _ = std::fs::remove_file(dir.join("checkpoint"));
    let index = KeyIndex::create(&dir.join("index"), config.index_slots, config.index_entries)?;
    Ok(new_state(index))
}

/// The checkpoint's tables kept, consume queues and index rebuilt from the log: each
/// queue restarts empty at its checkpointed length (a queue whose messages all went
/// with retention keeps its offsets), and the replay up to the checkpoint's index
/// touches only them.
fn rebuild_state(dir: &Path, config: &BrokerConfig, saved: Saved) -> Result<State> {
    let _ = std::fs::remove_dir_all(dir.join("consumequeue"));
    let index = KeyIndex::create(&dir.join("index"), config.index_slots, config.index_entries)?;
    let mut st = new_state(index);
    for (t, q, _, count) in saved.queues {
        if let Some(f) = QueueFile::open(&cq::queue_dir(dir, &t, q), count, count)? {
            st.queues.insert((t, q), f);
        }
    }
    st.topics = saved.topics;
    st.offsets = saved.offsets;
    st.delay_progress = saved.delay_progress;
    st.txn = saved.txn;
    st.rebuild_through = saved.applied;
    Ok(st)
}

/// Loads the checkpoint and the files it names. Missing or short consume queue or index
/// files keep the checkpoint's tables and rebuild the rest from the log; a missing or
/// damaged checkpoint rebuilds everything.
fn load_state(dir: &Path, config: &BrokerConfig) -> Result<State> {
    let path = dir.join("checkpoint");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            log::info!(
                "{}: no broker checkpoint; rebuilding from the log",
                dir.display()
            );
            return empty_state(dir, config);
        }
        Err(e) => return Err(Error::io(format!("read {}", path.display()), e)),
    };
    let saved = match parse_checkpoint(&bytes) {
        Ok(saved) => saved,
        Err(err) => {
            log::warn!("{}: {err}; rebuilding from the log", path.display());
            return empty_state(dir, config);
        }
    };
    if saved.version == 1 {
        log::info!(
            "{}: a version 1 checkpoint; rebuilding the consume queues and index from the log",
            dir.display()
        );
        let _ = std::fs::remove_dir_all(dir.join("index"));
        return rebuild_state(dir, config, saved);
    }
    match open_files(dir, config, &saved)? {
        Some(st) => Ok(st),
        None => {
            log::warn!(
                "{}: consume queue or index files are missing or short; rebuilding them from the log",
                dir.display()
            );
            rebuild_state(dir, config, saved)
        }
    }
}

fn open_files(dir: &Path, config: &BrokerConfig, saved: &Saved) -> Result<Option<State>> {
    let mut queues = FxHashMap::default();
    for (t, q, min, count) in &saved.queues {
        match QueueFile::open(&cq::queue_dir(dir, t, *q), *min, *count)? {
            Some(f) => {
                queues.insert((t.clone(), *q), f);
            }
            None => return Ok(None),
        }
    }
    let Some(index) = KeyIndex::open(
        &dir.join("index"),
        config.index_slots,
        config.index_entries,
        &saved.index,
        saved.index_min_phy,
    )?
    else {
        return Ok(None);
    };
    let mut st = new_state(index);
    st.applied = saved.applied;
    st.checkpointed = saved.applied;
    st.topics = saved.topics.clone();
    st.offsets = saved.offsets.clone();
    st.queues = queues;
    st.delay_progress = saved.delay_progress.clone();
    st.txn = saved.txn.clone();
    Ok(Some(st))
}

fn parse_checkpoint(b: &[u8]) -> Result<Saved> {
    if b.len() < 4 {
        return Err(Error::corrupt("checkpoint too short"));
    }
    let (body, crc) = b.split_at(b.len() - 4);
    if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().expect("4")) {
        return Err(Error::corrupt("checkpoint CRC mismatch"));
    }
    let mut r = admin::Cur { b: body, at: 0 };
    if r.u32()? != CHECKPOINT_MAGIC {
        return Err(Error::corrupt("not a broker checkpoint"));
    }
    let version = r.u16()?;
    if !(1..=CHECKPOINT_VERSION).contains(&version) {
        return Err(Error::corrupt(format!(
            "broker checkpoint version {version} is not known"
        )));
    }
    let applied = r.u64()?;
    let mut index = Vec::new();
    let index_min_phy = if version == 1 {
        r.u64()?; // the length of index/keys
        0
    } else {
        let min = r.u64()?;
        for _ in 0..r.u32()? {
            index.push(IndexMeta {
                number: r.u64()?,
                slots: r.u32()?,
                capacity: r.u32()?,
                count: r.u32()?,
                begin_ts: r.i64()?,
                end_ts: r.i64()?,
                begin_phy: r.u64()?,
                end_phy: r.u64()?,
            });
        }
        min
    };
    let mut topics = BTreeMap::new();
    for _ in 0..r.u32()? {
        let t = TopicConfig {
            name: r.str()?,
            read_queue_nums: r.i32()?,
            write_queue_nums: r.i32()?,
            perm: r.i32()?,
        };
        topics.insert(t.name.clone(), t);
    }
    let mut offsets = BTreeMap::new();
    for _ in 0..r.u32()? {
        let k = (r.str()?, r.str()?, r.i32()?);
        offsets.insert(k, r.u64()?);
    }
    let mut queues = Vec::new();
    for _ in 0..r.u32()? {
        let (t, q) = (r.str()?, r.i32()?);
        let min = if version == 1 { 0 } else { r.u64()? };
        queues.push((t, q, min, r.u64()?));
    }
    let mut delay_progress = BTreeMap::new();
    for _ in 0..r.u32()? {
        let level = r.i32()?;
        delay_progress.insert(level, r.u64()?);
    }
    let txn = if version >= 3 {
        txn::read_open(&mut r)?
    } else {
        txn::OpenHalves::new()
    };
    Ok(Saved {
        txn,
        version,
        applied,
        index_min_phy,
        index,
        topics,
        offsets,
        queues,
        delay_progress,
    })
}

// ------------------------------------------------------------------ the work

impl Inner {
    fn lock_state(&self) -> Result<MutexGuard<'_, State>> {
        self.state.lock().map_err(|_| poisoned())
    }

    fn closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// The dispatch thread: applies committed entries in order, checkpoints.
    fn dispatch_loop(&self) {
        while !self.closing() {
            self.offer_old_digest();
            let from = match self.lock_state() {
                Ok(st) => st.applied + 1,
                Err(_) => return,
            };
            let batch = match self.group.read_committed(
                from,
                DISPATCH_BATCH,
                DISPATCH_BATCH_BYTES,
                DISPATCH_WAIT,
            ) {
                Ok(b) => b,
                Err(err) if err.kind() == ErrorKind::NotFound => {
                    // Retention removed entries this state never saw: continue from the
                    // first retained one (their messages are gone with them).
                    let first = self.group.status().map(|s| s.first_index).unwrap_or(0);
                    log::warn!("broker dispatch: {err}; continuing at entry {first}");
                    if let Ok(mut st) = self.lock_state() {
                        if first > st.applied + 1 {
                            st.applied = first - 1;
                        }
                    }
                    continue;
                }
                Err(err) if err.kind() == ErrorKind::Closed => return,
                Err(err) => {
                    log::error!("broker dispatch stops: {err}");
                    return;
                }
            };
            let Ok(mut st) = self.lock_state() else {
                return;
            };
            let had = !batch.is_empty();
            for (entry, meta) in batch {
                if entry.index != st.applied + 1 {
                    continue;
                }
                if entry.kind == EntryKind::BrokerAdmin {
                    self.check_old_digest(&entry.body, entry.index);
                }
                st.apply(
                    &self.dir,
                    &self.config.delay_levels_ms,
                    entry.kind,
                    &entry.body,
                    self.commitlog_offset(meta.pos),
                    entry.index,
                );
            }
            if had {
                for q in st.queues.values_mut() {
                    if let Err(err) = q.flush() {
                        log::error!("broker dispatch: consume queue: {err}");
                    }
                }
                self.applied_cv.notify_all();
            }
            self.group
                .broker_counters()
                .applied_index
                .store(st.applied, Ordering::Relaxed);
            if st.applied != st.checkpointed && st.last_checkpoint.elapsed() >= CHECKPOINT_INTERVAL
            {
                match checkpoint(&self.dir, &mut st) {
                    Ok(()) => self.group.hold_retention(st.checkpointed + 1),
                    Err(err) => log::warn!("broker checkpoint: {err}"),
                }
            }
            if st.last_retention_check.elapsed() >= RETENTION_CHECK_INTERVAL {
                st.last_retention_check = Instant::now();
                drop(st);
                self.follow_retention();
            }
        }
    }

    /// When retention deleted segments, moves the queues' min offsets and the index
    /// past the messages they held.
    fn follow_retention(&self) {
        let Ok(first) = self.group.status().map(|s| s.first_index) else {
            return;
        };
        let seen = match self.lock_state() {
            Ok(st) => st.first_retained.0,
            Err(_) => return,
        };
        if first <= seen.max(1) {
            return;
        }
        let Ok((_, meta)) = self.group.read_local(first) else {
            return;
        };
        if let Ok(mut st) = self.lock_state() {
            // Queue units and index hits hold commitlog offsets: above an old log the
            // member's log starts at its divide. Everything of the old log lies below
            // the member's first entry, so it goes with the member's first segment: its
            // files are older than anything in the member's log (RocketMQ's
            // fileReservedTime keeps none of them longer).
            st.trim(&self.dir, first, self.commitlog_base() + meta.pos);
            self.group.hold_retention(st.checkpointed + 1);
        }
        self.applied_cv.notify_all();
    }

    fn wait_applied(&self, index: u64, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock_state()?;
        while st.applied < index {
            let now = Instant::now();
            if now >= deadline || self.closing() {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "log index {index} committed but not applied here within {} ms",
                        timeout.as_millis()
                    ),
                ));
            }
            st = self
                .applied_cv
                .wait_timeout(st, deadline - now)
                .map_err(|_| poisoned())?
                .0;
        }
        Ok(())
    }

    /// Whether retention deleted the log position `offset` (below the group's first
    /// retained entry).
    fn below_first_retained(&self, offset: u64) -> bool {
        let Ok(first) = self.group.status().map(|s| s.first_index) else {
            return false;
        };
        match self.group.read_local(first) {
            Ok((_, meta)) => offset < self.commitlog_base() + meta.pos,
            Err(_) => false,
        }
    }

    /// Reads the message whose record is at `offset`; `None` if no message is there.
    fn read_message(&self, offset: u64) -> Result<Option<MessageView>> {
        self.check_old_refused()?;
        if let Some(old) = self.old.as_ref().filter(|o| offset < o.log.divided()) {
            return match old.log.read(offset)? {
                Some(record) => Ok(Some(MessageView::from_record(0, record)?)),
                None => Ok(None),
            };
        }
        let Some(pos) = offset.checked_sub(self.commitlog_base()) else {
            return Ok(None);
        };
        match self.group.read_committed_at(pos) {
            Ok((entry, meta))
                if entry.kind == EntryKind::Message
                    && self.commitlog_offset(meta.pos) == offset =>
            {
                Ok(Some(MessageView::from_record(entry.index, entry.body)?))
            }
            Ok(_) => Ok(None),
            Err(err) if err.kind() == ErrorKind::NotFound => self.read_inner_record(offset, pos),
            Err(err) => Err(err),
        }
    }

    /// A record after the first of a committed entry (a transaction's op record): the
    /// entry holding body position `pos` is found by bisecting the committed log.
    fn read_inner_record(&self, offset: u64, pos: u64) -> Result<Option<MessageView>> {
        let header = crate::store::ENTRY_HEADER_SIZE as u64;
        let s = self.group.status()?;
        let (mut lo, mut hi) = (s.first_index.max(1), s.commit_index);
        let mut found = None;
        // The last committed entry whose body starts at or before `pos`.
        for _ in 0..64 {
            if lo > hi {
                break;
            }
            let mid = lo + (hi - lo) / 2;
            let meta = match self.group.read_local(mid) {
                Ok((_, meta)) => meta,
                Err(err) if err.kind() == ErrorKind::NotFound => return Ok(None),
                Err(err) => return Err(err),
            };
            if meta.pos + header <= pos {
                found = Some(mid);
                lo = mid + 1;
            } else {
                hi = mid - 1;
            }
        }
        let Some(index) = found else {
            return Ok(None);
        };
        let (entry, meta) = match self.group.read_local(index) {
            Ok(e) => e,
            Err(err) if err.kind() == ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err),
        };
        if entry.kind != EntryKind::Message {
            return Ok(None);
        }
        let want = (pos - (meta.pos + header)) as usize;
        let mut at = 0usize;
        while at < want {
            match record::RecordHead::parse(&entry.body[at..]) {
                Ok(h) => at += h.size.max(1),
                Err(_) => return Ok(None),
            }
        }
        if at != want || at >= entry.body.len() {
            return Ok(None);
        }
        let view = MessageView::from_record(entry.index, entry.body.slice(at..))?;
        Ok((view.commitlog_offset() == offset).then_some(view))
    }

    /// Appends an admin op through the stamp path and waits until applied here.
    /// Replicates a broker change and waits until it is applied here; with a zero
    /// `timeout` (a oneway request's), appends it and returns without waiting.
    fn admin(&self, op: AdminOp, timeout: Duration) -> Result<()> {
        let body = op.encode();
        let slot = Slot::new();
        let filler = Arc::clone(&slot);
        self.append_stamped(
            EntryKind::BrokerAdmin,
            body.len(),
            Arc::new(move |_place, _next| Ok(body.clone())),
            Box::new(move |r| filler.fill(r.map(|m| m.index))),
        )?;
        if timeout.is_zero() {
            return Ok(());
        }
        let deadline = Instant::now() + timeout;
        let index = slot.wait(timeout, "the broker change")?;
        self.wait_applied(index, deadline.saturating_duration_since(Instant::now()))
    }

    /// Recomputes the leader's queue offset counters from the log: the dispatched
    /// queues plus every message in the local log beyond them.
    fn rebuild_counters(&self) -> Result<()> {
        let status = self.group.status()?;
        if status.role != Role::Leader {
            return Err(self.not_leader());
        }
        let (applied, mut next) = {
            let st = self.lock_state()?;
            let next: FxHashMap<QueueKey, u64> = st
                .queues
                .iter()
                .map(|(k, q)| (k.clone(), q.count))
                .collect();
            (st.applied, next)
        };
        let last = status.last_index;
        let mut tail = Vec::new();
        for index in applied + 1..=last {
            let (entry, _) = self.group.read_local(index)?;
            if entry.kind == EntryKind::Message {
                // A transaction's entry: the records after the first take queue offsets too.
                let mut at = 0usize;
                while at < entry.body.len() {
                    let Ok(h) = record::RecordHead::parse(&entry.body[at..]) else {
                        break;
                    };
                    if at > 0 {
                        let n = next.entry((h.topic.to_string(), h.queue_id)).or_insert(0);
                        *n = (*n).max(h.queue_offset as u64 + 1);
                    }
                    at += h.size.max(1);
                }
                if let Ok(view) = MessageView::from_record(index, entry.body) {
                    let rec = &view.decoded;
                    let n = next.entry((rec.topic.clone(), rec.queue_id)).or_insert(0);
                    *n = (*n).max(rec.queue_offset as u64 + 1);
                    if rec.uniq_key().is_some() && rec.property(delay::DELAY_FROM).is_none() {
                        tail.push(view);
                    }
                }
            }
        }
        if let Ok(mut d) = self.dedup.lock() {
            d.retain(|_, e| !e.from_tail);
            for view in tail {
                let r = result_of(&view);
                d.insert(
                    (r.topic.clone(), r.msg_id.clone()),
                    DedupEntry {
                        store_ts: view.decoded.store_timestamp,
                        index: view.index,
                        result: Some(r),
                        waiters: Vec::new(),
                        from_tail: true,
                    },
                );
            }
        }
        let mut c = self.counters.lock().map_err(|_| poisoned())?;
        *c = Counters {
            valid: true,
            term: status.term,
            through: last,
            next,
        };
        log::debug!(
            "{}/{}: queue offsets recomputed through entry {last} in term {}",
            self.group.group_name(),
            self.group.self_id(),
            status.term
        );
        Ok(())
    }

    /// Recomputes the counters unless they are valid for the current term.
    fn ensure_counters(&self) -> Result<()> {
        // The member lock (status) is never taken while holding the counters: the
        // stamp takes them in the other order.
        let s = self.group.status()?;
        let ready = {
            let c = self.counters.lock().map_err(|_| poisoned())?;
            c.valid && c.term == s.term
        };
        if !ready {
            self.rebuild_counters()?;
        }
        Ok(())
    }

    /// UNIQ_KEY dedup: answers `done` with the original's result when `uniq` was stored
    /// in `topic` within dedupWindowMs (committed, in the inherited tail, or in flight),
    /// or hands `done` back, wrapped to record this send's outcome.
    fn dedup(&self, topic: &str, uniq: &str, now: i64, done: SendCallback) -> Result<Dedup> {
        self.ensure_counters()?;
        let window = self.config.dedup_window_ms as i64;
        let applied = self.lock_state()?.applied;
        let dedup = Arc::clone(&self.dedup);
        let mut d = dedup.lock().map_err(|_| poisoned())?;
        if d.len() >= 1024 {
            d.retain(|_, e| {
                let covered = e.result.is_some() && e.index <= applied && !e.from_tail;
                !covered && e.store_ts.saturating_add(window) >= now
            });
        }
        let key = (topic.to_string(), uniq.to_string());
        if let Some(e) = d.get_mut(&key) {
            if e.store_ts.saturating_add(window) >= now {
                match &e.result {
                    Some(r) => {
                        let r = r.clone();
                        drop(d);
                        done(Ok(r));
                    }
                    None => e.waiters.push(done),
                }
                return Ok(Dedup::Handled);
            }
        }
        let since = now.saturating_sub(window + 1000);
        let hits = self
            .lock_state()?
            .index
            .hits(index::KIND_UNIQ, "", uniq, since)?;
        for hit in hits {
            // Index times are to the second.
            if hit.store_timestamp.saturating_add(window + 999) < now {
                continue;
            }
            let Some(view) = self.read_message(hit.commitlog_offset)? else {
                continue;
            };
            if view.decoded.uniq_key() != Some(uniq)
                || view.decoded.store_timestamp.saturating_add(window) < now
                || view.decoded.property(delay::DELAY_FROM).is_some()
            {
                continue;
            }
            let r = result_of(&view);
            if r.topic == topic {
                drop(d);
                done(Ok(r));
                return Ok(Dedup::Handled);
            }
        }
        d.insert(
            key.clone(),
            DedupEntry {
                store_ts: now,
                index: 0,
                result: None,
                waiters: Vec::new(),
                from_tail: false,
            },
        );
        let dedup2 = Arc::clone(&self.dedup);
        let returned_key = key.clone();
        Ok(Dedup::New(
            Box::new(move |r: Result<SendResult>| {
                let waiters = match dedup2.lock() {
                    Ok(mut d) => match (&r, d.get_mut(&key)) {
                        (Ok(res), Some(e)) => {
                            e.result = Some(res.clone());
                            e.index = res.index;
                            std::mem::take(&mut e.waiters)
                        }
                        (Err(_), Some(_)) => d.remove(&key).map(|e| e.waiters).unwrap_or_default(),
                        (_, None) => Vec::new(),
                    },
                    Err(_) => Vec::new(),
                };
                for w in waiters {
                    w(r.clone());
                }
                done(r)
            }),
            returned_key,
        ))
    }

    fn not_leader(&self) -> Error {
        let leader = self
            .group
            .status()
            .ok()
            .filter(|s| s.leader_peer >= 0)
            .and_then(|s| {
                self.group
                    .config()
                    .peers
                    .get(s.leader_peer as usize)
                    .cloned()
            });
        Error::new(
            ErrorKind::NotLeader,
            match leader {
                Some(p) => format!(
                    "this member is not the leader; the leader is {} at {}",
                    p.id, p.addr
                ),
                None => "this member is not the leader; no leader is known".to_string(),
            },
        )
    }

    /// Appends through the counters: `make` builds the body from the entry's place and
    /// the counters (under the member lock, in log order). Retries while the counters
    /// are being recomputed.
    #[allow(clippy::type_complexity)]
    fn append_stamped(
        &self,
        kind: EntryKind,
        body_len: usize,
        make: Arc<dyn Fn(EntryPlace, &mut FxHashMap<QueueKey, u64>) -> Result<Bytes> + Send + Sync>,
        done: crate::engine::AppendCallback,
    ) -> Result<()> {
        let done = Arc::new(Mutex::new(Some(done)));
        for _ in 0..STAMP_ATTEMPTS {
            self.ensure_counters()?;
            let make = Arc::clone(&make);
            let counters = Arc::clone(&self.counters);
            let done2 = Arc::clone(&done);
            let r = self.group.append_with(
                kind,
                body_len,
                Box::new(move |place: EntryPlace| {
                    let mut c = counters.lock().map_err(|_| poisoned())?;
                    if !c.valid || c.term != place.term || c.through + 1 != place.index {
                        c.valid = false;
                        return Err(Error::new(ErrorKind::Busy, STALE));
                    }
                    let body = make(place, &mut c.next)?;
                    c.through = place.index;
                    Ok(body)
                }),
                Box::new(move |r| {
                    if let Some(done) = done2.lock().ok().and_then(|mut d| d.take()) {
                        done(r);
                    }
                }),
            );
            match r {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Busy && e.message() == STALE => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::new(
            ErrorKind::Busy,
            "the log kept moving while queue offsets were recomputed; retry",
        ))
    }
}

impl Inner {
    fn ensure_topic_for_send(&self, topic: &str, timeout: Duration) -> Result<TopicConfig> {
        {
            let st = self.lock_state()?;
            if let Some(t) = st.topics.get(topic) {
                return Ok(t.clone());
            }
        }
        if !self.config.auto_create_topic {
            return Err(Error::new(
                ErrorKind::NoTopic,
                format!("topic {topic} does not exist and autoCreateTopicEnable=false"),
            ));
        }
        let n = self.config.default_topic_queue_nums;
        let t = TopicConfig {
            name: topic.to_string(),
            read_queue_nums: n,
            write_queue_nums: n,
            perm: topic::PERM_READ | topic::PERM_WRITE,
        };
        self.admin(AdminOp::TopicUpdate(t), timeout)?;
        let st = self.lock_state()?;
        st.topic(topic).cloned()
    }

    fn ensure_retry_topic(&self, consumer_group: &str, timeout: Duration) -> Result<()> {
        let name = topic::retry_topic(consumer_group);
        topic::validate_topic(&name, false)?;
        if self.lock_state()?.topics.contains_key(&name) {
            return Ok(());
        }
        let t = TopicConfig {
            name,
            read_queue_nums: 1,
            write_queue_nums: 1,
            perm: topic::PERM_READ | topic::PERM_WRITE,
        };
        self.admin(AdminOp::TopicUpdate(t), timeout)
    }

    fn send_async(&self, m: &Message, done: SendCallback, timeout: Duration) -> Result<()> {
        self.group
            .broker_counters()
            .sends
            .fetch_add(1, Ordering::Relaxed);
        if m.sys_flag & record::sysflag::TRANSACTION_MASK == record::sysflag::TRANSACTION_PREPARED {
            return self.send_half(m, done, timeout);
        }
        self.put(m, done, timeout, None, true)
    }

    /// The queue a send goes to: `requested`, or round robin over the write queues.
    fn pick_queue(&self, t: &TopicConfig, requested: i32) -> Result<i32> {
        if requested < 0 {
            let mut rr = self.round_robin.lock().map_err(|_| poisoned())?;
            if !rr.contains_key(&t.name) {
                rr.insert(t.name.clone(), fastrand::u32(..));
            }
            let n = rr.get_mut(&t.name).expect("inserted above");
            *n = n.wrapping_add(1);
            Ok((*n % t.write_queue_nums as u32) as i32)
        } else {
            if requested >= t.write_queue_nums {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "queue {} of topic {} is not a write queue (writeQueueNums={})",
                        requested, t.name, t.write_queue_nums
                    ),
                ));
            }
            Ok(requested)
        }
    }

    /// Stores a message. `delivered_from`: (delay level, schedule queue offset) of a
    /// delayed message the leader delivers now (recorded in the DELAY_FROM property, so
    /// delivery progress is part of the log). `dedup`: a client's send (UNIQ_KEY dedup);
    /// the broker's own re-puts are not deduplicated against their originals.
    pub(super) fn put(
        &self,
        m: &Message,
        done: SendCallback,
        timeout: Duration,
        delivered_from: Option<(i32, u64)>,
        dedup: bool,
    ) -> Result<()> {
        self.check_old_refused()?;
        topic::validate_topic(&m.topic, true)?;
        if m.topic == topic::SCHEDULE_TOPIC {
            return Err(Error::new(
                ErrorKind::NoPermission,
                format!("{} is the broker's own topic", topic::SCHEDULE_TOPIC),
            ));
        }
        if m.topic == topic::DEFAULT_TOPIC {
            return Err(Error::new(
                ErrorKind::NoPermission,
                format!(
                    "{} is the default topic and takes no messages",
                    topic::DEFAULT_TOPIC
                ),
            ));
        }
        if m.body.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "a message body must not be empty",
            ));
        }
        if m.body.len() > self.config.max_message_size {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "message body of {} bytes exceeds maxMessageSize={}",
                    m.body.len(),
                    self.config.max_message_size
                ),
            ));
        }
        if self.group.status()?.role != Role::Leader {
            return Err(self.not_leader());
        }
        let now = now_ms();
        // Properties: the user's, then TAGS, KEYS, DELAY, UNIQ_KEY.
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        let mut uniq = None;
        for (k, v) in &m.properties {
            if k.contains(['\u{1}', '\u{2}']) || v.contains(['\u{1}', '\u{2}']) {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!("property '{k}' contains a 0x01 or 0x02 separator byte"),
                ));
            }
            if k == record::prop::UNIQ_KEY {
                uniq = Some(v.clone());
                continue;
            }
            if k == record::prop::TAGS || k == record::prop::KEYS {
                continue;
            }
            pairs.push((k, v));
        }
        if let Some(tags) = m.tags.as_deref().filter(|s| !s.is_empty()) {
            pairs.push((record::prop::TAGS, tags));
        }
        if let Some(keys) = m.keys.as_deref().filter(|s| !s.is_empty()) {
            pairs.push((record::prop::KEYS, keys));
        }
        let levels = self.config.delay_levels_ms.len() as i32;
        // RocketMQ clamps a level above the highest to the highest.
        let delay_level = if delivered_from.is_some() {
            0
        } else {
            m.delay_level.clamp(0, levels)
        };
        let user_uniq = uniq.clone();
        let uniq = uniq.unwrap_or_else(|| self.ids.next(now));
        pairs.push((record::prop::UNIQ_KEY, &uniq));
        let from;
        if let Some((level, offset)) = delivered_from {
            from = format!("{level}:{offset}");
            pairs.push((delay::DELAY_FROM, &from));
        }
        let mut properties = record::encode_properties(pairs.iter().copied());
        // Room for DELAY, REAL_TOPIC and REAL_QID of a delayed message.
        let reserve = if delay_level > 0 { 200 } else { 0 };
        if properties.len() + reserve > record::PROPERTIES_BYTES_MAX {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "properties of {} bytes exceed {} (RocketMQ's limit)",
                    properties.len(),
                    record::PROPERTIES_BYTES_MAX
                ),
            ));
        }
        let t = self.ensure_topic_for_send(&m.topic, timeout)?;
        if !t.writable() {
            return Err(Error::new(
                ErrorKind::NoPermission,
                format!("topic {} is not writable (perm {})", t.name, t.perm),
            ));
        }
        if t.write_queue_nums == 0 {
            return Err(Error::new(
                ErrorKind::NoPermission,
                format!("topic {} has no write queue", t.name),
            ));
        }
        let queue_id = self.pick_queue(&t, m.queue_id)?;
        // A delayed message waits in SCHEDULE_TOPIC_XXXX, queue level - 1, with its
        // destination in REAL_TOPIC / REAL_QID.
        let (record_topic, record_queue) = if delay_level > 0 {
            let qid = queue_id.to_string();
            let level = delay_level.to_string();
            properties.push_str(&record::encode_properties([
                (record::prop::DELAY, level.as_str()),
                (record::prop::REAL_TOPIC, t.name.as_str()),
                (record::prop::REAL_QID, qid.as_str()),
            ]));
            (topic::SCHEDULE_TOPIC.to_string(), delay_level - 1)
        } else {
            (t.name.clone(), queue_id)
        };
        let store_host = self.config.store_host;
        let rec = MessageRecord {
            queue_id: record_queue,
            flag: m.flag,
            queue_offset: 0,
            physical_offset: 0,
            sys_flag: m.sys_flag,
            born_timestamp: if m.born_timestamp > 0 {
                m.born_timestamp
            } else {
                now
            },
            born_host: m.born_host.unwrap_or(store_host),
            store_timestamp: now,
            store_host,
            reconsume_times: m.reconsume_times,
            prepared_transaction_offset: 0,
            body: m.body.clone(),
            topic: record_topic.clone(),
            properties,
            body_crc: 0,
        };
        let encoded = rec.encode()?;
        if encoded.len() > self.group.config().entry_size_bytes_max as usize {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "the message record of {} bytes exceeds maxEntrySize={}",
                    encoded.len(),
                    self.group.config().entry_size_bytes_max
                ),
            ));
        }
        let key: QueueKey = (record_topic, record_queue);
        let assigned = Arc::new(Mutex::new((0u64, 0u64)));
        let assigned2 = Arc::clone(&assigned);
        let base = self.commitlog_base();
        // Stamped in place: the record is built once and moved into the entry.
        let cell = Mutex::new(Some(encoded));
        let make = Arc::new(
            move |place: EntryPlace, next: &mut FxHashMap<QueueKey, u64>| {
                let qo = match next.get_mut(&key) {
                    Some(n) => n,
                    None => next.entry(key.clone()).or_insert(0),
                };
                let n = *qo;
                *qo += 1;
                let qo = n;
                let mut b = match cell.lock().ok().and_then(|mut c| c.take()) {
                    Some(rec) => rec
                        .try_into_mut()
                        .unwrap_or_else(|rec| BytesMut::from(&rec[..])),
                    None => {
                        return Err(Error::new(
                            ErrorKind::Panic,
                            "a message record was stamped twice",
                        ))
                    }
                };
                let offset = base + place.body_pos;
                record::stamp_offsets(&mut b, qo as i64, offset as i64);
                if let Ok(mut a) = assigned2.lock() {
                    *a = (qo, offset);
                }
                Ok(b.freeze())
            },
        );
        let topic_name = t.name.clone();
        let len = rec.encoded_len();
        let (done, dedup_key) = match &user_uniq {
            Some(u) if dedup && self.config.dedup_window_ms > 0 => {
                match self.dedup(&t.name, u, now, done)? {
                    Dedup::Handled => return Ok(()),
                    Dedup::New(done, key) => (done, Some(key)),
                }
            }
            _ => (done, None),
        };
        let sent = self.append_stamped(
            EntryKind::Message,
            len,
            make,
            Box::new(move |r| {
                let r = r
                    .map(|meta| {
                        let (qo, off) = assigned.lock().map(|a| *a).unwrap_or((0, 0));
                        SendResult {
                            msg_id: uniq,
                            offset_msg_id: record::offset_msg_id(&store_host, off as i64),
                            topic: topic_name,
                            queue_id,
                            queue_offset: qo,
                            commitlog_offset: off,
                            index: meta.index,
                        }
                    })
                    .map_err(|e| match e.kind() {
                        ErrorKind::Closed => Error::new(
                            ErrorKind::OutcomeUnknown,
                            format!(
                                "the member closed before the send was decided: {}",
                                e.message()
                            ),
                        ),
                        _ => e,
                    });
                done(r)
            }),
        );
        if let (Err(err), Some(key)) = (&sent, dedup_key) {
            let waiters = self
                .dedup
                .lock()
                .ok()
                .and_then(|mut d| d.remove(&key))
                .map(|e| e.waiters)
                .unwrap_or_default();
            for w in waiters {
                w(Err(err.clone()));
            }
        }
        sent
    }

    fn pull(
        &self,
        topic: &str,
        queue_id: i32,
        offset: u64,
        max: u32,
        tag_expression: Option<&str>,
        wait: Duration,
    ) -> Result<PullResult> {
        self.group
            .broker_counters()
            .pulls
            .fetch_add(1, Ordering::Relaxed);
        let filter = TagFilter::parse(tag_expression);
        let max = max.clamp(1, PULL_MAX) as u64;
        let deadline = Instant::now() + wait;
        let key: QueueKey = (topic.to_string(), queue_id);
        let (units, min, count) = {
            let mut st = self.lock_state()?;
            loop {
                let t = st.topic(topic)?;
                if !t.readable() {
                    return Err(Error::new(
                        ErrorKind::NoPermission,
                        format!("topic {topic} is not readable (perm {})", t.perm),
                    ));
                }
                check_queue(t, queue_id)?;
                let (min, count) = st.queues.get(&key).map_or((0, 0), |q| (q.min, q.count));
                if offset < min {
                    return Ok(PullResult {
                        messages: Vec::new(),
                        next_offset: min,
                        min_offset: min,
                        max_offset: count,
                    });
                }
                if offset > count {
                    return Ok(PullResult {
                        messages: Vec::new(),
                        next_offset: count,
                        min_offset: min,
                        max_offset: count,
                    });
                }
                if offset < count {
                    let q = st.queues.get(&key).expect("a queue with units");
                    // Scan more units than asked when filtering by tags.
                    let scan = if filter.0.is_some() { max * 4 } else { max };
                    break (q.read(offset, scan)?, min, count);
                }
                let now = Instant::now();
                if now >= deadline || self.closing() {
                    return Ok(PullResult {
                        messages: Vec::new(),
                        next_offset: count,
                        min_offset: min,
                        max_offset: count,
                    });
                }
                st = self
                    .applied_cv
                    .wait_timeout(st, deadline - now)
                    .map_err(|_| poisoned())?
                    .0;
            }
        };
        let mut messages = Vec::new();
        let mut next = offset;
        for unit in units {
            if messages.len() as u64 >= max {
                break;
            }
            next += 1;
            if !filter.code_may_match(unit.tags_code) {
                continue;
            }
            let Some(view) = self.read_message(unit.commitlog_offset as u64)? else {
                if self.below_first_retained(unit.commitlog_offset as u64) {
                    // Gone with retention; the min offset follows within 100 ms.
                    continue;
                }
                // Not readable here yet (after a restart this member's commit index may
                // trail its broker checkpoint until the leader is heard): the next pull
                // starts at this unit again, so nothing is skipped.
                log::debug!(
                    "{topic}:{queue_id} offset {}: the message at commitlog offset {} is not readable yet",
                    next - 1,
                    unit.commitlog_offset
                );
                next -= 1;
                break;
            };
            if filter.matches(view.tags()) {
                messages.push(view);
            }
        }
        Ok(PullResult {
            messages,
            next_offset: next,
            min_offset: min,
            max_offset: count,
        })
    }

    fn offset_commit(
        &self,
        consumer_group: &str,
        topic: &str,
        queue_id: i32,
        offset: u64,
        timeout: Duration,
    ) -> Result<()> {
        if consumer_group.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "the consumer group is empty",
            ));
        }
        if self.group.status()?.role != Role::Leader {
            return Err(self.not_leader());
        }
        let retry = topic::retry_topic(consumer_group);
        if topic == retry {
            self.ensure_retry_topic(consumer_group, timeout)?;
        } else {
            let st = self.lock_state()?;
            let t = st.topic(topic).map_err(|_| {
                Error::new(
                    ErrorKind::NoTopic,
                    format!("cannot commit an offset for {topic}: the topic does not exist"),
                )
            })?;
            check_queue(t, queue_id).map_err(|e| {
                Error::new(
                    e.kind(),
                    format!("cannot commit an offset: {}", e.message()),
                )
            })?;
            drop(st);
            // The group's retry topic exists once the group commits anything.
            self.ensure_retry_topic(consumer_group, timeout)?;
        }
        let slot = (!timeout.is_zero()).then(Slot::new);
        {
            let mut p = self.pending.lock().map_err(|_| poisoned())?;
            let g = p.entry(consumer_group.to_string()).or_default();
            g.offsets.insert((topic.to_string(), queue_id), offset);
            if let Some(s) = &slot {
                g.waiters.push(Arc::clone(s));
            }
        }
        self.pending_cv.notify_all();
        let Some(slot) = slot else {
            return Ok(());
        };
        let deadline = Instant::now() + timeout;
        let index = slot.wait(timeout, "the consumer offset")?;
        self.wait_applied(index, deadline.saturating_duration_since(Instant::now()))
    }

    /// Replicates pending consumer offsets: one entry per consumer group per interval.
    fn offsets_loop(self: Arc<Self>) {
        let interval = Duration::from_millis(self.config.offset_commit_interval_ms);
        let Ok(mut p) = self.pending.lock() else {
            return;
        };
        while !self.closing() {
            let now = Instant::now();
            let mut wake = now + Duration::from_secs(1);
            let mut due = Vec::new();
            for (group, g) in p.iter_mut() {
                if g.offsets.is_empty() || g.in_flight {
                    continue;
                }
                let at = g.last_append.map_or(now, |t| t + interval);
                if at <= now {
                    g.in_flight = true;
                    g.last_append = Some(now);
                    due.push((
                        group.clone(),
                        std::mem::take(&mut g.offsets),
                        std::mem::take(&mut g.waiters),
                    ));
                } else {
                    wake = wake.min(at);
                }
            }
            if !due.is_empty() {
                drop(p);
                for (group, offsets, waiters) in due {
                    let op = AdminOp::ConsumerOffsets {
                        group: group.clone(),
                        offsets: offsets
                            .iter()
                            .map(|((t, q), o)| (t.clone(), *q, *o))
                            .collect(),
                    };
                    let body = op.encode();
                    let waiters = Arc::new(waiters);
                    let w2 = Arc::clone(&waiters);
                    let me = Arc::downgrade(&self);
                    let g2 = group.clone();
                    let r = self.append_stamped(
                        EntryKind::BrokerAdmin,
                        body.len(),
                        Arc::new(move |_, _| Ok(body.clone())),
                        Box::new(move |r| {
                            for w in w2.iter() {
                                w.fill(r.clone().map(|m| m.index));
                            }
                            if let Some(me) = me.upgrade() {
                                if let Ok(mut p) = me.pending.lock() {
                                    if let Some(g) = p.get_mut(&g2) {
                                        g.in_flight = false;
                                    }
                                }
                                me.pending_cv.notify_all();
                            }
                        }),
                    );
                    if let Err(err) = r {
                        for w in waiters.iter() {
                            w.fill(Err(err.clone()));
                        }
                        if let Ok(mut p) = self.pending.lock() {
                            if let Some(g) = p.get_mut(&group) {
                                g.in_flight = false;
                            }
                        }
                    }
                }
                p = match self.pending.lock() {
                    Ok(p) => p,
                    Err(_) => return,
                };
                continue;
            }
            let now = Instant::now();
            p = match self
                .pending_cv
                .wait_timeout(p, wake.saturating_duration_since(now))
            {
                Ok((p, _)) => p,
                Err(_) => return,
            };
        }
    }
}

impl Inner {
    fn send_back(
        &self,
        consumer_group: &str,
        commitlog_offset: u64,
        delay_level: i32,
        max_reconsume_times: i32,
        timeout: Duration,
    ) -> Result<SendResult> {
        if consumer_group.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "the consumer group is empty",
            ));
        }
        let Some(view) = self.read_message(commitlog_offset)? else {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("no message at commitlog offset {commitlog_offset} to send back"),
            ));
        };
        let rec = &view.decoded;
        let times = rec.reconsume_times;
        let to_dlq = delay_level < 0 || times >= max_reconsume_times;
        let target = if to_dlq {
            let dlq = format!("{}{consumer_group}", topic::DLQ_PREFIX);
            topic::validate_topic(&dlq, true)?;
            if !self.lock_state()?.topics.contains_key(&dlq) {
                let t = TopicConfig {
                    name: dlq.clone(),
                    read_queue_nums: 1,
                    write_queue_nums: 1,
                    perm: topic::PERM_READ | topic::PERM_WRITE,
                };
                self.admin(AdminOp::TopicUpdate(t), timeout)?;
            }
            dlq
        } else {
            self.ensure_retry_topic(consumer_group, timeout)?;
            topic::retry_topic(consumer_group)
        };
        let origin_topic = rec
            .property(record::prop::RETRY_TOPIC)
            .unwrap_or(&rec.topic)
            .to_string();
        let origin_id = rec
            .property(record::prop::ORIGIN_MESSAGE_ID)
            .map(str::to_string)
            .unwrap_or_else(|| view.msg_id.clone());
        let mut properties: Vec<(String, String)> = record::decode_properties(&rec.properties)
            .into_iter()
            .filter(|(k, _)| {
                ![
                    record::prop::TAGS,
                    record::prop::KEYS,
                    record::prop::DELAY,
                    record::prop::REAL_TOPIC,
                    record::prop::REAL_QID,
                    record::prop::RETRY_TOPIC,
                    record::prop::ORIGIN_MESSAGE_ID,
                    delay::DELAY_FROM,
                ]
                .contains(&k.as_str())
            })
            .collect();
        properties.push((record::prop::RETRY_TOPIC.into(), origin_topic));
        properties.push((record::prop::ORIGIN_MESSAGE_ID.into(), origin_id));
        let m = Message {
            topic: target,
            tags: rec.tags().map(str::to_string),
            keys: rec.keys().map(str::to_string),
            properties,
            body: rec.body.clone(),
            queue_id: 0,
            flag: rec.flag,
            delay_level: if to_dlq {
                0
            } else if delay_level == 0 {
                3 + times
            } else {
                delay_level
            },
            born_timestamp: rec.born_timestamp,
            born_host: Some(rec.born_host),
            sys_flag: rec.sys_flag,
            reconsume_times: times + 1,
        };
        let slot = Slot::new();
        let filler = Arc::clone(&slot);
        self.put(&m, Box::new(move |r| filler.fill(r)), timeout, None, false)?;
        slot.wait(timeout, "the sent-back message")
    }
}

// ------------------------------------------------------------------ upgrade in place

impl Inner {
    /// Commitlog offset of the member log's position 0: the old log's divide, or 0.
    fn commitlog_base(&self) -> u64 {
        self.old.as_ref().map_or(0, |o| o.log.divided())
    }

    /// The commitlog offset of the record in the entry at log position `pos`.
    fn commitlog_offset(&self, pos: u64) -> u64 {
        self.commitlog_base() + pos + crate::store::ENTRY_HEADER_SIZE as u64
    }

    /// As leader, once per term: replicates this member's old-log digest, so every
    /// member compares its own old log with the leader's.
    ///
    /// The members already compared their old logs before electing (`core::old_log`),
    /// and that is what keeps a divergent member from leading. This entry is kept as the
    /// second check, for the members that exchange lets follow: a member without an old
    /// log elects as before and refuses there only once it has heard from enough members
    /// with one (with some of them down it follows the leader meanwhile); applying this
    /// entry, in log order, it refuses at once.
    fn offer_old_digest(&self) {
        let Some(old) = &self.old else {
            return;
        };
        let Ok(status) = self.group.status() else {
            return;
        };
        if status.role != Role::Leader {
            return;
        }
        {
            let Ok(mut t) = self.old_offered_term.lock() else {
                return;
            };
            if *t == status.term {
                return;
            }
            *t = status.term;
        }
        let body = AdminOp::OldLogDigest(Bytes::from(old.log.digest().encode())).encode();
        let r = self.append_stamped(
            EntryKind::BrokerAdmin,
            body.len(),
            Arc::new(move |_, _| Ok(body.clone())),
            Box::new(|r| {
                if let Err(e) = r {
                    log::debug!("the old-log digest entry: {e}");
                }
            }),
        );
        if let Err(e) = r {
            log::debug!("the old-log digest entry: {e}");
            if let Ok(mut t) = self.old_offered_term.lock() {
                *t = 0;
            }
        }
    }

    /// Compares a leader's old-log digest entry with this member's old log; on a
    /// difference this member refuses to serve from then on (and at every open after,
    /// through `<broker dir>/old-log.refused`).
    fn check_old_digest(&self, body: &[u8], index: u64) {
        let Ok(AdminOp::OldLogDigest(d)) = AdminOp::decode(body) else {
            return;
        };
        let why = match (&self.old, crate::upgrade::OldLogDigest::decode(&d)) {
            (_, Err(e)) => Some(format!("entry {index}: {e}")),
            (None, Ok(leader)) => Some(format!(
                "the leader serves an old log (offsets {}..{}, sha256 {}) and this member \
                 has none (storePathCommitLog)",
                leader.first,
                leader.end,
                leader.sha256_hex()
            )),
            (Some(old), Ok(leader)) => old.log.digest().first_difference(&leader),
        };
        if let Some(why) = why {
            let err = Error::new(
                ErrorKind::Corrupt,
                format!(
                    "{}/{}: refusing to serve: {why}. Members must start from the same old \
                     log: compare the copies with `rmqraft store diff`, repair this one with \
                     `rmqraft store align`, and start it with a new storePathRootDir",
                    self.group.group_name(),
                    self.group.self_id()
                ),
            );
            log::error!("{err}");
            crate::upgrade::record_refusal(&self.dir, err.message());
            if let Ok(mut r) = self.old_refused.lock() {
                *r = Some(err);
            }
        }
    }

    fn check_old_refused(&self) -> Result<()> {
        if let Some(err) = self.group.old_log_refusal() {
            return Err(err);
        }
        match self.old_refused.lock() {
            Ok(r) => r.as_ref().map_or(Ok(()), |e| Err(e.clone())),
            Err(_) => Err(poisoned()),
        }
    }
}

/// Puts the old log's messages (in offset order) into a state that holds nothing yet,
/// as if they were the log's first entries: their consume queues (queue offsets as
/// stored; a queue starting above 0 is filled with RocketMQ's pre-blank units), the key
/// index, then topics (config/topics.json, plus any topic the log has and it lacks),
/// consumer offsets and delay progress. Every member does the same over the same old log.
fn seed_old(
    dir: &Path,
    st: &mut State,
    old: &crate::upgrade::OldStore,
    delay_levels: &[u64],
) -> Result<()> {
    if st.applied != 0 || !st.queues.is_empty() || !st.topics.is_empty() {
        return Ok(());
    }
    for &offset in old.log.offsets() {
        let Some(record) = old.log.read(offset)? else {
            return Err(Error::corrupt(format!(
                "old log {}: no record at offset {offset}",
                old.dir.display()
            )));
        };
        let (m, _) = MessageRecord::decode(&record)?;
        if !crate::upgrade::classic::in_consume_queue(m.sys_flag) {
            continue;
        }
        let key = (m.topic.clone(), m.queue_id);
        if !st.queues.contains_key(&key) {
            let q = QueueFile::open(&cq::queue_dir(dir, &m.topic, m.queue_id), 0, 0)?
                .expect("an empty queue always opens");
            st.queues.insert(key.clone(), q);
        }
        let q = st.queues.get_mut(&key).expect("inserted above");
        while (q.count as i64) < m.queue_offset {
            // RocketMQ's pre-blank is (0, Integer.MAX_VALUE, 0); offset 0 may be a
            // message of the old log here, so the unit points nowhere instead.
            q.push(Unit {
                commitlog_offset: i64::MAX,
                size: i32::MAX,
                tags_code: 0,
            })?;
        }
        st.apply(dir, delay_levels, EntryKind::Message, &record, offset, 0);
    }
    for t in &old.topics {
        st.topics.insert(t.name.clone(), t.clone());
    }
    let mut seen: BTreeMap<String, i32> = BTreeMap::new();
    for (t, q) in st.queues.keys() {
        let n = seen.entry(t.clone()).or_insert(0);
        *n = (*n).max(q + 1);
    }
    for (name, n) in seen {
        st.topics.entry(name.clone()).or_insert(TopicConfig {
            name,
            read_queue_nums: n,
            write_queue_nums: n,
            perm: topic::PERM_READ | topic::PERM_WRITE,
        });
    }
    for (g, t, q, o) in &old.consumer_offsets {
        st.offsets.insert((g.clone(), t.clone(), *q), *o);
    }
    for (level, o) in &old.delay_offsets {
        st.delay_progress.insert(*level, *o);
    }
    st.applied = 0;
    Ok(())
}
