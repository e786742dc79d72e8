//! Exactly-once appends on a 3-member loopback group: retries across a closed leader,
//! duplicates in flight, sequences out of order, and a restart of every member.

mod common;

use common::{wait_for, Cluster, DEADLINE};
use rmqraft::core::producers::decode_header;
use rmqraft::{EntryKind, EntryMeta, ErrorKind, Group, Role};
use std::collections::HashMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const PRODUCER: u64 = 0x5eed_0001_0000_0001;

fn leader(c: &Cluster) -> usize {
    c.wait_leader()
}

fn data(producer: u64, seq: u64) -> Vec<u8> {
    format!("producer {producer:x} sequence {seq}").into_bytes()
}

/// Resends (producer, seq) to whichever member leads until it is acknowledged.
fn append_until_ok(c: &Cluster, producer: u64, seq: u64) -> EntryMeta {
    let start = Instant::now();
    loop {
        assert!(
            start.elapsed() < DEADLINE,
            "sequence {seq} never acknowledged"
        );
        let running = c.running();
        let Some(l) = running.into_iter().find(|i| {
            c.status(*i)
                .map(|s| s.role == Role::Leader)
                .unwrap_or(false)
        }) else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        match c.group(l).append_idempotent(
            producer,
            seq,
            &data(producer, seq),
            Duration::from_secs(5),
        ) {
            Ok(meta) => return meta,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::NotLeader
                        | ErrorKind::Closed
                        | ErrorKind::Timeout
                        | ErrorKind::Busy
                        | ErrorKind::OutcomeUnknown
                ) =>
            {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("sequence {seq}: {e}"),
        }
    }
}

/// (producer, sequence) -> how often it is in the committed log of member `i`, and
/// checks that `read` gives back the host's payload only.
fn count_in_log(g: &Group) -> HashMap<(u64, u64), usize> {
    let commit = g.status().unwrap().commit_index;
    let mut counts = HashMap::new();
    let mut next = 1;
    while next <= commit {
        let batch = g
            .read_committed(next, 1024, 8 << 20, Duration::ZERO)
            .expect("read committed");
        assert!(!batch.is_empty(), "entry {next} is committed");
        for (entry, meta) in batch {
            next = entry.index + 1;
            if entry.kind != EntryKind::Idempotent {
                continue;
            }
            let (p, s, _) = decode_header(&entry.body).expect("idempotent header");
            *counts.entry((p, s)).or_insert(0) += 1;
            let (payload, read_meta) = g.read(entry.index).expect("read");
            assert_eq!(read_meta, meta);
            assert_eq!(
                payload.as_ref(),
                data(p, s).as_slice(),
                "read returns the payload"
            );
        }
    }
    counts
}

fn check_once_everywhere(c: &Cluster, producer: u64, sequences: u64) {
    let commit = c
        .running()
        .iter()
        .map(|i| c.status(*i).unwrap().last_index)
        .max()
        .unwrap();
    c.wait_committed(commit);
    for i in c.running() {
        let counts = count_in_log(c.group(i));
        for s in 0..sequences {
            assert_eq!(
                counts.get(&(producer, s)),
                Some(&1),
                "member {i}: sequence {s} must be in the log exactly once"
            );
        }
        assert_eq!(counts.len() as u64, sequences, "member {i}: nothing else");
    }
}

#[test]
fn retries_after_closing_the_leader_never_duplicate() {
    let mut c = Cluster::start(3, "");
    let mut next = 0u64;
    let mut acked: HashMap<u64, EntryMeta> = HashMap::new();
    for _round in 0..3 {
        let l = leader(&c);
        // A window in flight, then the leader is closed under it.
        let (tx, rx) = mpsc::channel();
        let window: Vec<u64> = (next..next + 20).collect();
        for &s in &window {
            let tx = tx.clone();
            let r = c.group(l).append_idempotent_async(
                PRODUCER,
                s,
                &data(PRODUCER, s),
                Box::new(move |r| {
                    let _ = tx.send((s, r));
                }),
            );
            if r.is_err() {
                break;
            }
        }
        drop(tx);
        c.stop(l);
        while let Ok((s, r)) = rx.recv_timeout(DEADLINE) {
            if let Ok(meta) = r {
                acked.insert(s, meta);
            }
        }
        // Retry every one of the window, in order, on the new leader.
        for &s in &window {
            let meta = append_until_ok(&c, PRODUCER, s);
            if let Some(first) = acked.get(&s) {
                assert_eq!(
                    *first, meta,
                    "sequence {s}: a retry answers with the original"
                );
            }
            acked.insert(s, meta);
            // And once more: a plain duplicate of a committed entry.
            assert_eq!(append_until_ok(&c, PRODUCER, s), meta);
        }
        next += 20;
        c.restart(l);
    }
    check_once_everywhere(&c, PRODUCER, next);
}

#[test]
fn in_flight_duplicate_returns_the_first_outcome() {
    let mut c = Cluster::start(3, "");
    let l = leader(&c);
    append_until_ok(&c, PRODUCER, 0);
    // Without its followers the leader cannot commit: the first stays in flight.
    let followers: Vec<usize> = (0..3).filter(|i| *i != l).collect();
    for f in &followers {
        c.stop(*f);
    }
    let (tx, rx) = mpsc::channel();
    for which in 0..2 {
        let tx = tx.clone();
        c.group(l)
            .append_idempotent_async(
                PRODUCER,
                1,
                &data(PRODUCER, 1),
                Box::new(move |r| {
                    let _ = tx.send((which, r));
                }),
            )
            .expect("accepted");
    }
    let last = c.status(l).unwrap().last_index;
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "nothing completes without a quorum"
    );
    for f in &followers {
        c.restart(*f);
    }
    let a = rx.recv_timeout(DEADLINE).expect("first outcome");
    let b = rx.recv_timeout(DEADLINE).expect("second outcome");
    let kinds = |r: &rmqraft::Result<EntryMeta>| r.as_ref().map(|m| *m).map_err(|e| e.kind());
    assert_eq!(
        kinds(&a.1),
        kinds(&b.1),
        "the duplicate gets the first one's outcome"
    );
    // Only one entry was appended for the two calls.
    if let Ok(meta) = a.1 {
        assert_eq!(meta.index, last, "the duplicate appended nothing");
    }
    append_until_ok(&c, PRODUCER, 1);
    append_until_ok(&c, PRODUCER, 2);
    check_once_everywhere(&c, PRODUCER, 3);
}

#[test]
fn out_of_order_for_a_gap_and_a_too_old_sequence() {
    let c = Cluster::start(3, "");
    let l = leader(&c);
    let g = c.group(l);
    let total = 1002u64;
    let (tx, rx) = mpsc::channel();
    for s in 0..total {
        let tx = tx.clone();
        wait_for("an append slot", || {
            let tx = tx.clone();
            match g.append_idempotent_async(
                PRODUCER,
                s,
                &data(PRODUCER, s),
                Box::new(move |r| {
                    let _ = tx.send((s, r));
                }),
            ) {
                Ok(()) => Some(()),
                Err(e) if e.kind() == ErrorKind::Busy => None,
                Err(e) => panic!("sequence {s}: {e}"),
            }
        });
    }
    let mut metas = HashMap::new();
    for _ in 0..total {
        let (s, r) = rx.recv_timeout(DEADLINE).expect("outcome");
        metas.insert(s, r.expect("committed"));
    }
    let t = Duration::from_secs(5);
    let gap = g
        .append_idempotent(PRODUCER, total + 3, b"gap", t)
        .unwrap_err();
    assert_eq!(gap.kind(), ErrorKind::OutOfOrder, "{gap}");
    assert!(gap.message().contains("skips ahead"), "{gap}");
    for old in [0, 1] {
        let e = g.append_idempotent(PRODUCER, old, b"old", t).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfOrder, "{e}");
        assert!(e.message().contains("older than"), "{e}");
    }
    // The oldest one remembered still answers with its original place.
    assert_eq!(
        g.append_idempotent(PRODUCER, 2, &data(PRODUCER, 2), t)
            .unwrap(),
        metas[&2]
    );
    let unknown = g.append_idempotent(PRODUCER + 1, 5, b"x", t).unwrap_err();
    assert_eq!(unknown.kind(), ErrorKind::OutOfOrder, "{unknown}");
    let zero = g.append_idempotent(0, 0, b"x", t).unwrap_err();
    assert_eq!(zero.kind(), ErrorKind::InvalidArgument);
    let follower = (0..3).find(|i| *i != l).unwrap();
    let e = c
        .group(follower)
        .append_idempotent(PRODUCER, total, b"x", t)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotLeader, "{e}");
    check_once_everywhere(&c, PRODUCER, total);
}

#[test]
fn restart_of_every_member_keeps_the_table() {
    let mut c = Cluster::start(3, "");
    let metas: Vec<EntryMeta> = (0..10).map(|s| append_until_ok(&c, PRODUCER, s)).collect();
    // Plain entries in between change nothing.
    c.append(b"plain");
    for i in 0..3 {
        c.stop(i);
    }
    for i in 0..3 {
        c.restart(i);
    }
    leader(&c);
    assert_eq!(append_until_ok(&c, PRODUCER, 5), metas[5]);
    assert_eq!(append_until_ok(&c, PRODUCER, 9), metas[9]);
    let l = leader(&c);
    let e = c
        .group(l)
        .append_idempotent(PRODUCER, 12, b"x", Duration::from_secs(5))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutOfOrder, "{e}");
    let fresh = append_until_ok(&c, PRODUCER, 10);
    assert!(fresh.index > metas[9].index);
    check_once_everywhere(&c, PRODUCER, 11);
}
