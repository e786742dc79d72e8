//! The messages peers and clients exchange. Encoding lives in `frame.rs`; this file only
//! names what is said. Peer messages are one-way (a response is just another message sent
//! back over the sender's own link); client messages are answered on their connection.

use crate::types::{Entry, EntryMeta, GroupStatus};
use bytes::Bytes;

/// `from`/`to` value for a client (not a member).
pub const CLIENT_PEER: u8 = u8::MAX;

/// One frame: a message for one member of one group.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// `dLegerGroup` of the addressed member.
    pub group: String,
    /// Sender's position in `dLegerPeers`, or [`CLIENT_PEER`].
    pub from: u8,
    /// Addressed member's position in `dLegerPeers`.
    pub to: u8,
    /// Chosen by the sender; echoed in the answer (push responses, client responses).
    pub request_id: u64,
    pub message: Message,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Vote(VoteRequest),
    VoteResp(VoteResponse),
    /// Entries (possibly none: a heartbeat) from the leader.
    Push(PushRequest),
    PushResp(PushResponse),
    /// Leadership transfer: the receiver starts an election at once, skipping pre-vote.
    TimeoutNow {
        term: u64,
    },
    ClientAppend {
        data: Bytes,
    },
    /// An exactly-once append (`Group::append_idempotent`): a resent (producer id,
    /// sequence) appends nothing and is answered with the original entry's meta.
    ClientAppendIdempotent {
        producer_id: u64,
        sequence: u64,
        data: Bytes,
    },
    ClientRead {
        index: u64,
    },
    ClientStatus,
    ClientTransfer {
        to_peer: String,
        timeout_ms: u32,
    },
    /// Answer to any client request. `result` is 0 or an ABI result code; `message` the detail.
    ClientResp(ClientResponse),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoteRequest {
    /// The term the candidate asks for (for a pre-vote: the term it would take).
    pub term: u64,
    pub last_index: u64,
    pub last_term: u64,
    pub pre_vote: bool,
    /// Set on the election that follows `TimeoutNow`: voters ignore their leader lease.
    pub transfer: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoteResponse {
    /// The voter's term (for a pre-vote: the requested term when granted).
    pub term: u64,
    pub granted: bool,
    pub pre_vote: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PushRequest {
    pub term: u64,
    /// Index and term of the entry just before `entries` (log matching).
    pub prev_index: u64,
    pub prev_term: u64,
    pub commit_index: u64,
    /// Contiguous, starting at `prev_index + 1`.
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushResponse {
    pub term: u64,
    pub success: bool,
    /// On success: the last index known to match the leader's log.
    pub match_index: u64,
    /// Highest index durable on the follower's disk.
    pub flushed_index: u64,
    /// On reject: where the leader should probe next (fast backup).
    pub hint_index: u64,
    /// The follower's last index.
    pub last_index: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClientResponse {
    pub result: i32,
    pub message: String,
    /// Position of the leader this member knows, -1 if none.
    pub leader_peer: i32,
    pub meta: EntryMeta,
    /// The entry body for `ClientRead`.
    pub data: Bytes,
    /// Filled for `ClientStatus`.
    pub status: Option<StatusReport>,
}

/// What `ClientStatus` reports: the member's status plus what `cluster-list` shows.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusReport {
    pub status: GroupStatus,
    /// Appends per second accepted by this member over the last few seconds.
    pub append_tps: f64,
    /// Pid of the process hosting the member.
    pub pid: u32,
}
