//! Process faults: three `rmqraft node` processes under concurrent appends from several
//! client threads; kill -9 of random members (the leader more often) and restarts,
//! SIGSTOP/SIGCONT pauses longer than the election timeout (of the leader especially).
//! At the end every fault is healed, the group must converge and make progress, and every
//! member's committed log is checked against the history (tests/history) and against the
//! term of every acknowledgement. Scenarios and findings: docs/FAULTS-network.md.
//!
//! `RMQRAFT_FAULTS_LONG=SECONDS` runs the fault phase that long; `RMQRAFT_FAULTS_SEED=N`
//! replays a run's choices.

mod chaos;
mod history;

use chaos::nodes::Nodes;
use chaos::workload::{settle_and_check, Load, Observer};
use chaos::{fault_phase, wait_until};
use history::History;
use std::time::{Duration, Instant};

const CLIENTS: usize = 3;
/// Default election timeout is 300-600 ms; pauses are well above it.
const PAUSE_MS: std::ops::Range<u64> = 1000..2000;
const DOWN_MS: std::ops::Range<u64> = 200..1500;
/// After each fault is healed, new appends must be acknowledged within this.
const PROGRESS_LIMIT: Duration = Duration::from_secs(20);

#[derive(Debug, Default)]
struct Tally {
    kills: usize,
    leader_kills: usize,
    pauses: usize,
    leader_pauses: usize,
    double_faults: usize,
}

#[test]
fn kill_and_pause_members_under_concurrent_appends() {
    let mut rng = chaos::rng("process_faults");
    let mut nodes = Nodes::start(3, "");
    let group = nodes.group();
    let mut remote = group.remote();
    wait_until("a first leader", Duration::from_secs(30), || {
        remote.find_leader()
    });
    let history = History::new();
    let observer = Observer::start(&group);
    let load = Load::start(&group, "proc", CLIENTS, &history);

    let phase = fault_phase(Duration::from_secs(20));
    let start = Instant::now();
    let mut tally = Tally::default();
    for _round in 0..100_000 {
        if start.elapsed() >= phase {
            break;
        }
        // Each round starts from a serving group: some appends acknowledged since the last.
        let acked = history.acked_count();
        wait_until(
            "appends acknowledged after the last fault",
            PROGRESS_LIMIT,
            || (history.acked_count() >= acked + 5).then_some(()),
        );
        let leader = remote.find_leader();
        let victim = match leader {
            Some(l) if rng.u8(0..3) < 2 => l,
            _ => rng.usize(0..nodes.len()),
        };
        let is_leader = leader == Some(victim);
        let second = (rng.u8(0..10) == 0).then(|| (victim + 1 + rng.usize(0..2)) % 3);
        if rng.bool() {
            let down = Duration::from_millis(rng.u64(DOWN_MS));
            history.note(&format!(
                "kill -9 n{victim} (leader: {is_leader}) for {down:?}"
            ));
            nodes.kill9(victim);
            tally.kills += 1;
            tally.leader_kills += usize::from(is_leader);
            if let Some(s) = second {
                // Both down or stopped: no quorum for a while.
                history.note(&format!("and SIGSTOP n{s}"));
                nodes.pause(s);
                tally.double_faults += 1;
            }
            std::thread::sleep(down);
            nodes.restart(victim);
            if let Some(s) = second {
                nodes.resume(s);
            }
            history.note(&format!("n{victim} restarted"));
        } else {
            let pause = Duration::from_millis(rng.u64(PAUSE_MS));
            history.note(&format!(
                "SIGSTOP n{victim} (leader: {is_leader}) for {pause:?}"
            ));
            nodes.pause(victim);
            tally.pauses += 1;
            tally.leader_pauses += usize::from(is_leader);
            if let Some(s) = second {
                history.note(&format!("and kill -9 n{s}"));
                nodes.kill9(s);
                tally.double_faults += 1;
            }
            std::thread::sleep(pause);
            nodes.resume(victim);
            if let Some(s) = second {
                nodes.restart(s);
            }
            history.note(&format!("SIGCONT n{victim}"));
        }
    }
    nodes.heal();
    history.note("healed: every member running");
    let acks = load.stop();
    let leader_terms = observer.leader_terms();
    observer.stop();
    let verdict = settle_and_check(
        &group,
        &history,
        &acks,
        &leader_terms,
        Duration::from_secs(10),
    );
    println!(
        "process faults over {:?}: {tally:?}\n{:?}\nleaders seen in {} terms; acks carried {} terms; \
         {} acks arrived after a newer term's leader was seen, all in the final log with their term",
        start.elapsed(),
        verdict.summary,
        verdict.leader_terms_seen,
        verdict.ack_terms,
        verdict.acks_after_newer_leader
    );
    assert!(tally.kills + tally.pauses >= 3, "too few faults: {tally:?}");
    assert!(
        tally.leader_kills + tally.leader_pauses >= 1,
        "the leader was never hit: {tally:?}"
    );
    assert!(
        verdict.leader_terms_seen >= 2,
        "no leader change observed: {verdict:?}"
    );
    assert!(verdict.summary.acked >= 50, "{verdict:?}");
}
