//! A member opened over an old classic store (storePathCommitLog at the old commitlog/,
//! storePathRootDir at a new root) serves every old message by queue, key, UNIQ_KEY and
//! offset msg id, with the body and properties it had; new messages get commitlog
//! offsets after the old log and queue offsets continue; topics and consumer offsets
//! come from config/*.json; the old files are not changed. On both Java-written
//! fixtures (4.2 unclean with a lagging consume queue, 4.4 with config) and on a
//! three-member group over three copies of a written store, with failover.

mod common;
mod upgrade_support;

use common::{free_ports, init_logging, peers_string, wait_for, wait_for_ok, DEADLINE};
use rmqraft::broker::record::MessageRecord;
use rmqraft::broker::{Broker, Message, MessageView};
use rmqraft::{Engine, ErrorKind, Role};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use upgrade_support::*;

/// Members, each over its own copy of an old store.
struct Members {
    dir: tempfile::TempDir,
    ports: Vec<u16>,
    /// Per member: the old commitlog directory, or none.
    old: Vec<Option<PathBuf>>,
    members: Vec<Option<(Engine, Broker)>>,
}

impl Members {
    /// `old_stores[i]` is copied to `<dir>/old<i>` (a store root) for member i.
    fn start(old_stores: &[&Path]) -> Members {
        let mut m = Members::new(old_stores);
        for i in 0..m.members.len() {
            m.restart(i);
        }
        m
    }

    /// As `start`, but no member is opened yet.
    fn new(old_stores: &[&Path]) -> Members {
        init_logging();
        let dir = tempfile::tempdir().unwrap();
        let mut old = Vec::new();
        for (i, s) in old_stores.iter().enumerate() {
            let to = dir.path().join(format!("old{i}"));
            copy_dir(s, &to);
            old.push(Some(to.join("commitlog")));
        }
        let n = old.len();
        Members {
            dir,
            ports: free_ports(n),
            old,
            members: (0..n).map(|_| None).collect(),
        }
    }

    fn old_root(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("old{i}"))
    }

    fn props(&self, i: usize) -> String {
        let old = match &self.old[i] {
            Some(d) => format!("storePathCommitLog={}\n", d.display()),
            None => String::new(),
        };
        format!(
            "dLegerGroup=RaftNode00\ndLegerPeers={}\ndLegerSelfId=n{i}\nstorePathRootDir={}\n\
             mappedFileSizeCommitLog=1048576\nbrokerIP1=127.0.0.1\n{old}",
            peers_string(&self.ports),
            self.dir.path().join(format!("new{i}")).display()
        )
    }

    fn open(&self, i: usize) -> rmqraft::Result<(Engine, Broker)> {
        let engine = Engine::open("brokerClusterName=TestCluster")?;
        let group = match engine.open_group(&self.props(i)) {
            Ok(g) => Arc::new(g),
            Err(e) => {
                engine.close();
                return Err(e);
            }
        };
        match Broker::open(Arc::clone(&group), &self.props(i)) {
            Ok(b) => Ok((engine, b)),
            Err(e) => {
                group.close();
                engine.close();
                Err(e)
            }
        }
    }

    fn restart(&mut self, i: usize) {
        assert!(self.members[i].is_none());
        let m = wait_for("member to open", || match self.open(i) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == ErrorKind::Io => None,
            Err(e) => panic!("member {i} does not open: {e}"),
        });
        self.members[i] = Some(m);
    }

    fn stop(&mut self, i: usize) {
        if let Some((engine, broker)) = self.members[i].take() {
            broker.close();
            broker.group().close();
            engine.close();
        }
    }

    fn broker(&self, i: usize) -> &Broker {
        &self.members[i].as_ref().expect("running").1
    }

    fn running(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|i| self.members[*i].is_some())
            .collect()
    }

    fn leader(&self) -> usize {
        wait_for("a leader", || {
            let leaders: Vec<usize> = self
                .running()
                .into_iter()
                .filter(|i| {
                    self.broker(*i)
                        .group()
                        .status()
                        .is_ok_and(|s| s.role == Role::Leader)
                })
                .collect();
            (leaders.len() == 1).then(|| leaders[0])
        })
    }

    /// A leader committed everything in its log (its own term's first entry included)
    /// and every running member applied it.
    fn settle(&self) {
        let (_, commit) = wait_for("the leader to commit its log", || {
            let l = self.leader();
            let s = self.broker(l).group().status().ok()?;
            (s.role == Role::Leader && s.commit_index >= s.last_index)
                .then_some((l, s.commit_index))
        });
        for i in self.running() {
            self.broker(i).wait_applied(commit, DEADLINE).unwrap();
        }
    }

    fn send(&self, m: &Message) -> rmqraft::broker::SendResult {
        wait_for("a send to commit", || {
            let l = self.leader();
            match self.broker(l).send(m, Duration::from_secs(10)) {
                Ok(r) => Some(r),
                Err(e) if matches!(e.kind(), ErrorKind::NotLeader | ErrorKind::Busy) => None,
                Err(e) => panic!("send: {e}"),
            }
        })
    }
}

impl Drop for Members {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.stop(i);
        }
    }
}

/// The records of a commitlog, decoded straight from its files.
fn old_records(commitlog: &Path) -> Vec<MessageRecord> {
    let mut names: Vec<_> = std::fs::read_dir(commitlog)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    let mut out = Vec::new();
    for path in names {
        let b = std::fs::read(&path).unwrap();
        let mut pos = 0;
        while pos + 8 <= b.len() {
            let magic = u32::from_be_bytes(b[pos + 4..pos + 8].try_into().unwrap());
            if magic != 0xDAA3_20A7 && magic != 0xDAA3_20AB {
                break;
            }
            let (rec, size) = MessageRecord::decode(&b[pos..]).unwrap();
            out.push(rec);
            pos += size;
        }
    }
    out
}

fn pull_all(b: &Broker, topic: &str, queue: i32) -> Vec<MessageView> {
    let (min, max) = b.queue_offsets(topic, queue).unwrap();
    let mut out = Vec::new();
    let mut offset = min;
    for _ in 0..100_000 {
        if offset >= max {
            break;
        }
        let r = b
            .pull(topic, queue, offset, 64, None, Duration::ZERO)
            .unwrap();
        assert!(r.next_offset > offset);
        offset = r.next_offset;
        out.extend(r.messages);
    }
    out
}

/// Every old record is served by queue (same bytes), by each key and by its ids.
fn assert_serves_old(b: &Broker, recs: &[MessageRecord]) {
    let mut topics: Vec<(String, i32)> =
        recs.iter().map(|r| (r.topic.clone(), r.queue_id)).collect();
    topics.sort();
    topics.dedup();
    for (t, q) in &topics {
        let want: Vec<&MessageRecord> = recs
            .iter()
            .filter(|r| &r.topic == t && r.queue_id == *q)
            .collect();
        let got = pull_all(b, t, *q);
        assert!(got.len() >= want.len(), "{t}:{q} holds every old message");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(&g.decoded, *w, "{t}:{q} offset {}", w.queue_offset);
            assert_eq!(g.queue_offset(), w.queue_offset as u64);
            assert_eq!(g.commitlog_offset(), w.physical_offset as u64);
        }
    }
    // Every key of a sample (all when few), by key, by UNIQ_KEY and by offset msg id.
    let step = (recs.len() / 200).max(1);
    for r in recs.iter().step_by(step) {
        for k in r.keys().unwrap_or("").split(' ').filter(|k| !k.is_empty()) {
            let hits = b.query_by_key(&r.topic, k, 1000, 0, 0).unwrap();
            assert!(
                hits.iter()
                    .any(|h| h.commitlog_offset() == r.physical_offset as u64),
                "key {k} finds the message at {}",
                r.physical_offset
            );
        }
        let v = b.view_by_id(&r.offset_msg_id()).unwrap();
        assert_eq!(v.decoded, *r, "by offset msg id");
        if let Some(u) = r.uniq_key() {
            let v = b.view_by_id(u).unwrap();
            assert_eq!(v.decoded.physical_offset, r.physical_offset, "by UNIQ_KEY");
        }
    }
}

#[test]
fn the_4_4_store_with_config_is_served_and_continued() {
    let mut m = Members::start(&[&fixture("v4.4-single")]);
    let old_root = m.old_root(0);
    let before = snapshot(&old_root);
    let recs = old_records(&old_root.join("commitlog"));
    assert_eq!(recs.len(), 47);
    m.leader();
    let b = m.broker(0);
    assert_eq!(b.queue_offsets("abc", 0).unwrap(), (0, 47));
    assert_serves_old(b, &recs);
    // config/topics.json and consumerOffset.json (fastjson's {0:250}).
    let t = b.topic("TopicTest").unwrap();
    assert_eq!((t.read_queue_nums, t.write_queue_nums, t.perm), (4, 4, 6));
    assert_eq!(
        b.consumer_offset_fetch("please_rename_unique_group_name_4", "TopicTest", 3)
            .unwrap(),
        Some(250)
    );
    // New messages: after the old log (sealed at 8192), queue offsets continue.
    let r = m.send(
        &Message::new("abc", "a new message")
            .with_queue(0)
            .with_keys("k-new"),
    );
    assert_eq!(r.queue_offset, 47);
    assert!(r.commitlog_offset >= 8192, "{}", r.commitlog_offset);
    m.settle();
    let b = m.broker(0);
    let v = b.view_by_id(&r.offset_msg_id).unwrap();
    assert_eq!(v.body().as_ref(), b"a new message");
    assert_eq!(b.query_by_key("abc", "k-new", 10, 0, 0).unwrap().len(), 1);
    let t = b.topic("TopicTest").unwrap();
    assert_eq!(t.read_queue_nums, 4, "the topic table survives");

    // Reopened: the same, and nothing of the old store changed.
    m.stop(0);
    assert_eq!(snapshot(&old_root), before, "the old files are not written");
    m.restart(0);
    m.settle();
    let b = m.broker(0);
    assert_eq!(b.queue_offsets("abc", 0).unwrap(), (0, 48));
    assert_serves_old(b, &recs);
    // The new message is served once the reopened member committed its log again.
    let v = wait_for_ok("the new message after the reopen", || {
        b.view_by_id(&r.offset_msg_id)
    });
    assert_eq!(v.body().as_ref(), b"a new message");
    let r2 = m.send(&Message::new("abc", "another").with_queue(0));
    assert_eq!(r2.queue_offset, 48);
    m.stop(0);
    assert_eq!(snapshot(&old_root), before);

    // Without storePathCommitLog the member refuses: its old messages would be gone.
    m.old[0] = None;
    let err = m.open(0).err().expect("refused without the old log");
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(
        err.message().contains("storePathCommitLog") && err.message().contains("old0"),
        "{err}"
    );
}

#[test]
fn the_4_2_unclean_store_is_recovered_from_its_commitlog() {
    let mut m = Members::start(&[&fixture("v4.2-unclean")]);
    let old_root = m.old_root(0);
    let before = snapshot(&old_root);
    let recs = old_records(&old_root.join("commitlog"));
    assert_eq!(recs.len(), 179);
    m.leader();
    let b = m.broker(0);
    // The old consume queue holds 56 units; the commitlog's 179 messages are all served.
    assert_eq!(b.queue_offsets("abc", 0).unwrap(), (0, 179));
    assert_serves_old(b, &recs);
    let r = m.send(&Message::new("abc", "after the unclean stop").with_queue(0));
    assert_eq!(r.queue_offset, 179);
    assert!(r.commitlog_offset >= 32768, "{}", r.commitlog_offset);
    m.stop(0);
    assert_eq!(
        snapshot(&old_root),
        before,
        "abort, consume queue and commitlog unchanged"
    );
}

#[test]
fn three_members_over_three_copies_fail_over_and_keep_serving() {
    let src = tempfile::tempdir().unwrap();
    let msgs = messages(3000, 4);
    write_store(src.path(), 64 << 10, &msgs, 4);
    let recs = old_records(&src.path().join("commitlog"));
    let divided = {
        let s = rmqraft::upgrade::tools::inspect(src.path()).unwrap();
        s.scan.divided
    };
    let mut m = Members::start(&[src.path(), src.path(), src.path()]);
    m.settle();
    for i in 0..3 {
        assert_serves_old(m.broker(i), &recs);
        assert_eq!(
            m.broker(i)
                .consumer_offset_fetch("cg1", "OrderTopic", 1)
                .unwrap(),
            Some(7)
        );
    }
    let queue_max = |b: &Broker, q: i32| b.queue_offsets("OrderTopic", q).unwrap().1;
    let before: Vec<u64> = (0..4).map(|q| queue_max(m.broker(0), q)).collect();
    let mut sent = Vec::new();
    for i in 0..40 {
        let r = m.send(
            &Message::new("OrderTopic", format!("new {i}"))
                .with_queue(i % 4)
                .with_keys(format!("new-{i}")),
        );
        assert!(r.commitlog_offset >= divided);
        sent.push(r);
    }
    for (i, r) in sent.iter().enumerate() {
        let q = i as i32 % 4;
        assert_eq!(
            r.queue_offset,
            before[q as usize] + (i as u64 / 4),
            "queue offsets continue"
        );
    }
    m.settle();

    // The leader goes; the new one serves the old messages and the new, and continues.
    let old_leader = m.leader();
    m.stop(old_leader);
    let l = m.leader();
    assert_ne!(l, old_leader);
    m.settle();
    assert_serves_old(m.broker(l), &recs);
    let last = &sent.last().unwrap().offset_msg_id;
    wait_for_ok("the new leader to commit what it inherited", || {
        m.broker(l).view_by_id(last)
    });
    for r in &sent {
        let v = m.broker(l).view_by_id(&r.offset_msg_id).unwrap();
        assert_eq!(v.commitlog_offset(), r.commitlog_offset);
    }
    let r = m.send(&Message::new("OrderTopic", "after failover").with_queue(0));
    assert_eq!(r.queue_offset, before[0] + 10);
    m.restart(old_leader);
    m.settle();
    assert_serves_old(m.broker(old_leader), &recs);
    let v = wait_for_ok("the new message on the restarted member", || {
        m.broker(old_leader).view_by_id(&r.offset_msg_id)
    });
    assert_eq!(v.body().as_ref(), b"after failover");
    for i in 0..3 {
        m.stop(i);
    }
    for i in 0..3 {
        assert_eq!(
            snapshot(&m.old_root(i)),
            snapshot(src.path()),
            "member {i}'s old copy unchanged"
        );
    }
}

#[test]
fn a_member_refuses_an_old_log_below_messages_of_its_own_or_a_changed_one() {
    let src = tempfile::tempdir().unwrap();
    write_store(src.path(), 64 << 10, &messages(300, 2), 2);
    let mut m = Members::start(&[src.path()]);
    m.stop(0);
    // Another old log in its place (one message fewer): refused, naming what changed.
    let other = tempfile::tempdir().unwrap();
    write_store(other.path(), 64 << 10, &messages(299, 2), 2);
    std::fs::remove_dir_all(m.old_root(0)).unwrap();
    copy_dir(other.path(), &m.old_root(0));
    let err = m.open(0).err().expect("refused");
    assert!(
        err.message()
            .contains("not the one this member was first opened over")
            && err.message().contains("end "),
        "{err}"
    );

    // A member with messages of its own, then given an old log: refused.
    let mut own = Members::start(&[src.path()]);
    own.stop(0);
    let fresh = own.dir.path().join("new0");
    std::fs::remove_dir_all(&fresh).unwrap();
    let keep = own.old[0].take();
    own.restart(0);
    own.send(&Message::new("T1", "mine"));
    own.stop(0);
    own.old[0] = keep;
    let err = own.open(0).err().expect("refused");
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.message().contains("already holds messages"), "{err}");
}

/// Waits for member `i` to refuse for its old log, and returns why.
fn refusal_of(m: &Members, i: usize) -> rmqraft::Error {
    let err = wait_for("the member to refuse", || {
        m.broker(i).group().old_log_refusal()
    });
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    for w in [
        "refusing to serve and to elect",
        "store diff",
        "store align",
    ] {
        assert!(err.message().contains(w), "'{w}' in: {err}");
    }
    // It serves nothing.
    let e = m
        .broker(i)
        .send(&Message::new("OrderTopic", "x"), Duration::from_secs(1))
        .unwrap_err();
    assert!(e.message().contains("refusing to serve"), "{e}");
    err
}

/// Members 0 and 1 over `good`, member 2 over `bad` (None: no old log), all started
/// together: member 2 refuses (returned), the other two elect, serve the old messages
/// and take new ones.
fn two_agree_one_refuses(good: &Path, bad: Option<&Path>) -> rmqraft::Error {
    let recs = old_records(&good.join("commitlog"));
    let mut m = Members::new(&[good, good, bad.unwrap_or(good)]);
    if bad.is_none() {
        m.old[2] = None;
    }
    for i in 0..3 {
        m.restart(i);
    }
    let err = refusal_of(&m, 2);
    let refused = m.dir.path().join("new2/dledger-n2/broker/old-log.refused");
    assert!(refused.exists(), "{} written", refused.display());
    let l = m.leader();
    assert_ne!(l, 2, "the refusing member never leads");
    let r = m.send(&Message::new("OrderTopic", "after the refusal").with_queue(0));
    m.stop(2);
    m.settle();
    for i in 0..2 {
        assert_serves_old(m.broker(i), &recs);
        let v = wait_for_ok("the new message", || {
            m.broker(i).view_by_id(&r.offset_msg_id)
        });
        assert_eq!(v.body().as_ref(), b"after the refusal");
    }
    // The refusal holds across a restart, before any election.
    let err2 = m.open(2).err().expect("refused at open");
    assert!(
        err2.message().contains("refusing to serve") && err2.message().contains("old-log.refused"),
        "{err2}"
    );
    err
}

#[test]
fn three_identical_copies_elect_and_serve() {
    let src = tempfile::tempdir().unwrap();
    write_store(src.path(), 64 << 10, &messages(500, 2), 2);
    let recs = old_records(&src.path().join("commitlog"));
    let mut m = Members::start(&[src.path(), src.path(), src.path()]);
    let r = m.send(&Message::new("OrderTopic", "new").with_queue(1));
    m.settle();
    for i in 0..3 {
        assert!(m.broker(i).group().old_log_refusal().is_none());
        assert_serves_old(m.broker(i), &recs);
        assert!(m.broker(i).view_by_id(&r.offset_msg_id).is_ok());
    }
    m.stop(0);
    m.stop(1);
    m.stop(2);
}

#[test]
fn a_copy_cut_short_refuses_to_elect_and_names_the_offset() {
    let (full, short) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_store(full.path(), 64 << 10, &messages(3000, 4), 4);
    // A slave copy that missed the last messages: sound, but not the master's log.
    let w = write_store(short.path(), 64 << 10, &messages(2990, 4), 4);
    let err = two_agree_one_refuses(full.path(), Some(short.path()));
    let seg = w.end / w.segment_size * w.segment_size;
    for want in [
        format!("first differ in segment {seg:020}"),
        format!("at offset {}:", w.end),
        format!("this member's old log holds offsets 0..{}", w.end),
        "member n0's".to_string(),
    ] {
        assert!(err.message().contains(&want), "'{want}' in: {err}");
    }
    assert!(err.message().matches("sha256").count() >= 4, "{err}");
}

#[test]
fn a_copy_with_a_flipped_byte_refuses_to_elect_and_names_the_segment() {
    let (good, bad) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let seg_size = 64 << 10;
    let w = write_store(good.path(), seg_size, &messages(3000, 4), 4);
    copy_dir(good.path(), bad.path());
    // A byte of the KEYS of a message in the second segment: every record check still
    // passes (BODYCRC covers the body only), only the bytes differ.
    let (off, _, bytes) = w
        .records
        .iter()
        .find(|(o, _, _)| *o > seg_size + 1000)
        .unwrap()
        .clone();
    let at = bytes.windows(3).position(|x| x == b"m00").unwrap() as u64 + 3;
    let flip = off + at;
    let seg = flip / seg_size * seg_size;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(bad.path().join("commitlog").join(format!("{seg:020}")))
        .unwrap();
    use std::os::unix::fs::FileExt;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, flip % seg_size).unwrap();
    f.write_all_at(&[b[0] ^ 0x01], flip % seg_size).unwrap();
    drop(f);
    let err = two_agree_one_refuses(good.path(), Some(bad.path()));
    for want in [
        format!("first differ in segment {seg:020}"),
        format!("at offset {seg} or after"),
        "member n0's".to_string(),
    ] {
        assert!(err.message().contains(&want), "'{want}' in: {err}");
    }
}

#[test]
fn a_member_without_the_old_log_refuses_when_the_others_have_it() {
    let src = tempfile::tempdir().unwrap();
    write_store(src.path(), 64 << 10, &messages(300, 2), 2);
    let err = two_agree_one_refuses(src.path(), None);
    assert!(
        err.message().contains("serves an old log")
            && err
                .message()
                .contains("this member has none (storePathCommitLog)"),
        "{err}"
    );
}

#[test]
fn a_member_whose_old_log_differs_from_the_leader_s_refuses_to_serve() {
    let (full, short) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_store(full.path(), 64 << 10, &messages(3000, 4), 4);
    // A slave copy that missed the last messages: sound, but not the master's log.
    write_store(short.path(), 64 << 10, &messages(2990, 4), 4);
    let recs = old_records(&full.path().join("commitlog"));
    let mut m = Members::new(&[full.path(), full.path(), short.path()]);
    m.restart(0);
    m.restart(1);
    m.settle();
    let l = m.leader();
    let r = m.send(&Message::new("OrderTopic", "with two members").with_queue(0));
    m.settle();
    // Started after the other two elected: it compares its old log with theirs before
    // it votes, and refuses.
    m.restart(2);
    let err = wait_for("member 2 to refuse", || {
        m.broker(2).view_by_id(&recs[0].offset_msg_id()).err()
    });
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    for w in ["refusing to serve", "first differ in segment", "store diff"] {
        assert!(err.message().contains(w), "'{w}' in: {err}");
    }
    let err = m
        .broker(2)
        .send(&Message::new("OrderTopic", "x"), Duration::from_secs(1))
        .unwrap_err();
    assert!(err.message().contains("refusing to serve"), "{err}");
    // The two that agree keep serving, old and new, with the same leader.
    assert_eq!(m.leader(), l);
    assert_serves_old(m.broker(l), &recs);
    assert!(m.broker(l).view_by_id(&r.offset_msg_id).is_ok());
    // And the refusal holds across a restart.
    m.stop(2);
    let err = m.open(2).err().expect("refused at open");
    assert!(
        err.message().contains("refusing to serve") && err.message().contains("old-log.refused"),
        "{err}"
    );
}

/// The open time of an old store of 100 000 messages (README, "Upgrading"): run with
/// `cargo nextest run --release --test upgrade_open --run-ignored only`.
#[test]
#[ignore]
fn open_time_of_an_old_store_of_100k_messages() {
    let src = tempfile::tempdir().unwrap();
    let w = write_store(src.path(), 16 << 20, &messages(100_000, 4), 4);
    let m = Members::new(&[src.path()]);
    let start = std::time::Instant::now();
    let (engine, broker) = m.open(0).unwrap();
    let opened = start.elapsed();
    broker.group().wait_leader(DEADLINE).unwrap();
    let led = start.elapsed();
    let (min, max) = broker.queue_offsets("OrderTopic", 1).unwrap();
    assert_eq!(min, 0);
    assert!(max > 20_000, "{max}");
    log::warn!(
        "old store of {} messages, {} bytes: broker open {opened:?}, leader after {led:?}",
        w.records.len(),
        w.end
    );
    eprintln!(
        "old store of {} messages, {} bytes: broker open {opened:?}, leader after {led:?}",
        w.records.len(),
        w.end
    );
    broker.close();
    broker.group().close();
    engine.close();
    // Again, over the broker state the first open made.
    let start = std::time::Instant::now();
    let (engine, broker) = m.open(0).unwrap();
    broker.group().wait_leader(DEADLINE).unwrap();
    eprintln!("reopened and leading after {:?}", start.elapsed());
    assert_eq!(broker.queue_offsets("OrderTopic", 1).unwrap(), (min, max));
    broker.close();
    broker.group().close();
    engine.close();
}

/// Retention of the member's own log over an old log: the queues' min offsets move past
/// every old message (their files are older than anything in the member's log) and past
/// the deleted new ones, and pulls from min go on (units hold commitlog offsets, the
/// member's log starting at the divide).
#[test]
fn retention_over_an_old_log_moves_min_offsets_past_the_old_messages() {
    let src = tempfile::tempdir().unwrap();
    write_store(src.path(), 64 << 10, &messages(300, 2), 2);
    let recs = old_records(&src.path().join("commitlog"));
    let m = Members::start(&[src.path()]);
    let divided = rmqraft::upgrade::tools::inspect(src.path())
        .unwrap()
        .scan
        .divided;
    let body = "n".repeat(1500);
    let mut sent = Vec::new();
    for i in 0..2000 {
        sent.push(m.send(&Message::new("OrderTopic", body.clone()).with_queue(i % 2)));
    }
    m.settle();
    let b = m.broker(0);
    let g = b.group();
    wait_for("retention to delete a segment of the member's log", || {
        g.apply_retention_now(0).ok()?;
        (g.status().ok()?.first_index > 500).then_some(())
    });
    let first = g.status().unwrap().first_index;
    let first_phy = divided + g.read(first).unwrap().1.pos;
    for q in 0..2 {
        let old_in_q = recs
            .iter()
            .filter(|r| r.topic == "OrderTopic" && r.queue_id == q)
            .count() as u64;
        let new_gone = sent
            .iter()
            .filter(|r| r.queue_id == q && r.commitlog_offset < first_phy)
            .count() as u64;
        assert!(new_gone > 0, "queue {q}: retention reached new messages");
        wait_for("the min offset to follow retention", || {
            (b.queue_offsets("OrderTopic", q).ok()?.0 == old_in_q + new_gone).then_some(())
        });
        let got = pull_all(b, "OrderTopic", q);
        let kept = sent
            .iter()
            .filter(|r| r.queue_id == q && r.commitlog_offset >= first_phy)
            .count();
        assert_eq!(got.len(), kept, "queue {q}: exactly the messages kept");
        assert!(got.iter().all(|v| v.commitlog_offset() >= first_phy));
    }
}
