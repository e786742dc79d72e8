//! rmqraft: embeddable replicated commitlog groups.
//!
//! A process opens one [`Engine`] (listeners, the flusher) and any number of [`Group`]
//! members on it. Each group elects a leader with Raft and replicates every append to its
//! peers over TCP. See `DESIGN.md`-style notes in README.md and docs/.

pub mod broker;
pub mod config;
pub mod config_hints;
pub mod core;
mod engine;
pub mod error;
pub mod ffi;
mod group;
mod idempotent;
pub mod metrics;
pub mod net;
pub mod remoting;
pub mod store;
pub mod types;
pub mod upgrade;
mod wait;

pub use config::{EngineConfig, FlushDiskType, GroupConfig};
pub use engine::{AppendCallback, Counters, Engine, Group, RoleListener, Stamp};
pub use error::{Error, ErrorKind, Result};
pub use metrics::MetricsSnapshot;
pub use types::{Entry, EntryKind, EntryMeta, EntryPlace, GroupStatus, Role};
