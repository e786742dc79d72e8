//! What a host calls on a member: append, read, status, roles, transfer, close.

use super::{AppendCallback, Member, MemberState, RoleListener, Stamp, StoreView, Waiter};
use crate::error::{Error, ErrorKind, Result};
use crate::types::{Entry, EntryKind, EntryMeta, EntryPlace, GroupStatus, Role};
use crate::wait::Slot;
use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Member {
    /// Appends on the leader; `done` runs exactly once when the entry commits or fails.
    pub fn append_async(&self, data: &[u8], done: AppendCallback) -> Result<()> {
        if data.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "an entry must not be empty",
            ));
        }
        let body = Bytes::copy_from_slice(data);
        self.append_with(
            EntryKind::Normal,
            body.len(),
            Box::new(move |_| Ok(body)),
            done,
        )
    }

    /// Appends an entry of `kind` whose body (exactly `body_len` bytes) `stamp` makes
    /// from the entry's place, under the member lock, right before the entry is stored:
    /// stamps run in log order. A stamp error, or a body of another length, stores
    /// nothing and is returned; `done` then never runs.
    pub fn append_with(
        &self,
        kind: EntryKind,
        body_len: usize,
        stamp: Stamp,
        done: AppendCallback,
    ) -> Result<()> {
        let started = self.start_append(kind, body_len, stamp, done);
        if let Err(err) = &started {
            self.count_append_error(err.kind());
        }
        started
    }

    fn start_append(
        &self,
        kind: EntryKind,
        body_len: usize,
        stamp: Stamp,
        done: AppendCallback,
    ) -> Result<()> {
        if body_len > self.config.entry_size_bytes_max as usize {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "entry of {} bytes exceeds maxEntrySize={}",
                    body_len, self.config.entry_size_bytes_max
                ),
            ));
        }
        if kind == EntryKind::Noop {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "no-op entries are the leader's own",
            ));
        }
        let mut st = self.lock()?;
        if !st.core.accepts_appends() {
            return Err(self.not_leader(&st));
        }
        if st.waiters.len() >= self.config.pending_appends_max {
            return Err(Error::new(
                ErrorKind::Busy,
                format!(
                    "{} appends in flight (maxPendingRequestsNum); retry later",
                    st.waiters.len()
                ),
            ));
        }
        let index = st.store.last_index() + 1;
        let pos = st.store.next_entry_pos(body_len);
        let place = EntryPlace {
            index,
            term: st.core.term,
            pos,
            body_pos: pos + crate::store::ENTRY_HEADER_SIZE as u64,
        };
        let body = stamp(place)?;
        if body.len() != body_len {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "the stamp made {} bytes where {body_len} were announced",
                    body.len()
                ),
            ));
        }
        let entry = Entry {
            index,
            term: place.term,
            kind,
            body,
        };
        let meta = st.store.append(&entry)?;
        debug_assert_eq!(meta.pos, place.pos);
        let deadline = Instant::now() + Duration::from_millis(self.config.append_wait_ms_max);
        let waiter = Waiter {
            meta,
            deadline,
            done,
        };
        if let Err(waiter) = st.waiters.insert(meta.index, meta.term, waiter) {
            // The store just appended (index, term): no waiter can hold it already.
            drop(st);
            (waiter.done)(Err(Error::new(
                ErrorKind::OutcomeUnknown,
                format!("entry {} already had a waiter", meta.index),
            )));
            return Ok(());
        }
        self.appends_total.fetch_add(1, Ordering::Relaxed);
        let flushed = st.store.flushed_index();
        let fx = {
            let MemberState { core, store, .. } = &mut *st;
            core.on_local_progress(flushed, &StoreView(store))
        };
        if let Err(err) = self.check_core(&mut st) {
            // The waiter just inserted completes (unknown outcome) with the others.
            drop(st);
            log::error!("{err}");
            self.fail(err);
            return Ok(());
        }
        if fx.commit_advanced {
            self.bell.ring();
        }
        drop(st);
        // A slot already queued on its dispatcher costs one atomic swap, no wake-up.
        self.wake_dispatchers();
        Ok(())
    }

    /// Committed entries from `from_index` on, at most `max_entries` and about
    /// `max_bytes` of bodies (at least one entry when there is one). With none committed
    /// yet at `from_index`, waits up to `wait` for the commit index to move (a condvar,
    /// woken on every commit advance and on close). `NotFound` when `from_index` is
    /// below the first retained entry.
    pub fn read_committed(
        &self,
        from_index: u64,
        max_entries: usize,
        max_bytes: usize,
        wait: Duration,
    ) -> Result<Vec<(Entry, EntryMeta)>> {
        let from_index = from_index.max(1);
        let deadline = Instant::now() + wait;
        let mut st = self.lock()?;
        loop {
            if from_index < st.store.first_index() {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "entry {from_index} is below the first retained entry {}",
                        st.store.first_index()
                    ),
                ));
            }
            let commit = st.core.commit_index.min(st.store.last_index());
            if commit >= from_index {
                let mut out = Vec::new();
                let mut bytes = 0usize;
                let mut index = from_index;
                while index <= commit && out.len() < max_entries.max(1) {
                    let (entry, meta) = st.store.read(index)?;
                    bytes += entry.body.len();
                    out.push((entry, meta));
                    if bytes >= max_bytes {
                        break;
                    }
                    index += 1;
                }
                return Ok(out);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            st = self
                .commit_cv
                .wait_timeout(st, deadline - now)
                .map_err(|_| super::lock_err())?
                .0;
            if let Some(err) = &st.failed {
                return Err(err.clone());
            }
            if self.is_closing() {
                return Err(Error::closed("the group member"));
            }
        }
    }

    /// Reads any entry this member holds, committed or not (a new leader's inherited
    /// tail). What is not committed may still be replaced.
    pub fn read_local(&self, index: u64) -> Result<(Entry, EntryMeta)> {
        let st = self.lock()?;
        st.store.read(index)
    }

    /// The committed entry whose record or body starts at log position `pos`.
    pub fn read_committed_at(&self, pos: u64) -> Result<(Entry, EntryMeta)> {
        let st = self.lock()?;
        let Some(index) = st.store.index_at_pos(pos) else {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("no retained entry at log position {pos}"),
            ));
        };
        if index > st.core.commit_index {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("the entry at log position {pos} is not committed yet"),
            ));
        }
        st.store.read(index)
    }

    fn not_leader(&self, st: &MemberState) -> Error {
        let why = if st.core.is_leader() {
            "is handing leadership over"
        } else {
            "is not the leader"
        };
        let leader = match st.core.leader {
            Some(p) if p != self.config.self_index => {
                format!(
                    "; the leader is {} at {}",
                    self.config.peers[p].id, self.config.peers[p].addr
                )
            }
            _ => "; no leader is known".to_string(),
        };
        Error::new(
            ErrorKind::NotLeader,
            format!(
                "{}/{} {why}{leader}",
                self.config.group, self.config.self_id
            ),
        )
    }

    /// Appends and waits until committed, at most `timeout`.
    pub fn append(&self, data: &[u8], timeout: Duration) -> Result<EntryMeta> {
        let slot = Slot::new();
        let filler = Arc::clone(&slot);
        self.append_async(data, Box::new(move |result| filler.fill(result)))?;
        slot.wait(timeout, "the entry")
    }

    /// Reads a committed entry this member holds.
    pub fn read(&self, index: u64) -> Result<(Bytes, EntryMeta)> {
        let st = self.lock()?;
        let commit = st.core.commit_index;
        if index == 0 || index > commit {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("entry {index} is not committed on this member (commit index {commit})"),
            ));
        }
        if index < st.store.first_index() {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "entry {index} is below the first retained entry {}",
                    st.store.first_index()
                ),
            ));
        }
        let (entry, meta) = st.store.read(index)?;
        Ok((crate::idempotent::payload(&entry), meta))
    }

    pub fn status(&self) -> Result<GroupStatus> {
        let st = self.lock()?;
        let last = st.store.last_index();
        Ok(GroupStatus {
            role: reported_role(&st),
            self_peer: self.config.self_index as i32,
            leader_peer: st.core.leader.map(|p| p as i32).unwrap_or(-1),
            term: st.core.term,
            first_index: if last == 0 {
                0
            } else {
                st.store.first_index().min(last)
            },
            last_index: last,
            commit_index: st.core.commit_index,
            flushed_index: st.store.flushed_index(),
        })
    }

    /// Appends per second over the last second.
    pub fn append_tps(&self) -> f64 {
        self.state.lock().map(|st| st.append_tps).unwrap_or(0.0)
    }

    pub fn set_role_listener(&self, listener: Option<RoleListener>) -> Result<()> {
        let current = {
            let st = self.lock()?;
            (
                reported_role(&st),
                st.core.term,
                st.core.leader.map(|p| p as i32).unwrap_or(-1),
            )
        };
        let has_listener = listener.is_some();
        // Taking this lock waits for a listener call in progress: after this returns the
        // old listener is never called again.
        *self.role_listener.lock().map_err(|_| super::lock_err())? = listener;
        if has_listener && !self.sched.role_event(self, current.0, current.1, current.2) {
            log::warn!(
                "{}/{}: role listener queue full",
                self.config.group,
                self.config.self_id
            );
        }
        Ok(())
    }

    /// Waits until this member knows a leader (itself or a peer), at most `timeout`;
    /// returns the leader's position in dLegerPeers. Woken by role and leader changes.
    pub fn wait_leader(&self, timeout: Duration) -> Result<i32> {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock()?;
        loop {
            if let Some(p) = st.core.leader {
                return Ok(p as i32);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "{}/{} knows no leader after {} ms (term {})",
                        self.config.group,
                        self.config.self_id,
                        timeout.as_millis(),
                        st.core.term
                    ),
                ));
            }
            st = self
                .role_cv
                .wait_timeout(st, deadline - now)
                .map_err(|_| super::lock_err())?
                .0;
            if let Some(err) = &st.failed {
                return Err(err.clone());
            }
            if self.is_closing() {
                return Err(Error::closed("the group member"));
            }
        }
    }

    /// On the leader: hands leadership to `peer_id` and waits until it leads.
    pub fn transfer_leadership(&self, peer_id: &str, timeout: Duration) -> Result<()> {
        let peer = self.config.peer_index(peer_id).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("'{peer_id}' is not one of the ids in dLegerPeers"),
            )
        })?;
        self.transfer_to(peer, timeout, true)
    }

    /// Hands leadership to `peer` and waits until it leads, at most `timeout`;
    /// `check_lag` refuses a peer further behind than `maxLeadershipTransferWaitIndex`.
    fn transfer_to(&self, peer: usize, timeout: Duration, check_lag: bool) -> Result<()> {
        let peer_id = self.config.peers[peer].id.as_str();
        let deadline = Instant::now() + timeout;
        let messages = {
            let mut st = self.lock()?;
            if st.core.leader == Some(peer)
                && (peer != self.config.self_index || st.core.is_leader())
            {
                return Ok(());
            }
            if !st.core.is_leader() {
                return Err(self.not_leader(&st));
            }
            let lag = st
                .store
                .last_index()
                .saturating_sub(st.core.progress[peer].match_index);
            if check_lag && lag > self.config.transfer_lag_entries_max {
                return Err(Error::new(
                    ErrorKind::Busy,
                    format!(
                        "{peer_id} is {lag} entries behind (maxLeadershipTransferWaitIndex={})",
                        self.config.transfer_lag_entries_max
                    ),
                ));
            }
            let mut fx = Default::default();
            let now = self.now_ms();
            {
                let MemberState { core, store, .. } = &mut *st;
                core.transfer_leadership(peer, now, &StoreView(store), &mut fx);
            }
            self.apply(&mut st, fx)?
        };
        self.send_all(messages);
        let mut st = self.lock()?;
        loop {
            if st.core.leader == Some(peer) && st.core.role != Role::Leader {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "{peer_id} did not take leadership within {} ms",
                        timeout.as_millis()
                    ),
                ));
            }
            let wait = (deadline - now).min(Duration::from_millis(50));
            st = self
                .role_cv
                .wait_timeout(st, wait)
                .map_err(|_| super::lock_err())?
                .0;
            if let Some(err) = &st.failed {
                return Err(err.clone());
            }
        }
    }

    /// A planned close of a leader: hands leadership to the most up-to-date follower
    /// that answered within the election timeout, waits (at most twice the election
    /// timeout) until it leads and this member's waiting appends are decided (they
    /// commit under the new leader). Appends arriving meanwhile are refused with
    /// NotLeader, so clients retry on the new leader. Gives up quietly when no follower
    /// is live or the deadline passes: the close then goes on as an unplanned one.
    pub(crate) fn hand_over_for_close(&self) {
        let on_engine_thread = std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with(super::sched::THREAD_PREFIX));
        if on_engine_thread || self.config.peers.len() < 2 {
            return;
        }
        let election_timeout_ms = self.config.election_timeout_ms();
        let timeout = Duration::from_millis(election_timeout_ms * 2);
        let deadline = Instant::now() + timeout;
        let target = {
            let Ok(st) = self.lock() else { return };
            if !st.core.is_leader() {
                return;
            }
            let now = self.now_ms();
            (0..self.config.peers.len())
                .filter(|p| *p != self.config.self_index)
                .filter(|p| {
                    now.saturating_sub(st.core.progress[*p].last_ack_ms) <= election_timeout_ms
                })
                .max_by_key(|p| st.core.progress[*p].match_index)
        };
        let Some(peer) = target else {
            log::warn!(
                "{}/{}: closing while leading with no live follower to hand leadership to",
                self.config.group,
                self.config.self_id
            );
            return;
        };
        let started = Instant::now();
        if let Err(err) = self.transfer_to(peer, timeout, false) {
            log::warn!(
                "{}/{}: closing without handing leadership over: {err}",
                self.config.group,
                self.config.self_id
            );
            return;
        }
        // The appends this member accepted are on the new leader, which commits them
        // with its first entry; wait for the commit index to reach them here.
        let Ok(mut st) = self.lock() else { return };
        while !st.waiters.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                log::warn!(
                    "{}/{}: closing with {} append(s) still undecided after handing leadership over",
                    self.config.group,
                    self.config.self_id,
                    st.waiters.len()
                );
                break;
            }
            st = match self
                .commit_cv
                .wait_timeout(st, (deadline - now).min(Duration::from_millis(20)))
            {
                Ok((st, _)) => st,
                Err(_) => return,
            };
        }
        log::info!(
            "{}/{}: handed leadership to {} in {} ms before closing",
            self.config.group,
            self.config.self_id,
            self.config.peers[peer].id,
            started.elapsed().as_millis()
        );
    }

    /// Leaves the engine's threads, completes waiting appends with `Closed`,
    /// flushes and releases the store. A leader first hands leadership over
    /// ([`Member::hand_over_for_close`]). Idempotent.
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.hand_over_for_close();
        self.closing.store(true, Ordering::Release);
        self.transport
            .unregister(&self.config.group, self.config.self_index as u8);
        self.sched.remove_member(self);
        self.wake_all();
        // Wait for a role listener call in progress (unless this is that call): none
        // comes after close.
        if std::thread::current().name() != Some(super::sched::ROLE_THREAD) {
            if let Ok(mut listener) = self.role_listener.lock() {
                listener.take();
            }
        }
        let waiters = match self.state.lock() {
            Ok(mut st) => {
                let waiters = st.waiters.take_all();
                if let Err(err) = st.store.shutdown() {
                    log::warn!(
                        "{}/{}: closing the store: {err}",
                        self.config.group,
                        self.config.self_id
                    );
                }
                waiters
            }
            Err(poisoned) => {
                let mut st = poisoned.into_inner();
                let _ = st.store.shutdown();
                st.waiters.take_all()
            }
        };
        // Completions an engine thread took out before the close run to their end first.
        self.wait_completions();
        // A pending entry may already be on other members and commit there: its outcome
        // is unknown, never "failed".
        for (_, waiter) in waiters {
            self.count_append_error(ErrorKind::OutcomeUnknown);
            (waiter.done)(Err(Error::new(
                ErrorKind::OutcomeUnknown,
                "the member closed before the entry was decided; it may still commit on \
                 the other members",
            )));
        }
        log::info!("{}/{}: closed", self.config.group, self.config.self_id);
    }
}

/// The role a host sees: a member that knows no leader is a candidate (RMQRAFT_ROLE_CANDIDATE
/// means "no leader known"), including a follower that has not heard from one yet, as
/// every member is when it opens.
pub(super) fn reported_role(st: &MemberState) -> Role {
    match (st.core.role, st.core.leader) {
        (Role::Follower, None) => Role::Candidate,
        (role, _) => role,
    }
}
