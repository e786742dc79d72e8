//! Table tests of the decisions in `raft.rs`, one event at a time.

use super::*;
use crate::core::waiters::{Decided, Waiters};
use crate::types::{Entry, EntryKind};
use bytes::Bytes;

/// A log given by the term of each entry, from index 1.
#[derive(Clone, Debug, Default)]
struct TermLog(Vec<u64>);

impl LogView for TermLog {
    fn last_index(&self) -> u64 {
        self.0.len() as u64
    }
    fn term_at(&self, index: u64) -> Option<u64> {
        if index == 0 {
            return Some(0);
        }
        self.0.get(index as usize - 1).copied()
    }
}

const ELECTION_MS: u64 = 1000;
const HEARTBEAT_MS: u64 = 100;
const PUSH_TIMEOUT_MS: u64 = 500;

fn config(members: usize, self_index: usize) -> CoreConfig {
    CoreConfig {
        members,
        self_index,
        election_timeout_ms: ELECTION_MS,
        heartbeat_interval_ms: HEARTBEAT_MS,
        push_timeout_ms: PUSH_TIMEOUT_MS,
        push_window_max: 2,
        push_entries_max: 4,
        sync_flush: false,
        preferred_leaders: Vec::new(),
        entry_size_bytes_max: 64,
    }
}

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        kind: EntryKind::Normal,
        body: Bytes::new(),
    }
}

/// Member 0 of `members` elected leader at `now`, the no-op appended to `log`.
fn elect(cfg: CoreConfig, term: u64, log: &mut TermLog, now: u64) -> RaftCore {
    let members = cfg.members;
    let mut core = RaftCore::new(cfg, term, None, 0, 7);
    let fx = core.tick(now, log);
    assert_eq!(core.role, Role::Candidate);
    assert!(!fx.persist_hard_state, "a pre-vote changes no hard state");
    assert_eq!(core.term, term);
    for peer in 1..members {
        let grant = VoteResponse {
            term: term + 1,
            granted: true,
            pre_vote: true,
        };
        core.on_vote_response(peer, &grant, now, log);
        if !core.pre_vote {
            break;
        }
    }
    assert_eq!(core.term, term + 1);
    let mut fx = Effects::default();
    for peer in 1..members {
        let grant = VoteResponse {
            term: term + 1,
            granted: true,
            pre_vote: false,
        };
        fx = core.on_vote_response(peer, &grant, now, log);
        if core.is_leader() {
            break;
        }
    }
    assert!(core.is_leader());
    assert!(fx.append_noop);
    log.0.push(core.term);
    core.on_local_progress(log.last_index(), log);
    core
}

fn ok(match_index: u64, flushed_index: u64, term: u64) -> PushResponse {
    PushResponse {
        term,
        success: true,
        match_index,
        flushed_index,
        hint_index: 0,
        last_index: match_index,
    }
}

fn reject(hint_index: u64, last_index: u64, term: u64) -> PushResponse {
    PushResponse {
        term,
        success: false,
        match_index: 0,
        flushed_index: 0,
        hint_index,
        last_index,
    }
}

/// Plans and sends (all entries) the next push to `peer`.
fn send(core: &mut RaftCore, peer: usize, now: u64, log: &TermLog) -> Option<PushPlan> {
    let plan = core.next_push(peer, now, log)?;
    core.push_sent(peer, &plan, plan.to_index, now);
    Some(plan)
}

#[test]
fn log_up_to_date_table() {
    // (candidate last term, candidate last index, mine last term, mine last index, want)
    let table = [
        (2, 5, 2, 5, true),
        (2, 6, 2, 5, true),
        (2, 4, 2, 5, false),
        (3, 1, 2, 5, true),
        (1, 9, 2, 5, false),
        (0, 0, 0, 0, true),
        (0, 0, 1, 1, false),
    ];
    for (ct, ci, mt, mi, want) in table {
        assert_eq!(log_up_to_date(ct, ci, mt, mi), want, "{ct} {ci} {mt} {mi}");
    }
}

#[test]
fn conflict_hint_table() {
    let log = TermLog(vec![1, 1, 2, 2, 2, 4]);
    // (prev_index, commit_index, want)
    let table = [
        (5, 0, 2), // the run of term 2 starts at 3
        (4, 0, 2),
        (6, 0, 5),
        (5, 3, 3), // never below the commit index
        (1, 0, 0),
        (9, 2, 2), // not held: no lower than the commit index
    ];
    for (prev, commit, want) in table {
        assert_eq!(conflict_hint(&log, prev, commit), want, "{prev} {commit}");
    }
}

#[test]
fn vote_rules_table() {
    let log = TermLog(vec![1, 2, 2]); // last index 3, last term 2
    let req = |term, last_term, last_index| VoteRequest {
        term,
        last_index,
        last_term,
        pre_vote: false,
        transfer: false,
    };
    // (voter's term, voter's vote, request, want)
    let table: Vec<(u64, Option<usize>, VoteRequest, Option<VoteRefusal>)> = vec![
        (5, None, req(4, 9, 9), Some(VoteRefusal::StaleTerm)),
        (5, Some(2), req(5, 9, 9), Some(VoteRefusal::AlreadyVoted)),
        (5, Some(1), req(5, 9, 9), None), // the same candidate asks again
        (5, Some(2), req(6, 9, 9), None), // a new term clears the old vote
        (5, None, req(6, 1, 10), Some(VoteRefusal::LogBehind)), // older last term
        (5, None, req(6, 2, 2), Some(VoteRefusal::LogBehind)), // same term, shorter
        (5, None, req(6, 2, 3), None),
        (5, None, req(6, 3, 1), None), // newer last term wins over length
    ];
    for (term, vote, request, want) in table {
        let mut core = RaftCore::new(config(3, 0), term, vote, 0, 1);
        let (fx, resp, refusal) = core.on_vote_request(1, &request, 10, &log);
        assert_eq!(refusal, want, "{term} {vote:?} {request:?}");
        assert_eq!(resp.granted, want.is_none());
        assert_eq!(resp.term, core.term);
        assert_eq!(core.term, term.max(request.term));
        if want.is_none() {
            assert_eq!(core.voted_for, Some(1));
            assert!(
                fx.persist_hard_state,
                "a vote is persisted before the answer"
            );
        } else if request.term > term {
            assert_eq!(core.voted_for, None, "a higher term clears the vote");
            assert!(fx.persist_hard_state);
        }
    }
}

#[test]
fn pre_vote_changes_neither_term_nor_vote() {
    let log = TermLog(vec![1, 1]);
    let mut core = RaftCore::new(config(3, 0), 4, Some(2), 0, 1);
    let request = VoteRequest {
        term: 5,
        last_index: 2,
        last_term: 1,
        pre_vote: true,
        transfer: false,
    };
    let (fx, resp, refusal) = core.on_vote_request(1, &request, 10, &log);
    assert_eq!(refusal, None);
    assert!(resp.granted && resp.pre_vote);
    assert_eq!(resp.term, 5);
    assert_eq!((core.term, core.voted_for), (4, Some(2)));
    assert!(!fx.persist_hard_state);
    // A refused pre-vote answers with the voter's term.
    let behind = VoteRequest {
        last_index: 1,
        ..request
    };
    let (_, resp, refusal) = core.on_vote_request(1, &behind, 10, &log);
    assert_eq!(refusal, Some(VoteRefusal::LogBehind));
    assert_eq!((resp.term, resp.granted), (4, false));
    assert_eq!((core.term, core.voted_for), (4, Some(2)));
}

#[test]
fn leader_lease_refuses_votes_unless_transfer() {
    let mut log = TermLog(vec![1]);
    let mut core = RaftCore::new(config(3, 1), 1, None, 0, 1);
    let push = PushRequest {
        term: 1,
        prev_index: 1,
        prev_term: 1,
        commit_index: 1,
        entries: vec![],
    };
    let (_, outcome) = core.on_push(0, &push, 100, &log);
    assert!(outcome.response.unwrap().success);
    let request = VoteRequest {
        term: 2,
        last_index: 5,
        last_term: 1,
        pre_vote: false,
        transfer: false,
    };
    let within = 100 + ELECTION_MS - 1;
    let (fx, resp, refusal) = core.on_vote_request(2, &request, within, &log);
    assert_eq!(refusal, Some(VoteRefusal::LeaderLease));
    assert!(!resp.granted);
    assert_eq!(core.term, 1, "a lease refusal does not adopt the term");
    assert!(!fx.persist_hard_state);
    let pre = VoteRequest {
        pre_vote: true,
        ..request.clone()
    };
    assert_eq!(
        core.on_vote_request(2, &pre, within, &log).2,
        Some(VoteRefusal::LeaderLease)
    );
    // A transfer's election ignores the lease.
    let transfer = VoteRequest {
        transfer: true,
        ..request.clone()
    };
    let (_, resp, refusal) = core.on_vote_request(2, &transfer, within, &log);
    assert_eq!(refusal, None);
    assert!(resp.granted);
    assert_eq!((core.term, core.voted_for), (2, Some(2)));
    // Once the lease runs out, anyone may ask.
    let mut other = RaftCore::new(config(3, 1), 1, None, 0, 1);
    other.on_push(0, &push, 100, &log);
    let (_, _, refusal) = other.on_vote_request(2, &request, 100 + ELECTION_MS, &log);
    assert_eq!(refusal, None);
    // A leader refuses non-transfer votes.
    let mut leader = elect(config(3, 0), 1, &mut log, ELECTION_MS * 3);
    let request = VoteRequest {
        term: 9,
        last_index: 9,
        last_term: 9,
        pre_vote: false,
        transfer: false,
    };
    let (_, _, refusal) = leader.on_vote_request(1, &request, ELECTION_MS * 3, &log);
    assert_eq!(refusal, Some(VoteRefusal::LeaderLease));
    assert!(leader.is_leader());
}

#[test]
fn repairing_member_neither_votes_nor_campaigns() {
    let log = TermLog(vec![1, 1]);
    let mut core = RaftCore::new(config(3, 0), 1, None, 0, 1);
    core.repair_target = 5;
    let request = VoteRequest {
        term: 2,
        last_index: 9,
        last_term: 1,
        pre_vote: false,
        transfer: true,
    };
    assert_eq!(
        core.on_vote_request(1, &request, 10, &log).2,
        Some(VoteRefusal::Repairing)
    );
    let fx = core.tick(ELECTION_MS * 3, &log);
    assert!(fx.messages.is_empty());
    assert_ne!(core.role, Role::Candidate);
}

#[test]
fn elections_count_only_matching_answers() {
    let log = TermLog::default();
    let mut core = RaftCore::new(config(5, 0), 3, None, 0, 1);
    core.tick(ELECTION_MS * 3, &log);
    assert!(core.pre_vote);
    // A stale or duplicated grant does not make a majority.
    let grant = |term, pre_vote| VoteResponse {
        term,
        granted: true,
        pre_vote,
    };
    core.on_vote_response(1, &grant(3, true), 0, &log);
    core.on_vote_response(1, &grant(4, false), 0, &log);
    core.on_vote_response(2, &grant(4, true), 0, &log);
    core.on_vote_response(2, &grant(4, true), 0, &log);
    assert!(core.pre_vote && core.term == 3);
    core.on_vote_response(3, &grant(4, true), 0, &log);
    assert!(!core.pre_vote);
    assert_eq!((core.term, core.voted_for), (4, Some(0)));
    // Pre-vote grants do not count in the real election.
    core.on_vote_response(1, &grant(4, true), 0, &log);
    core.on_vote_response(2, &grant(4, true), 0, &log);
    assert_eq!(core.role, Role::Candidate);
    core.on_vote_response(1, &grant(4, false), 0, &log);
    core.on_vote_response(2, &grant(4, false), 0, &log);
    assert!(core.is_leader());
    // A refusal with a higher term sends a candidate back to follower.
    let mut core = RaftCore::new(config(3, 0), 3, None, 0, 1);
    core.tick(ELECTION_MS * 3, &log);
    let refusal = VoteResponse {
        term: 7,
        granted: false,
        pre_vote: true,
    };
    let fx = core.on_vote_response(1, &refusal, 0, &log);
    assert_eq!((core.role, core.term), (Role::Follower, 7));
    assert!(fx.persist_hard_state);
}

#[test]
fn push_log_matching_table() {
    struct Case {
        log: Vec<u64>,
        commit: u64,
        prev_index: u64,
        prev_term: u64,
        entries: Vec<u64>,
        leader_commit: u64,
        want_success: bool,
        want_hint: u64,
        want_truncate: Option<u64>,
        want_append: Option<usize>,
        want_commit: u64,
    }
    let cases = [
        // prev beyond the last entry: reject, hint at the last entry
        Case {
            log: vec![1, 1],
            commit: 0,
            prev_index: 5,
            prev_term: 1,
            entries: vec![2],
            leader_commit: 5,
            want_success: false,
            want_hint: 2,
            want_truncate: None,
            want_append: None,
            want_commit: 0,
        },
        // prev conflicts: hint before the conflicting term's first entry
        Case {
            log: vec![1, 2, 2, 2],
            commit: 1,
            prev_index: 4,
            prev_term: 3,
            entries: vec![],
            leader_commit: 4,
            want_success: false,
            want_hint: 1,
            want_truncate: None,
            want_append: None,
            want_commit: 1,
        },
        // a conflicting entry after a matching prev: truncate there and append
        Case {
            log: vec![1, 2, 2, 2],
            commit: 1,
            prev_index: 2,
            prev_term: 2,
            entries: vec![2, 3, 3],
            leader_commit: 9,
            want_success: true,
            want_hint: 0,
            want_truncate: Some(4),
            want_append: Some(1),
            want_commit: 5,
        },
        // every entry already held: nothing to do, nothing truncated past them
        Case {
            log: vec![1, 1, 1, 1],
            commit: 0,
            prev_index: 1,
            prev_term: 1,
            entries: vec![1, 1],
            leader_commit: 4,
            want_success: true,
            want_hint: 0,
            want_truncate: None,
            want_append: None,
            want_commit: 3,
        },
        // some held, the rest appended
        Case {
            log: vec![1, 1],
            commit: 0,
            prev_index: 1,
            prev_term: 1,
            entries: vec![1, 1, 1],
            leader_commit: 2,
            want_success: true,
            want_hint: 0,
            want_truncate: None,
            want_append: Some(1),
            want_commit: 2,
        },
        // at or below the commit index everything matches
        Case {
            log: vec![1, 1, 1],
            commit: 3,
            prev_index: 2,
            prev_term: 9,
            entries: vec![1, 1],
            leader_commit: 3,
            want_success: true,
            want_hint: 0,
            want_truncate: None,
            want_append: Some(1),
            want_commit: 3,
        },
        // commit never goes down on a stale push
        Case {
            log: vec![1, 1, 1],
            commit: 3,
            prev_index: 0,
            prev_term: 0,
            entries: vec![],
            leader_commit: 1,
            want_success: true,
            want_hint: 0,
            want_truncate: None,
            want_append: None,
            want_commit: 3,
        },
    ];
    for (n, case) in cases.iter().enumerate() {
        let log = TermLog(case.log.clone());
        let mut core = RaftCore::new(config(3, 1), 3, None, 0, 1);
        core.commit_index = case.commit;
        let req = PushRequest {
            term: 3,
            prev_index: case.prev_index,
            prev_term: case.prev_term,
            commit_index: case.leader_commit,
            entries: case
                .entries
                .iter()
                .enumerate()
                .map(|(i, &t)| entry(case.prev_index + 1 + i as u64, t))
                .collect(),
        };
        let (_, outcome) = core.on_push(0, &req, 10, &log);
        let resp = outcome.response.unwrap();
        assert_eq!(resp.success, case.want_success, "case {n}");
        assert_eq!(resp.hint_index, case.want_hint, "case {n}");
        assert_eq!(outcome.truncate_from, case.want_truncate, "case {n}");
        assert_eq!(outcome.append_from, case.want_append, "case {n}");
        assert_eq!(core.commit_index, case.want_commit, "case {n}");
        if resp.success {
            assert_eq!(
                resp.match_index,
                case.prev_index + case.entries.len() as u64
            );
        }
        assert_eq!(core.leader, Some(0));
    }
}

#[test]
fn push_from_stale_term_is_refused_and_changes_nothing() {
    let log = TermLog(vec![1, 1]);
    let mut core = RaftCore::new(config(3, 1), 4, Some(2), 0, 1);
    let req = PushRequest {
        term: 3,
        prev_index: 2,
        prev_term: 1,
        commit_index: 2,
        entries: vec![],
    };
    let (fx, outcome) = core.on_push(0, &req, 10, &log);
    let resp = outcome.response.unwrap();
    assert!(!resp.success);
    assert_eq!(resp.term, 4);
    assert_eq!(outcome.truncate_from, None);
    assert_eq!((core.term, core.commit_index, core.leader), (4, 0, None));
    assert!(!fx.persist_hard_state);
    // A higher term is adopted (and must be persisted) before answering.
    let req = PushRequest { term: 6, ..req };
    let (fx, outcome) = core.on_push(0, &req, 10, &log);
    assert!(outcome.response.unwrap().success);
    assert!(fx.persist_hard_state);
    assert_eq!((core.term, core.voted_for, core.leader), (6, None, Some(0)));
}

#[test]
fn commit_needs_a_quorum_and_an_entry_of_the_current_term() {
    // Entries 1..3 are from older terms; the new leader's no-op is 4.
    let mut log = TermLog(vec![1, 1, 2]);
    let mut core = elect(config(3, 0), 2, &mut log, ELECTION_MS * 3);
    assert_eq!(core.term, 3);
    assert_eq!(log.last_index(), 4);
    let now = ELECTION_MS * 3;
    // Match on an older term's entry alone commits nothing (Raft 5.4.2).
    let plan = send(&mut core, 1, now, &log).unwrap();
    core.on_push_response(1, plan.request_id, &ok(3, 3, 3), now, &log);
    assert_eq!(core.commit_index, 0);
    let plan = send(&mut core, 1, now, &log).unwrap();
    let fx = core.on_push_response(1, plan.request_id, &ok(4, 4, 3), now, &log);
    assert!(fx.commit_advanced);
    assert_eq!(core.commit_index, 4);
}

#[test]
fn sync_flush_commits_only_flushed_entries() {
    for sync_flush in [false, true] {
        let mut log = TermLog::default();
        let cfg = CoreConfig {
            sync_flush,
            ..config(3, 0)
        };
        let mut core = elect(cfg, 0, &mut log, ELECTION_MS * 3);
        let now = ELECTION_MS * 3;
        log.0.extend([1, 1, 1]); // client entries 2..4
        core.on_local_progress(1, &log); // only the no-op flushed locally
        let probe = send(&mut core, 1, now, &log).unwrap();
        // The follower holds 1..4 but has flushed only 2.
        core.on_push_response(1, probe.request_id, &ok(4, 2, 1), now, &log);
        let want = if sync_flush { 1 } else { 4 };
        assert_eq!(core.commit_index, want, "sync_flush {sync_flush}");
        core.on_local_progress(4, &log);
        let want = if sync_flush { 2 } else { 4 };
        assert_eq!(core.commit_index, want, "sync_flush {sync_flush}");
        // A flushed index past the match index is no evidence for entries not matched.
        let mut core2 = elect(
            CoreConfig {
                sync_flush,
                ..config(3, 0)
            },
            0,
            &mut TermLog::default(),
            now,
        );
        let log2 = TermLog(vec![1, 1, 1]);
        core2.on_local_progress(3, &log2);
        let probe = send(&mut core2, 2, now, &log2).unwrap();
        core2.on_push_response(2, probe.request_id, &ok(1, 9, 1), now, &log2);
        assert_eq!(core2.commit_index, 1, "sync_flush {sync_flush}");
    }
}

#[test]
fn dispatcher_compare_then_append_with_window() {
    let mut log = TermLog(vec![1, 1]);
    let mut core = elect(config(3, 0), 1, &mut log, ELECTION_MS * 3);
    log.0.extend([2; 10]); // 3 .. 13, term 2
    core.on_local_progress(13, &log);
    let mut now = ELECTION_MS * 3;
    // COMPARE: a probe without entries after the leader's last entry before the no-op.
    let probe = send(&mut core, 1, now, &log).unwrap();
    assert_eq!(
        (probe.prev_index, probe.from_index, probe.to_index),
        (2, 3, 2)
    );
    assert_eq!(core.progress[1].state, PeerState::Compare);
    // One probe at a time until it is answered or a heartbeat is due.
    assert_eq!(core.next_push(1, now + 1, &log), None);
    let fx = core.on_push_response(1, probe.request_id, &ok(2, 2, 2), now, &log);
    assert!(fx.wake_dispatchers);
    assert_eq!(core.progress[1].state, PeerState::Append);
    // APPEND: batches of push_entries_max, pipelined up to the window.
    let a = send(&mut core, 1, now, &log).unwrap();
    assert_eq!((a.prev_index, a.from_index, a.to_index), (2, 3, 6));
    let b = send(&mut core, 1, now, &log).unwrap();
    assert_eq!((b.prev_index, b.from_index, b.to_index), (6, 7, 10));
    assert_eq!(core.progress[1].inflight(), 2);
    assert_eq!(core.next_push(1, now + 1, &log), None, "window full");
    // A heartbeat is still sent when due, without entries, after the match index.
    now += HEARTBEAT_MS;
    let hb = send(&mut core, 1, now, &log).unwrap();
    assert_eq!((hb.prev_index, hb.from_index, hb.to_index), (2, 3, 2));
    assert_eq!(
        core.progress[1].next_index, 11,
        "a heartbeat does not move next"
    );
    assert_eq!(core.next_push(1, now, &log), None);
    // Answers open the window and move match forward.
    core.on_push_response(1, b.request_id, &ok(10, 10, 2), now, &log);
    assert_eq!(core.progress[1].match_index, 10);
    assert_eq!(
        core.progress[1].inflight(),
        1,
        "older pushes count as answered"
    );
    let c = send(&mut core, 1, now, &log).unwrap();
    assert_eq!((c.from_index, c.to_index), (11, 13));
    core.on_push_response(1, c.request_id, &ok(13, 13, 2), now, &log);
    assert_eq!(core.progress[1].match_index, 13);
    assert_eq!(core.progress[1].inflight(), 0);
    assert_eq!(core.commit_index, 13);
    // The new commit index is told at once, without entries; then nothing until a
    // heartbeat is due.
    let tell = send(&mut core, 1, now, &log).unwrap();
    assert_eq!(
        (tell.from_index, tell.to_index, tell.commit_index),
        (14, 13, 13)
    );
    assert_eq!(core.next_push(1, now + 1, &log), None);
    let hb = core.next_push(1, now + HEARTBEAT_MS, &log).unwrap();
    assert_eq!((hb.from_index, hb.to_index, hb.commit_index), (14, 13, 13));
}

#[test]
fn dispatcher_timeout_returns_to_compare_and_ignores_older_answers() {
    let mut log = TermLog::default();
    let mut core = elect(config(3, 0), 0, &mut log, ELECTION_MS * 3);
    log.0.extend([1; 8]); // 2 .. 9
    core.on_local_progress(9, &log);
    let now = ELECTION_MS * 3;
    let probe = send(&mut core, 1, now, &log).unwrap();
    assert_eq!(probe.prev_index, 0);
    core.on_push_response(1, probe.request_id, &ok(0, 0, 1), now, &log);
    let a = send(&mut core, 1, now, &log).unwrap();
    let b = send(&mut core, 1, now, &log).unwrap();
    assert_eq!((a.from_index, b.from_index), (1, 5));
    // Unanswered past push_timeout_ms: back to COMPARE from the match index.
    let later = now + PUSH_TIMEOUT_MS;
    let probe = send(&mut core, 1, later, &log).unwrap();
    assert_eq!(core.progress[1].state, PeerState::Compare);
    assert_eq!(
        (probe.prev_index, probe.from_index, probe.to_index),
        (0, 1, 0)
    );
    // A rejection of a push sent before the reset moves nothing.
    core.on_push_response(1, b.request_id, &reject(0, 5, 1), later, &log);
    assert_eq!(core.progress[1].state, PeerState::Compare);
    assert_eq!(core.progress[1].next_index, 1);
    // Its success still counts as evidence of a match, but does not switch states.
    core.on_push_response(1, a.request_id, &ok(4, 4, 1), later, &log);
    assert_eq!(core.progress[1].match_index, 4);
    assert_eq!(core.progress[1].state, PeerState::Compare);
    // The probe's answer does, from what is known to match.
    core.on_push_response(1, probe.request_id, &ok(0, 0, 1), later, &log);
    assert_eq!(core.progress[1].state, PeerState::Append);
    assert_eq!(core.progress[1].next_index, 5);
    // A stale answer of a lower term is ignored entirely.
    let before = core.progress[1].next_index;
    core.on_push_response(1, a.request_id, &reject(0, 0, 0), later, &log);
    assert_eq!(core.progress[1].next_index, before);
}

#[test]
fn dispatcher_fast_backup_follows_the_hint() {
    let mut log = TermLog(vec![1; 20]);
    let mut core = elect(config(3, 0), 1, &mut log, ELECTION_MS * 3);
    let now = ELECTION_MS * 3;
    let probe = send(&mut core, 1, now, &log).unwrap();
    assert_eq!(probe.prev_index, 20);
    let fx = core.on_push_response(1, probe.request_id, &reject(7, 7, 2), now, &log);
    assert!(fx.wake_dispatchers);
    let probe = send(&mut core, 1, now, &log).unwrap();
    assert_eq!(probe.prev_index, 7);
    // A hint beyond the leader's log is clamped to it.
    core.on_push_response(1, probe.request_id, &reject(99, 99, 2), now, &log);
    assert_eq!(core.progress[1].next_index, log.last_index() + 1);
}

#[test]
fn a_member_that_lost_acknowledged_entries_is_probed_at_its_log() {
    let mut log = TermLog::default();
    let mut core = elect(config(3, 0), 0, &mut log, ELECTION_MS * 3);
    log.0.extend([1; 9]); // 2 .. 10
    core.on_local_progress(10, &log);
    let now = ELECTION_MS * 3;
    let probe = send(&mut core, 1, now, &log).unwrap();
    core.on_push_response(1, probe.request_id, &ok(10, 4, 1), now, &log);
    assert_eq!(core.progress[1].match_index, 10);
    // It restarted with 6 entries: the next push after 10 is refused, hint 6.
    log.0.push(1);
    let push = send(&mut core, 1, now, &log).unwrap();
    assert_eq!(push.prev_index, 10);
    core.on_push_response(1, push.request_id, &reject(6, 6, 1), now, &log);
    assert_eq!(core.progress[1].match_index, 6);
    assert_eq!(core.progress[1].flushed_index, 4);
    let probe = send(&mut core, 1, now, &log).unwrap();
    assert_eq!(probe.prev_index, 6);
}

#[test]
fn push_sent_for_an_outdated_plan_does_not_move_next_back() {
    let mut log = TermLog::default();
    let mut core = elect(config(3, 0), 0, &mut log, ELECTION_MS * 3);
    log.0.extend([1; 9]); // 2 .. 10
    core.on_local_progress(10, &log);
    let now = ELECTION_MS * 3;
    let probe = send(&mut core, 1, now, &log).unwrap();
    core.on_push_response(1, probe.request_id, &ok(1, 1, 1), now, &log);
    // Planned from next index 2; before it is marked sent, a heartbeat answer from
    // the follower moves match (and next) past it.
    let plan = core.next_push(1, now, &log).unwrap();
    assert_eq!(plan.from_index, 2);
    core.on_push_response(1, probe.request_id, &ok(8, 8, 1), now, &log);
    assert_eq!(core.progress[1].next_index, 9);
    core.push_sent(1, &plan, 3, now);
    assert_eq!(core.progress[1].next_index, 9);
}

#[test]
fn check_quorum_steps_down_and_transfer_hands_over() {
    let mut log = TermLog::default();
    let start = ELECTION_MS * 3;
    let mut core = elect(config(3, 0), 0, &mut log, start);
    // Heard from nobody for an election timeout: step down.
    let fx = core.tick(start + ELECTION_MS, &log);
    assert!(fx.role_changed);
    assert_eq!(core.role, Role::Follower);
    assert!(!core.accepts_appends());

    let mut log = TermLog::default();
    let mut core = elect(config(3, 0), 0, &mut log, start);
    let mut fx = Effects::default();
    assert!(core.transfer_leadership(2, start, &log, &mut fx));
    assert!(!core.accepts_appends(), "appends wait while handing over");
    assert!(fx.messages.is_empty(), "not caught up yet");
    let probe = send(&mut core, 2, start, &log).unwrap();
    let fx = core.on_push_response(2, probe.request_id, &ok(1, 1, 1), start, &log);
    assert_eq!(fx.messages, vec![(2, Outgoing::TimeoutNow { term: 1 })]);
    // The target campaigns at once, skipping pre-vote, and voters ignore their lease.
    let mut target = RaftCore::new(config(3, 2), 1, None, 0, 3);
    let push = PushRequest {
        term: 1,
        prev_index: 1,
        prev_term: 1,
        commit_index: 1,
        entries: vec![],
    };
    target.on_push(0, &push, start, &log);
    let fx = target.on_timeout_now(0, 1, start, &log);
    assert_eq!((target.role, target.term), (Role::Candidate, 2));
    assert!(fx.persist_hard_state);
    let Outgoing::Vote(request) = &fx.messages[0].1 else {
        panic!("expected a vote request");
    };
    assert!(request.transfer && !request.pre_vote);
    let (_, resp, refusal) = core.on_vote_request(2, request, start, &log);
    assert_eq!(refusal, None);
    assert!(resp.granted);
    assert_eq!(core.role, Role::Follower);
    // A TimeoutNow from someone who is not our leader, or of another term, is ignored.
    let mut other = RaftCore::new(config(3, 1), 1, None, 0, 3);
    assert!(other.on_timeout_now(0, 1, start, &log).messages.is_empty());
}

fn push_of(term: u64, prev_index: u64, prev_term: u64, entries: Vec<Entry>) -> PushRequest {
    PushRequest {
        term,
        prev_index,
        prev_term,
        commit_index: 0,
        entries,
    }
}

#[test]
fn malformed_pushes_are_refused_and_change_nothing() {
    let log = TermLog(vec![1, 1]);
    let cases = [
        // a gap: entry 4 where 3 belongs
        (
            push_of(3, 2, 1, vec![entry(4, 3)]),
            PushRefusal::NotContiguous {
                position: 0,
                index: 4,
            },
        ),
        // the second entry repeats the first's index
        (
            push_of(3, 2, 1, vec![entry(3, 3), entry(3, 3)]),
            PushRefusal::NotContiguous {
                position: 1,
                index: 3,
            },
        ),
        // an entry of a term above the push's
        (
            push_of(3, 2, 1, vec![entry(3, 4)]),
            PushRefusal::BadTerm { index: 3, term: 4 },
        ),
        // terms going down inside the push
        (
            push_of(3, 2, 1, vec![entry(3, 3), entry(4, 2)]),
            PushRefusal::BadTerm { index: 4, term: 2 },
        ),
    ];
    for (n, (req, want)) in cases.into_iter().enumerate() {
        let mut core = RaftCore::new(config(3, 1), 2, Some(2), 0, 1);
        let (fx, outcome) = core.on_push(0, &req, 10, &log);
        assert_eq!(outcome.refused, Some(want), "case {n}");
        let resp = outcome.response.expect("a refused push is answered");
        assert!(!resp.success, "case {n}");
        assert_eq!(outcome.truncate_from, None, "case {n}");
        assert_eq!(outcome.append_from, None, "case {n}");
        assert!(!fx.persist_hard_state, "case {n}");
        assert_eq!(
            (core.term, core.voted_for, core.leader, core.commit_index),
            (2, Some(2), None, 0),
            "case {n}: a malformed push changes no state"
        );
    }
}

#[test]
fn an_entry_over_max_entry_size_is_left_out_and_what_comes_before_is_stored() {
    let log = TermLog(vec![1, 1]);
    let mut core = RaftCore::new(config(3, 1), 3, None, 0, 1);
    let big = Entry {
        body: Bytes::from(vec![7u8; 65]),
        ..entry(4, 3)
    };
    let mut req = push_of(3, 2, 1, vec![entry(3, 3), big, entry(5, 3)]);
    req.commit_index = 5;
    let (_, outcome) = core.on_push(0, &req, 10, &log);
    assert_eq!(
        outcome.refused,
        Some(PushRefusal::TooLarge {
            index: 4,
            size_bytes: 65
        })
    );
    assert_eq!((outcome.append_from, outcome.append_end), (Some(0), 1));
    let resp = outcome.response.unwrap();
    assert!(resp.success);
    assert_eq!(
        resp.match_index, 3,
        "only what this member can store is claimed"
    );
    assert_eq!(
        core.commit_index, 3,
        "nothing past what is stored commits here"
    );
    assert_eq!(core.leader, Some(0));
    // Below the term of the (matching) entry before it.
    let mut other = RaftCore::new(config(3, 1), 3, None, 0, 1);
    let (_, outcome) = other.on_push(0, &push_of(3, 2, 1, vec![entry(3, 0)]), 10, &log);
    assert_eq!(
        outcome.refused,
        Some(PushRefusal::BadTerm { index: 3, term: 0 })
    );
    assert!(!outcome.response.unwrap().success);
    // The leader resends from the refused entry: refused again, member unchanged.
    let req = push_of(3, 3, 3, vec![req.entries[1].clone()]);
    let (_, outcome) = core.on_push(0, &req, 20, &TermLog(vec![1, 1, 3]));
    assert_eq!((outcome.append_from, outcome.append_end), (None, 0));
    assert_eq!(outcome.response.unwrap().match_index, 3);
}

/// Raft paper Figure 8 with five members, as S1 sees it. S1 leads term 2 and appends X at
/// index 2, which reaches S2 only. S5 wins term 3 (votes of S3, S4), and its no-op at
/// index 2 reaches only S1, which truncates X. S5 dies; S2 wins term 4 (votes of S3, S4:
/// its log ends in term 2, theirs in term 1) and commits X with its no-op. X's waiter on
/// S1 must not be completed as failed when S1 truncates X: only the commit decides it.
#[test]
fn figure_8_a_truncated_append_stays_undecided_until_a_commit_decides_it() {
    let (s1, s2, s5) = (0, 1, 4);
    // Every member holds entry 1 of term 1, committed.
    let mut log1 = TermLog(vec![1]);
    let mut core1 = elect(config(5, s1), 1, &mut log1, ELECTION_MS * 3);
    assert_eq!(core1.term, 2);
    // elect() appended S1's no-op at 2; the scenario has X there: replace it by X.
    log1.0.truncate(1);
    log1.0.push(2);
    let x = (2u64, 2u64);
    let mut waiters = Waiters::new();
    waiters.insert(x.0, x.1, "X").unwrap();
    let log2 = TermLog(vec![1, 2]);
    let log345 = TermLog(vec![1]);
    // S5 may win term 3: S3 and S4 (and itself) hold nothing newer than its log.
    assert!(log_up_to_date(
        1,
        1,
        log345.last_term(),
        log345.last_index()
    ));
    // S5's no-op at 2 (term 3) reaches S1.
    let push3 = PushRequest {
        term: 3,
        prev_index: 1,
        prev_term: 1,
        commit_index: 1,
        entries: vec![entry(2, 3)],
    };
    let (_, outcome) = core1.on_push(s5, &push3, ELECTION_MS * 4, &log1);
    assert_eq!(outcome.truncate_from, Some(2), "S1 truncates X");
    assert!(outcome.response.unwrap().success);
    log1.0.truncate(1);
    log1.0.push(3);
    assert_eq!(core1.commit_index, 1);
    assert!(
        waiters.take_decided(core1.commit_index, &log1).is_empty(),
        "X is truncated on S1 but not decided: S2 still holds it"
    );
    assert_eq!(waiters.len(), 1);
    // S5 dies. S2 wins term 4 with S3 and S4: its last term 2 beats their 1.
    assert!(log_up_to_date(
        log2.last_term(),
        log2.last_index(),
        log345.last_term(),
        log345.last_index()
    ));
    // S2's pushes after its no-op at 3 (term 4): first a probe S1 refuses...
    let probe = PushRequest {
        term: 4,
        prev_index: 2,
        prev_term: 2,
        commit_index: 1,
        entries: vec![],
    };
    let (_, outcome) = core1.on_push(s2, &probe, ELECTION_MS * 6, &log1);
    assert!(!outcome.response.unwrap().success);
    // ...then X and the no-op, once S2, S3 and S4 hold both: commit 3.
    let push4 = PushRequest {
        term: 4,
        prev_index: 1,
        prev_term: 1,
        commit_index: 3,
        entries: vec![entry(2, 2), entry(3, 4)],
    };
    let (_, outcome) = core1.on_push(s2, &push4, ELECTION_MS * 6, &log1);
    assert_eq!(outcome.truncate_from, Some(2));
    log1.0.truncate(1);
    log1.0.extend([2, 4]);
    assert_eq!(core1.commit_index, 3);
    let decided = waiters.take_decided(core1.commit_index, &log1);
    assert_eq!(decided.len(), 1);
    assert_eq!(
        (decided[0].0, decided[0].1, decided[0].2),
        (x, "X", Decided::Committed),
        "X committed in term 4: its waiter must see it committed"
    );
}

/// The other way Figure 8 can end: S5 comes back and commits its own entry at 2, which
/// decides X as definitely not committed; an append of term 3 at the same index on a
/// member that led twice is decided apart from it.
#[test]
fn figure_8_a_committed_entry_of_another_term_decides_the_append_failed() {
    let mut waiters = Waiters::new();
    waiters.insert(2, 2, "X").unwrap();
    waiters.insert(2, 3, "Y").unwrap();
    let log = TermLog(vec![1, 3, 3]);
    let decided: Vec<_> = waiters.take_decided(3, &log).into_iter().collect();
    assert_eq!(
        decided,
        vec![
            ((2, 2), "X", Decided::Replaced { committed_term: 3 }),
            ((2, 3), "Y", Decided::Committed),
        ]
    );
}

#[test]
fn a_member_whose_hard_state_is_unsaved_grants_nothing_and_asks_to_save_every_tick() {
    let log = TermLog(vec![1]);
    let mut core = RaftCore::new(config(3, 1), 2, None, 0, 1);
    let req = VoteRequest {
        term: 3,
        last_index: 1,
        last_term: 1,
        pre_vote: false,
        transfer: false,
    };
    // The vote for term 3 could not be saved (disk full).
    let (fx, resp, _) = core.on_vote_request(0, &req, ELECTION_MS * 3, &log);
    assert!(resp.granted && fx.persist_hard_state);
    core.hard_state_save_failed();
    assert!(!core.may_speak());
    // Another candidate of the same term is refused, and so is a pre-vote.
    let (_, resp, why) = core.on_vote_request(2, &req, ELECTION_MS * 3, &log);
    assert!(!resp.granted);
    assert_eq!(why, Some(VoteRefusal::HardStateUnsaved));
    let pre = VoteRequest {
        term: 4,
        pre_vote: true,
        ..req.clone()
    };
    let (_, resp, why) = core.on_vote_request(2, &pre, ELECTION_MS * 3, &log);
    assert!(!resp.granted);
    assert_eq!(why, Some(VoteRefusal::HardStateUnsaved));
    // Ticks long past the election timeout: no campaign, only another save.
    for step in 1..=5 {
        let fx = core.tick(ELECTION_MS * 3 * (step + 1), &log);
        assert!(fx.persist_hard_state, "tick {step} asks to save again");
        assert!(fx.messages.is_empty());
        assert_eq!(core.role, Role::Follower);
        assert_eq!(core.term, 3);
    }
    core.hard_state_saved();
    assert!(core.may_speak());
    let fx = core.tick(ELECTION_MS * 30, &log);
    assert!(!fx.messages.is_empty(), "saved: it campaigns again");
}

#[test]
fn invariants_hold_through_an_election_and_commits_and_name_what_broke() {
    let mut log = TermLog(vec![1, 1]);
    let before = RaftCore::new(config(3, 0), 1, None, 0, 7).mark();
    let mut core = elect(config(3, 0), 1, &mut log, 2 * ELECTION_MS);
    core.check_invariants(before, &log).unwrap();
    let mark = core.mark();
    for _ in 0..3 {
        log.0.push(core.term);
    }
    core.on_local_progress(log.last_index(), &log);
    // The first push probes (COMPARE), the next ones carry the entries.
    for _ in 0..4 {
        let Some(plan) = send(&mut core, 1, 2 * ELECTION_MS, &log) else {
            break;
        };
        let at = plan.to_index.max(plan.prev_index);
        let term = core.term;
        core.on_push_response(1, plan.request_id, &ok(at, at, term), 2 * ELECTION_MS, &log);
        core.check_invariants(mark, &log).unwrap();
    }
    assert!(core.commit_index > mark.commit_index);
    core.check_invariants(mark, &log).unwrap();

    // Each invariant, broken by hand, is named.
    let good = core.mark();
    let mut c = RaftCore::new(config(3, 0), core.term, None, 0, 7);
    c.commit_index = core.commit_index;
    c.term = good.term - 1;
    let broken = |c: &RaftCore, log: &TermLog| c.check_invariants(good, log).unwrap_err();
    assert!(broken(&c, &log).contains("term went back"));
    c.term = good.term;
    c.commit_index = good.commit_index - 1;
    assert!(broken(&c, &log).contains("commit index went back"));
    let short = TermLog(log.0[..good.commit_index as usize - 1].to_vec());
    assert!(broken(&core, &short).contains("past the last entry"));
    let mut bad = elect(config(3, 0), 1, &mut TermLog(vec![1]), 2 * ELECTION_MS);
    let m = bad.mark();
    let l = TermLog(vec![1, 2]);
    bad.progress[2].match_index = bad.progress[2].next_index;
    assert!(bad
        .check_invariants(m, &l)
        .unwrap_err()
        .contains("member 2: match"));
    bad.progress[2].match_index = 0;
    bad.progress[1].flushed_index = bad.progress[1].match_index + 1;
    assert!(bad
        .check_invariants(m, &l)
        .unwrap_err()
        .contains("member 1: flushed"));
}

#[test]
fn restart_and_disk_full_clamp_keep_commit_within_the_log() {
    let mut core = RaftCore::new(config(3, 0), 3, None, 0, 7);
    assert!(!core.restore_commit(5, 9));
    assert_eq!((core.commit_index, core.repair_target), (5, 0));
    let mut lost = RaftCore::new(config(3, 0), 3, None, 0, 7);
    assert!(
        lost.restore_commit(12, 9),
        "entries known committed are gone: repair first"
    );
    assert_eq!((lost.commit_index, lost.repair_target), (9, 12));
    let mut f = RaftCore::new(config(3, 1), 3, None, 0, 7);
    f.commit_index = 20;
    f.clamp_commit_to_log(4, 15);
    assert_eq!(f.commit_index, 15, "commit only what the member holds");
    f.clamp_commit_to_log(15, 10);
    assert_eq!(f.commit_index, 15, "never below what was committed before");
}
