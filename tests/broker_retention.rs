//! Retention reaching the message layer: small segments, many keyed messages, retention
//! forced; then min offsets, pulls below min, lookups of deleted and kept messages,
//! the hold at the broker's checkpoint, and restarts that rebuild from what remains.

mod common;

use common::{free_ports, group_props, init_logging, wait_for, DEADLINE};
use rmqraft::broker::{Broker, Message, SendResult};
use rmqraft::{Engine, ErrorKind, Role};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

const TOPIC: &str = "TopicRetention";
const QUEUES: i32 = 4;
const MESSAGES: usize = 1500;
/// 64 KiB segments, index files of 256 keys over 64 slots (collisions on purpose).
const EXTRA: &str = "mappedFileSizeCommitLog=65536\nmaxIndexNum=256\nmaxHashSlotNum=64\n\
                     rmqraftPrewriteSegments=false";

struct Brokers {
    root: tempfile::TempDir,
    ports: Vec<u16>,
    members: Vec<Option<(Engine, Broker)>>,
}

impl Brokers {
    fn start(n: usize) -> Brokers {
        init_logging();
        for attempt in 0..5 {
            let mut b = Brokers {
                root: tempfile::tempdir().unwrap(),
                ports: free_ports(n),
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
        group_props("RaftNode00", &self.ports, i, self.root.path(), EXTRA)
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
        wait_for("a leader known to every member", || {
            let st: Vec<_> = (0..self.members.len())
                .filter_map(|i| self.members[i].as_ref()?.1.group().status().ok())
                .collect();
            let leaders: Vec<_> = st.iter().filter(|s| s.role == Role::Leader).collect();
            if leaders.len() != 1 || st.len() != self.members.len() {
                return None;
            }
            let l = leaders[0];
            st.iter()
                .all(|s| s.leader_peer == l.self_peer && s.term == l.term)
                .then_some(l.self_peer as usize)
        })
    }

    /// Every member's group and broker reached the leader's last entry (after a restart
    /// a member's commit index trails its broker checkpoint until it hears the leader).
    fn settle(&self) {
        let last = wait_for("the leader to commit its log", || {
            let s = self.broker(self.leader()).group().status().ok()?;
            (s.commit_index == s.last_index).then_some(s.last_index)
        });
        for i in 0..self.members.len() {
            wait_for("a member's commit index", || {
                let s = self.broker(i).group().status().ok()?;
                (s.commit_index >= last).then_some(())
            });
            self.broker(i).wait_applied(last, DEADLINE).unwrap();
        }
    }

    fn send(&self, m: &Message) -> SendResult {
        wait_for("a send to commit", || {
            match self.broker(self.leader()).send(m, Duration::from_secs(10)) {
                Ok(r) => Some(r),
                Err(e) if matches!(e.kind(), ErrorKind::NotLeader | ErrorKind::Busy) => None,
                Err(e) => panic!("send failed: {e}"),
            }
        })
    }
}

impl Drop for Brokers {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.stop(i);
        }
    }
}

/// The log index the broker checkpoint on disk covers (offset 6, little-endian).
fn checkpointed(dir: &std::path::Path) -> u64 {
    let b = std::fs::read(dir.join("checkpoint")).unwrap_or_default();
    b.get(6..14)
        .map_or(0, |s| u64::from_le_bytes(s.try_into().unwrap()))
}

fn key_of(n: usize) -> String {
    format!("k{n:05}")
}

/// Every message from min to max of each queue, checking order; returns (queue, queue
/// offset, commitlog offset) in pull order.
fn pull_everything(b: &Broker) -> Vec<(i32, u64, u64)> {
    let mut out = Vec::new();
    for q in 0..QUEUES {
        let (min, max) = b.queue_offsets(TOPIC, q).unwrap();
        let mut offset = min;
        for _ in 0..10_000 {
            if offset >= max {
                break;
            }
            let r = b.pull(TOPIC, q, offset, 64, None, Duration::ZERO).unwrap();
            assert_eq!(r.min_offset, min);
            assert!(
                r.next_offset > offset,
                "a pull inside the queue makes progress"
            );
            for (i, m) in r.messages.iter().enumerate() {
                assert_eq!(m.queue_offset(), offset + i as u64, "queue {q}: no gap");
                out.push((q, m.queue_offset(), m.commitlog_offset()));
            }
            offset = r.next_offset;
        }
        assert_eq!(offset, max, "queue {q} read to its end");
    }
    out
}

#[test]
fn retention_moves_min_offsets_forgets_deleted_messages_and_survives_restarts() {
    let mut b = Brokers::start(3);
    let l = b.leader();
    b.broker(l)
        .topic_update(TOPIC, QUEUES, QUEUES, 6, DEADLINE)
        .unwrap();
    let body = vec![b'x'; 400];
    let mut sent = Vec::new();
    for n in 0..MESSAGES {
        let m = Message::new(TOPIC, body.clone())
            .with_keys(format!("{} shared", key_of(n)))
            .with_queue((n % QUEUES as usize) as i32);
        sent.push(b.send(&m));
    }
    b.settle();

    // Retention right away deletes nothing the broker checkpoint does not cover.
    for i in 0..3 {
        let g = b.broker(i).group();
        g.apply_retention_now(0).unwrap();
        let first = g.status().unwrap().first_index;
        let covered = checkpointed(&b.broker_dir(i));
        assert!(
            first <= covered + 1,
            "member {i}: retention kept from {first}, the broker checkpoint covers {covered}"
        );
    }
    // Once checkpoints cover the log, retention deletes on every member.
    let last = b.broker(l).group().status().unwrap().commit_index;
    for i in 0..3 {
        wait_for("a checkpoint and retention", || {
            let g = b.broker(i).group();
            g.apply_retention_now(0).ok()?;
            (g.status().ok()?.first_index > last / 2).then_some(())
        });
    }
    // On every member, min offsets move to the first message still stored.
    let mut first_kept = [0usize; 3];
    for (i, kept) in first_kept.iter_mut().enumerate() {
        let broker = b.broker(i);
        // Everything below the first retained entry's position is gone.
        let first = broker.group().status().unwrap().first_index;
        let first_pos = broker.group().read(first).unwrap().1.pos;
        for q in 0..QUEUES {
            let gone = sent
                .iter()
                .filter(|r| r.queue_id == q && r.commitlog_offset < first_pos)
                .count() as u64;
            assert!(gone > 0, "member {i} queue {q}: retention reached it");
            wait_for("the min offset to follow retention", || {
                (broker.queue_offsets(TOPIC, q).ok()?.0 == gone).then_some(())
            });
        }
        let pulled = pull_everything(broker);
        assert!(pulled.iter().all(|p| p.2 >= first_pos));
        // Exactly the messages at or after the first kept position are there.
        let expect: Vec<&SendResult> = sent
            .iter()
            .filter(|r| r.commitlog_offset >= first_pos)
            .collect();
        assert_eq!(pulled.len(), expect.len(), "member {i}");
        assert!(
            expect.len() < MESSAGES / 2,
            "member {i}: retention removed most"
        );
        *kept = MESSAGES - expect.len();
        for q in 0..QUEUES {
            let (min, max) = broker.queue_offsets(TOPIC, q).unwrap();
            let in_q = sent.iter().filter(|r| r.queue_id == q).count() as u64;
            assert_eq!(max, in_q, "member {i} queue {q}: max unchanged");
            let gone = sent
                .iter()
                .filter(|r| r.queue_id == q && r.commitlog_offset < first_pos)
                .count() as u64;
            assert_eq!(min, gone, "member {i} queue {q}: min = first kept");
            // A pull below min: OK, nothing, says where the queue starts.
            let p = broker.pull(TOPIC, q, 0, 8, None, Duration::ZERO).unwrap();
            assert!(p.messages.is_empty());
            assert_eq!((p.next_offset, p.min_offset, p.max_offset), (min, min, max));
        }
    }
    let kept_from = *first_kept.iter().max().unwrap();
    for (i, &gone) in first_kept.iter().enumerate() {
        let broker = b.broker(i);
        // Deleted messages are not found by key, UNIQ_KEY or offset id.
        for n in (0..gone).step_by(97) {
            assert!(
                broker
                    .query_by_key(TOPIC, &key_of(n), 8, 0, 0)
                    .unwrap()
                    .is_empty(),
                "member {i}: deleted {}",
                key_of(n)
            );
            let e = broker.view_by_id(&sent[n].msg_id).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::NotFound);
            let e = broker.view_by_id(&sent[n].offset_msg_id).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::NotFound);
        }
        // Kept ones are, through index files that rolled over and colliding slots.
        for n in (kept_from..MESSAGES).step_by(41) {
            let hits = broker.query_by_key(TOPIC, &key_of(n), 8, 0, 0).unwrap();
            assert_eq!(hits.len(), 1, "member {i}: {}", key_of(n));
            assert_eq!(hits[0].commitlog_offset(), sent[n].commitlog_offset);
            let v = broker.view_by_id(&sent[n].msg_id).unwrap();
            assert_eq!(v.commitlog_offset(), sent[n].commitlog_offset);
        }
        let shared = broker.query_by_key(TOPIC, "shared", 10_000, 0, 0).unwrap();
        assert_eq!(
            shared.len(),
            MESSAGES - gone,
            "member {i}: newest first, all kept"
        );
        assert!(shared
            .windows(2)
            .all(|w| w[0].commitlog_offset() > w[1].commitlog_offset()));
        // Index files below the first kept message went with it.
        let files = std::fs::read_dir(b.broker_dir(i).join("index"))
            .unwrap()
            .count();
        let all_keys = MESSAGES * 3;
        assert!(
            files < all_keys.div_ceil(256),
            "member {i}: {files} index files left of {}",
            all_keys.div_ceil(256)
        );
    }

    // Restart every member: the checkpoint reopens the queues and index as they were.
    let before: Vec<Vec<(i32, u64, u64)>> = (0..3).map(|i| pull_everything(b.broker(i))).collect();
    let index_files = |dir: PathBuf| {
        let mut names: Vec<_> = std::fs::read_dir(dir.join("index"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    let mins: Vec<Vec<u64>> = (0..3)
        .map(|i| {
            (0..QUEUES)
                .map(|q| b.broker(i).queue_offsets(TOPIC, q).unwrap().0)
                .collect()
        })
        .collect();
    for i in 0..3 {
        b.stop(i);
    }
    let index_before = index_files(b.broker_dir(0));
    // Member 1 also loses its consume queues and index: rebuilt from what the log keeps.
    std::fs::remove_dir_all(b.broker_dir(1).join("consumequeue")).unwrap();
    std::fs::remove_dir_all(b.broker_dir(1).join("index")).unwrap();
    for i in 0..3 {
        b.restart(i);
    }
    // The checkpoint names the moved min offsets and the index files left: member 0
    // reopens them as they were, without a rebuild.
    for q in 0..QUEUES {
        assert_eq!(
            b.broker(0).queue_offsets(TOPIC, q).unwrap().0,
            mins[0][q as usize]
        );
    }
    b.settle();
    assert_eq!(
        index_files(b.broker_dir(0)),
        index_before,
        "member 0 reopened its index files"
    );
    for i in 0..3 {
        let broker = b.broker(i);
        assert_eq!(
            pull_everything(broker),
            before[i],
            "member {i} after restart"
        );
        for q in 0..QUEUES {
            let (min, _) = broker.queue_offsets(TOPIC, q).unwrap();
            let p = broker.pull(TOPIC, q, 0, 8, None, Duration::ZERO).unwrap();
            assert_eq!(p.next_offset, min, "member {i} queue {q}");
        }
        for n in (kept_from..MESSAGES).step_by(53) {
            let hits = broker.query_by_key(TOPIC, &key_of(n), 8, 0, 0).unwrap();
            assert_eq!(hits.len(), 1, "member {i} after restart: {}", key_of(n));
        }
        for n in (0..first_kept[i]).step_by(101) {
            assert!(broker
                .query_by_key(TOPIC, &key_of(n), 8, 0, 0)
                .unwrap()
                .is_empty());
        }
    }
    // Queue offsets continue after the kept messages.
    let r = b.send(&Message::new(TOPIC, &b"after"[..]).with_queue(1));
    let in_q1 = sent.iter().filter(|s| s.queue_id == 1).count() as u64;
    assert_eq!(r.queue_offset, in_q1);
}

/// A version 1 checkpoint (from before the index files): its tables are kept, its
/// consume queues and index rebuilt from the log.
#[test]
fn a_version_1_checkpoint_keeps_its_tables_and_rebuilds_the_rest() {
    let mut b = Brokers::start(3);
    let l = b.leader();
    b.broker(l).topic_update(TOPIC, 2, 2, 6, DEADLINE).unwrap();
    let sent: Vec<SendResult> = (0..20)
        .map(|n| {
            b.send(
                &Message::new(TOPIC, format!("v1-{n}").into_bytes())
                    .with_keys(key_of(n))
                    .with_queue((n % 2) as i32),
            )
        })
        .collect();
    b.broker(l)
        .consumer_offset_commit("cg", TOPIC, 1, 7, DEADLINE)
        .unwrap();
    b.settle();
    let f = (l + 1) % 3;
    let applied = b.broker(f).applied_index().unwrap();
    b.stop(f);
    // Written as the former code did: u64 index file length, queues without a min.
    let put_str = |v: &mut Vec<u8>, s: &str| {
        v.extend_from_slice(&(s.len() as u16).to_le_bytes());
        v.extend_from_slice(s.as_bytes());
    };
    let mut c = Vec::new();
    c.extend_from_slice(&0x314B_5152u32.to_le_bytes());
    c.extend_from_slice(&1u16.to_le_bytes());
    c.extend_from_slice(&applied.to_le_bytes());
    c.extend_from_slice(&0u64.to_le_bytes());
    c.extend_from_slice(&1u32.to_le_bytes());
    put_str(&mut c, TOPIC);
    for v in [2i32, 2, 6] {
        c.extend_from_slice(&v.to_le_bytes());
    }
    c.extend_from_slice(&1u32.to_le_bytes());
    put_str(&mut c, "cg");
    put_str(&mut c, TOPIC);
    c.extend_from_slice(&1i32.to_le_bytes());
    c.extend_from_slice(&7u64.to_le_bytes());
    c.extend_from_slice(&2u32.to_le_bytes());
    for q in 0..2i32 {
        put_str(&mut c, TOPIC);
        c.extend_from_slice(&q.to_le_bytes());
        c.extend_from_slice(&10u64.to_le_bytes());
    }
    c.extend_from_slice(&0u32.to_le_bytes());
    let crc = crc32c::crc32c(&c);
    c.extend_from_slice(&crc.to_le_bytes());
    let dir = b.broker_dir(f);
    std::fs::write(dir.join("checkpoint"), &c).unwrap();
    std::fs::remove_dir_all(dir.join("index")).unwrap();
    std::fs::create_dir_all(dir.join("index")).unwrap();
    std::fs::write(dir.join("index/keys"), b"old format").unwrap();
    b.restart(f);
    b.settle();
    let broker = b.broker(f);
    assert_eq!(broker.topic(TOPIC).unwrap().write_queue_nums, 2);
    assert_eq!(
        broker.consumer_offset_fetch("cg", TOPIC, 1).unwrap(),
        Some(7)
    );
    let pulled = pull_everything_of(broker, 2);
    assert_eq!(pulled.len(), 20);
    for n in [0usize, 7, 19] {
        let hits = broker.query_by_key(TOPIC, &key_of(n), 4, 0, 0).unwrap();
        assert_eq!(hits.len(), 1, "{}", key_of(n));
        assert_eq!(hits[0].commitlog_offset(), sent[n].commitlog_offset);
    }
    assert!(
        !dir.join("index/keys").exists(),
        "the old index file is gone"
    );
    // The next checkpoint is version 3.
    wait_for("a version 3 checkpoint", || {
        let c = std::fs::read(dir.join("checkpoint")).ok()?;
        (c.get(4..6)? == 3u16.to_le_bytes()).then_some(())
    });
}

fn pull_everything_of(b: &Broker, queues: i32) -> Vec<u64> {
    let mut out = Vec::new();
    for q in 0..queues {
        let (min, max) = b.queue_offsets(TOPIC, q).unwrap();
        let r = b.pull(TOPIC, q, min, 64, None, Duration::ZERO).unwrap();
        assert_eq!(r.next_offset, max);
        out.extend(r.messages.iter().map(|m| m.commitlog_offset()));
    }
    out
}
