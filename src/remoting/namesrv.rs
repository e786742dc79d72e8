//! A name server, as RocketMQ's namesrv (RouteInfoManager, DefaultRequestProcessor,
//! ClientRequestProcessor): brokers register their topics, clients ask for routes.
//!
//! State is in memory only, as RocketMQ's routes are (its KV config file is not kept:
//! PUT_KV_CONFIG lasts until the process ends). A broker drops out when the connection it
//! registered on closes, when it unregisters, or after `broker_expiry` (RocketMQ's
//! BROKER_CHANNEL_EXPIRED_TIME, 120 s; a broker's `heartbeatTimeoutMillis` header overrides
//! it) without registering. A registration as brokerId 0 replaces the previous brokerId 0
//! of that brokerName (a leader change), and an address registered under a new id leaves
//! its old id. Topic queues come from the brokerId 0 registration only, as in RocketMQ.

use super::codec::RemotingCommand;
use super::codes::{perm, request as rq, response as rs};
use super::json::{self, Map, Value};
use super::server::{
    ConnectionId, Request, RequestHandler, Responder, Router, Server, ServerConfig,
};
use crate::error::{Error, Result};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// RocketMQ's BROKER_CHANNEL_EXPIRED_TIME.
pub const BROKER_EXPIRY_DEFAULT: Duration = Duration::from_secs(120);
/// RocketMQ's name server port.
pub const PORT_DEFAULT: u16 = 9876;
const MASTER_ID: i64 = 0;

/// How a [`NameServer`] runs.
#[derive(Debug, Clone)]
pub struct NameServerConfig {
    pub listen: SocketAddr,
    /// A broker that has not registered for this long is dropped.
    pub broker_expiry: Duration,
    /// How often expired brokers are looked for (RocketMQ: every 5 s).
    pub scan_interval: Duration,
    pub server: ServerConfig,
}

impl NameServerConfig {
    pub fn new(listen: SocketAddr) -> NameServerConfig {
        NameServerConfig {
            listen,
            broker_expiry: BROKER_EXPIRY_DEFAULT,
            scan_interval: Duration::from_secs(5),
            server: ServerConfig {
                name: "namesrv".to_string(),
                ..ServerConfig::default()
            },
        }
    }
}

/// The codes a name server serves, in order.
pub const CODES: [i32; 18] = [
    rq::PUT_KV_CONFIG,
    rq::GET_KV_CONFIG,
    rq::DELETE_KV_CONFIG,
    rq::REGISTER_BROKER,
    rq::UNREGISTER_BROKER,
    rq::GET_ROUTEINFO_BY_TOPIC,
    rq::GET_BROKER_CLUSTER_INFO,
    rq::WIPE_WRITE_PERM_OF_BROKER,
    rq::GET_ALL_TOPIC_LIST_FROM_NAMESERVER,
    rq::DELETE_TOPIC_IN_NAMESRV,
    rq::REGISTER_TOPIC_IN_NAMESRV,
    rq::GET_KVLIST_BY_NAMESPACE,
    rq::GET_TOPICS_BY_CLUSTER,
    rq::GET_SYSTEM_TOPIC_LIST_FROM_NS,
    rq::GET_NAMESRV_CONFIG,
    rq::QUERY_DATA_VERSION,
    rq::ADD_WRITE_PERM_OF_BROKER,
    rq::BROKER_HEARTBEAT,
];

#[derive(Debug, Clone, PartialEq, Eq)]
struct QueueData {
    read_queue_nums: i64,
    write_queue_nums: i64,
    perm: i64,
    topic_sys_flag: i64,
}

#[derive(Debug, Clone)]
struct BrokerData {
    cluster: String,
    addrs: BTreeMap<i64, String>,
    enable_acting_master: bool,
    zone_name: Option<String>,
}

#[derive(Debug)]
struct LiveInfo {
    last_update: Instant,
    timeout: Duration,
    data_version: Value,
    connection: ConnectionId,
    ha_server_addr: String,
}

#[derive(Default)]
struct Routes {
    /// topic -> brokerName -> queues
    topics: BTreeMap<String, BTreeMap<String, QueueData>>,
    /// brokerName -> its members
    brokers: BTreeMap<String, BrokerData>,
    /// clusterName -> brokerNames
    clusters: BTreeMap<String, BTreeSet<String>>,
    /// brokerAddr -> liveness
    live: HashMap<String, LiveInfo>,
    filter_servers: BTreeMap<String, Vec<String>>,
    kv: BTreeMap<String, BTreeMap<String, String>>,
}

impl Routes {
    /// Removes `addr` everywhere, and a brokerName with no member left with its queues
    /// (RouteInfoManager.onChannelDestroy).
    fn drop_broker_addr(&mut self, addr: &str, why: &str) {
        self.live.remove(addr);
        self.filter_servers.remove(addr);
        let mut emptied = Vec::new();
        for (name, data) in self.brokers.iter_mut() {
            let before = data.addrs.len();
            data.addrs.retain(|_, a| a != addr);
            if data.addrs.len() != before {
                log::info!("namesrv: broker {addr} of {name} removed: {why}");
            }
            if data.addrs.is_empty() {
                emptied.push(name.clone());
            }
        }
        for name in emptied {
            self.drop_broker_name(&name);
        }
    }

    fn drop_broker_name(&mut self, name: &str) {
        self.brokers.remove(name);
        self.clusters.retain(|_, names| {
            names.remove(name);
            !names.is_empty()
        });
        self.topics.retain(|_, queues| {
            queues.remove(name);
            !queues.is_empty()
        });
        log::info!("namesrv: brokerName {name} has no member left; its queues are gone");
    }

    fn topic_route(&self, topic: &str) -> Option<Value> {
        let queues = self.topics.get(topic)?;
        let mut broker_datas = Vec::new();
        let mut filter_table = Map::new();
        for name in queues.keys() {
            if let Some(b) = self.brokers.get(name) {
                broker_datas.push(broker_json(name, b));
                for addr in b.addrs.values() {
                    if let Some(list) = self.filter_servers.get(addr) {
                        filter_table.insert(addr.clone(), Value::from(list.clone()));
                    }
                }
            }
        }
        if broker_datas.is_empty() {
            return None;
        }
        let queue_datas: Vec<Value> = queues
            .iter()
            .map(|(name, q)| {
                serde_json::json!({
                    "brokerName": name,
                    "readQueueNums": q.read_queue_nums,
                    "writeQueueNums": q.write_queue_nums,
                    "perm": q.perm,
                    "topicSysFlag": q.topic_sys_flag,
                })
            })
            .collect();
        Some(serde_json::json!({
            "brokerDatas": broker_datas,
            "queueDatas": queue_datas,
            "filterServerTable": filter_table,
        }))
    }
}

fn broker_json(name: &str, b: &BrokerData) -> Value {
    let addrs: Map<String, Value> = b
        .addrs
        .iter()
        .map(|(id, a)| (id.to_string(), Value::from(a.clone())))
        .collect();
    let mut v = serde_json::json!({
        "cluster": b.cluster,
        "brokerName": name,
        "brokerAddrs": addrs,
        "enableActingMaster": b.enable_acting_master,
    });
    if let Some(zone) = &b.zone_name {
        v["zoneName"] = Value::from(zone.clone());
    }
    v
}

/// A running name server; [`NameServer::stop`] (or drop) stops it and joins its threads.
pub struct NameServer {
    server: Server,
    routes: Arc<Mutex<Routes>>,
    stop_tx: Option<Sender<()>>,
    scanner: Option<JoinHandle<()>>,
}

impl NameServer {
    /// Serves on `addr` with RocketMQ's defaults.
    pub fn start(addr: SocketAddr) -> Result<NameServer> {
        NameServer::start_with(NameServerConfig::new(addr))
    }

    pub fn start_with(config: NameServerConfig) -> Result<NameServer> {
        let routes: Arc<Mutex<Routes>> = Arc::default();
        let handler = Arc::new(Handler {
            routes: routes.clone(),
            broker_expiry: config.broker_expiry,
            started: Instant::now(),
        });
        let mut router = Router::new();
        for code in CODES {
            router.route(code, handler.clone());
        }
        let on_close = routes.clone();
        router.on_close(move |connection| {
            let mut r = lock(&on_close);
            let gone: Vec<String> = r
                .live
                .iter()
                .filter(|(_, l)| l.connection == connection)
                .map(|(a, _)| a.clone())
                .collect();
            for addr in gone {
                r.drop_broker_addr(&addr, "its connection closed");
            }
        });
        let server = Server::start(config.listen, router, config.server.clone())?;
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(1);
        let scan_routes = routes.clone();
        let interval = config.scan_interval;
        let scanner = std::thread::Builder::new()
            .name("namesrv-scan".to_string())
            .spawn(move || scan_loop(scan_routes, stop_rx, interval))
            .map_err(|e| Error::io("namesrv: spawn the expiry scanner", e))?;
        log::info!("namesrv: serving on {}", server.local_addr());
        Ok(NameServer {
            server,
            routes,
            stop_tx: Some(stop_tx),
            scanner: Some(scanner),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// (cluster, brokerName, brokerId, brokerAddr) of every registered broker.
    pub fn brokers(&self) -> Vec<(String, String, i64, String)> {
        let r = lock(&self.routes);
        r.brokers
            .iter()
            .flat_map(|(name, b)| {
                b.addrs
                    .iter()
                    .map(move |(id, a)| (b.cluster.clone(), name.clone(), *id, a.clone()))
            })
            .collect()
    }

    /// Stops serving and joins every thread.
    pub fn stop(&mut self) {
        self.stop_tx.take();
        if let Some(h) = self.scanner.take() {
            let _ = h.join();
        }
        self.server.shutdown();
    }
}

impl Drop for NameServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock(routes: &Mutex<Routes>) -> MutexGuard<'_, Routes> {
    // The routes stay consistent under every panic point (each change is one statement).
    routes.lock().unwrap_or_else(|p| p.into_inner())
}

fn scan_loop(routes: Arc<Mutex<Routes>>, stop: Receiver<()>, interval: Duration) {
    loop {
        match stop.recv_timeout(interval) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let mut r = lock(&routes);
        let expired: Vec<(String, Duration)> = r
            .live
            .iter()
            .filter(|(_, l)| l.last_update.elapsed() > l.timeout)
            .map(|(a, l)| (a.clone(), l.timeout))
            .collect();
        for (addr, timeout) in expired {
            log::warn!("namesrv: broker {addr} expired: no registration for {timeout:?}");
            r.drop_broker_addr(&addr, "it stopped registering");
        }
    }
}

struct Handler {
    routes: Arc<Mutex<Routes>>,
    broker_expiry: Duration,
    started: Instant,
}

/// A handler's answer: code, remark, header fields, body.
struct Answer {
    code: i32,
    remark: Option<String>,
    fields: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn ok() -> Answer {
        Answer {
            code: rs::SUCCESS,
            remark: None,
            fields: Vec::new(),
            body: Vec::new(),
        }
    }
    fn body(value: &Value) -> Answer {
        Answer {
            body: value.to_string().into_bytes(),
            ..Answer::ok()
        }
    }
    fn error(code: i32, remark: impl Into<String>) -> Answer {
        Answer {
            code,
            remark: Some(remark.into()),
            ..Answer::ok()
        }
    }
}

/// A required header field; missing, the request is answered SYSTEM_ERROR with
/// RocketMQ's message.
fn required<'a>(cmd: &'a RemotingCommand, name: &str) -> std::result::Result<&'a str, Answer> {
    cmd.required(name)
        .map_err(|m| Answer::error(rs::SYSTEM_ERROR, m))
}

fn required_i64(cmd: &RemotingCommand, name: &str) -> std::result::Result<i64, Answer> {
    cmd.required_i64(name)
        .map_err(|m| Answer::error(rs::SYSTEM_ERROR, m))
}

impl RequestHandler for Handler {
    fn handle(&self, request: Request, responder: Responder) {
        let cmd = &request.command;
        let answer = self.answer(cmd, request.connection).unwrap_or_else(|a| a);
        let mut response = cmd.response_to(answer.code, answer.remark);
        for (k, v) in answer.fields {
            response.set_field(k, v);
        }
        response.body = answer.body;
        responder.respond(response);
    }
}

impl Handler {
    fn answer(
        &self,
        cmd: &RemotingCommand,
        connection: ConnectionId,
    ) -> std::result::Result<Answer, Answer> {
        match cmd.code {
            rq::REGISTER_BROKER => self.register_broker(cmd, connection),
            rq::UNREGISTER_BROKER => self.unregister_broker(cmd),
            rq::GET_ROUTEINFO_BY_TOPIC => self.route_by_topic(cmd),
            rq::GET_BROKER_CLUSTER_INFO => Ok(self.cluster_info()),
            rq::GET_ALL_TOPIC_LIST_FROM_NAMESERVER => {
                let r = lock(&self.routes);
                let topics: Vec<&String> = r.topics.keys().collect();
                Ok(Answer::body(&serde_json::json!({ "topicList": topics })))
            }
            rq::GET_TOPICS_BY_CLUSTER => {
                let cluster = required(cmd, "cluster")?;
                let r = lock(&self.routes);
                let names = r.clusters.get(cluster).cloned().unwrap_or_default();
                let topics: Vec<&String> = r
                    .topics
                    .iter()
                    .filter(|(_, q)| q.keys().any(|n| names.contains(n)))
                    .map(|(t, _)| t)
                    .collect();
                Ok(Answer::body(&serde_json::json!({ "topicList": topics })))
            }
            rq::GET_SYSTEM_TOPIC_LIST_FROM_NS => {
                let r = lock(&self.routes);
                let mut list: BTreeSet<&String> = r.clusters.keys().collect();
                list.extend(r.brokers.keys());
                let mut v = serde_json::json!({ "topicList": list });
                if let Some(addr) = r.brokers.values().flat_map(|b| b.addrs.values()).next() {
                    v["brokerAddr"] = Value::from(addr.clone());
                }
                Ok(Answer::body(&v))
            }
            rq::PUT_KV_CONFIG => {
                let (ns, key) = (required(cmd, "namespace")?, required(cmd, "key")?);
                let value = cmd.field("value").unwrap_or("").to_string();
                lock(&self.routes)
                    .kv
                    .entry(ns.to_string())
                    .or_default()
                    .insert(key.to_string(), value);
                Ok(Answer::ok())
            }
            rq::GET_KV_CONFIG => {
                let (ns, key) = (required(cmd, "namespace")?, required(cmd, "key")?);
                let r = lock(&self.routes);
                match r.kv.get(ns).and_then(|m| m.get(key)) {
                    Some(v) => Ok(Answer {
                        fields: vec![("value", v.clone())],
                        ..Answer::ok()
                    }),
                    None => Err(Answer::error(
                        rs::QUERY_NOT_FOUND,
                        format!("No config item, Namespace: {ns} Key: {key}"),
                    )),
                }
            }
            rq::DELETE_KV_CONFIG => {
                let (ns, key) = (required(cmd, "namespace")?, required(cmd, "key")?);
                let mut r = lock(&self.routes);
                if let Some(m) = r.kv.get_mut(ns) {
                    m.remove(key);
                    if m.is_empty() {
                        r.kv.remove(ns);
                    }
                }
                Ok(Answer::ok())
            }
            rq::GET_KVLIST_BY_NAMESPACE => {
                let ns = required(cmd, "namespace")?;
                let r = lock(&self.routes);
                match r.kv.get(ns) {
                    Some(m) => Ok(Answer::body(&serde_json::json!({ "table": m }))),
                    None => Err(Answer::error(
                        rs::QUERY_NOT_FOUND,
                        format!("No config item, Namespace: {ns}"),
                    )),
                }
            }
            rq::WIPE_WRITE_PERM_OF_BROKER | rq::ADD_WRITE_PERM_OF_BROKER => {
                let name = required(cmd, "brokerName")?;
                let wipe = cmd.code == rq::WIPE_WRITE_PERM_OF_BROKER;
                let mut r = lock(&self.routes);
                let mut count = 0;
                for queues in r.topics.values_mut() {
                    if let Some(q) = queues.get_mut(name) {
                        q.perm = if wipe {
                            q.perm & !i64::from(perm::WRITE)
                        } else {
                            i64::from(perm::READ | perm::WRITE)
                        };
                        count += 1;
                    }
                }
                let field = if wipe {
                    "wipeTopicCount"
                } else {
                    "addTopicCount"
                };
                Ok(Answer {
                    fields: vec![(field, count.to_string())],
                    ..Answer::ok()
                })
            }
            rq::DELETE_TOPIC_IN_NAMESRV => {
                let topic = required(cmd, "topic")?;
                let mut r = lock(&self.routes);
                match cmd.field("clusterName").filter(|c| !c.is_empty()) {
                    Some(cluster) => {
                        let names = r.clusters.get(cluster).cloned().unwrap_or_default();
                        if let Some(queues) = r.topics.get_mut(topic) {
                            queues.retain(|n, _| !names.contains(n));
                            if queues.is_empty() {
                                r.topics.remove(topic);
                            }
                        }
                    }
                    None => {
                        r.topics.remove(topic);
                    }
                }
                Ok(Answer::ok())
            }
            rq::REGISTER_TOPIC_IN_NAMESRV => {
                let topic = required(cmd, "topic")?;
                let route = json::parse_lenient(&cmd.body).map_err(|e| {
                    Answer::error(rs::SYSTEM_ERROR, format!("TopicRouteData body: {e}"))
                })?;
                let mut r = lock(&self.routes);
                for q in route["queueDatas"].as_array().into_iter().flatten() {
                    let Some(name) = q["brokerName"].as_str() else {
                        continue;
                    };
                    if r.brokers.contains_key(name) {
                        let qd = queue_data(q);
                        r.topics
                            .entry(topic.to_string())
                            .or_default()
                            .insert(name.to_string(), qd);
                    }
                }
                Ok(Answer::ok())
            }
            rq::GET_NAMESRV_CONFIG => {
                let text = format!(
                    "brokerChannelExpiredTimeMillis={}\nenableAllTopicList=true\nenableTopicList=true\n",
                    self.broker_expiry.as_millis()
                );
                Ok(Answer {
                    body: text.into_bytes(),
                    ..Answer::ok()
                })
            }
            rq::QUERY_DATA_VERSION => {
                let addr = required(cmd, "brokerAddr")?;
                let theirs = json::parse_lenient(&cmd.body).unwrap_or(Value::Null);
                let mut r = lock(&self.routes);
                let (changed, ours) = match r.live.get_mut(addr) {
                    Some(l) => {
                        l.last_update = Instant::now();
                        (l.data_version != theirs, Some(l.data_version.clone()))
                    }
                    None => (true, None),
                };
                Ok(Answer {
                    fields: vec![("changed", changed.to_string())],
                    body: ours.map(|v| v.to_string().into_bytes()).unwrap_or_default(),
                    ..Answer::ok()
                })
            }
            rq::BROKER_HEARTBEAT => {
                let addr = required(cmd, "brokerAddr")?;
                if let Some(l) = lock(&self.routes).live.get_mut(addr) {
                    l.last_update = Instant::now();
                }
                Ok(Answer::ok())
            }
            other => Err(Answer::error(
                rs::REQUEST_CODE_NOT_SUPPORTED,
                format!(" request type {other} not supported"),
            )),
        }
    }

    fn route_by_topic(&self, cmd: &RemotingCommand) -> std::result::Result<Answer, Answer> {
        let topic = required(cmd, "topic")?;
        let r = lock(&self.routes);
        match r.topic_route(topic) {
            Some(route) => Ok(Answer::body(&route)),
            None => {
                log::debug!(
                    "namesrv: no route for topic {topic} (up {:?})",
                    self.started.elapsed()
                );
                Err(Answer::error(
                    rs::TOPIC_NOT_EXIST,
                    format!("No topic route info in name server for the topic: {topic}"),
                ))
            }
        }
    }

    fn cluster_info(&self) -> Answer {
        let r = lock(&self.routes);
        let brokers: Map<String, Value> = r
            .brokers
            .iter()
            .map(|(name, b)| (name.clone(), broker_json(name, b)))
            .collect();
        let clusters: Map<String, Value> = r
            .clusters
            .iter()
            .map(|(c, names)| {
                (
                    c.clone(),
                    Value::from(names.iter().cloned().collect::<Vec<_>>()),
                )
            })
            .collect();
        Answer::body(&serde_json::json!({
            "brokerAddrTable": brokers,
            "clusterAddrTable": clusters,
        }))
    }

    fn register_broker(
        &self,
        cmd: &RemotingCommand,
        connection: ConnectionId,
    ) -> std::result::Result<Answer, Answer> {
        let broker_name = required(cmd, "brokerName")?;
        let broker_addr = required(cmd, "brokerAddr")?;
        let cluster = required(cmd, "clusterName")?;
        let ha_server_addr = required(cmd, "haServerAddr")?;
        let broker_id = required_i64(cmd, "brokerId")?;
        let crc = cmd.optional_i64("bodyCrc32").unwrap_or(0);
        if crc != 0 && i64::from(java_crc32(&cmd.body)) != crc {
            log::warn!("namesrv: REGISTER_BROKER from {broker_addr}: body crc32 does not match");
            return Err(Answer::error(rs::SYSTEM_ERROR, "crc32 not match"));
        }
        if cmd.optional_bool("compressed") == Some(true) {
            return Err(Answer::error(
                rs::SYSTEM_ERROR,
                "compressed REGISTER_BROKER bodies are not supported: set compressedRegister=false on the broker",
            ));
        }
        let body = parse_register_body(&cmd.body).map_err(|e| {
            Answer::error(
                rs::SYSTEM_ERROR,
                format!("Failed to decode RegisterBrokerBody: {e}"),
            )
        })?;
        let timeout = cmd
            .optional_i64("heartbeatTimeoutMillis")
            .filter(|ms| *ms > 0)
            .map(|ms| Duration::from_millis(ms as u64))
            .unwrap_or(self.broker_expiry);
        let acting = cmd.optional_bool("enableActingMaster");

        let mut r = lock(&self.routes);
        r.clusters
            .entry(cluster.to_string())
            .or_default()
            .insert(broker_name.to_string());
        let data = r
            .brokers
            .entry(broker_name.to_string())
            .or_insert_with(|| BrokerData {
                cluster: cluster.to_string(),
                addrs: BTreeMap::new(),
                enable_acting_master: false,
                zone_name: None,
            });
        if let Some(a) = acting {
            data.enable_acting_master = a;
        }
        if let Some(zone) = cmd.field("zoneName") {
            data.zone_name = Some(zone.to_string());
        }
        // One address, one id: a member registering under a new id (a role change) leaves
        // its old one.
        data.addrs
            .retain(|id, a| *id == broker_id || a != broker_addr);
        let old = data.addrs.insert(broker_id, broker_addr.to_string());
        if broker_id == MASTER_ID && old.as_deref() != Some(broker_addr) {
            log::info!(
                "namesrv: {cluster}/{broker_name} master changes from {} to {broker_addr}",
                old.as_deref().unwrap_or("none")
            );
        }
        if broker_id == MASTER_ID {
            for (topic, q) in &body.topics {
                r.topics
                    .entry(topic.clone())
                    .or_default()
                    .insert(broker_name.to_string(), q.clone());
            }
            // Topics the master no longer has (deleted on the broker) leave its route.
            r.topics.retain(|topic, queues| {
                if !body.topics.contains_key(topic) {
                    queues.remove(broker_name);
                }
                !queues.is_empty()
            });
        }
        if r.live.contains_key(broker_addr) {
            log::debug!("namesrv: {broker_addr} registered again as {broker_name}/{broker_id}");
        } else {
            log::info!(
                "namesrv: new broker {broker_addr} ({cluster}/{broker_name}, id {broker_id})"
            );
        }
        r.live.insert(
            broker_addr.to_string(),
            LiveInfo {
                last_update: Instant::now(),
                timeout,
                data_version: body.data_version,
                connection,
                ha_server_addr: ha_server_addr.to_string(),
            },
        );
        if let Some(list) = body.filter_servers {
            if list.is_empty() {
                r.filter_servers.remove(broker_addr);
            } else {
                r.filter_servers.insert(broker_addr.to_string(), list);
            }
        }
        let mut fields = Vec::new();
        if broker_id != MASTER_ID {
            let master = r
                .brokers
                .get(broker_name)
                .and_then(|b| b.addrs.get(&MASTER_ID))
                .cloned();
            if let Some(master) = master {
                if let Some(l) = r.live.get(&master) {
                    fields.push(("masterAddr", master.clone()));
                    fields.push(("haServerAddr", l.ha_server_addr.clone()));
                }
            }
        }
        Ok(Answer {
            fields,
            ..Answer::ok()
        })
    }

    fn unregister_broker(&self, cmd: &RemotingCommand) -> std::result::Result<Answer, Answer> {
        let broker_name = required(cmd, "brokerName")?;
        let broker_addr = required(cmd, "brokerAddr")?;
        let _cluster = required(cmd, "clusterName")?;
        let broker_id = required_i64(cmd, "brokerId")?;
        let mut r = lock(&self.routes);
        let Some(b) = r.brokers.get_mut(broker_name) else {
            return Ok(Answer::ok());
        };
        // Only this member's own entry: after a leader change brokerId 0 is another's, and a
        // late unregistration of it must not remove the new master (nor the member's
        // liveness under its new id).
        if b.addrs.get(&broker_id).map(String::as_str) != Some(broker_addr) {
            log::info!("namesrv: ignored the unregistration of {broker_addr} as {broker_name}/{broker_id}: not its entry");
            return Ok(Answer::ok());
        }
        b.addrs.remove(&broker_id);
        let emptied = b.addrs.is_empty();
        log::info!("namesrv: {broker_addr} ({broker_name}/{broker_id}) unregistered");
        r.live.remove(broker_addr);
        r.filter_servers.remove(broker_addr);
        if emptied {
            r.drop_broker_name(broker_name);
        }
        Ok(Answer::ok())
    }
}

struct RegisterBody {
    topics: BTreeMap<String, QueueData>,
    data_version: Value,
    filter_servers: Option<Vec<String>>,
}

/// RegisterBrokerBody JSON (`topicConfigSerializeWrapper` + `filterServerList`), or the
/// bare TopicConfigSerializeWrapper of brokers before 3.0.11; an empty body has no topics.
fn parse_register_body(body: &[u8]) -> std::result::Result<RegisterBody, String> {
    if body.is_empty() {
        return Ok(RegisterBody {
            topics: BTreeMap::new(),
            data_version: Value::Null,
            filter_servers: None,
        });
    }
    let v = json::parse_lenient(body)?;
    if !v.is_object() {
        return Err("the body is not a JSON object".to_string());
    }
    let wrapper = if v.get("topicConfigSerializeWrapper").is_some() {
        &v["topicConfigSerializeWrapper"]
    } else {
        &v
    };
    let mut topics = BTreeMap::new();
    if let Some(table) = wrapper.get("topicConfigTable") {
        let table = table
            .as_object()
            .ok_or_else(|| "topicConfigTable is not an object".to_string())?;
        for (name, config) in table {
            let topic = config["topicName"].as_str().unwrap_or(name);
            topics.insert(topic.to_string(), queue_data(config));
        }
    }
    let filter_servers = v
        .get("filterServerList")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        });
    Ok(RegisterBody {
        topics,
        data_version: wrapper.get("dataVersion").cloned().unwrap_or(Value::Null),
        filter_servers,
    })
}

/// TopicConfig or QueueData fields, with TopicConfig's defaults.
fn queue_data(v: &Value) -> QueueData {
    let field = |name: &str, default: i64| v.get(name).and_then(json::as_i64).unwrap_or(default);
    QueueData {
        read_queue_nums: field("readQueueNums", 16),
        write_queue_nums: field("writeQueueNums", 16),
        perm: field("perm", i64::from(perm::READ | perm::WRITE)),
        topic_sys_flag: field("topicSysFlag", 0),
    }
}

/// RocketMQ's UtilAll.crc32: CRC-32 (IEEE, java.util.zip.CRC32) with the top bit cleared.
pub fn java_crc32(data: &[u8]) -> i32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    ((!crc) & 0x7FFF_FFFF) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_is_java_s() {
        // java.util.zip.CRC32 of "123456789" is 0xCBF43926; RocketMQ clears the top bit.
        assert_eq!(java_crc32(b"123456789"), 0x4BF4_3926);
        assert_eq!(java_crc32(b""), 0);
    }

    #[test]
    fn java_register_body_parses() {
        // As a 4.9 broker's fastjson writes RegisterBrokerBody.
        let body = br#"{"filterServerList":[],"topicConfigSerializeWrapper":{"dataVersion":{"counter":3,"stateVersion":0,"timestamp":1700000000000},"topicConfigTable":{"TopicTest":{"attributes":{},"order":false,"perm":6,"readQueueNums":4,"topicFilterType":"SINGLE_TAG","topicName":"TopicTest","topicSysFlag":0,"writeQueueNums":8}}}}"#;
        let b = parse_register_body(body).unwrap();
        assert_eq!(
            b.topics["TopicTest"],
            QueueData {
                read_queue_nums: 4,
                write_queue_nums: 8,
                perm: 6,
                topic_sys_flag: 0
            }
        );
        assert_eq!(b.data_version["counter"], 3);
        assert_eq!(b.filter_servers, Some(vec![]));
        assert!(parse_register_body(b"[1]").is_err());
        assert!(parse_register_body(br#"{"topicConfigTable":3}"#).is_err());
    }
}
