//! Pure Raft decisions: no clock, thread or I/O inside. The group threads feed events
//! in and carry the [`Effects`] out; the simulator in `tests/sim.rs` does the same with
//! an in-memory network and disk.

pub mod msg;
pub mod old_log;
pub mod producers;
pub mod quorum;
pub mod raft;
pub mod waiters;

pub use quorum::{majority, quorum_index};
pub use raft::{
    conflict_hint, log_up_to_date, validate_push, CoreConfig, CoreMark, Effects, LogView, Outgoing,
    PeerState, Progress, PushOutcome, PushPlan, PushRefusal, RaftCore, VoteRefusal,
};
pub use waiters::{Decided, Waiters};
