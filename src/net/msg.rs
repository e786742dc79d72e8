//! The messages peers and clients exchange. Encoding lives in `frame.rs`; this file only
//! names what is said. The consensus messages belong to the core (`core::msg`) and are
//! wrapped here in frames. Peer messages are one-way (a response is just another message sent
//! back over the sender's own link); client messages are answered on their connection.

pub use crate::core::msg::{PushRequest, PushResponse, VoteRequest, VoteResponse};
use crate::types::{EntryMeta, GroupStatus};
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
    /// The sender's old-log digest (`crate::upgrade::OldLogDigest::encode`; empty: it has
    /// no old log), compared before any election (`crate::core::old_log`); the receiver
    /// answers with [`Message::OldLogResp`].
    OldLog {
        digest: Bytes,
    },
    /// The answer to [`Message::OldLog`]: the sender's own digest.
    OldLogResp {
        digest: Bytes,
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
