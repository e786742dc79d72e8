//! Transactions on the wire, spoken with the crate's own blocking client: half messages
//! sent with SEND_MESSAGE and TRANSACTION_PREPARED, END_TRANSACTION commit / rollback /
//! unknown (two-way and oneway), CHECK_TRANSACTION_STATE pushed to the producer group's
//! heartbeat connection and answered from the check.

mod common;

use common::{free_ports, group_props, init_logging, wait_for};
use rmqraft::broker::record::{encode_properties, parse_offset_msg_id, MessageRecord};
use rmqraft::broker::Broker;
use rmqraft::remoting::client::Client;
use rmqraft::remoting::codec::RemotingCommand;
use rmqraft::remoting::codes::{request as rq, response as rs};
use rmqraft::remoting::txn::{CHECK_TRANSACTION_STATE, END_TRANSACTION};
use rmqraft::remoting::{BrokerSide, BrokerSideConfig};
use rmqraft::{Engine, Role};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);
const TOPIC: &str = "TopicTxnWire";
const PGROUP: &str = "pg_wire";

struct Half {
    uniq: String,
    offset: u64,
    queue_offset: u64,
}

fn send_half(c: &mut Client, n: usize) -> Half {
    let uniq = format!("0A0000010000{n:020X}");
    let props = encode_properties([
        ("TRAN_MSG", "true"),
        ("PGROUP", PGROUP),
        ("UNIQ_KEY", uniq.as_str()),
        ("TAGS", "TagW"),
    ]);
    let req = RemotingCommand::request(rq::SEND_MESSAGE, 0)
        .with_field("producerGroup", PGROUP)
        .with_field("topic", TOPIC)
        .with_field("defaultTopic", "TBW102")
        .with_field("defaultTopicQueueNums", "4")
        .with_field("queueId", "0")
        .with_field("sysFlag", "4")
        .with_field("bornTimestamp", "1700000000000")
        .with_field("flag", "0")
        .with_field("properties", props)
        .with_body(format!("wire-{n}").into_bytes());
    let resp = c.invoke(req, T).unwrap();
    assert_eq!(resp.code, rs::SUCCESS, "{:?}", resp.remark);
    let msg_id = resp.field("msgId").unwrap();
    let (_, offset) = parse_offset_msg_id(msg_id).expect("an offset msg id");
    Half {
        uniq,
        offset: offset as u64,
        queue_offset: resp.field("queueOffset").unwrap().parse().unwrap(),
    }
}

fn end(h: &Half, state: i32, from_check: bool, commit_log_offset: u64) -> RemotingCommand {
    RemotingCommand::request(END_TRANSACTION, 0)
        .with_field("producerGroup", PGROUP)
        .with_field("tranStateTableOffset", h.queue_offset.to_string())
        .with_field("commitLogOffset", commit_log_offset.to_string())
        .with_field("commitOrRollback", state.to_string())
        .with_field("fromTransactionCheck", from_check.to_string())
        .with_field("msgId", h.uniq.clone())
        .with_field("transactionId", h.uniq.clone())
}

fn bodies(b: &Broker) -> Vec<String> {
    let mut out = Vec::new();
    for q in 0..4 {
        let Ok(r) = b.pull(TOPIC, q, 0, 64, None, Duration::ZERO) else {
            continue;
        };
        out.extend(
            r.messages
                .iter()
                .map(|m| String::from_utf8_lossy(m.body()).into_owned()),
        );
    }
    out.sort();
    out
}

#[test]
fn end_transaction_and_check_over_the_wire() {
    init_logging();
    let root = tempfile::tempdir().unwrap();
    let raft = free_ports(1);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let extra = format!(
        "listenPort={port}\ntransactionTimeOut=0\ntransactionCheckInterval=200\n\
         transactionCheckMax=100\n"
    );
    let props = group_props("TxnWire", &raft, 0, root.path(), &extra);
    let engine = Engine::open("brokerClusterName=TestCluster").unwrap();
    let group = Arc::new(engine.open_group(&props).unwrap());
    let broker = Arc::new(Broker::open(group, &props).unwrap());
    let config = BrokerSideConfig::from_properties(&props, &broker)
        .unwrap()
        .unwrap();
    let mut side = BrokerSide::start_on(Arc::clone(&broker), config, listener).unwrap();
    wait_for("leadership", || {
        (broker.role().ok()? == Role::Leader).then_some(())
    });
    let addr = format!("127.0.0.1:{port}");
    broker.topic_update(TOPIC, 4, 4, 6, T).unwrap();

    // The producer group's heartbeat connection gets the checks.
    let mut producer = Client::connect(&addr, T).unwrap();
    let hb = format!(
        r#"{{"clientID":"127.0.0.1@txn","producerDataSet":[{{"groupName":"{PGROUP}"}}],"consumerDataSet":[]}}"#
    );
    let r = producer
        .invoke(
            RemotingCommand::request(rq::HEART_BEAT, 0).with_body(hb.into_bytes()),
            T,
        )
        .unwrap();
    assert_eq!(r.code, rs::SUCCESS);

    let mut c = Client::connect(&addr, T).unwrap();
    let halves: Vec<Half> = (0..3).map(|n| send_half(&mut c, n)).collect();
    // Commit two-way, roll back oneway (as clients send it), leave the third unknown.
    let r = c
        .invoke(end(&halves[0], 8, false, halves[0].offset), T)
        .unwrap();
    assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
    c.invoke_oneway(end(&halves[1], 12, false, halves[1].offset), T)
        .unwrap();
    let r = c
        .invoke(end(&halves[2], 0, false, halves[2].offset), T)
        .unwrap();
    assert_eq!(r.code, rs::SUCCESS, "unknown is left for the check");
    // Ending a committed one again: SYSTEM_ERROR naming it.
    let r = c
        .invoke(end(&halves[0], 8, false, halves[0].offset), T)
        .unwrap();
    assert_eq!(r.code, rs::SYSTEM_ERROR);
    assert!(r.remark.as_deref().unwrap_or("").contains(&halves[0].uniq));
    wait_for("the rollback", || {
        (broker.open_transactions().ok()?.len() == 1).then_some(())
    });

    // The check of the third arrives on the heartbeat connection.
    let deadline = Instant::now() + Duration::from_secs(30);
    let check = loop {
        let cmd = producer
            .read_command(deadline)
            .expect("a check before the deadline");
        if cmd.code == CHECK_TRANSACTION_STATE {
            break cmd;
        }
    };
    assert!(check.is_oneway(), "checks are oneway");
    assert_eq!(check.field("msgId"), Some(halves[2].uniq.as_str()));
    assert_eq!(check.field("transactionId"), Some(halves[2].uniq.as_str()));
    let clo: u64 = check.field("commitLogOffset").unwrap().parse().unwrap();
    let tsto: u64 = check
        .field("tranStateTableOffset")
        .unwrap()
        .parse()
        .unwrap();
    let offset_msg_id = check.field("offsetMsgId").unwrap();
    assert_eq!(
        parse_offset_msg_id(offset_msg_id).map(|(_, o)| o as u64),
        Some(clo)
    );
    let (rec, len) = MessageRecord::decode(&check.body).unwrap();
    assert_eq!(len, check.body.len());
    assert_eq!(rec.topic, TOPIC, "the body names the real topic");
    assert_eq!(rec.body.as_ref(), b"wire-2");
    assert_eq!(rec.uniq_key(), Some(halves[2].uniq.as_str()));
    // Answered from the check (oneway, fromTransactionCheck).
    let answered = Half {
        uniq: halves[2].uniq.clone(),
        offset: clo,
        queue_offset: tsto,
    };
    producer
        .invoke_oneway(end(&answered, 8, true, clo), T)
        .unwrap();
    wait_for("the checked commit", || {
        broker.open_transactions().ok()?.is_empty().then_some(())
    });
    assert_eq!(
        bodies(&broker),
        vec!["wire-0".to_string(), "wire-2".to_string()]
    );
    side.stop();
    broker.close();
    broker.group().close();
    engine.close();
}
