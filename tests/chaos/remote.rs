//! A blocking client of every member of one group, over the members' client protocol
//! (ClientAppend / ClientRead / ClientStatus answered by ClientResp).

use rmqraft::net::{Client, ClientResponse, Frame, Message, CLIENT_PEER};
use rmqraft::{EntryMeta, ErrorKind, GroupStatus, Role};
use std::net::SocketAddr;
use std::time::Duration;

pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
pub const STATUS_TIMEOUT: Duration = Duration::from_millis(500);
/// Above the members' maxWaitAckTimeMs (5 s), so the leader's own verdict comes first.
pub const APPEND_TIMEOUT: Duration = Duration::from_secs(8);
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub enum CallError {
    /// No usable answer: cannot connect, connection lost, no answer in time.
    Unreachable(String),
    /// The member answered with an error code.
    Refused {
        kind: Option<ErrorKind>,
        message: String,
        leader_peer: i32,
    },
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unreachable(why) => write!(f, "unreachable: {why}"),
            CallError::Refused { kind, message, .. } => write!(f, "{kind:?}: {message}"),
        }
    }
}

/// One connection per member, opened lazily and dropped after any transport error.
pub struct Remote {
    pub cluster: String,
    pub group: String,
    pub addrs: Vec<SocketAddr>,
    clients: Vec<Option<Client>>,
    next_request_id: u64,
}

impl Remote {
    pub fn new(cluster: &str, group: &str, addrs: &[SocketAddr]) -> Remote {
        Remote {
            cluster: cluster.to_string(),
            group: group.to_string(),
            addrs: addrs.to_vec(),
            clients: addrs.iter().map(|_| None).collect(),
            next_request_id: 1,
        }
    }

    pub fn members(&self) -> usize {
        self.addrs.len()
    }

    pub fn call(
        &mut self,
        peer: usize,
        message: Message,
        timeout: Duration,
    ) -> Result<ClientResponse, CallError> {
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        let result = self.call_once(peer, request_id, message, timeout);
        if matches!(result, Err(CallError::Unreachable(_))) {
            self.clients[peer] = None;
        }
        result
    }

    fn call_once(
        &mut self,
        peer: usize,
        request_id: u64,
        message: Message,
        timeout: Duration,
    ) -> Result<ClientResponse, CallError> {
        if self.clients[peer].is_none() {
            let client = Client::connect(self.addrs[peer], &self.cluster, CONNECT_TIMEOUT)
                .map_err(|e| CallError::Unreachable(e.to_string()))?;
            self.clients[peer] = Some(client);
        }
        let client = self.clients[peer].as_mut().expect("connected above");
        let frame = Frame {
            group: self.group.clone(),
            from: CLIENT_PEER,
            to: peer as u8,
            request_id,
            message,
        };
        let answer = client
            .call(frame, timeout)
            .map_err(|e| CallError::Unreachable(e.to_string()))?;
        let Message::ClientResp(response) = answer.message else {
            return Err(CallError::Unreachable(
                "answered with something other than a client response".into(),
            ));
        };
        if response.result != 0 {
            return Err(CallError::Refused {
                kind: ErrorKind::from_code(response.result),
                message: response.message,
                leader_peer: response.leader_peer,
            });
        }
        Ok(response)
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
