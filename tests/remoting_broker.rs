//! The broker side of RocketMQ's protocol on a loopback group, through a name server,
//! spoken with the crate's own blocking client: sends to the master found in the route,
//! pulls from master and slave, lookups by key and id, offsets, a slave's answer to a
//! send, unknown codes, parked long-polling pulls, and a new master registering as
//! brokerId 0 at once when the old one closes.

mod common;

use common::{free_ports, group_props, init_logging, wait_for};
use rmqraft::broker::record::{encode_properties, parse_offset_msg_id, MessageRecord};
use rmqraft::broker::Broker;
use rmqraft::remoting::broker_side::{code, SLAVE_SEND_REMARK};
use rmqraft::remoting::client::Client;
use rmqraft::remoting::codec::RemotingCommand;
use rmqraft::remoting::codes::{request as rq, response as rs};
use rmqraft::remoting::json::{self, Value};
use rmqraft::remoting::namesrv::NameServer;
use rmqraft::remoting::{BrokerSide, BrokerSideConfig};
use rmqraft::{Engine, Role};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);
const TOPIC: &str = "TopicTest";
const GROUP: &str = "RaftNode00";

struct Member {
    engine: Engine,
    broker: Arc<Broker>,
    side: BrokerSide,
    addr: String,
}

struct Setup {
    _root: tempfile::TempDir,
    ns: NameServer,
    members: Vec<Option<Member>>,
}

impl Setup {
    /// A name server and a three-member group, each member serving RocketMQ's broker
    /// codes on its own port (with `workers` handler threads) and registering.
    fn start(workers: usize) -> Setup {
        init_logging();
        let ns = NameServer::start("127.0.0.1:0".parse().unwrap()).unwrap();
        let root = tempfile::tempdir().unwrap();
        let raft = free_ports(3);
        let mut members = Vec::new();
        for i in 0..3 {
            let (listener, vip) = bind_with_vip();
            let port = listener.local_addr().unwrap().port();
            let extra = format!(
                "brokerClusterName=RaftCluster\nbrokerName={GROUP}\nlistenPort={port}\n\
                 namesrvAddr={}\nmessageDelayLevel=100ms 100ms 200ms 200ms 300ms\n",
                ns.local_addr()
            );
            let props = group_props(GROUP, &raft, i, root.path(), &extra);
            let engine = Engine::open("brokerClusterName=RaftCluster").unwrap();
            let group = Arc::new(engine.open_group(&props).unwrap());
            let broker = Arc::new(Broker::open(group, &props).unwrap());
            let mut config = BrokerSideConfig::from_properties(&props, &broker)
                .unwrap()
                .expect("listenPort is set");
            config.server.workers = workers;
            let side =
                BrokerSide::start_on_listeners(Arc::clone(&broker), config, listener, Some(vip))
                    .unwrap();
            members.push(Some(Member {
                engine,
                broker,
                side,
                addr: format!("127.0.0.1:{port}"),
            }));
        }
        Setup {
            _root: root,
            ns,
            members,
        }
    }

    fn member(&self, i: usize) -> &Member {
        self.members[i].as_ref().expect("running")
    }

    fn index_of(&self, addr: &str) -> usize {
        (0..3)
            .find(|i| self.members[*i].as_ref().is_some_and(|m| m.addr == addr))
            .expect("a member with this address")
    }

    fn stop(&mut self, i: usize) {
        if let Some(mut m) = self.members[i].take() {
            m.side.stop();
            m.broker.close();
            m.broker.group().close();
            m.engine.close();
        }
    }

    fn namesrv(&self) -> String {
        self.ns.local_addr().to_string()
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        for i in 0..3 {
            self.stop(i);
        }
    }
}

/// A loopback listener on a port P and one on P - 2 (the VIP channel), both from the OS.
fn bind_with_vip() -> (TcpListener, TcpListener) {
    for _ in 0..500 {
        let main = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = main.local_addr().unwrap().port();
        let Some(vip_port) = rmqraft::remoting::broker_side::vip_port(port) else {
            continue;
        };
        if let Ok(vip) = TcpListener::bind(("127.0.0.1", vip_port)) {
            return (main, vip);
        }
    }
    panic!("no free port pair P, P - 2 on loopback in 500 tries");
}

/// The VIP channel's address of a broker address, as a 4.x client derives it
/// (MixAll.brokerVIPChannel: the port minus 2).
fn vip_of(addr: &str) -> String {
    let (host, port) = addr.rsplit_once(':').unwrap();
    format!("{host}:{}", port.parse::<u16>().unwrap() - 2)
}

fn call(addr: &str, cmd: RemotingCommand) -> RemotingCommand {
    Client::connect(addr, T).unwrap().invoke(cmd, T).unwrap()
}

/// brokerId -> address of the group in `topic`'s route.
fn route(namesrv: &str, topic: &str) -> Option<Vec<(i64, String)>> {
    let r = call(
        namesrv,
        RemotingCommand::request(rq::GET_ROUTEINFO_BY_TOPIC, 0).with_field("topic", topic),
    );
    if r.code != rs::SUCCESS {
        return None;
    }
    let v = json::parse_lenient(&r.body).unwrap();
    let b = v["brokerDatas"]
        .as_array()?
        .iter()
        .find(|b| b["brokerName"] == GROUP)?;
    let mut out: Vec<(i64, String)> = b["brokerAddrs"]
        .as_object()?
        .iter()
        .map(|(k, v)| (k.parse().unwrap(), v.as_str().unwrap().to_string()))
        .collect();
    out.sort();
    Some(out)
}

/// The master's address in the cluster info (any topic: brokerAddrs of the group).
fn master_in_cluster(namesrv: &str) -> Option<String> {
    let r = call(
        namesrv,
        RemotingCommand::request(rq::GET_BROKER_CLUSTER_INFO, 0),
    );
    assert_eq!(r.code, rs::SUCCESS);
    let v = json::parse_lenient(&r.body).unwrap();
    v["brokerAddrTable"][GROUP]["brokerAddrs"]["0"]
        .as_str()
        .map(str::to_string)
}

fn send_v2(addr: &str, topic: &str, key: &str, tags: &str, body: &[u8]) -> RemotingCommand {
    let props = encode_properties([("KEYS", key), ("TAGS", tags), ("WAIT", "true")]);
    let cmd = RemotingCommand::request(rq::SEND_MESSAGE_V2, 0)
        .with_field("a", "PG")
        .with_field("b", topic)
        .with_field("c", "TBW102")
        .with_field("d", "4")
        .with_field("e", "-1")
        .with_field("f", "0")
        .with_field("g", "0")
        .with_field("h", "0")
        .with_field("i", props)
        .with_field("j", "0")
        .with_field("k", "false")
        .with_field("m", "false")
        .with_body(body.to_vec());
    call(addr, cmd)
}

fn pull_cmd(queue: i32, offset: u64, sub: &str, suspend_ms: u64) -> RemotingCommand {
    let flags = if suspend_ms > 0 { 2 | 4 } else { 4 };
    RemotingCommand::request(rq::PULL_MESSAGE, 0)
        .with_field("consumerGroup", "CG")
        .with_field("topic", TOPIC)
        .with_field("queueId", queue.to_string())
        .with_field("queueOffset", offset.to_string())
        .with_field("maxMsgNums", "32")
        .with_field("sysFlag", flags.to_string())
        .with_field("commitOffset", "0")
        .with_field("suspendTimeoutMillis", suspend_ms.to_string())
        .with_field("subscription", sub)
        .with_field("subVersion", "0")
        .with_field("expressionType", "TAG")
}

fn records(mut body: &[u8]) -> Vec<MessageRecord> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let (r, n) = MessageRecord::decode(body).unwrap();
        out.push(r);
        body = &body[n..];
    }
    out
}

fn offset_field(r: &RemotingCommand) -> u64 {
    r.field("offset").unwrap().parse().unwrap()
}

fn setup_topic(s: &Setup) -> String {
    let ns = s.namesrv();
    let master = wait_for("a master in the cluster info", || master_in_cluster(&ns));
    let r = call(
        &master,
        RemotingCommand::request(rq::UPDATE_AND_CREATE_TOPIC, 0)
            .with_field("topic", TOPIC)
            .with_field("readQueueNums", "2")
            .with_field("writeQueueNums", "2")
            .with_field("perm", "6"),
    );
    assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
    // The route names the master as brokerId 0 once the topic is registered.
    let addrs = wait_for("the topic's route", || {
        route(&ns, TOPIC).filter(|a| a.len() == 3 && a[0].0 == 0)
    });
    let ids: Vec<i64> = addrs.iter().map(|a| a.0).collect();
    let slave_ids: Vec<i64> = ids[1..].to_vec();
    assert!(slave_ids.iter().all(|id| (1..=3).contains(id)), "{ids:?}");
    addrs[0].1.clone()
}

#[test]
fn send_pull_query_view_and_offsets_through_a_name_server() {
    let s = Setup::start(4);
    let master = setup_topic(&s);
    let mi = s.index_of(&master);
    assert_eq!(s.member(mi).broker.role().unwrap(), Role::Leader);
    assert_eq!(s.member(mi).side.registered_broker_id(), Some(0));
    let slave = (0..3).find(|i| *i != mi).unwrap();
    let slave_addr = s.member(slave).addr.clone();

    let mut sent = Vec::new();
    for i in 0..10 {
        let tags = if i % 2 == 0 { "TagA" } else { "TagB" };
        let r = send_v2(
            &master,
            TOPIC,
            &format!("key-{i}"),
            tags,
            format!("body-{i}").as_bytes(),
        );
        assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
        let q: i32 = r.field("queueId").unwrap().parse().unwrap();
        let off: u64 = r.field("queueOffset").unwrap().parse().unwrap();
        let msg_id = r.field("msgId").unwrap().to_string();
        assert_eq!(msg_id.len(), 32);
        sent.push((q, off, msg_id, tags));
    }

    // Pull queue 0 from the master and from a slave (committed messages only).
    let q0: Vec<_> = sent.iter().filter(|m| m.0 == 0).collect();
    assert!(!q0.is_empty());
    for addr in [&master, &slave_addr] {
        let r = wait_for("the messages on the member", || {
            let r = call(addr, pull_cmd(0, 0, "*", 0));
            (r.code == rs::SUCCESS && records(&r.body).len() == q0.len()).then_some(r)
        });
        let recs = records(&r.body);
        assert_eq!(r.field("nextBeginOffset").unwrap(), q0.len().to_string());
        assert_eq!(r.field("maxOffset").unwrap(), q0.len().to_string());
        for (rec, m) in recs.iter().zip(&q0) {
            assert_eq!(rec.queue_offset as u64, m.1);
            assert_eq!(rec.offset_msg_id(), m.2);
        }
    }
    // Tag filtering: only TagB.
    let r = call(&master, pull_cmd(0, 0, "TagB", 0));
    let want = q0.iter().filter(|m| m.3 == "TagB").count();
    if want > 0 {
        assert_eq!(r.code, rs::SUCCESS);
        let recs = records(&r.body);
        assert_eq!(recs.len(), want);
        assert!(recs.iter().all(|m| m.tags() == Some("TagB")));
    }
    // At the end: PULL_NOT_FOUND; far beyond: PULL_OFFSET_MOVED.
    let r = call(&master, pull_cmd(0, q0.len() as u64, "*", 0));
    assert_eq!(r.code, code::PULL_NOT_FOUND);
    let r = call(&master, pull_cmd(0, 1000, "*", 0));
    assert_eq!(r.code, code::PULL_OFFSET_MOVED);

    // Query by key on master and slave, by unique key, view by id.
    for addr in [&master, &slave_addr] {
        let r = call(
            addr,
            RemotingCommand::request(rq::QUERY_MESSAGE, 0)
                .with_field("topic", TOPIC)
                .with_field("key", "key-3")
                .with_field("maxNum", "32")
                .with_field("beginTimestamp", "0")
                .with_field("endTimestamp", i64::MAX.to_string()),
        );
        assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
        let recs = records(&r.body);
        assert_eq!(recs.len(), 1);
        assert_eq!(&recs[0].body[..], b"body-3");
    }
    let r = call(
        &master,
        RemotingCommand::request(rq::QUERY_MESSAGE, 0)
            .with_field("topic", TOPIC)
            .with_field("key", "no-such-key")
            .with_field("maxNum", "32")
            .with_field("beginTimestamp", "0")
            .with_field("endTimestamp", "0"),
    );
    assert_eq!(r.code, rs::QUERY_NOT_FOUND);
    let (_, commit_offset) = parse_offset_msg_id(&sent[5].2).unwrap();
    for addr in [&master, &slave_addr] {
        let r = call(
            addr,
            RemotingCommand::request(rq::VIEW_MESSAGE_BY_ID, 0)
                .with_field("offset", commit_offset.to_string()),
        );
        assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
        let recs = records(&r.body);
        assert_eq!(&recs[0].body[..], b"body-5");
        let uniq = recs[0].uniq_key().unwrap().to_string();
        let r = call(
            addr,
            RemotingCommand::request(rq::QUERY_MESSAGE, 0)
                .with_field("topic", TOPIC)
                .with_field("key", uniq.as_str())
                .with_field("maxNum", "32")
                .with_field("beginTimestamp", "0")
                .with_field("endTimestamp", "0")
                .with_field("_UNIQUE_KEY_QUERY", "true"),
        );
        assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
        assert_eq!(&records(&r.body)[0].body[..], b"body-5");
    }

    // Offsets.
    let q = |code: i32| {
        RemotingCommand::request(code, 0)
            .with_field("topic", TOPIC)
            .with_field("queueId", "0")
    };
    assert_eq!(
        offset_field(&call(&master, q(rq::GET_MAX_OFFSET))),
        q0.len() as u64
    );
    assert_eq!(offset_field(&call(&master, q(rq::GET_MIN_OFFSET))), 0);
    let r = call(
        &master,
        q(rq::SEARCH_OFFSET_BY_TIMESTAMP).with_field("timestamp", "0"),
    );
    assert_eq!(offset_field(&r), 0);
    let r = call(
        &master,
        q(rq::SEARCH_OFFSET_BY_TIMESTAMP).with_field("timestamp", i64::MAX.to_string()),
    );
    assert_eq!(offset_field(&r), q0.len() as u64);
    let r = call(
        &master,
        q(rq::UPDATE_CONSUMER_OFFSET)
            .with_field("consumerGroup", "CG")
            .with_field("commitOffset", "2"),
    );
    assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
    let r = call(
        &master,
        q(rq::QUERY_CONSUMER_OFFSET).with_field("consumerGroup", "CG"),
    );
    assert_eq!(offset_field(&r), 2);
    wait_for("the committed offset on the slave", || {
        let r = call(
            &slave_addr,
            q(rq::QUERY_CONSUMER_OFFSET).with_field("consumerGroup", "CG"),
        );
        (r.code == rs::SUCCESS && offset_field(&r) == 2).then_some(())
    });

    // Heartbeat: the consumer is listed, its retry topic exists.
    let hb = serde_json::json!({
        "clientID": "127.0.0.1@4242",
        "producerDataSet": [{"groupName": "PG"}],
        "consumerDataSet": [{"groupName": "CG", "consumeType": "CONSUME_PASSIVELY",
            "messageModel": "CLUSTERING", "consumeFromWhere": "CONSUME_FROM_LAST_OFFSET",
            "subscriptionDataSet": [{"topic": TOPIC, "subString": "*"}], "unitMode": false}],
    });
    // The client stays listed while the connection it sent its heartbeat on is open.
    let mut consumer = Client::connect(&master, T).unwrap();
    let r = consumer
        .invoke(
            RemotingCommand::request(rq::HEART_BEAT, 0).with_body(hb.to_string().into_bytes()),
            T,
        )
        .unwrap();
    assert_eq!(r.code, rs::SUCCESS);
    let list = || {
        call(
            &master,
            RemotingCommand::request(rq::GET_CONSUMER_LIST_BY_GROUP, 0)
                .with_field("consumerGroup", "CG"),
        )
    };
    let r = list();
    assert_eq!(r.code, rs::SUCCESS);
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["consumerIdList"][0], "127.0.0.1@4242");
    assert!(s.member(mi).broker.topic("%RETRY%CG").is_ok());
    // ... and leaves its group when that connection closes (rebalancing clients must not
    // count a consumer that is gone).
    drop(consumer);
    wait_for("the closed consumer to leave its group", || {
        let r = list();
        (r.code == rs::SYSTEM_ERROR).then_some(())
    });
    let r = call(
        &master,
        RemotingCommand::request(rq::GET_ALL_TOPIC_CONFIG, 0),
    );
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["topicConfigTable"][TOPIC]["writeQueueNums"], 2);
    assert!(v["topicConfigTable"]["%RETRY%CG"].is_object());

    // Send back: the message goes to %RETRY%CG with reconsume times 1, after the delay
    // of level 3 + its reconsume times (200 ms with this test's messageDelayLevel).
    let r = call(
        &master,
        RemotingCommand::request(rq::CONSUMER_SEND_MSG_BACK, 0)
            .with_field("offset", commit_offset.to_string())
            .with_field("group", "CG")
            .with_field("delayLevel", "0")
            .with_field("originMsgId", sent[5].2.as_str())
            .with_field("maxReconsumeTimes", "16"),
    );
    assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
    let mut p = s
        .member(mi)
        .broker
        .pull("%RETRY%CG", 0, 0, 8, None, T)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while p.messages.is_empty() && Instant::now() < deadline {
        p = s
            .member(mi)
            .broker
            .pull("%RETRY%CG", 0, 0, 8, None, Duration::from_secs(1))
            .unwrap();
    }
    assert_eq!(p.messages.len(), 1);
    assert_eq!(p.messages[0].decoded.reconsume_times, 1);
    assert_eq!(p.messages[0].decoded.property("RETRY_TOPIC"), Some(TOPIC));

    // Locks: the first client holds the queue, a second one does not get it.
    let lock_body = |client: &str| {
        serde_json::json!({"consumerGroup": "CG", "clientId": client, "onlyThisBroker": false,
            "mqSet": [{"topic": TOPIC, "brokerName": GROUP, "queueId": 0}]})
        .to_string()
        .into_bytes()
    };
    let locked = |client: &str| {
        let r = call(
            &master,
            RemotingCommand::request(rq::LOCK_BATCH_MQ, 0).with_body(lock_body(client)),
        );
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        v["lockOKMQSet"].as_array().unwrap().len()
    };
    assert_eq!(locked("c1"), 1);
    assert_eq!(locked("c2"), 0);
    let r = call(
        &master,
        RemotingCommand::request(rq::UNLOCK_BATCH_MQ, 0).with_body(lock_body("c1")),
    );
    assert_eq!(r.code, rs::SUCCESS);
    assert_eq!(locked("c2"), 1);

    // A slave answers a send as RocketMQ's slave does; unknown codes are refused.
    let r = send_v2(&slave_addr, TOPIC, "k", "TagA", b"to a slave");
    assert_eq!(r.code, code::SERVICE_NOT_AVAILABLE);
    assert_eq!(r.remark.as_deref(), Some(SLAVE_SEND_REMARK));
    let r = call(&master, RemotingCommand::request(9999, 0));
    assert_eq!(r.code, rs::REQUEST_CODE_NOT_SUPPORTED);

    // Runtime info carries mqadmin's keys and the Raft state.
    let r = call(
        &master,
        RemotingCommand::request(rq::GET_BROKER_RUNTIME_INFO, 0),
    );
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["table"]["dLegerRole"], "LEADER");
    assert!(v["table"]["putTps"].is_string());
    assert!(
        v["table"]["msgPutTotalTodayNow"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 10
    );
}

#[test]
fn a_long_polling_pull_is_parked_not_a_worker_and_returns_on_arrival() {
    // One handler thread: if the parked pull held it, the send below could not be served.
    let s = Setup::start(1);
    let master = setup_topic(&s);
    let mi = s.index_of(&master);
    let addr = master.clone();
    let started = Instant::now();
    let puller = std::thread::spawn(move || {
        let r = Client::connect(&addr, T)
            .unwrap()
            .invoke(pull_cmd(1, 0, "*", 20_000), Duration::from_secs(30))
            .unwrap();
        (r, started.elapsed())
    });
    wait_for("the pull to be parked", || {
        (s.member(mi).side.parked_pulls() == 1).then_some(())
    });
    // Fill queue 1 (sends pick queues round robin).
    let mut on_q1 = 0;
    for i in 0..4 {
        let r = send_v2(&master, TOPIC, &format!("lp-{i}"), "TagA", b"wake up");
        assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
        if r.field("queueId") == Some("1") {
            on_q1 += 1;
        }
    }
    assert!(on_q1 > 0);
    let (r, took) = puller.join().unwrap();
    assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
    assert!(!records(&r.body).is_empty());
    assert!(
        took < Duration::from_secs(15),
        "the parked pull took {took:?}"
    );
    assert_eq!(s.member(mi).side.parked_pulls(), 0);
}

#[test]
fn a_new_master_registers_as_broker_id_0_at_once_and_sends_continue() {
    let mut s = Setup::start(4);
    let ns = s.namesrv();
    let master = setup_topic(&s);
    for i in 0..5 {
        let r = send_v2(&master, TOPIC, &format!("before-{i}"), "TagA", b"x");
        assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
    }
    let old = s.index_of(&master);
    let closed = Instant::now();
    s.stop(old);
    let new_master = wait_for("a new master in the route", || {
        route(&ns, TOPIC)
            .and_then(|a| a.into_iter().find(|(id, _)| *id == 0))
            .map(|(_, addr)| addr)
            .filter(|addr| *addr != master)
    });
    let took = closed.elapsed();
    // An election (a few seconds at most) plus registration: not the 30 s period.
    assert!(took < Duration::from_secs(20), "took {took:?}");
    let ni = s.index_of(&new_master);
    assert_eq!(s.member(ni).broker.role().unwrap(), Role::Leader);
    for i in 0..5 {
        let r = send_v2(&new_master, TOPIC, &format!("after-{i}"), "TagA", b"y");
        assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
    }
    // Every acknowledged send is on the new master once dispatched (a send returns at
    // its commit; the consume queues follow).
    wait_for("all ten messages in the new master's queues", || {
        let total: u64 = (0..2)
            .map(|q| s.member(ni).broker.queue_offsets(TOPIC, q).unwrap().1)
            .sum();
        assert!(total <= 10, "{total} messages for 10 sends");
        (total == 10).then_some(())
    });
}

#[test]
fn the_vip_channel_on_listen_port_minus_2_sends_and_pulls() {
    let s = Setup::start(2);
    let ns = s.namesrv();
    let master = setup_topic(&s);
    let mi = s.index_of(&master);
    // The name server knows brokerAddr only; the client derives the VIP port itself.
    let addrs = route(&ns, TOPIC).unwrap();
    assert!(
        addrs.iter().any(|(id, a)| *id == 0 && *a == master),
        "{addrs:?}"
    );
    let vip = vip_of(&master);
    assert_eq!(
        s.member(mi).side.vip_addr().map(|a| a.port().to_string()),
        vip.rsplit_once(':').map(|(_, p)| p.to_string())
    );
    let mut q0 = Vec::new();
    for i in 0..6 {
        let r = send_v2(
            &vip,
            TOPIC,
            &format!("vip-{i}"),
            "TagA",
            format!("vip-{i}").as_bytes(),
        );
        assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
        if r.field("queueId") == Some("0") {
            q0.push(format!("vip-{i}"));
        }
    }
    assert!(!q0.is_empty());
    let r = wait_for("the messages through the VIP channel", || {
        let r = call(&vip, pull_cmd(0, 0, "*", 0));
        (r.code == rs::SUCCESS && records(&r.body).len() == q0.len()).then_some(r)
    });
    let bodies: Vec<String> = records(&r.body)
        .iter()
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect();
    assert_eq!(bodies, q0);
    // The same connection-scoped state on both ports: a heartbeat on the VIP channel
    // puts its consumer in the list the main port answers.
    let hb = serde_json::json!({"clientID": "vip-client", "producerDataSet": [],
        "consumerDataSet": [{"groupName": "VG", "subscriptionDataSet": []}]});
    let mut c = Client::connect(&vip, T).unwrap();
    let r = c
        .invoke(
            RemotingCommand::request(rq::HEART_BEAT, 0).with_body(hb.to_string().into_bytes()),
            T,
        )
        .unwrap();
    assert_eq!(r.code, rs::SUCCESS);
    let r = call(
        &master,
        RemotingCommand::request(rq::GET_CONSUMER_LIST_BY_GROUP, 0)
            .with_field("consumerGroup", "VG"),
    );
    assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
    assert!(String::from_utf8_lossy(&r.body).contains("vip-client"));
}

fn heartbeat_cmd(client_id: &str, group: &str) -> RemotingCommand {
    let hb = serde_json::json!({"clientID": client_id, "producerDataSet": [],
        "consumerDataSet": [{"groupName": group,
            "subscriptionDataSet": [{"topic": TOPIC, "subString": "*"}]}]});
    RemotingCommand::request(rq::HEART_BEAT, 0).with_body(hb.to_string().into_bytes())
}

/// Reads from `c` until a NOTIFY_CONSUMER_IDS_CHANGED for `group` arrives (other frames,
/// e.g. responses, are skipped); panics after the deadline.
fn expect_notice(c: &mut Client, group: &str, what: &str) {
    let deadline = Instant::now() + T;
    for _ in 0..1000 {
        let cmd = c
            .read_command(deadline)
            .unwrap_or_else(|e| panic!("{what}: no NOTIFY_CONSUMER_IDS_CHANGED: {e}"));
        if cmd.code == rq::NOTIFY_CONSUMER_IDS_CHANGED && !cmd.is_response() {
            assert!(cmd.is_oneway(), "{what}: the notice is oneway");
            assert_eq!(cmd.field("consumerGroup"), Some(group), "{what}");
            return;
        }
    }
    panic!("{what}: no notice among 1000 frames");
}

#[test]
fn consumers_hear_of_joins_and_leaves_of_their_group() {
    let s = Setup::start(2);
    let master = setup_topic(&s);
    let mut a = Client::connect(&master, T).unwrap();
    let r = raw_call(&mut a, heartbeat_cmd("client-a", "NG").with_opaque(1));
    assert_eq!((r.opaque, r.code), (1, rs::SUCCESS));
    expect_notice(&mut a, "NG", "A on its own join");
    // The same heartbeat again changes nothing: the frames after its answer are the
    // answer to the next request, no notice.
    let r = raw_call(&mut a, heartbeat_cmd("client-a", "NG").with_opaque(2));
    assert_eq!((r.opaque, r.is_response()), (2, true));
    let r = raw_call(&mut a, max_offset_cmd().with_opaque(3));
    assert_eq!((r.opaque, r.is_response()), (3, true), "code {}", r.code);

    // B joins: A and B are told.
    let mut b = Client::connect(&master, T).unwrap();
    b.send_raw(
        &heartbeat_cmd("client-b", "NG").encode().unwrap(),
        Instant::now() + T,
    )
    .unwrap();
    expect_notice(&mut a, "NG", "A on B's join");
    expect_notice(&mut b, "NG", "B on its own join");

    // A consumer of another group is not told of NG's changes.
    let mut other = Client::connect(&master, T).unwrap();
    let r = raw_call(
        &mut other,
        heartbeat_cmd("client-o", "OTHER").with_opaque(1),
    );
    assert_eq!((r.opaque, r.code), (1, rs::SUCCESS));
    expect_notice(
        &mut other,
        "OTHER",
        "the other group's consumer on its own join",
    );

    // B unregisters: A is told.
    let r = b
        .invoke(
            RemotingCommand::request(rq::UNREGISTER_CLIENT, 0)
                .with_field("clientID", "client-b")
                .with_field("consumerGroup", "NG"),
            T,
        )
        .unwrap();
    assert_eq!(r.code, rs::SUCCESS);
    expect_notice(&mut a, "NG", "A on B's unregistration");

    // B joins again and its connection closes: A is told both times.
    b.send_raw(
        &heartbeat_cmd("client-b", "NG").encode().unwrap(),
        Instant::now() + T,
    )
    .unwrap();
    expect_notice(&mut a, "NG", "A on B's second join");
    drop(b);
    expect_notice(&mut a, "NG", "A on B's connection closing");
    let r = call(
        &master,
        RemotingCommand::request(rq::GET_CONSUMER_LIST_BY_GROUP, 0)
            .with_field("consumerGroup", "NG"),
    );
    let list = String::from_utf8_lossy(&r.body).into_owned();
    assert!(
        list.contains("client-a") && !list.contains("client-b"),
        "{list}"
    );

    // `other` heard nothing of NG (a notice to it would have been queued with A's,
    // before them): its next frame is the answer to its own request.
    let r = raw_call(&mut other, max_offset_cmd().with_opaque(77));
    assert_eq!((r.opaque, r.is_response()), (77, true), "code {}", r.code);
}

fn max_offset_cmd() -> RemotingCommand {
    RemotingCommand::request(rq::GET_MAX_OFFSET, 0)
        .with_field("topic", TOPIC)
        .with_field("queueId", "0")
}

/// Sends `cmd` as it is (its opaque kept) and returns the next frame read, whatever it is.
fn raw_call(c: &mut Client, cmd: RemotingCommand) -> RemotingCommand {
    let deadline = Instant::now() + T;
    c.send_raw(&cmd.encode().unwrap(), deadline).unwrap();
    c.read_command(deadline).unwrap()
}

trait WithOpaque {
    fn with_opaque(self, opaque: i32) -> Self;
}

impl WithOpaque for RemotingCommand {
    fn with_opaque(mut self, opaque: i32) -> Self {
        self.opaque = opaque;
        self
    }
}

#[test]
fn sql92_filters_are_refused_with_rocketmqs_answer_never_served_as_tags() {
    let s = Setup::start(2);
    let master = setup_topic(&s);
    let r = send_v2(&master, TOPIC, "sql-0", "TagA", b"x");
    assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
    let want = Some("The broker does not support consumer to filter message by SQL92");
    // The expression in the pull (subscription flag).
    let r = call(
        &master,
        pull_cmd(0, 0, "a > 5", 0).with_field("expressionType", "SQL92"),
    );
    assert_eq!(r.code, rs::SYSTEM_ERROR);
    assert_eq!(r.remark.as_deref(), want);
    // The expression from a heartbeat, pulled without the subscription flag.
    let hb = serde_json::json!({"clientID": "sql-client", "producerDataSet": [],
        "consumerDataSet": [{"groupName": "SQLG", "subscriptionDataSet": [
            {"topic": TOPIC, "subString": "TAGS = 'TagA'", "expressionType": "SQL92"}]}]});
    let mut c = Client::connect(&master, T).unwrap();
    let r = c
        .invoke(
            RemotingCommand::request(rq::HEART_BEAT, 0).with_body(hb.to_string().into_bytes()),
            T,
        )
        .unwrap();
    assert_eq!(r.code, rs::SUCCESS);
    let pull = pull_cmd(0, 0, "", 0)
        .with_field("consumerGroup", "SQLG")
        .with_field("sysFlag", "0");
    let r = c.invoke(pull, T).unwrap();
    assert_eq!((r.code, r.remark.as_deref()), (rs::SYSTEM_ERROR, want));
    // CHECK_CLIENT_CONFIG: the Java client's check before it starts.
    let check = |ty: &str| {
        let body = serde_json::json!({"clientId": "c", "group": "SQLG", "subscriptionData":
            {"topic": TOPIC, "subString": "a > 1", "expressionType": ty}});
        call(
            &master,
            RemotingCommand::request(rq::CHECK_CLIENT_CONFIG, 0)
                .with_body(body.to_string().into_bytes()),
        )
    };
    let r = check("SQL92");
    assert_eq!((r.code, r.remark.as_deref()), (rs::SYSTEM_ERROR, want));
    assert_eq!(check("TAG").code, rs::SUCCESS);
    // TAG pulls are served as before.
    let r = call(&master, pull_cmd(0, 0, "*", 0));
    assert!(
        r.code == rs::SUCCESS || r.code == code::PULL_NOT_FOUND,
        "{}",
        r.code
    );
}

#[test]
fn admin_codes_config_connections_consumers_of_a_topic_acl_info() {
    let s = Setup::start(2);
    let master = setup_topic(&s);
    // Clients: a producer and a consumer on one connection.
    let hb = serde_json::json!({"clientID": "admin-client",
        "producerDataSet": [{"groupName": "APG"}],
        "consumerDataSet": [{"groupName": "ACG",
            "subscriptionDataSet": [{"topic": TOPIC, "subString": "TagA || TagB"}]}]});
    let mut c = Client::connect(&master, T).unwrap();
    let r = c
        .invoke(
            RemotingCommand::request(rq::HEART_BEAT, 0).with_body(hb.to_string().into_bytes()),
            T,
        )
        .unwrap();
    assert_eq!(r.code, rs::SUCCESS);

    let body = |r: &RemotingCommand| json::parse_lenient(&r.body).unwrap();
    let r = call(
        &master,
        RemotingCommand::request(rq::GET_CONSUMER_CONNECTION_LIST, 0)
            .with_field("consumerGroup", "ACG"),
    );
    assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
    let v = body(&r);
    assert_eq!(v["connectionSet"][0]["clientId"], "admin-client");
    assert_eq!(
        v["connectionSet"][0]["clientAddr"],
        c.local_addr().unwrap().to_string()
    );
    assert_eq!(v["connectionSet"][0]["language"], "JAVA");
    assert_eq!(v["subscriptionTable"][TOPIC]["tagsSet"][1], "TagB");
    let r = call(
        &master,
        RemotingCommand::request(rq::GET_CONSUMER_CONNECTION_LIST, 0)
            .with_field("consumerGroup", "NOBODY"),
    );
    assert_eq!(r.code, code::CONSUMER_NOT_ONLINE);
    assert_eq!(
        r.remark.as_deref(),
        Some("the consumer group[NOBODY] not online")
    );

    let r = call(
        &master,
        RemotingCommand::request(rq::GET_PRODUCER_CONNECTION_LIST, 0)
            .with_field("producerGroup", "APG"),
    );
    assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
    assert_eq!(body(&r)["connectionSet"][0]["clientId"], "admin-client");
    let r = call(
        &master,
        RemotingCommand::request(rq::GET_PRODUCER_CONNECTION_LIST, 0)
            .with_field("producerGroup", "NOPG"),
    );
    assert_eq!(r.code, rs::SYSTEM_ERROR);

    // Consumers of the topic: the subscribed group and a group with an offset.
    let r = call(
        &master,
        RemotingCommand::request(rq::UPDATE_CONSUMER_OFFSET, 0)
            .with_field("consumerGroup", "OFFSETG")
            .with_field("topic", TOPIC)
            .with_field("queueId", "0")
            .with_field("commitOffset", "0"),
    );
    assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
    let r = call(
        &master,
        RemotingCommand::request(rq::QUERY_TOPIC_CONSUME_BY_WHO, 0).with_field("topic", TOPIC),
    );
    assert_eq!(r.code, rs::SUCCESS);
    let groups: Vec<String> = body(&r)["groupList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap().to_string())
        .collect();
    assert_eq!(groups, vec!["ACG".to_string(), "OFFSETG".to_string()]);

    // Broker config: properties text; one dynamic key changes, others are refused.
    let get_config = || {
        let r = call(&master, RemotingCommand::request(rq::GET_BROKER_CONFIG, 0));
        assert_eq!(r.code, rs::SUCCESS);
        assert!(r.field("version").unwrap().contains("counter"));
        String::from_utf8(r.body).unwrap()
    };
    let text = get_config();
    assert!(
        text.lines().any(|l| l == format!("brokerName={GROUP}")),
        "{text}"
    );
    assert!(text
        .lines()
        .any(|l| l == "notifyConsumerIdsChangedEnable=true"));
    let update = |props: &str| {
        call(
            &master,
            RemotingCommand::request(rq::UPDATE_BROKER_CONFIG, 0)
                .with_body(props.as_bytes().to_vec()),
        )
    };
    let r = update("listenPort=1\n");
    assert_eq!(r.code, rs::NO_PERMISSION);
    assert!(r.remark.unwrap().contains("'listenPort'"));
    let r = update("notifyConsumerIdsChangedEnable=maybe\n");
    assert_eq!(r.code, rs::INVALID_PARAMETER);
    assert_eq!(
        update("notifyConsumerIdsChangedEnable=false\n").code,
        rs::SUCCESS
    );
    assert!(get_config()
        .lines()
        .any(|l| l == "notifyConsumerIdsChangedEnable=false"));

    let r = call(
        &master,
        RemotingCommand::request(rq::CLEAN_EXPIRED_CONSUMEQUEUE, 0),
    );
    assert_eq!(r.code, rs::SUCCESS);
    let r = call(
        &master,
        RemotingCommand::request(rq::GET_BROKER_CLUSTER_ACL_INFO, 0),
    );
    assert_eq!(r.code, rs::SUCCESS);
    assert_eq!(r.field("brokerName"), Some(GROUP));
    assert_eq!(r.field("clusterName"), Some("RaftCluster"));
    assert_eq!(r.field("brokerAddr"), Some(master.as_str()));
}

/// The classic send header (code 10, long field names), a oneway offset update, a client
/// leaving with UNREGISTER_CLIENT, and DELETE_TOPIC_IN_BROKER taking a topic out of the
/// broker and, at its next registration, out of the name server's route.
#[test]
fn a_v1_send_a_oneway_offset_update_unregister_and_topic_delete() {
    let s = Setup::start(4);
    let ns = s.namesrv();
    let master = setup_topic(&s);
    let mi = s.index_of(&master);

    // SEND_MESSAGE (10): SendMessageRequestHeader's own field names.
    let props = encode_properties([("KEYS", "v1-key"), ("TAGS", "TagV1"), ("WAIT", "true")]);
    let r = call(
        &master,
        RemotingCommand::request(rq::SEND_MESSAGE, 0)
            .with_field("producerGroup", "PG")
            .with_field("topic", TOPIC)
            .with_field("defaultTopic", "TBW102")
            .with_field("defaultTopicQueueNums", "4")
            .with_field("queueId", "1")
            .with_field("sysFlag", "0")
            .with_field("bornTimestamp", "1700000000000")
            .with_field("flag", "0")
            .with_field("properties", props)
            .with_field("reconsumeTimes", "0")
            .with_field("unitMode", "false")
            .with_field("batch", "false")
            .with_body(b"v1-body".to_vec()),
    );
    assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
    assert_eq!(r.field("queueId"), Some("1"));
    let off: u64 = r.field("queueOffset").unwrap().parse().unwrap();
    let r = wait_for("the v1 message in queue 1", || {
        let r = call(&master, pull_cmd(1, off, "TagV1", 0));
        (r.code == rs::SUCCESS).then_some(r)
    });
    let recs = records(&r.body);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].body.as_ref(), b"v1-body");
    assert_eq!(recs[0].born_timestamp, 1_700_000_000_000);

    // UPDATE_CONSUMER_OFFSET as a oneway request: no answer, the offset is stored.
    let mut c = Client::connect(&master, T).unwrap();
    c.invoke_oneway(
        RemotingCommand::request(rq::UPDATE_CONSUMER_OFFSET, 0)
            .with_field("consumerGroup", "CG1")
            .with_field("topic", TOPIC)
            .with_field("queueId", "1")
            .with_field("commitOffset", "7"),
        T,
    )
    .unwrap();
    wait_for("the oneway offset on master and slaves", || {
        (0..3)
            .all(|i| {
                let r = call(
                    &s.member(i).addr,
                    RemotingCommand::request(rq::QUERY_CONSUMER_OFFSET, 0)
                        .with_field("consumerGroup", "CG1")
                        .with_field("topic", TOPIC)
                        .with_field("queueId", "1"),
                );
                r.code == rs::SUCCESS && offset_field(&r) == 7
            })
            .then_some(())
    });
    // The oneway request got no response: the next one on the same connection is answered
    // with its own opaque.
    let next = RemotingCommand::request(rq::GET_BROKER_RUNTIME_INFO, 42);
    c.send_raw(&next.encode().unwrap(), Instant::now() + T)
        .unwrap();
    let r = c.read_command(Instant::now() + T).unwrap();
    assert!(r.is_response());
    assert_eq!((r.code, r.opaque), (rs::SUCCESS, 42));

    // UNREGISTER_CLIENT (35): the consumer leaves although its connection stays open.
    let hb = serde_json::json!({
        "clientID": "127.0.0.1@77",
        "producerDataSet": [],
        "consumerDataSet": [{"groupName": "CG1", "consumeType": "CONSUME_PASSIVELY",
            "messageModel": "CLUSTERING", "consumeFromWhere": "CONSUME_FROM_LAST_OFFSET",
            "subscriptionDataSet": [{"topic": TOPIC, "subString": "*"}], "unitMode": false}],
    });
    let r = c
        .invoke(
            RemotingCommand::request(rq::HEART_BEAT, 0).with_body(hb.to_string().into_bytes()),
            T,
        )
        .unwrap();
    assert_eq!(r.code, rs::SUCCESS);
    let listed = || {
        let r = call(
            &master,
            RemotingCommand::request(rq::GET_CONSUMER_LIST_BY_GROUP, 0)
                .with_field("consumerGroup", "CG1"),
        );
        if r.code != rs::SUCCESS {
            return Vec::new();
        }
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        v["consumerIdList"]
            .as_array()
            .map(|a| a.iter().map(|x| x.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    };
    assert_eq!(listed(), vec!["127.0.0.1@77".to_string()]);
    let r = c
        .invoke(
            RemotingCommand::request(rq::UNREGISTER_CLIENT, 0)
                .with_field("clientID", "127.0.0.1@77")
                .with_field("consumerGroup", "CG1"),
            T,
        )
        .unwrap();
    assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
    assert!(listed().is_empty(), "the unregistered consumer is gone");

    // DELETE_TOPIC_IN_BROKER (215).
    let other = "TopicToDelete";
    let r = call(
        &master,
        RemotingCommand::request(rq::UPDATE_AND_CREATE_TOPIC, 0)
            .with_field("topic", other)
            .with_field("readQueueNums", "1")
            .with_field("writeQueueNums", "1")
            .with_field("perm", "6"),
    );
    assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
    wait_for("the new topic's route", || route(&ns, other));
    let r = call(
        &master,
        RemotingCommand::request(rq::DELETE_TOPIC_IN_BROKER, 0).with_field("topic", other),
    );
    assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
    assert!(s.member(mi).broker.topic(other).is_err());
    wait_for("the deleted topic gone on every member", || {
        (0..3)
            .all(|i| s.member(i).broker.topic(other).is_err())
            .then_some(())
    });
    let r = call(
        &master,
        RemotingCommand::request(rq::GET_ALL_TOPIC_CONFIG, 0),
    );
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert!(v["topicConfigTable"][other].is_null());
    assert!(
        v["topicConfigTable"][TOPIC].is_object(),
        "the other topic stays"
    );
    wait_for("the deleted topic out of the name server's route", || {
        route(&ns, other).is_none().then_some(())
    });
}
