//! Loopback clusters: election, replication, catch-up, truncation of a divergent suffix,
//! failover under load, restart from disk, repair of corrupt segments, shared ports.

mod common;

use common::*;
use rmqraft::{Engine, EntryMeta, ErrorKind, Group, Role};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Appends `count` entries through `group` with up to `window` in flight; returns the
/// acknowledged (index -> seq) map.
fn pipelined_appends(
    group: &Group,
    first_seq: u64,
    count: u64,
    size: usize,
    window: usize,
) -> BTreeMap<u64, u64> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut acked = BTreeMap::new();
    let mut in_flight = 0usize;
    let mut seq = first_seq;
    while seq < first_seq + count || in_flight > 0 {
        while in_flight < window && seq < first_seq + count {
            let tx = tx.clone();
            let this = seq;
            group
                .append_async(
                    &body(seq, size),
                    Box::new(move |r| tx.send((this, r)).unwrap()),
                )
                .expect("append_async accepted");
            in_flight += 1;
            seq += 1;
        }
        let (this, result) = rx.recv_timeout(DEADLINE).expect("an append completes");
        in_flight -= 1;
        let meta = result.unwrap_or_else(|e| panic!("append {this} failed: {e}"));
        acked.insert(meta.index, this);
    }
    acked
}

fn assert_reads(cluster: &Cluster, member: usize, acked: &BTreeMap<u64, u64>, size: usize) {
    let group = cluster.group(member);
    for (&index, &seq) in acked {
        let (data, meta) = group
            .read(index)
            .unwrap_or_else(|e| panic!("member {member} read {index}: {e}"));
        assert_eq!(meta.index, index);
        assert_eq!(
            &data[..],
            &body(seq, size)[..],
            "member {member} entry {index}"
        );
    }
}

#[test]
fn three_members_elect_exactly_one_leader() {
    let cluster = Cluster::start(3, "");
    let leader = cluster.wait_leader();
    let statuses: Vec<_> = (0..3).map(|i| cluster.status(i).unwrap()).collect();
    assert_eq!(
        statuses.iter().filter(|s| s.role == Role::Leader).count(),
        1
    );
    for (i, s) in statuses.iter().enumerate() {
        assert_eq!(s.self_peer, i as i32);
        assert_eq!(s.leader_peer, leader as i32);
        assert_eq!(s.term, statuses[leader].term);
    }
    // The new leader's no-op commits on every member.
    cluster.wait_committed(1);
    let meta = cluster.append(b"first");
    assert!(meta.index >= 2, "the no-op entry comes first: {meta:?}");
    assert_eq!(meta.term, statuses[leader].term);
    let follower = (leader + 1) % 3;
    let err = cluster
        .group(follower)
        .append(b"x", Duration::from_secs(1))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotLeader);
    assert!(
        err.message().contains(&format!("n{leader}")),
        "names the leader: {}",
        err.message()
    );
}

#[test]
fn ten_thousand_entries_replicate_to_every_member() {
    let cluster = Cluster::start(3, "");
    let leader = cluster.wait_leader();
    let acked = pipelined_appends(cluster.group(leader), 0, 12_000, 200, 512);
    assert_eq!(acked.len(), 12_000);
    let last = *acked.keys().last().unwrap();
    cluster.wait_committed(last);
    for i in 0..3 {
        assert_reads(&cluster, i, &acked, 200);
        let s = cluster.status(i).unwrap();
        assert_eq!(s.last_index, last);
        assert_eq!(s.first_index, 1);
    }
    // Segments are 1 MiB: 12k entries of 200 bytes roll over several files.
    let segments = std::fs::read_dir(cluster.member_dir(0).join("data"))
        .unwrap()
        .count();
    assert!(
        segments >= 3,
        "expected several segment files, found {segments}"
    );
}

#[test]
fn async_flush_group_replicates_and_reads_back() {
    let cluster = Cluster::start(3, "flushDiskType=ASYNC_FLUSH");
    let leader = cluster.wait_leader();
    let acked = pipelined_appends(cluster.group(leader), 0, 3000, 100, 256);
    cluster.wait_committed(*acked.keys().last().unwrap());
    for i in 0..3 {
        assert_reads(&cluster, i, &acked, 100);
    }
    // Within the flush interval everything is durable everywhere.
    let last = *acked.keys().last().unwrap();
    wait_for("async flush to catch up", || {
        (0..3)
            .all(|i| cluster.status(i).unwrap().flushed_index >= last)
            .then_some(())
    });
}

#[test]
fn a_follower_restarted_far_behind_catches_up() {
    let mut cluster = Cluster::start(3, "");
    let leader = cluster.wait_leader();
    let lagging = (leader + 1) % 3;
    cluster.stop(lagging);
    let acked = pipelined_appends(cluster.group(leader), 0, 5000, 300, 256);
    cluster.restart(lagging);
    let last = *acked.keys().last().unwrap();
    cluster.wait_committed(last);
    assert_reads(&cluster, lagging, &acked, 300);
    assert_eq!(cluster.status(lagging).unwrap().role, Role::Follower);
}

#[test]
fn a_divergent_uncommitted_suffix_is_truncated_and_repaired() {
    let mut cluster = Cluster::start(3, "");
    let old_leader = cluster.wait_leader();
    let committed = cluster.append(b"committed-before");
    cluster.wait_committed(committed.index);
    let followers: Vec<usize> = (0..3).filter(|i| *i != old_leader).collect();
    for f in &followers {
        cluster.stop(*f);
    }
    // The lone leader appends entries that can never commit.
    let failures = Arc::new(Mutex::new(Vec::new()));
    for seq in 0..20 {
        let failures = Arc::clone(&failures);
        // It may already have stepped down for lack of a quorum; then it refuses.
        let accepted = cluster.group(old_leader).append_async(
            &body(1_000_000 + seq, 64),
            Box::new(move |r| failures.lock().unwrap().push(r.map(|m: EntryMeta| m.index))),
        );
        if accepted.is_err() {
            break;
        }
    }
    let divergent_last = cluster.status(old_leader).unwrap().last_index;
    cluster.stop(old_leader);
    assert!(
        failures.lock().unwrap().iter().all(|r| r.is_err()),
        "nothing uncommitted was acknowledged"
    );
    for f in &followers {
        cluster.restart(*f);
    }
    let new_leader = cluster.wait_leader();
    assert_ne!(new_leader, old_leader);
    let mut acked = BTreeMap::new();
    for seq in 0..40 {
        let meta = cluster.append(&body(seq, 64));
        acked.insert(meta.index, seq);
    }
    let last = *acked.keys().last().unwrap();
    assert!(
        last > divergent_last,
        "the new leader's log must overwrite the divergent suffix"
    );
    cluster.restart(old_leader);
    cluster.wait_committed(last);
    for i in 0..3 {
        assert_reads(&cluster, i, &acked, 64);
        let (data, _) = cluster.group(i).read(committed.index).unwrap();
        assert_eq!(&data[..], b"committed-before");
    }
    // Every member holds the same entries at every index.
    for index in 1..=last {
        let reference = cluster.group(new_leader).read(index).unwrap();
        for i in 0..3 {
            assert_eq!(
                cluster.group(i).read(index).unwrap(),
                reference,
                "member {i} index {index}"
            );
        }
    }
}

#[test]
fn the_leader_closed_mid_load_loses_nothing_acknowledged() {
    let cluster = Arc::new(Mutex::new(Cluster::start(3, "")));
    let first_leader = cluster.lock().unwrap().wait_leader();
    let acked: Arc<Mutex<BTreeMap<u64, u64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let loader = {
        let cluster = Arc::clone(&cluster);
        let acked = Arc::clone(&acked);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut seq = 0u64;
            let mut attempts = 0u64;
            while !stop.load(Ordering::Acquire) && attempts < 200_000 {
                attempts += 1;
                let c = cluster.lock().unwrap();
                let leader = c.running().into_iter().find(|i| {
                    c.status(*i)
                        .map(|s| s.role == Role::Leader)
                        .unwrap_or(false)
                });
                let Some(leader) = leader else {
                    drop(c);
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                };
                let (tx, rx) = crossbeam_channel::bounded(1);
                let data = body(seq, 128);
                let accepted = c.group(leader).append_async(
                    &data,
                    Box::new(move |r| {
                        let _ = tx.send(r);
                    }),
                );
                drop(c);
                if accepted.is_err() {
                    continue;
                }
                if let Ok(Ok(meta)) = rx.recv_timeout(DEADLINE) {
                    acked.lock().unwrap().insert(meta.index, seq);
                }
                seq += 1;
            }
        })
    };
    wait_for("some appends acknowledged", || {
        (acked.lock().unwrap().len() >= 300).then_some(())
    });
    let before = acked.lock().unwrap().len();
    cluster.lock().unwrap().stop(first_leader);
    let new_leader = {
        let c = cluster.lock().unwrap();
        wait_for("a new leader", || {
            let running = c.running();
            running.into_iter().find(|i| {
                c.status(*i)
                    .map(|s| s.role == Role::Leader)
                    .unwrap_or(false)
            })
        })
    };
    assert_ne!(new_leader, first_leader);
    wait_for("appends acknowledged by the new leader", || {
        (acked.lock().unwrap().len() >= before + 300).then_some(())
    });
    stop.store(true, Ordering::Release);
    loader.join().unwrap();
    let mut c = cluster.lock().unwrap();
    let acked = acked.lock().unwrap().clone();
    let last = *acked.keys().last().unwrap();
    c.wait_committed(last);
    for i in c.running() {
        assert_reads(&c, i, &acked, 128);
    }
    c.restart(first_leader);
    c.wait_committed(last);
    assert_reads(&c, first_leader, &acked, 128);
}

#[test]
fn a_whole_group_restarted_from_disk_keeps_every_committed_entry() {
    let mut cluster = Cluster::start(3, "");
    let leader = cluster.wait_leader();
    let acked = pipelined_appends(cluster.group(leader), 0, 3000, 500, 256);
    let last = *acked.keys().last().unwrap();
    let term_before = cluster.status(leader).unwrap().term;
    for i in 0..3 {
        cluster.stop(i);
    }
    for i in 0..3 {
        cluster.restart(i);
    }
    let leader = cluster.wait_leader();
    assert!(cluster.status(leader).unwrap().term > term_before);
    let next = cluster.append(b"after restart");
    assert!(next.index > last);
    cluster.wait_committed(next.index);
    for i in 0..3 {
        assert_reads(&cluster, i, &acked, 500);
    }
}

/// Byte offset of entry `meta` inside its segment file, and that file.
fn segment_of(cluster: &Cluster, member: usize, meta: &EntryMeta) -> (std::path::PathBuf, u64) {
    let segment_size = 1_048_576u64;
    let start = meta.pos / segment_size * segment_size;
    (
        cluster
            .member_dir(member)
            .join("data")
            .join(format!("{start:020}")),
        meta.pos - start,
    )
}

/// Opens a stopped member's store alone, as the member would at start, and returns the
/// last index recovery kept (it also checks that recovery reported a cut).
fn recover_alone(cluster: &Cluster, member: usize) -> u64 {
    use rmqraft::config::FlusherKind;
    use rmqraft::store::{Flusher, LogStore, StoreOptions};
    let flusher = Flusher::start(FlusherKind::Pwrite).unwrap();
    let opts = StoreOptions {
        dir: cluster.member_dir(member),
        segment_size_bytes: 1_048_576,
        flush: rmqraft::FlushDiskType::SyncFlush,
        async_flush_interval_ms: 10,
        entry_size_bytes_max: 512 << 10,
        prewrite_segments: false,
        classic_commitlog_dir: None,
    };
    let (store, recovery) = LogStore::open(opts, &flusher, std::sync::Arc::new(|_| {})).unwrap();
    assert!(
        recovery.truncated_entries > 0,
        "recovery reported no cut: {recovery:?}"
    );
    let last = store.last_index();
    store.close().unwrap();
    flusher.close();
    last
}

#[test]
fn a_flipped_byte_in_a_follower_segment_is_detected_and_repaired_from_peers() {
    let mut cluster = Cluster::start(3, "");
    let leader = cluster.wait_leader();
    let acked = pipelined_appends(cluster.group(leader), 0, 2000, 400, 256);
    let last = *acked.keys().last().unwrap();
    cluster.wait_committed(last);
    let victim = (leader + 1) % 3;
    let target_index = last - 500;
    let (_, meta) = cluster.group(victim).read(target_index).unwrap();
    cluster.stop(victim);
    let (path, offset) = segment_of(&cluster, victim, &meta);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(offset + 100) as usize] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    // What recovery makes of it, seen on the store alone (once the member runs, its peers
    // may refill it at once).
    let recovered_last = recover_alone(&cluster, victim);
    assert!(
        recovered_last < target_index,
        "entries from the corrupt one on are cut: last {recovered_last}"
    );
    cluster.restart(victim);
    cluster.wait_committed(last);
    assert_reads(&cluster, victim, &acked, 400);
}

#[test]
fn a_torn_tail_is_cut_and_refilled_from_peers() {
    let mut cluster = Cluster::start(3, "");
    let leader = cluster.wait_leader();
    let acked = pipelined_appends(cluster.group(leader), 0, 1000, 300, 128);
    let last = *acked.keys().last().unwrap();
    cluster.wait_committed(last);
    let victim = (leader + 2) % 3;
    let (_, meta) = cluster.group(victim).read(last).unwrap();
    cluster.stop(victim);
    let (path, offset) = segment_of(&cluster, victim, &meta);
    // A write torn mid-entry: the last entry's body is half there, the rest zeros.
    let mut bytes = std::fs::read(&path).unwrap();
    for b in &mut bytes[(offset + 60) as usize..] {
        *b = 0;
    }
    std::fs::write(&path, &bytes).unwrap();
    assert!(
        recover_alone(&cluster, victim) < last,
        "the torn entry is cut"
    );
    cluster.restart(victim);
    cluster.wait_committed(last);
    assert_reads(&cluster, victim, &acked, 300);
}

#[test]
fn two_groups_share_one_port_per_engine() {
    init_logging();
    let root = tempfile::tempdir().unwrap();
    let ports = free_ports(3);
    let engines: Vec<Engine> = (0..3).map(|_| Engine::open("").unwrap()).collect();
    let mut groups: Vec<Vec<Group>> = Vec::new();
    for name in ["GroupA", "GroupB"] {
        let dir = root.path().join(name);
        groups.push(
            (0..3)
                .map(|i| {
                    engines[i]
                        .open_group(&group_props(name, &ports, i, &dir, ""))
                        .unwrap()
                })
                .collect(),
        );
    }
    let mut leaders = Vec::new();
    for members in &groups {
        let leader = wait_for("a leader in each group", || {
            members
                .iter()
                .position(|g| g.status().map(|s| s.role == Role::Leader).unwrap_or(false))
        });
        leaders.push(leader);
    }
    for (gi, members) in groups.iter().enumerate() {
        let mut metas = Vec::new();
        for seq in 0..200 {
            let data = format!("{gi}-{seq}");
            metas.push((
                wait_for("append", || {
                    members[leaders[gi]]
                        .append(data.as_bytes(), Duration::from_secs(5))
                        .ok()
                }),
                data,
            ));
        }
        let last = metas.last().unwrap().0.index;
        wait_for("commit everywhere", || {
            members
                .iter()
                .all(|g| g.status().unwrap().commit_index >= last)
                .then_some(())
        });
        for g in members {
            for (meta, data) in &metas {
                assert_eq!(&g.read(meta.index).unwrap().0[..], data.as_bytes());
            }
        }
    }
    // Opening the same member twice is refused.
    let dup = engines[0]
        .open_group(&group_props(
            "GroupA",
            &ports,
            0,
            &root.path().join("GroupA"),
            "",
        ))
        .err()
        .unwrap();
    assert_eq!(dup.kind(), ErrorKind::Exists);
    drop(groups);
    for e in &engines {
        e.close();
    }
}

#[test]
fn leadership_transfer_and_role_listener() {
    let cluster = Cluster::start(3, "");
    let leader = cluster.wait_leader();
    let target = (leader + 1) % 3;
    let events: Arc<Mutex<Vec<(Role, u64, i32)>>> = Arc::default();
    let sink = Arc::clone(&events);
    cluster
        .group(target)
        .set_role_listener(Some(Box::new(move |role, term, leader| {
            sink.lock().unwrap().push((role, term, leader))
        })))
        .unwrap();
    wait_for("the current role first", || {
        (!events.lock().unwrap().is_empty()).then_some(())
    });
    assert_eq!(events.lock().unwrap()[0].0, Role::Follower);
    cluster.append(b"before transfer");
    cluster
        .group(leader)
        .transfer_leadership(&format!("n{target}"), Duration::from_secs(10))
        .unwrap();
    assert_eq!(cluster.wait_leader(), target);
    wait_for("the listener to see leadership", || {
        events
            .lock()
            .unwrap()
            .iter()
            .any(|(r, _, l)| *r == Role::Leader && *l == target as i32)
            .then_some(())
    });
    let meta = cluster
        .group(target)
        .append(b"after transfer", Duration::from_secs(5))
        .unwrap();
    cluster.wait_committed(meta.index);
    let err = cluster
        .group(leader)
        .transfer_leadership("n9", Duration::from_secs(1))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn closed_handles_refuse_and_the_store_lock_is_released() {
    let mut cluster = Cluster::start(1, "");
    cluster.wait_leader();
    let meta = cluster.append(b"solo");
    let (engine, group) = cluster.members[0].take().unwrap();
    group.close();
    assert_eq!(
        group
            .append(b"x", Duration::from_secs(1))
            .unwrap_err()
            .kind(),
        ErrorKind::Closed
    );
    assert_eq!(group.status().unwrap_err().kind(), ErrorKind::Closed);
    // The lock is gone: the same store opens again in the same engine.
    let again = engine.open_group(&cluster.props(0)).unwrap();
    wait_for("solo leader", || {
        (again.status().unwrap().role == Role::Leader).then_some(())
    });
    wait_for("commit", || {
        (again.status().unwrap().commit_index >= meta.index).then_some(())
    });
    assert_eq!(&again.read(meta.index).unwrap().0[..], b"solo");
    assert_eq!(
        again
            .append(&[], Duration::from_secs(1))
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidArgument
    );
    let big = vec![7u8; 5 << 20];
    assert_eq!(
        again
            .append(&big, Duration::from_secs(1))
            .unwrap_err()
            .kind(),
        ErrorKind::TooLarge
    );
    drop(again);
    engine.close();
}

#[test]
fn the_preferred_leader_takes_over_when_healthy() {
    let cluster = Cluster::start(3, "preferredLeaderIds=n2");
    cluster.wait_leader();
    // Whoever won the first election hands over to n2 once n2 has every entry.
    let leader = wait_for("n2 to lead", || {
        let l = cluster.wait_leader();
        (l == 2).then_some(l)
    });
    assert_eq!(leader, 2);
    let meta = cluster
        .group(2)
        .append(b"on the preferred leader", Duration::from_secs(5))
        .unwrap();
    cluster.wait_committed(meta.index);
    for i in 0..3 {
        assert_eq!(cluster.status(i).unwrap().leader_peer, 2);
    }
}

#[test]
fn wait_leader_waits_for_an_election_and_times_out_alone() {
    let mut cluster = Cluster::start(3, "");
    cluster.wait_leader();
    cluster.stop(1);
    cluster.stop(2);
    cluster.stop(0);
    // n0 alone: no leader is known, it reports CANDIDATE (not FOLLOWER in term 0), and
    // wait_leader times out no sooner than asked.
    cluster.restart(0);
    let events: Arc<Mutex<Vec<(Role, u64, i32)>>> = Arc::default();
    let sink = Arc::clone(&events);
    cluster
        .group(0)
        .set_role_listener(Some(Box::new(move |role, term, leader| {
            sink.lock().unwrap().push((role, term, leader))
        })))
        .unwrap();
    wait_for("the current role first", || {
        (!events.lock().unwrap().is_empty()).then_some(())
    });
    assert_eq!(events.lock().unwrap()[0].0, Role::Candidate);
    assert_eq!(events.lock().unwrap()[0].2, -1);
    assert_eq!(cluster.status(0).unwrap().role, Role::Candidate);
    let started = Instant::now();
    let err = cluster
        .group(0)
        .wait_leader(Duration::from_millis(300))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    // The others come back: the wait is woken by the election and names the leader.
    let (engine0, group0) = cluster.members[0].take().unwrap();
    let leader = std::thread::scope(|scope| {
        let waiter = scope.spawn(|| group0.wait_leader(DEADLINE));
        cluster.restart(1);
        cluster.restart(2);
        waiter
            .join()
            .unwrap()
            .expect("a leader within the deadline")
    });
    cluster.members[0] = Some((engine0, group0));
    let agreed = cluster.wait_leader();
    assert_eq!(
        cluster.group(0).wait_leader(DEADLINE).unwrap(),
        agreed as i32
    );
    assert!((0..3).contains(&leader));
    assert!(events
        .lock()
        .unwrap()
        .iter()
        .all(|(role, _, leader)| *role != Role::Follower || *leader >= 0));
}
