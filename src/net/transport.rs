//! The engine's TCP transport.
//!
//! CONTRACT (the group layer relies on exactly this):
//! - One `Transport` per engine. `listen(addr)` binds once per address (a second call for
//!   the same address is a no-op), so several groups and several members share a port.
//! - Inbound frames are routed by `(group, to)` to the handler registered for them, on the
//!   connection's reader thread; a handler must not block for long.
//! - `send(addr, frame)` never blocks: it queues the frame on the link to `addr` (bounded;
//!   when full or down the frame is dropped and `false` returned). Links connect lazily
//!   and reconnect with backoff.
//! - Client connections: frames from clients arrive with a `Responder` to answer on.
//! - `close()` stops and joins every thread it started.

#![allow(unused_variables, dead_code)]

use super::msg::Frame;
use crate::error::Result;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Answers one client request on the connection it came from. Cheap to clone and send.
#[derive(Clone)]
pub struct Responder {}

impl Responder {
    pub fn respond(&self, frame: Frame) {
        todo!()
    }
}

/// Called for every inbound frame addressed to a registered (group, member).
pub type Handler = Arc<dyn Fn(Frame, Option<Responder>) + Send + Sync>;

pub struct Transport {}

impl Transport {
    pub fn new(cluster_name: &str, frame_size_bytes_max: u32) -> Transport {
        todo!()
    }
    pub fn listen(&self, addr: SocketAddr) -> Result<()> {
        todo!()
    }
    pub fn register(&self, group: &str, member: u8, handler: Handler) -> Result<()> {
        todo!()
    }
    pub fn unregister(&self, group: &str, member: u8) {
        todo!()
    }
    pub fn send(&self, addr: SocketAddr, frame: Frame) -> bool {
        todo!()
    }
    pub fn close(&self) {
        todo!()
    }
}

/// A blocking client of one member, for tools and the `--remote` benchmark.
pub struct Client {}

impl Client {
    pub fn connect(addr: SocketAddr, cluster_name: &str, timeout: Duration) -> Result<Client> {
        todo!()
    }
    /// Sends a client request frame and waits for its answer.
    pub fn call(&mut self, frame: Frame, timeout: Duration) -> Result<Frame> {
        todo!()
    }
}
