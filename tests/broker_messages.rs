//! The broker's store on loopback groups: sends, pulls on every member, lookups by key
//! and by both ids, the leader closed mid-send, rebuilds from the log after a restart,
//! topic rules and bad input.

mod common;

use bytes::Bytes;
use common::{free_ports, group_props, init_logging, wait_for, DEADLINE};
use rmqraft::broker::{Broker, Message, MessageView, SendResult};
use rmqraft::{Engine, ErrorKind, Group, Role};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

const TOPIC: &str = "topic_dw_test_by_order_01";
const QUEUES: i32 = 8;

/// A group with a broker on every member, each member in its own engine.
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
        group_props("RaftNode00", &self.ports, i, self.root.path(), &self.extra)
    }

    fn member_dir(&self, i: usize) -> PathBuf {
        self.root.path().join(format!("dledger-n{i}"))
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

    fn running(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|i| self.members[*i].is_some())
            .collect()
    }

    fn group(&self, i: usize) -> &Group {
        self.broker(i).group()
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

    /// The member every running member knows as the leader.
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

    /// Waits until every running member committed and its broker applied the leader's
    /// whole log (after a restart a member's commit index trails its broker checkpoint
    /// until it hears the leader).
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
}

impl Drop for Brokers {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.stop(i);
        }
    }
}

fn key_of(n: usize) -> String {
    format!("m{n:06}")
}

/// Sends through whichever member leads, retrying while leadership moves.
fn send_retrying(b: &Brokers, m: &Message) -> SendResult {
    wait_for("a send to commit", || {
        let leader = b
            .running()
            .into_iter()
            .find(|i| b.group(*i).status().is_ok_and(|s| s.role == Role::Leader))?;
        match b.broker(leader).send(m, Duration::from_secs(10)) {
            Ok(r) => Some(r),
            Err(e) if matches!(e.kind(), ErrorKind::NotLeader | ErrorKind::Busy) => None,
            Err(e) => panic!("send failed: {e}"),
        }
    })
}

/// Pulls a whole queue from one member, checking queue order as it goes.
fn pull_all(b: &Broker, topic: &str, queue: i32) -> Vec<MessageView> {
    let (min, max) = b.queue_offsets(topic, queue).unwrap();
    assert_eq!(min, 0);
    let mut out: Vec<MessageView> = Vec::new();
    let mut offset = min;
    for _ in 0..100_000 {
        if offset >= max {
            break;
        }
        let r = b
            .pull(topic, queue, offset, 64, None, Duration::ZERO)
            .unwrap();
        assert!(r.next_offset > offset, "a pull below max makes progress");
        assert_eq!(r.max_offset, max);
        for (i, m) in r.messages.iter().enumerate() {
            assert_eq!(
                m.queue_offset(),
                (out.len() + i) as u64,
                "queue order, no gap"
            );
            assert_eq!(m.queue_id(), queue);
            assert_eq!(m.topic(), topic);
        }
        offset = r.next_offset;
        out.extend(r.messages);
    }
    assert_eq!(out.len() as u64, max);
    out
}

/// Every message of `topic` on one member, by body.
fn all_by_body(b: &Broker, topic: &str) -> HashMap<Bytes, Vec<MessageView>> {
    let mut by_body: HashMap<Bytes, Vec<MessageView>> = HashMap::new();
    for q in 0..QUEUES {
        for m in pull_all(b, topic, q) {
            by_body.entry(m.body().clone()).or_default().push(m);
        }
    }
    by_body
}

#[test]
fn ten_thousand_keyed_messages_on_every_member() {
    let b = Brokers::start(3, "");
    let leader = b.leader();
    b.broker(leader)
        .topic_update(TOPIC, QUEUES, QUEUES, 6, DEADLINE)
        .unwrap();
    const N: usize = 10_000;
    // Async sends, at most 512 in flight.
    let (tx, rx) = mpsc::channel::<(usize, rmqraft::Result<SendResult>)>();
    let mut results: Vec<Option<SendResult>> = vec![None; N];
    let mut in_flight = 0;
    let mut next = 0;
    let start = Instant::now();
    while next < N || in_flight > 0 {
        while next < N && in_flight < 512 {
            let m = Message::new(TOPIC, format!("body-{next}").into_bytes())
                .with_keys(format!("{} common", key_of(next)))
                .with_tags(if next % 2 == 0 { "TagA" } else { "TagB" });
            let tx = tx.clone();
            let n = next;
            b.broker(leader)
                .send_async(&m, Box::new(move |r| tx.send((n, r)).unwrap()))
                .unwrap();
            in_flight += 1;
            next += 1;
        }
        let (n, r) = rx.recv_timeout(DEADLINE).expect("a send completes");
        in_flight -= 1;
        results[n] = Some(r.unwrap_or_else(|e| panic!("send {n}: {e}")));
    }
    let results: Vec<SendResult> = results.into_iter().map(Option::unwrap).collect();
    log::info!("{N} sends in {:?}", start.elapsed());
    b.settle();
    for m in 0..3 {
        let broker = b.broker(m);
        let start = Instant::now();
        let by_body = all_by_body(broker, TOPIC);
        log::info!("member {m}: {N} messages pulled in {:?}", start.elapsed());
        assert_eq!(by_body.len(), N, "member {m}: every message, once");
        for (n, r) in results.iter().enumerate() {
            let found = &by_body[format!("body-{n}").as_bytes()];
            assert_eq!(found.len(), 1, "member {m}: body-{n} once");
            let v = &found[0];
            assert_eq!(v.queue_id(), r.queue_id);
            assert_eq!(v.queue_offset(), r.queue_offset);
            assert_eq!(v.commitlog_offset(), r.commitlog_offset);
            assert_eq!(v.msg_id, r.msg_id);
            assert_eq!(v.offset_msg_id, r.offset_msg_id);
        }
        // Lookups by key and by both ids.
        for n in (0..N).step_by(397) {
            let r = &results[n];
            let hits = broker.query_by_key(TOPIC, &key_of(n), 10, 0, 0).unwrap();
            assert_eq!(hits.len(), 1, "member {m}: key {}", key_of(n));
            assert_eq!(hits[0].body(), format!("body-{n}").as_bytes());
            let by_offset = broker.view_by_id(&r.offset_msg_id).unwrap();
            assert_eq!(by_offset.commitlog_offset(), r.commitlog_offset);
            let by_uniq = broker.view_by_id(&r.msg_id).unwrap();
            assert_eq!(by_uniq.commitlog_offset(), r.commitlog_offset);
        }
        let common = broker.query_by_key(TOPIC, "common", 32, 0, 0).unwrap();
        assert_eq!(common.len(), 32, "max bounds the answer");
        let none = broker.query_by_key(TOPIC, &key_of(1), 10, 1, 2).unwrap();
        assert!(none.is_empty(), "outside the time range");
        // Tag filtering: only TagA (round robin puts one parity per queue, so look at
        // every queue; a filtered pull still moves past what it skipped).
        let mut tag_a = 0;
        for q in 0..QUEUES {
            let r = broker
                .pull(TOPIC, q, 0, 32, Some("TagA || TagX"), Duration::ZERO)
                .unwrap();
            assert!(r.next_offset > 0);
            assert!(r.messages.iter().all(|v| v.tags() == Some("TagA")));
            tag_a += r.messages.len();
        }
        assert!(tag_a > 0);
        assert_eq!(
            broker
                .view_by_id("0A0000010000271100000000DEADBEEF")
                .unwrap_err()
                .kind(),
            ErrorKind::NotFound
        );
    }
}

/// What this checks, precisely: sends are pipelined (up to 64 in flight) when the
/// leader is closed, so some are in flight and their outcome is unknown (OUTCOME_UNKNOWN,
/// TIMEOUT, NOT_LEADER). Every send that returned OK is consumable exactly once, at the
/// queue and queue offset its result names, on every member (the restarted old leader
/// included). Every attempt carries its own body, so no record of any attempt appears
/// twice; unacknowledged attempts may appear once (no idempotence here: a resend is a
/// new message). Queue offsets stay contiguous across the leader change.
#[test]
fn leader_closed_mid_send_acknowledged_sends_are_consumable_once() {
    let mut b = Brokers::start(3, "");
    let first = b.leader();
    b.broker(first)
        .topic_update(TOPIC, QUEUES, QUEUES, 6, DEADLINE)
        .unwrap();
    const ACKED: usize = 3000;
    let mut acked: Vec<(Bytes, SendResult)> = Vec::new();
    let mut attempts = 0usize;
    let mut closed = false;
    let mut unknown = 0usize;
    let (tx, rx) = mpsc::channel::<(Bytes, rmqraft::Result<SendResult>)>();
    let mut in_flight = 0usize;
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.len() < ACKED {
        assert!(Instant::now() < deadline, "sends within the deadline");
        if acked.len() >= ACKED / 2 && !closed {
            b.stop(first);
            closed = true;
        }
        let leader = b
            .running()
            .into_iter()
            .find(|i| b.group(*i).status().is_ok_and(|s| s.role == Role::Leader));
        if let Some(leader) = leader {
            while in_flight < 64 {
                let body = Bytes::from(format!("attempt-{attempts}"));
                let m = Message::new(TOPIC, body.clone()).with_keys(format!("k{attempts}"));
                attempts += 1;
                let tx = tx.clone();
                let b2 = body.clone();
                match b
                    .broker(leader)
                    .send_async(&m, Box::new(move |r| tx.send((b2, r)).unwrap()))
                {
                    Ok(()) => in_flight += 1,
                    Err(_) => break,
                }
            }
        }
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok((body, r)) => {
                in_flight -= 1;
                match r {
                    Ok(r) => acked.push((body, r)),
                    Err(e) => {
                        unknown += 1;
                        log::info!("send failed ({e})");
                    }
                }
            }
            Err(_) => continue,
        }
    }
    // Let what is in flight finish.
    while in_flight > 0 {
        let (body, r) = rx.recv_timeout(DEADLINE).expect("every send completes");
        in_flight -= 1;
        if let Ok(r) = r {
            acked.push((body, r));
        }
    }
    log::info!(
        "{} acknowledged, {unknown} failed, {attempts} attempts",
        acked.len()
    );
    assert!(closed);
    b.settle();
    let check = |b: &Brokers, m: usize| {
        let by_body = all_by_body(b.broker(m), TOPIC);
        for (body, r) in &acked {
            let found = by_body.get(body).map_or(0, Vec::len);
            assert_eq!(found, 1, "member {m}: acknowledged {body:?} exactly once");
            let v = &by_body[body][0];
            assert_eq!(
                (v.queue_id(), v.queue_offset(), v.commitlog_offset()),
                (r.queue_id, r.queue_offset, r.commitlog_offset)
            );
        }
        assert!(
            by_body.values().all(|v| v.len() == 1),
            "member {m}: no record twice"
        );
        assert!(by_body.len() <= attempts);
        by_body.len()
    };
    let mut counts = Vec::new();
    for m in b.running() {
        counts.push(check(&b, m));
    }
    // The old leader comes back, drops whatever uncommitted tail it had and agrees.
    b.restart(first);
    b.settle();
    counts.push(check(&b, first));
    assert!(counts.windows(2).all(|w| w[0] == w[1]), "{counts:?}");
}

#[test]
fn restart_rebuilds_consume_queues_and_index_from_the_log() {
    let mut b = Brokers::start(3, "");
    let leader = b.leader();
    b.broker(leader)
        .topic_update(TOPIC, QUEUES, QUEUES, 6, DEADLINE)
        .unwrap();
    let mut sent = Vec::new();
    for n in 0..400 {
        let m = Message::new(TOPIC, format!("body-{n}").into_bytes()).with_keys(key_of(n));
        sent.push(send_retrying(&b, &m));
    }
    b.broker(leader)
        .consumer_offset_commit("cg", TOPIC, 3, 17, DEADLINE)
        .unwrap();
    b.settle();
    let before: Vec<Vec<i64>> = (0..QUEUES)
        .map(|q| {
            pull_all(b.broker(0), TOPIC, q)
                .iter()
                .map(|v| v.commitlog_offset() as i64)
                .collect()
        })
        .collect();
    for i in 0..3 {
        b.stop(i);
    }
    // Member 1 loses its consume queues and index; member 2 its whole broker state.
    std::fs::remove_dir_all(b.member_dir(1).join("broker/consumequeue")).unwrap();
    std::fs::remove_dir_all(b.member_dir(1).join("broker/index")).unwrap();
    std::fs::remove_dir_all(b.member_dir(2).join("broker")).unwrap();
    for i in 0..3 {
        b.restart(i);
    }
    b.settle();
    for m in 0..3 {
        let broker = b.broker(m);
        for q in 0..QUEUES {
            let offsets: Vec<i64> = pull_all(broker, TOPIC, q)
                .iter()
                .map(|v| v.commitlog_offset() as i64)
                .collect();
            assert_eq!(offsets, before[q as usize], "member {m} queue {q}");
        }
        for n in (0..400).step_by(37) {
            let hits = broker.query_by_key(TOPIC, &key_of(n), 4, 0, 0).unwrap();
            assert_eq!(hits.len(), 1, "member {m}: key {}", key_of(n));
            assert_eq!(
                broker
                    .view_by_id(&sent[n].msg_id)
                    .unwrap()
                    .commitlog_offset(),
                sent[n].commitlog_offset
            );
        }
        assert_eq!(
            broker.consumer_offset_fetch("cg", TOPIC, 3).unwrap(),
            Some(17),
            "member {m}"
        );
        assert!(broker.topic("%RETRY%cg").is_ok(), "member {m}");
    }
    // Queue offsets continue where the log left them under the new leader.
    let r = send_retrying(&b, &Message::new(TOPIC, &b"after"[..]).with_queue(0));
    assert_eq!(r.queue_offset, before[0].len() as u64);
}

#[test]
fn topic_rules_and_bad_input() {
    let b = Brokers::start(3, "maxMessageSize=1024");
    let l = b.leader();
    let f = (l + 1) % 3;
    let broker = b.broker(l);
    let t = Duration::from_secs(10);
    let err = broker
        .send(&Message::new("bad topic", &b"x"[..]), t)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.message().contains("illegal character"), "{err}");
    let err = broker
        .send(&Message::new("t".repeat(128), &b"x"[..]), t)
        .unwrap_err();
    assert!(err.message().contains("max length 127"), "{err}");
    let err = broker
        .send(&Message::new("TBW102", &b"x"[..]), t)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoPermission);
    let err = broker.send(&Message::new("  ", &b"x"[..]), t).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.message().contains("blank"), "{err}");
    let err = broker.topic_update("a/b", 1, 1, 6, t).unwrap_err();
    assert!(err.message().contains("illegal character '/'"), "{err}");
    let err = broker
        .send(&Message::new("SCHEDULE_TOPIC_XXXX", &b"x"[..]), t)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoPermission);
    // Too large and too many properties: refused before anything is stored.
    let last = b.group(l).status().unwrap().last_index;
    let err = broker
        .send(&Message::new("T1", vec![0u8; 1025]), t)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge);
    assert!(err.message().contains("maxMessageSize=1024"), "{err}");
    let err = broker
        .send(
            &Message::new("T1", &b"x"[..]).with_property("big", "v".repeat(33_000)),
            t,
        )
        .unwrap_err();
    assert!(err.message().contains("32767"), "{err}");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    // Just over the limit through many small properties, and a separator byte.
    let many = (0..3000).fold(Message::new("T1", &b"x"[..]), |m, i| {
        m.with_property(format!("p{i:04}"), "vvvvv")
    });
    let err = broker.send(&many, t).unwrap_err();
    assert!(err.message().contains("exceed 32767"), "{err}");
    let err = broker
        .send(
            &Message::new("T1", &b"x"[..]).with_property("a", "b\u{1}c"),
            t,
        )
        .unwrap_err();
    assert!(err.message().contains("separator"), "{err}");
    // TooLarge for a new topic: not even the topic was created.
    let err = broker
        .send(&Message::new("T2", vec![0u8; 1025]), t)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge);
    assert_eq!(broker.topic("T2").unwrap_err().kind(), ErrorKind::NoTopic);
    let err = broker
        .send(&Message::new("T1", Bytes::new()), t)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert_eq!(
        b.group(l).status().unwrap().last_index,
        last,
        "nothing stored"
    );
    // Auto-created with defaultTopicQueueNums (8), perm 6.
    let r = broker.send(&Message::new("T1", &b"one"[..]), t).unwrap();
    assert!(r.queue_id < 8);
    let cfg = broker.topic("T1").unwrap();
    assert_eq!(
        (cfg.read_queue_nums, cfg.write_queue_nums, cfg.perm),
        (8, 8, 6)
    );
    // Followers refuse writes, naming the leader; they read.
    let err = b
        .broker(f)
        .send(&Message::new("T1", &b"x"[..]), t)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotLeader);
    assert!(err.message().contains("the leader is"), "{err}");
    b.settle();
    assert_eq!(b.broker(f).topic("T1").unwrap(), cfg);
    // Pull past the end: OK, nothing, next offset = max. Unknown queue and topic refused.
    let (_, max) = broker.queue_offsets("T1", r.queue_id).unwrap();
    let p = broker
        .pull("T1", r.queue_id, max + 10, 8, None, Duration::ZERO)
        .unwrap();
    assert!(p.messages.is_empty());
    assert_eq!(p.next_offset, max);
    let err = broker
        .pull("T1", 8, 0, 8, None, Duration::ZERO)
        .unwrap_err();
    assert!(
        err.message().contains("queue 8 of topic T1 does not exist"),
        "{err}"
    );
    let err = broker
        .pull("NOPE", 0, 0, 8, None, Duration::ZERO)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoTopic);
    // Perm: a read-only topic takes no sends, a write-only one gives no pulls.
    broker.topic_update("RO", 2, 2, 4, t).unwrap();
    let err = broker.send(&Message::new("RO", &b"x"[..]), t).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoPermission);
    broker.topic_update("WO", 2, 2, 2, t).unwrap();
    broker
        .send(&Message::new("WO", &b"x"[..]).with_queue(1), t)
        .unwrap();
    let err = broker
        .pull("WO", 1, 0, 8, None, Duration::ZERO)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoPermission);
    let err = broker
        .send(&Message::new("WO", &b"x"[..]).with_queue(2), t)
        .unwrap_err();
    assert!(err.message().contains("not a write queue"), "{err}");
    assert_eq!(
        broker.topic_update("X", 1, 1, 9, t).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    // Consumer offsets: unknown topic or queue refused clearly; the retry topic appears.
    let err = broker
        .consumer_offset_commit("cg", "NOPE", 0, 1, t)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoTopic);
    assert!(err.message().contains("NOPE"), "{err}");
    let err = broker
        .consumer_offset_commit("cg", "T1", 99, 1, t)
        .unwrap_err();
    assert!(
        err.message()
            .contains("queue 99 of topic T1 does not exist"),
        "{err}"
    );
    assert_eq!(broker.consumer_offset_fetch("cg", "T1", 0).unwrap(), None);
    broker.consumer_offset_commit("cg", "T1", 0, 5, t).unwrap();
    broker.consumer_offset_commit("cg", "T1", 0, 6, t).unwrap();
    assert_eq!(
        broker.consumer_offset_fetch("cg", "T1", 0).unwrap(),
        Some(6)
    );
    assert!(broker.topic("%RETRY%cg").is_ok());
    broker
        .consumer_offset_commit("cg", "%RETRY%cg", 0, 0, t)
        .unwrap();
    b.settle();
    assert_eq!(
        b.broker(f).consumer_offset_fetch("cg", "T1", 0).unwrap(),
        Some(6)
    );
    // Delete, replicated.
    broker.topic_delete("RO", t).unwrap();
    b.settle();
    assert!(b
        .broker(f)
        .topic_list()
        .unwrap()
        .iter()
        .all(|c| c.name != "RO"));
    assert_eq!(
        broker.topic_delete("RO", t).unwrap_err().kind(),
        ErrorKind::NoTopic
    );
}

#[test]
fn a_long_poll_wakes_on_the_next_message_and_unknown_topics_need_auto_create() {
    let b = Brokers::start(3, "autoCreateTopicEnable=false");
    let l = b.leader();
    let f = (l + 2) % 3;
    let t = Duration::from_secs(10);
    let err = b
        .broker(l)
        .send(&Message::new("T2", &b"x"[..]), t)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoTopic);
    assert!(
        err.message().contains("autoCreateTopicEnable=false"),
        "{err}"
    );
    b.broker(l).topic_update("T2", 1, 1, 6, t).unwrap();
    b.settle();
    std::thread::scope(|s| {
        let poller = s.spawn(|| {
            let start = Instant::now();
            let r = b
                .broker(f)
                .pull("T2", 0, 0, 8, None, Duration::from_secs(60))
                .unwrap();
            (r, start.elapsed())
        });
        std::thread::sleep(Duration::from_millis(200));
        b.broker(l)
            .send(&Message::new("T2", &b"wake"[..]), t)
            .unwrap();
        let (r, took) = poller.join().unwrap();
        assert_eq!(
            r.messages.len(),
            1,
            "the follower's pull sees the new message"
        );
        assert_eq!(&r.messages[0].body()[..], b"wake");
        assert_eq!(r.next_offset, 1);
        assert!(
            took < Duration::from_secs(30),
            "woken, not timed out: {took:?}"
        );
    });
    // Without a message, the wait ends with nothing after its time.
    let start = Instant::now();
    let r = b
        .broker(f)
        .pull("T2", 0, 1, 8, None, Duration::from_millis(300))
        .unwrap();
    assert!(r.messages.is_empty());
    assert_eq!(r.next_offset, 1);
    assert!(start.elapsed() >= Duration::from_millis(290));
}

/// Pulls queue `q` of `topic` on `b` until `n` messages are there (long polls).
fn pull_until(b: &Broker, topic: &str, q: i32, n: usize) -> Vec<MessageView> {
    let mut got: Vec<MessageView> = Vec::new();
    let start = Instant::now();
    while got.len() < n {
        assert!(start.elapsed() < DEADLINE, "{n} messages in {topic}:{q}");
        let r = b
            .pull(topic, q, got.len() as u64, 32, None, Duration::from_secs(1))
            .unwrap();
        got.extend(r.messages);
    }
    got
}

#[test]
fn delayed_messages_arrive_when_due_across_a_failover() {
    let mut b = Brokers::start(3, "messageDelayLevel=300ms 1500ms");
    let l = b.leader();
    let t = Duration::from_secs(10);
    b.broker(l).topic_update("T3", 1, 1, 6, t).unwrap();
    let mut sent = Vec::new();
    for (i, level) in [1, 2, 5].into_iter().enumerate() {
        let m = Message::new("T3", format!("delayed-{i}").into_bytes())
            .with_keys(format!("d{i}"))
            .with_tags("TagD")
            .with_delay_level(level);
        sent.push((level.min(2), b.broker(l).send(&m, t).unwrap()));
    }
    let got = pull_until(b.broker(l), "T3", 0, 3);
    assert_eq!(got.len(), 3);
    for (level, r) in &sent {
        let v = got
            .iter()
            .find(|v| v.msg_id == r.msg_id)
            .expect("delivered, same id");
        let scheduled = b.broker(l).view_by_id(&r.offset_msg_id).unwrap();
        assert_eq!(scheduled.topic(), "SCHEDULE_TOPIC_XXXX");
        assert_eq!(scheduled.queue_id(), level - 1);
        let delay = if *level == 1 { 300 } else { 1500 };
        assert!(
            v.decoded.store_timestamp >= scheduled.decoded.store_timestamp + delay,
            "not before it is due"
        );
        assert_eq!(v.tags(), Some("TagD"));
        assert!(v.decoded.property("DELAY").is_none());
        assert_eq!(v.decoded.property("REAL_TOPIC"), Some("T3"));
    }
    // A delayed message acknowledged by a leader that is then closed: the next leader
    // delivers it, once.
    let r = b
        .broker(l)
        .send(&Message::new("T3", &b"across"[..]).with_delay_level(2), t)
        .unwrap();
    b.stop(l);
    let nl = b.leader();
    let got = pull_until(b.broker(nl), "T3", 0, 4);
    assert_eq!(got[3].msg_id, r.msg_id);
    b.restart(l);
    b.settle();
    // Give a wrongly repeated delivery time to show, then check every member.
    std::thread::sleep(Duration::from_millis(2000));
    b.settle();
    for m in 0..3 {
        let all = pull_all(b.broker(m), "T3", 0);
        assert_eq!(all.len(), 4, "member {m}: each delayed message once");
        let ids: std::collections::HashSet<_> = all.iter().map(|v| v.msg_id.clone()).collect();
        assert_eq!(ids.len(), 4);
        let hits = b.broker(m).query_by_key("T3", "d1", 4, 0, 0).unwrap();
        assert_eq!(hits.len(), 1, "indexed under its topic once delivered");
    }
}

#[test]
fn retries_then_dlq_after_max_reconsume_times() {
    let levels = vec!["100ms"; 18].join(" ");
    let b = Brokers::start(3, &format!("messageDelayLevel={levels}"));
    let l = b.leader();
    let broker = b.broker(l);
    let t = Duration::from_secs(10);
    broker.topic_update("T4", 1, 1, 6, t).unwrap();
    let first = broker
        .send(
            &Message::new("T4", &b"poison"[..])
                .with_keys("p1")
                .with_tags("TagP"),
            t,
        )
        .unwrap();
    let mut cur = pull_until(broker, "T4", 0, 1).remove(0);
    for round in 0..16 {
        let r = broker
            .send_back("cg4", cur.commitlog_offset(), 0, 16, t)
            .unwrap();
        assert_eq!(r.topic, "%RETRY%cg4");
        cur = pull_until(broker, "%RETRY%cg4", 0, round + 1)
            .pop()
            .unwrap();
        assert_eq!(cur.decoded.reconsume_times, round as i32 + 1);
        assert_eq!(cur.decoded.property("RETRY_TOPIC"), Some("T4"));
        assert_eq!(
            cur.decoded.property("ORIGIN_MESSAGE_ID"),
            Some(first.msg_id.as_str())
        );
        assert_eq!(cur.msg_id, first.msg_id, "the UNIQ_KEY stays");
        assert_eq!(cur.tags(), Some("TagP"));
        assert_eq!(&cur.body()[..], b"poison");
    }
    // The 16th reconsume failed too: the dead-letter queue, at once.
    let r = broker
        .send_back("cg4", cur.commitlog_offset(), 0, 16, t)
        .unwrap();
    assert_eq!(r.topic, "%DLQ%cg4");
    let dlq = pull_until(broker, "%DLQ%cg4", 0, 1);
    assert_eq!(&dlq[0].body()[..], b"poison");
    assert_eq!(dlq[0].decoded.property("RETRY_TOPIC"), Some("T4"));
    b.settle();
    let f = (l + 1) % 3;
    assert_eq!(pull_all(b.broker(f), "%DLQ%cg4", 0).len(), 1);
    assert_eq!(pull_all(b.broker(f), "%RETRY%cg4", 0).len(), 16);
    let err = broker.send_back("cg4", 12345, 0, 16, t).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[test]
fn a_resent_uniq_key_is_stored_once_across_a_failover() {
    let mut b = Brokers::start(3, "");
    let l = b.leader();
    let t = Duration::from_secs(10);
    b.broker(l).topic_update("T5", 2, 2, 6, t).unwrap();
    let m = |body: &'static [u8], id: &str| Message::new("T5", body).with_property("UNIQ_KEY", id);
    let id = "0A0000010000000000000000000000AA";
    let first = b.broker(l).send(&m(b"one", id), t).unwrap();
    assert_eq!(first.msg_id, id);
    // Resent while the first is committed: the original result, nothing stored.
    let again = b.broker(l).send(&m(b"one", id), t).unwrap();
    assert_eq!(again, first);
    // Many resends in flight at once: one record, every answer the same.
    let id2 = "0A0000010000000000000000000000BB";
    let (tx, rx) = mpsc::channel();
    for _ in 0..20 {
        let tx = tx.clone();
        b.broker(l)
            .send_async(&m(b"two", id2), Box::new(move |r| tx.send(r).unwrap()))
            .unwrap();
    }
    let answers: Vec<SendResult> = (0..20)
        .map(|_| rx.recv_timeout(DEADLINE).unwrap().unwrap())
        .collect();
    assert!(answers.windows(2).all(|w| w[0] == w[1]));
    // Another topic with the same id is another message.
    let other = b
        .broker(l)
        .send(
            &Message::new("T6", &b"one"[..]).with_property("UNIQ_KEY", id),
            t,
        )
        .unwrap();
    assert_ne!(other.commitlog_offset, first.commitlog_offset);
    // After a failover the next leader knows it too.
    b.stop(l);
    let nl = b.leader();
    let after = send_retrying(&b, &m(b"one", id));
    assert_eq!(after.commitlog_offset, first.commitlog_offset);
    assert_eq!(after.offset_msg_id, first.offset_msg_id);
    b.settle();
    let mut bodies: Vec<Bytes> = Vec::new();
    for q in 0..2 {
        bodies.extend(
            pull_all(b.broker(nl), "T5", q)
                .iter()
                .map(|v| v.body().clone()),
        );
    }
    bodies.sort();
    assert_eq!(
        bodies,
        vec![Bytes::from_static(b"one"), Bytes::from_static(b"two")]
    );
}

#[test]
fn dedup_is_off_with_a_zero_window() {
    let b = Brokers::start(1, "dedupWindowMs=0");
    let l = b.leader();
    let t = Duration::from_secs(10);
    let m = Message::new("T7", &b"x"[..])
        .with_queue(0)
        .with_property("UNIQ_KEY", "ABC");
    let a = b.broker(l).send(&m, t).unwrap();
    let c = b.broker(l).send(&m, t).unwrap();
    assert_ne!(a.commitlog_offset, c.commitlog_offset);
    assert_eq!(c.queue_offset, a.queue_offset + 1);
}
