//! The public API: `Engine` and `Group`.
#![allow(unused_variables, dead_code)]

use crate::error::Result;
use crate::types::{EntryMeta, GroupStatus, Role};
use bytes::Bytes;
use std::time::Duration;

/// Completes an async append exactly once, on a library thread.
pub type AppendCallback = Box<dyn FnOnce(Result<EntryMeta>) + Send>;
/// Told the role, term and leader position (-1 if unknown) at once and on every change,
/// on a library thread.
pub type RoleListener = Box<dyn Fn(Role, u64, i32) + Send + Sync>;

pub struct Engine {}

impl Engine {
    /// Opens an engine. `properties` is broker.conf text (may be empty).
    pub fn open(properties: &str) -> Result<Engine> {
        todo!()
    }
    /// Opens one member of a group from broker.conf text.
    pub fn open_group(&self, properties: &str) -> Result<Group> {
        todo!()
    }
    /// Closes every group still open, stops and joins every thread. Idempotent.
    pub fn close(&self) {
        todo!()
    }
}

pub struct Group {}

impl Group {
    /// Appends on the leader and blocks until committed under the flush policy.
    pub fn append(&self, data: &[u8], timeout: Duration) -> Result<EntryMeta> {
        todo!()
    }
    /// Appends without blocking. On `Ok(())`, `callback` runs exactly once later with the
    /// final result; on `Err`, it never runs.
    pub fn append_async(&self, data: &[u8], callback: AppendCallback) -> Result<()> {
        todo!()
    }
    /// Reads a committed entry held by this member (leader or follower).
    pub fn read(&self, index: u64) -> Result<(Bytes, EntryMeta)> {
        todo!()
    }
    pub fn status(&self) -> Result<GroupStatus> {
        todo!()
    }
    /// Sets (or with `None` removes) the role listener; it is called once at once.
    pub fn set_role_listener(&self, listener: Option<RoleListener>) -> Result<()> {
        todo!()
    }
    /// On the leader: hands leadership to `peer_id` and waits until it leads.
    pub fn transfer_leadership(&self, peer_id: &str, timeout: Duration) -> Result<()> {
        todo!()
    }
    /// This member's id and the group name.
    pub fn self_id(&self) -> &str {
        todo!()
    }
    /// Stops the member's threads, flushes, releases the store lock. Idempotent; later
    /// calls on this handle return `Closed`.
    pub fn close(&self) {
        todo!()
    }
}
