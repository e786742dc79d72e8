//! Frames, handshake and the TCP transport. Protocol: docs/PROTOCOL.md.

pub mod frame;
pub mod msg;
pub mod transport;

pub use msg::*;
pub use transport::{Client, Handler, Responder, Transport};
