//! Talking to the members of a group over TCP: status, leader discovery, appends that
//! survive a failover, reads and leadership transfer.

use crate::target::Target;
pub use rmqraft::net::CallError;
use rmqraft::net::{ClientResponse, MembersClient, Message, StatusReport};
use rmqraft::types::EntryMeta;
use rmqraft::{ErrorKind, Role};
use std::time::{Duration, Instant};

/// How long connecting to one member (TCP and handshake) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
/// How long a status, read or transfer answer may take beyond the operation itself.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(2000);
/// How long an append answer may take: above the members' default maxWaitAckTimeMs (5 s),
/// so the leader's own verdict usually arrives first.
pub const APPEND_CALL_TIMEOUT: Duration = Duration::from_millis(10_000);

/// Told why no leader is found yet (see `Remote::on_wait`).
pub type WaitNotice = Box<dyn FnMut(&str)>;

/// A group's members, with the target they were named by.
pub struct Remote {
    pub target: Target,
    members: MembersClient,
    /// Told why no leader is found yet, at every look while `find_leader` waits.
    pub on_wait: Option<WaitNotice>,
}

impl Remote {
    pub fn new(target: Target) -> Remote {
        let members = MembersClient::new(
            &target.cluster,
            &target.group,
            target.peers.iter().map(|p| p.addr).collect(),
            target.secret.clone(),
            CONNECT_TIMEOUT,
        );
        Remote {
            target,
            members,
            on_wait: None,
        }
    }

    pub fn peer_name(&self, peer: usize) -> String {
        let p = &self.target.peers[peer];
        format!("{} ({})", p.id, p.addr)
    }

    /// Sends one client request to member `peer` and returns its answer.
    pub fn call(
        &mut self,
        peer: usize,
        message: Message,
        timeout: Duration,
    ) -> Result<ClientResponse, CallError> {
        self.members.call(peer, message, timeout)
    }

    pub fn status(&mut self, peer: usize) -> Result<StatusReport, CallError> {
        let response = self.call(peer, Message::ClientStatus, CALL_TIMEOUT)?;
        response.status.ok_or_else(|| {
            CallError::Unreachable(format!(
                "{}: status answer without a status",
                self.peer_name(peer)
            ))
        })
    }

    /// The member that leads now: the highest-term member reporting itself LEADER.
    fn leader_now(&mut self) -> Result<usize, String> {
        let reports = status_all(&self.target);
        let mut best: Option<(u64, usize)> = None;
        let mut reasons = Vec::new();
        for (peer, report) in reports.iter().enumerate() {
            match report {
                Ok(r) if r.status.role == Role::Leader => match best {
                    Some((term, _)) if term >= r.status.term => {}
                    _ => best = Some((r.status.term, peer)),
                },
                Ok(r) => reasons.push(format!(
                    "{} is {} in term {}",
                    self.target.peers[peer].id,
                    r.status.role.name(),
                    r.status.term
                )),
                Err(e) => reasons.push(format!(
                    "{} is unreachable ({})",
                    self.target.peers[peer].id, e
                )),
            }
        }
        best.map(|(_, peer)| peer).ok_or_else(|| reasons.join("; "))
    }

    /// Waits until some member leads, at most until `deadline`.
    pub fn find_leader(&mut self, deadline: Instant) -> Result<usize, String> {
        let mut backoff = Backoff::new();
        loop {
            match self.leader_now() {
                Ok(peer) => return Ok(peer),
                Err(why) => {
                    if Instant::now() >= deadline {
                        return Err(format!("{} has no leader: {why}", self.target.group));
                    }
                    if let Some(tell) = self.on_wait.as_mut() {
                        tell(&why);
                    }
                    backoff.sleep_until(deadline);
                }
            }
        }
    }
}

/// Sleeps 20 ms, then twice as long each time up to 500 ms, never past a deadline.
pub struct Backoff {
    pause: Duration,
}

impl Backoff {
    pub fn new() -> Backoff {
        Backoff {
            pause: Duration::from_millis(20),
        }
    }

    pub fn sleep_until(&mut self, deadline: Instant) {
        let left = deadline.saturating_duration_since(Instant::now());
        std::thread::sleep(self.pause.min(left));
        self.pause = (self.pause * 2).min(Duration::from_millis(500));
    }
}

/// Asks every member for its status at once (one thread and connection each).
pub fn status_all(target: &Target) -> Vec<Result<StatusReport, CallError>> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..target.peers.len())
            .map(|peer| {
                scope.spawn(move || {
                    let mut remote = Remote::new(target.clone());
                    remote.status(peer)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(CallError::Unreachable("status thread failed".to_string()))
                })
            })
            .collect()
    })
}

/// Counts of what an append run went through.
#[derive(Debug, Default, Clone, Copy)]
pub struct AppendStats {
    /// NOT_LEADER answers followed to another member.
    pub redirects: u64,
    /// Attempts repeated after a lost connection, a timeout or a busy leader.
    pub retries: u64,
}

/// Appends one entry on the leader, following redirects and waiting through a failover
/// for at most `retry_window`.
pub struct Appender {
    pub remote: Remote,
    leader: Option<usize>,
    pub stats: AppendStats,
}

impl Appender {
    pub fn new(remote: Remote) -> Appender {
        Appender {
            remote,
            leader: None,
            stats: AppendStats::default(),
        }
    }

    /// Appends exactly once per (`producer_id`, `sequence`): a retry after a lost answer
    /// or a failover is answered with the original entry, never appended twice.
    pub fn append_idempotent(
        &mut self,
        producer_id: u64,
        sequence: u64,
        data: &[u8],
        retry_window: Duration,
    ) -> Result<EntryMeta, String> {
        let data = bytes::Bytes::copy_from_slice(data);
        self.send_until_appended(
            || Message::ClientAppendIdempotent {
                producer_id,
                sequence,
                data: data.clone(),
            },
            retry_window,
        )
    }

    fn send_until_appended(
        &mut self,
        make: impl Fn() -> Message,
        retry_window: Duration,
    ) -> Result<EntryMeta, String> {
        let deadline = Instant::now() + retry_window;
        let mut backoff = Backoff::new();
        let mut last_error: String;
        loop {
            let leader = match self.leader {
                Some(l) => l,
                None => {
                    let l = self.remote.find_leader(deadline)?;
                    self.leader = Some(l);
                    l
                }
            };
            match self.remote.call(leader, make(), APPEND_CALL_TIMEOUT) {
                Ok(response) => return Ok(response.meta),
                Err(CallError::Refused {
                    kind: Some(ErrorKind::NotLeader),
                    message,
                    leader_peer,
                }) => {
                    last_error = message;
                    let n = self.remote.target.peers.len() as i32;
                    if (0..n).contains(&leader_peer) && leader_peer as usize != leader {
                        self.stats.redirects += 1;
                        self.leader = Some(leader_peer as usize);
                        continue;
                    }
                    self.leader = None;
                    self.stats.retries += 1;
                }
                Err(e) => {
                    let retryable = match e.kind() {
                        None => true,
                        Some(k) => matches!(
                            k,
                            ErrorKind::Timeout
                                | ErrorKind::Busy
                                | ErrorKind::Closed
                                | ErrorKind::Io
                                | ErrorKind::OutcomeUnknown
                        ),
                    };
                    let why = format!("{}: {}", self.remote.peer_name(leader), e);
                    if !retryable {
                        return Err(why);
                    }
                    last_error = why;
                    self.leader = None;
                    self.stats.retries += 1;
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "not appended within {} ms; last error: {last_error}",
                    retry_window.as_millis()
                ));
            }
            backoff.sleep_until(deadline);
        }
    }
}
