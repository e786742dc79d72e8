//! The member's threads: state (elections), EntryDispatcher, QuorumAckChecker,
//! EntryHandler and the role listener's thread.

use super::{Member, MemberState, StateInput, StoreView, Waiter, TICK_MS};
use crate::core::Decided;
use crate::error::{Error, ErrorKind};
use crate::net::msg::{Message, PushRequest, PushResponse};
use crate::types::Role;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How long an idle thread sleeps before it looks at the closing flag again.
const IDLE_WAIT_MS: u64 = 50;
/// Election timeouts of silence after which a leader re-dials a follower.
const LINK_SILENCE_TIMEOUTS: u64 = 4;
/// Pushes the EntryHandler applies under one lock.
const HANDLER_BATCH_MAX: usize = 256;
/// How long the EntryHandler waits after a push found the disk full.
const DISK_FULL_PAUSE: Duration = Duration::from_millis(100);

impl Member {
    pub(super) fn state_loop(&self, rx: Receiver<StateInput>) {
        let mut last_tick = 0u64;
        let mut last_second = Instant::now();
        let mut appends_at_last_second = 0u64;
        let mut last_retention_hour = None;
        while !self.is_closing() {
            match rx.recv_timeout(Duration::from_millis(TICK_MS)) {
                Ok(input) => self.on_state_input(input),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let now = self.now_ms();
            if now >= last_tick + TICK_MS {
                last_tick = now;
                if self
                    .step(|st, now| st.core.tick(now, &StoreView(&st.store)))
                    .is_err()
                {
                    break;
                }
            }
            if last_second.elapsed() >= Duration::from_secs(1) {
                let elapsed = last_second.elapsed().as_secs_f64();
                last_second = Instant::now();
                let total = self.appends_total.load(Ordering::Relaxed);
                let rate = (total - appends_at_last_second) as f64 / elapsed;
                appends_at_last_second = total;
                self.housekeeping(rate, &mut last_retention_hour);
            }
        }
    }

    fn on_state_input(&self, input: StateInput) {
        match input {
            StateInput::Vote(from, req) => {
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
                let _ = self.step(|st, now| {
                    st.core
                        .on_timeout_now(from, term, now, &StoreView(&st.store))
                });
            }
        }
    }

    /// Once a second: append rate, commit checkpoint, retention at `deleteWhen`.
    fn housekeeping(&self, rate: f64, last_retention_hour: &mut Option<u64>) {
        let Ok(mut st) = self.lock() else { return };
        st.append_tps = rate;
        let durable_commit = st.core.commit_index.min(st.store.flushed_index());
        st.store.save_commit_checkpoint(durable_commit);
        let unix_hours = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() / 3600)
            .unwrap_or(0);
        let hour_of_day = local_hour_of_day();
        if self.config.delete_when_hours.contains(&hour_of_day)
            && *last_retention_hour != Some(unix_hours)
        {
            *last_retention_hour = Some(unix_hours);
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
            let keep_from = keep_from.min(st.core.commit_index + 1);
            match st
                .store
                .apply_retention(self.config.file_reserved_hours, keep_from)
            {
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
        }
    }

    pub(super) fn dispatch_loop(&self, peer: usize) {
        let wait =
            Duration::from_millis((self.config.heartbeat_interval_ms / 4).clamp(1, IDLE_WAIT_MS));
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        // Long enough that a busy follower is not re-dialled (a reconnect drops frames in
        // flight), short enough to bring a half-open link back in about a second.
        let silence_ms = self.config.election_timeout_ms() * LINK_SILENCE_TIMEOUTS;
        let mut last_link_reset_ms = 0u64;
        loop {
            if self.is_closing() || st.failed.is_some() {
                return;
            }
            let now = self.now_ms();
            // A follower silent for several election timeouts may sit behind a half-open
            // connection that writes still succeed on: re-dial it, at most once per period.
            if st.core.is_leader()
                && now >= st.core.progress[peer].last_ack_ms + silence_ms
                && now >= last_link_reset_ms + silence_ms
            {
                last_link_reset_ms = now;
                self.transport.reset_link(self.config.peers[peer].addr);
            }
            let plan = {
                let MemberState { core, store, .. } = &mut *st;
                core.next_push(peer, now, &StoreView(store))
            };
            let Some(plan) = plan else {
                // Counted under the lock, so an appender that locks after this sees it.
                self.dispatchers_idle.fetch_add(1, Ordering::AcqRel);
                let woken = self.dispatch_cv.wait_timeout(st, wait);
                self.dispatchers_idle.fetch_sub(1, Ordering::AcqRel);
                st = match woken {
                    Ok((guard, _)) => guard,
                    Err(_) => return,
                };
                continue;
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
                // Nothing readable: wait rather than spin; a corrupt entry on the leader
                // is reported above and the push retried after the timeout.
                st = match self
                    .dispatch_cv
                    .wait_timeout(st, Duration::from_millis(IDLE_WAIT_MS))
                {
                    Ok((guard, _)) => guard,
                    Err(_) => return,
                };
                continue;
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
            st = match self.state.lock() {
                Ok(guard) => guard,
                Err(_) => return,
            };
        }
    }

    /// QuorumAckChecker: folds the local flush into the commit index (leader), reports
    /// flushes to the leader (follower), completes waiting appends.
    pub(super) fn ack_loop(&self) {
        while !self.is_closing() {
            let _ = self
                .ack_bell
                .1
                .recv_timeout(Duration::from_millis(IDLE_WAIT_MS));
            if self.is_closing() {
                break;
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
                let messages = match self.apply(&mut st, fx) {
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
                messages
            };
            self.send_all(messages);
            if let Some((leader, request_id, resp)) = flush_ack {
                self.counters
                    .flush_acks_sent
                    .fetch_add(1, Ordering::Relaxed);
                self.send(leader, request_id, Message::PushResp(resp));
            }
            for (waiter, result) in done {
                (waiter.done)(result);
            }
        }
    }

    /// EntryHandler: applies pushes from the leader, in order, and answers them.
    pub(super) fn handler_loop(&self, rx: Receiver<(usize, u64, PushRequest)>) {
        while !self.is_closing() {
            let first = match rx.recv_timeout(Duration::from_millis(IDLE_WAIT_MS)) {
                Ok(push) => push,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut batch = vec![first];
            while batch.len() < HANDLER_BATCH_MAX {
                match rx.try_recv() {
                    Ok(push) => batch.push(push),
                    Err(_) => break,
                }
            }
            match self.apply_pushes(batch) {
                Ok((answers, disk_full)) => {
                    for (to, request_id, resp) in answers {
                        self.send(to, request_id, Message::PushResp(resp));
                    }
                    if disk_full {
                        // The leader resends at once; pace it until space returns.
                        std::thread::sleep(DISK_FULL_PAUSE);
                    }
                }
                Err(err) => {
                    log::error!(
                        "{}/{}: applying pushes failed: {err}",
                        self.config.group,
                        self.config.self_id
                    );
                    self.fail(err);
                    break;
                }
            }
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
                                st.core.commit_index =
                                    st.core.commit_index.min(last).max(commit_before);
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
            if !st.core.may_speak() {
                // No acknowledgement in a term not yet saved; the leader resends.
                answers.clear();
                st.deferred_request = None;
            }
            if st.core.commit_index > st.completed_index || !st.waiters.is_empty() {
                let _ = self.ack_bell.0.try_send(());
            }
            messages
        };
        self.send_all(messages);
        Ok((answers, disk_full))
    }

    /// Calls the host's role listener, in order, outside every engine lock.
    pub(super) fn role_loop(&self, rx: Receiver<(Role, u64, i32)>) {
        while !self.is_closing() {
            match rx.recv_timeout(Duration::from_millis(IDLE_WAIT_MS)) {
                Ok((role, term, leader)) => {
                    let Ok(listener) = self.role_listener.lock() else {
                        return;
                    };
                    if let Some(listener) = listener.as_ref() {
                        listener(role, term, leader);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
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
