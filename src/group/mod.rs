//! One group member and the threads that carry out its Raft decisions.
//!
//! Threads of a member (all joined by [`Member::close`]):
//! - `state`: timers, pre-vote and vote, step-down, checkpoints, retention (election thread);
//! - `dispatch-<peer>`: one EntryDispatcher per other member, pipelined pushes;
//! - `ack`: the QuorumAckChecker, which folds flushes into the commit index and
//!   completes waiting appends;
//! - `handler`: the EntryHandler, which applies pushes on a follower;
//! - `role`: calls the host's role listener, in order.
//!
//! Everything a decision reads lives in one [`MemberState`] under one mutex; the pure
//! [`RaftCore`] decides, the threads do the I/O outside the lock where they can.

use crate::config::{FlushDiskType, GroupConfig};
use crate::core::{CoreConfig, Effects, LogView, Outgoing, RaftCore, Waiters};
use crate::error::{Error, ErrorKind, Result};
use crate::net::msg::{
    ClientResponse, Frame, Message, PushRequest, StatusReport, VoteRequest, CLIENT_PEER,
};
use crate::net::{Responder, Transport};
use crate::store::{Flusher, HardState, LogStore, StoreOptions};
use crate::types::{Entry, EntryKind, EntryMeta, Role};
use bytes::Bytes;
use crossbeam_channel::{bounded, Receiver, Sender};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;

mod api;
mod loops;
use std::time::{Duration, Instant};

/// Completes an async append exactly once.
pub type AppendCallback = Box<dyn FnOnce(Result<EntryMeta>) + Send>;
/// Makes an entry's body from its place, under the member lock (`Group::append_with`).
pub type Stamp = Box<dyn FnOnce(crate::types::EntryPlace) -> Result<Bytes> + Send>;
/// Starts an exactly-once append for a client request (`crate::idempotent`).
pub(crate) type IdempotentHook =
    Box<dyn Fn(u64, u64, &[u8], AppendCallback) -> Result<()> + Send + Sync>;
/// Role listener: role, term, leader position (-1 if unknown).
pub type RoleListener = Box<dyn Fn(Role, u64, i32) + Send + Sync>;

/// Pushes queued for the EntryHandler before new ones are dropped (the leader resends).
const HANDLER_QUEUE_MAX: usize = 4096;
/// Vote traffic queued for the state thread.
const STATE_QUEUE_MAX: usize = 1024;
/// Role events queued for the listener thread.
const ROLE_QUEUE_MAX: usize = 1024;
/// How often the state thread looks at its timers.
const TICK_MS: u64 = 10;

/// What one of a member's threads runs.
type ThreadBody = Box<dyn FnOnce(&Arc<Member>) + Send>;

/// Counters of one member's hot path, for tuning (`Group::counters`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Client appends accepted.
    pub appends: u64,
    /// Pushes sent by the dispatchers (heartbeats included).
    pub pushes_sent: u64,
    /// Entries carried by those pushes.
    pub entries_pushed: u64,
    /// Pushes applied by the EntryHandler, and the lock rounds that applied them.
    pub pushes_applied: u64,
    pub handler_rounds: u64,
    /// Flush acknowledgements sent to the leader.
    pub flush_acks_sent: u64,
    /// Times the commit index moved.
    pub commit_advances: u64,
}

#[derive(Default)]
struct AtomicCounters {
    pushes_sent: AtomicU64,
    entries_pushed: AtomicU64,
    pushes_applied: AtomicU64,
    handler_rounds: AtomicU64,
    flush_acks_sent: AtomicU64,
    commit_advances: AtomicU64,
}

/// A client append waiting for its entry to commit.
struct Waiter {
    meta: EntryMeta,
    deadline: Instant,
    done: AppendCallback,
}

/// Everything the decisions read, under one mutex.
struct MemberState {
    core: RaftCore,
    store: LogStore,
    /// Appends made on this member and not yet completed, by (index, term); the core
    /// decides their outcome from the committed log.
    waiters: Waiters<Waiter>,
    /// Completed up to here (waiters at or below are gone).
    completed_index: u64,
    /// Commit index readers of committed entries were last woken for.
    commit_notified: u64,
    /// The last index a push from the current leader showed to match its log; what a
    /// flush acknowledgement may claim.
    follower_match: (u64, u64),
    /// Flushed index last reported to the leader.
    flush_reported: u64,
    /// The latest push whose answer waits for the flush acknowledgement (SYNC_FLUSH).
    deferred_request: Option<(usize, u64)>,
    /// Set when a thread panicked or the store failed for good: every call returns it.
    failed: Option<Error>,
    /// Appends accepted per second, measured by the state thread.
    append_tps: f64,
    last_role: (Role, u64, Option<usize>),
}

struct StoreView<'a>(&'a LogStore);

impl LogView for StoreView<'_> {
    fn last_index(&self) -> u64 {
        self.0.last_index()
    }
    fn term_at(&self, index: u64) -> Option<u64> {
        self.0.term_at(index)
    }
    fn last_term(&self) -> u64 {
        self.0.last_term()
    }
}

enum StateInput {
    Vote(usize, VoteRequest),
    VoteResp(usize, crate::net::msg::VoteResponse),
    TimeoutNow(usize, u64),
}

/// One member of one group.
pub struct Member {
    pub config: GroupConfig,
    state: Mutex<MemberState>,
    /// Wakes the dispatchers: new entries, new leader, reset.
    dispatch_cv: Condvar,
    /// Dispatchers waiting on `dispatch_cv`.
    dispatchers_idle: std::sync::atomic::AtomicUsize,
    /// Wakes waiters of role changes (leadership transfer).
    role_cv: Condvar,
    /// Wakes readers of committed entries (`read_committed`) when the commit index moves.
    commit_cv: Condvar,
    transport: Arc<Transport>,
    epoch: Instant,
    closing: AtomicBool,
    /// Doorbell of the QuorumAckChecker.
    ack_bell: (Sender<()>, Receiver<()>),
    state_tx: Sender<StateInput>,
    handler_tx: Sender<(usize, u64, PushRequest)>,
    role_tx: Sender<(Role, u64, i32)>,
    role_listener: Mutex<Option<RoleListener>>,
    appends_total: AtomicU64,
    counters: AtomicCounters,
    threads: Mutex<Vec<JoinHandle<()>>>,
    closed: AtomicBool,
    /// Serves `ClientAppendIdempotent`; set by the `Group` that owns the producer table.
    pub(crate) idempotent: std::sync::OnceLock<IdempotentHook>,
}

fn lock_err() -> Error {
    Error::new(
        ErrorKind::Panic,
        "a member thread panicked while holding the member's state",
    )
}

impl Member {
    /// Opens the store, registers with the transport and starts the member's threads.
    pub fn open(
        config: GroupConfig,
        transport: Arc<Transport>,
        flusher: &Flusher,
        epoch: Instant,
    ) -> Result<Arc<Member>> {
        let (ack_tx, ack_rx) = bounded(1);
        let doorbell = ack_tx.clone();
        let on_flushed = Arc::new(move |_flushed: u64| {
            let _ = doorbell.try_send(());
        });
        let opts = StoreOptions {
            dir: config.member_dir(),
            segment_size_bytes: config.segment_size_bytes,
            flush: config.flush,
            async_flush_interval_ms: config.async_flush_interval_ms,
            entry_size_bytes_max: config.entry_size_bytes_max,
            prewrite_segments: config.prewrite_segments,
            classic_commitlog_dir: config.classic_commitlog_dir.clone(),
        };
        let (store, recovery) = LogStore::open(opts, flusher, on_flushed)?;
        for note in &recovery.notes {
            log::warn!("{}/{}: recovery: {note}", config.group, config.self_id);
        }
        let voted_for = match &recovery.hard_state.voted_for {
            Some(id) => Some(config.peer_index(id).ok_or_else(|| {
                Error::corrupt(format!(
                    "term file votes for '{id}', which is not in dLegerPeers"
                ))
            })?),
            None => None,
        };
        let preferred_leaders = config
            .preferred_leader_ids
            .iter()
            .filter_map(|id| config.peer_index(id))
            .collect();
        let election_timeout_ms = config.election_timeout_ms();
        let core_config = CoreConfig {
            members: config.peers.len(),
            self_index: config.self_index,
            election_timeout_ms,
            heartbeat_interval_ms: config.heartbeat_interval_ms,
            push_timeout_ms: (election_timeout_ms * 2).max(1000),
            push_window_max: config.push_window_max,
            push_entries_max: 4096,
            sync_flush: config.flush == FlushDiskType::SyncFlush,
            preferred_leaders,
            entry_size_bytes_max: u64::from(config.entry_size_bytes_max),
        };
        let now_ms = epoch.elapsed().as_millis() as u64;
        let seed = (std::process::id() as u64) << 32
            ^ now_ms
            ^ (config.self_index as u64) << 48
            ^ fastrand::u64(..);
        let mut core = RaftCore::new(
            core_config,
            recovery.hard_state.term,
            voted_for,
            now_ms,
            seed,
        );
        let last = store.last_index();
        core.commit_index = recovery.commit_checkpoint.min(last);
        if recovery.commit_checkpoint > last {
            core.repair_target = recovery.commit_checkpoint;
            log::warn!(
                "{}/{}: lost entries up to {} that were durable and committed; repairing from the leader before voting",
                config.group,
                config.self_id,
                recovery.commit_checkpoint
            );
        }
        let last_role = (core.role, core.term, core.leader);
        let state = MemberState {
            core,
            store,
            waiters: Waiters::new(),
            completed_index: 0,
            commit_notified: 0,
            follower_match: (0, 0),
            flush_reported: 0,
            deferred_request: None,
            failed: None,
            append_tps: 0.0,
            last_role,
        };
        let (state_tx, state_rx) = bounded(STATE_QUEUE_MAX);
        let (handler_tx, handler_rx) = bounded(HANDLER_QUEUE_MAX);
        let (role_tx, role_rx) = bounded(ROLE_QUEUE_MAX);
        let member = Arc::new(Member {
            config,
            state: Mutex::new(state),
            dispatch_cv: Condvar::new(),
            dispatchers_idle: Default::default(),
            role_cv: Condvar::new(),
            commit_cv: Condvar::new(),
            transport,
            epoch,
            closing: AtomicBool::new(false),
            ack_bell: (ack_tx, ack_rx),
            state_tx,
            handler_tx,
            role_tx,
            role_listener: Mutex::new(None),
            appends_total: AtomicU64::new(0),
            counters: AtomicCounters::default(),
            threads: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            idempotent: std::sync::OnceLock::new(),
        });
        if let Err(err) = member.start(state_rx, handler_rx, role_rx) {
            member.close();
            return Err(err);
        }
        Ok(member)
    }

    fn start(
        self: &Arc<Self>,
        state_rx: Receiver<StateInput>,
        handler_rx: Receiver<(usize, u64, PushRequest)>,
        role_rx: Receiver<(Role, u64, i32)>,
    ) -> Result<()> {
        let name = format!("{}-{}", self.config.group, self.config.self_id);
        let mut threads = self.threads.lock().map_err(|_| lock_err())?;
        let spawn = |threads: &mut Vec<JoinHandle<()>>, role: String, body: ThreadBody| {
            let member = Arc::clone(self);
            let thread_name = format!("{role}-{name}");
            let handle = std::thread::Builder::new()
                .name(thread_name.clone())
                .spawn(move || {
                    let result =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&member)));
                    if result.is_err() {
                        log::error!("thread {thread_name} panicked; failing the member");
                        member.fail(Error::new(
                            ErrorKind::Panic,
                            format!("thread {thread_name} panicked"),
                        ));
                    }
                })
                .map_err(|e| Error::io("spawn a member thread", e))?;
            threads.push(handle);
            Ok::<(), Error>(())
        };
        spawn(
            &mut threads,
            "state".into(),
            Box::new(move |m| m.state_loop(state_rx)),
        )?;
        spawn(&mut threads, "ack".into(), Box::new(|m| m.ack_loop()))?;
        spawn(
            &mut threads,
            "handler".into(),
            Box::new(move |m| m.handler_loop(handler_rx)),
        )?;
        spawn(
            &mut threads,
            "role".into(),
            Box::new(move |m| m.role_loop(role_rx)),
        )?;
        for peer in 0..self.config.peers.len() {
            if peer != self.config.self_index {
                let role = format!("dispatch{}", self.config.peers[peer].id);
                spawn(&mut threads, role, Box::new(move |m| m.dispatch_loop(peer)))?;
            }
        }
        drop(threads);
        let weak: Weak<Member> = Arc::downgrade(self);
        let handler = Arc::new(move |frame: Frame, responder: Option<Responder>| {
            if let Some(member) = weak.upgrade() {
                member.on_frame(frame, responder);
            }
        });
        self.transport.listen(self.config.self_peer().addr)?;
        self.transport
            .register(&self.config.group, self.config.self_index as u8, handler)?;
        Ok(())
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn lock(&self) -> Result<MutexGuard<'_, MemberState>> {
        let guard = self.state.lock().map_err(|_| lock_err())?;
        if let Some(err) = &guard.failed {
            return Err(err.clone());
        }
        if self.closing.load(Ordering::Acquire) {
            return Err(Error::closed("the group member"));
        }
        Ok(guard)
    }

    fn sync_flush(&self) -> bool {
        self.config.flush == FlushDiskType::SyncFlush
    }

    fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Fails the member for good: every later call returns `err`. Waiting appends
    /// complete with OUTCOME_UNKNOWN: they may be on other members, and the next leader
    /// may commit them.
    fn fail(&self, err: Error) {
        let waiters = match self.state.lock() {
            Ok(mut st) => {
                if st.failed.is_none() {
                    st.failed = Some(err.clone());
                }
                st.waiters.take_all()
            }
            Err(poisoned) => {
                let mut st = poisoned.into_inner();
                st.failed.get_or_insert(err.clone());
                st.waiters.take_all()
            }
        };
        for ((index, _), waiter) in waiters {
            (waiter.done)(Err(Error::new(
                ErrorKind::OutcomeUnknown,
                format!(
                    "the member failed ({err}) before entry {index} was decided; it may \
                     still commit on the other members"
                ),
            )));
        }
        self.wake_all();
    }

    pub fn counters(&self) -> Counters {
        let c = &self.counters;
        Counters {
            appends: self.appends_total.load(Ordering::Relaxed),
            pushes_sent: c.pushes_sent.load(Ordering::Relaxed),
            entries_pushed: c.entries_pushed.load(Ordering::Relaxed),
            pushes_applied: c.pushes_applied.load(Ordering::Relaxed),
            handler_rounds: c.handler_rounds.load(Ordering::Relaxed),
            flush_acks_sent: c.flush_acks_sent.load(Ordering::Relaxed),
            commit_advances: c.commit_advances.load(Ordering::Relaxed),
        }
    }

    fn wake_all(&self) {
        self.dispatch_cv.notify_all();
        self.role_cv.notify_all();
        self.commit_cv.notify_all();
        let _ = self.ack_bell.0.try_send(());
    }

    fn send(&self, peer: usize, request_id: u64, message: Message) {
        let frame = Frame {
            group: self.config.group.clone(),
            from: self.config.self_index as u8,
            to: peer as u8,
            request_id,
            message,
        };
        self.transport.send(self.config.peers[peer].addr, frame);
    }

    /// Carries out storage and bookkeeping effects under the lock; returns the messages
    /// to send once the lock is released (after the hard state is durable).
    fn apply(&self, st: &mut MemberState, fx: Effects) -> Result<Vec<(usize, Outgoing)>> {
        if fx.persist_hard_state {
            let voted_for = st.core.voted_for.map(|p| self.config.peers[p].id.clone());
            let saved = st.store.save_hard_state(&HardState {
                term: st.core.term,
                voted_for,
            });
            match saved {
                Ok(()) => {
                    if !st.core.may_speak() {
                        log::warn!(
                            "{}/{}: term and vote saved; the member speaks again",
                            self.config.group,
                            self.config.self_id
                        );
                    }
                    st.core.hard_state_saved();
                }
                // A full disk does not fail the member: it stays silent (no vote, no
                // acknowledgement) and every tick tries again.
                Err(err) if err.kind() == ErrorKind::DiskFull => {
                    if st.core.may_speak() {
                        log::error!(
                            "{}/{}: cannot save term {} and vote: {err}; silent until saved",
                            self.config.group,
                            self.config.self_id,
                            st.core.term
                        );
                    }
                    st.core.hard_state_save_failed();
                }
                Err(err) => return Err(err),
            }
        }
        if fx.append_noop {
            let entry = Entry {
                index: st.store.last_index() + 1,
                term: st.core.term,
                kind: EntryKind::Noop,
                body: Bytes::new(),
            };
            match st.store.append(&entry) {
                Ok(_) => {
                    let flushed = st.store.flushed_index();
                    let more = st.core.on_local_progress(flushed, &StoreView(&st.store));
                    if more.commit_advanced {
                        let _ = self.ack_bell.0.try_send(());
                    }
                }
                // A full disk passes: lead without the no-op; earlier terms' entries
                // commit with the first client append that fits.
                Err(err) if err.kind() == ErrorKind::DiskFull => log::warn!(
                    "{}/{}: cannot append the leader's no-op: {err}",
                    self.config.group,
                    self.config.self_id
                ),
                Err(err) => return Err(err),
            }
        }
        if fx.role_changed {
            self.note_role(st);
        }
        if fx.commit_advanced {
            self.counters
                .commit_advances
                .fetch_add(1, Ordering::Relaxed);
            let _ = self.ack_bell.0.try_send(());
        }
        if fx.append_noop
            || (fx.wake_dispatchers && self.dispatchers_idle.load(Ordering::Acquire) > 0)
        {
            self.dispatch_cv.notify_all();
        }
        if !st.core.may_speak() {
            return Ok(Vec::new());
        }
        Ok(fx.messages)
    }

    fn note_role(&self, st: &mut MemberState) {
        let now = (st.core.role, st.core.term, st.core.leader);
        if now == st.last_role {
            return;
        }
        let was_leader = st.last_role.0 == Role::Leader;
        st.last_role = now;
        let shown = api::reported_role(st);
        log::info!(
            "{}/{}: {} in term {} (leader {})",
            self.config.group,
            self.config.self_id,
            shown.name(),
            now.1,
            now.2
                .map(|p| self.config.peers[p].id.as_str())
                .unwrap_or("unknown")
        );
        if was_leader && now.0 != Role::Leader {
            st.follower_match = (0, 0);
        }
        let leader = now.2.map(|p| p as i32).unwrap_or(-1);
        if self.role_tx.try_send((shown, now.1, leader)).is_err() {
            log::warn!(
                "{}/{}: role listener queue full; event dropped",
                self.config.group,
                self.config.self_id
            );
        }
        self.role_cv.notify_all();
        self.dispatch_cv.notify_all();
        let _ = self.ack_bell.0.try_send(());
    }

    fn send_all(&self, messages: Vec<(usize, Outgoing)>) {
        for (peer, message) in messages {
            let message = match message {
                Outgoing::Vote(v) => Message::Vote(v),
                Outgoing::VoteResp(v) => Message::VoteResp(v),
                Outgoing::TimeoutNow { term } => Message::TimeoutNow { term },
            };
            self.send(peer, 0, message);
        }
    }

    /// Runs `f` on the locked state and carries its effects out; a storage failure fails the member.
    fn step<F>(&self, f: F) -> Result<()>
    where
        F: FnOnce(&mut MemberState, u64) -> Effects,
    {
        let messages = {
            let mut st = self.lock()?;
            let now = self.now_ms();
            let fx = f(&mut st, now);
            match self.apply(&mut st, fx) {
                Ok(messages) => messages,
                Err(err) => {
                    drop(st);
                    log::error!(
                        "{}/{}: storage failed: {err}",
                        self.config.group,
                        self.config.self_id
                    );
                    self.fail(err.clone());
                    return Err(err);
                }
            }
        };
        self.send_all(messages);
        Ok(())
    }

    // ---------------------------------------------------------------- inbound frames

    fn on_frame(self: &Arc<Self>, frame: Frame, responder: Option<Responder>) {
        let from = frame.from as usize;
        if frame.from != CLIENT_PEER && from >= self.config.peers.len() {
            log::debug!("{}: frame from unknown member {from}", self.config.group);
            return;
        }
        match frame.message {
            Message::Vote(req) => {
                let _ = self.state_tx.try_send(StateInput::Vote(from, req));
            }
            Message::VoteResp(resp) => {
                let _ = self.state_tx.try_send(StateInput::VoteResp(from, resp));
            }
            Message::TimeoutNow { term } => {
                let _ = self.state_tx.try_send(StateInput::TimeoutNow(from, term));
            }
            Message::Push(req) => {
                if self
                    .handler_tx
                    .try_send((from, frame.request_id, req))
                    .is_err()
                {
                    log::debug!(
                        "{}/{}: handler queue full; push dropped",
                        self.config.group,
                        self.config.self_id
                    );
                }
            }
            Message::PushResp(resp) => {
                let _ = self.step(|st, now| {
                    let MemberState { core, store, .. } = st;
                    core.on_push_response(from, frame.request_id, &resp, now, &StoreView(store))
                });
            }
            Message::ClientAppend { .. }
            | Message::ClientAppendIdempotent { .. }
            | Message::ClientRead { .. }
            | Message::ClientStatus
            | Message::ClientTransfer { .. } => {
                if let Some(responder) = responder {
                    self.on_client_request(frame, responder);
                }
            }
            Message::ClientResp(_) => {}
        }
    }

    fn client_answer(
        &self,
        request: &Frame,
        result: Result<(EntryMeta, Bytes)>,
        status: Option<StatusReport>,
    ) -> Frame {
        let leader_peer = self
            .state
            .lock()
            .ok()
            .and_then(|st| st.core.leader)
            .map(|p| p as i32)
            .unwrap_or(-1);
        let (code, message, meta, data) = match result {
            Ok((meta, data)) => (0, String::new(), meta, data),
            Err(err) => (
                err.kind().code(),
                err.message().to_string(),
                EntryMeta::default(),
                Bytes::new(),
            ),
        };
        Frame {
            group: self.config.group.clone(),
            from: self.config.self_index as u8,
            to: request.from,
            request_id: request.request_id,
            message: Message::ClientResp(ClientResponse {
                result: code,
                message,
                leader_peer,
                meta,
                data,
                status,
            }),
        }
    }

    fn on_client_request(self: &Arc<Self>, frame: Frame, responder: Responder) {
        // Answers an append request once its entry commits or fails.
        let answer_append = |start: &dyn Fn(AppendCallback) -> Result<()>| {
            let weak_self = Arc::downgrade(self);
            let request = Frame {
                message: Message::ClientStatus,
                ..frame.clone()
            };
            let responder2 = responder.clone();
            let result = start(Box::new(move |result| {
                if let Some(member) = weak_self.upgrade() {
                    let answer =
                        member.client_answer(&request, result.map(|m| (m, Bytes::new())), None);
                    responder2.respond(answer);
                }
            }));
            if let Err(err) = result {
                responder.respond(self.client_answer(&frame, Err(err), None));
            }
        };
        match &frame.message {
            Message::ClientAppend { data } => answer_append(&|done| self.append_async(data, done)),
            Message::ClientAppendIdempotent {
                producer_id,
                sequence,
                data,
            } => answer_append(&|done| match self.idempotent.get() {
                Some(hook) => hook(*producer_id, *sequence, data, done),
                None => Err(Error::new(
                    ErrorKind::Closed,
                    "this member serves no exactly-once appends",
                )),
            }),
            Message::ClientRead { index } => {
                let result = self.read(*index).map(|(data, meta)| (meta, data));
                responder.respond(self.client_answer(&frame, result, None));
            }
            Message::ClientStatus => {
                let report = self.status().map(|status| StatusReport {
                    status,
                    append_tps: self.state.lock().map(|st| st.append_tps).unwrap_or(0.0),
                    pid: std::process::id(),
                });
                let answer = match report {
                    Ok(report) => self.client_answer(
                        &frame,
                        Ok((EntryMeta::default(), Bytes::new())),
                        Some(report),
                    ),
                    Err(err) => self.client_answer(&frame, Err(err), None),
                };
                responder.respond(answer);
            }
            Message::ClientTransfer {
                to_peer,
                timeout_ms,
            } => {
                let weak_self = Arc::downgrade(self);
                let to_peer = to_peer.clone();
                let timeout = Duration::from_millis(u64::from(*timeout_ms).min(60_000));
                let spawned =
                    std::thread::Builder::new()
                        .name("transfer".into())
                        .spawn(move || {
                            if let Some(member) = weak_self.upgrade() {
                                let result = member.transfer_leadership(&to_peer, timeout);
                                let answer = member.client_answer(
                                    &frame,
                                    result.map(|_| (EntryMeta::default(), Bytes::new())),
                                    None,
                                );
                                responder.respond(answer);
                            }
                        });
                if let Err(err) = spawned {
                    log::warn!("cannot start a leadership transfer: {err}");
                }
            }
            _ => {}
        }
    }
}
