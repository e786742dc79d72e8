//! The engine's threads, shared by every member of every group it hosts.
//!
//! A member is data: it owns no thread. Its inputs are queued, as (member, input), on a
//! few bounded inboxes served by threads of the engine:
//! - `rq-state`: one timer thread over a deadline heap of every member's next tick (an
//!   election deadline, a leader's quorum check, the once-a-second housekeeping), and the
//!   votes; an idle follower wakes only at its election deadline;
//! - `rq-ack`: the QuorumAckChecker, woken by a member's flush or commit event (one bell
//!   per member, queued at most once), serving every member;
//! - `rq-handler-<n>`: a fixed pool of EntryHandlers, a member always on the same one
//!   (keyed by its id), which apply pushes and push answers and run the disk work of a
//!   member (housekeeping, the producer table); a connection reader queues, except a
//!   push answer it can apply without I/O when the member's lock is free (`try_lock`);
//! - `rq-dispatch-<port>`: one EntryDispatcher per remote engine address, round-robin
//!   over every member led here that has a peer there, one push per member per turn,
//!   each member's window bounded by the core as before; it also judges that link's
//!   liveness by any answer received from that address, for any group, never by one
//!   group's silence;
//! - `rq-role`: calls the hosts' role listeners, in order per member.
//!
//! Threads: 3 + handler pool + one per remote address, whatever the number of groups.

use super::Member;
use crate::net::msg::{PushRequest, PushResponse, VoteRequest, VoteResponse};
use crate::net::Transport;
use crate::types::Role;
use crossbeam_channel::{bounded, unbounded, Receiver, RecvTimeoutError, Sender};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// EntryHandler threads (the machine has few cores; a member's disk work stays on one).
const HANDLER_THREADS: usize = 2;
/// Jobs queued for one EntryHandler thread before new pushes are dropped (the leader
/// resends); answers and housekeeping are never dropped.
const HANDLER_QUEUE_MAX: usize = 16_384;
/// Jobs one EntryHandler takes per round (pushes of one member applied under one lock).
const HANDLER_BATCH_MAX: usize = 512;
/// Votes queued for the state thread.
const STATE_QUEUE_MAX: usize = 4096;
/// Role events queued for the listener thread.
const ROLE_QUEUE_MAX: usize = 8192;
/// How long an idle engine thread waits before it looks at the closing flag again.
pub(super) const IDLE_WAIT_MS: u64 = 50;
/// Election timeouts of silence from a remote engine after which its link is re-dialled.
const LINK_SILENCE_TIMEOUTS: u64 = 4;
/// The start of every engine thread's name.
pub(super) const THREAD_PREFIX: &str = "rq-";
/// The role-listener thread's name.
pub(super) const ROLE_THREAD: &str = "rq-role";
/// Housekeeping period of a member (append rate, commit checkpoint, retention).
const HOUSEKEEPING_MS: u64 = 1000;

/// What a connection reader or a timer hands to the state thread.
pub(super) enum StateInput {
    Vote(usize, VoteRequest),
    VoteResp(usize, VoteResponse),
    TimeoutNow(usize, u64),
}

enum StateJob {
    Input(Weak<Member>, StateInput),
    /// A deadline earlier than the earliest one was added.
    Wake,
}

/// A push as the EntryHandler applies it: from, request id, request.
pub(super) type Push = (usize, u64, PushRequest);

/// What an EntryHandler thread runs for a member.
pub(super) enum HandlerJob {
    Push(usize, u64, PushRequest),
    PushResp(usize, u64, PushResponse),
    Housekeeping,
    /// The commit index moved: the member's commit hook (the producer table) follows it.
    Follow,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    Tick,
    Housekeeping,
}

/// A member's doorbell of the QuorumAckChecker: queued at most once.
pub(super) struct AckBell {
    queued: AtomicBool,
    member: std::sync::OnceLock<Weak<Member>>,
    tx: Sender<Arc<AckBell>>,
}

impl AckBell {
    pub(super) fn ring(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            let _ = self.tx.send(Arc::clone(self));
        }
    }

    pub(super) fn bind(&self, member: Weak<Member>) {
        let _ = self.member.set(member);
    }
}

/// One (member, peer) a dispatcher pushes for: queued at most once.
pub(super) struct Slot {
    queued: AtomicBool,
    member: Weak<Member>,
    peer: usize,
    link: Arc<LinkState>,
}

impl Slot {
    pub(super) fn new(member: Weak<Member>, peer: usize, link: Arc<LinkState>) -> Arc<Slot> {
        Arc::new(Slot {
            queued: AtomicBool::new(false),
            member,
            peer,
            link,
        })
    }

    pub(super) fn ring(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            let _ = self.link.tx.send(Arc::clone(self));
        }
    }

    /// An answer arrived from this peer's address: the link there is alive.
    pub(super) fn heard(&self, now_ms: u64) {
        self.link.heard_ms.store(now_ms, Ordering::Relaxed);
    }
}

/// One remote engine address: its dispatcher's inbox and the link's liveness.
pub(super) struct LinkState {
    addr: SocketAddr,
    tx: Sender<Arc<Slot>>,
    rx: Receiver<Arc<Slot>>,
    /// Every slot pushing to this address (pruned when a member closes).
    slots: Mutex<Vec<Weak<Slot>>>,
    /// When an answer (push or vote answer, any group) last came from this address.
    heard_ms: AtomicU64,
}

pub(crate) struct SchedInner {
    closing: AtomicBool,
    epoch: Instant,
    next_id: AtomicU64,
    transport: Arc<Transport>,
    state_tx: Sender<StateJob>,
    state_rx: Receiver<StateJob>,
    timers: Mutex<BinaryHeap<Reverse<(u64, TimerKind, u64)>>>,
    members: RwLock<HashMap<u64, Weak<Member>>>,
    ack_tx: Sender<Arc<AckBell>>,
    ack_rx: Receiver<Arc<AckBell>>,
    handler_txs: Vec<Sender<(Weak<Member>, HandlerJob)>>,
    role_tx: Sender<(Weak<Member>, Role, u64, i32)>,
    links: Mutex<HashMap<SocketAddr, Arc<LinkState>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// The engine's scheduler: owns and joins the threads above.
pub(crate) struct Sched {
    inner: Arc<SchedInner>,
}

impl Sched {
    pub(crate) fn start(transport: Arc<Transport>, epoch: Instant) -> crate::Result<Sched> {
        let (state_tx, state_rx) = bounded(STATE_QUEUE_MAX);
        let (ack_tx, ack_rx) = unbounded();
        let (role_tx, role_rx) = bounded(ROLE_QUEUE_MAX);
        let mut handler_txs = Vec::new();
        let mut handler_rxs = Vec::new();
        for _ in 0..HANDLER_THREADS {
            let (tx, rx) = bounded(HANDLER_QUEUE_MAX);
            handler_txs.push(tx);
            handler_rxs.push(rx);
        }
        let inner = Arc::new(SchedInner {
            closing: AtomicBool::new(false),
            epoch,
            next_id: AtomicU64::new(1),
            transport,
            state_tx,
            state_rx,
            timers: Mutex::new(BinaryHeap::new()),
            members: RwLock::new(HashMap::new()),
            ack_tx,
            ack_rx,
            handler_txs,
            role_tx,
            links: Mutex::new(HashMap::new()),
            threads: Mutex::new(Vec::new()),
        });
        let sched = Sched { inner };
        let started = (|| {
            let me = Arc::clone(&sched.inner);
            sched
                .inner
                .spawn("rq-state".into(), move || me.state_loop())?;
            let me = Arc::clone(&sched.inner);
            sched.inner.spawn("rq-ack".into(), move || me.ack_loop())?;
            let me = Arc::clone(&sched.inner);
            sched
                .inner
                .spawn(ROLE_THREAD.into(), move || me.role_loop(role_rx))?;
            for (n, rx) in handler_rxs.into_iter().enumerate() {
                let me = Arc::clone(&sched.inner);
                sched
                    .inner
                    .spawn(format!("rq-handler-{n}"), move || me.handler_loop(rx))?;
            }
            Ok::<(), crate::Error>(())
        })();
        if let Err(err) = started {
            sched.close();
            return Err(err);
        }
        Ok(sched)
    }

    pub(crate) fn inner(&self) -> &Arc<SchedInner> {
        &self.inner
    }

    /// For metrics: the threads running, and the jobs waiting per queue.
    pub(crate) fn stats(&self) -> (u64, Vec<(&'static str, u64)>) {
        let inner = &self.inner;
        let threads = lock(&inner.threads).len() as u64;
        let handler: usize = inner.handler_txs.iter().map(|tx| tx.len()).sum();
        let timers = lock(&inner.timers).len();
        let depths = vec![
            ("state", inner.state_tx.len() as u64),
            ("ack", inner.ack_rx.len() as u64),
            ("handler", handler as u64),
            ("role", inner.role_tx.len() as u64),
            ("timers", timers as u64),
        ];
        (threads, depths)
    }

    /// Stops and joins every engine thread (members are closed first).
    pub(crate) fn close(&self) {
        self.inner.closing.store(true, Ordering::Release);
        let _ = self.inner.state_tx.try_send(StateJob::Wake);
        let threads = std::mem::take(&mut *lock(&self.inner.threads));
        for t in threads {
            if t.thread().id() == std::thread::current().id() {
                log::warn!("engine closed from one of its own threads; not waiting for it");
                continue;
            }
            if t.join().is_err() {
                log::warn!("an engine thread panicked");
            }
        }
        // Queued bells and slots hold the channels they sit in: drain them, or they
        // would keep each other alive.
        while self.inner.ack_rx.try_recv().is_ok() {}
        for link in std::mem::take(&mut *lock(&self.inner.links)).into_values() {
            while link.rx.try_recv().is_ok() {}
        }
    }
}

impl Drop for Sched {
    fn drop(&mut self) {
        self.close();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs one member's part of an engine thread's work; a panic fails that member only.
fn guarded(member: &Arc<Member>, what: &str, f: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        log::error!(
            "{}/{}: {what} panicked; failing the member",
            member.config.group,
            member.config.self_id
        );
        member.fail(crate::Error::new(
            crate::ErrorKind::Panic,
            format!("{what} panicked"),
        ));
    }
}

impl SchedInner {
    fn spawn(&self, name: String, body: impl FnOnce() + Send + 'static) -> crate::Result<()> {
        let mut threads = lock(&self.threads);
        let handle = std::thread::Builder::new()
            .name(name)
            .spawn(body)
            .map_err(|e| crate::Error::io("spawn an engine thread", e))?;
        threads.push(handle);
        Ok(())
    }

    fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// A new member's id and doorbell.
    pub(super) fn new_member_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(super) fn new_bell(&self) -> Arc<AckBell> {
        Arc::new(AckBell {
            queued: AtomicBool::new(false),
            member: std::sync::OnceLock::new(),
            tx: self.ack_tx.clone(),
        })
    }

    /// The link state of each peer's address (None for the member itself); a
    /// dispatcher starts for an address on first use.
    pub(super) fn links_for(
        self: &Arc<Self>,
        config: &crate::config::GroupConfig,
    ) -> crate::Result<Vec<Option<Arc<LinkState>>>> {
        config
            .peers
            .iter()
            .enumerate()
            .map(|(peer, p)| {
                if peer == config.self_index {
                    Ok(None)
                } else {
                    self.link(p.addr).map(Some)
                }
            })
            .collect()
    }

    /// Makes a member known to the engine's threads: its dispatcher slots, its timers.
    pub(super) fn add_member(&self, member: &Arc<Member>) {
        for slot in member.slots.iter().flatten() {
            lock(&slot.link.slots).push(Arc::downgrade(slot));
        }
        self.members
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(member.id, Arc::downgrade(member));
        let now = self.now_ms();
        self.schedule_tick(member, now);
        self.schedule(member.id, TimerKind::Housekeeping, now + HOUSEKEEPING_MS);
    }

    pub(super) fn remove_member(&self, member: &Member) {
        self.members
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&member.id);
        for slot in member.slots.iter().flatten() {
            let me = Arc::downgrade(slot);
            lock(&slot.link.slots).retain(|w| w.strong_count() > 0 && !w.ptr_eq(&me));
        }
    }

    fn link(self: &Arc<Self>, addr: SocketAddr) -> crate::Result<Arc<LinkState>> {
        let mut links = lock(&self.links);
        if self.is_closing() {
            return Err(crate::Error::closed("the engine"));
        }
        if let Some(link) = links.get(&addr) {
            return Ok(Arc::clone(link));
        }
        let (tx, rx) = unbounded();
        let link = Arc::new(LinkState {
            addr,
            tx,
            rx,
            slots: Mutex::new(Vec::new()),
            heard_ms: AtomicU64::new(self.now_ms()),
        });
        let me = Arc::clone(self);
        let worker = Arc::clone(&link);
        self.spawn(format!("rq-dispatch-{}", addr.port()), move || {
            me.dispatch_loop(&worker)
        })?;
        links.insert(addr, Arc::clone(&link));
        Ok(link)
    }

    /// Asks for `member`'s timer of `kind` at `at_ms` (ms since the engine's epoch).
    fn schedule(&self, member: u64, kind: TimerKind, at_ms: u64) {
        let earliest = {
            let mut timers = lock(&self.timers);
            let before = timers.peek().map(|Reverse((at, _, _))| *at);
            timers.push(Reverse((at_ms, kind, member)));
            before.is_none_or(|b| at_ms < b)
        };
        if earliest {
            let _ = self.state_tx.try_send(StateJob::Wake);
        }
    }

    /// Asks for a member's next tick at `at_ms`; an earlier one already asked is kept.
    pub(super) fn schedule_tick(&self, member: &Member, at_ms: u64) {
        let current = member.next_tick_ms.load(Ordering::Acquire);
        if at_ms < current
            && member
                .next_tick_ms
                .compare_exchange(current, at_ms, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.schedule(member.id, TimerKind::Tick, at_ms);
        }
    }

    pub(super) fn state_input(&self, member: &Arc<Member>, input: StateInput) {
        let _ = self
            .state_tx
            .try_send(StateJob::Input(Arc::downgrade(member), input));
    }

    /// Queues `job` on the member's EntryHandler; dropped when that queue is full (a
    /// leader resends pushes, a push answer lost is a push that times out, housekeeping
    /// and the commit hook run again on the next second or commit).
    pub(super) fn handle(&self, member: &Arc<Member>, job: HandlerJob) -> bool {
        let tx = &self.handler_txs[(member.id as usize) % self.handler_txs.len()];
        if tx.try_send((Arc::downgrade(member), job)).is_err() {
            log::debug!(
                "{}/{}: handler queue full; job dropped",
                member.config.group,
                member.config.self_id
            );
            return false;
        }
        true
    }

    pub(super) fn role_event(&self, member: &Member, role: Role, term: u64, leader: i32) -> bool {
        let Some(me) = self
            .members
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&member.id)
            .cloned()
        else {
            return false;
        };
        self.role_tx.try_send((me, role, term, leader)).is_ok()
    }

    fn member(&self, id: u64) -> Option<Arc<Member>> {
        self.members
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .and_then(Weak::upgrade)
    }

    // ---------------------------------------------------------------- state thread

    fn state_loop(&self) {
        while !self.is_closing() {
            let now = self.now_ms();
            let mut due = Vec::new();
            let wait_ms = {
                let mut timers = lock(&self.timers);
                while let Some(Reverse((at, kind, id))) = timers.peek().copied() {
                    if at > now || due.len() >= 4096 {
                        break;
                    }
                    timers.pop();
                    due.push((at, kind, id));
                }
                timers
                    .peek()
                    .map(|Reverse((at, _, _))| at.saturating_sub(now))
                    .unwrap_or(IDLE_WAIT_MS)
                    .min(IDLE_WAIT_MS)
            };
            for (at, kind, id) in due {
                let Some(member) = self.member(id) else {
                    continue;
                };
                match kind {
                    TimerKind::Tick => {
                        // Only the member's current timer ticks; earlier ones it replaced
                        // are stale.
                        if member
                            .next_tick_ms
                            .compare_exchange(at, u64::MAX, Ordering::AcqRel, Ordering::Acquire)
                            .is_err()
                        {
                            continue;
                        }
                        guarded(&member, "the state timer", || {
                            if let Some(next) = member.on_tick() {
                                self.schedule_tick(&member, next);
                            }
                        });
                    }
                    TimerKind::Housekeeping => {
                        if member.is_closing() {
                            continue;
                        }
                        self.handle(&member, HandlerJob::Housekeeping);
                        self.schedule(id, TimerKind::Housekeeping, now + HOUSEKEEPING_MS);
                    }
                }
            }
            if wait_ms == 0 {
                continue;
            }
            match self.state_rx.recv_timeout(Duration::from_millis(wait_ms)) {
                Ok(StateJob::Input(member, input)) => {
                    if let Some(member) = member.upgrade() {
                        guarded(&member, "the state thread", || member.on_state_input(input));
                    }
                }
                Ok(StateJob::Wake) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
    }

    // ---------------------------------------------------------------- QuorumAckChecker

    fn ack_loop(&self) {
        let mut last_sweep = Instant::now();
        while !self.is_closing() {
            match self
                .ack_rx
                .recv_timeout(Duration::from_millis(IDLE_WAIT_MS))
            {
                Ok(bell) => {
                    bell.queued.store(false, Ordering::Release);
                    if let Some(member) = bell.member.get().and_then(Weak::upgrade) {
                        guarded(&member, "the QuorumAckChecker", || member.ack_round());
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            // Waiting appends time out even when nothing rings.
            if last_sweep.elapsed() >= Duration::from_millis(IDLE_WAIT_MS) {
                last_sweep = Instant::now();
                let members: Vec<Arc<Member>> = self
                    .members
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .values()
                    .filter_map(Weak::upgrade)
                    .collect();
                for member in members {
                    if member.has_expired_waiters() {
                        member.bell.ring();
                    }
                }
            }
        }
    }

    // ---------------------------------------------------------------- EntryHandler

    fn handler_loop(&self, rx: Receiver<(Weak<Member>, HandlerJob)>) {
        while !self.is_closing() {
            let first = match rx.recv_timeout(Duration::from_millis(IDLE_WAIT_MS)) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut jobs = vec![first];
            while jobs.len() < HANDLER_BATCH_MAX {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            // Pushes of one member are applied together, in arrival order; the other
            // jobs run in arrival order as they come.
            let mut pushes: Vec<(Arc<Member>, Vec<Push>)> = Vec::new();
            for (member, job) in jobs {
                let Some(member) = member.upgrade() else {
                    continue;
                };
                match job {
                    HandlerJob::Push(from, id, req) => {
                        match pushes.iter_mut().find(|(m, _)| Arc::ptr_eq(m, &member)) {
                            Some((_, list)) => list.push((from, id, req)),
                            None => pushes.push((member, vec![(from, id, req)])),
                        }
                    }
                    HandlerJob::PushResp(from, id, resp) => {
                        guarded(&member, "the EntryHandler", || {
                            member.on_push_response(from, id, &resp)
                        });
                    }
                    HandlerJob::Housekeeping => {
                        guarded(&member, "housekeeping", || member.housekeeping());
                    }
                    HandlerJob::Follow => {
                        guarded(&member, "the commit hook", || member.follow_commit());
                    }
                }
            }
            for (member, batch) in pushes {
                guarded(&member, "the EntryHandler", || member.handle_pushes(batch));
            }
        }
    }

    // ---------------------------------------------------------------- role listener

    fn role_loop(&self, rx: Receiver<(Weak<Member>, Role, u64, i32)>) {
        while !self.is_closing() {
            match rx.recv_timeout(Duration::from_millis(IDLE_WAIT_MS)) {
                Ok((member, role, term, leader)) => {
                    if let Some(member) = member.upgrade() {
                        guarded(&member, "the role listener", || {
                            member.call_role_listener(role, term, leader)
                        });
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
    }

    // ---------------------------------------------------------------- EntryDispatcher

    fn dispatch_loop(&self, link: &LinkState) {
        let mut ready: VecDeque<Arc<Slot>> = VecDeque::new();
        let mut last_scan = Instant::now();
        let mut last_reset_ms = 0u64;
        // Heartbeats, timeouts and resends are found by a scan a few times per heartbeat
        // interval (the shortest of the members here, found at each scan); new entries
        // and answers ring the member's slot.
        let mut scan_every = 1u64;
        while !self.is_closing() {
            if ready.is_empty() {
                let left = Duration::from_millis(scan_every).saturating_sub(last_scan.elapsed());
                match link.rx.recv_timeout(left) {
                    Ok(slot) => {
                        slot.queued.store(false, Ordering::Release);
                        ready.push_back(slot);
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            while let Ok(slot) = link.rx.try_recv() {
                slot.queued.store(false, Ordering::Release);
                ready.push_back(slot);
            }
            if last_scan.elapsed() >= Duration::from_millis(scan_every) {
                last_scan = Instant::now();
                let slots: Vec<Arc<Slot>> = {
                    let mut slots = lock(&link.slots);
                    slots.retain(|w| w.strong_count() > 0);
                    slots.iter().filter_map(Weak::upgrade).collect()
                };
                scan_every = slots
                    .iter()
                    .filter_map(|slot| slot.member.upgrade())
                    .map(|m| (m.config.heartbeat_interval_ms / 4).max(1))
                    .min()
                    .unwrap_or(IDLE_WAIT_MS)
                    .min(IDLE_WAIT_MS);
                self.check_link(link, &slots, &mut last_reset_ms);
                ready.extend(slots);
            }
            // One turn: one push per member that has one; members with more go again.
            for _ in 0..ready.len() {
                let Some(slot) = ready.pop_front() else { break };
                let Some(member) = slot.member.upgrade() else {
                    continue;
                };
                let mut more = false;
                guarded(&member, "the EntryDispatcher", || {
                    more = member.dispatch_once(slot.peer)
                });
                if more {
                    ready.push_back(slot);
                }
            }
        }
    }

    /// Re-dials the link when the remote engine has sent nothing for several election
    /// timeouts while a member led here waits for answers from it: a half-open
    /// connection that writes still succeed on is otherwise never noticed. One group's
    /// silent member does not count: any answer from that address keeps the link.
    fn check_link(&self, link: &LinkState, slots: &[Arc<Slot>], last_reset_ms: &mut u64) {
        let mut silence_ms = None;
        for slot in slots {
            if let Some(m) = slot.member.upgrade() {
                if m.is_leading() {
                    let s = m.config.election_timeout_ms() * LINK_SILENCE_TIMEOUTS;
                    silence_ms = Some(silence_ms.map_or(s, |x: u64| x.min(s)));
                }
            }
        }
        let Some(silence_ms) = silence_ms else {
            return;
        };
        let now = self.now_ms();
        let heard = link.heard_ms.load(Ordering::Relaxed);
        if now >= heard + silence_ms && now >= *last_reset_ms + silence_ms {
            *last_reset_ms = now;
            log::debug!(
                "link to {}: nothing heard for {} ms; re-dialling",
                link.addr,
                now - heard
            );
            self.transport.reset_link(link.addr);
        }
    }
}
