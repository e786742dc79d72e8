//! One group member: its state and the decisions the engine's threads carry out for it.
//!
//! A member owns no thread. The engine's threads (`sched.rs`) serve every member of
//! every group it hosts: one state/timer thread (elections, step-down, and the
//! once-a-second housekeeping handed to the member's EntryHandler), one
//! QuorumAckChecker (folds flushes into the commit index, completes waiting appends),
//! a fixed pool of EntryHandlers (pushes and push answers, a member always on the same
//! one), one EntryDispatcher per remote engine address (pipelined pushes, round-robin
//! between members) and one role-listener thread. Their per-member work is in `loops.rs`.
//!
//! Everything a decision reads lives in one [`MemberState`] under one mutex; the pure
//! [`RaftCore`] decides, the threads do the I/O outside the lock where they can.

use crate::config::{FlushDiskType, GroupConfig};
use crate::core::{CoreConfig, CoreMark, Effects, LogView, Outgoing, RaftCore, Waiters};
use crate::error::{Error, ErrorKind, Result};
use crate::net::msg::{ClientResponse, Frame, Message, StatusReport, CLIENT_PEER};
use crate::net::{Responder, Transport};
use crate::store::{Flusher, HardState, LogStore, StoreOptions};
use crate::types::{Entry, EntryKind, EntryMeta, Role};
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};

mod api;
mod loops;
mod old_log;
pub(crate) mod sched;
mod stats;
use sched::{AckBell, HandlerJob, SchedInner, Slot, StateInput};
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

/// Follows the commit index (the producer table); run on the member's EntryHandler.
pub(crate) type CommitHook = Box<dyn Fn() + Send + Sync>;

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
    /// Campaigns started (`rmqraft_group_elections_total`).
    elections: AtomicU64,
    /// Appends that ended in an error, by `ErrorKind::code()`.
    append_errors: [AtomicU64; stats::ERROR_CODES],
    /// Kept by a broker open on the member.
    broker: crate::metrics::BrokerCounters,
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
    /// Appends counted and when, for `append_tps`.
    rate_appends: u64,
    rate_since: Instant,
    /// The hour (since the Unix epoch) retention last ran in.
    retention_hour: Option<u64>,
    last_role: (Role, u64, Option<usize>),
    /// The core's state after the last checked step ([`Member::check_core`]).
    mark: CoreMark,
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

/// One member of one group.
pub struct Member {
    pub config: GroupConfig,
    state: Mutex<MemberState>,
    /// This member's id in the engine's scheduler.
    id: u64,
    sched: Arc<SchedInner>,
    /// Per peer (None for this member): its slot on the dispatcher of the peer's address.
    slots: Vec<Option<Arc<Slot>>>,
    /// The member's pending tick (ms since the epoch), `u64::MAX` when none.
    next_tick_ms: AtomicU64,
    /// Pushes are dropped until then after one found the disk full.
    paused_until_ms: AtomicU64,
    /// A `Follow` job is queued on the EntryHandler.
    follow_queued: AtomicBool,
    commit_hook: OnceLock<CommitHook>,
    /// Waiters taken out of the state whose callbacks an engine thread is running; close
    /// waits for them (no callback of a closed member runs after its close returns).
    completions: Mutex<usize>,
    completions_cv: Condvar,
    /// Wakes waiters of role changes (leadership transfer).
    role_cv: Condvar,
    /// Wakes readers of committed entries (`read_committed`) when the commit index moves.
    commit_cv: Condvar,
    transport: Arc<Transport>,
    epoch: Instant,
    closing: AtomicBool,
    /// Doorbell of the QuorumAckChecker.
    bell: Arc<AckBell>,
    role_listener: Mutex<Option<RoleListener>>,
    appends_total: AtomicU64,
    /// Retention keeps every entry from this index on (a reader of the log above the
    /// group, such as the broker, that has not yet checkpointed past it); `u64::MAX`: none.
    retention_keep_from: AtomicU64,
    counters: AtomicCounters,
    closed: AtomicBool,
    /// Serves `ClientAppendIdempotent`; set by the `Group` that owns the producer table.
    pub(crate) idempotent: std::sync::OnceLock<IdempotentHook>,
    /// The before-election comparison of old logs (`old_log.rs`).
    old_log: Mutex<old_log::OldLogState>,
}

fn lock_err() -> Error {
    Error::new(
        ErrorKind::Panic,
        "a member thread panicked while holding the member's state",
    )
}

impl Member {
    /// Opens the store, registers with the transport and the engine's threads.
    pub(crate) fn open(
        config: GroupConfig,
        transport: Arc<Transport>,
        flusher: &Flusher,
        sched: &Arc<SchedInner>,
        epoch: Instant,
    ) -> Result<Arc<Member>> {
        let bell = sched.new_bell();
        let doorbell = Arc::clone(&bell);
        let on_flushed = Arc::new(move |_flushed: u64| doorbell.ring());
        let opts = StoreOptions {
            dir: config.member_dir(),
            segment_size_bytes: config.segment_size_bytes,
            flush: config.flush,
            async_flush_interval_ms: config.async_flush_interval_ms,
            entry_size_bytes_max: config.entry_size_bytes_max,
            prewrite_segments: config.prewrite_segments,
            classic_commitlog_dir: config.classic_commitlog_dir.clone(),
        };
        let (mut store, mut recovery) = LogStore::open(opts, flusher, on_flushed)?;
        if let Some(dir) = config.dledger_store_dir() {
            // Raft's term continues from the DLedger store's (its vote kept with it).
            if let Some(hs) =
                crate::upgrade::dledger::takeover_hard_state(&dir, &recovery.hard_state, |id| {
                    config.peer_index(id).is_some()
                })?
            {
                store.save_hard_state(&hs)?;
                recovery.hard_state = hs;
            }
        }
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
        if core.restore_commit(recovery.commit_checkpoint, last) {
            log::warn!(
                "{}/{}: lost entries up to {} that were durable and committed; repairing from the leader before voting",
                config.group,
                config.self_id,
                recovery.commit_checkpoint
            );
        }
        let last_role = (core.role, core.term, core.leader);
        let mark = core.mark();
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
            rate_appends: 0,
            rate_since: Instant::now(),
            retention_hour: None,
            last_role,
            mark,
        };
        let id = sched.new_member_id();
        let links = sched.links_for(&config)?;
        let old_log = old_log::new_state(&config);
        let member = Arc::new_cyclic(|weak: &Weak<Member>| {
            bell.bind(weak.clone());
            Member {
                id,
                sched: Arc::clone(sched),
                slots: links
                    .into_iter()
                    .enumerate()
                    .map(|(peer, link)| link.map(|link| Slot::new(weak.clone(), peer, link)))
                    .collect(),
                next_tick_ms: AtomicU64::new(u64::MAX),
                paused_until_ms: AtomicU64::new(0),
                follow_queued: AtomicBool::new(false),
                commit_hook: OnceLock::new(),
                completions: Mutex::new(0),
                completions_cv: Condvar::new(),
                config,
                state: Mutex::new(state),
                role_cv: Condvar::new(),
                commit_cv: Condvar::new(),
                transport,
                epoch,
                closing: AtomicBool::new(false),
                bell,
                role_listener: Mutex::new(None),
                appends_total: AtomicU64::new(0),
                retention_keep_from: AtomicU64::new(u64::MAX),
                counters: AtomicCounters::default(),
                closed: AtomicBool::new(false),
                idempotent: std::sync::OnceLock::new(),
                old_log,
            }
        });
        if let Err(err) = member.start() {
            member.close();
            return Err(err);
        }
        Ok(member)
    }

    fn start(self: &Arc<Self>) -> Result<()> {
        self.sched.add_member(self);
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

    /// Sets the hook that follows the commit index (run on the member's EntryHandler
    /// after the commit index moves). Set once.
    pub(crate) fn set_commit_hook(self: &Arc<Self>, hook: CommitHook) {
        let _ = self.commit_hook.set(hook);
        self.follow_again();
    }

    /// Queues the commit hook again (it stopped before the commit index).
    pub(crate) fn follow_again(self: &Arc<Self>) {
        if !self.follow_queued.swap(true, Ordering::AcqRel)
            && !self.sched.handle(self, HandlerJob::Follow)
        {
            self.follow_queued.store(false, Ordering::Release);
        }
    }

    /// Wakes this member's dispatcher slots (new entries, new leader, answers).
    fn wake_dispatchers(&self) {
        for slot in self.slots.iter().flatten() {
            slot.ring();
        }
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
                self.begin_completions();
                st.waiters.take_all()
            }
            Err(poisoned) => {
                let mut st = poisoned.into_inner();
                st.failed.get_or_insert(err.clone());
                self.begin_completions();
                st.waiters.take_all()
            }
        };
        for ((index, _), waiter) in waiters {
            self.count_append_error(ErrorKind::OutcomeUnknown);
            (waiter.done)(Err(Error::new(
                ErrorKind::OutcomeUnknown,
                format!(
                    "the member failed ({err}) before entry {index} was decided; it may \
                     still commit on the other members"
                ),
            )));
        }
        self.end_completions();
        self.wake_all();
    }

    /// Counts callbacks about to run for waiters taken out of the state; called under
    /// the state lock, so a close that takes the lock after sees the count.
    fn begin_completions(&self) {
        *self.completions.lock().unwrap_or_else(|p| p.into_inner()) += 1;
    }

    fn end_completions(&self) {
        let mut n = self.completions.lock().unwrap_or_else(|p| p.into_inner());
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.completions_cv.notify_all();
        }
    }

    /// Waits for the callbacks counted by `begin_completions` (bounded; not on an
    /// engine thread, which may be the one running them).
    fn wait_completions(&self) {
        if std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with(sched::THREAD_PREFIX))
        {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut n = self.completions.lock().unwrap_or_else(|p| p.into_inner());
        while *n > 0 {
            let now = Instant::now();
            if now >= deadline {
                log::warn!(
                    "{}/{}: closing while {} completion round(s) still run",
                    self.config.group,
                    self.config.self_id,
                    *n
                );
                return;
            }
            n = self
                .completions_cv
                .wait_timeout(n, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
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
        self.wake_dispatchers();
        self.role_cv.notify_all();
        self.commit_cv.notify_all();
        self.bell.ring();
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
                        self.bell.ring();
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
            self.bell.ring();
        }
        if fx.append_noop || fx.wake_dispatchers {
            self.wake_dispatchers();
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
        if now.0 == Role::Candidate
            && (st.last_role.0 != Role::Candidate || st.last_role.1 != now.1)
        {
            self.counters.elections.fetch_add(1, Ordering::Relaxed);
        }
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
        // A leader's tick comes sooner than a follower's election deadline.
        self.sched
            .schedule_tick(self, st.core.next_tick_ms(self.now_ms()));
        if !self.sched.role_event(self, shown, now.1, leader) {
            log::warn!(
                "{}/{}: role listener queue full; event dropped",
                self.config.group,
                self.config.self_id
            );
        }
        self.role_cv.notify_all();
        self.wake_dispatchers();
        self.bell.ring();
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

    /// Checks the core's invariants after a step (in release builds too). A broken one
    /// is a bug: the member fails (RMQRAFT_ERR_PANIC) rather than act on a state that
    /// could lose or fork committed entries; its waiting appends get the unknown outcome.
    fn check_core(&self, st: &mut MemberState) -> Result<()> {
        match st.core.check_invariants(st.mark, &StoreView(&st.store)) {
            Ok(()) => {
                st.mark = st.core.mark();
                Ok(())
            }
            Err(why) => Err(Error::new(
                ErrorKind::Panic,
                format!(
                    "{}/{}: consensus invariant broken: {why}",
                    self.config.group, self.config.self_id
                ),
            )),
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
            match self
                .apply(&mut st, fx)
                .and_then(|m| self.check_core(&mut st).map(|()| m))
            {
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
        if let Message::PushResp(_) | Message::VoteResp(_) = frame.message {
            // An answer, for any group, from a peer's address shows the link there alive
            // (a request alone does not: it comes on the peer's own link).
            if let Some(Some(slot)) = self.slots.get(from) {
                slot.heard(self.now_ms());
            }
        }
        match frame.message {
            Message::Vote(req) => self.sched.state_input(self, StateInput::Vote(from, req)),
            Message::VoteResp(resp) => self
                .sched
                .state_input(self, StateInput::VoteResp(from, resp)),
            Message::TimeoutNow { term } => self
                .sched
                .state_input(self, StateInput::TimeoutNow(from, term)),
            Message::OldLog { digest } if from != usize::from(CLIENT_PEER) => {
                self.on_old_log(from, &digest, true)
            }
            Message::OldLogResp { digest } if from != usize::from(CLIENT_PEER) => {
                self.on_old_log(from, &digest, false)
            }
            Message::OldLog { .. } | Message::OldLogResp { .. } => {}
            Message::Push(req) => {
                self.sched
                    .handle(self, HandlerJob::Push(from, frame.request_id, req));
            }
            Message::PushResp(resp) => {
                // Applied here when that needs no I/O and no wait for the member's lock;
                // else on the member's EntryHandler.
                if !self.push_response_inline(from, frame.request_id, &resp) {
                    self.sched
                        .handle(self, HandlerJob::PushResp(from, frame.request_id, resp));
                }
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
