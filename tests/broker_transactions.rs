//! Transactions through the broker's Rust API: half messages hidden from consumers,
//! commit and rollback, the leader's checks (count, immunity, discard after
//! transactionCheckMax), a new leader resuming the checks, and open halves kept across
//! a reopen.

mod common;

use common::{free_ports, group_props, init_logging, wait_for, DEADLINE};
use rmqraft::broker::record::{decode_properties, MessageRecord};
use rmqraft::broker::txn::{CHECK_MAX_TOPIC, HALF_TOPIC, OP_TOPIC};
use rmqraft::broker::{Broker, Message, MessageView, SendResult, TxnCheck, TxnEnd};
use rmqraft::{Engine, ErrorKind, Group, Role};
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

const TOPIC: &str = "TopicTxn";
const QUEUES: i32 = 4;
const PGROUP: &str = "pg_txn";
const T: Duration = Duration::from_secs(10);

struct Brokers {
    root: tempfile::TempDir,
    ports: Vec<u16>,
    extra: String,
    members: Vec<Option<(Engine, Broker)>>,
}

impl Brokers {
    fn start(n: usize, extra: &str) -> Brokers {
        init_logging();
        for attempt in 0..5 {
            let mut b = Brokers {
                root: tempfile::tempdir().unwrap(),
                ports: free_ports(n),
                extra: extra.to_string(),
                members: (0..n).map(|_| None).collect(),
            };
            let opened: Result<Vec<_>, _> = (0..n).map(|i| b.open(i)).collect();
            match opened {
                Ok(m) => {
                    b.members = m.into_iter().map(Some).collect();
                    return b;
                }
                Err(e) if attempt < 4 && e.kind() == ErrorKind::Io => continue,
                Err(e) => panic!("cannot start the group: {e}"),
            }
        }
        unreachable!()
    }

    fn props(&self, i: usize) -> String {
        group_props("TxnGroup", &self.ports, i, self.root.path(), &self.extra)
    }

    fn broker_dir(&self, i: usize) -> PathBuf {
        self.root
            .path()
            .join(format!("dledger-n{i}"))
            .join("broker")
    }

    fn open(&self, i: usize) -> rmqraft::Result<(Engine, Broker)> {
        let engine = Engine::open("brokerClusterName=TestCluster")?;
        let group = Arc::new(engine.open_group(&self.props(i))?);
        let broker = Broker::open(group, &self.props(i))?;
        Ok((engine, broker))
    }

    fn broker(&self, i: usize) -> &Broker {
        &self.members[i].as_ref().expect("member running").1
    }

    fn group(&self, i: usize) -> &Group {
        self.broker(i).group()
    }

    fn running(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|i| self.members[*i].is_some())
            .collect()
    }

    fn stop(&mut self, i: usize) {
        if let Some((engine, broker)) = self.members[i].take() {
            broker.close();
            broker.group().close();
            engine.close();
        }
    }

    fn restart(&mut self, i: usize) {
        assert!(self.members[i].is_none());
        let m = wait_for("member to reopen", || self.open(i).ok());
        self.members[i] = Some(m);
    }

    fn leader(&self) -> usize {
        wait_for("a leader known to every running member", || {
            let st: Vec<_> = self
                .running()
                .iter()
                .filter_map(|i| self.group(*i).status().ok())
                .collect();
            let leaders: Vec<_> = st.iter().filter(|s| s.role == Role::Leader).collect();
            if leaders.len() != 1 {
                return None;
            }
            let l = leaders[0];
            st.iter()
                .all(|s| s.leader_peer == l.self_peer && s.term == l.term)
                .then_some(l.self_peer as usize)
        })
    }

    /// Every running member applied the leader's whole log.
    fn settle(&self) {
        let commit = wait_for("the leader to commit its log", || {
            let s = self.group(self.leader()).status().ok()?;
            (s.commit_index == s.last_index).then_some(s.commit_index)
        });
        for i in self.running() {
            wait_for("a member's commit index", || {
                let s = self.group(i).status().ok()?;
                (s.commit_index >= commit).then_some(())
            });
            self.broker(i)
                .wait_applied(commit, DEADLINE)
                .unwrap_or_else(|e| panic!("member {i} applies {commit}: {e}"));
        }
    }

    fn create_topic(&self) {
        let l = self.leader();
        wait_for("the topic", || {
            self.broker(l)
                .topic_update(TOPIC, QUEUES, QUEUES, 6, T)
                .ok()
        });
    }
}

impl Drop for Brokers {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.stop(i);
        }
    }
}

fn half(n: usize) -> Message {
    Message::new(TOPIC, format!("txn-{n}").into_bytes())
        .with_tags("TagT")
        .with_keys(format!("k{n}"))
        .transactional(PGROUP)
}

/// Every message of the real topic on one member.
fn committed(b: &Broker) -> Vec<MessageView> {
    let mut out = Vec::new();
    for q in 0..QUEUES {
        let (_, max) = b.queue_offsets(TOPIC, q).unwrap();
        let r = b.pull(TOPIC, q, 0, 1024, None, Duration::ZERO).unwrap();
        assert_eq!(r.messages.len() as u64, max, "{TOPIC}:{q} reads whole");
        out.extend(r.messages);
    }
    out.sort_by_key(|m| m.commitlog_offset());
    out
}

fn bodies(v: &[MessageView]) -> Vec<String> {
    let mut b: Vec<String> = v
        .iter()
        .map(|m| String::from_utf8_lossy(m.body()).into_owned())
        .collect();
    b.sort();
    b
}

fn prop(m: &MessageView, name: &str) -> Option<String> {
    m.properties()
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn open_ids(b: &Broker) -> Vec<String> {
    let mut v: Vec<String> = b
        .open_transactions()
        .unwrap()
        .into_iter()
        .map(|t| t.msg_id)
        .collect();
    v.sort();
    v
}

fn check_channel(b: &Broker) -> mpsc::Receiver<TxnCheck> {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    b.set_transaction_check_listener(Some(Arc::new(move |c: TxnCheck| {
        let _ = tx.lock().unwrap().send(c);
    })));
    rx
}

#[test]
fn commit_and_rollback() {
    let b = Brokers::start(3, "");
    b.create_topic();
    let l = b.leader();
    let sent: Vec<SendResult> = (0..10)
        .map(|n| b.broker(l).send(&half(n), T).unwrap())
        .collect();
    for r in &sent {
        assert_eq!(r.topic, TOPIC, "the result names the real topic");
        assert!((0..QUEUES).contains(&r.queue_id));
    }
    b.settle();
    for i in b.running() {
        assert!(
            committed(b.broker(i)).is_empty(),
            "member {i}: halves are hidden"
        );
        assert_eq!(b.broker(i).queue_offsets(HALF_TOPIC, 0).unwrap(), (0, 10));
        assert_eq!(open_ids(b.broker(i)).len(), 10, "member {i}");
    }
    // Half records: REAL_TOPIC / REAL_QID, transaction bits cleared.
    let h = b
        .broker(l)
        .view_at(sent[0].commitlog_offset)
        .unwrap()
        .unwrap();
    assert_eq!(h.topic(), HALF_TOPIC);
    assert_eq!(h.queue_id(), 0);
    assert_eq!(prop(&h, "REAL_TOPIC").as_deref(), Some(TOPIC));
    assert_eq!(prop(&h, "REAL_QID"), Some(sent[0].queue_id.to_string()));
    assert_eq!(h.decoded.sys_flag & 0xC, 0);

    // A wrong producer group is refused and changes nothing.
    let e = b
        .broker(l)
        .end_transaction("other", sent[0].commitlog_offset, "", TxnEnd::Commit, T)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");

    let mut results = Vec::new();
    for (n, r) in sent.iter().enumerate() {
        let end = if n % 2 == 0 {
            TxnEnd::Commit
        } else {
            TxnEnd::Rollback
        };
        let out = b
            .broker(l)
            .end_transaction(PGROUP, r.commitlog_offset, &r.msg_id, end, T)
            .unwrap();
        assert_eq!(out.is_some(), end == TxnEnd::Commit);
        results.push(out);
    }
    // Ended twice: not open any more.
    let e = b
        .broker(l)
        .end_transaction(PGROUP, sent[0].commitlog_offset, "", TxnEnd::Commit, T)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    b.settle();
    let want: Vec<String> = (0..10).step_by(2).map(|n| format!("txn-{n}")).collect();
    for i in b.running() {
        let got = committed(b.broker(i));
        assert_eq!(bodies(&got), want, "member {i}: exactly the committed ones");
        assert!(open_ids(b.broker(i)).is_empty(), "member {i}");
        assert_eq!(b.broker(i).queue_offsets(OP_TOPIC, 0).unwrap(), (0, 10));
    }
    for (n, out) in results.iter().enumerate() {
        let Some(c) = out else { continue };
        let m = b.broker(l).view_at(c.commitlog_offset).unwrap().unwrap();
        assert_eq!(m.topic(), TOPIC);
        assert_eq!(m.queue_id(), sent[n].queue_id, "the queue the half named");
        assert_eq!(m.msg_id, sent[n].msg_id, "the UNIQ_KEY stays");
        assert_eq!(m.decoded.sys_flag & 0xC, 0x8, "TRANSACTION_COMMIT");
        assert_eq!(
            m.decoded.prepared_transaction_offset as u64,
            sent[n].commitlog_offset
        );
        assert_eq!(prop(&m, "REAL_TOPIC"), None);
        assert_eq!(prop(&m, "REAL_QID"), None);
        assert_eq!(prop(&m, "TRAN_MSG").as_deref(), Some("true"));
        assert_eq!(prop(&m, "PGROUP").as_deref(), Some(PGROUP));
        assert_eq!(m.tags(), Some("TagT"));
        assert_eq!(m.keys(), Some(format!("k{n}").as_str()));
        // Found by key and by id.
        let by_key = b
            .broker(l)
            .query_by_key(TOPIC, &format!("k{n}"), 8, 0, 0)
            .unwrap();
        assert_eq!(by_key.len(), 1);
        assert_eq!(b.broker(l).view_by_id(&c.msg_id).unwrap().topic(), TOPIC);
        // The pull record is the message alone (its entry also holds the op record).
        let (rec, len) = MessageRecord::decode(&m.record).unwrap();
        assert_eq!(len, m.record.len());
        assert_eq!(rec.topic, TOPIC);
    }
    // An op record per ended half, tags d, body = the half's queue offset.
    let ops = b
        .broker(l)
        .pull(OP_TOPIC, 0, 0, 64, None, Duration::ZERO)
        .unwrap();
    let rolled: Vec<&SendResult> = sent.iter().skip(1).step_by(2).collect();
    assert!(!ops.messages.is_empty());
    for m in &ops.messages {
        assert_eq!(m.tags(), Some("d"));
        let qo: u64 = String::from_utf8_lossy(m.body()).parse().unwrap();
        assert!(qo < 10);
    }
    assert!(rolled.len() == 5);
}

#[test]
fn checks_then_commit_and_immunity() {
    let b = Brokers::start(
        1,
        "transactionTimeOut=0\ntransactionCheckInterval=150\ntransactionCheckMax=50",
    );
    b.create_topic();
    let l = b.leader();
    let rx = check_channel(b.broker(l));
    let immune = Message::new(TOPIC, &b"immune"[..])
        .with_property("CHECK_IMMUNITY_TIME_IN_SECONDS", "3600")
        .transactional(PGROUP);
    let ri = b.broker(l).send(&immune, T).unwrap();
    let r = b.broker(l).send(&half(1), T).unwrap();
    let mut checks = Vec::new();
    for _ in 0..3 {
        let c = rx
            .recv_timeout(DEADLINE)
            .expect("a check within the deadline");
        assert_eq!(
            c.msg_id, r.msg_id,
            "only the half past its timeout is checked"
        );
        assert_ne!(c.msg_id, ri.msg_id);
        checks.push(c);
    }
    let c = checks.last().unwrap();
    assert_eq!(c.producer_group, PGROUP);
    assert_eq!(c.transaction_id, r.msg_id);
    assert_ne!(
        c.commit_log_offset, r.commitlog_offset,
        "stored again per check"
    );
    assert_eq!(
        prop(&c.half, "TRANSACTION_CHECK_TIMES").as_deref(),
        Some("3")
    );
    let first = &checks[0];
    assert_eq!(
        prop(&first.half, "TRANSACTION_CHECK_TIMES").as_deref(),
        Some("1")
    );
    // The check body: the half as a wire record, under its real topic and queue.
    let (wire, _) = MessageRecord::decode(&c.wire_body().unwrap()).unwrap();
    assert_eq!(wire.topic, TOPIC);
    assert_eq!(wire.queue_id, r.queue_id);
    assert_eq!(wire.body.as_ref(), b"txn-1");
    let props = decode_properties(&wire.properties);
    assert!(props.iter().any(|(k, v)| k == "UNIQ_KEY" && *v == r.msg_id));
    // The producer answers the check: commit by the checked copy's offset. A stale
    // offset with the id finds the current copy as well.
    let out = wait_for("the commit of a checked half", || {
        match b
            .broker(l)
            .end_transaction(PGROUP, r.commitlog_offset, &r.msg_id, TxnEnd::Commit, T)
        {
            Ok(o) => Some(o),
            Err(e) if e.kind() == ErrorKind::Busy => None,
            Err(e) => panic!("commit: {e}"),
        }
    })
    .expect("a commit result");
    assert_eq!(out.topic, TOPIC);
    assert_eq!(bodies(&committed(b.broker(l))), vec!["txn-1".to_string()]);
    assert_eq!(open_ids(b.broker(l)), vec![ri.msg_id.clone()]);
    // No check after the commit; the immune half is still open and unchecked.
    while let Ok(c) = rx.recv_timeout(Duration::from_millis(600)) {
        assert_eq!(
            c.msg_id, r.msg_id,
            "a check already under way at the commit"
        );
    }
    let open = b.broker(l).open_transactions().unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].check_times, 0, "the immune half was never checked");
}

#[test]
fn check_max_discards() {
    let b = Brokers::start(
        1,
        "transactionTimeOut=0\ntransactionCheckInterval=100\ntransactionCheckMax=2",
    );
    b.create_topic();
    let l = b.leader();
    let rx = check_channel(b.broker(l));
    let r = b.broker(l).send(&half(7), T).unwrap();
    b.broker(l).wait_applied(r.index, T).unwrap();
    assert_eq!(open_ids(b.broker(l)), vec![r.msg_id.clone()]);
    wait_for("the half to be discarded", || {
        open_ids(b.broker(l)).is_empty().then_some(())
    });
    let checks: Vec<TxnCheck> = rx.try_iter().collect();
    assert_eq!(
        checks.len(),
        2,
        "transactionCheckMax checks, then the discard"
    );
    assert!(checks.iter().all(|c| c.msg_id == r.msg_id));
    assert!(committed(b.broker(l)).is_empty(), "never committed");
    let (min, max) = b.broker(l).queue_offsets(CHECK_MAX_TOPIC, 0).unwrap();
    assert_eq!((min, max), (0, 1));
    let m = b
        .broker(l)
        .pull(CHECK_MAX_TOPIC, 0, 0, 8, None, Duration::ZERO)
        .unwrap();
    assert_eq!(m.messages.len(), 1);
    assert_eq!(m.messages[0].body().as_ref(), b"txn-7");
    assert_eq!(prop(&m.messages[0], "REAL_TOPIC").as_deref(), Some(TOPIC));
    assert_eq!(m.messages[0].msg_id, r.msg_id);
    // Ending it now: not open.
    let e = b
        .broker(l)
        .end_transaction(PGROUP, r.commitlog_offset, &r.msg_id, TxnEnd::Commit, T)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

#[test]
fn new_leader_resumes_checks() {
    let mut b = Brokers::start(
        3,
        "transactionTimeOut=0\ntransactionCheckInterval=300\ntransactionCheckMax=1000",
    );
    b.create_topic();
    let l = b.leader();
    let r = b.broker(l).send(&half(3), T).unwrap();
    b.settle();
    // Only the followers listen: a check reaching a listener comes from a new leader.
    let (tx, rx) = mpsc::channel::<(usize, TxnCheck)>();
    for i in b.running().into_iter().filter(|i| *i != l) {
        let tx = Mutex::new(tx.clone());
        b.broker(i)
            .set_transaction_check_listener(Some(Arc::new(move |c: TxnCheck| {
                let _ = tx.lock().unwrap().send((i, c));
            })));
    }
    for i in b.running() {
        assert_eq!(open_ids(b.broker(i)), vec![r.msg_id.clone()], "member {i}");
    }
    b.stop(l);
    let (who, c) = rx
        .recv_timeout(DEADLINE)
        .expect("a check from the new leader");
    assert_ne!(who, l);
    assert_eq!(c.msg_id, r.msg_id);
    let n = b.leader();
    assert_eq!(n, who);
    let out = wait_for("the commit on the new leader", || {
        match b
            .broker(n)
            .end_transaction(PGROUP, c.commit_log_offset, &c.msg_id, TxnEnd::Commit, T)
        {
            Ok(o) => Some(o),
            Err(e) if e.kind() == ErrorKind::Busy => None,
            Err(e) => panic!("commit on the new leader: {e}"),
        }
    });
    assert!(out.is_some());
    b.restart(l);
    b.settle();
    for i in b.running() {
        assert_eq!(
            bodies(&committed(b.broker(i))),
            vec!["txn-3".to_string()],
            "member {i}"
        );
        assert!(open_ids(b.broker(i)).is_empty(), "member {i}");
    }
}

#[test]
fn reopen_keeps_open_halves() {
    let mut b = Brokers::start(3, "");
    b.create_topic();
    let l = b.leader();
    let sent: Vec<SendResult> = (0..3)
        .map(|n| b.broker(l).send(&half(n), T).unwrap())
        .collect();
    b.broker(l)
        .end_transaction(PGROUP, sent[0].commitlog_offset, "", TxnEnd::Rollback, T)
        .unwrap();
    b.settle();
    let before: Vec<_> = b
        .running()
        .iter()
        .map(|i| b.broker(*i).open_transactions().unwrap())
        .collect();
    assert_eq!(before[0].len(), 2);
    for i in 0..3 {
        b.stop(i);
    }
    for i in 0..3 {
        let cp = std::fs::read(b.broker_dir(i).join("checkpoint")).unwrap();
        assert_eq!(
            &cp[4..6],
            &3u16.to_le_bytes(),
            "member {i}: checkpoint version 3"
        );
    }
    for i in 0..3 {
        b.restart(i);
    }
    for (i, want) in before.iter().enumerate() {
        assert_eq!(
            &b.broker(i).open_transactions().unwrap(),
            want,
            "member {i} after reopen"
        );
    }
    let l = b.leader();
    wait_for("the commit after the reopen", || {
        match b
            .broker(l)
            .end_transaction(PGROUP, sent[2].commitlog_offset, "", TxnEnd::Commit, T)
        {
            Ok(o) => o,
            Err(e) if matches!(e.kind(), ErrorKind::NotLeader | ErrorKind::Busy) => None,
            Err(e) => panic!("commit after the reopen: {e}"),
        }
    });
    b.settle();
    for i in b.running() {
        assert_eq!(
            bodies(&committed(b.broker(i))),
            vec!["txn-2".to_string()],
            "member {i}"
        );
        assert_eq!(
            open_ids(b.broker(i)),
            vec![sent[1].msg_id.clone()],
            "member {i}"
        );
    }
    // Losing the checkpoint rebuilds the open halves from the log.
    b.stop(1);
    std::fs::remove_dir_all(b.broker_dir(1)).unwrap();
    b.restart(1);
    b.settle();
    assert_eq!(open_ids(b.broker(1)), vec![sent[1].msg_id.clone()]);
    assert_eq!(bodies(&committed(b.broker(1))), vec!["txn-2".to_string()]);
}
