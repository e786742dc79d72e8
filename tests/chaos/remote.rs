//! A blocking client of every member of one group, over the members' client protocol
//! (ClientAppend / ClientRead / ClientStatus answered by ClientResp).

pub use rmqraft::net::CallError;
use rmqraft::net::{ClientResponse, MembersClient, Message};
use rmqraft::{EntryMeta, GroupStatus, Role};
use std::net::SocketAddr;
use std::time::Duration;

pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
pub const STATUS_TIMEOUT: Duration = Duration::from_millis(500);
/// Above the members' maxWaitAckTimeMs (5 s), so the leader's own verdict comes first.
pub const APPEND_TIMEOUT: Duration = Duration::from_secs(8);
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// The members of one group, over the library's per-member client.
pub struct Remote {
    members: MembersClient,
}

impl Remote {
    pub fn new(cluster: &str, group: &str, addrs: &[SocketAddr]) -> Remote {
        Remote {
            members: MembersClient::new(cluster, group, addrs.to_vec(), None, CONNECT_TIMEOUT),
        }
    }

    pub fn members(&self) -> usize {
        self.members.members()
    }

    pub fn call(
        &mut self,
        peer: usize,
        message: Message,
        timeout: Duration,
    ) -> Result<ClientResponse, CallError> {
        self.members.call(peer, message, timeout)
    }

    pub fn status(&mut self, peer: usize) -> Option<GroupStatus> {
        self.call(peer, Message::ClientStatus, STATUS_TIMEOUT)
            .ok()?
            .status
            .map(|s| s.status)
    }

    pub fn statuses(&mut self) -> Vec<Option<GroupStatus>> {
        (0..self.members()).map(|p| self.status(p)).collect()
    }

    /// The member that reports itself leader in the highest term, if any answers so.
    pub fn find_leader(&mut self) -> Option<usize> {
        self.statuses()
            .into_iter()
            .enumerate()
            .filter_map(|(p, s)| s.filter(|s| s.role == Role::Leader).map(|s| (s.term, p)))
            .max()
            .map(|(_, p)| p)
    }

    pub fn append(&mut self, peer: usize, data: &[u8]) -> Result<EntryMeta, CallError> {
        let message = Message::ClientAppend {
            data: bytes::Bytes::copy_from_slice(data),
        };
        self.call(peer, message, APPEND_TIMEOUT).map(|r| r.meta)
    }

    pub fn read(&mut self, peer: usize, index: u64) -> Result<(Vec<u8>, EntryMeta), String> {
        self.call(peer, Message::ClientRead { index }, READ_TIMEOUT)
            .map(|r| (r.data.to_vec(), r.meta))
            .map_err(|e| e.to_string())
    }
}
