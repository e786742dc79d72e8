//! One member's Raft state and every decision it makes.
//!
//! Inputs are events (a tick with the current time, a message, a flushed index); outputs
//! are [`Effects`] the caller carries out in order: first storage (truncate, append,
//! persist the hard state), then messages. No clock, thread or I/O lives here, so the
//! same code runs in the threads of a group and in the seeded simulator.

use super::msg::{PushRequest, PushResponse, VoteRequest, VoteResponse};
use super::quorum::{majority, quorum_index};
use crate::types::Role;

/// Read access to the member's log, as the decisions need it.
pub trait LogView {
    /// 0 when empty.
    fn last_index(&self) -> u64;
    /// Term of `index`; `Some(0)` for 0; `None` when not held.
    fn term_at(&self, index: u64) -> Option<u64>;
    fn last_term(&self) -> u64 {
        self.term_at(self.last_index()).unwrap_or(0)
    }
}

/// Timing and policy of one member.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub members: usize,
    pub self_index: usize,
    /// A follower that heard nothing from a leader for a random time in
    /// `[election_timeout_ms, 2 * election_timeout_ms)` starts a (pre-)vote.
    pub election_timeout_ms: u64,
    /// The leader pushes at least this often to each follower.
    pub heartbeat_interval_ms: u64,
    /// An unanswered push older than this sends the dispatcher back to COMPARE.
    pub push_timeout_ms: u64,
    /// Pushes in flight per follower.
    pub push_window_max: usize,
    /// Entries per push.
    pub push_entries_max: u64,
    /// SYNC_FLUSH: only what a quorum has flushed commits.
    pub sync_flush: bool,
    /// Members that should lead when they are healthy and caught up.
    pub preferred_leaders: Vec<usize>,
    /// `maxEntrySize` of this member: a pushed entry with a larger body is not stored
    /// (the leader may allow more); the push is answered for what comes before it.
    pub entry_size_bytes_max: u64,
}

/// A dispatcher's state toward one follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// Probing for the point where the follower's log matches ours (no entries sent).
    Compare,
    /// Streaming entries, pipelined.
    Append,
}

/// What the leader knows of one member.
#[derive(Debug, Clone)]
pub struct Progress {
    pub state: PeerState,
    /// Highest index known to match the leader's log. Invariant: `match_index < next_index`.
    pub match_index: u64,
    /// Highest index known durable on the member (and matching).
    pub flushed_index: u64,
    /// Next index to send.
    pub next_index: u64,
    /// Pushes sent and not answered, oldest first: (request id, sent at ms).
    inflight: std::collections::VecDeque<(u64, u64)>,
    /// Responses to requests below this id predate the last reset and change no state.
    reset_request_id: u64,
    next_request_id: u64,
    last_sent_ms: u64,
    /// The commit index carried by the last push sent.
    commit_sent: u64,
    /// Last time the member answered in this term (check-quorum).
    pub last_ack_ms: u64,
}

impl Progress {
    fn new(last_index: u64, now_ms: u64) -> Progress {
        Progress {
            state: PeerState::Compare,
            match_index: 0,
            flushed_index: 0,
            next_index: last_index + 1,
            inflight: Default::default(),
            reset_request_id: 1,
            next_request_id: 1,
            last_sent_ms: 0,
            commit_sent: 0,
            last_ack_ms: now_ms,
        }
    }

    fn reset_to_compare(&mut self) {
        self.state = PeerState::Compare;
        self.next_index = self.match_index + 1;
        self.inflight.clear();
        self.reset_request_id = self.next_request_id;
    }

    pub fn inflight(&self) -> usize {
        self.inflight.len()
    }
}

/// A push the dispatcher should send: entries `from_index..=to_index` (none when
/// `from_index > to_index`) after `prev_index`/`prev_term`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushPlan {
    pub request_id: u64,
    pub term: u64,
    pub prev_index: u64,
    pub prev_term: u64,
    pub from_index: u64,
    pub to_index: u64,
    pub commit_index: u64,
}

/// A message for one peer.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    Vote(VoteRequest),
    VoteResp(VoteResponse),
    TimeoutNow { term: u64 },
}

/// What the caller must do after an event, in this order.
#[derive(Debug, Default)]
pub struct Effects {
    /// Term or vote changed: persist (fsync) before sending anything.
    pub persist_hard_state: bool,
    /// Role, term or leader changed: tell the role listener.
    pub role_changed: bool,
    /// Became leader: append a no-op entry of the new term.
    pub append_noop: bool,
    /// The commit index moved.
    pub commit_advanced: bool,
    /// The dispatchers have something to send (new leader, reset, transfer).
    pub wake_dispatchers: bool,
    /// Messages to send, by peer position.
    pub messages: Vec<(usize, Outgoing)>,
}

/// What a follower does with a push.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PushOutcome {
    /// Remove entries from this index on before appending.
    pub truncate_from: Option<u64>,
    /// Append `entries[append_from..append_end]` of the request.
    pub append_from: Option<usize>,
    /// End (exclusive) of the entries to append: an entry this member cannot store and
    /// all after it are left out, and the answer claims only what comes before.
    pub append_end: usize,
    /// Why (part of) the push was refused, for the log; the member stays healthy.
    pub refused: Option<PushRefusal>,
    /// The answer, except `flushed_index` and `last_index`, which the caller fills after
    /// carrying out the storage changes.
    pub response: Option<PushResponse>,
}

/// Why a push was refused in whole or in part. A leader that sends such a push is wrong
/// (or runs with a larger `maxEntrySize`): the follower refuses it and keeps working,
/// rather than fail on the store's own checks and fail again after every reopen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushRefusal {
    /// Entry `index` is not at `prev_index + 1 + position`.
    NotContiguous { position: usize, index: u64 },
    /// Entry `index` has a term above the request's, or below the one before it.
    BadTerm { index: u64, term: u64 },
    /// Entry `index` has a body of `size_bytes`, over this member's `maxEntrySize`.
    TooLarge { index: u64, size_bytes: u64 },
}

impl std::fmt::Display for PushRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushRefusal::NotContiguous { position, index } => write!(
                f,
                "push entry #{position} has index {index}, not contiguous from prev_index + 1"
            ),
            PushRefusal::BadTerm { index, term } => write!(
                f,
                "push entry {index} has term {term}, above the push's term or below the entry before it"
            ),
            PushRefusal::TooLarge { index, size_bytes } => write!(
                f,
                "push entry {index} has a body of {size_bytes} bytes, over this member's maxEntrySize"
            ),
        }
    }
}

/// Checks the shape of a push: entries contiguous from `prev_index + 1`, terms not above
/// the push's term and never going down. (That the first is not below `prev_term` is
/// checked where `prev_term` is known to match this member's log.)
pub fn validate_push(req: &PushRequest) -> Result<(), PushRefusal> {
    let mut term_before = 0;
    for (position, entry) in req.entries.iter().enumerate() {
        if entry.index != req.prev_index + 1 + position as u64 {
            return Err(PushRefusal::NotContiguous {
                position,
                index: entry.index,
            });
        }
        if entry.term > req.term || entry.term < term_before {
            return Err(PushRefusal::BadTerm {
                index: entry.index,
                term: entry.term,
            });
        }
        term_before = entry.term;
    }
    Ok(())
}

/// Why a vote request was refused (for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoteRefusal {
    StaleTerm,
    LeaderLease,
    AlreadyVoted,
    LogBehind,
    Repairing,
    /// This member's term or vote is not saved yet (disk full): it promises nothing.
    HardStateUnsaved,
}

/// One member's consensus state.
pub struct RaftCore {
    pub config: CoreConfig,
    /// Invariant: never decreases; persisted before acted on.
    pub term: u64,
    pub voted_for: Option<usize>,
    pub role: Role,
    pub leader: Option<usize>,
    /// Invariant: `commit_index` never decreases, and every entry up to it is held by a
    /// quorum (durably under SYNC_FLUSH).
    pub commit_index: u64,
    /// While `last_index < repair_target` this member neither votes nor campaigns: it
    /// lost entries it had made durable and knew committed (corruption) and must first
    /// get them back from a leader.
    pub repair_target: u64,
    pre_vote: bool,
    votes: Vec<Option<bool>>,
    election_deadline_ms: u64,
    last_leader_contact_ms: Option<u64>,
    pub progress: Vec<Progress>,
    /// Leadership transfer in progress: (target, give up at ms).
    pub transferee: Option<(usize, u64)>,
    became_leader_ms: u64,
    /// The term or vote changed but could not be saved (disk full). Until it is, this
    /// member sends nothing (a vote or an acknowledgement given in an unsaved term could
    /// be given again, differently, after a restart) and grants no vote; every tick asks
    /// to save again.
    hard_state_unsaved: bool,
    rng: fastrand::Rng,
}

impl RaftCore {
    pub fn new(
        config: CoreConfig,
        term: u64,
        voted_for: Option<usize>,
        now_ms: u64,
        seed: u64,
    ) -> RaftCore {
        assert!(config.self_index < config.members);
        let members = config.members;
        let mut core = RaftCore {
            config,
            term,
            voted_for,
            role: Role::Follower,
            leader: None,
            commit_index: 0,
            repair_target: 0,
            pre_vote: false,
            votes: vec![None; members],
            election_deadline_ms: 0,
            last_leader_contact_ms: None,
            progress: (0..members).map(|_| Progress::new(0, now_ms)).collect(),
            transferee: None,
            became_leader_ms: 0,
            hard_state_unsaved: false,
            rng: fastrand::Rng::with_seed(seed),
        };
        core.reset_election_deadline(now_ms);
        core
    }

    pub fn is_leader(&self) -> bool {
        self.role == Role::Leader
    }

    /// Saving the hard state asked by the last effects failed with a full disk.
    pub fn hard_state_save_failed(&mut self) {
        self.hard_state_unsaved = true;
    }

    /// The hard state (term and vote as they are now) is saved.
    pub fn hard_state_saved(&mut self) {
        self.hard_state_unsaved = false;
    }

    /// May this member send anything (votes, acknowledgements, requests)? Not while its
    /// term or vote is unsaved.
    pub fn may_speak(&self) -> bool {
        !self.hard_state_unsaved
    }

    fn me(&self) -> usize {
        self.config.self_index
    }

    fn reset_election_deadline(&mut self, now_ms: u64) {
        let base = self.config.election_timeout_ms;
        self.election_deadline_ms = now_ms + base + self.rng.u64(0..base.max(1));
    }

    fn lease_active(&self, now_ms: u64) -> bool {
        if self.is_leader() {
            return true;
        }
        match self.last_leader_contact_ms {
            Some(t) => now_ms < t + self.config.election_timeout_ms,
            None => false,
        }
    }

    fn become_follower(&mut self, term: u64, leader: Option<usize>, now_ms: u64, fx: &mut Effects) {
        if term > self.term {
            self.term = term;
            self.voted_for = None;
            fx.persist_hard_state = true;
            fx.role_changed = true;
        }
        if self.role != Role::Follower || self.leader != leader {
            fx.role_changed = true;
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.pre_vote = false;
        self.transferee = None;
        self.reset_election_deadline(now_ms);
    }

    fn can_campaign<L: LogView>(&self, log: &L) -> bool {
        log.last_index() >= self.repair_target
    }

    fn start_election<L: LogView>(
        &mut self,
        now_ms: u64,
        pre_vote: bool,
        transfer: bool,
        log: &L,
        fx: &mut Effects,
    ) {
        if self.role != Role::Candidate || self.leader.is_some() {
            fx.role_changed = true;
        }
        self.role = Role::Candidate;
        self.leader = None;
        self.pre_vote = pre_vote;
        self.votes = vec![None; self.config.members];
        let me = self.me();
        self.votes[me] = Some(true);
        let request_term = if pre_vote {
            self.term + 1
        } else {
            self.term += 1;
            self.voted_for = Some(self.me());
            fx.persist_hard_state = true;
            fx.role_changed = true;
            self.term
        };
        self.reset_election_deadline(now_ms);
        let request = VoteRequest {
            term: request_term,
            last_index: log.last_index(),
            last_term: log.last_term(),
            pre_vote,
            transfer,
        };
        for peer in 0..self.config.members {
            if peer != self.me() {
                fx.messages.push((peer, Outgoing::Vote(request.clone())));
            }
        }
        self.check_election_won(now_ms, log, fx);
    }

    fn check_election_won<L: LogView>(&mut self, now_ms: u64, log: &L, fx: &mut Effects) {
        let granted = self.votes.iter().filter(|v| **v == Some(true)).count();
        if granted < majority(self.config.members) {
            return;
        }
        if self.pre_vote {
            self.start_election(now_ms, false, false, log, fx);
        } else {
            self.become_leader(now_ms, log, fx);
        }
    }

    fn become_leader<L: LogView>(&mut self, now_ms: u64, log: &L, fx: &mut Effects) {
        self.role = Role::Leader;
        self.leader = Some(self.me());
        self.pre_vote = false;
        self.transferee = None;
        self.became_leader_ms = now_ms;
        let last = log.last_index();
        self.progress = (0..self.config.members)
            .map(|_| Progress::new(last, now_ms))
            .collect();
        fx.role_changed = true;
        fx.append_noop = true;
        fx.wake_dispatchers = true;
    }

    /// Time passes: elections start, a leader without a quorum steps down, transfers give up.
    pub fn tick<L: LogView>(&mut self, now_ms: u64, log: &L) -> Effects {
        let mut fx = Effects::default();
        if self.hard_state_unsaved {
            // Nothing else until the term and vote are saved: no campaign, no step.
            fx.persist_hard_state = true;
            self.reset_election_deadline(now_ms);
            return fx;
        }
        match self.role {
            Role::Leader => {
                let timeout = self.config.election_timeout_ms;
                let me = self.me();
                let heard = (0..self.config.members)
                    .filter(|&p| p == me || now_ms < self.progress[p].last_ack_ms + timeout)
                    .count();
                if heard < majority(self.config.members) {
                    log::info!(
                        "term {}: no quorum heard for {timeout} ms, stepping down",
                        self.term
                    );
                    self.become_follower(self.term, None, now_ms, &mut fx);
                    return fx;
                }
                if let Some((_, give_up_ms)) = self.transferee {
                    if now_ms >= give_up_ms {
                        self.transferee = None;
                    }
                }
                self.check_preferred_leader(now_ms, log, &mut fx);
            }
            Role::Follower | Role::Candidate => {
                if now_ms >= self.election_deadline_ms {
                    if self.can_campaign(log) {
                        self.start_election(now_ms, true, false, log, &mut fx);
                    } else {
                        self.reset_election_deadline(now_ms);
                    }
                }
            }
        }
        fx
    }

    fn check_preferred_leader<L: LogView>(&mut self, now_ms: u64, log: &L, fx: &mut Effects) {
        if self.transferee.is_some()
            || self.config.preferred_leaders.is_empty()
            || self.config.preferred_leaders.contains(&self.me())
            || now_ms < self.became_leader_ms + self.config.election_timeout_ms
        {
            return;
        }
        let last = log.last_index();
        let candidate = self.config.preferred_leaders.iter().copied().find(|&p| {
            let progress = &self.progress[p];
            progress.match_index == last
                && now_ms < progress.last_ack_ms + self.config.heartbeat_interval_ms * 2
        });
        if let Some(peer) = candidate {
            log::info!(
                "term {}: handing leadership to preferred member {peer}",
                self.term
            );
            self.transfer_leadership(peer, now_ms, log, fx);
        }
    }

    /// Starts handing leadership to `peer`: once it has every entry, it is told to
    /// campaign at once. Appends are refused meanwhile. Returns false if not leader.
    pub fn transfer_leadership<L: LogView>(
        &mut self,
        peer: usize,
        now_ms: u64,
        log: &L,
        fx: &mut Effects,
    ) -> bool {
        if !self.is_leader() || peer >= self.config.members {
            return false;
        }
        if peer == self.me() {
            return true;
        }
        self.transferee = Some((peer, now_ms + self.config.election_timeout_ms * 2));
        self.maybe_send_timeout_now(log, fx);
        fx.wake_dispatchers = true;
        true
    }

    fn maybe_send_timeout_now<L: LogView>(&mut self, log: &L, fx: &mut Effects) {
        if let Some((peer, _)) = self.transferee {
            if self.progress[peer].match_index == log.last_index() {
                fx.messages
                    .push((peer, Outgoing::TimeoutNow { term: self.term }));
            }
        }
    }

    /// The leader told us to campaign now (leadership transfer).
    pub fn on_timeout_now<L: LogView>(
        &mut self,
        from: usize,
        term: u64,
        now_ms: u64,
        log: &L,
    ) -> Effects {
        let mut fx = Effects::default();
        if term == self.term && self.leader == Some(from) && self.can_campaign(log) {
            self.start_election(now_ms, false, true, log, &mut fx);
        }
        fx
    }

    /// Decides a vote request; the response goes back to `from`.
    pub fn on_vote_request<L: LogView>(
        &mut self,
        from: usize,
        req: &VoteRequest,
        now_ms: u64,
        log: &L,
    ) -> (Effects, VoteResponse, Option<VoteRefusal>) {
        let mut fx = Effects::default();
        let refusal = self.vote_refusal(from, req, now_ms, log);
        if req.pre_vote {
            let granted = refusal.is_none();
            let term = if granted { req.term } else { self.term };
            return (
                fx,
                VoteResponse {
                    term,
                    granted,
                    pre_vote: true,
                },
                refusal,
            );
        }
        if refusal != Some(VoteRefusal::LeaderLease)
            && refusal != Some(VoteRefusal::StaleTerm)
            && refusal != Some(VoteRefusal::HardStateUnsaved)
            && req.term > self.term
        {
            self.become_follower(req.term, None, now_ms, &mut fx);
        }
        // Refusals are recomputed: stepping into the new term clears an old vote.
        let refusal = self.vote_refusal(from, req, now_ms, log);
        let granted = refusal.is_none();
        if granted {
            self.voted_for = Some(from);
            fx.persist_hard_state = true;
            self.reset_election_deadline(now_ms);
        }
        (
            fx,
            VoteResponse {
                term: self.term,
                granted,
                pre_vote: false,
            },
            refusal,
        )
    }

    fn vote_refusal<L: LogView>(
        &self,
        from: usize,
        req: &VoteRequest,
        now_ms: u64,
        log: &L,
    ) -> Option<VoteRefusal> {
        if req.term < self.term || (req.pre_vote && req.term <= self.term && self.leader.is_some())
        {
            return Some(VoteRefusal::StaleTerm);
        }
        if self.hard_state_unsaved {
            return Some(VoteRefusal::HardStateUnsaved);
        }
        if !req.transfer && self.lease_active(now_ms) && self.leader != Some(from) {
            return Some(VoteRefusal::LeaderLease);
        }
        if !self.can_campaign(log) {
            return Some(VoteRefusal::Repairing);
        }
        if !log_up_to_date(
            req.last_term,
            req.last_index,
            log.last_term(),
            log.last_index(),
        ) {
            return Some(VoteRefusal::LogBehind);
        }
        if !req.pre_vote
            && req.term == self.term
            && self.voted_for.is_some()
            && self.voted_for != Some(from)
        {
            return Some(VoteRefusal::AlreadyVoted);
        }
        None
    }

    pub fn on_vote_response<L: LogView>(
        &mut self,
        from: usize,
        resp: &VoteResponse,
        now_ms: u64,
        log: &L,
    ) -> Effects {
        let mut fx = Effects::default();
        if resp.term > self.term && !resp.granted {
            self.become_follower(resp.term, None, now_ms, &mut fx);
            return fx;
        }
        if self.role != Role::Candidate || resp.pre_vote != self.pre_vote {
            return fx;
        }
        let expected = if self.pre_vote {
            self.term + 1
        } else {
            self.term
        };
        if resp.term != expected {
            return fx;
        }
        self.votes[from] = Some(resp.granted);
        self.check_election_won(now_ms, log, &mut fx);
        fx
    }

    /// A follower receives entries (or a heartbeat) from a leader.
    pub fn on_push<L: LogView>(
        &mut self,
        from: usize,
        req: &PushRequest,
        now_ms: u64,
        log: &L,
    ) -> (Effects, PushOutcome) {
        let mut fx = Effects::default();
        let mut outcome = PushOutcome::default();
        let reject = |term: u64, hint: u64| PushResponse {
            term,
            success: false,
            match_index: 0,
            flushed_index: 0,
            hint_index: hint,
            last_index: 0,
        };
        if req.term < self.term {
            outcome.response = Some(reject(self.term, 0));
            return (fx, outcome);
        }
        if let Err(why) = validate_push(req) {
            // Refused before it changes anything: a malformed push is no sign of a leader.
            outcome.response = Some(reject(self.term, self.commit_index));
            outcome.refused = Some(why);
            return (fx, outcome);
        }
        if self.is_leader() && req.term == self.term {
            // Two leaders in one term cannot happen; refuse rather than corrupt.
            log::error!(
                "term {}: push from member {from} while leading the same term",
                self.term
            );
            outcome.response = Some(reject(self.term, 0));
            return (fx, outcome);
        }
        if req.term > self.term || self.role != Role::Follower || self.leader != Some(from) {
            self.become_follower(req.term, Some(from), now_ms, &mut fx);
        } else {
            self.reset_election_deadline(now_ms);
        }
        self.last_leader_contact_ms = Some(now_ms);

        let last = log.last_index();
        // Entries up to the commit index match the leader's (Log Matching + Leader
        // Completeness), so a probe at or below it matches even where retention removed it.
        let prev_matches = req.prev_index <= self.commit_index
            || (req.prev_index <= last && log.term_at(req.prev_index) == Some(req.prev_term));
        if !prev_matches {
            let hint = if req.prev_index > last {
                last
            } else {
                conflict_hint(log, req.prev_index, self.commit_index)
            };
            outcome.response = Some(reject(self.term, hint));
            return (fx, outcome);
        }
        if let Some(first) = req.entries.first() {
            if req.prev_index > self.commit_index && first.term < req.prev_term {
                outcome.response = Some(reject(self.term, self.commit_index));
                outcome.refused = Some(PushRefusal::BadTerm {
                    index: first.index,
                    term: first.term,
                });
                return (fx, outcome);
            }
        }
        let storable = req
            .entries
            .iter()
            .position(|e| e.body.len() as u64 > self.config.entry_size_bytes_max)
            .unwrap_or(req.entries.len());
        if let Some(entry) = req.entries.get(storable) {
            outcome.refused = Some(PushRefusal::TooLarge {
                index: entry.index,
                size_bytes: entry.body.len() as u64,
            });
        }
        outcome.append_end = storable;
        let mut append_from = None;
        for (i, entry) in req.entries[..storable].iter().enumerate() {
            if entry.index <= self.commit_index {
                continue;
            }
            if entry.index <= last {
                if log.term_at(entry.index) == Some(entry.term) {
                    continue;
                }
                assert!(
                    entry.index > self.commit_index,
                    "truncating a committed entry"
                );
                outcome.truncate_from = Some(entry.index);
            }
            append_from = Some(i);
            break;
        }
        outcome.append_from = append_from;
        let match_index = req.prev_index + storable as u64;
        let new_commit = req.commit_index.min(match_index);
        if new_commit > self.commit_index {
            self.commit_index = new_commit;
            fx.commit_advanced = true;
        }
        outcome.response = Some(PushResponse {
            term: self.term,
            success: true,
            match_index,
            flushed_index: 0,
            hint_index: 0,
            last_index: 0,
        });
        (fx, outcome)
    }

    /// The next push for `peer`, if one is due; the caller sends entries
    /// `from_index..=to_index` (it may send fewer, then calls [`RaftCore::push_sent`]).
    pub fn next_push<L: LogView>(&mut self, peer: usize, now_ms: u64, log: &L) -> Option<PushPlan> {
        if !self.is_leader() || peer == self.me() {
            return None;
        }
        let cfg_timeout = self.config.push_timeout_ms;
        let heartbeat = self.config.heartbeat_interval_ms;
        let window = self.config.push_window_max;
        let batch = self.config.push_entries_max;
        let last = log.last_index();
        let term = self.term;
        let commit = self.commit_index;
        let progress = &mut self.progress[peer];
        if let Some(&(_, sent_ms)) = progress.inflight.front() {
            if now_ms >= sent_ms + cfg_timeout {
                progress.reset_to_compare();
            }
        }
        let heartbeat_due = now_ms >= progress.last_sent_ms + heartbeat;
        let (from, to) = match progress.state {
            PeerState::Compare => {
                if !progress.inflight.is_empty() && !heartbeat_due {
                    return None;
                }
                (progress.next_index, progress.next_index - 1)
            }
            PeerState::Append => {
                if progress.inflight.len() >= window {
                    if !heartbeat_due {
                        return None;
                    }
                    // The window is full: a heartbeat without entries, after what is
                    // known to match, so the follower accepts it whatever is in flight.
                    (progress.match_index + 1, progress.match_index)
                } else if progress.next_index <= last {
                    (
                        progress.next_index,
                        last.min(progress.next_index + batch - 1),
                    )
                } else if heartbeat_due
                    || (commit > progress.commit_sent && progress.inflight.is_empty())
                {
                    // A new commit index alone goes out only when nothing is in flight:
                    // under load every push carries it anyway, and one push per commit
                    // move per follower would double the traffic.
                    (progress.next_index, progress.next_index - 1)
                } else {
                    return None;
                }
            }
        };
        let prev_index = from - 1;
        let prev_term = log.term_at(prev_index)?;
        let request_id = progress.next_request_id;
        Some(PushPlan {
            request_id,
            term,
            prev_index,
            prev_term,
            from_index: from,
            to_index: to,
            commit_index: commit,
        })
    }

    /// The dispatcher sent `plan` with entries up to `sent_to` (`plan.from_index - 1` for none).
    pub fn push_sent(&mut self, peer: usize, plan: &PushPlan, sent_to: u64, now_ms: u64) {
        let progress = &mut self.progress[peer];
        if plan.request_id != progress.next_request_id || plan.term != self.term {
            return;
        }
        progress.next_request_id += 1;
        progress.inflight.push_back((plan.request_id, now_ms));
        progress.last_sent_ms = now_ms;
        progress.commit_sent = plan.commit_index;
        // Only a plan made from the current next index moves it: one made before a
        // response moved it, or a heartbeat after the match index, must not move it back.
        if progress.state == PeerState::Append && plan.from_index == progress.next_index {
            progress.next_index = sent_to + 1;
        }
    }

    /// The leader hears back from a follower.
    pub fn on_push_response<L: LogView>(
        &mut self,
        from: usize,
        request_id: u64,
        resp: &PushResponse,
        now_ms: u64,
        log: &L,
    ) -> Effects {
        let mut fx = Effects::default();
        if resp.term > self.term {
            self.become_follower(resp.term, None, now_ms, &mut fx);
            return fx;
        }
        if !self.is_leader() || resp.term < self.term {
            return fx;
        }
        let progress = &mut self.progress[from];
        progress.last_ack_ms = now_ms;
        if let Some(pos) = progress
            .inflight
            .iter()
            .position(|(id, _)| *id == request_id)
        {
            progress.inflight.drain(..=pos);
        }
        if resp.success {
            progress.match_index = progress.match_index.max(resp.match_index);
            progress.flushed_index = progress
                .flushed_index
                .max(resp.flushed_index.min(resp.match_index));
            if progress.state == PeerState::Compare && request_id >= progress.reset_request_id {
                progress.state = PeerState::Append;
                progress.next_index = progress.match_index + 1;
                progress.inflight.clear();
                progress.reset_request_id = progress.next_request_id;
                fx.wake_dispatchers = true;
            }
            if progress.next_index <= progress.match_index {
                progress.next_index = progress.match_index + 1;
            }
            if self.advance_commit(log) {
                fx.commit_advanced = true;
                // An idle pipeline tells the followers the new commit index.
                fx.wake_dispatchers = true;
            }
            self.maybe_send_timeout_now(log, &mut fx);
        } else if request_id >= progress.reset_request_id {
            if resp.last_index < progress.match_index {
                // The member restarted and lost entries it had acknowledged but not
                // flushed: what it still holds is a prefix of what matched.
                progress.match_index = resp.last_index;
                progress.flushed_index = progress.flushed_index.min(resp.last_index);
            }
            // Fast backup: the follower says where to probe; never below what matches.
            let next = (resp.hint_index + 1).max(progress.match_index + 1);
            progress.reset_to_compare();
            progress.next_index = next.min(log.last_index() + 1);
            fx.wake_dispatchers = true;
        }
        fx
    }

    /// The leader's own log got durable up to `flushed_index` (or, ASYNC, grew to it).
    pub fn on_local_progress<L: LogView>(&mut self, flushed_index: u64, log: &L) -> Effects {
        let mut fx = Effects::default();
        if self.is_leader() {
            let me = self.me();
            let last = log.last_index();
            self.progress[me].match_index = last;
            self.progress[me].flushed_index = flushed_index.min(last);
            if self.advance_commit(log) {
                fx.commit_advanced = true;
                fx.wake_dispatchers = true;
            }
        }
        fx
    }

    /// QuorumAckChecker's decision: the highest index a quorum holds (durably under
    /// SYNC_FLUSH) commits, if it is of the current term (Raft §5.4.2).
    fn advance_commit<L: LogView>(&mut self, log: &L) -> bool {
        let me = self.me();
        let last = log.last_index();
        self.progress[me].match_index = last;
        let acked: Vec<u64> = self
            .progress
            .iter()
            .map(|p| {
                if self.config.sync_flush {
                    p.flushed_index.min(p.match_index)
                } else {
                    p.match_index
                }
            })
            .collect();
        let candidate = quorum_index(&acked);
        if candidate > self.commit_index && log.term_at(candidate) == Some(self.term) {
            self.commit_index = candidate;
            return true;
        }
        false
    }

    /// May a client append now? Refused while not leading or handing leadership over.
    pub fn accepts_appends(&self) -> bool {
        self.is_leader() && self.transferee.is_none()
    }

    /// When [`RaftCore::tick`] next has something to decide: a follower's or candidate's
    /// election deadline; a leader checks its quorum four times per election timeout.
    /// A timer may fire earlier (the tick then decides nothing), never later.
    pub fn next_tick_ms(&self, now_ms: u64) -> u64 {
        match self.role {
            Role::Leader => now_ms + (self.config.election_timeout_ms / 4).max(1),
            Role::Follower | Role::Candidate => self.election_deadline_ms.max(now_ms + 1),
        }
    }
}

/// The part of a member's state the invariants compare from one step to the next.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoreMark {
    term: u64,
    commit_index: u64,
}

impl RaftCore {
    /// What [`RaftCore::check_invariants`] compares the next step against.
    pub fn mark(&self) -> CoreMark {
        CoreMark {
            term: self.term,
            commit_index: self.commit_index,
        }
    }

    /// Restart: the commit index the checkpoint recorded, as far as the log still holds
    /// it. Entries that were durable and known committed but are gone (corruption) must
    /// come back from a leader before this member votes or campaigns; returns true then.
    pub fn restore_commit(&mut self, checkpoint: u64, last_index: u64) -> bool {
        self.commit_index = checkpoint.min(last_index);
        if checkpoint > last_index {
            self.repair_target = checkpoint;
            return true;
        }
        false
    }

    /// A follower could store only part of a push (disk full): it commits (and later
    /// claims) only what it holds, and never less than it had committed before.
    pub fn clamp_commit_to_log(&mut self, commit_before: u64, last_index: u64) {
        self.commit_index = self.commit_index.min(last_index).max(commit_before);
    }

    /// The invariants that hold after every step, checked in release builds too: the
    /// term and the commit index never go back, commit <= last index, and toward every
    /// follower `flushed <= match < next`. `before` is the mark of the previous step.
    pub fn check_invariants<L: LogView>(&self, before: CoreMark, log: &L) -> Result<(), String> {
        if self.term < before.term {
            return Err(format!(
                "the term went back from {} to {}",
                before.term, self.term
            ));
        }
        if self.commit_index < before.commit_index {
            return Err(format!(
                "the commit index went back from {} to {}",
                before.commit_index, self.commit_index
            ));
        }
        let last = log.last_index();
        if self.commit_index > last {
            return Err(format!(
                "the commit index {} is past the last entry {last}",
                self.commit_index
            ));
        }
        if self.is_leader() {
            for (peer, p) in self.progress.iter().enumerate() {
                if peer == self.me() {
                    continue;
                }
                if p.match_index >= p.next_index {
                    return Err(format!(
                        "toward member {peer}: match {} is not below next {}",
                        p.match_index, p.next_index
                    ));
                }
                if p.flushed_index > p.match_index {
                    return Err(format!(
                        "toward member {peer}: flushed {} is above match {}",
                        p.flushed_index, p.match_index
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Raft's election restriction: the candidate's log is at least as up to date.
pub fn log_up_to_date(
    cand_last_term: u64,
    cand_last_index: u64,
    my_last_term: u64,
    my_last_index: u64,
) -> bool {
    (cand_last_term, cand_last_index) >= (my_last_term, my_last_index)
}

/// Where a leader should probe next after `prev_index` conflicted: just before the first
/// entry of the conflicting term (bounded scan), never below the commit index.
pub fn conflict_hint<L: LogView>(log: &L, prev_index: u64, commit_index: u64) -> u64 {
    const SCAN_MAX: u64 = 100_000;
    let Some(conflict_term) = log.term_at(prev_index) else {
        return commit_index.min(prev_index.saturating_sub(1));
    };
    let mut index = prev_index;
    let floor = commit_index.max(prev_index.saturating_sub(SCAN_MAX));
    while index > floor && log.term_at(index - 1) == Some(conflict_term) {
        index -= 1;
    }
    index
        .saturating_sub(1)
        .max(commit_index.min(prev_index - 1))
}

#[cfg(test)]
#[path = "raft_tests.rs"]
mod tests;
