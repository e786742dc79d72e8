//! A blocking client of every member of one group, over the client protocol
//! (`ClientAppend` / `ClientRead` / `ClientStatus` / `ClientTransfer`, answered by
//! `ClientResp`): one connection per member, opened lazily and dropped after any transport
//! error. Tools (the `rmqraft` command, the `--remote` benchmark) and tests build on it.

use super::msg::{ClientResponse, Frame, Message, CLIENT_PEER};
use super::transport::Client;
use crate::config::Secret;
use crate::error::ErrorKind;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// Why a call to one member produced no usable answer.
#[derive(Debug)]
pub enum CallError {
    /// No answer: cannot connect, connection lost, no answer in time.
    Unreachable(String),
    /// The member answered with an error code.
    Refused {
        kind: Option<ErrorKind>,
        message: String,
        /// The leader the member knows, -1 if none.
        leader_peer: i32,
    },
}

impl CallError {
    /// The ABI error the member answered with, if it answered.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            CallError::Refused { kind, .. } => *kind,
            CallError::Unreachable(_) => None,
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Unreachable(why) => write!(f, "{why}"),
            CallError::Refused {
                kind: Some(k),
                message,
                ..
            } => write!(f, "{}: {message}", k.abi_name()),
            CallError::Refused {
                kind: None,
                message,
                ..
            } => write!(f, "error: {message}"),
        }
    }
}

/// One lazily opened connection per member of one group.
pub struct MembersClient {
    cluster: String,
    group: String,
    addrs: Vec<SocketAddr>,
    secret: Option<Secret>,
    connect_timeout: Duration,
    clients: Vec<Option<Client>>,
    next_request_id: u64,
}

impl MembersClient {
    /// `addrs` in `dLegerPeers` order; `secret` is the cluster's `dLegerSecret`, if any.
    pub fn new(
        cluster: &str,
        group: &str,
        addrs: Vec<SocketAddr>,
        secret: Option<Secret>,
        connect_timeout: Duration,
    ) -> MembersClient {
        MembersClient {
            cluster: cluster.to_string(),
            group: group.to_string(),
            clients: addrs.iter().map(|_| None).collect(),
            addrs,
            secret,
            connect_timeout,
            next_request_id: 1,
        }
    }

    pub fn members(&self) -> usize {
        self.addrs.len()
    }

    pub fn addr(&self, peer: usize) -> SocketAddr {
        self.addrs[peer]
    }

    /// Sends one client request to member `peer` and returns its answer; a transport error
    /// drops that member's connection (the next call reconnects).
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
        let addr = self.addrs[peer];
        if self.clients[peer].is_none() {
            let client = Client::connect_with(
                addr,
                &self.cluster,
                self.secret.as_ref(),
                self.connect_timeout,
            )
            .map_err(|e| CallError::Unreachable(e.message().to_string()))?;
            self.clients[peer] = Some(client);
        }
        let Some(client) = self.clients[peer].as_mut() else {
            return Err(CallError::Unreachable(format!("{addr}: not connected")));
        };
        let frame = Frame {
            group: self.group.clone(),
            from: CLIENT_PEER,
            to: peer as u8,
            request_id,
            message,
        };
        let answer = client
            .call(frame, timeout)
            .map_err(|e| CallError::Unreachable(e.message().to_string()))?;
        let Message::ClientResp(response) = answer.message else {
            return Err(CallError::Unreachable(format!(
                "{addr}: answered with something other than a client response"
            )));
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
}
