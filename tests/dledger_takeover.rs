//! DLedger stores (RocketMQ in DLedger mode) read in place: the reader and validator
//! (src/upgrade/dledger.rs) over stores written by tests/dledger_support, the store
//! tools over them, and a group taking one over.

mod common;
mod dledger_support;
mod upgrade_support;

use common::{free_ports, init_logging, peers_string, wait_for, wait_for_ok, DEADLINE};
use rmqraft::broker::record::MessageRecord;
use rmqraft::broker::{Broker, Message, MessageView};
use rmqraft::{Engine, ErrorKind, Role};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dledger_support::{items, write};
use rmqraft::upgrade::dledger::{self, DLedgerLog};
use rmqraft::upgrade::OldLog;
use std::path::Path;

const SEG: u64 = 64 << 10;
const INDEX_FILE: u64 = 32 * 1024;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn write_one(dir: &Path, n: usize) -> dledger_support::Written {
    write(dir, SEG, INDEX_FILE, &items(n, 4, 500), 7, "n1")
}

#[test]
fn writer_follows_the_reference_layout_byte_by_byte() {
    let t = tmp();
    let d = t.path().join("dledger-n0");
    let w = write(&d, SEG, INDEX_FILE, &items(2, 1, 500), 3, "n0");
    let data = std::fs::read(d.join("data/00000000000000000000")).unwrap();
    assert_eq!(data.len() as u64, SEG);
    // Entry 0: a NOOP, 48 bytes, index 0, term 1, pos 0, body length 0.
    let mut want = Vec::new();
    want.extend_from_slice(&[0, 0, 0, 2]); // magic NOOP
    want.extend_from_slice(&[0, 0, 0, 48]); // size
    want.extend_from_slice(&[0; 8]); // index 0
    want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]); // term 1
    want.extend_from_slice(&[0; 8]); // pos 0
    want.extend_from_slice(&[0; 12]); // channel, chainCrc, bodyCrc
    want.extend_from_slice(&[0; 4]); // body length 0
    assert_eq!(&data[..48], &want[..]);
    // Entry 1 at pos 48: magic 1, size 48 + body, index 1, pos 48, the body a classic
    // record whose PHYSICALOFFSET (at body offset 28) is pos + 48 = 96.
    let e1 = &data[48..];
    assert_eq!(&e1[0..4], &[0, 0, 0, 1]);
    let size = u32::from_be_bytes(e1[4..8].try_into().unwrap());
    assert_eq!(&e1[8..16], &1u64.to_be_bytes());
    assert_eq!(&e1[24..32], &48u64.to_be_bytes());
    let body_len = u32::from_be_bytes(e1[44..48].try_into().unwrap());
    assert_eq!(size, 48 + body_len);
    let body = &e1[48..48 + body_len as usize];
    assert_eq!(
        u32::from_be_bytes(body[0..4].try_into().unwrap()),
        body_len,
        "TOTALSIZE"
    );
    assert_eq!(
        &body[4..8],
        &0xDAA3_20A7u32.to_be_bytes(),
        "message magic v1"
    );
    assert_eq!(
        &body[28..36],
        &96u64.to_be_bytes(),
        "PHYSICALOFFSET = pos + 48"
    );
    assert_eq!(w.records[0].0, 96);
    // Index record 1 at byte 32: magic, pos, size, index, term.
    let idx = std::fs::read(d.join("index/00000000000000000000")).unwrap();
    assert_eq!(&idx[32..36], &[0, 0, 0, 1]);
    assert_eq!(&idx[36..44], &48u64.to_be_bytes());
    assert_eq!(&idx[44..48], &size.to_be_bytes());
    assert_eq!(&idx[48..56], &1u64.to_be_bytes());
    assert_eq!(&idx[56..64], &1u64.to_be_bytes());
    let ct = std::fs::read_to_string(d.join("currterm")).unwrap();
    assert!(
        ct.contains("currTerm=3\n") && ct.contains("voteLeader=n0\n"),
        "{ct}"
    );
}

#[test]
fn every_entry_is_read_over_several_files_with_blanks_and_noops() {
    let t = tmp();
    let d = t.path().join("dledger-n0");
    let w = write_one(&d, 3000);
    assert!(w.end > 10 * SEG, "several data files: {}", w.end);
    let before = upgrade_support::snapshot(t.path());
    let s = dledger::scan(&d).unwrap();
    assert!(s.problems.is_empty(), "{:?}", s.problems);
    assert_eq!(s.entries.len(), 3000);
    assert_eq!(s.first_index(), Some(0));
    assert_eq!(s.last_index(), Some(2999));
    assert_eq!(s.curr_term, Some(7));
    assert_eq!(s.vote_leader.as_deref(), Some("n1"));
    assert_eq!(s.term(), 7);
    assert_eq!(s.noops(), 6);
    assert_eq!(s.end, w.end);
    assert_eq!(s.divided, (w.end / SEG + 1) * SEG);
    let offsets: Vec<u64> = w.records.iter().map(|r| r.0).collect();
    assert_eq!(s.offsets, offsets);
    assert_eq!(s.records.len(), w.records.len());
    for (meta, (off, rec, _, _)) in s.records.iter().zip(&w.records) {
        assert_eq!(meta.offset, *off);
        assert_eq!(meta.queue_offset, rec.queue_offset);
        assert_eq!(meta.topic, rec.topic);
    }
    assert!(
        s.segments.iter().rev().skip(1).all(|g| g.sealed),
        "every full file blank-sealed"
    );
    let log = DLedgerLog::open(&d, None).unwrap();
    for (off, _, bytes, _) in w.records.iter().step_by(97) {
        assert_eq!(log.read(*off).unwrap().as_deref(), Some(&bytes[..]));
        assert_eq!(
            log.read(*off - 48).unwrap(),
            None,
            "an entry header is no message"
        );
    }
    assert_eq!(log.digest().kind, "dledger");
    assert_eq!(log.divided(), s.divided);
    assert_eq!(
        upgrade_support::snapshot(t.path()),
        before,
        "nothing written"
    );
}

#[test]
fn a_torn_tail_is_cut_as_dledger_cuts_it_and_a_bad_entry_inside_is_a_problem() {
    let t = tmp();
    let d = t.path().join("dledger-n0");
    let w = write_one(&d, 3000);
    let (last_index, _, last_pos, last_size) = *w.entries.last().unwrap();
    let name = format!("{:020}", last_pos / SEG * SEG);
    let path = d.join("data").join(&name);
    let mut b = std::fs::read(&path).unwrap();
    let at = (last_pos % SEG) as usize;
    // Torn: the last entry's body half written.
    for x in &mut b[at + 60..at + last_size as usize] {
        *x = 0;
    }
    std::fs::write(&path, &b).unwrap();
    let s = dledger::scan(&d).unwrap();
    assert!(s.problems.is_empty(), "{:?}", s.problems);
    assert_eq!(s.last_index(), Some(last_index - 1));
    assert_eq!(s.end, last_pos);
    assert!(
        s.notes
            .iter()
            .any(|n| n.contains("torn tail") && n.contains(&name)),
        "{:?}",
        s.notes
    );
    assert!(DLedgerLog::open(&d, None).is_ok());
    // A pos that is not the entry's place, in a full (not the last) file.
    let (idx, _, pos, _) = w.entries[700];
    let name = format!("{:020}", pos / SEG * SEG);
    let path = d.join("data").join(&name);
    let mut b = std::fs::read(&path).unwrap();
    let at = (pos % SEG) as usize;
    b[at + 24..at + 32].copy_from_slice(&(pos + 4096).to_be_bytes());
    std::fs::write(&path, &b).unwrap();
    let s = dledger::scan(&d).unwrap();
    let p = s.problems.first().expect("a problem");
    assert_eq!(p.file, format!("data/{name}"));
    assert_eq!(p.offset, Some(pos));
    assert!(p.what.contains("pos"), "{p}");
    assert_eq!(s.last_index(), Some(idx - 1));
    let err = DLedgerLog::open(&d, None)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains(&name) && err.contains("nothing was changed"),
        "{err}"
    );
}

#[test]
fn index_gaps_terms_going_down_and_bad_currterm_are_named() {
    let t = tmp();
    let d = t.path().join("dledger-n0");
    let w = write_one(&d, 1200);
    let (_, _, pos, _) = w.entries[100];
    let path = d.join("data/00000000000000000000");
    let mut b = std::fs::read(&path).unwrap();
    let at = pos as usize;
    b[at + 8..at + 16].copy_from_slice(&500u64.to_be_bytes());
    std::fs::write(&path, &b).unwrap();
    let s = dledger::scan(&d).unwrap();
    let p = s.problems.first().expect("a problem");
    assert!(p.what.contains("index 500 after index 99"), "{p}");
    assert_eq!(p.offset, Some(pos));
    std::fs::write(d.join("currterm"), "currTerm=seven\n").unwrap();
    let s = dledger::scan(&d).unwrap();
    assert!(
        s.problems
            .iter()
            .any(|p| p.file == "currterm" && p.what.contains("seven")),
        "{:?}",
        s.problems
    );
}

#[test]
fn a_served_prefix_leaves_the_tail_out() {
    let t = tmp();
    let d = t.path().join("dledger-n0");
    let w = write_one(&d, 3000);
    let log = DLedgerLog::open(&d, Some(1500)).unwrap();
    let s = log.scan();
    assert_eq!(s.last_index(), Some(1500));
    assert!(s.left_out > 0);
    let (_, _, pos, size) = w.entries[1500];
    assert_eq!(s.end, pos + u64::from(size));
    assert_eq!(s.divided, (s.end / SEG + 1) * SEG);
    let last_served = w.records.iter().filter(|r| r.3 <= 1500).last().unwrap();
    assert!(log.read(last_served.0).unwrap().is_some());
    let first_left = w.records.iter().find(|r| r.3 > 1500).unwrap();
    assert_eq!(log.read(first_left.0).unwrap(), None);
    let full = DLedgerLog::open(&d, None).unwrap();
    assert_ne!(full.digest(), log.digest());
}

fn store_cmd(args: &[&std::ffi::OsStr]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rmqraft"))
        .arg("store")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn store_inspect_and_convert_dry_run_understand_dledger_stores() {
    let t = tmp();
    let roots: Vec<_> = (0..3).map(|i| t.path().join(format!("node{i}"))).collect();
    let all = items(1800, 3, 600);
    let mut written = Vec::new();
    for (i, r) in roots.iter().enumerate() {
        let n = if i == 2 { 1700 } else { 1800 };
        written.push(write(
            &r.join(format!("dledger-n{i}")),
            SEG,
            INDEX_FILE,
            &all[..n],
            4,
            "n0",
        ));
        dledger_support::write_config(r, 3);
    }
    let before = upgrade_support::snapshot(t.path());
    let (code, out) = store_cmd(&["inspect".as_ref(), roots[0].as_os_str()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("DLedger store"), "{out}");
    assert!(
        out.contains("entries: 1800 (1797 messages, 3 no-ops), indexes 0..=1799, terms 1..=3"),
        "{out}"
    );
    assert!(out.contains("currTerm=4 voteLeader=n0"), "{out}");
    assert!(out.contains("TakeoverTopic:0"), "{out}");
    assert!(
        out.contains("config: 1 topics, 2 consumer offsets"),
        "{out}"
    );
    let (code, out) = store_cmd(&[
        "inspect".as_ref(),
        roots[1].join("dledger-n1").as_os_str(),
        "--json".as_ref(),
    ]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["kind"], "dledger");
    assert_eq!(v["lastIndex"], 1799);
    assert_eq!(v["end"], written[1].end);

    let dirs: Vec<&std::ffi::OsStr> = roots.iter().map(|r| r.as_os_str()).collect();
    let mut args = vec!["convert".as_ref(), "--dry-run".as_ref()];
    args.extend(dirs.iter().copied());
    let (code, out) = store_cmd(&args);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Raft continues from term 4"), "{out}");
    assert!(out.contains("the copies agree through index 1699"), "{out}");
    assert!(out.contains("rmqraftTakeOverDLedgerThrough=1699"), "{out}");
    assert!(out.contains("rmqraft-n2"), "{out}");
    assert!(out.contains("not touched"), "{out}");
    let (code, out) = store_cmd(&["convert".as_ref(), dirs[0]]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("only with --dry-run"), "{out}");
    // A problem inside a copy: convert says it cannot go ahead, inspect exits 1.
    let (_, _, pos, _) = written[0].entries[300];
    let p = roots[0]
        .join("dledger-n0/data")
        .join(format!("{:020}", pos / SEG * SEG));
    let mut b = std::fs::read(&p).unwrap();
    let at = (pos % SEG) as usize;
    b[at..at + 4].copy_from_slice(&9i32.to_be_bytes());
    std::fs::write(&p, &b).unwrap();
    let (code, out) = store_cmd(&args);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("problem:") && out.contains("magic 9"), "{out}");
    let (code, out) = store_cmd(&["inspect".as_ref(), roots[0].as_os_str()]);
    assert_eq!(code, 1, "{out}");
    let mut after = upgrade_support::snapshot(t.path());
    let changed = Path::new("node0/dledger-n0/data").join(format!("{:020}", pos / SEG * SEG));
    after.insert(changed.clone(), before[&changed]);
    assert_eq!(after, before, "the tools wrote nothing");
}

/// Members, each over its own DLedger store root `<dir>/node<i>` (`dledger-n<i>/`).
struct Members {
    dir: tempfile::TempDir,
    ports: Vec<u16>,
    /// rmqraftTakeOverDLedgerThrough for every member, if set.
    through: Option<u64>,
    members: Vec<Option<(Engine, Broker)>>,
}

impl Members {
    /// Member i's store is written from `logs[i]` (items, currTerm).
    fn new(logs: &[(&[dledger_support::Item], u64)]) -> Members {
        init_logging();
        let dir = tempfile::tempdir().unwrap();
        for (i, (items, term)) in logs.iter().enumerate() {
            let root = dir.path().join(format!("node{i}"));
            write(
                &root.join(format!("dledger-n{i}")),
                SEG,
                INDEX_FILE,
                items,
                *term,
                "n0",
            );
            dledger_support::write_config(&root, 3);
        }
        Members {
            dir,
            ports: free_ports(logs.len()),
            through: None,
            members: (0..logs.len()).map(|_| None).collect(),
        }
    }

    fn root(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node{i}"))
    }

    fn props(&self, i: usize) -> String {
        let through = self.through.map_or(String::new(), |t| {
            format!("rmqraftTakeOverDLedgerThrough={t}\n")
        });
        format!(
            "dLegerGroup=RaftNode00\ndLegerPeers={}\ndLegerSelfId=n{i}\nstorePathRootDir={}\n\
             enableDLegerCommitLog=true\nrmqraftTakeOverDLedger=true\n{through}\
             mappedFileSizeCommitLog=1048576\nbrokerIP1=127.0.0.1\n",
            peers_string(&self.ports),
            self.root(i).display()
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

    fn settle(&self) {
        let l = self.leader();
        let commit = self.broker(l).group().status().unwrap().commit_index;
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

    fn dledger_snapshots(&self) -> Vec<std::collections::BTreeMap<PathBuf, (u64, [u8; 32])>> {
        (0..self.members.len())
            .map(|i| upgrade_support::snapshot(&self.root(i).join(format!("dledger-n{i}"))))
            .collect()
    }
}

impl Drop for Members {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.stop(i);
        }
    }
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

/// Every old message is served by queue (same record, same queue and commitlog offsets),
/// by each key, by UNIQ_KEY and by offset msg id.
fn assert_serves_old(b: &Broker, recs: &[&MessageRecord]) {
    let mut queues: Vec<(String, i32)> =
        recs.iter().map(|r| (r.topic.clone(), r.queue_id)).collect();
    queues.sort();
    queues.dedup();
    for (t, q) in &queues {
        let want: Vec<&&MessageRecord> = recs
            .iter()
            .filter(|r| &r.topic == t && r.queue_id == *q)
            .collect();
        let got = pull_all(b, t, *q);
        assert!(got.len() >= want.len(), "{t}:{q} holds every old message");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(&g.decoded, **w, "{t}:{q} offset {}", w.queue_offset);
            assert_eq!(g.queue_offset(), w.queue_offset as u64);
            assert_eq!(g.commitlog_offset(), w.physical_offset as u64);
        }
    }
    let step = (recs.len() / 150).max(1);
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
        assert_eq!(&v.decoded, *r, "by offset msg id");
        let u = r.uniq_key().unwrap();
        let v = b.view_by_id(u).unwrap();
        assert_eq!(v.decoded.physical_offset, r.physical_offset, "by UNIQ_KEY");
    }
}

#[test]
fn three_members_take_over_three_dledger_copies_and_fail_over() {
    let all = items(3000, 3, 700);
    let mut m = Members::new(&[(&all, 9), (&all, 9), (&all, 9)]);
    let w = {
        let t = tmp();
        write(&t.path().join("x"), SEG, INDEX_FILE, &all, 9, "n0")
    };
    let recs: Vec<&MessageRecord> = w.records.iter().map(|r| &r.1).collect();
    let divided = (w.end / SEG + 1) * SEG;
    let before = m.dledger_snapshots();
    for i in 0..3 {
        m.restart(i);
    }
    m.settle();
    for i in 0..3 {
        assert!(
            m.broker(i).group().status().unwrap().term >= 9,
            "term continues"
        );
        assert!(m.root(i).join(format!("rmqraft-n{i}")).is_dir());
        assert_serves_old(m.broker(i), &recs);
        assert_eq!(
            m.broker(i)
                .consumer_offset_fetch("cg1", "TakeoverTopic", 0)
                .unwrap(),
            Some(3)
        );
    }
    let queue_max = |b: &Broker, q: i32| b.queue_offsets("TakeoverTopic", q).unwrap().1;
    let before_q: Vec<u64> = (0..3).map(|q| queue_max(m.broker(0), q)).collect();
    let mut sent = Vec::new();
    for i in 0..30 {
        let r = m.send(
            &Message::new("TakeoverTopic", format!("new {i}"))
                .with_queue(i % 3)
                .with_keys(format!("new-{i}")),
        );
        assert!(
            r.commitlog_offset >= divided,
            "new messages after the DLedger log"
        );
        sent.push(r);
    }
    for (i, r) in sent.iter().enumerate() {
        let q = i % 3;
        assert_eq!(
            r.queue_offset,
            before_q[q] + (i as u64 / 3),
            "queue offsets continue"
        );
    }
    m.settle();
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
    let r = m.send(&Message::new("TakeoverTopic", "after failover").with_queue(0));
    assert_eq!(r.queue_offset, before_q[0] + 10);
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
    assert_eq!(
        m.dledger_snapshots(),
        before,
        "the DLedger files are unchanged"
    );
}

#[test]
fn a_copy_with_a_different_tail_is_caught_and_the_agreed_prefix_served() {
    let all = items(2000, 3, 700);
    let short = &all[..1990];
    let mut m = Members::new(&[(&all, 5), (&all, 5), (short, 5)]);
    m.restart(0);
    m.restart(1);
    m.settle();
    m.restart(2);
    let w = {
        let t = tmp();
        write(&t.path().join("x"), SEG, INDEX_FILE, &all, 5, "n0")
    };
    let err = wait_for("member 2 to refuse", || {
        m.broker(2)
            .view_by_id(&w.records[0].1.offset_msg_id())
            .err()
    });
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(err.message().contains("refusing to serve"), "{err}");
    for i in 0..3 {
        m.stop(i);
    }
    // Every member serves the prefix the copies agree on: new roots for rmqraft's files.
    for i in 0..3 {
        std::fs::remove_dir_all(m.root(i).join(format!("rmqraft-n{i}"))).unwrap();
    }
    m.through = Some(1989);
    for i in 0..3 {
        m.restart(i);
    }
    m.settle();
    let served: Vec<&MessageRecord> = w
        .records
        .iter()
        .filter(|r| r.3 <= 1989)
        .map(|r| &r.1)
        .collect();
    let left: Vec<&MessageRecord> = w
        .records
        .iter()
        .filter(|r| r.3 > 1989)
        .map(|r| &r.1)
        .collect();
    assert!(!left.is_empty());
    for i in 0..3 {
        assert_serves_old(m.broker(i), &served);
        assert!(m.broker(i).view_by_id(&left[0].offset_msg_id()).is_err());
    }
    let r = m.send(&Message::new("TakeoverTopic", "after the prefix").with_queue(0));
    assert!(r.commitlog_offset >= w.end - (w.end % SEG));
}

#[test]
fn without_the_takeover_key_a_dledger_store_is_still_refused() {
    let mut m = Members::new(&[(&items(300, 2, 100), 2)]);
    let before = m.dledger_snapshots();
    let props = m.props(0).replace("rmqraftTakeOverDLedger=true\n", "");
    let engine = Engine::open("brokerClusterName=TestCluster").unwrap();
    let err = engine.open_group(&props).err().expect("refused");
    engine.close();
    assert!(err.message().contains("DLedger store"), "{err}");
    assert_eq!(m.dledger_snapshots(), before);
    m.restart(0);
    m.stop(0);
    assert_eq!(m.dledger_snapshots(), before);
}

#[test]
fn a_member_with_a_torn_tail_serves_the_agreed_prefix_with_the_others() {
    let all = items(1500, 3, 700);
    let mut m = Members::new(&[(&all, 3), (&all, 3), (&all, 3)]);
    let w = {
        let t = tmp();
        write(&t.path().join("x"), SEG, INDEX_FILE, &all, 3, "n0")
    };
    // Member 1's last entry half written, as a crash leaves it.
    let (last, _, pos, size) = *w.entries.last().unwrap();
    let p = m
        .root(1)
        .join("dledger-n1/data")
        .join(format!("{:020}", pos / SEG * SEG));
    let mut b = std::fs::read(&p).unwrap();
    let at = (pos % SEG) as usize;
    b[at + 64..at + size as usize].fill(0);
    std::fs::write(&p, &b).unwrap();
    let before = m.dledger_snapshots();
    let dirs: Vec<PathBuf> = (0..3).map(|i| m.root(i)).collect();
    let (lines, ok) = dledger::convert_dry_run(&dirs).unwrap();
    assert!(ok, "{lines:?}");
    let agreed = format!("rmqraftTakeOverDLedgerThrough={}", last - 1);
    assert!(lines.iter().any(|l| l.contains(&agreed)), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("torn tail")), "{lines:?}");
    m.through = Some(last - 1);
    for i in 0..3 {
        m.restart(i);
    }
    m.settle();
    let served: Vec<&MessageRecord> = w
        .records
        .iter()
        .filter(|r| r.3 < last)
        .map(|r| &r.1)
        .collect();
    for i in 0..3 {
        assert_serves_old(m.broker(i), &served);
    }
    let r = m.send(&Message::new("TakeoverTopic", "after the torn tail").with_queue(1));
    m.settle();
    for i in 0..3 {
        let v = wait_for_ok("the new message everywhere", || {
            m.broker(i).view_by_id(&r.offset_msg_id)
        });
        assert_eq!(v.body().as_ref(), b"after the torn tail");
    }
    for i in 0..3 {
        m.stop(i);
    }
    assert_eq!(
        m.dledger_snapshots(),
        before,
        "the DLedger files are unchanged"
    );
}

#[test]
fn the_takeover_keys_are_checked() {
    let base = "dLegerGroup=g\ndLegerPeers=n0-127.0.0.1:1\ndLegerSelfId=n0\nstorePathRootDir=/r\n";
    let c = rmqraft::config::GroupConfig::from_properties(&format!(
        "{base}rmqraftTakeOverDLedger=true\n"
    ))
    .unwrap();
    assert_eq!(c.member_dir(), Path::new("/r/rmqraft-n0"));
    assert_eq!(c.dledger_store_dir().unwrap(), Path::new("/r/dledger-n0"));
    let c = rmqraft::config::GroupConfig::from_properties(base).unwrap();
    assert_eq!(c.member_dir(), Path::new("/r/dledger-n0"));
    let e = rmqraft::config::GroupConfig::from_properties(&format!(
        "{base}rmqraftTakeOverDLedgerThrough=5\n"
    ))
    .unwrap_err();
    assert!(
        e.message().contains("without rmqraftTakeOverDLedger=true"),
        "{e}"
    );
    let e = rmqraft::config::GroupConfig::from_properties(&format!(
        "{base}rmqraftTakeOverDLedger=yes\n"
    ))
    .unwrap_err();
    assert!(e.message().contains("rmqraftTakeOverDLedger"), "{e}");
}

#[test]
fn a_0_3_1_2_layout_with_only_magic_1_and_a_checkpoint_is_read() {
    let t = tmp();
    let d = t.path().join("dledger-n0");
    // DLedger 0.3.1.2 writes only MAGIC_1 entries and keeps committedIndex in checkpoint.
    let msgs: Vec<dledger_support::Item> = items(900, 2, 10_000)
        .into_iter()
        .filter(|i| !matches!(i, dledger_support::Item::Noop { .. }))
        .collect();
    let w = write(&d, SEG, INDEX_FILE, &msgs, 1, "n2");
    std::fs::write(
        d.join("checkpoint"),
        "#Wed Dec 02 10:00:00 UTC 2026\nendIndex=898\ncommittedIndex=850\n",
    )
    .unwrap();
    let s = dledger::scan(&d).unwrap();
    assert!(s.problems.is_empty(), "{:?}", s.problems);
    assert_eq!(s.entries.len(), 899);
    assert_eq!(s.noops(), 0);
    assert!(s.entries.iter().all(|e| e.magic == 1));
    assert_eq!(s.offsets.len(), w.records.len());
    assert_eq!(s.committed_index, Some(850));
    assert!(
        s.notes.iter().any(|n| n.contains("committedIndex 850")),
        "{:?}",
        s.notes
    );
}
