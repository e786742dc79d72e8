//! The Group API the broker stands on: stamped appends, the committed-entry cursor with
//! its wait, reads of the local tail and by log position.

mod common;

use bytes::Bytes;
use common::{wait_for, Cluster};
use rmqraft::{EntryKind, EntryMeta, EntryPlace, ErrorKind};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Appends a body of `len` bytes that carries its own place, and waits for the commit.
/// `Err(())` when `g` refused it as not the leader (nothing stored: a leader change on
/// this loaded machine; the caller asks the new leader).
fn stamped_append(
    g: &rmqraft::Group,
    kind: EntryKind,
    len: usize,
) -> Result<(EntryPlace, EntryMeta), ()> {
    let (tx, rx) = mpsc::channel();
    let (ptx, prx) = mpsc::channel();
    let accepted = g.append_with(
        kind,
        len,
        Box::new(move |place: EntryPlace| {
            let _ = ptx.send(place);
            let mut b = vec![0u8; len];
            b[..8].copy_from_slice(&place.body_pos.to_be_bytes());
            b[8..16].copy_from_slice(&place.index.to_be_bytes());
            Ok(Bytes::from(b))
        }),
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    match accepted {
        Err(e) if e.kind() == ErrorKind::NotLeader => return Err(()),
        other => other.expect("append_with accepted"),
    }
    let place = prx.recv_timeout(common::DEADLINE).expect("stamp ran");
    let meta = rx
        .recv_timeout(common::DEADLINE)
        .expect("done ran")
        .expect("committed");
    Ok((place, meta))
}

#[test]
fn stamped_appends_carry_their_place_on_every_member() {
    let c = Cluster::start(3, "");
    let mut metas = Vec::new();
    for i in 0..200usize {
        // Sizes that cross segment boundaries (1 MiB segments) now and then.
        let len = 16 + (i * 7919) % 60_000;
        let kind = if i % 3 == 0 {
            EntryKind::BrokerAdmin
        } else {
            EntryKind::Message
        };
        let (place, meta) = wait_for("a leader that takes the stamped append", || {
            stamped_append(c.group(c.wait_leader()), kind, len).ok()
        });
        assert_eq!(place.index, meta.index);
        assert_eq!(place.pos, meta.pos);
        assert_eq!(place.body_pos, meta.pos + 48);
        metas.push((meta, kind, len));
    }
    let last = metas.last().unwrap().0.index;
    c.wait_committed(last);
    for m in 0..3 {
        let group = c.group(m);
        let mut next = 1;
        let mut seen = Vec::new();
        while next <= last {
            let batch = group
                .read_committed(next, 64, 1 << 20, Duration::from_secs(5))
                .expect("read_committed");
            assert!(!batch.is_empty(), "member {m}: entry {next} is committed");
            for (entry, meta) in batch {
                assert_eq!(entry.index, next);
                next += 1;
                if entry.kind == EntryKind::Noop {
                    continue;
                }
                let body_pos = u64::from_be_bytes(entry.body[..8].try_into().unwrap());
                assert_eq!(body_pos, meta.pos + 48, "member {m} entry {}", entry.index);
                seen.push((meta, entry.kind, entry.body.len()));
                let (at, _) = group.read_committed_at(body_pos).expect("read at body pos");
                assert_eq!(at.index, entry.index);
                let (at, _) = group.read_committed_at(meta.pos).expect("read at pos");
                assert_eq!(at.index, entry.index);
            }
        }
        assert_eq!(
            seen, metas,
            "member {m} holds the same entries at the same places"
        );
        let err = group.read_committed_at(metas[0].0.pos + 1).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
    }
}

#[test]
fn a_stamp_error_or_a_wrong_length_stores_nothing() {
    let c = Cluster::start(1, "");
    let g = c.group(c.wait_leader());
    let before = g.status().unwrap().last_index;
    let err = g
        .append_with(
            EntryKind::Message,
            10,
            Box::new(|_| {
                Err(rmqraft::Error::new(
                    ErrorKind::InvalidArgument,
                    "refused by the stamp",
                ))
            }),
            Box::new(|_| panic!("done must not run")),
        )
        .unwrap_err();
    assert_eq!(err.message(), "refused by the stamp");
    let err = g
        .append_with(
            EntryKind::Message,
            10,
            Box::new(|_| Ok(Bytes::from_static(b"short"))),
            Box::new(|_| panic!("done must not run")),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert_eq!(g.status().unwrap().last_index, before);
}

#[test]
fn the_cursor_waits_for_the_next_commit_and_no_longer() {
    let c = Cluster::start(3, "");
    let leader = c.wait_leader();
    let follower = (leader + 1) % 3;
    let meta = c.append(b"first");
    c.wait_committed(meta.index);
    let f = c.group(follower);
    // Nothing beyond the commit index: an empty answer after the wait.
    let start = Instant::now();
    let got = f
        .read_committed(meta.index + 1, 10, 1 << 20, Duration::from_millis(300))
        .unwrap();
    assert!(got.is_empty());
    assert!(start.elapsed() >= Duration::from_millis(290));
    // A commit while waiting wakes the reader long before its wait ends.
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let start = Instant::now();
            let got = f
                .read_committed(meta.index + 1, 10, 1 << 20, Duration::from_secs(60))
                .unwrap();
            (got, start.elapsed())
        });
        std::thread::sleep(Duration::from_millis(100));
        c.append(b"second");
        let (got, took) = reader.join().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(&got[0].0.body[..], b"second");
        assert!(took < Duration::from_secs(30), "woken by the commit");
    });
    // read_local sees the committed entries too; beyond the log it is NotFound.
    let (e, _) = f.read_local(meta.index).unwrap();
    assert_eq!(&e.body[..], b"first");
    let last = wait_for("status", || f.status().ok()).last_index;
    assert_eq!(
        f.read_local(last + 1).unwrap_err().kind(),
        ErrorKind::NotFound
    );
}
