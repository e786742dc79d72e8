//! Storage faults between restarts, power loss and a full disk, checked against the
//! history of every append (tests/history). Scenarios and findings: docs/FAULTS.md.
//!
//! `RMQRAFT_FAULTS_LONG=SECONDS` repeats the repeatable scenarios (corruption rounds,
//! power cuts) for about that long each.

mod common;
mod history;

use common::*;
use history::{check, check_with, CheckOptions, History, MemberLog};
use rmqraft::config::FlusherKind;
use rmqraft::store::testing::FaultDomain;
use rmqraft::store::{Flusher, LogStore, Recovery, StoreOptions};
use rmqraft::{ErrorKind, Role};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BODY_BYTES: usize = 200;
const SEGMENT_BYTES: u64 = 1_048_576;
/// Appends in flight at once from one loader.
const WINDOW: usize = 64;

/// How long the repeatable scenarios run: once, or for RMQRAFT_FAULTS_LONG seconds.
fn long_run() -> Option<Duration> {
    std::env::var("RMQRAFT_FAULTS_LONG")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
}

fn keep_going(start: Instant, round: usize) -> bool {
    match long_run() {
        None => round == 0,
        Some(limit) => round == 0 || start.elapsed() < limit,
    }
}

fn payload(tag: &str, seq: u64) -> Vec<u8> {
    sized_payload(tag, seq, BODY_BYTES)
}

fn sized_payload(tag: &str, seq: u64, len: usize) -> Vec<u8> {
    let mut v = format!("{tag}-{seq:010}-").into_bytes();
    while v.len() < len {
        v.push(b'a' + (v.len() % 26) as u8);
    }
    v
}

fn leader_of(cluster: &Cluster) -> Option<usize> {
    cluster.running().into_iter().find(|i| {
        cluster
            .status(*i)
            .map(|s| s.role == Role::Leader)
            .unwrap_or(false)
    })
}

/// Appends `count` payloads tagged `tag` through whichever member leads, up to `WINDOW`
/// in flight, recording everything in `history`; stops early when `stop` is set.
/// Returns how many were acknowledged.
fn load(cluster: &Cluster, history: &Arc<History>, tag: &str, count: u64, stop: &AtomicBool) {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut seq = 0;
    while seq < count && !stop.load(Ordering::Acquire) {
        assert!(
            start.elapsed() < DEADLINE * 2,
            "load '{tag}' made no progress"
        );
        if in_flight.load(Ordering::Acquire) >= WINDOW {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let Some(leader) = leader_of(cluster) else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        let data = payload(tag, seq);
        seq += 1;
        let id = history.invoke(&data);
        let h = Arc::clone(history);
        let n = Arc::clone(&in_flight);
        in_flight.fetch_add(1, Ordering::AcqRel);
        let accepted = cluster.group(leader).append_async(
            &data,
            Box::new(move |r| {
                h.result(id, &r);
                n.fetch_sub(1, Ordering::AcqRel);
            }),
        );
        if let Err(err) = accepted {
            in_flight.fetch_sub(1, Ordering::AcqRel);
            if err.kind() == ErrorKind::DiskFull {
                // Refused by the call itself: never in the log.
                history.fail(id, &err.to_string());
                std::thread::sleep(Duration::from_millis(5));
            } else {
                history.error(id, &err);
            }
        }
    }
    if stop.load(Ordering::Acquire) {
        return;
    }
    wait_for("the load's appends to complete", || {
        (in_flight.load(Ordering::Acquire) == 0).then_some(())
    });
}

fn load_all(cluster: &Cluster, history: &Arc<History>, tag: &str, count: u64) {
    load(cluster, history, tag, count, &AtomicBool::new(false));
}

fn max_acked(history: &History) -> u64 {
    history
        .ops()
        .iter()
        .filter_map(|o| match o.outcome {
            history::Outcome::Acked { index, .. } => Some(index),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

/// Waits until every running member committed every acked entry, then checks the history
/// against all of them.
fn converge_and_check(cluster: &Cluster, history: &History) -> history::Summary {
    cluster.wait_committed(max_acked(history));
    let logs: Vec<MemberLog> = cluster
        .running()
        .into_iter()
        .map(|i| MemberLog::read(&format!("n{i}"), cluster.group(i)))
        .collect();
    check(history, &logs).unwrap_or_else(|v| panic!("history check failed: {v}"))
}

/// Watches leaders while a scenario runs: a leader whose log lacks an acknowledged entry
/// is recorded.
struct LeaderWatch {
    stop: AtomicBool,
    violation: Mutex<Option<String>>,
    leaders_seen: AtomicUsize,
}

impl LeaderWatch {
    fn new() -> LeaderWatch {
        LeaderWatch {
            stop: AtomicBool::new(false),
            violation: Mutex::new(None),
            leaders_seen: AtomicUsize::new(0),
        }
    }

    fn run(&self, cluster: &Cluster, history: &History) {
        let start = Instant::now();
        while !self.stop.load(Ordering::Acquire) && start.elapsed() < DEADLINE * 4 {
            // Acked before the statuses are read: a leader from then on must hold it.
            let acked = max_acked(history);
            for i in cluster.running() {
                if let Some(s) = cluster.status(i) {
                    if s.role == Role::Leader {
                        self.leaders_seen.fetch_add(1, Ordering::Relaxed);
                        if s.last_index < acked {
                            self.violation.lock().unwrap().get_or_insert(format!(
                                "n{i} led term {} with last index {} below acked index {acked}",
                                s.term, s.last_index
                            ));
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn finish(&self) {
        self.stop.store(true, Ordering::Release);
    }

    fn assert_clean(&self) {
        if let Some(v) = self.violation.lock().unwrap().as_ref() {
            panic!("a leader lacked acknowledged entries: {v}");
        }
        assert!(self.leaders_seen.load(Ordering::Relaxed) > 0);
    }
}

/// The commit index in the newest valid checkpoint slot of a member.
fn checkpoint_commit(dir: &Path) -> u64 {
    let Ok(bytes) = std::fs::read(dir.join("checkpoint")) else {
        return 0;
    };
    let mut best = (0u64, 0u64);
    for slot in [0usize, 512] {
        let Some(s) = bytes.get(slot..slot + 64) else {
            continue;
        };
        let magic = u32::from_le_bytes(s[0..4].try_into().unwrap());
        let crc = u32::from_le_bytes(s[60..64].try_into().unwrap());
        if magic != 0x3143_5152 || crc != crc32c::crc32c(&s[..60]) {
            continue;
        }
        let seq = u64::from_le_bytes(s[8..16].try_into().unwrap());
        let commit = u64::from_le_bytes(s[16..24].try_into().unwrap());
        if seq >= best.0 {
            best = (seq, commit);
        }
    }
    best.1
}

fn wait_checkpoint(cluster: &Cluster, member: usize, index: u64) {
    wait_for(&format!("n{member} to checkpoint commit {index}"), || {
        (checkpoint_commit(&cluster.member_dir(member)) >= index).then_some(())
    });
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for item in std::fs::read_dir(from).unwrap() {
        let item = item.unwrap();
        let target = to.join(item.file_name());
        if item.file_type().unwrap().is_dir() {
            copy_dir(&item.path(), &target);
        } else {
            std::fs::copy(item.path(), &target).unwrap();
        }
    }
}

/// Opens a copy of a stopped member's store to see what its recovery finds and does,
/// without touching the member's own files.
fn dry_run_recovery(cluster: &Cluster, member: usize) -> rmqraft::Result<(Recovery, u64)> {
    let scratch = tempfile::tempdir().unwrap();
    let copy = scratch.path().join("member");
    copy_dir(&cluster.member_dir(member), &copy);
    let _ = std::fs::remove_file(copy.join("lock"));
    let flusher = Flusher::start(FlusherKind::Pwrite).unwrap();
    let opts = StoreOptions {
        dir: copy,
        segment_size_bytes: SEGMENT_BYTES,
        flush: rmqraft::FlushDiskType::SyncFlush,
        async_flush_interval_ms: 10,
        entry_size_bytes_max: 1024 * 1024 - 64,
        prewrite_segments: false,
        classic_commitlog_dir: None,
    };
    let result = LogStore::open(opts, &flusher, Arc::new(|_| {}));
    let out = result.map(|(store, recovery)| {
        let last = store.last_index();
        store.close().unwrap();
        (recovery, last)
    });
    flusher.close();
    out
}

#[derive(Debug, Clone, Copy)]
enum File {
    Segment,
    Index,
    Term,
    Checkpoint,
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    FlipBit,
    ZeroRange,
    Truncate,
}

fn segment_paths(cluster: &Cluster, member: usize, pos: u64) -> (PathBuf, PathBuf, u64) {
    let start = pos / SEGMENT_BYTES * SEGMENT_BYTES;
    let dir = cluster.member_dir(member);
    (
        dir.join("data").join(format!("{start:020}")),
        dir.join("index").join(format!("{start:020}")),
        pos - start,
    )
}

fn rewrite(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).unwrap();
    f(&mut bytes);
    std::fs::write(path, &bytes).unwrap();
}

/// Damages `file` of a stopped member around entry `target` (at log position `pos`).
fn damage(cluster: &Cluster, member: usize, file: File, how: Damage, target: u64, pos: u64) {
    let (data, index, offset) = segment_paths(cluster, member, pos);
    let offset = offset as usize;
    let dir = cluster.member_dir(member);
    match file {
        File::Segment => match how {
            Damage::FlipBit => rewrite(&data, |b| b[offset + 60] ^= 0x10),
            Damage::ZeroRange => rewrite(&data, |b| b[offset + 10..offset + 4096].fill(0)),
            Damage::Truncate => rewrite(&data, |b| b.truncate(offset + 30)),
        },
        File::Index => {
            let bytes = std::fs::read(&index).unwrap();
            let first = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
            let record = 32 + (target - first) as usize * 32;
            match how {
                Damage::FlipBit => rewrite(&index, |b| b[record + 5] ^= 0x01),
                Damage::ZeroRange => rewrite(&index, |b| b[..record + 64].fill(0)),
                Damage::Truncate => rewrite(&index, |b| b.truncate(record + 7)),
            }
        }
        File::Term => {
            let path = dir.join("term");
            match how {
                Damage::FlipBit => rewrite(&path, |b| b[9] ^= 0x02),
                Damage::ZeroRange => rewrite(&path, |b| b.fill(0)),
                Damage::Truncate => rewrite(&path, |b| b.truncate(10)),
            }
        }
        File::Checkpoint => {
            let path = dir.join("checkpoint");
            match how {
                Damage::FlipBit => rewrite(&path, |b| {
                    b[17] ^= 0x01;
                    b[512 + 17] ^= 0x01;
                }),
                Damage::ZeroRange => rewrite(&path, |b| b.fill(0)),
                Damage::Truncate => rewrite(&path, |b| b.truncate(0)),
            }
        }
    }
}

/// One member's `file` is damaged between restarts, three ways in turn (the current
/// leader each time). Each time: recovery notices, the member never leads with a bad
/// suffix, it is repaired from its peers, and the history holds.
fn damaged_member_is_repaired(file: File) {
    let mut cluster = Cluster::start(3, "");
    let history = History::new();
    cluster.wait_leader();
    load_all(&cluster, &history, "warmup", 1500);
    let start = Instant::now();
    let mut round = 0;
    while keep_going(start, round) {
        for how in [Damage::FlipBit, Damage::ZeroRange, Damage::Truncate] {
            let victim = cluster.wait_leader();
            let tag = format!("r{round}-{how:?}");
            load_all(&cluster, &history, &tag, 500);
            let last = max_acked(&history);
            cluster.wait_committed(last);
            let target = last - 300;
            wait_checkpoint(&cluster, victim, last);
            let (_, meta) = cluster.group(victim).read(target).unwrap();
            // Read before the stop: a leader that closes hands leadership over first and
            // may still receive the next leader's first entry, so its log can only grow.
            let last_before = cluster.status(victim).unwrap().last_index;
            cluster.stop(victim);
            history.note(&format!(
                "n{victim}: {file:?} {how:?} around entry {target}"
            ));
            damage(&cluster, victim, file, how, target, meta.pos);

            // What recovery makes of it.
            let dry = dry_run_recovery(&cluster, victim);
            match file {
                File::Segment => {
                    let (rec, last_after) = dry.unwrap();
                    assert!(last_after < target, "{how:?}: cut before {target}: {rec:?}");
                    assert!(rec.truncated_entries > 0, "{how:?}: {rec:?}");
                    assert!(
                        rec.notes.iter().any(|n| n.contains("is bad")),
                        "{how:?}: the bad entry is named: {:?}",
                        rec.notes
                    );
                    assert!(rec.commit_checkpoint > last_after);
                }
                File::Index => {
                    let (rec, last_after) = dry.unwrap();
                    assert!(
                        (last_before..=last_before + 1).contains(&last_after),
                        "{how:?}: no entry is lost: {last_after} after, {last_before} before"
                    );
                    assert_eq!(rec.truncated_entries, 0);
                    assert!(
                        rec.notes.iter().any(|n| n.contains("rebuilt from data")),
                        "{how:?}: {:?}",
                        rec.notes
                    );
                }
                File::Checkpoint => {
                    let (rec, last_after) = dry.unwrap();
                    assert!(
                        (last_before..=last_before + 1).contains(&last_after),
                        "{how:?}: no entry is lost: {last_after} after, {last_before} before"
                    );
                    assert_eq!(
                        rec.commit_checkpoint, 0,
                        "{how:?}: the bad slots are ignored"
                    );
                    if matches!(how, Damage::FlipBit) {
                        assert!(
                            rec.notes.iter().any(|n| n.contains("no valid slot")),
                            "{:?}",
                            rec.notes
                        );
                    }
                }
                File::Term => {
                    let err = dry.expect_err("a corrupt term file stops the open");
                    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
                }
            }

            if let File::Term = file {
                // The member refuses to open; the operator rewrites the term file above
                // every term the group has reached.
                let engine = rmqraft::Engine::open("").unwrap();
                let err = engine
                    .open_group(&cluster.props(victim))
                    .err()
                    .expect("open refused");
                assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
                engine.close();
                let live_term = cluster
                    .running()
                    .iter()
                    .filter_map(|i| cluster.status(*i))
                    .map(|s| s.term)
                    .max()
                    .unwrap();
                let dir = cluster.member_dir(victim);
                rmqraft::store::rewrite_lost_term_file(&dir, live_term + 1).unwrap();
                let again = rmqraft::store::rewrite_lost_term_file(&dir, live_term + 2);
                assert_eq!(again.unwrap_err().kind(), ErrorKind::InvalidArgument);
            }
            cluster.restart(victim);
            let watch = LeaderWatch::new();
            std::thread::scope(|s| {
                s.spawn(|| watch.run(&cluster, &history));
                load_all(&cluster, &history, &format!("{tag}-after"), 300);
                let last = max_acked(&history);
                cluster.wait_committed(last);
                watch.finish();
            });
            watch.assert_clean();
            assert!(cluster.status(victim).unwrap().last_index >= last);
            let summary = converge_and_check(&cluster, &history);
            assert!(summary.acked > 0);
        }
        round += 1;
    }
    let summary = converge_and_check(&cluster, &history);
    eprintln!("{file:?}: {summary:?}");
}

#[test]
fn segment_damage_in_one_member_is_detected_and_repaired() {
    damaged_member_is_repaired(File::Segment);
}

#[test]
fn index_damage_in_one_member_is_rebuilt_from_data() {
    damaged_member_is_repaired(File::Index);
}

#[test]
fn checkpoint_damage_in_one_member_loses_only_the_hint() {
    damaged_member_is_repaired(File::Checkpoint);
}

#[test]
fn a_corrupt_term_file_stops_the_open_until_the_operator_rewrites_it() {
    damaged_member_is_repaired(File::Term);
}

/// Every member's segment is corrupt at the same committed index: nobody may serve
/// wrong bytes or acknowledge what it cannot keep. Each member knows (its checkpoint)
/// that it committed past its cut log, so none votes or campaigns (repair_target):
/// the group stays without a leader rather than elect a log missing committed entries.
#[test]
fn every_member_corrupt_at_one_index_refuses_rather_than_guesses() {
    let mut cluster = Cluster::start(3, "");
    let history = History::new();
    cluster.wait_leader();
    load_all(&cluster, &history, "pre", 1200);
    let last = max_acked(&history);
    cluster.wait_committed(last);
    let target = last - 200;
    let mut metas = Vec::new();
    for i in 0..3 {
        wait_checkpoint(&cluster, i, last);
        metas.push(cluster.group(i).read(target).unwrap().1);
    }
    let good_before = cluster.group(0).read(target - 1).unwrap().0;
    for i in 0..3 {
        cluster.stop(i);
    }
    for (i, meta) in metas.iter().enumerate() {
        damage(
            &cluster,
            i,
            File::Segment,
            Damage::FlipBit,
            target,
            meta.pos,
        );
    }
    for i in 0..3 {
        cluster.restart(i);
    }
    // Watch for several election timeouts: no leader, no acknowledged append, no read
    // of the damaged index or beyond, intact entries still read.
    let watch_for = Duration::from_secs(3);
    let start = Instant::now();
    let mut appends_tried = 0;
    while start.elapsed() < watch_for {
        for i in 0..3 {
            let s = cluster.status(i).unwrap();
            assert_ne!(
                s.role,
                Role::Leader,
                "n{i} leads with a log cut at {target}: {s:?}"
            );
            assert!(s.last_index < target, "{s:?}");
            for index in [target, target + 1, last] {
                match cluster.group(i).read(index) {
                    Err(e) => assert!(
                        matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Corrupt),
                        "{e}"
                    ),
                    Ok((data, _)) => panic!("n{i} served entry {index}: {:?}", &data[..16]),
                }
            }
            let err = cluster
                .group(i)
                .append(b"must not be acknowledged", Duration::from_millis(200))
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::NotLeader, "{err}");
            appends_tried += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(appends_tried > 0);
    for i in 0..3 {
        assert_eq!(cluster.group(i).read(target - 1).unwrap().0, good_before);
    }
}

/// Power fails on every member at once while appends run: writes not yet fdatasynced
/// are destroyed (zeroed, garbage or torn). Under SYNC_FLUSH nothing acknowledged is
/// lost; under ASYNC_FLUSH acknowledged entries may be lost, but only as a suffix, and
/// the members still agree.
fn power_cut(extra: &str, sync: bool) {
    let start = Instant::now();
    let mut round = 0;
    let mut destroyed_total = 0;
    while keep_going(start, round) {
        let mut cluster = Cluster::start(3, &format!("rmqraftFlusher=pwrite\n{extra}"));
        let history = History::new();
        let domain = FaultDomain::new(cluster.root.path()).unwrap();
        cluster.wait_leader();
        load_all(&cluster, &history, "before", 500);
        let stop = AtomicBool::new(false);
        let cut = std::thread::scope(|s| {
            s.spawn(|| load(&cluster, &history, "during", 1_000_000, &stop));
            wait_for("appends under load", || {
                (history.acked_count() > 1000).then_some(())
            });
            // Retried until the cut finds writes in flight (it does not disturb them).
            let cut = wait_for("a power cut that destroys unsynced writes", || {
                let cut = domain
                    .power_cut(round as u64, || history.crash("power cut"))
                    .unwrap();
                (cut.destroyed_bytes > 0).then_some(cut)
            });
            stop.store(true, Ordering::Release);
            cut
        });
        destroyed_total += cut.destroyed_bytes;
        history.note(&format!(
            "power cut destroyed {} bytes in {} ranges",
            cut.destroyed_bytes,
            cut.destroyed_ranges.len()
        ));
        for i in 0..3 {
            cluster.stop(i);
        }
        drop(domain);
        cut.restore().unwrap();
        for i in 0..3 {
            cluster.restart(i);
        }
        cluster.wait_leader();
        history.recovered("every member restarted from the power-cut image");
        load_all(&cluster, &history, "after", 200);
        let logs = |c: &Cluster| -> Vec<MemberLog> {
            (0..3)
                .map(|i| MemberLog::read(&format!("n{i}"), c.group(i)))
                .collect()
        };
        if sync {
            converge_and_check(&cluster, &history);
        } else {
            // Only what survived can converge; "after" appends are acked at new indexes.
            let after_max = history
                .ops()
                .iter()
                .filter(|o| o.payload.starts_with(b"after"))
                .filter_map(|o| match o.outcome {
                    history::Outcome::Acked { index, .. } => Some(index),
                    _ => None,
                })
                .max()
                .unwrap();
            cluster.wait_committed(after_max);
            let summary = check_with(
                &history,
                &logs(&cluster),
                CheckOptions {
                    acked_may_lose_suffix: true,
                },
            )
            .unwrap_or_else(|v| panic!("history check failed: {v}"));
            eprintln!("ASYNC_FLUSH power cut: {summary:?}");
        }
        round += 1;
    }
    assert!(destroyed_total > 0);
}

#[test]
fn power_loss_under_sync_flush_loses_nothing_acknowledged() {
    power_cut("", true);
}

#[test]
fn power_loss_under_async_flush_loses_at_most_a_suffix() {
    power_cut("flushDiskType=ASYNC_FLUSH", false);
}

/// The member's disk fills (an ENOSPC budget): appends fail with DISK_FULL, nothing
/// stored is damaged, and service resumes once space returns.
fn disk_full(on_leader: bool) {
    let mut cluster = Cluster::start(3, "");
    let history = History::new();
    let leader = cluster.wait_leader();
    load_all(&cluster, &history, "before", 500);
    let victim = if on_leader { leader } else { (leader + 1) % 3 };
    let domain = FaultDomain::new(&cluster.member_dir(victim)).unwrap();
    domain.set_space_left_bytes(Some(64 * 1024));
    if on_leader {
        // Appends keep coming until the leader says its disk is full.
        let mut seq = 0;
        let refused = wait_for("an append refused with DISK_FULL", || {
            let data = payload("full", seq);
            seq += 1;
            let id = history.invoke(&data);
            match cluster.group(leader).append(&data, Duration::from_secs(5)) {
                Ok(meta) => {
                    history.ack(id, &meta);
                    None
                }
                Err(e) => {
                    history.error(id, &e);
                    (e.kind() == ErrorKind::DiskFull).then_some(e)
                }
            }
        });
        assert!(refused.message().contains("No space") || refused.message().contains("space"));
        // It stays refused while the disk is full, and nothing it refused is kept.
        for _ in 0..5 {
            let data = payload("refused", seq);
            seq += 1;
            let id = history.invoke(&data);
            let err = cluster
                .group(leader)
                .append(&data, Duration::from_secs(5))
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::DiskFull, "{err}");
            history.fail(id, "refused with DISK_FULL by the call itself");
        }
    } else {
        // The others still make a quorum; the full follower falls behind.
        load_all(&cluster, &history, "full", 1500);
        let s = cluster.status(victim).unwrap();
        assert!(s.last_index < max_acked(&history), "{s:?}");
    }
    assert!(domain.enospc_count() > 0);
    assert_eq!(
        cluster.status(victim).unwrap().role,
        if on_leader {
            Role::Leader
        } else {
            Role::Follower
        },
        "the member survived the full disk"
    );
    // Space returns: service resumes without a restart.
    domain.set_space_left_bytes(None);
    load_all(&cluster, &history, "after", 500);
    let summary = converge_and_check(&cluster, &history);
    assert!(summary.acked >= 1000, "{summary:?}");
    // And what was stored reads back intact after a restart of the member.
    drop(domain);
    cluster.stop(victim);
    let (rec, _) = dry_run_recovery(&cluster, victim).unwrap();
    assert_eq!(rec.truncated_entries, 0, "{rec:?}");
    cluster.restart(victim);
    converge_and_check(&cluster, &history);
}

#[test]
fn a_full_disk_on_the_leader_refuses_appends_and_recovers() {
    disk_full(true);
}

#[test]
fn a_full_disk_on_a_follower_stalls_it_and_it_catches_up() {
    disk_full(false);
}

/// The same on a real file system: a one-member group on a small tmpfs. Skipped (with
/// the reason printed) where mounting is not permitted.
#[test]
fn a_real_small_file_system_fills_and_frees() {
    init_logging();
    let mount_point = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(mount_point.path())
        .output();
    match &mounted {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            eprintln!(
                "skipped: cannot mount a tmpfs: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return;
        }
        Err(e) => {
            eprintln!("skipped: cannot run mount: {e}");
            return;
        }
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mount_point.path().to_path_buf());
    let root = mount_point.path().join("store");
    let ports = free_ports(1);
    let engine = rmqraft::Engine::open("").unwrap();
    let group = engine
        .open_group(&group_props("Small", &ports, 0, &root, ""))
        .unwrap();
    wait_for("a leader", || {
        (group.status().unwrap().role == Role::Leader).then_some(())
    });
    // A ballast file takes the room of one segment; the log gets the rest.
    let ballast = mount_point.path().join("ballast");
    std::fs::write(&ballast, vec![1u8; SEGMENT_BYTES as usize]).unwrap();
    let history = History::new();
    let mut seq = 0;
    let refused = wait_for("the small file system to fill", || {
        let data = sized_payload("fill", seq, 16 * 1024);
        seq += 1;
        let id = history.invoke(&data);
        match group.append(&data, Duration::from_secs(5)) {
            Ok(meta) => {
                history.ack(id, &meta);
                None
            }
            Err(e) => {
                history.error(id, &e);
                (e.kind() == ErrorKind::DiskFull).then_some(e)
            }
        }
    });
    eprintln!("full after {seq} appends: {refused}");
    assert!(history.acked_count() > 100);
    std::fs::remove_file(&ballast).unwrap();
    let meta = wait_for("appends to resume once space returns", || {
        let data = sized_payload("freed", seq, 16 * 1024);
        seq += 1;
        let id = history.invoke(&data);
        let r = group.append(&data, Duration::from_secs(5));
        history.result(id, &r);
        r.ok()
    });
    assert!(meta.index > 100);
    let logs = [MemberLog::read("n0", &group)];
    check(&history, &logs).unwrap_or_else(|v| panic!("history check failed: {v}"));
    group.close();
    engine.close();
    // Reopened from the small file system: everything acknowledged is there.
    let engine = rmqraft::Engine::open("").unwrap();
    let group = engine
        .open_group(&group_props("Small", &ports, 0, &root, ""))
        .unwrap();
    wait_for("the reopened member to commit", || {
        (group.status().unwrap().commit_index >= meta.index).then_some(())
    });
    check(&history, &[MemberLog::read("n0", &group)])
        .unwrap_or_else(|v| panic!("history check after reopen failed: {v}"));
    group.close();
    engine.close();
}

/// B3: a leader whose disk starts failing every fdatasync with EIO fails its member, so
/// another leads within a few election timeouts (before, it kept leading on heartbeats
/// from its tail cache, and the group took no more appends). No failed sync is retried;
/// an append caught in it completes with its outcome unknown or committed (by the two
/// followers' disks), never as definitely failed. The member reopens once the disk works.
#[test]
fn a_leader_whose_disk_fails_with_eio_fails_and_another_leads() {
    let mut cluster = Cluster::start(3, "");
    let history = Arc::new(History::new());
    let old = cluster.wait_leader();
    load_all(&cluster, &history, "before", 200);
    let domain = FaultDomain::new(&cluster.member_dir(old)).unwrap();
    domain.set_sync_errno(Some(libc::EIO));
    let failed_at = Instant::now();
    let data = payload("eio", 0);
    let id = history.invoke(&data);
    let result = cluster.group(old).append(&data, Duration::from_secs(5));
    if let Err(e) = &result {
        assert!(
            matches!(e.kind(), ErrorKind::OutcomeUnknown | ErrorKind::Timeout),
            "an append the failing leader accepted may still commit: {e}"
        );
    }
    history.result(id, &result);
    let new = wait_for("another member to lead", || {
        let leader = leader_of(&cluster)?;
        (leader != old).then_some(leader)
    });
    let took = failed_at.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "a new leader took {took:?} (election timeout 300 ms)"
    );
    let err = cluster.group(old).status().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    assert!(err.message().contains("fdatasync"), "{err}");
    assert!(!domain.sync_failures().is_empty(), "the fault was met");
    load_all(&cluster, &history, "after", 200);
    for (path, attempts) in domain.sync_failures() {
        assert_eq!(attempts, 1, "{} synced again after EIO", path.display());
    }
    assert_ne!(cluster.status(new).unwrap().role, Role::Candidate);
    // The disk is replaced (here: works again); the member reopens and catches up.
    cluster.stop(old);
    drop(domain);
    cluster.restart(old);
    let summary = converge_and_check(&cluster, &history);
    assert!(summary.acked >= 400, "{summary:?}");
}
