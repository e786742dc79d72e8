//! Plain data shared by every layer: entries, their metadata, roles and status.

use bytes::Bytes;

/// Where an entry sits: its index (from 1), the term it was appended in, and its byte
/// position in the member's log (the same on every member with the same segment size).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EntryMeta {
    pub index: u64,
    pub term: u64,
    pub pos: u64,
}

/// What an entry carries. The numbers are on disk and on the wire: never change them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum EntryKind {
    /// A host's payload.
    Normal = 1,
    /// Appended by a new leader at the start of its term; carries no payload.
    Noop = 2,
    /// One RocketMQ commitlog message record (`broker::record`), stamped by the leader.
    Message = 3,
    /// A broker state change: topic config, consumer offsets (`broker::admin`).
    BrokerAdmin = 4,
    /// An exactly-once append (`Group::append_idempotent`): producer id, sequence and
    /// the leader's clock (`core::producers`), then the host's payload.
    Idempotent = 5,
}

impl EntryKind {
    pub fn from_u8(v: u8) -> Option<EntryKind> {
        match v {
            1 => Some(EntryKind::Normal),
            2 => Some(EntryKind::Noop),
            3 => Some(EntryKind::Message),
            4 => Some(EntryKind::BrokerAdmin),
            5 => Some(EntryKind::Idempotent),
            _ => None,
        }
    }
}

/// Where an entry being appended goes, handed to the stamp of `Group::append_with`
/// before the entry is stored. Every member puts the entry at the same place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryPlace {
    pub index: u64,
    pub term: u64,
    /// Log position of the entry's record (its 48-byte header).
    pub pos: u64,
    /// Log position of the body: `pos + 48`. For a message, its commitlog offset.
    pub body_pos: u64,
}

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub index: u64,
    pub term: u64,
    pub kind: EntryKind,
    pub body: Bytes,
}

/// A member's role. The numbers are the C ABI's `rmqraft_role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Role {
    Candidate = 0,
    Leader = 1,
    Follower = 2,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Candidate => "CANDIDATE",
            Role::Leader => "LEADER",
            Role::Follower => "FOLLOWER",
        }
    }
    pub fn from_i32(v: i32) -> Option<Role> {
        match v {
            0 => Some(Role::Candidate),
            1 => Some(Role::Leader),
            2 => Some(Role::Follower),
            _ => None,
        }
    }
}

/// A member's view of its group, as `rmqraft_group_status` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupStatus {
    pub role: Role,
    /// Position of this member in `dLegerPeers`.
    pub self_peer: i32,
    /// Position of the known leader, -1 when none is known.
    pub leader_peer: i32,
    pub term: u64,
    /// First retained entry; 0 when the log is empty.
    pub first_index: u64,
    /// Last entry in the local log; 0 when empty.
    pub last_index: u64,
    /// Highest entry known committed.
    pub commit_index: u64,
    /// Highest entry durable on this member's disk.
    pub flushed_index: u64,
}
