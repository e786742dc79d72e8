//! The history checker against hand-made histories: it accepts a good one and catches
//! each kind of violation.

#[path = "mod.rs"]
mod history;

use history::*;
use rmqraft::{EntryMeta, Error, ErrorKind};
use std::collections::BTreeMap;

fn meta(index: u64) -> EntryMeta {
    EntryMeta {
        index,
        term: 1,
        pos: 0,
    }
}

fn log(member: &str, bodies: &[&str]) -> MemberLog {
    MemberLog {
        member: member.to_string(),
        commit_index: bodies.len() as u64,
        entries: bodies
            .iter()
            .enumerate()
            .map(|(i, b)| (i as u64 + 1, Ok(b.as_bytes().to_vec())))
            .collect::<BTreeMap<_, _>>(),
    }
}

/// Entry 1 a no-op; a, b, c acked at 2, 3, 4; d rejected; e unknown (and absent).
fn base() -> std::sync::Arc<History> {
    let h = History::new();
    for (payload, index) in [("a", 2), ("b", 3), ("c", 4)] {
        let id = h.invoke(payload.as_bytes());
        h.ack(id, &meta(index));
    }
    let d = h.invoke(b"d");
    h.error(d, &Error::new(ErrorKind::NotLeader, "not the leader"));
    let e = h.invoke(b"e");
    h.error(e, &Error::new(ErrorKind::Timeout, "outcome unknown"));
    h
}

fn kind(result: Result<Summary, Violation>) -> ViolationKind {
    match result {
        Ok(s) => panic!("expected a violation, got {s:?}"),
        Err(v) => {
            // The report names the problem and shows history.
            let text = v.to_string();
            assert!(text.contains("history around it"), "{text}");
            v.kind
        }
    }
}

#[test]
fn a_good_history_passes_and_a_member_missing_an_ack_does_not() {
    let h = base();
    let s = check(
        &h,
        &[
            log("n0", &["", "a", "b", "c"]),
            log("n1", &["", "a", "b", "c"]),
            log("n2", &["", "a", "b"]),
        ],
    )
    .unwrap_err();
    // n2 has not committed c yet: that is a lost acked entry for a live member.
    assert_eq!(s.kind, ViolationKind::AckedLost);
    let s = check(
        &h,
        &[
            log("n0", &["", "a", "b", "c", "e"]),
            log("n1", &["", "a", "b", "c", "e"]),
        ],
    )
    .unwrap();
    assert_eq!(
        (s.acked, s.failed, s.unknown, s.unknown_present),
        (3, 1, 1, 1)
    );
}

#[test]
fn a_lost_acked_entry_is_caught() {
    let h = base();
    assert_eq!(
        kind(check(
            &h,
            &[log("n0", &["", "a", "c"]), log("n1", &["", "a", "c"])]
        )),
        ViolationKind::AckedLost
    );
    assert_eq!(
        kind(check(&h, &[log("n0", &["", "a", "c", "b"])])),
        ViolationKind::AckedMisplaced
    );
    assert_eq!(
        kind(check(&h, &[log("n0", &["", "a", "e", "c"])])),
        ViolationKind::AckedLost
    );
}

#[test]
fn divergent_prefixes_are_caught() {
    let h = base();
    assert_eq!(
        kind(check(
            &h,
            &[
                log("n0", &["", "a", "b", "c"]),
                log("n1", &["", "a", "b", "e"])
            ]
        )),
        ViolationKind::PrefixDiverges
    );
}

#[test]
fn a_duplicate_is_caught() {
    let h = base();
    assert_eq!(
        kind(check(&h, &[log("n0", &["", "a", "b", "c", "a"])])),
        ViolationKind::Duplicate
    );
}

#[test]
fn a_rejected_entry_that_appears_is_caught() {
    let h = base();
    assert_eq!(
        kind(check(&h, &[log("n0", &["", "a", "b", "c", "d"])])),
        ViolationKind::RejectedPresent
    );
    // A completion saying the entry was replaced is definite too.
    let h = base();
    let f = h.invoke(b"f");
    h.fail(f, "entry 5 was replaced by a new leader's entry");
    assert_eq!(
        kind(check(&h, &[log("n0", &["", "a", "b", "c", "f"])])),
        ViolationKind::RejectedPresent
    );
}

#[test]
fn a_gap_or_unreadable_entry_is_caught() {
    let h = base();
    let mut gap = log("n0", &["", "a", "b", "c"]);
    gap.entries.remove(&2);
    assert_eq!(kind(check(&h, &[gap])), ViolationKind::NotContiguous);
    let mut bad = log("n0", &["", "a", "b", "c"]);
    bad.entries
        .insert(3, Err("RMQRAFT_ERR_CORRUPT: bad CRC".into()));
    assert_eq!(kind(check(&h, &[bad])), ViolationKind::NotContiguous);
}

#[test]
fn an_entry_nobody_appended_is_caught() {
    let h = base();
    assert_eq!(
        kind(check(&h, &[log("n0", &["", "a", "b", "c", "zz"])])),
        ViolationKind::NeverInvoked
    );
}

#[test]
fn a_crash_makes_pending_unknown_and_late_acks_are_ignored() {
    let h = History::new();
    let a = h.invoke(b"a");
    h.crash("power cut");
    h.ack(a, &meta(1));
    let b = h.invoke(b"b");
    h.ack(b, &meta(2));
    h.recovered("restart");
    let c = h.invoke(b"c");
    h.ack(c, &meta(1));
    let s = check(&h, &[log("n0", &["c"])]).unwrap();
    assert_eq!((s.acked, s.unknown), (1, 2));
}

#[test]
fn only_a_lost_suffix_is_allowed_when_asked() {
    let h = base();
    let lenient = CheckOptions {
        acked_may_lose_suffix: true,
    };
    let s = check_with(&h, &[log("n0", &["", "a", "b"])], lenient).unwrap();
    assert_eq!(s.acked_lost, 1);
    assert_eq!(
        kind(check_with(&h, &[log("n0", &["", "a", "", "c"])], lenient)),
        ViolationKind::AckedLost
    );
    // Strict mode refuses the same loss.
    assert_eq!(
        kind(check(&h, &[log("n0", &["", "a", "b"])])),
        ViolationKind::AckedLost
    );
}
