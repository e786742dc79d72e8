//! mqadmin's commands in mqadmin's words and flags, speaking RocketMQ's protocol through
//! a name server (`-n`, default 127.0.0.1:9876): clusterList, send, pull, queryMsgByKey,
//! queryMsgById, updateTopic, topicList, topicStatus, consumerProgress,
//! consumerConnection, producerConnection, brokerStatus. Text for people,
//! `--json` (one object per line) for machines.

use lexopt::prelude::*;
use rmqraft::broker::record::{encode_properties, parse_offset_msg_id, MessageRecord};
use rmqraft::remoting::broker_side::{code, GET_CONSUME_STATS, GET_TOPIC_STATS_INFO};
use rmqraft::remoting::client::Client;
use rmqraft::remoting::codec::RemotingCommand;
use rmqraft::remoting::codes::{request as rq, response as rs};
use rmqraft::remoting::json::{self, Value};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The subcommands this file serves.
pub const COMMANDS: [&str; 12] = [
    "clusterList",
    "send",
    "pull",
    "queryMsgByKey",
    "queryMsgById",
    "updateTopic",
    "topicList",
    "topicStatus",
    "consumerProgress",
    "consumerConnection",
    "producerConnection",
    "brokerStatus",
];

const TIMEOUT: Duration = Duration::from_secs(5);
/// How long `send` keeps retrying one message through a failover.
const SEND_RETRY_FOR: Duration = Duration::from_secs(30);

const COMMON: &str =
    "  -n, --namesrvAddr ADDR  the name server(s), 'host:port;host:port' (default 127.0.0.1:9876)
      --json              one JSON object per line
  -h, --help              this text
";

fn usage_of(sub: &str) -> String {
    let (head, example) = match sub {
        "clusterList" => (
            "Usage: rmqraft clusterList [-n ADDR] [--raft] [--json]\n\n\
             Every broker the name server knows, with mqadmin clusterList's columns; --raft adds\n\
             each member's Raft term, last and commit index and role.\n\n  \
             --raft                the Raft columns\n",
            "rmqraft clusterList -n 127.0.0.1:9876 --raft",
        ),
        "send" => (
            "Usage: rmqraft send [-n ADDR] -t TOPIC [-k KEYS] [--tags TAGS] [--body TEXT | --count N --size BYTES]\n\n\
             Sends messages to the master of a group in the topic's route, as a producer does\n\
             (mqadmin sendMessage); through a failover it waits for the new master.\n\n  \
             -t, --topic TOPIC     the topic\n  \
             -k, --key KEYS        the message keys (with --count: KEYS-0, KEYS-1, ...)\n      \
             --tags TAGS         the message tag\n  \
             -b, --body TEXT       the body (default 'Hello RocketMQ')\n  \
             -c, --count N         messages to send (default 1), progress every 10%\n      \
             --size BYTES        generated bodies of BYTES bytes\n",
            "rmqraft send -t TopicTest -k order-1 --tags TagA --body hello",
        ),
        "pull" => (
            "Usage: rmqraft pull [-n ADDR] -t TOPIC -q QUEUE [--offset N] [--count N] [-b BROKER] [--slave]\n\n\
             Pulls committed messages of one queue (of the first group in the route, or -b).\n\n  \
             -t, --topic TOPIC     the topic\n  \
             -q, --queue QUEUE     the queue id\n      \
             --offset N          the first queue offset (default 0)\n  \
             -c, --count N         at most N messages (default 32)\n  \
             -b, --brokerName NAME the group (default: the first in the route)\n      \
             --slave             pull from a slave instead of the master\n",
            "rmqraft pull -t TopicTest -q 0 --offset 0",
        ),
        "queryMsgByKey" => (
            "Usage: rmqraft queryMsgByKey [-n ADDR] -t TOPIC -k KEY\n\n\
             Messages of TOPIC with KEY among their keys, from every group of the route.\n\n  \
             -t, --topic TOPIC     the topic\n  \
             -k, --msgKey KEY      the key\n",
            "rmqraft queryMsgByKey -t TopicTest -k order-1",
        ),
        "queryMsgById" => (
            "Usage: rmqraft queryMsgById [-n ADDR] -i MSGID\n\n\
             The message with this offset msg id (as send prints it).\n\n  \
             -i, --msgId MSGID     the offset msg id (32 hex characters)\n",
            "rmqraft queryMsgById -i 7F00000100007923000000000000012C",
        ),
        "updateTopic" => (
            "Usage: rmqraft updateTopic [-n ADDR] -t TOPIC (-c CLUSTER | -b BROKERADDR) [-r N] [-w N] [-p PERM]\n\n\
             Creates or updates a topic on every master of the cluster, or on one broker.\n\n  \
             -t, --topic TOPIC     the topic\n  \
             -c, --clusterName C   every master of this cluster\n  \
             -b, --brokerAddr A    this broker (a master)\n  \
             -r, --readQueueNums N (default 8)\n  \
             -w, --writeQueueNums N (default 8)\n  \
             -p, --perm PERM       2 write, 4 read, 6 both (default 6)\n",
            "rmqraft updateTopic -c RaftCluster -t TopicTest -r 4 -w 4",
        ),
        "topicList" => (
            "Usage: rmqraft topicList [-n ADDR]\n\nEvery topic the name server routes.\n",
            "rmqraft topicList",
        ),
        "topicStatus" => (
            "Usage: rmqraft topicStatus [-n ADDR] -t TOPIC\n\n\
             Per queue of every group: min and max offset.\n\n  \
             -t, --topic TOPIC     the topic\n",
            "rmqraft topicStatus -t TopicTest",
        ),
        "consumerConnection" => (
            "Usage: rmqraft consumerConnection [-n ADDR] -g GROUP\n\n\
             The consumer clients of GROUP connected to each master, and their subscriptions.\n\n  \
             -g, --groupName GROUP the consumer group\n",
            "rmqraft consumerConnection -g please_rename_unique_group_name",
        ),
        "producerConnection" => (
            "Usage: rmqraft producerConnection [-n ADDR] -g GROUP [-t TOPIC]\n\n\
             The producer clients of GROUP connected to each master (-t is accepted as mqadmin's).\n\n  \
             -g, --producerGroup GROUP the producer group\n",
            "rmqraft producerConnection -g please_rename_unique_group_name -t TopicTest",
        ),
        "brokerStatus" => (
            "Usage: rmqraft brokerStatus [-n ADDR] (-b BROKERADDR | -c CLUSTER)\n\n\
             A broker's runtime status (GET_BROKER_RUNTIME_INFO), or every master's of the cluster.\n\n  \
             -b, --brokerAddr A    this broker\n  \
             -c, --clusterName C   every master of this cluster\n",
            "rmqraft brokerStatus -c RaftCluster",
        ),
        _ => (
            "Usage: rmqraft consumerProgress [-n ADDR] -g GROUP\n\n\
             A consumer group's committed offsets against each queue's max (its lag).\n\n  \
             -g, --groupName GROUP the consumer group\n",
            "rmqraft consumerProgress -g please_rename_unique_group_name",
        ),
    };
    format!("{head}{COMMON}\nExample:\n  {example}\n")
}

#[derive(Default, Debug)]
struct Opts {
    namesrv: String,
    json: bool,
    raft: bool,
    slave: bool,
    topic: Option<String>,
    key: Option<String>,
    tags: Option<String>,
    body: Option<String>,
    count: Option<u64>,
    size: Option<usize>,
    queue: Option<i32>,
    offset: u64,
    msg_id: Option<String>,
    cluster: Option<String>,
    broker: Option<String>,
    read: i32,
    write: i32,
    perm: i32,
    group: Option<String>,
}

fn parse(sub: &str, args: Vec<OsString>) -> Result<Option<Opts>, String> {
    let mut o = Opts {
        namesrv: "127.0.0.1:9876".into(),
        read: 8,
        write: 8,
        perm: 6,
        ..Opts::default()
    };
    let mut p = lexopt::Parser::from_args(args);
    fn num<T: std::str::FromStr>(p: &mut lexopt::Parser, flag: &str) -> Result<T, String> {
        let v = p.value().map_err(|e| e.to_string())?;
        let v = v.to_string_lossy();
        v.parse()
            .map_err(|_| format!("{flag}: '{v}' is not a number"))
    }
    fn text(p: &mut lexopt::Parser) -> Result<String, String> {
        p.value()
            .map_err(|e| e.to_string())?
            .into_string()
            .map_err(|_| "an option value is not UTF-8".to_string())
    }
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Short('h') | Long("help") => return Ok(None),
            Short('n') | Long("namesrvAddr") => o.namesrv = text(&mut p)?,
            Long("json") => o.json = true,
            Long("raft") if sub == "clusterList" => o.raft = true,
            Long("slave") if sub == "pull" => o.slave = true,
            Short('t') | Long("topic") => o.topic = Some(text(&mut p)?),
            Short('k') | Long("key") | Long("msgKey") => o.key = Some(text(&mut p)?),
            Long("tags") => o.tags = Some(text(&mut p)?),
            Short('b') | Long("body") if sub == "send" => o.body = Some(text(&mut p)?),
            Short('c') | Long("count") if sub == "send" || sub == "pull" => {
                o.count = Some(num(&mut p, "--count")?)
            }
            Long("size") => o.size = Some(num(&mut p, "--size")?),
            Short('q') | Long("queue") => o.queue = Some(num(&mut p, "-q")?),
            Long("offset") => o.offset = num(&mut p, "--offset")?,
            Short('i') | Long("msgId") => o.msg_id = Some(text(&mut p)?),
            Short('c') | Long("clusterName") => o.cluster = Some(text(&mut p)?),
            Short('b') | Long("brokerAddr") | Long("brokerName") => o.broker = Some(text(&mut p)?),
            Short('r') | Long("readQueueNums") => o.read = num(&mut p, "-r")?,
            Short('w') | Long("writeQueueNums") => o.write = num(&mut p, "-w")?,
            Short('p') | Long("perm") => o.perm = num(&mut p, "-p")?,
            Short('g') | Long("groupName") | Long("consumerGroup") | Long("producerGroup") => {
                o.group = Some(text(&mut p)?)
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    let need = |what: &Option<String>, flag: &str| -> Result<(), String> {
        match what {
            Some(v) if !v.is_empty() => Ok(()),
            _ => Err(format!("{sub}: give {flag}")),
        }
    };
    match sub {
        "send" | "topicStatus" | "updateTopic" => need(&o.topic, "-t TOPIC")?,
        "pull" => {
            need(&o.topic, "-t TOPIC")?;
            if o.queue.is_none() {
                return Err("pull: give -q QUEUE".into());
            }
        }
        "queryMsgByKey" => {
            need(&o.topic, "-t TOPIC")?;
            need(&o.key, "-k KEY")?;
        }
        "queryMsgById" => need(&o.msg_id, "-i MSGID")?,
        "consumerProgress" | "consumerConnection" | "producerConnection" => {
            need(&o.group, "-g GROUP")?
        }
        "brokerStatus" if o.cluster.is_none() && o.broker.is_none() => {
            return Err("brokerStatus: give -b BROKERADDR or -c CLUSTER".into())
        }
        _ => {}
    }
    if sub == "updateTopic" && o.cluster.is_none() && o.broker.is_none() {
        return Err("updateTopic: give -c CLUSTER or -b BROKERADDR".into());
    }
    if sub == "send" && o.body.is_some() && o.size.is_some() {
        return Err("send: give --body or --size, not both".into());
    }
    if o.count == Some(0) {
        return Err(format!("{sub}: --count must be at least 1"));
    }
    Ok(Some(o))
}

/// Runs `rmqraft SUB args`.
pub fn main(sub: &str, args: Vec<OsString>) -> ExitCode {
    let o = match parse(sub, args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{}", usage_of(sub));
            return ExitCode::SUCCESS;
        }
        Err(m) => {
            eprintln!("rmqraft {sub}: {m} (see `rmqraft {sub} --help`)");
            return ExitCode::from(2);
        }
    };
    // SAFETY: restores the default disposition of one signal (quiet end under `| head`).
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let r = match sub {
        "clusterList" => cluster_list(&o),
        "send" => send(&o),
        "pull" => pull(&o),
        "queryMsgByKey" => query_by_key(&o),
        "queryMsgById" => query_by_id(&o),
        "updateTopic" => update_topic(&o),
        "topicList" => topic_list(&o),
        "topicStatus" => topic_status(&o),
        "consumerConnection" => connections(&o, false),
        "producerConnection" => connections(&o, true),
        "brokerStatus" => broker_status(&o),
        _ => consumer_progress(&o),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(m) => {
            eprintln!("rmqraft {sub}: {m}");
            ExitCode::FAILURE
        }
    }
}

fn call(addr: &str, cmd: RemotingCommand) -> Result<RemotingCommand, String> {
    Client::connect(addr, TIMEOUT)
        .and_then(|mut c| c.invoke(cmd, TIMEOUT))
        .map_err(|e| e.to_string())
}

fn remark(r: &RemotingCommand) -> String {
    format!(
        "code {}: {}",
        r.code,
        r.remark.as_deref().unwrap_or("no remark")
    )
}

fn body_json(r: &RemotingCommand) -> Result<Value, String> {
    json::parse_lenient(&r.body).map_err(|e| format!("a response body is not JSON: {e}"))
}

/// Asks the name servers in turn; the first that answers wins.
fn ask_namesrv(o: &Opts, cmd: RemotingCommand) -> Result<RemotingCommand, String> {
    let mut last = String::from("no name server given");
    for addr in o
        .namesrv
        .split(';')
        .map(str::trim)
        .filter(|a| !a.is_empty())
    {
        match call(addr, cmd.clone()) {
            Ok(r) => return Ok(r),
            Err(e) => last = format!("name server {addr}: {e}"),
        }
    }
    Err(last)
}

/// Cluster info: (cluster -> broker names, broker name -> (cluster, id -> addr)).
type Brokers = BTreeMap<String, (String, BTreeMap<i64, String>)>;

fn cluster_info(o: &Opts) -> Result<Brokers, String> {
    let r = ask_namesrv(o, RemotingCommand::request(rq::GET_BROKER_CLUSTER_INFO, 0))?;
    if r.code != rs::SUCCESS {
        return Err(remark(&r));
    }
    let v = body_json(&r)?;
    let mut out = Brokers::new();
    for (name, b) in v["brokerAddrTable"].as_object().into_iter().flatten() {
        let addrs = b["brokerAddrs"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(id, a)| Some((id.parse().ok()?, a.as_str()?.to_string())))
            .collect();
        let cluster = b["cluster"].as_str().unwrap_or("").to_string();
        out.insert(name.clone(), (cluster, addrs));
    }
    Ok(out)
}

/// A topic's route: broker name -> (id -> addr), and (broker name, write queues, read
/// queues).
struct Route {
    brokers: BTreeMap<String, BTreeMap<i64, String>>,
    queues: Vec<(String, i32, i32)>,
}

fn route(o: &Opts, topic: &str) -> Result<Route, String> {
    let r = ask_namesrv(
        o,
        RemotingCommand::request(rq::GET_ROUTEINFO_BY_TOPIC, 0).with_field("topic", topic),
    )?;
    if r.code == rs::TOPIC_NOT_EXIST {
        return Err(format!("no route for topic {topic}: {}", remark(&r)));
    }
    if r.code != rs::SUCCESS {
        return Err(remark(&r));
    }
    let v = body_json(&r)?;
    let mut brokers = BTreeMap::new();
    for b in v["brokerDatas"].as_array().into_iter().flatten() {
        let name = b["brokerName"].as_str().unwrap_or("").to_string();
        let addrs = b["brokerAddrs"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(id, a)| Some((id.parse().ok()?, a.as_str()?.to_string())))
            .collect();
        brokers.insert(name, addrs);
    }
    let queues = v["queueDatas"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|q| {
            (
                q["brokerName"].as_str().unwrap_or("").to_string(),
                json::as_i32(&q["writeQueueNums"]).unwrap_or(0),
                json::as_i32(&q["readQueueNums"]).unwrap_or(0),
            )
        })
        .collect();
    Ok(Route { brokers, queues })
}

/// The topic's route, or every group of the cluster info while the name server has no
/// route for it yet (a topic a send just created is routed at the next registration).
fn route_or_cluster(o: &Opts, topic: &str) -> Result<Route, String> {
    match route(o, topic) {
        Ok(r) => Ok(r),
        Err(e) if e.starts_with("no route") => {
            let brokers = cluster_info(o)?;
            if brokers.is_empty() {
                return Err(e);
            }
            Ok(Route {
                queues: brokers.keys().map(|b| (b.clone(), 4, 4)).collect(),
                brokers: brokers.into_iter().map(|(k, (_, a))| (k, a)).collect(),
            })
        }
        Err(e) => Err(e),
    }
}

fn runtime_info(addr: &str) -> Result<BTreeMap<String, String>, String> {
    let r = call(
        addr,
        RemotingCommand::request(rq::GET_BROKER_RUNTIME_INFO, 0),
    )?;
    if r.code != rs::SUCCESS {
        return Err(remark(&r));
    }
    let v = body_json(&r)?;
    Ok(v["table"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
        .collect())
}

fn print_table(rows: &[Vec<String>]) {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.len())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, s)| format!("{s:<w$}", w = widths[c]))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

fn cluster_list(o: &Opts) -> Result<(), String> {
    let brokers = cluster_info(o)?;
    let mut rows = vec![vec![
        "#Cluster Name",
        "#Broker Name",
        "#BID",
        "#Addr",
        "#Version",
        "#InTPS(LOAD)",
        "#OutTPS(LOAD)",
        "#PCWait(ms)",
        "#Hour",
        "#SPACE",
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>()];
    if o.raft {
        rows[0].extend(["#Term", "#LastIndex", "#CommitIndex", "#Role"].map(String::from));
    }
    let now = now_ms();
    for (name, (cluster, addrs)) in &brokers {
        for (id, addr) in addrs {
            let info = runtime_info(addr).unwrap_or_default();
            let get = |k: &str| info.get(k).cloned().unwrap_or_default();
            let first = |k: &str| {
                get(k)
                    .split(' ')
                    .next()
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            let hour = get("earliestMessageTimeStamp")
                .parse::<i64>()
                .map(|t| format!("{:.2}", (now - t) as f64 / 3_600_000.0))
                .unwrap_or_default();
            if o.json {
                let mut v = serde_json::json!({
                    "cluster": cluster, "brokerName": name, "brokerId": id, "addr": addr,
                    "version": get("brokerVersionDesc"), "inTps": first("putTps"),
                    "outTps": first("getTransferedTps"), "pageCacheWaitMs": get("pageCacheLockTimeMills"),
                    "hours": hour, "space": get("commitLogDiskRatio"),
                });
                if o.raft {
                    v["term"] = get("dLegerTerm").into();
                    v["lastIndex"] = get("dLegerLastIndex").into();
                    v["commitIndex"] = get("dLegerCommitIndex").into();
                    v["role"] = get("dLegerRole").into();
                }
                println!("{v}");
                continue;
            }
            let mut row = vec![
                cluster.clone(),
                name.clone(),
                id.to_string(),
                addr.clone(),
                get("brokerVersionDesc"),
                format!("{:9.2}(0,0ms)", first("putTps")),
                format!("{:9.2}(0,0ms)", first("getTransferedTps")),
                get("pageCacheLockTimeMills"),
                hour,
                get("commitLogDiskRatio"),
            ];
            if o.raft {
                row.extend([
                    get("dLegerTerm"),
                    get("dLegerLastIndex"),
                    get("dLegerCommitIndex"),
                    get("dLegerRole"),
                ]);
            }
            rows.push(row);
        }
    }
    if !o.json {
        print_table(&rows);
    }
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A message id as RocketMQ's producer makes one (MessageClientIDSetter's shape): IP,
/// pid, a random, ms in the month, counter; 32 hex characters.
fn uniq_id(seq: u64) -> String {
    let pid = std::process::id() & 0xFFFF;
    let rnd = (now_ms() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
    format!(
        "7F000001{pid:04X}{:08X}{:08X}{:04X}",
        rnd as u32,
        (now_ms() % (31 * 86_400_000)) as u32,
        (seq & 0xFFFF) as u16
    )
}

struct Sent {
    broker: String,
    queue_id: String,
    queue_offset: String,
    msg_id: String,
    offset_msg_id: String,
}

/// One message, to the master of a group in the route; through a failover (no master,
/// a slave's answer, a closed connection) it asks the route again until SEND_RETRY_FOR.
fn send_one(
    o: &Opts,
    topic: &str,
    rr: &mut usize,
    props: &str,
    body: &[u8],
    uniq: &str,
) -> Result<Sent, String> {
    let deadline = Instant::now() + SEND_RETRY_FOR;
    let mut pause = Duration::from_millis(100);
    loop {
        let attempt = (|| -> Result<Result<Sent, String>, String> {
            // A new topic: the first send creates it on a master (autoCreateTopicEnable).
            let route = route_or_cluster(o, topic)?;
            let mut targets: Vec<(String, String, i32)> = Vec::new();
            for (b, w, _) in &route.queues {
                if let Some(addr) = route.brokers.get(b).and_then(|a| a.get(&0)) {
                    for q in 0..*w {
                        targets.push((b.clone(), addr.clone(), q));
                    }
                }
            }
            if targets.is_empty() {
                return Err(format!("no master serves topic {topic} now"));
            }
            let (broker, addr, q) = targets[*rr % targets.len()].clone();
            *rr += 1;
            let cmd = RemotingCommand::request(rq::SEND_MESSAGE_V2, 0)
                .with_field("a", "rmqraft_cli_producer")
                .with_field("b", topic)
                .with_field("c", "TBW102")
                .with_field("d", "4")
                .with_field("e", q.to_string())
                .with_field("f", "0")
                .with_field("g", now_ms().to_string())
                .with_field("h", "0")
                .with_field("i", props)
                .with_field("j", "0")
                .with_field("k", "false")
                .with_field("m", "false")
                .with_field("n", broker.as_str())
                .with_body(body.to_vec());
            let r = call(&addr, cmd)?;
            if r.code == rs::SUCCESS {
                return Ok(Ok(Sent {
                    broker,
                    queue_id: r.field("queueId").unwrap_or("").to_string(),
                    queue_offset: r.field("queueOffset").unwrap_or("").to_string(),
                    msg_id: uniq.to_string(),
                    offset_msg_id: r.field("msgId").unwrap_or("").to_string(),
                }));
            }
            if [
                code::SERVICE_NOT_AVAILABLE,
                code::FLUSH_SLAVE_TIMEOUT,
                rs::SYSTEM_BUSY,
            ]
            .contains(&r.code)
            {
                return Err(format!("{addr}: {}", remark(&r)));
            }
            Ok(Err(format!("{addr}: {}", remark(&r))))
        })();
        match attempt {
            Ok(final_result) => return final_result,
            Err(e) if Instant::now() < deadline => {
                log::debug!("send: {e}; retrying");
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            Err(e) => return Err(e),
        }
    }
}

fn send(o: &Opts) -> Result<(), String> {
    let topic = o.topic.as_deref().unwrap_or_default();
    let count = o.count.unwrap_or(1);
    let mut rr = (now_ms() as usize) % 64;
    let mut rows = vec![[
        "#Broker Name",
        "#QID",
        "#Queue Offset",
        "#Send Result",
        "#MsgId",
        "#OffsetMsgId",
    ]
    .map(String::from)
    .to_vec()];
    let started = Instant::now();
    let step = (count / 10).max(1);
    for i in 0..count {
        let key = o.key.as_ref().map(|k| {
            if count == 1 {
                k.clone()
            } else {
                format!("{k}-{i}")
            }
        });
        let uniq = uniq_id(i);
        let mut pairs: Vec<(&str, &str)> = vec![("UNIQ_KEY", uniq.as_str()), ("WAIT", "true")];
        if let Some(k) = &key {
            pairs.push(("KEYS", k));
        }
        if let Some(t) = &o.tags {
            pairs.push(("TAGS", t));
        }
        let props = encode_properties(pairs);
        let body = match (&o.body, o.size) {
            (Some(b), _) => b.clone().into_bytes(),
            (None, Some(n)) => (0..n)
                .map(|j| b'a' + ((i as usize + j) % 26) as u8)
                .collect(),
            (None, None) => b"Hello RocketMQ".to_vec(),
        };
        let s = send_one(o, topic, &mut rr, &props, &body, &uniq)?;
        if o.json {
            println!(
                "{}",
                serde_json::json!({"sendStatus": "SEND_OK", "brokerName": s.broker,
                    "queueId": s.queue_id.parse::<i64>().unwrap_or(-1),
                    "queueOffset": s.queue_offset.parse::<i64>().unwrap_or(-1),
                    "msgId": s.msg_id, "offsetMsgId": s.offset_msg_id, "keys": key})
            );
        } else if count <= 20 {
            rows.push(vec![
                s.broker,
                s.queue_id,
                s.queue_offset,
                "SEND_OK".into(),
                s.msg_id,
                s.offset_msg_id,
            ]);
        } else if (i + 1) % step == 0 || i + 1 == count {
            eprintln!(
                "send: {}/{count} sent ({:.0} msg/s)",
                i + 1,
                (i + 1) as f64 / started.elapsed().as_secs_f64().max(1e-3)
            );
        }
    }
    if !o.json && count <= 20 {
        print_table(&rows);
    }
    Ok(())
}

fn print_message(o: &Opts, m: &MessageRecord, broker: &str) {
    let body = String::from_utf8_lossy(&m.body);
    if o.json {
        println!(
            "{}",
            serde_json::json!({"topic": m.topic, "brokerName": broker, "queueId": m.queue_id,
                "queueOffset": m.queue_offset, "msgId": m.uniq_key().unwrap_or(""),
                "offsetMsgId": m.offset_msg_id(), "tags": m.tags(), "keys": m.keys(),
                "storeTimestamp": m.store_timestamp, "reconsumeTimes": m.reconsume_times,
                "body": body})
        );
    } else {
        println!(
            "MsgId: {}  OffsetMsgId: {}  Topic: {}  Broker: {}  QID: {}  Offset: {}  Tags: {}  Keys: {}  StoreTime: {}  Body: {}",
            m.uniq_key().unwrap_or("-"),
            m.offset_msg_id(),
            m.topic,
            broker,
            m.queue_id,
            m.queue_offset,
            m.tags().unwrap_or("-"),
            m.keys().unwrap_or("-"),
            m.store_timestamp,
            body
        );
    }
}

fn records(mut body: &[u8]) -> Result<Vec<MessageRecord>, String> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let (r, n) = MessageRecord::decode(body).map_err(|e| e.to_string())?;
        out.push(r);
        body = &body[n..];
    }
    Ok(out)
}

fn pull(o: &Opts) -> Result<(), String> {
    let topic = o.topic.as_deref().unwrap_or_default();
    let route = route(o, topic)?;
    let (broker, addrs) = match &o.broker {
        Some(b) => route
            .brokers
            .get_key_value(b)
            .ok_or_else(|| format!("group {b} is not in topic {topic}'s route"))?,
        None => route
            .brokers
            .iter()
            .next()
            .ok_or_else(|| format!("topic {topic}'s route names no group"))?,
    };
    let addr = if o.slave {
        addrs.iter().find(|(id, _)| **id != 0).map(|(_, a)| a)
    } else {
        addrs.get(&0).or_else(|| addrs.values().next())
    }
    .ok_or_else(|| {
        format!(
            "group {broker} has no {} now",
            if o.slave { "slave" } else { "broker" }
        )
    })?;
    let cmd = RemotingCommand::request(rq::PULL_MESSAGE, 0)
        .with_field("consumerGroup", "rmqraft_cli_pull")
        .with_field("topic", topic)
        .with_field("queueId", o.queue.unwrap_or(0).to_string())
        .with_field("queueOffset", o.offset.to_string())
        .with_field("maxMsgNums", o.count.unwrap_or(32).to_string())
        .with_field("sysFlag", "0")
        .with_field("commitOffset", "0")
        .with_field("suspendTimeoutMillis", "0")
        .with_field("subscription", o.tags.as_deref().unwrap_or("*"));
    let r = call(addr, cmd)?;
    let next = r.field("nextBeginOffset").unwrap_or("?").to_string();
    let (min, max) = (
        r.field("minOffset").unwrap_or("?").to_string(),
        r.field("maxOffset").unwrap_or("?").to_string(),
    );
    let status = match r.code {
        rs::SUCCESS => "FOUND",
        code::PULL_NOT_FOUND => "NO_NEW_MSG",
        code::PULL_RETRY_IMMEDIATELY => "NO_MATCHED_MSG",
        code::PULL_OFFSET_MOVED => "OFFSET_ILLEGAL",
        _ => return Err(format!("{addr}: {}", remark(&r))),
    };
    let msgs = records(&r.body)?;
    if o.json {
        println!(
            "{}",
            serde_json::json!({"pullStatus": status, "brokerAddr": addr, "nextBeginOffset": next,
                "minOffset": min, "maxOffset": max, "messages": msgs.len()})
        );
    } else {
        println!(
            "PullResult [pullStatus={status}, broker={addr}, nextBeginOffset={next}, minOffset={min}, maxOffset={max}, msgFoundList={}]",
            msgs.len()
        );
    }
    for m in &msgs {
        print_message(o, m, broker);
    }
    Ok(())
}

fn query_by_key(o: &Opts) -> Result<(), String> {
    let topic = o.topic.as_deref().unwrap_or_default();
    let key = o.key.as_deref().unwrap_or_default();
    let route = route_or_cluster(o, topic)?;
    let mut found = 0;
    for (broker, addrs) in &route.brokers {
        // The master first, else any member (all serve committed messages).
        let mut candidates: Vec<&String> = addrs.get(&0).into_iter().collect();
        candidates.extend(addrs.iter().filter(|(id, _)| **id != 0).map(|(_, a)| a));
        for addr in candidates {
            let cmd = RemotingCommand::request(rq::QUERY_MESSAGE, 0)
                .with_field("topic", topic)
                .with_field("key", key)
                .with_field("maxNum", "64")
                .with_field("beginTimestamp", "0")
                .with_field("endTimestamp", i64::MAX.to_string());
            let Ok(r) = call(addr, cmd) else { continue };
            if r.code == rs::SUCCESS {
                for m in records(&r.body)? {
                    print_message(o, &m, broker);
                    found += 1;
                }
            } else if r.code != rs::QUERY_NOT_FOUND {
                return Err(format!("{addr}: {}", remark(&r)));
            }
            break;
        }
    }
    if found == 0 {
        return Err(format!("no message of topic {topic} with key {key}"));
    }
    Ok(())
}

fn query_by_id(o: &Opts) -> Result<(), String> {
    let id = o.msg_id.as_deref().unwrap_or_default();
    let (host, offset) = parse_offset_msg_id(id)
        .ok_or_else(|| format!("-i: '{id}' is not an offset msg id (32 or 56 hex characters)"))?;
    // The store host first; then every member of every group (after a failover the
    // store host may be gone, and every member holds every committed message).
    let mut addrs = vec![host.to_string()];
    if let Ok(brokers) = cluster_info(o) {
        for (name, (_, a)) in &brokers {
            for addr in a.values() {
                if !addrs.contains(addr) {
                    addrs.push(addr.clone());
                }
                let _ = name;
            }
        }
    }
    for addr in &addrs {
        let cmd = RemotingCommand::request(rq::VIEW_MESSAGE_BY_ID, 0)
            .with_field("offset", offset.to_string());
        let Ok(r) = call(addr, cmd) else { continue };
        if r.code == rs::SUCCESS {
            for m in records(&r.body)? {
                if m.offset_msg_id() == id {
                    print_message(o, &m, addr);
                    return Ok(());
                }
            }
        }
    }
    Err(format!(
        "no message with id {id} (asked {})",
        addrs.join(", ")
    ))
}

fn update_topic(o: &Opts) -> Result<(), String> {
    let topic = o.topic.as_deref().unwrap_or_default();
    let targets: Vec<String> = match (&o.broker, &o.cluster) {
        (Some(b), _) => vec![b.clone()],
        (None, Some(c)) => {
            let brokers = cluster_info(o)?;
            let masters: Vec<String> = brokers
                .values()
                .filter(|(cl, _)| cl == c)
                .filter_map(|(_, a)| a.get(&0).cloned())
                .collect();
            if masters.is_empty() {
                return Err(format!("cluster {c} has no master registered now"));
            }
            masters
        }
        (None, None) => unreachable!("checked by parse"),
    };
    for addr in targets {
        let cmd = RemotingCommand::request(rq::UPDATE_AND_CREATE_TOPIC, 0)
            .with_field("topic", topic)
            .with_field("defaultTopic", "TBW102")
            .with_field("readQueueNums", o.read.to_string())
            .with_field("writeQueueNums", o.write.to_string())
            .with_field("perm", o.perm.to_string())
            .with_field("topicFilterType", "SINGLE_TAG")
            .with_field("topicSysFlag", "0")
            .with_field("order", "false");
        let r = call(&addr, cmd)?;
        if r.code != rs::SUCCESS {
            return Err(format!("{addr}: {}", remark(&r)));
        }
        if o.json {
            println!(
                "{}",
                serde_json::json!({"brokerAddr": addr, "topic": topic, "readQueueNums": o.read,
                    "writeQueueNums": o.write, "perm": o.perm})
            );
        } else {
            println!(
                "create topic to {addr} success.\nTopicConfig [topicName={topic}, readQueueNums={}, writeQueueNums={}, perm={}]",
                o.read, o.write, perm_name(o.perm)
            );
        }
    }
    Ok(())
}

fn perm_name(p: i32) -> String {
    format!(
        "{}{}{}",
        if p & 4 != 0 { "R" } else { "-" },
        if p & 2 != 0 { "W" } else { "-" },
        if p & 1 != 0 { "X" } else { "-" }
    )
}

fn topic_list(o: &Opts) -> Result<(), String> {
    let r = ask_namesrv(
        o,
        RemotingCommand::request(rq::GET_ALL_TOPIC_LIST_FROM_NAMESERVER, 0),
    )?;
    if r.code != rs::SUCCESS {
        return Err(remark(&r));
    }
    let v = body_json(&r)?;
    for t in v["topicList"].as_array().into_iter().flatten() {
        let t = t.as_str().unwrap_or("");
        if o.json {
            println!("{}", serde_json::json!({ "topic": t }));
        } else {
            println!("{t}");
        }
    }
    Ok(())
}

fn topic_status(o: &Opts) -> Result<(), String> {
    let topic = o.topic.as_deref().unwrap_or_default();
    let route = route(o, topic)?;
    let mut rows = vec![["#Broker Name", "#QID", "#Min Offset", "#Max Offset"]
        .map(String::from)
        .to_vec()];
    for (broker, addrs) in &route.brokers {
        let Some(addr) = addrs.get(&0).or_else(|| addrs.values().next()) else {
            continue;
        };
        let r = call(
            addr,
            RemotingCommand::request(GET_TOPIC_STATS_INFO, 0).with_field("topic", topic),
        )?;
        if r.code != rs::SUCCESS {
            return Err(format!("{addr}: {}", remark(&r)));
        }
        let v = body_json(&r)?;
        for pair in v["offsetTable"].as_array().into_iter().flatten() {
            let (mq, off) = (&pair[0], &pair[1]);
            let q = json::as_i64(&mq["queueId"]).unwrap_or(-1);
            let (min, max) = (
                json::as_i64(&off["minOffset"]).unwrap_or(0),
                json::as_i64(&off["maxOffset"]).unwrap_or(0),
            );
            if o.json {
                println!(
                    "{}",
                    serde_json::json!({"brokerName": broker, "queueId": q, "minOffset": min, "maxOffset": max})
                );
            } else {
                rows.push(vec![
                    broker.clone(),
                    q.to_string(),
                    min.to_string(),
                    max.to_string(),
                ]);
            }
        }
    }
    if !o.json {
        print_table(&rows);
    }
    Ok(())
}

fn consumer_progress(o: &Opts) -> Result<(), String> {
    let group = o.group.as_deref().unwrap_or_default();
    let brokers = cluster_info(o)?;
    let mut rows = vec![[
        "#Topic",
        "#Broker Name",
        "#QID",
        "#Broker Offset",
        "#Consumer Offset",
        "#Diff",
    ]
    .map(String::from)
    .to_vec()];
    let mut total = 0i64;
    for (broker, (_, addrs)) in &brokers {
        let Some(addr) = addrs.get(&0).or_else(|| addrs.values().next()) else {
            continue;
        };
        let r = call(
            addr,
            RemotingCommand::request(GET_CONSUME_STATS, 0).with_field("consumerGroup", group),
        )?;
        if r.code != rs::SUCCESS {
            return Err(format!("{addr}: {}", remark(&r)));
        }
        let v = body_json(&r)?;
        for pair in v["offsetTable"].as_array().into_iter().flatten() {
            let (mq, off) = (&pair[0], &pair[1]);
            let t = mq["topic"].as_str().unwrap_or("");
            let q = json::as_i64(&mq["queueId"]).unwrap_or(-1);
            let b = json::as_i64(&off["brokerOffset"]).unwrap_or(0);
            let c = json::as_i64(&off["consumerOffset"]).unwrap_or(0);
            total += b - c;
            if o.json {
                println!(
                    "{}",
                    serde_json::json!({"topic": t, "brokerName": broker, "queueId": q,
                        "brokerOffset": b, "consumerOffset": c, "diff": b - c})
                );
            } else {
                rows.push(vec![
                    t.to_string(),
                    broker.clone(),
                    q.to_string(),
                    b.to_string(),
                    c.to_string(),
                    (b - c).to_string(),
                ]);
            }
        }
    }
    if !o.json {
        print_table(&rows);
        println!("\nDiff Total: {total}");
    }
    Ok(())
}

/// Every master (brokerId 0) of the cluster, or of every cluster: (broker name, addr).
fn masters(o: &Opts) -> Result<Vec<(String, String)>, String> {
    let brokers = cluster_info(o)?;
    Ok(brokers
        .into_iter()
        .filter(|(_, (cluster, _))| o.cluster.as_deref().is_none_or(|c| c == cluster))
        .filter_map(|(name, (_, addrs))| addrs.get(&0).map(|a| (name, a.clone())))
        .collect())
}

/// consumerConnection / producerConnection: the group's connections on every master.
fn connections(o: &Opts, producer: bool) -> Result<(), String> {
    let group = o.group.as_deref().unwrap_or_default();
    let (code_, field_) = if producer {
        (rq::GET_PRODUCER_CONNECTION_LIST, "producerGroup")
    } else {
        (rq::GET_CONSUMER_CONNECTION_LIST, "consumerGroup")
    };
    let mut rows = vec![[
        "#Broker Name",
        "#ClientId",
        "#ClientAddr",
        "#Language",
        "#Version",
    ]
    .map(String::from)
    .to_vec()];
    let mut found = 0;
    let mut subs = BTreeMap::new();
    for (broker, addr) in masters(o)? {
        let r = call(
            &addr,
            RemotingCommand::request(code_, 0).with_field(field_, group),
        )?;
        if r.code != rs::SUCCESS {
            continue;
        }
        let v = body_json(&r)?;
        for c in v["connectionSet"].as_array().into_iter().flatten() {
            found += 1;
            let id = c["clientId"].as_str().unwrap_or("");
            let client_addr = c["clientAddr"].as_str().unwrap_or("");
            let lang = c["language"].as_str().unwrap_or("");
            let version = json::as_i64(&c["version"]).unwrap_or(0);
            if o.json {
                println!(
                    "{}",
                    serde_json::json!({"brokerName": broker, "clientId": id,
                        "clientAddr": client_addr, "language": lang, "version": version})
                );
            } else {
                rows.push(vec![
                    broker.clone(),
                    id.to_string(),
                    client_addr.to_string(),
                    lang.to_string(),
                    version.to_string(),
                ]);
            }
        }
        for (t, s) in v["subscriptionTable"].as_object().into_iter().flatten() {
            subs.insert(t.clone(), s["subString"].as_str().unwrap_or("").to_string());
        }
    }
    if found == 0 {
        let what = if producer { "producer" } else { "consumer" };
        return Err(format!(
            "no {what} of group {group} is connected to any master"
        ));
    }
    if !o.json {
        print_table(&rows);
        if !subs.is_empty() {
            println!("\nBelow is subscription:");
            for (t, e) in subs {
                println!("Topic: {t}  SubExpression: {e}");
            }
        }
    }
    Ok(())
}

/// brokerStatus: GET_BROKER_RUNTIME_INFO of one broker (-b ADDR) or every master of the
/// cluster (-c), `key : value` lines as mqadmin prints them.
fn broker_status(o: &Opts) -> Result<(), String> {
    let targets: Vec<(String, String)> = match &o.broker {
        Some(addr) => vec![(addr.clone(), addr.clone())],
        None => masters(o)?,
    };
    if targets.is_empty() {
        return Err("brokerStatus: no master in the cluster info".into());
    }
    for (name, addr) in targets {
        let table = runtime_info(&addr)?;
        if o.json {
            println!(
                "{}",
                serde_json::json!({"brokerName": name, "brokerAddr": addr, "table": table})
            );
        } else {
            let w = table.keys().map(String::len).max().unwrap_or(0);
            for (k, v) in &table {
                println!("{addr:<22} {k:<w$} : {v}");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(sub: &str, v: &[&str]) -> Result<Option<Opts>, String> {
        parse(sub, v.iter().map(OsString::from).collect())
    }

    #[test]
    fn flags_and_their_errors() {
        let o = p("send", &["-n", "h:1", "-t", "T", "-k", "K", "--count", "3"])
            .unwrap()
            .unwrap();
        assert_eq!((o.namesrv.as_str(), o.count), ("h:1", Some(3)));
        assert!(p("send", &[]).unwrap_err().contains("-t TOPIC"));
        assert!(p("pull", &["-t", "T"]).unwrap_err().contains("-q QUEUE"));
        assert!(p("updateTopic", &["-t", "T"])
            .unwrap_err()
            .contains("-c CLUSTER"));
        assert!(p("queryMsgById", &[]).unwrap_err().contains("-i MSGID"));
        assert!(p("pull", &["-t", "T", "-q", "x"])
            .unwrap_err()
            .contains("'x' is not a number"));
        assert!(p("topicList", &["-h"]).unwrap().is_none());
        for sub in COMMANDS {
            assert!(usage_of(sub).contains(&format!("rmqraft {sub}")), "{sub}");
        }
        assert_eq!(uniq_id(7).len(), 32);
    }
}
