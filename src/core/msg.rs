//! What the members of a group say to each other about consensus. The core decides on
//! these alone; `net` wraps them in frames (`net::msg::Message`) and encodes them.

use crate::types::Entry;

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
