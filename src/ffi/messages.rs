//! The message layer of ABI 0.2 (docs/C-API.md "Messages"): topics, sends, pulls,
//! lookups and consumer offsets, over the member's [`Broker`].
//!
//! A group handle owns at most one `Broker`, opened on the first message call with the
//! properties the group was opened with (so a host that only appends raw entries starts
//! no broker threads and writes no `broker/` directory), and closed before the member
//! closes. The message keys are checked at `rmqraft_group_open`, so a bad one is
//! `RMQRAFT_ERR_CONFIG` there. When the broker opens, the call waits (at most
//! [`CATCH_UP_MAX`]) until it has applied what the member had committed, so that the
//! first read sees it.

use super::boundary::{boundary, bytes_arg, invalid, out_arg, str_arg};
use super::callbacks::{GroupShared, UserData};
use super::handle::handle_ref;
use super::types::{
    rmqraft_group, rmqraft_message, rmqraft_message_cb, rmqraft_message_view, rmqraft_result,
    rmqraft_send_cb, rmqraft_send_result, rmqraft_topic_cb,
};
use crate::broker::{Broker, BrokerConfig, Message, MessageView};
use crate::engine::Group;
use crate::error::{Error, Result};
use bytes::Bytes;
use std::ffi::{c_char, c_void, CString};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The longest a call waits for a just-opened broker to apply what was committed.
const CATCH_UP_MAX: Duration = Duration::from_secs(10);

/// The broker of one group handle, opened on first use.
pub(crate) struct Messages {
    properties: String,
    /// `None` before the first message call; `closed` once the group closed.
    broker: Mutex<(Option<Arc<Broker>>, bool)>,
}

impl Messages {
    /// Checks the message keys of `properties` (a bad one is `Config` at group open).
    pub(crate) fn new(group: &Group, properties: &str) -> Result<Messages> {
        BrokerConfig::from_properties(properties, group.config())?;
        Ok(Messages {
            properties: properties.to_string(),
            broker: Mutex::new((None, false)),
        })
    }

    /// The member's broker, opened now if this is the first message call.
    fn get(&self, group: &Arc<Group>, wait: Duration) -> Result<Arc<Broker>> {
        let mut slot = self.broker.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.1 {
            return Err(Error::closed("group"));
        }
        if let Some(b) = &slot.0 {
            return Ok(Arc::clone(b));
        }
        let broker = Arc::new(Broker::open(Arc::clone(group), &self.properties)?);
        let commit = group.status()?.commit_index;
        if let Err(err) = broker.wait_applied(commit, wait.min(CATCH_UP_MAX)) {
            log::debug!("the message layer opened behind the log: {err}");
        }
        slot.0 = Some(Arc::clone(&broker));
        Ok(broker)
    }

    /// Closes the broker (joins its threads, checkpoints); later calls are `Closed`.
    pub(crate) fn close(&self) {
        let broker = {
            let mut slot = self.broker.lock().unwrap_or_else(PoisonError::into_inner);
            slot.1 = true;
            slot.0.take()
        };
        if let Some(b) = broker {
            b.close();
        }
    }
}

fn broker(shared: &GroupShared, wait: Duration) -> Result<Arc<Broker>> {
    shared.check_open()?;
    shared.messages.get(&shared.group, wait)
}

fn ms(timeout_ms: u32) -> Duration {
    Duration::from_millis(u64::from(timeout_ms))
}

/// An optional input string: NULL is `None`.
unsafe fn opt_str<'a>(ptr: *const c_char, name: &str) -> Result<Option<&'a str>> {
    if ptr.is_null() {
        Ok(None)
    } else {
        str_arg(ptr, name).map(Some)
    }
}

/// "name=value\n" lines (blank lines skipped; a value may contain '=').
fn parse_properties(text: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (n, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        match line.split_once('=') {
            Some((name, value)) if !name.is_empty() => {
                out.push((name.to_string(), value.to_string()))
            }
            _ => {
                return Err(invalid(format!(
                    "properties: line {} ('{line}') is not name=value",
                    n + 1
                )))
            }
        }
    }
    Ok(out)
}

/// The Rust message of a C `rmqraft_message`, every string and the body copied.
unsafe fn message_arg(m: *const rmqraft_message) -> Result<Message> {
    let m = m.as_ref().ok_or_else(|| invalid("m is NULL"))?;
    let topic = str_arg(m.topic, "m->topic")?;
    let tags = opt_str(m.tags, "m->tags")?.filter(|s| !s.is_empty());
    let keys = opt_str(m.keys, "m->keys")?.filter(|s| !s.is_empty());
    let properties = match opt_str(m.properties, "m->properties")? {
        Some(p) => parse_properties(p)?,
        None => Vec::new(),
    };
    let body = bytes_arg(m.body, m.body_len, "m->body")?;
    Ok(Message {
        topic: topic.to_string(),
        tags: tags.map(str::to_string),
        keys: keys.map(str::to_string),
        properties,
        body: Bytes::copy_from_slice(body),
        queue_id: m.queue_id,
        flag: m.flag,
        delay_level: m.delay_level,
        ..Message::new("", Bytes::new())
    })
}

/// A C string of `s`, cut at an embedded NUL (a C reader would stop there anyway).
fn c_string(s: &str) -> CString {
    let end = s.find('\0').unwrap_or(s.len());
    CString::new(&s[..end]).unwrap_or_default()
}

/// Hands one stored message to the host's callback; true when it asked to stop.
fn deliver(cb: MessageFn, userdata: UserData, view: &MessageView) -> bool {
    let properties: String = view
        .properties()
        .iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect();
    let topic = c_string(view.topic());
    let tags = c_string(view.tags().unwrap_or(""));
    let keys = c_string(view.keys().unwrap_or(""));
    let msg_id = c_string(&view.msg_id);
    let offset_msg_id = c_string(&view.offset_msg_id);
    let properties = c_string(&properties);
    let d = &view.decoded;
    let c = rmqraft_message_view {
        topic: topic.as_ptr(),
        tags: tags.as_ptr(),
        keys: keys.as_ptr(),
        msg_id: msg_id.as_ptr(),
        offset_msg_id: offset_msg_id.as_ptr(),
        properties: properties.as_ptr(),
        body: d.body.as_ptr(),
        body_len: d.body.len(),
        record: view.record.as_ptr(),
        record_len: view.record.len(),
        queue_id: d.queue_id,
        queue_offset: view.queue_offset(),
        commitlog_offset: view.commitlog_offset(),
        born_timestamp_ms: d.born_timestamp,
        store_timestamp_ms: d.store_timestamp,
        flag: d.flag,
        reconsume_times: d.reconsume_times,
    };
    // SAFETY: the host gave this callback and userdata for this call; `c` and the
    // strings it points into live until it returns.
    unsafe { cb(userdata.0, &c) != 0 }
}

type MessageFn = unsafe extern "C" fn(*mut c_void, *const rmqraft_message_view) -> std::ffi::c_int;

fn message_cb_arg(cb: rmqraft_message_cb) -> Result<MessageFn> {
    cb.ok_or_else(|| invalid("cb is NULL"))
}

/// Creates or updates `topic` with `read_queues` and `write_queues` queues (1..1024) and
/// RocketMQ's `perm` bits (2 write, 4 read; 6 usual), replicated through the log; waits at
/// most `timeout_ms` until this member applied it. On the leader only
/// (RMQRAFT_ERR_NOT_LEADER elsewhere). A bad topic name or number is
/// RMQRAFT_ERR_INVALID_ARGUMENT naming the rule.
#[no_mangle]
pub unsafe extern "C" fn rmqraft_topic_update(
    g: *mut rmqraft_group,
    topic: *const c_char,
    read_queues: i32,
    write_queues: i32,
    perm: i32,
    timeout_ms: u32,
) -> rmqraft_result {
    boundary("rmqraft_topic_update", || {
        let shared = handle_ref(g)?;
        let topic = str_arg(topic, "topic")?;
        let b = broker(shared, ms(timeout_ms))?;
        b.topic_update(topic, read_queues, write_queues, perm, ms(timeout_ms))
    })
}

/// Deletes `topic` with its consume queues and consumer offsets (replicated; on the
/// leader). RMQRAFT_ERR_NO_TOPIC when it does not exist.
#[no_mangle]
pub unsafe extern "C" fn rmqraft_topic_delete(
    g: *mut rmqraft_group,
    topic: *const c_char,
    timeout_ms: u32,
) -> rmqraft_result {
    boundary("rmqraft_topic_delete", || {
        let shared = handle_ref(g)?;
        let topic = str_arg(topic, "topic")?;
        let b = broker(shared, ms(timeout_ms))?;
        b.topic_delete(topic, ms(timeout_ms))
    })
}

/// Calls `cb` once per topic this member knows (any member), by name, on the calling
/// thread, until it returns nonzero.
#[no_mangle]
pub unsafe extern "C" fn rmqraft_topic_list(
    g: *const rmqraft_group,
    cb: rmqraft_topic_cb,
    userdata: *mut c_void,
) -> rmqraft_result {
    boundary("rmqraft_topic_list", || {
        let shared = handle_ref(g)?;
        let cb = cb.ok_or_else(|| invalid("cb is NULL"))?;
        let topics = broker(shared, CATCH_UP_MAX)?.topic_list()?;
        for t in topics {
            let name = c_string(&t.name);
            if cb(
                userdata,
                name.as_ptr(),
                t.read_queue_nums,
                t.write_queue_nums,
                t.perm,
            ) != 0
            {
                break;
            }
        }
        Ok(())
    })
}

/// Sends one message on the leader and blocks until it is committed under the group's
/// flush policy, at most `timeout_ms`; on RMQRAFT_OK `*out` tells its ids and offsets,
/// and the message is visible to pulls and lookups on this member. Refused before
/// anything is stored: RMQRAFT_ERR_INVALID_ARGUMENT (bad topic, empty body, bad
/// properties), RMQRAFT_ERR_TOO_LARGE (body over maxMessageSize), RMQRAFT_ERR_NO_TOPIC
/// (unknown topic with autoCreateTopicEnable=false), RMQRAFT_ERR_NO_PERMISSION (perm
/// without write), RMQRAFT_ERR_NOT_LEADER, RMQRAFT_ERR_BUSY. RMQRAFT_ERR_TIMEOUT and
/// RMQRAFT_ERR_OUTCOME_UNKNOWN: it may or may not be stored.
#[no_mangle]
pub unsafe extern "C" fn rmqraft_message_send(
    g: *mut rmqraft_group,
    m: *const rmqraft_message,
    timeout_ms: u32,
    out: *mut rmqraft_send_result,
) -> rmqraft_result {
    boundary("rmqraft_message_send", || {
        let shared = handle_ref(g)?;
        let message = message_arg(m)?;
        let out = out_arg(out, "out")?;
        let started = Instant::now();
        let b = broker(shared, ms(timeout_ms))?;
        let left = ms(timeout_ms).saturating_sub(started.elapsed());
        let r = b.send(&message, left)?;
        // Committed: make it visible here before returning (best effort; OK either way).
        let left = ms(timeout_ms)
            .saturating_sub(started.elapsed())
            .max(Duration::from_secs(1));
        if let Err(err) = b.wait_applied(r.index, left) {
            log::debug!("rmqraft_message_send: committed, not yet applied here: {err}");
        }
        out.write(rmqraft_send_result::from(&r));
        Ok(())
    })
}

/// Starts a send on the leader and returns; the message is copied first. On RMQRAFT_OK
/// `cb` runs exactly once later (see `rmqraft_send_cb` for the thread); on any other
/// result it never runs and nothing was stored. A send that must auto-create its topic
/// waits for that (up to 5 s) before returning.
#[no_mangle]
pub unsafe extern "C" fn rmqraft_message_send_async(
    g: *mut rmqraft_group,
    m: *const rmqraft_message,
    cb: rmqraft_send_cb,
    userdata: *mut c_void,
) -> rmqraft_result {
    boundary("rmqraft_message_send_async", || {
        let shared = handle_ref(g)?;
        let message = message_arg(m)?;
        let cb = cb.ok_or_else(|| invalid("cb is NULL"))?;
        let b = broker(shared, CATCH_UP_MAX)?;
        shared.send_async(cb, UserData(userdata), |done| b.send_async(&message, done))
    })
}

/// Pulls committed messages of one queue (any member) from `offset`: at most
/// `max_messages` (1..1024; more is read as 1024) that match `tag_expression` (NULL, ""
/// or "*" for all, else "TagA || TagB"), in queue order, each handed to `cb` on the
/// calling thread. `*next_offset_out`: where the next pull starts (one past the last
/// message scanned, or past the one `cb` stopped at). Nothing new: RMQRAFT_OK without a
/// callback. An offset past the end or below the first retained one: RMQRAFT_OK, no
/// callback, `*next_offset_out` = the queue's max or min offset. Does not wait for new
/// messages. RMQRAFT_ERR_NO_TOPIC for an unknown topic, RMQRAFT_ERR_INVALID_ARGUMENT for
/// a queue id that does not exist, RMQRAFT_ERR_NO_PERMISSION when perm lacks read.
#[no_mangle]
pub unsafe extern "C" fn rmqraft_queue_pull(
    g: *const rmqraft_group,
    topic: *const c_char,
    queue_id: i32,
    offset: u64,
    max_messages: u32,
    tag_expression: *const c_char,
    cb: rmqraft_message_cb,
    userdata: *mut c_void,
    next_offset_out: *mut u64,
) -> rmqraft_result {
    boundary("rmqraft_queue_pull", || {
        let shared = handle_ref(g)?;
        let topic = str_arg(topic, "topic")?;
        let tags = opt_str(tag_expression, "tag_expression")?;
        let cb = message_cb_arg(cb)?;
        let out = out_arg(next_offset_out, "next_offset_out")?;
        if max_messages == 0 {
            return Err(invalid("max_messages is 0"));
        }
        let b = broker(shared, CATCH_UP_MAX)?;
        let r = b.pull(topic, queue_id, offset, max_messages, tags, Duration::ZERO)?;
        let mut next = r.next_offset;
        for m in &r.messages {
            if deliver(cb, UserData(userdata), m) {
                next = m.queue_offset() + 1;
                break;
            }
        }
        out.write(next);
        Ok(())
    })
}

/// The min and max offsets of one queue (any member); max is the next offset to be
/// written (0 and 0 for a queue that never had a message).
#[no_mangle]
pub unsafe extern "C" fn rmqraft_queue_offsets(
    g: *const rmqraft_group,
    topic: *const c_char,
    queue_id: i32,
    min_out: *mut u64,
    max_out: *mut u64,
) -> rmqraft_result {
    boundary("rmqraft_queue_offsets", || {
        let shared = handle_ref(g)?;
        let topic = str_arg(topic, "topic")?;
        let min_out = out_arg(min_out, "min_out")?;
        let max_out = out_arg(max_out, "max_out")?;
        let (min, max) = broker(shared, CATCH_UP_MAX)?.queue_offsets(topic, queue_id)?;
        min_out.write(min);
        max_out.write(max);
        Ok(())
    })
}

/// Messages of `topic` with `key` among their KEYS (as mqadmin queryMsgByKey), stored in
/// `[begin_ms, end_ms]` (store time, 0 = open), newest first, at most `max_messages`
/// (nonzero), each handed to `cb` on the calling thread until it returns nonzero. Any
/// member. None found: RMQRAFT_OK without a callback.
#[no_mangle]
pub unsafe extern "C" fn rmqraft_message_query_by_key(
    g: *const rmqraft_group,
    topic: *const c_char,
    key: *const c_char,
    max_messages: u32,
    begin_ms: i64,
    end_ms: i64,
    cb: rmqraft_message_cb,
    userdata: *mut c_void,
) -> rmqraft_result {
    boundary("rmqraft_message_query_by_key", || {
        let shared = handle_ref(g)?;
        let topic = str_arg(topic, "topic")?;
        let key = str_arg(key, "key")?;
        let cb = message_cb_arg(cb)?;
        if max_messages == 0 {
            return Err(invalid("max_messages is 0"));
        }
        let b = broker(shared, CATCH_UP_MAX)?;
        for m in b.query_by_key(topic, key, max_messages, begin_ms, end_ms)? {
            if deliver(cb, UserData(userdata), &m) {
                break;
            }
        }
        Ok(())
    })
}

/// The message with id `msg_id` (as mqadmin queryMsgById), handed to `cb` once on the
/// calling thread: an offset msg id naming this group's store host and a record at that
/// offset, or else a UNIQ_KEY (any topic); both forms are tried in that order. Any
/// member. RMQRAFT_ERR_NOT_FOUND when neither names a message here.
#[no_mangle]
pub unsafe extern "C" fn rmqraft_message_view_by_id(
    g: *const rmqraft_group,
    msg_id: *const c_char,
    cb: rmqraft_message_cb,
    userdata: *mut c_void,
) -> rmqraft_result {
    boundary("rmqraft_message_view_by_id", || {
        let shared = handle_ref(g)?;
        let msg_id = str_arg(msg_id, "msg_id")?;
        let cb = message_cb_arg(cb)?;
        let view = broker(shared, CATCH_UP_MAX)?.view_by_id(msg_id)?;
        deliver(cb, UserData(userdata), &view);
        Ok(())
    })
}

/// Commits `consumer_group`'s next offset to consume in one queue (replicated; on the
/// leader). Commits are coalesced (at most one entry per consumer group per
/// rmqraftOffsetCommitIntervalMs); a nonzero `timeout_ms` waits until this commit is
/// committed and applied, 0 returns once it is queued. RMQRAFT_ERR_NO_TOPIC for an unknown
/// topic, RMQRAFT_ERR_INVALID_ARGUMENT for a queue that does not exist.
#[no_mangle]
pub unsafe extern "C" fn rmqraft_consumer_offset_commit(
    g: *mut rmqraft_group,
    consumer_group: *const c_char,
    topic: *const c_char,
    queue_id: i32,
    offset: u64,
    timeout_ms: u32,
) -> rmqraft_result {
    boundary("rmqraft_consumer_offset_commit", || {
        let shared = handle_ref(g)?;
        let consumer_group = str_arg(consumer_group, "consumer_group")?;
        let topic = str_arg(topic, "topic")?;
        let b = broker(shared, ms(timeout_ms))?;
        b.consumer_offset_commit(consumer_group, topic, queue_id, offset, ms(timeout_ms))
    })
}

/// The committed next offset of `consumer_group` in one queue (any member; on the leader
/// a commit still being replicated is included): `*offset_out` = -1 when it has none.
#[no_mangle]
pub unsafe extern "C" fn rmqraft_consumer_offset_fetch(
    g: *const rmqraft_group,
    consumer_group: *const c_char,
    topic: *const c_char,
    queue_id: i32,
    offset_out: *mut i64,
) -> rmqraft_result {
    boundary("rmqraft_consumer_offset_fetch", || {
        let shared = handle_ref(g)?;
        let consumer_group = str_arg(consumer_group, "consumer_group")?;
        let topic = str_arg(topic, "topic")?;
        let out = out_arg(offset_out, "offset_out")?;
        let b = broker(shared, CATCH_UP_MAX)?;
        let offset = b.consumer_offset_fetch(consumer_group, topic, queue_id)?;
        out.write(offset.map_or(-1, |o| i64::try_from(o).unwrap_or(i64::MAX)));
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::parse_properties;

    #[test]
    fn properties_are_name_value_lines() {
        let p = parse_properties("a=1\n\nb=x=y\r\n").unwrap();
        assert_eq!(
            p,
            vec![("a".into(), "1".into()), ("b".into(), "x=y".into())]
        );
        assert!(parse_properties("novalue\n")
            .unwrap_err()
            .message()
            .contains("line 1"));
        assert!(parse_properties("=v\n").is_err());
    }
}
