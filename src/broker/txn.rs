//! Transactional messages, as RocketMQ 4.x's TransactionalMessageServiceImpl and
//! EndTransactionProcessor (docs/MESSAGES.md, "Transactions"):
//!
//! - A send with SYSFLAG TRANSACTION_PREPARED is stored as a half message in
//!   `RMQ_SYS_TRANS_HALF_TOPIC` queue 0, its destination in REAL_TOPIC / REAL_QID and its
//!   transaction bits cleared; consumers of the real topic never see it.
//! - A commit stores the real message (the half's properties without REAL_TOPIC /
//!   REAL_QID, TRAN_MSG and PGROUP kept, SYSFLAG TRANSACTION_COMMIT,
//!   PREPAREDTRANSACTIONOFFSET = the half's commitlog offset) and an op record
//!   (`RMQ_SYS_TRANS_OP_HALF_TOPIC`, tags `d`, body = the half's queue offset) in one log
//!   entry, so both or neither are stored. A rollback stores only the op record.
//! - Every member derives the open halves (a half without an op record) from the log
//!   when dispatching; the checkpoint keeps them.
//! - The leader's check thread looks at the open halves every transactionCheckInterval:
//!   one older than transactionTimeOut (from its born time; CHECK_IMMUNITY_TIME_IN_SECONDS
//!   overrides) is stored again with TRANSACTION_CHECK_TIMES + 1 (the new half and the op
//!   record of the old one in one entry) and handed to the check listener; one already
//!   checked transactionCheckMax times moves to `TRANS_CHECK_MAX_TIME_TOPIC` (with the op
//!   record of the half, one entry).

use super::record::{self, prop, sysflag, MessageRecord, RecordHead};
use super::{poisoned, topic, Inner, Message, MessageView, SendCallback, SendResult};
use crate::error::{Error, ErrorKind, Result};
use crate::types::{EntryKind, EntryPlace, Role};
use crate::wait::Slot;
use bytes::{Bytes, BytesMut};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// TopicValidator.RMQ_SYS_TRANS_HALF_TOPIC.
pub const HALF_TOPIC: &str = "RMQ_SYS_TRANS_HALF_TOPIC";
/// TopicValidator.RMQ_SYS_TRANS_OP_HALF_TOPIC.
pub const OP_TOPIC: &str = "RMQ_SYS_TRANS_OP_HALF_TOPIC";
/// TopicValidator.RMQ_SYS_TRANS_CHECK_MAX_TIME_TOPIC.
pub const CHECK_MAX_TOPIC: &str = "TRANS_CHECK_MAX_TIME_TOPIC";
/// TransactionalMessageUtil.REMOVETAG: the tags of an op record.
pub const REMOVE_TAG: &str = "d";
/// MessageSysFlag.TRANSACTION_COMMIT_TYPE.
pub const TRANSACTION_COMMIT: i32 = 0x8;
/// MessageConst.PROPERTY_TRANSACTION_PREPARED.
pub const PROP_TRAN_MSG: &str = "TRAN_MSG";
/// MessageConst.PROPERTY_PRODUCER_GROUP.
pub const PROP_PGROUP: &str = "PGROUP";
/// MessageConst.PROPERTY_TRANSACTION_CHECK_TIMES.
pub const PROP_CHECK_TIMES: &str = "TRANSACTION_CHECK_TIMES";
/// MessageConst.PROPERTY_CHECK_IMMUNITY_TIME_IN_SECONDS.
pub const PROP_CHECK_IMMUNITY: &str = "CHECK_IMMUNITY_TIME_IN_SECONDS";
/// The check thread's longest wait between looks at its role and the clock.
const TICK: Duration = Duration::from_millis(200);
/// Most halves one check round handles.
const ROUND_MAX: usize = 1000;
/// How long the check thread waits for one of its entries.
const CHECK_APPEND_TIMEOUT: Duration = Duration::from_secs(5);

/// An open half message, as every member derives it from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct OpenHalf {
    pub commitlog_offset: u64,
    pub born_timestamp: i64,
    /// UNIQ_KEY (the transaction id).
    pub uniq: String,
    /// PGROUP.
    pub producer_group: String,
    /// TRANSACTION_CHECK_TIMES of this copy; `None` before the first check.
    pub check_times: Option<u32>,
    /// CHECK_IMMUNITY_TIME_IN_SECONDS in ms; -1 without it.
    pub immunity_ms: i64,
}

/// Half queue offset -> the open half there.
pub(super) type OpenHalves = BTreeMap<u64, OpenHalf>;

/// What the check listener gets for a half message left open: the fields of RocketMQ's
/// CheckTransactionStateRequestHeader and the half as stored.
#[derive(Debug, Clone)]
pub struct TxnCheck {
    pub producer_group: String,
    /// The half's queue offset in RMQ_SYS_TRANS_HALF_TOPIC.
    pub tran_state_table_offset: u64,
    /// The half's commitlog offset.
    pub commit_log_offset: u64,
    /// UNIQ_KEY.
    pub msg_id: String,
    /// UNIQ_KEY (RocketMQ sends the same).
    pub transaction_id: String,
    /// The half's offset msg id.
    pub offset_msg_id: String,
    /// The half message as stored.
    pub half: MessageView,
}

impl TxnCheck {
    /// The half in RocketMQ's wire encoding (a pull body record) with its real topic and
    /// queue id, as RocketMQ's broker sends it with CHECK_TRANSACTION_STATE.
    pub fn wire_body(&self) -> Result<Bytes> {
        let mut rec = self.half.decoded.clone();
        if let Some(t) = rec.property(prop::REAL_TOPIC) {
            rec.topic = t.to_string();
        }
        if let Some(q) = rec.property(prop::REAL_QID).and_then(|q| q.parse().ok()) {
            rec.queue_id = q;
        }
        rec.encode()
    }
}

/// Called on the leader's check thread for each half message it checks; it should hand
/// the check to a producer of the group and return at once.
pub type CheckListener = Arc<dyn Fn(TxnCheck) + Send + Sync>;

/// The leader-local side of transactions.
#[derive(Default)]
pub(super) struct Txn {
    listener: Mutex<Option<CheckListener>>,
    /// Half queue offsets being ended or checked on this member now.
    in_flight: Mutex<HashSet<u64>>,
}

/// An open half message, as [`super::Broker::open_transactions`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenTransaction {
    /// Its queue offset in RMQ_SYS_TRANS_HALF_TOPIC (tranStateTableOffset).
    pub half_queue_offset: u64,
    pub commitlog_offset: u64,
    /// UNIQ_KEY (the transaction id).
    pub msg_id: String,
    /// PGROUP.
    pub producer_group: String,
    /// Checks so far (TRANSACTION_CHECK_TIMES).
    pub check_times: u32,
}

/// How a producer ends a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnEnd {
    Commit,
    Rollback,
}

/// Applies one committed record to the open halves: a half opens, an op record closes
/// the halves whose queue offsets its body names (comma separated, as RocketMQ 5 also
/// writes them).
pub(super) fn on_record(open: &mut OpenHalves, head: &RecordHead<'_>, bytes: &[u8], pos: u64) {
    if head.topic != HALF_TOPIC && head.topic != OP_TOPIC {
        return;
    }
    let rec = match MessageRecord::decode(bytes) {
        Ok((rec, _)) => rec,
        Err(err) => {
            log::error!("transaction record at commitlog offset {pos}: {err}");
            return;
        }
    };
    if head.topic == HALF_TOPIC {
        let half = OpenHalf {
            commitlog_offset: pos,
            born_timestamp: rec.born_timestamp,
            uniq: rec.uniq_key().unwrap_or_default().to_string(),
            producer_group: rec.property(PROP_PGROUP).unwrap_or_default().to_string(),
            check_times: rec.property(PROP_CHECK_TIMES).and_then(|t| t.parse().ok()),
            immunity_ms: rec
                .property(PROP_CHECK_IMMUNITY)
                .and_then(|s| s.parse::<i64>().ok())
                .filter(|s| *s != -1)
                .map_or(-1, |s| s.saturating_mul(1000)),
        };
        open.insert(head.queue_offset as u64, half);
    } else if rec.tags() == Some(REMOVE_TAG) {
        let text = String::from_utf8_lossy(&rec.body);
        for part in text.split(',') {
            match part.trim().parse::<u64>() {
                Ok(qo) => {
                    open.remove(&qo);
                }
                Err(_) => log::warn!(
                    "op record at commitlog offset {pos}: '{part}' is not a half queue offset"
                ),
            }
        }
    }
}

/// Checkpoint encoding of the open halves (little-endian, strings as u16 + UTF-8).
pub(super) fn put_open(b: &mut BytesMut, open: &OpenHalves) {
    use bytes::BufMut;
    b.put_u32_le(open.len() as u32);
    for (qo, h) in open {
        b.put_u64_le(*qo);
        b.put_u64_le(h.commitlog_offset);
        b.put_i64_le(h.born_timestamp);
        super::admin::put_string(b, &h.uniq);
        super::admin::put_string(b, &h.producer_group);
        b.put_i64_le(h.check_times.map_or(-1, i64::from));
        b.put_i64_le(h.immunity_ms);
    }
}

pub(super) fn read_open(r: &mut super::admin::Cur<'_>) -> Result<OpenHalves> {
    let mut open = OpenHalves::new();
    for _ in 0..r.u32()? {
        let qo = r.u64()?;
        let h = OpenHalf {
            commitlog_offset: r.u64()?,
            born_timestamp: r.i64()?,
            uniq: r.str()?,
            producer_group: r.str()?,
            check_times: u32::try_from(r.i64()?).ok(),
            immunity_ms: r.i64()?,
        };
        open.insert(qo, h);
    }
    Ok(open)
}

fn props_without(rec: &MessageRecord, drop: &[&str]) -> Vec<(String, String)> {
    record::decode_properties(&rec.properties)
        .into_iter()
        .filter(|(k, _)| !drop.contains(&k.as_str()))
        .collect()
}

fn encode_props(pairs: &[(String, String)]) -> String {
    record::encode_properties(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

impl Message {
    /// A transactional (half) message of `producer_group`: SYSFLAG
    /// TRANSACTION_PREPARED, TRAN_MSG=true and PGROUP, as RocketMQ's
    /// TransactionMQProducer sends it.
    pub fn transactional(mut self, producer_group: &str) -> Message {
        self.sys_flag =
            (self.sys_flag & !sysflag::TRANSACTION_MASK) | sysflag::TRANSACTION_PREPARED;
        self.properties
            .retain(|(k, _)| k != PROP_TRAN_MSG && k != PROP_PGROUP);
        self.properties.push((PROP_TRAN_MSG.into(), "true".into()));
        self.properties
            .push((PROP_PGROUP.into(), producer_group.to_string()));
        self
    }
}

impl Inner {
    pub(super) fn set_check_listener(&self, listener: Option<CheckListener>) {
        if let Ok(mut l) = self.txn.listener.lock() {
            *l = listener;
        }
    }

    /// Creates one of the broker's own transaction topics (1 queue, perm 6) if missing.
    fn ensure_system_topic(&self, name: &str, timeout: Duration) -> Result<()> {
        if self.lock_state()?.topics.contains_key(name) {
            return Ok(());
        }
        self.admin(
            super::admin::AdminOp::TopicUpdate(topic::TopicConfig {
                name: name.to_string(),
                read_queue_nums: 1,
                write_queue_nums: 1,
                perm: topic::PERM_READ | topic::PERM_WRITE,
            }),
            timeout,
        )
    }

    /// Stores a half message (a send with TRANSACTION_PREPARED). The result names the
    /// real topic and queue, the half's queue offset (tranStateTableOffset) and the
    /// half's offset msg id and commitlog offset.
    pub(super) fn send_half(
        &self,
        m: &Message,
        done: SendCallback,
        timeout: Duration,
    ) -> Result<()> {
        topic::validate_topic(&m.topic, true)?;
        if [HALF_TOPIC, OP_TOPIC, topic::SCHEDULE_TOPIC].contains(&m.topic.as_str()) {
            return Err(Error::new(
                ErrorKind::NoPermission,
                format!("{} is the broker's own topic", m.topic),
            ));
        }
        if self.group.status()?.role != Role::Leader {
            return Err(self.not_leader());
        }
        let t = self.ensure_topic_for_send(&m.topic, timeout)?;
        if !t.writable() || t.write_queue_nums == 0 {
            return Err(Error::new(
                ErrorKind::NoPermission,
                format!("topic {} is not writable (perm {})", t.name, t.perm),
            ));
        }
        let queue_id = self.pick_queue(&t, m.queue_id)?;
        self.ensure_system_topic(HALF_TOPIC, timeout)?;
        self.ensure_system_topic(OP_TOPIC, timeout)?;
        let mut half = m.clone();
        half.properties
            .retain(|(k, _)| k != prop::REAL_TOPIC && k != prop::REAL_QID);
        half.properties
            .push((prop::REAL_TOPIC.into(), t.name.clone()));
        half.properties
            .push((prop::REAL_QID.into(), queue_id.to_string()));
        half.topic = HALF_TOPIC.to_string();
        half.queue_id = 0;
        half.delay_level = 0;
        half.sys_flag &= !sysflag::TRANSACTION_MASK;
        let real = t.name.clone();
        self.put(
            &half,
            Box::new(move |r| {
                done(r.map(|mut sr| {
                    sr.topic = real;
                    sr.queue_id = queue_id;
                    sr
                }))
            }),
            timeout,
            None,
            true,
        )
    }

    /// The open half named by its commitlog offset, else by its UNIQ_KEY.
    fn find_open(&self, commitlog_offset: u64, msg_id: &str) -> Result<Option<(u64, OpenHalf)>> {
        let st = self.lock_state()?;
        let by_offset = st
            .txn
            .iter()
            .find(|(_, h)| h.commitlog_offset == commitlog_offset);
        let found = by_offset.or_else(|| {
            (!msg_id.is_empty())
                .then(|| st.txn.iter().find(|(_, h)| h.uniq == msg_id))
                .flatten()
        });
        Ok(found.map(|(qo, h)| (*qo, h.clone())))
    }

    /// Ends the transaction of an open half message (see [`super::Broker::end_transaction`]).
    pub(super) fn end_transaction(
        &self,
        producer_group: &str,
        commit_log_offset: u64,
        msg_id: &str,
        end: TxnEnd,
        timeout: Duration,
    ) -> Result<Option<SendResult>> {
        self.check_old_refused()?;
        let status = self.group.status()?;
        if status.role != Role::Leader {
            return Err(self.not_leader());
        }
        // A producer ends right after its half's send was answered (at its commit): the
        // half is open once this member applied what is committed.
        self.wait_applied(status.commit_index, timeout)?;
        let Some((qo, half)) = self.find_open(commit_log_offset, msg_id)? else {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "no open half message at commitlog offset {commit_log_offset} (msg id \
                     '{msg_id}'): it was committed, rolled back, discarded or never prepared"
                ),
            ));
        };
        if !producer_group.is_empty()
            && !half.producer_group.is_empty()
            && producer_group != half.producer_group
        {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "the half message at commitlog offset {} belongs to producer group {}, not {producer_group}",
                    half.commitlog_offset, half.producer_group
                ),
            ));
        }
        let _guard = self.claim(qo)?;
        // Claimed: nothing else ends or checks it now; is it still open?
        if self.find_open(half.commitlog_offset, "")?.is_none() {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "the half message at commitlog offset {} was ended meanwhile",
                    half.commitlog_offset
                ),
            ));
        }
        let view = self.half_view(&half)?;
        let op = self.op_record(qo, &view.decoded);
        match end {
            TxnEnd::Rollback => {
                self.append_records(&[op], timeout)?;
                Ok(None)
            }
            TxnEnd::Commit => {
                let real = self.real_record(&view)?;
                let mut r = self.append_records(&[real, op], timeout)?;
                Ok(Some(r.swap_remove(0)))
            }
        }
    }

    fn half_view(&self, half: &OpenHalf) -> Result<MessageView> {
        self.read_message(half.commitlog_offset)?.ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!(
                    "the half message at commitlog offset {} is no longer stored",
                    half.commitlog_offset
                ),
            )
        })
    }

    /// Marks a half as being handled here; the guard releases it.
    fn claim(&self, qo: u64) -> Result<Claim<'_>> {
        let mut f = self.txn.in_flight.lock().map_err(|_| poisoned())?;
        if !f.insert(qo) {
            return Err(Error::new(
                ErrorKind::Busy,
                format!("half message {qo} of {HALF_TOPIC} is being ended or checked now"),
            ));
        }
        Ok(Claim { txn: &self.txn, qo })
    }

    /// The op record that closes the half at queue offset `qo`.
    fn op_record(&self, qo: u64, half: &MessageRecord) -> MessageRecord {
        let now = super::now_ms();
        MessageRecord {
            queue_id: half.queue_id,
            flag: 0,
            queue_offset: 0,
            physical_offset: 0,
            sys_flag: 0,
            born_timestamp: now,
            born_host: self.config.store_host,
            store_timestamp: now,
            store_host: self.config.store_host,
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: Bytes::from(qo.to_string()),
            topic: OP_TOPIC.to_string(),
            properties: record::encode_properties([(prop::TAGS, REMOVE_TAG)]),
            body_crc: 0,
        }
    }

    /// The committed message a half becomes (EndTransactionProcessor.endMessageTransaction).
    fn real_record(&self, view: &MessageView) -> Result<MessageRecord> {
        let h = &view.decoded;
        let topic = h.property(prop::REAL_TOPIC).ok_or_else(|| {
            Error::corrupt(format!(
                "half message at commitlog offset {} has no REAL_TOPIC",
                h.physical_offset
            ))
        })?;
        let queue_id = h
            .property(prop::REAL_QID)
            .and_then(|q| q.parse().ok())
            .ok_or_else(|| {
                Error::corrupt(format!(
                    "half message at commitlog offset {} has no REAL_QID",
                    h.physical_offset
                ))
            })?;
        let t = self.lock_state()?.topic(topic)?.clone();
        if queue_id < 0 || queue_id >= t.write_queue_nums.max(t.read_queue_nums) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("queue {queue_id} of topic {topic} no longer exists"),
            ));
        }
        let props = props_without(h, &[prop::REAL_TOPIC, prop::REAL_QID]);
        Ok(MessageRecord {
            queue_id,
            topic: topic.to_string(),
            properties: encode_props(&props),
            sys_flag: (h.sys_flag & !sysflag::TRANSACTION_MASK) | TRANSACTION_COMMIT,
            prepared_transaction_offset: h.physical_offset,
            queue_offset: 0,
            physical_offset: 0,
            store_host: self.config.store_host,
            ..h.clone()
        })
    }

    /// Appends `recs` as one Message entry (each record stamped with its queue offset
    /// and commitlog offset) and waits until it is committed and applied here.
    fn append_records(&self, recs: &[MessageRecord], timeout: Duration) -> Result<Vec<SendResult>> {
        let mut buf = BytesMut::new();
        let mut parts = Vec::with_capacity(recs.len());
        for r in recs {
            let e = r.encode()?;
            parts.push((buf.len(), (r.topic.clone(), r.queue_id)));
            buf.extend_from_slice(&e);
        }
        let max = self.group.config().entry_size_bytes_max as usize;
        if buf.len() > max {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "the transaction entry of {} bytes exceeds maxEntrySize={max}",
                    buf.len()
                ),
            ));
        }
        let buf = buf.freeze();
        let len = buf.len();
        let base = self.commitlog_base();
        let assigned = Arc::new(Mutex::new(Vec::new()));
        let a2 = Arc::clone(&assigned);
        let make = Arc::new(
            move |place: EntryPlace, next: &mut super::FxHashMap<super::QueueKey, u64>| {
                let mut b = BytesMut::from(&buf[..]);
                let mut got = Vec::with_capacity(parts.len());
                for (at, key) in &parts {
                    let n = next.entry(key.clone()).or_insert(0);
                    let qo = *n;
                    *n += 1;
                    let offset = base + place.body_pos + *at as u64;
                    record::stamp_offsets(&mut b[*at..], qo as i64, offset as i64);
                    got.push((qo, offset));
                }
                if let Ok(mut a) = a2.lock() {
                    *a = got;
                }
                Ok(b.freeze())
            },
        );
        let slot = Slot::new();
        let filler = Arc::clone(&slot);
        self.append_stamped(
            EntryKind::Message,
            len,
            make,
            Box::new(move |r| filler.fill(r.map(|m| m.index))),
        )?;
        let deadline = Instant::now() + timeout;
        let index = slot.wait(timeout, "the transaction entry")?;
        self.wait_applied(index, deadline.saturating_duration_since(Instant::now()))?;
        let got = assigned.lock().map_err(|_| poisoned())?.clone();
        Ok(recs
            .iter()
            .zip(got)
            .map(|(r, (qo, off))| {
                let offset_msg_id = record::offset_msg_id(&self.config.store_host, off as i64);
                SendResult {
                    msg_id: r
                        .uniq_key()
                        .map(str::to_string)
                        .unwrap_or_else(|| offset_msg_id.clone()),
                    offset_msg_id,
                    topic: r.topic.clone(),
                    queue_id: r.queue_id,
                    queue_offset: qo,
                    commitlog_offset: off,
                    index,
                }
            })
            .collect())
    }

    /// The leader's check thread.
    pub(super) fn txn_check_loop(self: Arc<Self>) {
        let interval = Duration::from_millis(self.config.transaction_check_interval_ms);
        let tick = interval.min(TICK);
        let mut term_seen = 0;
        let mut term_start = 0;
        let mut last_round: Option<Instant> = None;
        while !self.closing() {
            match self.state.lock() {
                Ok(st) => {
                    if self.applied_cv.wait_timeout(st, tick).is_err() {
                        return;
                    }
                }
                Err(_) => return,
            }
            if self.closing() {
                return;
            }
            let Ok(status) = self.group.status() else {
                continue;
            };
            if status.role != Role::Leader {
                term_seen = 0;
                last_round = None;
                continue;
            }
            if status.term != term_seen {
                // A new leader knows the open halves once it applied its predecessors'
                // entries; its first round comes one interval later.
                term_seen = status.term;
                term_start = status.last_index;
                last_round = Some(Instant::now());
            }
            match self.state.lock() {
                Ok(st) if st.applied >= term_start => {}
                Ok(_) => continue,
                Err(_) => return,
            }
            if last_round.is_some_and(|t| t.elapsed() < interval) {
                continue;
            }
            last_round = Some(Instant::now());
            self.check_round();
        }
    }

    /// One round: every open half due for a check is checked or discarded.
    fn check_round(&self) {
        let now = super::now_ms();
        let timeout = self.config.transaction_timeout_ms as i64;
        let due: Vec<(u64, OpenHalf)> = match self.state.lock() {
            Ok(st) => st
                .txn
                .iter()
                .filter(|(_, h)| {
                    let age = now - h.born_timestamp;
                    let threshold = if h.immunity_ms >= 0 {
                        h.immunity_ms
                    } else {
                        timeout
                    };
                    age > threshold || age <= -1
                })
                .take(ROUND_MAX)
                .map(|(qo, h)| (*qo, h.clone()))
                .collect(),
            Err(_) => return,
        };
        for (qo, half) in due {
            if self.closing() {
                return;
            }
            if let Err(err) = self.check_one(qo, &half) {
                log::warn!(
                    "{}/{}: transaction check of the half message at commitlog offset {}: {err}",
                    self.group.group_name(),
                    self.group.self_id(),
                    half.commitlog_offset
                );
            }
        }
    }

    fn check_one(&self, qo: u64, half: &OpenHalf) -> Result<()> {
        let Ok(_guard) = self.claim(qo) else {
            return Ok(()); // being ended now
        };
        if self.find_open(half.commitlog_offset, "")?.is_none() {
            return Ok(());
        }
        let view = self.half_view(half)?;
        let op = self.op_record(qo, &view.decoded);
        let max = self.config.transaction_check_max;
        let times = match half.check_times {
            Some(t) if t >= max => None,
            Some(t) => Some(t + 1),
            None if max == 0 => None,
            None => Some(1),
        };
        let Some(times) = times else {
            // Checked too often: discarded into TRANS_CHECK_MAX_TIME_TOPIC
            // (DefaultTransactionalMessageCheckListener.resolveDiscardMsg).
            self.ensure_system_topic(CHECK_MAX_TOPIC, CHECK_APPEND_TIMEOUT)?;
            let h = &view.decoded;
            let discarded = MessageRecord {
                topic: CHECK_MAX_TOPIC.to_string(),
                queue_id: 0,
                queue_offset: 0,
                physical_offset: 0,
                store_timestamp: super::now_ms(),
                store_host: self.config.store_host,
                ..h.clone()
            };
            log::warn!(
                "{}/{}: the half message {} (real topic {}) was checked {} times; moved to {CHECK_MAX_TOPIC}",
                self.group.group_name(),
                self.group.self_id(),
                half.uniq,
                h.property(prop::REAL_TOPIC).unwrap_or(""),
                half.check_times.unwrap_or(0)
            );
            self.append_records(&[discarded, op], CHECK_APPEND_TIMEOUT)?;
            return Ok(());
        };
        // Stored again with the check count (putBackHalfMsgQueue), the old copy closed.
        let h = &view.decoded;
        let mut props = props_without(h, &[PROP_CHECK_TIMES]);
        props.push((PROP_CHECK_TIMES.into(), times.to_string()));
        let again = MessageRecord {
            properties: encode_props(&props),
            queue_offset: 0,
            physical_offset: 0,
            store_timestamp: super::now_ms(),
            store_host: self.config.store_host,
            ..h.clone()
        };
        let r = self.append_records(&[again, op], CHECK_APPEND_TIMEOUT)?;
        let listener = self.txn.listener.lock().ok().and_then(|l| l.clone());
        let Some(listener) = listener else {
            log::debug!(
                "transaction check of {}: no check listener registered",
                half.uniq
            );
            return Ok(());
        };
        let new_half = &r[0];
        let Some(view) = self.read_message(new_half.commitlog_offset)? else {
            return Ok(());
        };
        listener(TxnCheck {
            producer_group: half.producer_group.clone(),
            tran_state_table_offset: new_half.queue_offset,
            commit_log_offset: new_half.commitlog_offset,
            msg_id: half.uniq.clone(),
            transaction_id: half.uniq.clone(),
            offset_msg_id: new_half.offset_msg_id.clone(),
            half: view,
        });
        Ok(())
    }
}

struct Claim<'a> {
    txn: &'a Txn,
    qo: u64,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if let Ok(mut f) = self.txn.in_flight.lock() {
            f.remove(&self.qo);
        }
    }
}
