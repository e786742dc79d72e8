//! Network faults: a fault-injecting TCP proxy on every directed peer link (member i's
//! config lists, for member j, the proxy of link i->j), members in-process, one engine
//! each. Partitions (symmetric, one-way, majority/minority, the leader cut off), dropped
//! and delayed traffic, half-open connections, corrupted bytes and resets, under
//! concurrent appends recorded in the history (tests/history). After healing the group
//! must converge and commit a new append within a bound, and the checker must pass.
//! Scenarios and findings: docs/FAULTS-network.md.
//!
//! `RMQRAFT_FAULTS_LONG=SECONDS` runs each scenario's fault phase (or its rounds) that
//! long; `RMQRAFT_FAULTS_SEED=N` replays a run's choices.

mod chaos;
mod history;

use chaos::proxy::{Mesh, Mode};
use chaos::remote::Remote;
use chaos::workload::{converged, settle_and_check, Group, Load, Observer, Verdict};
use chaos::{fault_phase, poll_until, wait_until};
use history::History;
use rmqraft::{Engine, ErrorKind, Role};
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

const CLUSTER: &str = "ChaosCluster";
const GROUP: &str = "ChaosNet";
/// A healed group must commit a new append within this.
const PROGRESS_LIMIT: Duration = Duration::from_secs(10);
/// Appends must keep being acknowledged while a majority is connected.
const MAJORITY_PROGRESS_LIMIT: Duration = Duration::from_secs(15);

/// Three members, each in its own engine, every peer link through a proxy.
struct NetCluster {
    _root: tempfile::TempDir,
    mesh: Mesh,
    members: Vec<(Engine, rmqraft::Group)>,
    group: Group,
}

impl NetCluster {
    fn start(n: usize) -> NetCluster {
        let _ = env_logger::builder().is_test(true).try_init();
        let root = tempfile::tempdir().expect("tempdir");
        for _attempt in 0..5 {
            let listeners: Vec<TcpListener> = (0..n)
                .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind port 0"))
                .collect();
            let addrs: Vec<SocketAddr> = listeners
                .iter()
                .map(|l| l.local_addr().expect("addr"))
                .collect();
            drop(listeners);
            let mesh = Mesh::start(&addrs);
            let opened: rmqraft::Result<Vec<_>> = (0..n)
                .map(|i| {
                    let peers = (0..n)
                        .map(|j| {
                            let addr = if i == j { addrs[i] } else { mesh.addr(i, j) };
                            format!("n{j}-{addr}")
                        })
                        .collect::<Vec<_>>()
                        .join(";");
                    let engine = Engine::open(&format!("brokerClusterName={CLUSTER}"))?;
                    let group = engine.open_group(&format!(
                        "dLegerGroup={GROUP}\ndLegerPeers={peers}\ndLegerSelfId=n{i}\n\
                         storePathRootDir={}\nmappedFileSizeCommitLog=4194304\n",
                        root.path().join(format!("n{i}")).display()
                    ))?;
                    Ok((engine, group))
                })
                .collect();
            match opened {
                Ok(members) => {
                    return NetCluster {
                        _root: root,
                        mesh,
                        members,
                        group: Group {
                            cluster: CLUSTER.to_string(),
                            group: GROUP.to_string(),
                            addrs,
                        },
                    }
                }
                Err(e) if e.kind() == ErrorKind::Io => continue,
                Err(e) => panic!("cannot start the group: {e}"),
            }
        }
        panic!("kept finding the group's ports taken");
    }

    fn remote(&self) -> Remote {
        self.group.remote()
    }

    fn status(&self, i: usize) -> rmqraft::GroupStatus {
        self.members[i].1.status().expect("status")
    }

    fn leader(&self) -> Option<usize> {
        (0..self.members.len()).find(|&i| self.status(i).role == Role::Leader)
    }

    /// The one leader every member follows, in one term.
    fn wait_stable_leader(&self) -> (usize, u64) {
        wait_until(
            "a leader every member follows",
            Duration::from_secs(30),
            || {
                let statuses: Vec<_> = (0..self.members.len()).map(|i| self.status(i)).collect();
                let leader = statuses.iter().find(|s| s.role == Role::Leader)?;
                statuses
                    .iter()
                    .all(|s| s.term == leader.term && s.leader_peer == leader.self_peer)
                    .then_some((leader.self_peer as usize, leader.term))
            },
        )
    }
}

impl Drop for NetCluster {
    fn drop(&mut self) {
        for (engine, group) in self.members.drain(..) {
            group.close();
            engine.close();
        }
    }
}

/// Waits until `n` more appends have been acknowledged.
fn wait_progress(history: &History, n: usize, limit: Duration, what: &str) {
    let acked = history.acked_count();
    wait_until(what, limit, || {
        (history.acked_count() >= acked + n).then_some(())
    });
}

fn report(scenario: &str, start: Instant, notes: &str, verdict: &Verdict) {
    println!(
        "{scenario} over {:?}: {notes}\n  {:?}\n  leaders seen in {} terms; recovery after healing {:?}; \
         {} acks arrived after a newer term's leader was seen (all in the final log with their term)",
        start.elapsed(),
        verdict.summary,
        verdict.leader_terms_seen,
        verdict.recovery,
        verdict.acks_after_newer_leader
    );
}

/// Partitions of every shape, dropped and delayed traffic, one after another under load.
#[test]
fn partitions_drops_and_delays_under_load() {
    let mut rng = chaos::rng("partitions_drops_and_delays_under_load");
    let cluster = NetCluster::start(3);
    cluster.wait_stable_leader();
    let history = History::new();
    let observer = Observer::start(&cluster.group);
    let load = Load::start(&cluster.group, "net", 3, &history);
    let mesh = &cluster.mesh;
    let start = Instant::now();
    let phase = fault_phase(Duration::from_secs(20));
    let mut done = std::collections::BTreeMap::<&str, usize>::new();
    for round in 0..100_000usize {
        if start.elapsed() >= phase && round >= 7 {
            break;
        }
        wait_progress(
            &history,
            5,
            PROGRESS_LIMIT,
            "appends acknowledged before the next fault",
        );
        let leader = cluster.leader().unwrap_or(0);
        let follower = (leader + 1 + rng.usize(0..2)) % 3;
        let hold_for = Duration::from_millis(rng.u64(1000..2000));
        // The first rounds go through every kind once, then at random.
        let kind = if round < 7 { round } else { rng.usize(0..7) };
        let name = match kind {
            0 => {
                mesh.isolate(follower, Mode::Hold);
                "follower isolated (held)"
            }
            1 => {
                mesh.isolate(leader, Mode::Hold);
                "leader isolated from the majority (held)"
            }
            2 => {
                mesh.isolate(leader, Mode::Drop);
                "leader isolated (dropped, links reset at heal)"
            }
            3 => {
                for j in 0..3 {
                    if j != leader {
                        mesh.link(j, leader).set(Mode::Hold);
                    }
                }
                "one-way: the leader hears nobody"
            }
            4 => {
                for j in 0..3 {
                    if j != leader {
                        mesh.link(leader, j).set(Mode::Hold);
                    }
                }
                "one-way: nobody hears the leader"
            }
            5 => {
                let d = Duration::from_millis(rng.u64(20..150));
                mesh.set_all(Mode::Delay(d));
                "every link delayed 20-150 ms"
            }
            _ => {
                mesh.link(leader, follower).set(Mode::Drop);
                mesh.link(follower, leader).set(Mode::Drop);
                "leader-follower link flaky (dropped, reset)"
            }
        };
        history.note(&format!(
            "fault: {name} (leader n{leader}, follower n{follower}) for {hold_for:?}"
        ));
        *done.entry(name).or_default() += 1;
        if matches!(kind, 0 | 5 | 6) {
            // A majority stays connected: appends go on being acknowledged.
            wait_progress(
                &history,
                5,
                MAJORITY_PROGRESS_LIMIT,
                &format!("progress during '{name}'"),
            );
        }
        std::thread::sleep(hold_for);
        mesh.heal();
        history.note("healed");
    }
    wait_progress(
        &history,
        5,
        PROGRESS_LIMIT,
        "appends acknowledged after the last fault",
    );
    let acks = load.stop();
    let leader_terms = observer.leader_terms();
    observer.stop();
    let verdict = settle_and_check(
        &cluster.group,
        &history,
        &acks,
        &leader_terms,
        PROGRESS_LIMIT,
    );
    report(
        "partitions, drops, delays",
        start,
        &format!("{done:?}"),
        &verdict,
    );
    assert!(verdict.summary.acked >= 50, "{verdict:?}");
    assert!(
        verdict.leader_terms_seen >= 2,
        "no leader change: {verdict:?}"
    );
}

/// Corrupted bytes are caught by the frame CRC: that connection alone is closed, the link
/// reconnects, the group goes on; abrupt resets likewise.
#[test]
fn corrupted_bytes_and_resets_are_survived() {
    let mut rng = chaos::rng("corrupted_bytes_and_resets_are_survived");
    let cluster = NetCluster::start(3);
    cluster.wait_stable_leader();
    let history = History::new();
    let observer = Observer::start(&cluster.group);
    let load = Load::start(&cluster.group, "crc", 3, &history);
    let mesh = &cluster.mesh;
    let start = Instant::now();
    let phase = fault_phase(Duration::from_secs(15));
    let (mut corruptions, mut resets) = (0u64, 0u64);
    for round in 0..100_000usize {
        if start.elapsed() >= phase && round >= 6 {
            break;
        }
        wait_progress(
            &history,
            5,
            PROGRESS_LIMIT,
            "appends acknowledged before the next fault",
        );
        let leader = cluster.leader().unwrap_or(0);
        let other = (leader + 1 + rng.usize(0..2)) % 3;
        // The leader's links carry the pushes, the followers' the acknowledgements.
        let link = if rng.bool() {
            mesh.link(leader, other)
        } else {
            mesh.link(other, leader)
        };
        let accepted = link.accepted();
        let others: Vec<(String, u64)> = mesh
            .links()
            .filter(|l| l.name() != link.name())
            .map(|l| (l.name().to_string(), l.accepted()))
            .collect();
        if round % 3 == 2 {
            history.note(&format!("reset {}", link.name()));
            link.reset();
            resets += 1;
        } else {
            let before = link.corrupted();
            history.note(&format!("corrupt one frame on {}", link.name()));
            link.corrupt_next(1);
            wait_until(
                &format!("a frame corrupted on {}", link.name()),
                Duration::from_secs(10),
                || (link.corrupted() > before).then_some(()),
            );
            corruptions += 1;
        }
        // The receiver closed that connection (or the reset did): the sender reconnects.
        wait_until(
            &format!("{} to reconnect", link.name()),
            Duration::from_secs(10),
            || (link.accepted() > accepted).then_some(()),
        );
        wait_progress(&history, 5, PROGRESS_LIMIT, "progress after the fault");
        // That connection alone was closed: no other link reconnected. A link never
        // connected before (between two followers: only votes use it) may connect for the
        // first time if a follower that missed heartbeats while its leader's link was
        // down sends a pre-vote; that is not a reconnect.
        for (name, before) in &others {
            if *before == 0 {
                continue;
            }
            let now = mesh
                .links()
                .find(|l| l.name() == name)
                .map_or(0, |l| l.accepted());
            assert_eq!(
                now,
                *before,
                "link {name} reconnected after a fault on {}",
                link.name()
            );
        }
    }
    let acks = load.stop();
    let leader_terms = observer.leader_terms();
    observer.stop();
    let verdict = settle_and_check(
        &cluster.group,
        &history,
        &acks,
        &leader_terms,
        PROGRESS_LIMIT,
    );
    let notes = format!(
        "{corruptions} frames corrupted, {resets} resets, {} connections accepted by the proxies",
        mesh.accepted()
    );
    report("corruption and resets", start, &notes, &verdict);
    assert!(mesh.corrupted() >= corruptions && corruptions >= 4);
}

/// The leader's link to a follower goes half-open: the follower's side is closed while
/// the leader's writes keep succeeding into nowhere. The majority goes on, and the leader,
/// hearing nothing from the follower for four election timeouts, re-dials it: the follower
/// catches up while the old connection is still half-open.
#[test]
fn half_open_link_is_survived() {
    let cluster = NetCluster::start(3);
    let (leader, _) = cluster.wait_stable_leader();
    let follower = (leader + 1) % 3;
    let history = History::new();
    let observer = Observer::start(&cluster.group);
    let load = Load::start(&cluster.group, "half", 3, &history);
    let start = Instant::now();
    wait_progress(&history, 20, PROGRESS_LIMIT, "appends before the fault");
    let link = cluster.mesh.link(leader, follower);
    wait_until(
        "an open connection on the link",
        Duration::from_secs(10),
        || (link.open_connections() > 0).then_some(()),
    );
    history.note(&format!("half-open {}", link.name()));
    link.half_open();
    wait_progress(
        &history,
        50,
        MAJORITY_PROGRESS_LIMIT,
        "progress with a half-open link",
    );
    // The leader notices the silent follower and re-dials it (Transport::reset_link).
    let behind_at = cluster.status(follower).last_index;
    let lead_last = cluster
        .status(cluster.leader().unwrap_or(leader))
        .last_index;
    let noticed = poll_until(Duration::from_secs(5), || {
        (cluster.status(follower).last_index >= lead_last).then_some(())
    })
    .is_some();
    history.note("reset the half-open connection");
    cluster.mesh.heal();
    let acks = load.stop();
    let leader_terms = observer.leader_terms();
    observer.stop();
    let verdict = settle_and_check(
        &cluster.group,
        &history,
        &acks,
        &leader_terms,
        PROGRESS_LIMIT,
    );
    let notes = format!(
        "follower n{follower} at {behind_at} when the leader was at {lead_last}; \
         caught up by itself while the link stayed half-open: {noticed}"
    );
    report("half-open link", start, &notes, &verdict);
    assert!(
        noticed,
        "the follower stayed behind a half-open link: {notes}"
    );
    assert!(verdict.summary.acked >= 50, "{verdict:?}");
}

/// A follower cut off (fully, then from the leader only) must not disrupt a healthy
/// leader when it returns: pre-vote keeps its term from growing, the leader lease makes
/// the other follower refuse it while it hears the leader. The leader's term never changes.
#[test]
fn isolated_follower_returns_without_disrupting_the_leader() {
    let cluster = NetCluster::start(3);
    let (leader, term) = cluster.wait_stable_leader();
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let history = History::new();
    let observer = Observer::start(&cluster.group);
    let mut remote = cluster.remote();
    let mesh = &cluster.mesh;
    let start = Instant::now();
    let rounds_until = chaos::long_run().map(|d| start + d);
    let mut rounds = 0;
    for round in 0..100_000usize {
        if round >= 3 && rounds_until.is_none_or(|t| Instant::now() >= t) {
            break;
        }
        rounds += 1;
        // Appends between the cuts, none during: the follower's log stays up to date, so
        // only the lease stops it from winning a vote.
        let body = chaos::workload::payload("lease", round, 0);
        chaos::workload::append_within(&mut remote, &history, &body, PROGRESS_LIMIT)
            .expect("append between the cuts");
        wait_until("the follower to catch up", Duration::from_secs(10), || {
            converged(&mut remote)
        });
        let (what, cut): (&str, Vec<(usize, usize)>) = match round % 3 {
            0 => (
                "isolated",
                vec![
                    (follower, leader),
                    (leader, follower),
                    (follower, other),
                    (other, follower),
                ],
            ),
            1 => (
                "cut from the leader only",
                vec![(follower, leader), (leader, follower)],
            ),
            _ => (
                "hears nobody, reaches everyone",
                vec![(leader, follower), (other, follower)],
            ),
        };
        let mode = if round % 2 == 0 {
            Mode::Hold
        } else {
            Mode::Drop
        };
        history.note(&format!("follower n{follower} {what} ({mode:?})"));
        for (i, j) in &cut {
            mesh.link(*i, *j).set(mode);
        }
        // Several election timeouts (300-600 ms): the follower campaigns again and again.
        std::thread::sleep(Duration::from_millis(2500));
        let during = cluster.status(leader);
        mesh.heal();
        assert!(
            during.role == Role::Leader && during.term == term,
            "round {round} ({what}): the leader changed while the follower was cut off: {during:?}"
        );
        wait_until(
            "the follower to follow the leader again",
            Duration::from_secs(10),
            || converged(&mut remote),
        );
        let after = cluster.status(leader);
        assert!(
            after.role == Role::Leader && after.term == term,
            "round {round} ({what}): the returning follower disrupted the leader: term {term} -> {after:?}"
        );
    }
    let leader_terms = observer.leader_terms();
    let sightings = observer.stop();
    let terms: std::collections::BTreeSet<u64> = sightings.iter().map(|s| s.term).collect();
    assert_eq!(
        terms.into_iter().collect::<Vec<_>>(),
        vec![term],
        "a member was seen in another term: {sightings:?}"
    );
    let verdict = settle_and_check(&cluster.group, &history, &[], &leader_terms, PROGRESS_LIMIT);
    assert_eq!(verdict.term, term);
    report(
        "isolated follower returns",
        start,
        &format!("{rounds} rounds, leader n{leader} kept term {term}"),
        &verdict,
    );
}

/// A leader cut off from the majority steps down (check-quorum) while the majority elects
/// a new one; nothing appended through the old leader meanwhile is acknowledged.
#[test]
fn isolated_leader_steps_down_and_majority_elects() {
    let cluster = NetCluster::start(3);
    let history = History::new();
    let observer = Observer::start(&cluster.group);
    let load = Load::start(&cluster.group, "quorum", 2, &history);
    let start = Instant::now();
    let rounds_until = chaos::long_run().map(|d| start + d);
    let mut step_downs = Vec::new();
    for round in 0..100_000usize {
        if round >= 2 && rounds_until.is_none_or(|t| Instant::now() >= t) {
            break;
        }
        let (old, term) = cluster.wait_stable_leader();
        wait_progress(&history, 10, PROGRESS_LIMIT, "appends before the cut");
        let mode = if round % 2 == 0 {
            Mode::Hold
        } else {
            Mode::Drop
        };
        history.note(&format!("leader n{old} (term {term}) isolated ({mode:?})"));
        cluster.mesh.isolate(old, mode);
        let cut_at = Instant::now();
        // Sent straight to the old leader (clients are not behind the proxies), while
        // the step-down is timed.
        let body = chaos::workload::payload("to-isolated-leader", round, 0);
        let id = history.invoke(&body);
        let mut direct = cluster.remote();
        let sender = std::thread::spawn(move || direct.append(old, &body));
        let stepped = wait_until(
            "the isolated leader to step down",
            Duration::from_secs(5),
            || (cluster.status(old).role != Role::Leader).then(|| cut_at.elapsed()),
        );
        let answer = sender.join().expect("append thread");
        match &answer {
            Ok(meta) => history.ack(id, meta),
            Err(e) => history.unknown(id, &e.to_string()),
        }
        assert!(
            answer.is_err(),
            "the isolated leader n{old} acknowledged an append: {answer:?}"
        );
        let (new, new_term) = wait_until(
            "the majority to elect a leader",
            Duration::from_secs(10),
            || {
                (0..3).filter(|&i| i != old).find_map(|i| {
                    let s = cluster.status(i);
                    (s.role == Role::Leader && s.term > term).then_some((i, s.term))
                })
            },
        );
        wait_progress(
            &history,
            10,
            MAJORITY_PROGRESS_LIMIT,
            "the majority to acknowledge appends",
        );
        step_downs.push((old, stepped, new, new_term));
        history.note("healed");
        cluster.mesh.heal();
        let (_, after_term) = cluster.wait_stable_leader();
        assert!(after_term >= new_term);
    }
    let acks = load.stop();
    let leader_terms = observer.leader_terms();
    observer.stop();
    let verdict = settle_and_check(
        &cluster.group,
        &history,
        &acks,
        &leader_terms,
        PROGRESS_LIMIT,
    );
    let notes = step_downs
        .iter()
        .map(|(old, after, new, t)| {
            format!("n{old} stepped down {after:?} after the cut, n{new} leads term {t}")
        })
        .collect::<Vec<_>>()
        .join("; ");
    report("isolated leader", start, &notes, &verdict);
}

/// Isolation of groups sharing engines: two groups on the same three engines, both led
/// by n_L. Group A's member on n_F closes (a dead member); group B keeps appending and
/// keeps answering from n_F. The link n_L -> n_F is judged by every group's answers, so
/// A's silent member never re-dials it (which would drop B's frames in flight): over
/// several re-dial periods (four election timeouts) the link keeps its connection.
#[test]
fn a_dead_member_of_one_group_never_resets_another_groups_link() {
    let _ = env_logger::builder().is_test(true).try_init();
    let root = tempfile::tempdir().expect("tempdir");
    let n = 3;
    let mut opened = None;
    for _attempt in 0..5 {
        let listeners: Vec<TcpListener> = (0..n)
            .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind port 0"))
            .collect();
        let addrs: Vec<SocketAddr> = listeners
            .iter()
            .map(|l| l.local_addr().expect("addr"))
            .collect();
        drop(listeners);
        let mesh = Mesh::start(&addrs);
        let result: rmqraft::Result<Vec<(Engine, rmqraft::Group, rmqraft::Group)>> = (0..n)
            .map(|i| {
                let peers = (0..n)
                    .map(|j| {
                        let addr = if i == j { addrs[i] } else { mesh.addr(i, j) };
                        format!("n{j}-{addr}")
                    })
                    .collect::<Vec<_>>()
                    .join(";");
                let engine = Engine::open(&format!("brokerClusterName={CLUSTER}"))?;
                let open = |name: &str| {
                    engine.open_group(&format!(
                        "dLegerGroup={name}\ndLegerPeers={peers}\ndLegerSelfId=n{i}\n\
                         storePathRootDir={}\nmappedFileSizeCommitLog=4194304\n",
                        root.path().join(format!("{name}-n{i}")).display()
                    ))
                };
                let a = open("IsolationA")?;
                let b = open("IsolationB")?;
                Ok((engine, a, b))
            })
            .collect();
        match result {
            Ok(members) => {
                opened = Some((mesh, members));
                break;
            }
            Err(e) if e.kind() == ErrorKind::Io => continue,
            Err(e) => panic!("cannot start the groups: {e}"),
        }
    }
    let (mesh, mut members) = opened.expect("kept finding the groups' ports taken");
    let leader_of = |members: &[(Engine, rmqraft::Group, rmqraft::Group)], b: bool| {
        wait_until(
            "a leader every member follows",
            Duration::from_secs(30),
            || {
                let statuses: Vec<_> = members
                    .iter()
                    .map(|m| if b { &m.2 } else { &m.1 }.status().expect("status"))
                    .collect();
                let leader = statuses.iter().find(|s| s.role == Role::Leader)?;
                statuses
                    .iter()
                    .all(|s| s.term == leader.term && s.leader_peer == leader.self_peer)
                    .then_some(leader.self_peer as usize)
            },
        )
    };
    let lead = leader_of(&members, false);
    let lead_b = leader_of(&members, true);
    if lead_b != lead {
        members[lead_b]
            .2
            .transfer_leadership(&format!("n{lead}"), Duration::from_secs(10))
            .expect("hand group B to group A's leader");
    }
    wait_until("group B led by n_L", Duration::from_secs(10), || {
        (leader_of(&members, true) == lead).then_some(())
    });
    let dead = (lead + 1) % n;
    let link = mesh.link(lead, dead);
    wait_until(
        "an open connection n_L -> n_F",
        Duration::from_secs(10),
        || (link.open_connections() > 0).then_some(()),
    );
    members[dead].1.close();
    let accepted_before = link.accepted();
    // Four election timeouts of silence re-dial a link: cover three such periods with
    // appends to group B (each committed through n_F's answers or n_other's).
    let hb = members[lead].2.config().heartbeat_interval_ms;
    let leak = u64::from(members[lead].2.config().max_heartbeat_leak);
    let window = Duration::from_millis(hb * leak * 4 * 3);
    let start = Instant::now();
    let mut appended = 0u64;
    while start.elapsed() < window && appended < 1_000_000 {
        members[lead]
            .2
            .append(b"isolation", Duration::from_secs(5))
            .expect("group B appends while group A's member is dead");
        appended += 1;
    }
    let accepted_after = link.accepted();
    assert!(appended > 0, "no append to group B ran");
    assert_eq!(
        accepted_after,
        accepted_before,
        "the link n{lead} -> n{dead} was re-dialled {} time(s) in {window:?} because \
         group A's member there is dead, though group B answered on it",
        accepted_after - accepted_before
    );
    let lead_last = members[lead].2.status().expect("status").last_index;
    wait_until(
        "group B's member on n_F caught up",
        Duration::from_secs(10),
        || (members[dead].2.status().ok()?.last_index >= lead_last).then_some(()),
    );
    for (engine, a, b) in members.drain(..) {
        b.close();
        a.close();
        engine.close();
    }
}
