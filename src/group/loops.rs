//! What the engine's threads (`sched.rs`) do for one member: a tick and the votes
//! (state thread), one push (EntryDispatcher), one round of the QuorumAckChecker, a
//! batch of pushes or a push answer (EntryHandler), housekeeping and the role listener.
//! Each call does its part and returns; none waits for another member.

use super::sched::StateInput;
use super::{Member, MemberState, StoreView, Waiter};
use crate::core::Decided;
use crate::error::{Error, ErrorKind};
use crate::net::msg::{Message, PushRequest, PushResponse};
use crate::types::Role;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Pushes the EntryHandler applies under one lock.
const HANDLER_BATCH_MAX: usize = 256;
/// How long a member drops pushes after one found the disk full (the leader resends).
const DISK_FULL_PAUSE_MS: u64 = 100;

impl Member {
    /// A timer fired: the core decides (elections, step-down); returns when the next
    /// tick is due, or None once the member is closing or failed.
    pub(super) fn on_tick(&self) -> Option<u64> {
        if self.is_closing() {
            return None;
        }
        let mut next = None;
        let may_campaign = self.old_log_may_campaign();
        self.step(|st, now| {
            if !may_campaign && !st.core.is_leader() {
                // Waiting for the old logs to be compared (or refused for good): no
                // campaign; looked at again within the election timeout.
                next = Some(now + self.config.election_timeout_ms().max(2) / 2);
                return crate::core::Effects::default();
            }
            let fx = st.core.tick(now, &StoreView(&st.store));
            next = Some(st.core.next_tick_ms(now));
            fx
        })
        .ok()?;
        next
    }

    pub(super) fn on_state_input(&self, input: StateInput) {
        match input {
            StateInput::Vote(from, req) => {
                if !self.old_log_may_vote_for(from) {
                    log::debug!(
                        "{}/{}: no {}vote for {} in term {}: its old log is not known to \
                         match this member's",
                        self.config.group,
                        self.config.self_id,
                        if req.pre_vote { "pre-" } else { "" },
                        self.config.peers[from].id,
                        req.term
                    );
                    return;
                }
                let mut answer = None;
                let stepped = self.step(|st, now| {
                    let (fx, resp, refusal) =
                        st.core
                            .on_vote_request(from, &req, now, &StoreView(&st.store));
                    if let Some(why) = refusal {
                        log::debug!(
                            "{}/{}: refused {}vote for {} in term {}: {why:?}",
                            self.config.group,
                            self.config.self_id,
                            if req.pre_vote { "pre-" } else { "" },
                            self.config.peers[from].id,
                            req.term
                        );
                    }
                    answer = Some(resp);
                    fx
                });
                // A vote given while the term and vote are unsaved is not sent.
                let speaks = self.state.lock().is_ok_and(|st| st.core.may_speak());
                let answer = answer.filter(|_| speaks);
                if let (Ok(()), Some(resp)) = (stepped, answer) {
                    self.send(from, 0, Message::VoteResp(resp));
                }
            }
            StateInput::VoteResp(from, resp) => {
                let _ = self.step(|st, now| {
                    st.core
                        .on_vote_response(from, &resp, now, &StoreView(&st.store))
                });
            }
            StateInput::TimeoutNow(from, term) => {
                if !self.old_log_may_campaign() {
                    return;
                }
                let _ = self.step(|st, now| {
                    st.core
                        .on_timeout_now(from, term, now, &StoreView(&st.store))
                });
            }
        }
    }

    /// Once a second, on the member's EntryHandler: append rate, commit checkpoint,
    /// retention at `deleteWhen`.
    pub(super) fn housekeeping(&self) {
        self.old_log_ask();
        let Ok(mut st) = self.lock() else { return };
        let elapsed = st.rate_since.elapsed().as_secs_f64().max(1e-3);
        let total = self.appends_total.load(Ordering::Relaxed);
        st.append_tps = (total - st.rate_appends) as f64 / elapsed;
        st.rate_appends = total;
        st.rate_since = Instant::now();
        let durable_commit = st.core.commit_index.min(st.store.flushed_index());
        st.store.save_commit_checkpoint(durable_commit);
        let unix_hours = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() / 3600)
            .unwrap_or(0);
        let hour_of_day = local_hour_of_day();
        if self.config.delete_when_hours.contains(&hour_of_day)
            && st.retention_hour != Some(unix_hours)
        {
            st.retention_hour = Some(unix_hours);
            let _ = self.retain(&mut st, self.config.file_reserved_hours);
        }
    }

    /// Deletes segments older than `file_reserved_hours` that no member and no reader
    /// above the group (`hold_retention`) still needs; returns how many.
    fn retain(&self, st: &mut MemberState, file_reserved_hours: u64) -> crate::Result<usize> {
        // Never delete what a member may still need: on the leader the slowest
        // member's match point, elsewhere the commit index.
        let keep_from = if st.core.is_leader() {
            st.core
                .progress
                .iter()
                .map(|p| p.match_index)
                .min()
                .unwrap_or(0)
                + 1
        } else {
            st.core.commit_index + 1
        };
        let keep_from = keep_from
            .min(st.core.commit_index + 1)
            .min(self.retention_keep_from.load(Ordering::Acquire));
        let r = st.store.apply_retention(file_reserved_hours, keep_from);
        match &r {
            Ok(0) => {}
            Ok(n) => log::info!(
                "{}/{}: retention deleted {n} segment(s)",
                self.config.group,
                self.config.self_id
            ),
            Err(err) => log::warn!(
                "{}/{}: retention failed: {err}",
                self.config.group,
                self.config.self_id
            ),
        }
        r
    }

    /// Keeps every entry from `keep_from` on through retention (`u64::MAX`: no hold).
    pub fn hold_retention(&self, keep_from: u64) {
        self.retention_keep_from.store(keep_from, Ordering::Release);
    }

    /// Runs retention now, as at `deleteWhen`, with `file_reserved_hours` in place of
    /// `fileReservedTime`; returns the segments deleted.
    pub fn apply_retention_now(&self, file_reserved_hours: u64) -> crate::Result<usize> {
        let mut st = self.lock()?;
        self.retain(&mut st, file_reserved_hours)
    }

    /// EntryDispatcher: one push to `peer` if the core has one due; returns whether one
    /// went out (the dispatcher then gives this member another turn).
    pub(super) fn dispatch_once(&self, peer: usize) -> bool {
        let Ok(mut st) = self.state.lock() else {
            return false;
        };
        if self.is_closing() || st.failed.is_some() {
            return false;
        }
        let now = self.now_ms();
        let plan = {
            let MemberState { core, store, .. } = &mut *st;
            core.next_push(peer, now, &StoreView(store))
        };
        let Some(plan) = plan else {
            return false;
        };
        let mut entries = Vec::new();
        let mut bytes = 0usize;
        let mut index = plan.from_index;
        while index <= plan.to_index && bytes < self.config.push_batch_bytes_max {
            match st.store.read(index) {
                Ok((entry, _)) => {
                    bytes += entry.body.len() + 32;
                    entries.push(entry);
                }
                Err(err) => {
                    log::error!(
                        "{}/{}: cannot read entry {index} to push to {}: {err}",
                        self.config.group,
                        self.config.self_id,
                        self.config.peers[peer].id
                    );
                    break;
                }
            }
            index += 1;
        }
        if plan.from_index <= plan.to_index && entries.is_empty() {
            // Nothing readable: a corrupt entry on the leader is reported above and the
            // push retried by a later scan.
            return false;
        }
        let sent_to = plan.from_index - 1 + entries.len() as u64;
        self.counters.pushes_sent.fetch_add(1, Ordering::Relaxed);
        self.counters
            .entries_pushed
            .fetch_add(entries.len() as u64, Ordering::Relaxed);
        st.core.push_sent(peer, &plan, sent_to, now);
        drop(st);
        let push = PushRequest {
            term: plan.term,
            prev_index: plan.prev_index,
            prev_term: plan.prev_term,
            commit_index: plan.commit_index,
            entries,
        };
        self.send(peer, plan.request_id, Message::Push(push));
        true
    }

    /// A push answer from `from` (on the EntryHandler, never on the connection reader).
    pub(super) fn on_push_response(&self, from: usize, request_id: u64, resp: &PushResponse) {
        let _ = self.step(|st, now| {
            let MemberState { core, store, .. } = st;
            core.on_push_response(from, request_id, resp, now, &StoreView(store))
        });
    }

    /// Applies a push answer on the connection reader if the member's lock is free and
    /// the answer carries no newer term (so nothing is saved: the core only moves the
    /// peer's progress and the commit index). Returns false when it must go to the
    /// EntryHandler instead.
    pub(super) fn push_response_inline(
        &self,
        from: usize,
        request_id: u64,
        resp: &PushResponse,
    ) -> bool {
        let Ok(mut st) = self.state.try_lock() else {
            return false;
        };
        if self.is_closing() || st.failed.is_some() || resp.term > st.core.term {
            return false;
        }
        let now = self.now_ms();
        let fx = {
            let MemberState { core, store, .. } = &mut *st;
            core.on_push_response(from, request_id, resp, now, &StoreView(store))
        };
        if fx.persist_hard_state || fx.append_noop {
            // Not expected without a newer term; carried out all the same.
            log::debug!(
                "{}/{}: a push answer of this term asked for storage",
                self.config.group,
                self.config.self_id
            );
        }
        match self
            .apply(&mut st, fx)
            .and_then(|m| self.check_core(&mut st).map(|()| m))
        {
            Ok(messages) => {
                drop(st);
                self.send_all(messages);
            }
            Err(err) => {
                drop(st);
                self.fail(err);
            }
        }
        true
    }

    /// Is this member leading (for the link check)?
    pub(super) fn is_leading(&self) -> bool {
        !self.is_closing()
            && self
                .state
                .lock()
                .map(|st| st.failed.is_none() && st.core.is_leader())
                .unwrap_or(false)
    }

    /// Does a waiting append's deadline lie in the past?
    pub(super) fn has_expired_waiters(&self) -> bool {
        let Ok(st) = self.state.lock() else {
            return false;
        };
        // Deadlines follow the index order (one wait bound for every append).
        st.waiters
            .first()
            .is_some_and(|w| w.deadline <= Instant::now())
    }

    /// The commit index moved: the commit hook (the producer table) follows it.
    pub(super) fn follow_commit(&self) {
        self.follow_queued.store(false, Ordering::Release);
        if self.is_closing() {
            return;
        }
        if let Some(hook) = self.commit_hook.get() {
            hook();
        }
    }

    /// QuorumAckChecker: folds the local flush into the commit index (leader), reports
    /// flushes to the leader (follower), completes waiting appends.
    pub(super) fn ack_round(self: &std::sync::Arc<Self>) {
        {
            if self.is_closing() {
                return;
            }
            let mut done: Vec<(Waiter, Result<crate::types::EntryMeta, Error>)> = Vec::new();
            let mut flush_ack = None;
            let messages = {
                let Ok(mut st) = self.state.lock() else {
                    return;
                };
                if st.failed.is_some() {
                    return;
                }
                if let Some(err) = st.store.failure() {
                    // A write or sync error is permanent: fail the member, so that a
                    // leader stops leading and another takes over within the election
                    // timeout (its heartbeats would go on from the tail cache).
                    drop(st);
                    log::error!(
                        "{}/{}: the store failed: {err}",
                        self.config.group,
                        self.config.self_id
                    );
                    self.fail(err);
                    return;
                }
                let flushed = st.store.flushed_index();
                let fx = {
                    let MemberState { core, store, .. } = &mut *st;
                    core.on_local_progress(flushed, &StoreView(store))
                };
                let messages = match self
                    .apply(&mut st, fx)
                    .and_then(|m| self.check_core(&mut st).map(|()| m))
                {
                    Ok(m) => m,
                    Err(err) => {
                        drop(st);
                        self.fail(err);
                        return;
                    }
                };
                if st.core.role == Role::Follower
                    && flushed > st.flush_reported
                    && st.core.may_speak()
                {
                    if let (Some(leader), (term, matched)) = (st.core.leader, st.follower_match) {
                        if term == st.core.term && matched > 0 {
                            st.flush_reported = flushed;
                            let request_id = match st.deferred_request.take() {
                                Some((to, id)) if to == leader => id,
                                _ => 0,
                            };
                            let resp = PushResponse {
                                term,
                                success: true,
                                match_index: matched,
                                flushed_index: flushed,
                                hint_index: 0,
                                last_index: st.store.last_index(),
                            };
                            flush_ack = Some((leader, request_id, resp));
                        }
                    }
                }
                let commit = st.core.commit_index;
                if commit > st.commit_notified {
                    st.commit_notified = commit;
                    self.commit_cv.notify_all();
                    if self.commit_hook.get().is_some() {
                        self.follow_again();
                    }
                }
                let decided = {
                    let MemberState { waiters, store, .. } = &mut *st;
                    waiters.take_decided(commit, &StoreView(store))
                };
                for ((index, term), waiter, decided) in decided {
                    let result = match decided {
                        Decided::Committed => Ok(waiter.meta),
                        Decided::Replaced { committed_term } => Err(Error::new(
                            ErrorKind::NotLeader,
                            format!(
                                "entry {index} of term {term} was replaced by the committed \
                                 entry of term {committed_term}; not committed"
                            ),
                        )),
                        Decided::Unknown => Err(Error::new(
                            ErrorKind::OutcomeUnknown,
                            format!(
                                "entry {index} is committed but no longer held here; read it \
                                 from a member that holds it"
                            ),
                        )),
                    };
                    done.push((waiter, result));
                }
                st.completed_index = st.completed_index.max(commit);
                let now = Instant::now();
                for (_, waiter) in st.waiters.take_expired(|w| w.deadline <= now) {
                    let err = Error::new(
                        ErrorKind::Timeout,
                        format!(
                            "entry {} not committed within maxWaitAckTimeMs={}; outcome unknown",
                            waiter.meta.index, self.config.append_wait_ms_max
                        ),
                    );
                    done.push((waiter, Err(err)));
                }
                if !done.is_empty() {
                    self.begin_completions();
                }
                messages
            };
            self.send_all(messages);
            if let Some((leader, request_id, resp)) = flush_ack {
                self.counters
                    .flush_acks_sent
                    .fetch_add(1, Ordering::Relaxed);
                self.send(leader, request_id, Message::PushResp(resp));
            }
            if !done.is_empty() {
                for (waiter, result) in done {
                    if let Err(err) = &result {
                        self.count_append_error(err.kind());
                    }
                    (waiter.done)(result);
                }
                self.end_completions();
            }
        }
    }

    /// EntryHandler: applies a batch of pushes from the leader, in order, and answers
    /// them. After a push found the disk full, pushes are dropped for a while (the
    /// leader resends) rather than the handler thread, shared with other members, paused.
    pub(super) fn handle_pushes(&self, batch: Vec<(usize, u64, PushRequest)>) {
        if self.is_closing() {
            return;
        }
        let now = self.now_ms();
        if now < self.paused_until_ms.load(Ordering::Relaxed) {
            return;
        }
        let mut batch = batch;
        while !batch.is_empty() {
            let rest = batch.split_off(batch.len().min(HANDLER_BATCH_MAX));
            match self.apply_pushes(batch) {
                Ok((answers, disk_full)) => {
                    for (to, request_id, resp) in answers {
                        self.send(to, request_id, Message::PushResp(resp));
                    }
                    if disk_full {
                        self.paused_until_ms
                            .store(self.now_ms() + DISK_FULL_PAUSE_MS, Ordering::Relaxed);
                        return;
                    }
                }
                Err(err) => {
                    log::error!(
                        "{}/{}: applying pushes failed: {err}",
                        self.config.group,
                        self.config.self_id
                    );
                    if err.kind() != ErrorKind::Closed {
                        self.fail(err);
                    }
                    return;
                }
            }
            batch = rest;
        }
    }

    /// Applies pushes and returns their answers, and whether the disk was full.
    #[allow(clippy::type_complexity)]
    fn apply_pushes(
        &self,
        batch: Vec<(usize, u64, PushRequest)>,
    ) -> Result<(Vec<(usize, u64, PushResponse)>, bool), Error> {
        self.counters.handler_rounds.fetch_add(1, Ordering::Relaxed);
        self.counters
            .pushes_applied
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let mut answers = Vec::with_capacity(batch.len());
        let mut disk_full = false;
        let messages = {
            let mut st = self.lock()?;
            let mut messages = Vec::new();
            for (from, request_id, req) in batch {
                let now = self.now_ms();
                let commit_before = st.core.commit_index;
                let (fx, mut outcome) = {
                    let MemberState { core, store, .. } = &mut *st;
                    core.on_push(from, &req, now, &StoreView(store))
                };
                messages.extend(self.apply(&mut st, fx)?);
                if let Some(from_index) = outcome.truncate_from {
                    // Waiting appends from here on stay undecided: a later leader may
                    // still hold and commit them (they are keyed by index and term).
                    st.store.truncate_suffix(from_index)?;
                    st.flush_reported = st.flush_reported.min(from_index - 1);
                }
                if let Some(why) = &outcome.refused {
                    // The leader resends what was refused: one line per push at debug
                    // for an entry over maxEntrySize, which repeats until configs agree.
                    let level = match why {
                        crate::core::PushRefusal::TooLarge { .. } => log::Level::Debug,
                        _ => log::Level::Warn,
                    };
                    log::log!(
                        level,
                        "{}/{}: push from {} refused: {why}",
                        self.config.group,
                        self.config.self_id,
                        self.config.peers[from].id
                    );
                }
                if let Some(first) = outcome.append_from {
                    for entry in &req.entries[first..outcome.append_end] {
                        match st.store.append(entry) {
                            Ok(_) => {}
                            Err(err) if err.kind() == ErrorKind::DiskFull => {
                                if !disk_full {
                                    log::warn!(
                                        "{}/{}: cannot append entry {}: {err}",
                                        self.config.group,
                                        self.config.self_id,
                                        entry.index
                                    );
                                }
                                disk_full = true;
                                // Claim (and commit) only what this member holds.
                                let last = st.store.last_index();
                                st.core.clamp_commit_to_log(commit_before, last);
                                if let Some(resp) = outcome.response.as_mut() {
                                    resp.match_index = resp.match_index.min(last);
                                }
                                break;
                            }
                            Err(err) => return Err(err),
                        }
                    }
                }
                let Some(mut resp) = outcome.response else {
                    continue;
                };
                if resp.success {
                    let term = st.core.term;
                    let (known_term, known) = st.follower_match;
                    st.follower_match = (
                        term,
                        if known_term == term {
                            known.max(resp.match_index)
                        } else {
                            resp.match_index
                        },
                    );
                }
                resp.last_index = st.store.last_index();
                resp.flushed_index = st.store.flushed_index();
                // Under SYNC_FLUSH an answer before the flush cannot move the commit
                // index: the flush acknowledgement answers this push (by its request id)
                // instead, one message per flush round rather than two per push.
                let defer =
                    resp.success && self.sync_flush() && resp.flushed_index < resp.last_index;
                if defer {
                    st.deferred_request = Some((from, request_id));
                    continue;
                }
                if resp.success {
                    st.flush_reported = st.flush_reported.max(resp.flushed_index);
                }
                answers.push((from, request_id, resp));
            }
            self.check_core(&mut st)?;
            if !st.core.may_speak() {
                // No acknowledgement in a term not yet saved; the leader resends.
                answers.clear();
                st.deferred_request = None;
            }
            if st.core.commit_index > st.completed_index || !st.waiters.is_empty() {
                self.bell.ring();
            }
            messages
        };
        self.send_all(messages);
        Ok((answers, disk_full))
    }

    /// Calls the host's role listener (on the engine's role thread, in order, outside
    /// every member lock).
    pub(super) fn call_role_listener(&self, role: Role, term: u64, leader: i32) {
        if self.is_closing() {
            return;
        }
        let Ok(listener) = self.role_listener.lock() else {
            return;
        };
        if let Some(listener) = listener.as_ref() {
            listener(role, term, leader);
        }
    }
}

/// The hour of the day (0-23) in local time, as `deleteWhen` means it.
fn local_hour_of_day() -> u8 {
    let now = unsafe { libc::time(std::ptr::null_mut()) };
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: localtime_r writes only into `tm`, which lives on this stack frame.
    let ok = unsafe { !libc::localtime_r(&now, &mut tm).is_null() };
    if ok {
        tm.tm_hour as u8
    } else {
        0
    }
}
