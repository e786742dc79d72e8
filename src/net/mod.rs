//! Frames, handshake and the TCP transport. Protocol: docs/PROTOCOL.md.

pub mod frame;
pub mod handshake;
mod log_limit;
pub mod members;
pub mod msg;
mod sock;
pub mod transport;

pub use members::{CallError, MembersClient};
pub use msg::*;
pub use transport::{Client, Handler, NetLimits, Responder, Transport};
