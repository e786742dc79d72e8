//! The name server over the wire: registration as a Java 4.9 broker sends it, routes and
//! cluster info as clients parse them, leader changes, brokers dropping out.

mod common;

use common::wait_for;
use rmqraft::remoting::client::Client;
use rmqraft::remoting::codec::{RemotingCommand, SerializeType};
use rmqraft::remoting::codes::{request as rq, response as rs};
use rmqraft::remoting::json::{self, Value};
use rmqraft::remoting::namesrv::{java_crc32, NameServer, NameServerConfig};
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

fn start() -> NameServer {
    common::init_logging();
    NameServer::start("127.0.0.1:0".parse().unwrap()).unwrap()
}

fn connect(ns: &NameServer) -> Client {
    Client::connect(&ns.local_addr().to_string(), T).unwrap()
}

/// A RegisterBrokerBody as a 4.9 broker's fastjson writes it.
fn register_body(topics: &[(&str, i32, i32, i32)], counter: u64) -> Vec<u8> {
    let table: Vec<String> = topics
        .iter()
        .map(|(t, r, w, p)| {
            format!(
                r#""{t}":{{"attributes":{{}},"order":false,"perm":{p},"readQueueNums":{r},"topicFilterType":"SINGLE_TAG","topicName":"{t}","topicSysFlag":0,"writeQueueNums":{w}}}"#
            )
        })
        .collect();
    format!(
        r#"{{"filterServerList":[],"topicConfigSerializeWrapper":{{"dataVersion":{{"counter":{counter},"stateVersion":0,"timestamp":1700000000000}},"topicConfigTable":{{{}}}}}}}"#,
        table.join(",")
    )
    .into_bytes()
}

fn register(
    c: &mut Client,
    name: &str,
    addr: &str,
    id: i64,
    topics: &[(&str, i32, i32, i32)],
) -> RemotingCommand {
    let body = register_body(topics, 1);
    let req = RemotingCommand::request(rq::REGISTER_BROKER, 0)
        .with_field("brokerName", name)
        .with_field("brokerAddr", addr)
        .with_field("clusterName", "DefaultCluster")
        .with_field("haServerAddr", addr)
        .with_field("brokerId", id.to_string())
        .with_field("compressed", "false")
        .with_field("bodyCrc32", java_crc32(&body).to_string())
        .with_body(body);
    let resp = c.invoke(req, T).unwrap();
    assert_eq!(resp.code, rs::SUCCESS, "{:?}", resp.remark);
    resp
}

fn route(c: &mut Client, topic: &str) -> Result<Value, RemotingCommand> {
    let resp = c
        .invoke(
            RemotingCommand::request(rq::GET_ROUTEINFO_BY_TOPIC, 0).with_field("topic", topic),
            T,
        )
        .unwrap();
    if resp.code != rs::SUCCESS {
        return Err(resp);
    }
    Ok(serde_json::from_slice(&resp.body).expect("route is standard JSON"))
}

fn addrs_of(route: &Value, name: &str) -> Vec<(String, String)> {
    let b = route["brokerDatas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["brokerName"] == name)
        .unwrap_or_else(|| panic!("{name} in {route}"));
    b["brokerAddrs"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn registered_broker_is_routed_as_clients_parse_it() {
    let ns = start();
    let mut broker = connect(&ns);
    register(
        &mut broker,
        "broker-a",
        "127.0.0.1:30911",
        0,
        &[("TopicTest", 4, 8, 6)],
    );
    let mut client = connect(&ns);
    let r = route(&mut client, "TopicTest").unwrap();
    assert_eq!(
        r,
        serde_json::json!({
            "brokerDatas": [{
                "cluster": "DefaultCluster",
                "brokerName": "broker-a",
                "brokerAddrs": {"0": "127.0.0.1:30911"},
                "enableActingMaster": false
            }],
            "queueDatas": [{
                "brokerName": "broker-a",
                "readQueueNums": 4,
                "writeQueueNums": 8,
                "perm": 6,
                "topicSysFlag": 0
            }],
            "filterServerTable": {}
        })
    );
    // The same in the binary header encoding, answered in it.
    let mut req =
        RemotingCommand::request(rq::GET_ROUTEINFO_BY_TOPIC, 0).with_field("topic", "TopicTest");
    req.serialize_type = SerializeType::RocketMq;
    let resp = client.invoke(req, T).unwrap();
    assert_eq!(
        (resp.code, resp.serialize_type),
        (rs::SUCCESS, SerializeType::RocketMq)
    );

    let err = route(&mut client, "NoSuchTopic").unwrap_err();
    assert_eq!(err.code, rs::TOPIC_NOT_EXIST);
    assert!(err.remark.unwrap().contains("NoSuchTopic"));

    let info = client
        .invoke(RemotingCommand::request(rq::GET_BROKER_CLUSTER_INFO, 0), T)
        .unwrap();
    let info: Value = json::parse_lenient(&info.body).unwrap();
    assert_eq!(
        info["clusterAddrTable"]["DefaultCluster"],
        serde_json::json!(["broker-a"])
    );
    assert_eq!(
        info["brokerAddrTable"]["broker-a"]["brokerAddrs"]["0"],
        "127.0.0.1:30911"
    );

    let list = client
        .invoke(
            RemotingCommand::request(rq::GET_ALL_TOPIC_LIST_FROM_NAMESERVER, 0),
            T,
        )
        .unwrap();
    let list: Value = serde_json::from_slice(&list.body).unwrap();
    assert_eq!(list["topicList"], serde_json::json!(["TopicTest"]));
}

#[test]
fn leader_change_swaps_broker_id_zero() {
    let ns = start();
    let (a, b) = ("127.0.0.1:30911", "127.0.0.1:30921");
    let mut ca = connect(&ns);
    let mut cb = connect(&ns);
    register(&mut ca, "RaftNode00", a, 0, &[("T", 4, 4, 6)]);
    let resp = register(&mut cb, "RaftNode00", b, 2, &[("T", 4, 4, 6)]);
    assert_eq!(
        resp.field("masterAddr"),
        Some(a),
        "a follower learns its master"
    );
    let mut client = connect(&ns);
    let r = route(&mut client, "T").unwrap();
    assert_eq!(
        addrs_of(&r, "RaftNode00"),
        vec![("0".into(), a.into()), ("2".into(), b.into())]
    );
    // b is elected: it registers as 0 at once and replaces a there, before a hears of it.
    register(&mut cb, "RaftNode00", b, 0, &[("T", 4, 4, 6)]);
    let r = route(&mut client, "T").unwrap();
    assert_eq!(addrs_of(&r, "RaftNode00"), vec![("0".into(), b.into())]);
    register(&mut ca, "RaftNode00", a, 1, &[("T", 4, 4, 6)]);
    let r = route(&mut client, "T").unwrap();
    assert_eq!(
        addrs_of(&r, "RaftNode00"),
        vec![("0".into(), b.into()), ("1".into(), a.into())]
    );
    // a's late unregistration of id 0 does not remove b.
    let resp = ca
        .invoke(
            RemotingCommand::request(rq::UNREGISTER_BROKER, 0)
                .with_field("brokerName", "RaftNode00")
                .with_field("brokerAddr", a)
                .with_field("clusterName", "DefaultCluster")
                .with_field("brokerId", "0"),
            T,
        )
        .unwrap();
    assert_eq!(resp.code, rs::SUCCESS);
    let r = route(&mut client, "T").unwrap();
    assert_eq!(
        addrs_of(&r, "RaftNode00"),
        vec![("0".into(), b.into()), ("1".into(), a.into())]
    );
    // ... and a still drops out with its connection.
    drop(ca);
    wait_for("a drops out", || (ns.brokers().len() == 1).then_some(()));
    let r = route(&mut client, "T").unwrap();
    assert_eq!(addrs_of(&r, "RaftNode00"), vec![("0".into(), b.into())]);
}

#[test]
fn closed_connection_drops_its_brokers() {
    let ns = start();
    let mut ca = connect(&ns);
    register(&mut ca, "g1", "127.0.0.1:1001", 0, &[("T", 4, 4, 6)]);
    register(
        &mut ca,
        "g2",
        "127.0.0.1:1002",
        0,
        &[("T", 4, 4, 6), ("U", 1, 1, 6)],
    );
    let mut cb = connect(&ns);
    register(&mut cb, "g1", "127.0.0.1:2001", 1, &[("T", 4, 4, 6)]);
    assert_eq!(ns.brokers().len(), 3);
    drop(ca);
    wait_for("the brokers of the closed connection drop", || {
        (ns.brokers().len() == 1).then_some(())
    });
    let mut client = connect(&ns);
    let r = route(&mut client, "T").unwrap();
    // g1 keeps its follower (and the queues its master registered); g2 is gone with U.
    assert_eq!(
        addrs_of(&r, "g1"),
        vec![("1".into(), "127.0.0.1:2001".into())]
    );
    assert_eq!(r["queueDatas"].as_array().unwrap().len(), 1);
    assert_eq!(
        route(&mut client, "U").unwrap_err().code,
        rs::TOPIC_NOT_EXIST
    );
}

#[test]
fn broker_that_stops_registering_expires() {
    common::init_logging();
    let mut config = NameServerConfig::new("127.0.0.1:0".parse().unwrap());
    config.broker_expiry = Duration::from_millis(300);
    config.scan_interval = Duration::from_millis(50);
    let ns = NameServer::start_with(config).unwrap();
    let mut c = connect(&ns);
    register(&mut c, "g1", "127.0.0.1:1001", 0, &[("T", 4, 4, 6)]);
    assert_eq!(ns.brokers().len(), 1);
    wait_for("expiry", || ns.brokers().is_empty().then_some(()));
    assert_eq!(route(&mut c, "T").unwrap_err().code, rs::TOPIC_NOT_EXIST);
}

#[test]
fn bad_registrations_are_refused_with_a_reason() {
    let ns = start();
    let mut c = connect(&ns);
    let resp = c
        .invoke(
            RemotingCommand::request(rq::REGISTER_BROKER, 0).with_field("brokerName", "x"),
            T,
        )
        .unwrap();
    assert_eq!(resp.code, rs::SYSTEM_ERROR);
    assert_eq!(
        resp.remark.as_deref(),
        Some("the custom field <brokerAddr> is null")
    );
    let body = register_body(&[("T", 1, 1, 6)], 1);
    let base = RemotingCommand::request(rq::REGISTER_BROKER, 0)
        .with_field("brokerName", "x")
        .with_field("brokerAddr", "127.0.0.1:1")
        .with_field("clusterName", "C")
        .with_field("haServerAddr", "")
        .with_field("brokerId", "0");
    let resp = c
        .invoke(
            base.clone()
                .with_field("bodyCrc32", "12345")
                .with_body(body.clone()),
            T,
        )
        .unwrap();
    assert_eq!(
        (resp.code, resp.remark.as_deref()),
        (rs::SYSTEM_ERROR, Some("crc32 not match"))
    );
    let resp = c
        .invoke(base.clone().with_body(b"{not json".to_vec()), T)
        .unwrap();
    assert_eq!(resp.code, rs::SYSTEM_ERROR);
    assert!(resp.remark.unwrap().contains("RegisterBrokerBody"));
    assert!(ns.brokers().is_empty(), "nothing was registered");
}

#[test]
fn kv_config_and_cheap_codes_answer_as_rocketmq() {
    let ns = start();
    let mut c = connect(&ns);
    let get = RemotingCommand::request(rq::GET_KV_CONFIG, 0)
        .with_field("namespace", "ORDER_TOPIC_CONFIG")
        .with_field("key", "T");
    let resp = c.invoke(get.clone(), T).unwrap();
    assert_eq!(resp.code, rs::QUERY_NOT_FOUND);
    assert_eq!(
        resp.remark.as_deref(),
        Some("No config item, Namespace: ORDER_TOPIC_CONFIG Key: T")
    );
    let put = RemotingCommand::request(rq::PUT_KV_CONFIG, 0)
        .with_field("namespace", "ORDER_TOPIC_CONFIG")
        .with_field("key", "T")
        .with_field("value", "broker-a:4");
    assert_eq!(c.invoke(put, T).unwrap().code, rs::SUCCESS);
    let resp = c.invoke(get, T).unwrap();
    assert_eq!(
        (resp.code, resp.field("value")),
        (rs::SUCCESS, Some("broker-a:4"))
    );
    let list = c
        .invoke(
            RemotingCommand::request(rq::GET_KVLIST_BY_NAMESPACE, 0)
                .with_field("namespace", "ORDER_TOPIC_CONFIG"),
            T,
        )
        .unwrap();
    let table: Value = serde_json::from_slice(&list.body).unwrap();
    assert_eq!(table["table"]["T"], "broker-a:4");

    register(&mut c, "g1", "127.0.0.1:1001", 0, &[("T", 4, 4, 6)]);
    let wipe = c
        .invoke(
            RemotingCommand::request(rq::WIPE_WRITE_PERM_OF_BROKER, 0)
                .with_field("brokerName", "g1"),
            T,
        )
        .unwrap();
    assert_eq!(wipe.field("wipeTopicCount"), Some("1"));
    assert_eq!(route(&mut c, "T").unwrap()["queueDatas"][0]["perm"], 4);
    let by_cluster = c
        .invoke(
            RemotingCommand::request(rq::GET_TOPICS_BY_CLUSTER, 0)
                .with_field("cluster", "DefaultCluster"),
            T,
        )
        .unwrap();
    let v: Value = serde_json::from_slice(&by_cluster.body).unwrap();
    assert_eq!(v["topicList"], serde_json::json!(["T"]));
    let resp = c
        .invoke(RemotingCommand::request(rq::PULL_MESSAGE, 0), T)
        .unwrap();
    assert_eq!(
        resp.code,
        rs::REQUEST_CODE_NOT_SUPPORTED,
        "broker codes are not a name server's"
    );
}

#[test]
fn namesrv_command_serves_until_sigterm() {
    let port = common::free_ports(1)[0];
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rmqraft"))
        .args(["namesrv", "-p", &port.to_string(), "--listen", "127.0.0.1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut c = wait_for("the name server listens", || {
        Client::connect(&format!("127.0.0.1:{port}"), T).ok()
    });
    let resp = c
        .invoke(RemotingCommand::request(rq::GET_BROKER_CLUSTER_INFO, 0), T)
        .unwrap();
    assert_eq!(resp.code, rs::SUCCESS);
    // SAFETY: signals a child process this test started.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = wait_for("exit", || child.try_wait().unwrap());
    assert!(status.success(), "{status:?}");
}
