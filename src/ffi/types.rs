//! The C types of the ABI: result codes, roles, plain structs, callback types and the
//! opaque handles. Names are the C names, hence the lower-case types.
#![allow(non_camel_case_types)]

use crate::broker::SendResult;
use crate::error::ErrorKind;
use crate::types::{EntryMeta, GroupStatus, Role};
use std::ffi::{c_char, c_int, c_void};

/// The outcome of a fallible call. The numbers never change; retired numbers are never
/// reused. `rmqraft_result_name()` gives the constant's name, `rmqraft_last_error()` the
/// detail of this thread's last failure.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum rmqraft_result {
    /// Success: the call's outputs are written.
    RMQRAFT_OK = 0,
    /// A NULL pointer, a string that is not UTF-8, an empty entry, or another argument
    /// the call cannot accept.
    RMQRAFT_ERR_INVALID_ARGUMENT = 1,
    /// The properties were rejected; the message names the key and why.
    RMQRAFT_ERR_CONFIG = 2,
    /// This member is not the leader; `rmqraft_group_status()` tells who is.
    RMQRAFT_ERR_NOT_LEADER = 3,
    /// Not committed within the timeout; the outcome is unknown.
    RMQRAFT_ERR_TIMEOUT = 4,
    /// The disk or the network failed (including a listen address already in use).
    RMQRAFT_ERR_IO = 5,
    /// Stored data failed its checksum and could not be repaired.
    RMQRAFT_ERR_CORRUPT = 6,
    /// The index is not committed yet, or below the first retained index.
    RMQRAFT_ERR_NOT_FOUND = 7,
    /// The handle is closing or closed.
    RMQRAFT_ERR_CLOSED = 8,
    /// Too many appends in flight; retry later.
    RMQRAFT_ERR_BUSY = 9,
    /// The entry is larger than the group's maximum entry size (`maxEntrySize`).
    RMQRAFT_ERR_TOO_LARGE = 10,
    /// The caller's buffer is too small; `*len_out` holds the size needed.
    RMQRAFT_ERR_BUFFER_TOO_SMALL = 11,
    /// This (group, self id) or its store directory is already open.
    RMQRAFT_ERR_EXISTS = 12,
    /// An internal bug was caught at the boundary; the handle may be unusable.
    RMQRAFT_ERR_PANIC = 13,
    /// The store refused the write for lack of space.
    RMQRAFT_ERR_DISK_FULL = 14,
    /// Idempotent append: `sequence` skips ahead of the producer's next one.
    RMQRAFT_ERR_OUT_OF_ORDER = 15,
    /// The topic does not exist on this group (and is not auto-created).
    RMQRAFT_ERR_NO_TOPIC = 16,
    /// The topic's perm forbids this write or read.
    RMQRAFT_ERR_NO_PERMISSION = 17,
    /// An accepted append or send may or may not commit (leadership changed or the
    /// member failed before it was decided): read the log, or resend idempotently.
    RMQRAFT_ERR_OUTCOME_UNKNOWN = 18,
}

impl From<ErrorKind> for rmqraft_result {
    fn from(kind: ErrorKind) -> rmqraft_result {
        match kind {
            ErrorKind::InvalidArgument => rmqraft_result::RMQRAFT_ERR_INVALID_ARGUMENT,
            ErrorKind::Config => rmqraft_result::RMQRAFT_ERR_CONFIG,
            ErrorKind::NotLeader => rmqraft_result::RMQRAFT_ERR_NOT_LEADER,
            ErrorKind::Timeout => rmqraft_result::RMQRAFT_ERR_TIMEOUT,
            ErrorKind::Io => rmqraft_result::RMQRAFT_ERR_IO,
            ErrorKind::Corrupt => rmqraft_result::RMQRAFT_ERR_CORRUPT,
            ErrorKind::NotFound => rmqraft_result::RMQRAFT_ERR_NOT_FOUND,
            ErrorKind::Closed => rmqraft_result::RMQRAFT_ERR_CLOSED,
            ErrorKind::Busy => rmqraft_result::RMQRAFT_ERR_BUSY,
            ErrorKind::TooLarge => rmqraft_result::RMQRAFT_ERR_TOO_LARGE,
            ErrorKind::BufferTooSmall => rmqraft_result::RMQRAFT_ERR_BUFFER_TOO_SMALL,
            ErrorKind::Exists => rmqraft_result::RMQRAFT_ERR_EXISTS,
            ErrorKind::Panic => rmqraft_result::RMQRAFT_ERR_PANIC,
            ErrorKind::DiskFull => rmqraft_result::RMQRAFT_ERR_DISK_FULL,
            ErrorKind::OutOfOrder => rmqraft_result::RMQRAFT_ERR_OUT_OF_ORDER,
            ErrorKind::NoTopic => rmqraft_result::RMQRAFT_ERR_NO_TOPIC,
            ErrorKind::NoPermission => rmqraft_result::RMQRAFT_ERR_NO_PERMISSION,
            ErrorKind::OutcomeUnknown => rmqraft_result::RMQRAFT_ERR_OUTCOME_UNKNOWN,
        }
    }
}

/// A result code as C passes it in: any 32-bit value, so that a stray number is a
/// defined input rather than an invalid Rust enum. It has the layout of `rmqraft_result`
/// and the header spells it so (see `cbindgen.toml`).
///
/// cbindgen:no-export
#[repr(transparent)]
#[derive(Debug, Clone, Copy)]
pub struct rmqraft_result_arg(pub u32);

/// A member's role. Leader is RocketMQ's master, follower its slave.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum rmqraft_role {
    /// No leader is known to this member: it campaigns, or has not yet heard from one (as
    /// every member at open).
    RMQRAFT_ROLE_CANDIDATE = 0,
    /// Accepts appends (master).
    RMQRAFT_ROLE_LEADER = 1,
    /// Replicates from the leader (slave).
    RMQRAFT_ROLE_FOLLOWER = 2,
}

impl From<Role> for rmqraft_role {
    fn from(role: Role) -> rmqraft_role {
        match role {
            Role::Candidate => rmqraft_role::RMQRAFT_ROLE_CANDIDATE,
            Role::Leader => rmqraft_role::RMQRAFT_ROLE_LEADER,
            Role::Follower => rmqraft_role::RMQRAFT_ROLE_FOLLOWER,
        }
    }
}

/// Where an entry sits in the group's log.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct rmqraft_entry_meta {
    /// The entry's index; indexes start at 1.
    pub index: u64,
    /// The term in which the entry was appended.
    pub term: u64,
    /// The entry's byte position in the log (the same on every member of the group).
    pub pos: u64,
}

impl From<EntryMeta> for rmqraft_entry_meta {
    fn from(meta: EntryMeta) -> rmqraft_entry_meta {
        rmqraft_entry_meta {
            index: meta.index,
            term: meta.term,
            pos: meta.pos,
        }
    }
}

/// A member's view of its group.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct rmqraft_group_state {
    /// This member's role.
    pub role: rmqraft_role,
    /// Position of dLegerSelfId in dLegerPeers (0-based).
    pub self_peer: i32,
    /// Position of the known leader in dLegerPeers, -1 when none is known.
    pub leader_peer: i32,
    /// The current term.
    pub term: u64,
    /// First retained entry; 0 when the log is empty.
    pub first_index: u64,
    /// Last entry in the local log; 0 when empty. Indexes start at 1.
    pub last_index: u64,
    /// Highest entry known committed.
    pub commit_index: u64,
    /// Highest entry durable on this member's disk.
    pub flushed_index: u64,
}

impl From<GroupStatus> for rmqraft_group_state {
    fn from(s: GroupStatus) -> rmqraft_group_state {
        rmqraft_group_state {
            role: s.role.into(),
            self_peer: s.self_peer,
            leader_peer: s.leader_peer,
            term: s.term,
            first_index: s.first_index,
            last_index: s.last_index,
            commit_index: s.commit_index,
            flushed_index: s.flushed_index,
        }
    }
}

/// Completes one `rmqraft_group_append_async()`; called exactly once per accepted append.
///
/// Runs on a library thread: the thread that completes appends on the leader (do not
/// block it: it completes every other append of the engine too), or, for an append still
/// pending when its group closes, on the thread calling `rmqraft_group_close()` or
/// `rmqraft_engine_close()`, before that call returns, with `RMQRAFT_ERR_OUTCOME_UNKNOWN` (the entry may still commit on the other members).
/// `meta` is never NULL: it holds the entry's place when `result` is `RMQRAFT_OK` and
/// zeros otherwise, and is valid only during the call.
pub type rmqraft_append_cb = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        result: rmqraft_result,
        meta: *const rmqraft_entry_meta,
    ),
>;

/// Told this member's role, the term and the leader's position in dLegerPeers (-1 when
/// unknown): once at once when set, then on every change.
///
/// Runs on the engine's role-notification thread (one library thread for every group of
/// the engine, in order per member; do not block it).
pub type rmqraft_role_cb = Option<
    unsafe extern "C" fn(userdata: *mut c_void, role: rmqraft_role, term: u64, leader_peer: i32),
>;

/// A message to send (`rmqraft_message_send()`, `rmqraft_message_send_async()`). Every
/// string and the body are copied before the call returns.
#[repr(C)]
pub struct rmqraft_message {
    /// Required; RocketMQ's topic rules (characters `[%|a-zA-Z0-9_-]`, at most 127 bytes
    /// for sends).
    pub topic: *const c_char,
    /// NULL or "" for none.
    pub tags: *const c_char,
    /// Space-separated keys, NULL or "" for none; each is indexed.
    pub keys: *const c_char,
    /// User properties as "name=value\n" lines; NULL or "" for none. A
    /// UNIQ_KEY line sets the message id; without one the library
    /// makes one.
    pub properties: *const c_char,
    /// `body_len` bytes.
    pub body: *const u8,
    /// 1 .. maxMessageSize (4 MiB by default).
    pub body_len: usize,
    /// -1: the library picks a write queue (round robin).
    pub queue_id: i32,
    /// Stored as is.
    pub flag: i32,
    /// 0 none; 1..N: the Nth of messageDelayLevel (stored as the DELAY property).
    pub delay_level: i32,
}

/// What a committed send tells.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct rmqraft_send_result {
    /// The UNIQ_KEY, NUL-terminated (32 hex characters from IPv4 hosts).
    pub msg_id: [c_char; 64],
    /// Store host + commitlog offset, RocketMQ's offsetMsgId, NUL-terminated (32 hex
    /// characters for an IPv4 store host, 56 for IPv6).
    pub offset_msg_id: [c_char; 64],
    pub queue_id: i32,
    /// For a delayed message: its place in the schedule queue.
    pub queue_offset: u64,
    /// The record's physical offset.
    pub commitlog_offset: u64,
}

/// Copies `s` into a NUL-terminated fixed buffer (truncated to 63 bytes; ids are ASCII
/// and at most 56 characters).
fn fixed_str(s: &str) -> [c_char; 64] {
    let mut out = [0 as c_char; 64];
    for (dst, src) in out.iter_mut().zip(s.bytes().take(63)) {
        *dst = src as c_char;
    }
    out
}

impl From<&SendResult> for rmqraft_send_result {
    fn from(r: &SendResult) -> rmqraft_send_result {
        rmqraft_send_result {
            msg_id: fixed_str(&r.msg_id),
            offset_msg_id: fixed_str(&r.offset_msg_id),
            queue_id: r.queue_id,
            queue_offset: r.queue_offset,
            commitlog_offset: r.commitlog_offset,
        }
    }
}

/// A stored message, as handed to an `rmqraft_message_cb`. Valid only during the
/// callback: copy what must outlive it. Strings are never NULL ("" when absent).
#[repr(C)]
pub struct rmqraft_message_view {
    pub topic: *const c_char,
    pub tags: *const c_char,
    pub keys: *const c_char,
    /// The UNIQ_KEY (the offset msg id when the record has none).
    pub msg_id: *const c_char,
    pub offset_msg_id: *const c_char,
    /// "name=value\n" lines, system properties included.
    pub properties: *const c_char,
    pub body: *const u8,
    pub body_len: usize,
    /// The stored record, RocketMQ commitlog format.
    pub record: *const u8,
    pub record_len: usize,
    pub queue_id: i32,
    pub queue_offset: u64,
    pub commitlog_offset: u64,
    pub born_timestamp_ms: i64,
    pub store_timestamp_ms: i64,
    pub flag: i32,
    pub reconsume_times: i32,
}

/// Told one message (`rmqraft_queue_pull()`, `rmqraft_message_query_by_key()`,
/// `rmqraft_message_view_by_id()`): runs on the calling thread, once per message, before
/// that call returns; `m` is valid only during the call. Return nonzero to stop after this
/// message (it counts as delivered). It may call other rmqraft_ functions except `_close`.
pub type rmqraft_message_cb =
    Option<unsafe extern "C" fn(userdata: *mut c_void, m: *const rmqraft_message_view) -> c_int>;

/// Completes one `rmqraft_message_send_async()`: runs exactly once, only if that call
/// returned RMQRAFT_OK, on a library thread (as `rmqraft_append_cb`: the thread that
/// completes appends on the leader, or, for a send still pending when its group closes,
/// the closing thread, with RMQRAFT_ERR_OUTCOME_UNKNOWN). `res` is NULL unless `r` is
/// RMQRAFT_OK, and valid only during the call.
pub type rmqraft_send_cb = Option<
    unsafe extern "C" fn(userdata: *mut c_void, r: rmqraft_result, res: *const rmqraft_send_result),
>;

/// Told one topic (`rmqraft_topic_list()`), on the calling thread; `topic` is valid only
/// during the call. Return nonzero to stop.
pub type rmqraft_topic_cb = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        topic: *const c_char,
        read_queues: i32,
        write_queues: i32,
        perm: i32,
    ) -> c_int,
>;

/// An engine: owns the listeners, the flusher and the groups opened on it. Create with
/// `rmqraft_engine_open()`, free with `rmqraft_engine_close()`.
pub struct rmqraft_engine {
    _private: [u8; 0],
}

/// One member (replica) of one replicated commitlog group. Create with
/// `rmqraft_group_open()`, free with `rmqraft_group_close()`.
pub struct rmqraft_group {
    _private: [u8; 0],
}
