//! rocketmq-client-rust (crates.io, written by others) against rmqraft's name server and
//! brokers, through the name server only, as a RocketMQ user runs it.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmqraft_interop::{client_options, group_name, Client, Cluster, CLIENT_MIN_INTERVAL_MS};
use rocketmq_client_rust::{
    ClientResult, ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, DefaultLitePullConsumer,
    DefaultMQProducer, DefaultMQPushConsumer, MQPushConsumer, MessageListenerConcurrently,
};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message;

/// Every test's overall bound.
const TEST_LIMIT: Duration = Duration::from_secs(240);

/// Collects the KEYS of every message a push consumer is given.
#[derive(Clone, Default)]
struct Collect {
    keys: Arc<Mutex<Vec<String>>>,
}

impl MessageListenerConcurrently for Collect {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _context: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        let mut keys = self.keys.lock().unwrap();
        for m in msgs {
            keys.push(key_of(m));
        }
        Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
    }
}

impl Collect {
    fn distinct(&self) -> HashSet<String> {
        self.keys.lock().unwrap().iter().cloned().collect()
    }
}

fn key_of(m: &MessageExt) -> String {
    m.message_inner()
        .keys()
        .and_then(|k| k.into_iter().next())
        .unwrap_or_default()
}

fn message(topic: &str, key: &str) -> Message {
    Message::builder()
        .topic(topic)
        .tags("TagA")
        .key(key)
        .body_slice(format!("body of {key}").as_bytes())
        .build_unchecked()
}

fn producer(client: &Client, ns: &str, group: &str) -> DefaultMQProducer {
    DefaultMQProducer::builder(client.runtime())
        .client_options(client_options(ns, CLIENT_MIN_INTERVAL_MS))
        .producer_group(group.to_string())
        .send_msg_timeout(3000)
        .retry_times_when_send_failed(2)
        .build()
}

async fn push_consumer(
    client: &Client,
    ns: &str,
    group: &str,
    topic: &str,
    sink: Collect,
) -> DefaultMQPushConsumer {
    let mut c = DefaultMQPushConsumer::builder(client.runtime())
        .client_options(client_options(ns, CLIENT_MIN_INTERVAL_MS))
        .consumer_group(group.to_string())
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .build();
    c.subscribe(topic, "*").await.expect("subscribe");
    c.register_message_listener_concurrently(sink);
    c.start().await.expect("start push consumer");
    c
}

/// Waits (asynchronously, bounded) until `sink` has seen every key of `want`.
async fn wait_consumed(sink: &Collect, want: &HashSet<String>, limit: Duration, what: &str) {
    let deadline = Instant::now() + limit;
    loop {
        let got = sink.distinct();
        let missing: Vec<&String> = want.iter().filter(|k| !got.contains(*k)).collect();
        if missing.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            let mut m: Vec<_> = missing.into_iter().cloned().collect();
            m.sort();
            panic!(
                "{what}: {} of {} messages not consumed within {limit:?}: {:?}",
                m.len(),
                want.len(),
                &m[..m.len().min(20)]
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A producer sends keyed messages through the name server; a push consumer and a
/// lite-pull consumer receive every one; query by key and view by id find them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keyed_messages_reach_push_and_lite_pull_consumers_and_lookups() {
    let cluster = Cluster::start(1);
    let ns = cluster.namesrv_addr.clone();
    let topic = "InteropBasic";
    cluster.create_topic(topic, 4);
    let client = Client::new("basic");
    tokio::time::timeout(TEST_LIMIT, async {
        let sink = Collect::default();
        let mut push = push_consumer(&client, &ns, "cg-push", topic, sink.clone()).await;

        let mut p = producer(&client, &ns, "pg-basic");
        p.start().await.expect("start producer");
        let n = 40;
        let mut want = HashSet::new();
        let mut ids = BTreeMap::new();
        for i in 0..n {
            let key = format!("basic-{i}");
            let r = p
                .send(message(topic, &key))
                .await
                .unwrap_or_else(|e| panic!("send {key}: {e}\n{}", cluster.logs()))
                .expect("a sync send has a result");
            assert_eq!(
                format!("{:?}", r.send_status),
                "SendOk",
                "send {key}: {r:?}"
            );
            let mq = r.message_queue.clone().expect("the queue sent to");
            assert_eq!(mq.broker_name().as_str(), group_name(0));
            ids.insert(key.clone(), r.clone());
            want.insert(key);
        }

        wait_consumed(&sink, &want, Duration::from_secs(60), "push consumer").await;

        // Lite pull: its own group, from the first offset, every message.
        let lite = DefaultLitePullConsumer::builder(client.runtime())
            .client_options(client_options(&ns, CLIENT_MIN_INTERVAL_MS))
            .consumer_group("cg-lite")
            .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
            .poll_timeout_millis(1000)
            .build()
            .expect("lite pull consumer");
        lite.subscribe(topic).await.expect("lite subscribe");
        lite.start().await.expect("lite start");
        let mut got = HashSet::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !want.iter().all(|k| got.contains(k)) {
            assert!(
                Instant::now() < deadline,
                "lite pull consumer: got {} of {} within 60 s\n{}",
                got.len(),
                want.len(),
                cluster.logs()
            );
            for m in lite.poll_with_timeout(1000).await {
                got.insert(key_of(&m));
            }
        }
        lite.shutdown().await;

        // Query by key: the producer's admin path (QUERY_MESSAGE to every broker).
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let found = p
            .query_message(topic, "basic-7", 32, now - 3_600_000, now + 60_000)
            .await
            .unwrap_or_else(|e| panic!("query by key: {e}\n{}", cluster.logs()));
        let list = found.message_list();
        assert!(
            list.iter().any(|m| key_of(m) == "basic-7"),
            "query by key found {:?}",
            list.iter().map(key_of).collect::<Vec<_>>()
        );
        assert!(list.iter().all(|m| key_of(m) == "basic-7"));

        // View by id: the offset msg id the send answered.
        let sent = &ids["basic-11"];
        let offset_id = sent
            .offset_msg_id
            .clone()
            .expect("an offset msg id in the send result");
        let viewed = p
            .view_message(topic, &offset_id)
            .await
            .unwrap_or_else(|e| panic!("view by id {offset_id}: {e}\n{}", cluster.logs()));
        assert_eq!(key_of(&viewed), "basic-11");
        assert_eq!(
            viewed.body().as_deref(),
            Some(&b"body of basic-11"[..]),
            "viewed body"
        );

        p.shutdown().await;
        push.shutdown().await;
    })
    .await
    .unwrap_or_else(|_| panic!("test over {TEST_LIMIT:?}\n{}", cluster.logs()));
    client.shutdown().await;
}

/// What a sending loop saw.
#[derive(Default)]
struct SendLog {
    acked: Vec<(String, String)>, // (key, brokerName)
    errors: Vec<(Duration, String)>,
}

/// Sends `key_prefix-0..` one after another until `stop()` says so or `max` were tried.
async fn send_loop(
    p: &DefaultMQProducer,
    topic: &str,
    key_prefix: &str,
    max: usize,
    started: Instant,
    log: &Mutex<SendLog>,
    mut stop: impl FnMut(&SendLog) -> bool,
) {
    for i in 0..max {
        if stop(&log.lock().unwrap()) {
            return;
        }
        let key = format!("{key_prefix}-{i}");
        let result = p.send_with_timeout(message(topic, &key), 3000).await;
        let failed = {
            let mut l = log.lock().unwrap();
            match result {
                Ok(Some(r)) if format!("{:?}", r.send_status) == "SendOk" => {
                    let broker = r
                        .message_queue
                        .map(|q| q.broker_name().to_string())
                        .unwrap_or_default();
                    l.acked.push((key, broker));
                    false
                }
                Ok(other) => {
                    l.errors.push((started.elapsed(), format!("{other:?}")));
                    true
                }
                Err(e) => {
                    l.errors.push((started.elapsed(), e.to_string()));
                    true
                }
            }
        };
        if failed {
            // As an application retrying a failed send would: not in a tight loop.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn print_errors(what: &str, log: &SendLog) {
    println!(
        "{what}: {} sends acknowledged, {} send errors",
        log.acked.len(),
        log.errors.len()
    );
    // Each distinct error once, with its count and when it was seen first and last.
    let mut seen: BTreeMap<&str, (usize, Duration, Duration)> = BTreeMap::new();
    for (at, e) in &log.errors {
        let entry = seen.entry(e.as_str()).or_insert((0, *at, *at));
        entry.0 += 1;
        entry.2 = *at;
    }
    for (e, (n, first, last)) in seen {
        println!(
            "  {n} x from {} ms to {} ms: {e}",
            first.as_millis(),
            last.as_millis()
        );
    }
}

/// kill -9 the master while a producer sends: every acknowledged send is consumed; the
/// send errors during the election are counted and printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_send_survives_killing_the_master() {
    let mut cluster = Cluster::start(1);
    let ns = cluster.namesrv_addr.clone();
    let topic = "InteropFailover";
    cluster.create_topic(topic, 4);
    let client = Client::new("failover");
    let killed = cluster.master_node_of(0).expect("a master");
    let log = Mutex::new(SendLog::default());
    let started = Instant::now();
    let p = {
        let mut p = producer(&client, &ns, "pg-failover");
        p.start().await.expect("start producer");
        p
    };
    let outcome = tokio::time::timeout(TEST_LIMIT, async {
        // Before: 30 acknowledged sends.
        send_loop(&p, topic, "before", 10_000, started, &log, |l| {
            l.acked.len() >= 30
        })
        .await;
        let before = log.lock().unwrap().acked.len();
        cluster.kill_node(killed);
        let killed_at = started.elapsed();
        println!(
            "killed node {killed} (the master) at {} ms",
            killed_at.as_millis()
        );
        // During and after: until 60 more sends were acknowledged (a new master is in
        // place), or 90 s.
        let deadline = Instant::now() + Duration::from_secs(90);
        send_loop(&p, topic, "after", 100_000, started, &log, |l| {
            l.acked.len() >= before + 60 || Instant::now() >= deadline
        })
        .await;
        let want: HashSet<String> = {
            let l = log.lock().unwrap();
            print_errors("failover", &l);
            assert!(
                l.acked.len() >= before + 60,
                "sends did not resume after the kill: {} acknowledged after it\n{}",
                l.acked.len() - before,
                cluster.logs()
            );
            let new_master = cluster.master_node_of(0);
            assert!(
                new_master.is_some_and(|m| m != killed),
                "the name server's master is {new_master:?}, the killed node was {killed}"
            );
            l.acked.iter().map(|(k, _)| k.clone()).collect()
        };

        // Every acknowledged send is there for a consumer.
        let sink = Collect::default();
        let mut push = push_consumer(&client, &ns, "cg-failover", topic, sink.clone()).await;
        wait_consumed(&sink, &want, Duration::from_secs(90), "after failover").await;
        push.shutdown().await;
    })
    .await;
    let mut p = p;
    p.shutdown().await;
    client.shutdown().await;
    outcome.unwrap_or_else(|_| panic!("test over {TEST_LIMIT:?}\n{}", cluster.logs()));
}

/// Three groups, each led from another process: killing one group's master moves the
/// sends to the other two groups at once (the client's retry to another broker, and its
/// fault-tolerant queue choice), and every acknowledged send is consumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_three_groups_sends_move_to_the_other_groups_at_once() {
    let mut cluster = Cluster::start(3);
    let ns = cluster.namesrv_addr.clone();
    let topic = "InteropGroups";
    cluster.create_topic(topic, 4);
    let client = Client::new("groups");
    // The process that hosts group 0's master; with leaders spread it leads no other.
    let killed = cluster.master_node_of(0).expect("a master of group 0");
    let others_led: Vec<usize> = (1..3)
        .filter(|&g| cluster.master_node_of(g) == Some(killed))
        .collect();
    let log = Mutex::new(SendLog::default());
    let started = Instant::now();
    let p = {
        let mut p = producer(&client, &ns, "pg-groups");
        p.start().await.expect("start producer");
        p
    };
    let outcome = tokio::time::timeout(TEST_LIMIT, async {
        send_loop(&p, topic, "before", 10_000, started, &log, |l| {
            l.acked.len() >= 60
        })
        .await;
        let (before, spread) = {
            let l = log.lock().unwrap();
            let groups: HashSet<&str> = l.acked.iter().map(|(_, b)| b.as_str()).collect();
            (l.acked.len(), groups.len())
        };
        assert_eq!(spread, 3, "sends before the kill reach every group");
        let dead_groups: HashSet<String> = std::iter::once(0)
            .chain(others_led.iter().copied())
            .map(group_name)
            .collect();
        cluster.kill_node(killed);
        let killed_at = Instant::now();
        println!(
            "killed node {killed}, master of {dead_groups:?}, at {} ms",
            started.elapsed().as_millis()
        );
        // The next 60 sends, while the killed group elects.
        send_loop(&p, topic, "after", 10_000, started, &log, |l| {
            l.acked.len() >= before + 60
        })
        .await;
        let took = killed_at.elapsed();
        let want: HashSet<String> = {
            let l = log.lock().unwrap();
            print_errors("three groups", &l);
            let after = &l.acked[before..];
            let on_live = after
                .iter()
                .filter(|(_, b)| !dead_groups.contains(b))
                .count();
            println!(
                "60 sends after the kill took {} ms, {on_live} on the live groups",
                took.as_millis()
            );
            // rocketmq-client-rust hands a few connection failures to the dead master back to
            // the application instead of retrying another broker (measured: 0 to 2 of 60);
            // every other send goes to a live group at once.
            assert!(
                l.errors.len() <= 5,
                "sends failed although other groups were up: {:?}",
                l.errors
            );
            // "At once": 60 sends within the client's send timeout of a few dead-broker tries.
            assert!(
                took < Duration::from_secs(15),
                "60 sends after the kill took {took:?}"
            );
            assert!(
                on_live >= 40,
                "only {on_live} of 60 sends went to the live groups"
            );
            l.acked.iter().map(|(k, _)| k.clone()).collect()
        };

        let sink = Collect::default();
        let mut push = push_consumer(&client, &ns, "cg-groups", topic, sink.clone()).await;
        wait_consumed(&sink, &want, Duration::from_secs(90), "three groups").await;
        push.shutdown().await;
    })
    .await;
    let mut p = p;
    p.shutdown().await;
    client.shutdown().await;
    outcome.unwrap_or_else(|_| panic!("test over {TEST_LIMIT:?}\n{}", cluster.logs()));
}

/// ali-ons, the pure-JavaScript classic client (npm), against the same name server:
/// `ons/producer_consumer.js` sends keyed messages and consumes every one with a push
/// consumer. Needs node and `npm ci` in interop/ons (test.sh runs it).
#[test]
fn ali_ons_producer_and_consumer() {
    let ons = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ons");
    assert!(
        ons.join("node_modules/ali-ons").exists(),
        "ali-ons is not installed: run `npm ci` in {}",
        ons.display()
    );
    let cluster = Cluster::start(1);
    cluster.create_topic("InteropOns", 4);
    let mut child = std::process::Command::new("node")
        .arg("producer_consumer.js")
        .args([cluster.namesrv_addr.as_str(), "InteropOns", "30"])
        .current_dir(&ons)
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(cluster.dir().join("ons.out")).expect("ons.out"))
        .stderr(std::fs::File::create(cluster.dir().join("ons.err")).expect("ons.err"))
        .spawn()
        .expect("node (install Node.js to run the ali-ons test)");
    // The script stops itself after 60 s; this bound covers node's start as well.
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for node") {
            break Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = std::fs::read_to_string(cluster.dir().join("ons.out")).unwrap_or_default();
    let stderr = std::fs::read_to_string(cluster.dir().join("ons.err")).unwrap_or_default();
    println!("{stdout}{stderr}");
    assert!(
        status.is_some_and(|s| s.success()),
        "ali-ons script failed ({status:?}):\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("ons: sent 30, consumed 30"),
        "ali-ons output: {stdout}"
    );
}

/// Records the queues rebalancing last assigned to one consumer.
#[derive(Clone, Default)]
struct Assigned {
    queues: Arc<Mutex<HashSet<i32>>>,
}

impl rocketmq_client_rust::MessageQueueListener for Assigned {
    fn message_queue_changed(
        &self,
        topic: &str,
        _mq_all: &HashSet<rocketmq_model::common::message::message_queue::MessageQueue>,
        mq_assigned: &HashSet<rocketmq_model::common::message::message_queue::MessageQueue>,
    ) {
        // A clustering consumer also subscribes to its group's retry topic (one queue,
        // queue 0), rebalanced in the same round in hash order: keep the topic's own.
        if topic.starts_with("%RETRY%") {
            return;
        }
        *self.queues.lock().unwrap() = mq_assigned.iter().map(|q| q.queue_id()).collect();
    }
}

impl Assigned {
    fn get(&self) -> HashSet<i32> {
        self.queues.lock().unwrap().clone()
    }
}

/// A push consumer with its own client instance name (its own client id).
async fn push_consumer_named(
    client: &Client,
    ns: &str,
    instance: &str,
    group: &str,
    topic: &str,
    assigned: Assigned,
) -> DefaultMQPushConsumer {
    // client_options' settings, under another instance name.
    let mut config = client_options(ns, CLIENT_MIN_INTERVAL_MS)
        .client_config()
        .clone();
    config.set_instance_name(format!("{instance}-{}", std::process::id()).into());
    let options = rocketmq_client_rust::ClientOptions::legacy(config);
    let mut c = DefaultMQPushConsumer::builder(client.runtime())
        .client_options(options)
        .consumer_group(group.to_string())
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .message_queue_listener(Some(Arc::new(assigned)))
        .build();
    c.subscribe(topic, "*").await.expect("subscribe");
    c.register_message_listener_concurrently(Collect::default());
    c.start().await.expect("start push consumer");
    c
}

/// A second push consumer joining a group gets its queues within 2 s: the broker's
/// NOTIFY_CONSUMER_IDS_CHANGED makes the first one rebalance at once (without it, at its
/// next 20 s round).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_consumer_gets_its_queues_within_2_s() {
    let cluster = Cluster::start(1);
    let ns = cluster.namesrv_addr.clone();
    let topic = "InteropRebalance";
    cluster.create_topic(topic, 4);
    let client = Client::new("rebalance");
    let all: HashSet<i32> = (0..4).collect();
    tokio::time::timeout(TEST_LIMIT, async {
        let first = Assigned::default();
        let mut a =
            push_consumer_named(&client, &ns, "first", "cg-rebalance", topic, first.clone()).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        while first.get() != all {
            assert!(
                Instant::now() < deadline,
                "the first consumer has {:?}, not every queue, after 60 s\n{}",
                first.get(),
                cluster.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let second = Assigned::default();
        let joined = Instant::now();
        let mut b = push_consumer_named(
            &client,
            &ns,
            "second",
            "cg-rebalance",
            topic,
            second.clone(),
        )
        .await;
        // Split between the two: disjoint, together every queue, neither empty.
        let deadline = joined + Duration::from_secs(2);
        loop {
            let (x, y) = (first.get(), second.get());
            let split = !x.is_empty()
                && !y.is_empty()
                && x.is_disjoint(&y)
                && x.union(&y).copied().collect::<HashSet<i32>>() == all;
            if split {
                println!(
                    "split {x:?} / {y:?} {} ms after the join",
                    joined.elapsed().as_millis()
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "2 s after the second consumer joined: first {x:?}, second {y:?}\n{}",
                cluster.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The CLI sees both clients of the group, and the master's status.
        let out = cluster.admin(&["consumerConnection", "-g", "cg-rebalance", "--json"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "consumerConnection: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(text.lines().count(), 2, "two connected clients: {text}");
        assert!(
            text.contains("first-") && text.contains("second-"),
            "{text}"
        );
        let out = cluster.admin(&["producerConnection", "-g", "no-such-group"]);
        assert!(
            !out.status.success(),
            "a group with no producer is an error"
        );
        let out = cluster.admin(&["brokerStatus", "-c", rmqraft_interop::CLUSTER]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "brokerStatus: {text}");
        assert!(
            text.contains("dLegerRole") && text.contains("LEADER"),
            "{text}"
        );
        b.shutdown().await;
        a.shutdown().await;
    })
    .await
    .unwrap_or_else(|_| panic!("test over {TEST_LIMIT:?}\n{}", cluster.logs()));
    client.shutdown().await;
}

/// Keeps (key, body, store size) of every message a push consumer is given.
#[derive(Clone, Default)]
struct Bodies {
    got: Arc<Mutex<BTreeMap<String, (Vec<u8>, i32)>>>,
}

impl MessageListenerConcurrently for Bodies {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _context: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        let mut got = self.got.lock().unwrap();
        for m in msgs {
            let body = m.body().map(|b| b.to_vec()).unwrap_or_default();
            got.insert(key_of(m), (body, m.store_size()));
        }
        Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
    }
}

/// A batch of 100 sent at once arrives as 100 messages; a body over the client's
/// compression threshold (4 KiB) is stored compressed, as sent (its record is smaller
/// than the body), and the consumer gets the original body back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_of_100_arrives_as_100_and_compressed_bodies_are_stored_as_sent() {
    let cluster = Cluster::start(1);
    let ns = cluster.namesrv_addr.clone();
    let topic = "InteropBatch";
    cluster.create_topic(topic, 4);
    let client = Client::new("batch");
    tokio::time::timeout(TEST_LIMIT, async {
        let mut p = producer(&client, &ns, "pg-batch");
        p.start().await.expect("start producer");
        let batch: Vec<Message> = (0..100)
            .map(|i| message(topic, &format!("batch-{i}")))
            .collect();
        let r = p
            .send_batch(batch)
            .await
            .unwrap_or_else(|e| panic!("send batch: {e:?}\n{}", cluster.logs()));
        assert_eq!(format!("{:?}", r.send_status), "SendOk", "{r:?}");
        // 64 KiB of a repeated pattern: compressed far below its size.
        let big: Vec<u8> = (0..65536u32)
            .map(|i| b"rmqraft "[(i % 8) as usize])
            .collect();
        let m = Message::builder()
            .topic(topic)
            .tags("TagA")
            .key("big")
            .body_slice(&big)
            .build_unchecked();
        let r = p
            .send(m)
            .await
            .unwrap_or_else(|e| panic!("send big: {e}\n{}", cluster.logs()))
            .expect("a sync send has a result");
        assert_eq!(format!("{:?}", r.send_status), "SendOk", "{r:?}");

        let sink = Bodies::default();
        let mut c = DefaultMQPushConsumer::builder(client.runtime())
            .client_options(client_options(&ns, CLIENT_MIN_INTERVAL_MS))
            .consumer_group("cg-batch".to_string())
            .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
            .build();
        c.subscribe(topic, "*").await.expect("subscribe");
        c.register_message_listener_concurrently(sink.clone());
        c.start().await.expect("start push consumer");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let n = sink.got.lock().unwrap().len();
            if n >= 101 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{n} of 101 messages consumed in 60 s\n{}",
                cluster.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let got = sink.got.lock().unwrap().clone();
        for i in 0..100 {
            let k = format!("batch-{i}");
            assert_eq!(
                got.get(&k).map(|(b, _)| b.as_slice()),
                Some(format!("body of {k}").as_bytes()),
                "{k}"
            );
        }
        let (body, store_size) = got.get("big").expect("the big message");
        assert_eq!(body, &big, "the consumer gets the original body");
        assert!(
            (*store_size as usize) < big.len() / 4,
            "the record ({store_size} bytes) holds the compressed body, not the 64 KiB"
        );
        c.shutdown().await;
        p.shutdown().await;
    })
    .await
    .unwrap_or_else(|_| panic!("test over {TEST_LIMIT:?}\n{}", cluster.logs()));
    client.shutdown().await;
}
