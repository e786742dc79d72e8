//! Planned restarts lose no request: a leader that closes first hands leadership to an
//! up-to-date follower and waits for its appends to be decided, so a rolling restart of
//! every member of a loaded group has no failed and no undecided append.

mod common;

use common::{free_ports, group_props, init_logging, wait_for, wait_for_ok, DEADLINE};
use rmqraft::{Engine, ErrorKind, Group, Role};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

const WRITERS: usize = 3;

struct Slots {
    groups: Vec<RwLock<Option<Arc<Group>>>>,
}

impl Slots {
    fn get(&self, i: usize) -> Option<Arc<Group>> {
        self.groups[i].read().unwrap().clone()
    }
}

/// What the writers saw.
#[derive(Default)]
struct Outcomes {
    /// (index, body) of every acknowledged append.
    acked: Mutex<Vec<(u64, Vec<u8>)>>,
    /// Appends refused before anything was stored (NotLeader, Closed, Busy): retried.
    retried: AtomicU64,
    /// Appends that ended with any other error: none may.
    failed: Mutex<Vec<String>>,
}

/// Appends `body` through whichever member leads, as a client does: retries while the
/// answer says nothing was stored; records any other error.
fn append_once(slots: &Slots, outcomes: &Outcomes, body: &[u8]) {
    let start = Instant::now();
    let mut round = 0usize;
    while start.elapsed() < DEADLINE {
        round += 1;
        let leader = (0..slots.groups.len()).find_map(|i| {
            let g = slots.get(i)?;
            g.status()
                .ok()
                .filter(|s| s.role == Role::Leader)
                .map(|_| g)
        });
        let Some(group) = leader else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        match group.append(body, Duration::from_secs(20)) {
            Ok(meta) => {
                outcomes
                    .acked
                    .lock()
                    .unwrap()
                    .push((meta.index, body.to_vec()));
                return;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::NotLeader | ErrorKind::Closed | ErrorKind::Busy
                ) =>
            {
                outcomes.retried.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(if round > 10 { 10 } else { 1 }));
            }
            Err(e) => {
                outcomes
                    .failed
                    .lock()
                    .unwrap()
                    .push(format!("{e} ({:?})", e.kind()));
                return;
            }
        }
    }
    outcomes
        .failed
        .lock()
        .unwrap()
        .push(format!("no leader took the append within {DEADLINE:?}"));
}

fn open(root: &std::path::Path, ports: &[u16], i: usize) -> rmqraft::Result<(Engine, Group)> {
    let engine = Engine::open("brokerClusterName=TestCluster")?;
    let group = engine.open_group(&group_props("R0", ports, i, root, ""))?;
    Ok((engine, group))
}

#[test]
fn rolling_restart_of_a_loaded_group_fails_no_append() {
    init_logging();
    let root = tempfile::tempdir().unwrap();
    let (ports, opened) = (0..5)
        .find_map(|_| {
            let ports = free_ports(3);
            let opened: rmqraft::Result<Vec<_>> =
                (0..3).map(|i| open(root.path(), &ports, i)).collect();
            opened.ok().map(|o| (ports, o))
        })
        .expect("the group opens");
    let mut engines: Vec<Option<Engine>> = Vec::new();
    let mut groups = Vec::new();
    for (engine, group) in opened {
        engines.push(Some(engine));
        groups.push(RwLock::new(Some(Arc::new(group))));
    }
    let slots = Arc::new(Slots { groups });
    let outcomes = Arc::new(Outcomes::default());
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (slots, outcomes, stop) = (slots.clone(), outcomes.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) && seq < 1_000_000 {
                    let body = format!("writer-{w}-seq-{seq:08}").into_bytes();
                    append_once(&slots, &outcomes, &body);
                    seq += 1;
                }
            })
        })
        .collect();
    let acked = || outcomes.acked.lock().unwrap().len();
    let wait_progress = |more: usize| {
        let target = acked() + more;
        wait_for(&format!("{target} acknowledged appends"), || {
            (acked() >= target).then_some(())
        });
    };
    wait_progress(50);

    let mut restarted = [false; 3];
    let mut closed_a_leader = false;
    for _ in 0..3 {
        // The current leader first while it has not been restarted, else the next one.
        let leading = (0..3).find(|i| {
            slots
                .get(*i)
                .and_then(|g| g.status().ok())
                .is_some_and(|s| s.role == Role::Leader)
        });
        let i = match leading {
            Some(l) if !restarted[l] => l,
            _ => (0..3).find(|i| !restarted[*i]).unwrap(),
        };
        restarted[i] = true;
        let group = slots.groups[i].write().unwrap().take().unwrap();
        let was_leader = group
            .status()
            .map(|s| s.role == Role::Leader)
            .unwrap_or(false);
        closed_a_leader |= was_leader;
        let closing = Instant::now();
        group.close();
        let close_ms = closing.elapsed().as_millis();
        // Twice the election timeout for the hand-over plus the close itself.
        assert!(close_ms < 10_000, "member {i} took {close_ms} ms to close");
        drop(group);
        engines[i].take().unwrap().close();
        // The other two keep the group available meanwhile.
        wait_progress(30);
        let (engine, group) = wait_for_ok("the member to reopen", || open(root.path(), &ports, i));
        let target = (0..3)
            .filter_map(|j| slots.get(j).and_then(|g| g.status().ok()))
            .map(|s| s.commit_index)
            .max()
            .unwrap();
        wait_for(&format!("member {i} to catch up to {target}"), || {
            group
                .status()
                .ok()
                .filter(|s| s.commit_index >= target)
                .map(|_| ())
        });
        engines[i] = Some(engine);
        *slots.groups[i].write().unwrap() = Some(Arc::new(group));
        wait_progress(30);
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().expect("writer thread");
    }
    assert!(closed_a_leader, "the rolling restart closed a leader");
    let failed = outcomes.failed.lock().unwrap().clone();
    assert!(failed.is_empty(), "failed or undecided appends: {failed:?}");

    // Every acknowledged append is in the log of every member, once, with its body.
    let acked = outcomes.acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 50 + 30 * 6,
        "{} appends acknowledged",
        acked.len()
    );
    let mut indexes: Vec<u64> = acked.iter().map(|(i, _)| *i).collect();
    indexes.sort_unstable();
    indexes.dedup();
    assert_eq!(
        indexes.len(),
        acked.len(),
        "two appends acknowledged at one index"
    );
    let top = *indexes.last().unwrap();
    for i in 0..3 {
        let group = slots.get(i).unwrap();
        wait_for(&format!("member {i} to commit {top}"), || {
            group
                .status()
                .ok()
                .filter(|s| s.commit_index >= top)
                .map(|_| ())
        });
        for (index, body) in &acked {
            let (data, meta) = group
                .read(*index)
                .unwrap_or_else(|e| panic!("member {i} reads entry {index}: {e}"));
            assert_eq!(meta.index, *index);
            assert_eq!(&data[..], &body[..], "member {i} entry {index}");
        }
    }
    log::info!(
        "rolling restart: {} appends acknowledged, {} refusals retried",
        acked.len(),
        outcomes.retried.load(Ordering::Relaxed)
    );
    for (slot, engine) in slots.groups.iter().zip(&mut engines) {
        if let Some(g) = slot.write().unwrap().take() {
            g.close();
        }
        if let Some(e) = engine.take() {
            e.close();
        }
    }
}

#[test]
fn closing_a_leader_hands_leadership_to_a_follower() {
    init_logging();
    let mut cluster = common::Cluster::start(3, "");
    let leader = cluster.wait_leader();
    cluster.append(b"before the close");
    let term = cluster.status(leader).unwrap().term;
    let closing = Instant::now();
    cluster.stop(leader);
    let took = closing.elapsed();
    // The hand-over makes a new leader at once: one of the others leads in the next
    // term without waiting out an election timeout of silence.
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let new_leader = others
        .iter()
        .copied()
        .find(|i| cluster.status(*i).is_some_and(|s| s.role == Role::Leader));
    let new_leader =
        new_leader.expect("a follower leads as soon as the old leader's close returns");
    assert!(cluster.status(new_leader).unwrap().term > term);
    assert!(took < Duration::from_secs(10), "close took {took:?}");
    let meta = cluster.append(b"after the close");
    cluster.wait_committed(meta.index);
}

/// `rmqraft node` on SIGTERM hands leadership over and exits, in bounded time.
#[test]
fn sigterm_of_a_leading_node_hands_over_and_exits_in_bounded_time() {
    use std::process::{Command, Stdio};
    init_logging();
    let bin = env!("CARGO_BIN_EXE_rmqraft");
    let root = tempfile::tempdir().unwrap();
    let ports = free_ports(3);
    let confs: Vec<std::path::PathBuf> = (0..3)
        .map(|i| {
            let path = root.path().join(format!("broker-n{i}.conf"));
            let text = format!(
                "brokerClusterName=TestCluster\n{}",
                group_props("S0", &ports, i, root.path(), "")
            );
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect();
    let mut nodes: Vec<std::process::Child> = confs
        .iter()
        .map(|c| {
            Command::new(bin)
                .arg("node")
                .arg("-c")
                .arg(c)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("start rmqraft node")
        })
        .collect();
    // (role, pid) of every member that answers, from cluster-list --json.
    let list = || -> Vec<(String, i32)> {
        let out = Command::new(bin)
            .args(["cluster-list", "--json", "-c"])
            .arg(&confs[0])
            .output()
            .expect("run cluster-list");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let role = l
                    .split("\"role\":\"")
                    .nth(1)?
                    .split('"')
                    .next()?
                    .to_string();
                let pid = l
                    .split("\"pid\":")
                    .nth(1)?
                    .split(['}', ','])
                    .next()?
                    .parse()
                    .ok()?;
                Some((role, pid))
            })
            .collect()
    };
    let leader_pid = wait_for("a leader in cluster-list", || {
        let rows = list();
        (rows.len() == 3)
            .then(|| rows.iter().find(|(r, _)| r == "LEADER").map(|(_, p)| *p))
            .flatten()
    });
    let at = nodes
        .iter()
        .position(|c| c.id() as i32 == leader_pid)
        .expect("the leader is one of our nodes");
    // SAFETY: sends a signal to a process this test started.
    assert_eq!(unsafe { libc::kill(leader_pid, libc::SIGTERM) }, 0);
    let signalled = Instant::now();
    let status = loop {
        if let Some(status) = nodes[at].try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(20),
            "rmqraft node still runs 20 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status:?}");
    let mut stdout = String::new();
    std::io::Read::read_to_string(nodes[at].stdout.as_mut().unwrap(), &mut stdout).unwrap();
    assert!(
        stdout.contains("SIGTERM received; all members closed"),
        "{stdout}"
    );
    // Another member leads: the hand-over made it leader before the node exited.
    wait_for("a new leader among the others", || {
        list()
            .iter()
            .find(|(r, p)| r == "LEADER" && *p != leader_pid)
            .map(|_| ())
    });
    for (i, node) in nodes.iter_mut().enumerate() {
        if i != at {
            // SAFETY: sends a signal to a process this test started.
            unsafe { libc::kill(node.id() as i32, libc::SIGTERM) };
        }
    }
    for node in &mut nodes {
        let deadline = Instant::now() + Duration::from_secs(20);
        while node.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = node.kill();
                panic!("a node still runs 20 s after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
