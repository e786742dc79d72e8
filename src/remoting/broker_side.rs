//! The broker side of RocketMQ's protocol on one group member: the request codes a
//! RocketMQ producer, consumer or mqadmin sends to a broker, served over a
//! [`Broker`](crate::broker::Broker), and the member's registration with the name servers.
//!
//! [`BrokerSide::start`] serves `listenPort` with a [`Server`] and runs one thread
//! (`brokerside-<group>-<id>`) that
//! - answers parked long-polling pulls when the broker dispatched new messages (it waits
//!   on the broker's applied index, one wait for all parked pulls, no thread per pull),
//!   or when their suspend time is over;
//! - keeps the registration current: brokerId 0 once this member leads and its log is
//!   committed and applied up to the last entry it held when it became leader (so the
//!   new term's first entry is committed), selfId's number + 1 while it follows; at once
//!   on a role change (the group's role listener wakes it) and when the topics change.
//!   The [`Registrar`] registers every 30 s besides.
//!
//! A follower answers a send as a RocketMQ slave does (SERVICE_NOT_AVAILABLE, "messages
//! are put to the slave"); its pulls and lookups serve committed messages. See
//! docs/REMOTING.md ("Broker side").

use super::codec::RemotingCommand;
use super::codes::request as rq;
use super::codes::response as rs;
use super::json::{self, Value};
use super::register::TopicRoute;
use super::register::{follower_broker_id, BrokerRegistration, Registrar, RegistrarConfig};
use super::server::{
    error_response, ConnectionId, Pusher, Request, Responder, Router, Server, ServerConfig,
};
use crate::broker::record::decode_properties;
use crate::broker::{Broker, Message, MessageView, PullResult, SendResult};
use crate::error::{Error, ErrorKind, Result};
use crate::types::Role;
use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Response codes of ResponseCode.java the broker side answers besides [`rs`]'s.
pub mod code {
    pub const FLUSH_DISK_TIMEOUT: i32 = 10;
    pub const SLAVE_NOT_AVAILABLE: i32 = 11;
    pub const FLUSH_SLAVE_TIMEOUT: i32 = 12;
    pub const MESSAGE_ILLEGAL: i32 = 13;
    pub const SERVICE_NOT_AVAILABLE: i32 = 14;
    pub const PULL_NOT_FOUND: i32 = 19;
    pub const PULL_RETRY_IMMEDIATELY: i32 = 20;
    pub const PULL_OFFSET_MOVED: i32 = 21;
    pub const CONSUMER_NOT_ONLINE: i32 = 206;
}

/// PullSysFlag bits.
const PULL_FLAG_COMMIT_OFFSET: i32 = 1;
const PULL_FLAG_SUSPEND: i32 = 1 << 1;
const PULL_FLAG_SUBSCRIPTION: i32 = 1 << 2;
/// RocketMQ's brokerSuspendMaxTimeMillis: the longest a pull is parked.
const SUSPEND_MAX: Duration = Duration::from_secs(15);
/// Parked pulls at most; beyond it a pull is answered PULL_NOT_FOUND at once.
const PARKED_MAX: usize = 65536;
/// RocketMQ's rebalanceLockMaxLiveTime.
const LOCK_LIFETIME: Duration = Duration::from_secs(60);
/// How long admin requests (topics, offsets, retry topics) may wait for their commit.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);
/// The broker's wait for a sent message's commit.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// The background thread looks at roles and topics at least this often.
const TICK: Duration = Duration::from_millis(250);
/// Marks a pull refused for its filter type (the type follows).
const FILTER_REFUSED: &str = "\u{0}filter:";
/// RocketMQ's maxReconsumeTimes default.
const MAX_RECONSUME_TIMES: i32 = 16;
const MSG_BATCH_MAX: usize = 4096;

/// RocketMQ's remark for a send to a slave (SendMessageProcessor, SERVICE_NOT_AVAILABLE).
pub const SLAVE_SEND_REMARK: &str = "service not available now. It may be caused by one of \
the following reasons: the broker's disk is full, messages are put to the slave, message \
store has been shut down, etc.";

/// What [`BrokerSide::start`] needs besides the broker.
#[derive(Debug, Clone)]
pub struct BrokerSideConfig {
    /// Where to listen (`0.0.0.0:listenPort`).
    pub listen: SocketAddr,
    /// The VIP channel (RocketMQ's fast remoting server, `0.0.0.0:listenPort - 2`): the
    /// same codes, for clients with vipChannelEnabled. `None`: none. When the port is
    /// taken the broker side serves without it (a warning names the port).
    pub vip_listen: Option<SocketAddr>,
    /// brokerIP1 (or 127.0.0.1) : the listen port, as registered and answered.
    pub broker_addr: String,
    /// brokerClusterName.
    pub cluster_name: String,
    /// brokerName: the group's name (dLegerGroup).
    pub broker_name: String,
    /// namesrvAddr; `None`: no registration.
    pub namesrv_addr: Option<String>,
    pub registration_period: Duration,
    pub server: ServerConfig,
    /// The member's broker.conf keys, as GET_BROKER_CONFIG answers them.
    pub properties: BTreeMap<String, String>,
}

impl BrokerSideConfig {
    /// From a member's broker.conf text: `listenPort` (required), brokerIP1,
    /// namesrvAddr, brokerClusterName (default DefaultCluster), brokerName (default the
    /// group). `None` when the text has no listenPort.
    pub fn from_properties(text: &str, broker: &Broker) -> Result<Option<BrokerSideConfig>> {
        let props = properties(text);
        let Some(port) = props.get("listenPort") else {
            return Ok(None);
        };
        let port: u16 = port
            .parse()
            .map_err(|_| Error::config(format!("listenPort: '{port}' is not a port number")))?;
        let ip = props
            .get("brokerIP1")
            .cloned()
            .unwrap_or_else(|| "127.0.0.1".to_string());
        let group = broker.group();
        Ok(Some(BrokerSideConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], port)),
            // [rmqraft] `vipChannelEnabled = false` turns the VIP channel off (RocketMQ's
            // broker has no such key; layouts with listenPorts 1 apart need it).
            vip_listen: vip_port(port)
                .filter(|_| props.get("vipChannelEnabled").is_none_or(|v| v != "false"))
                .map(|p| SocketAddr::from(([0, 0, 0, 0], p))),
            broker_addr: format!("{ip}:{port}"),
            cluster_name: props
                .get("brokerClusterName")
                .cloned()
                .unwrap_or_else(|| "DefaultCluster".to_string()),
            broker_name: props
                .get("brokerName")
                .cloned()
                .unwrap_or_else(|| group.group_name().to_string()),
            namesrv_addr: props.get("namesrvAddr").cloned().filter(|a| !a.is_empty()),
            registration_period: super::register::PERIOD_DEFAULT,
            server: ServerConfig {
                name: format!("broker-{}-{}", group.group_name(), group.self_id()),
                ..ServerConfig::default()
            },
            properties: props.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }))
    }
}

/// RocketMQ's VIP channel port: listenPort - 2 (BrokerController's fastConfig).
pub fn vip_port(listen_port: u16) -> Option<u16> {
    listen_port.checked_sub(2).filter(|p| *p > 0)
}

/// `key = value` lines (broker.conf), later keys winning.
fn properties(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .filter_map(|l| l.split_once(['=', ':']))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// A running broker side. [`BrokerSide::stop`] (or drop) stops serving, unregisters and
/// joins its threads; the broker stays open.
pub struct BrokerSide {
    server: Option<Server>,
    side: Arc<Side>,
    thread: Option<JoinHandle<()>>,
    registrar: Option<Arc<Mutex<Registrar>>>,
}

struct Parked {
    pull: PullArgs,
    deadline: Instant,
    responder: Responder,
}

#[derive(Clone)]
struct PullArgs {
    topic: String,
    queue_id: i32,
    offset: u64,
    max: u32,
    filter: Option<String>,
}

/// A consumer client's last heartbeat, its subscriptions (topic -> (expressionType,
/// expression)) and the connection it last sent a heartbeat on.
type ConsumerClient = (Instant, BTreeMap<String, (String, String)>, ConnectionId);

/// ExpressionType.isTagType: TAG, or no type at all.
fn is_tag_type(expression_type: &str) -> bool {
    expression_type.is_empty() || expression_type.eq_ignore_ascii_case("TAG")
}

/// What RocketMQ's broker answers (SYSTEM_ERROR) to a filter other than TAG while
/// enablePropertyFilter is false (PullMessageProcessor, CHECK_CLIENT_CONFIG).
pub fn filter_not_supported_remark(expression_type: &str) -> String {
    format!("The broker does not support consumer to filter message by {expression_type}")
}

/// A client silent this long is dropped from its groups (RocketMQ's channelExpiredTimeout).
const CLIENT_EXPIRY: Duration = Duration::from_secs(120);
/// (consumer group, topic, brokerName, queueId).
type LockKey = (String, String, String, i32);

#[derive(Default)]
struct Clients {
    /// producer group -> client id -> the connection it last sent a heartbeat on.
    producers: BTreeMap<String, BTreeMap<String, ConnectionId>>,
    /// connection -> (peer, language, version) of the heartbeats sent on it.
    connections: HashMap<ConnectionId, (SocketAddr, &'static str, i32)>,
    /// consumer group -> client id -> (last heartbeat, topic -> subscription expression).
    consumers: BTreeMap<String, BTreeMap<String, ConsumerClient>>,
}

struct Side {
    broker: Arc<Broker>,
    config: BrokerSideConfig,
    clients: Mutex<Clients>,
    parked: Mutex<Vec<Parked>>,
    /// (group, topic, brokerName, queueId) -> (client id, locked at).
    locks: Mutex<HashMap<LockKey, (String, Instant)>>,
    wake_tx: Sender<()>,
    stop: AtomicBool,
    put_total: AtomicU64,
    get_total: AtomicU64,
    boot_ms: i64,
    /// (broker id, topics) last handed to the registrar.
    registered: Mutex<Option<(i64, Vec<TopicRoute>)>>,
    tps: Mutex<Tps>,
    /// Sends server-initiated requests (NOTIFY_CONSUMER_IDS_CHANGED); set once the
    /// server runs.
    pusher: OnceLock<Pusher>,
    push_opaque: AtomicI32,
    /// The dynamic keys UPDATE_BROKER_CONFIG changed, over `config.properties`.
    dynamic: Mutex<BTreeMap<String, String>>,
    config_version: AtomicU64,
}

/// Broker config keys UPDATE_BROKER_CONFIG may change at run time (they take effect at
/// once); every other key is refused, naming it.
pub const DYNAMIC_KEYS: [&str; 1] = ["notifyConsumerIdsChangedEnable"];

#[derive(Default)]
struct Tps {
    at: Option<Instant>,
    put: u64,
    get: u64,
    put_tps: f64,
    get_tps: f64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl BrokerSide {
    /// Serves RocketMQ's broker codes for `broker` and registers it (see the module doc).
    pub fn start(broker: Arc<Broker>, config: BrokerSideConfig) -> Result<BrokerSide> {
        let listener = std::net::TcpListener::bind(config.listen).map_err(|e| {
            Error::io(
                format!("broker side: cannot listen on {}", config.listen),
                e,
            )
        })?;
        BrokerSide::start_on(broker, config, listener)
    }

    /// As [`BrokerSide::start`], on a bound listener; the VIP channel binds
    /// `config.vip_listen` itself.
    pub fn start_on(
        broker: Arc<Broker>,
        config: BrokerSideConfig,
        listener: std::net::TcpListener,
    ) -> Result<BrokerSide> {
        let vip = config
            .vip_listen
            .and_then(|addr| match std::net::TcpListener::bind(addr) {
                Ok(l) => Some(l),
                Err(e) => {
                    log::warn!(
                        "broker side: no VIP channel: cannot listen on {addr} (listenPort - 2): \
                         {e}; clients with vipChannelEnabled=true cannot reach this broker"
                    );
                    None
                }
            });
        BrokerSide::start_on_listeners(broker, config, listener, vip)
    }

    /// As [`BrokerSide::start`], on a bound listener and a bound VIP channel listener.
    pub fn start_on_listeners(
        broker: Arc<Broker>,
        config: BrokerSideConfig,
        listener: std::net::TcpListener,
        vip: Option<std::net::TcpListener>,
    ) -> Result<BrokerSide> {
        let registrar = match &config.namesrv_addr {
            Some(addr) => {
                let mut rc = RegistrarConfig::new(addr.clone());
                rc.period = config.registration_period;
                Some(Arc::new(Mutex::new(Registrar::start(rc)?)))
            }
            None => None,
        };
        let (wake_tx, wake_rx) = crossbeam_channel::bounded(64);
        let side = Arc::new(Side {
            broker: Arc::clone(&broker),
            config: config.clone(),
            clients: Mutex::new(Clients::default()),
            parked: Mutex::new(Vec::new()),
            locks: Mutex::new(HashMap::new()),
            wake_tx,
            stop: AtomicBool::new(false),
            put_total: AtomicU64::new(0),
            get_total: AtomicU64::new(0),
            boot_ms: now_ms(),
            registered: Mutex::new(None),
            tps: Mutex::new(Tps::default()),
            pusher: OnceLock::new(),
            push_opaque: AtomicI32::new(1),
            dynamic: Mutex::new(BTreeMap::new()),
            config_version: AtomicU64::new(0),
        });
        let router = router(&side);
        let listeners: Vec<std::net::TcpListener> = std::iter::once(listener).chain(vip).collect();
        let server = Server::start_on_all(listeners, router, config.server.clone())?;
        let _ = side.pusher.set(server.pusher());
        // Checks of half messages go to a producer of the half's group.
        let weak = Arc::downgrade(&side);
        broker.set_transaction_check_listener(Some(super::txn::check_listener(
            server.pusher(),
            move |g| weak.upgrade().and_then(|s| s.producer_connection(g)),
        )));
        let wake = side.wake_tx.clone();
        broker
            .group()
            .set_role_listener(Some(Box::new(move |_role, _term, _leader| {
                let _ = wake.try_send(());
            })))?;
        let name = format!(
            "brokerside-{}-{}",
            broker.group().group_name(),
            broker.group().self_id()
        );
        let (s2, r2) = (Arc::clone(&side), registrar.clone());
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || s2.background(wake_rx, r2))
            .map_err(|e| Error::io("broker side: spawn", e))?;
        log::info!(
            "broker side of {}/{} serving {:?} (the second: the VIP channel) as {}",
            broker.group().group_name(),
            broker.group().self_id(),
            server.local_addrs(),
            config.broker_addr
        );
        Ok(BrokerSide {
            server: Some(server),
            side,
            thread: Some(thread),
            registrar,
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.server.as_ref().map(Server::local_addr)
    }

    /// The VIP channel's address; `None` when it is not served.
    pub fn vip_addr(&self) -> Option<SocketAddr> {
        self.server
            .as_ref()
            .and_then(|s| s.local_addrs().get(1).copied())
    }

    /// Pulls parked now (long polling).
    pub fn parked_pulls(&self) -> usize {
        lock(&self.side.parked).len()
    }

    /// The brokerId last handed to the registrar; `None` before the first registration.
    pub fn registered_broker_id(&self) -> Option<i64> {
        lock(&self.side.registered).as_ref().map(|r| r.0)
    }

    /// Stops serving (parked pulls are answered PULL_NOT_FOUND), unregisters from the
    /// name servers and joins the threads. Idempotent.
    pub fn stop(&mut self) {
        self.side.stop.store(true, Ordering::SeqCst);
        let _ = self.side.broker.group().set_role_listener(None);
        self.side.broker.set_transaction_check_listener(None);
        let _ = self.side.wake_tx.try_send(());
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                log::error!("broker side: the background thread panicked");
            }
        }
        for p in std::mem::take(&mut *lock(&self.side.parked)) {
            let r = self.side.pull_now(&p.pull);
            p.responder.respond(pull_response(r, false));
        }
        if let Some(mut s) = self.server.take() {
            s.shutdown();
        }
        if let Some(r) = self.registrar.take() {
            lock(&r).stop();
        }
    }
}

impl Drop for BrokerSide {
    fn drop(&mut self) {
        self.stop();
    }
}

type Handler = fn(&Side, Request, Responder);

fn router(side: &Arc<Side>) -> Router {
    let table: [(i32, Handler); 24] = [
        (rq::HEART_BEAT, Side::heartbeat),
        (rq::UNREGISTER_CLIENT, Side::unregister_client),
        (rq::SEND_MESSAGE, Side::send_message),
        (rq::SEND_MESSAGE_V2, Side::send_message),
        (rq::SEND_BATCH_MESSAGE, Side::send_message),
        (rq::PULL_MESSAGE, Side::pull_message),
        (rq::LITE_PULL_MESSAGE, Side::pull_message),
        (rq::QUERY_CONSUMER_OFFSET, Side::query_consumer_offset),
        (rq::UPDATE_CONSUMER_OFFSET, Side::update_consumer_offset),
        (rq::GET_CONSUMER_LIST_BY_GROUP, Side::consumer_list),
        (rq::GET_MAX_OFFSET, Side::max_offset),
        (rq::GET_MIN_OFFSET, Side::min_offset),
        (rq::SEARCH_OFFSET_BY_TIMESTAMP, Side::search_offset),
        (rq::QUERY_MESSAGE, Side::query_message),
        (rq::VIEW_MESSAGE_BY_ID, Side::view_message),
        (rq::CONSUMER_SEND_MSG_BACK, Side::send_back),
        (rq::LOCK_BATCH_MQ, Side::lock_batch),
        (rq::UNLOCK_BATCH_MQ, Side::unlock_batch),
        (rq::GET_BROKER_RUNTIME_INFO, Side::runtime_info),
        (rq::UPDATE_AND_CREATE_TOPIC, Side::update_topic),
        (rq::DELETE_TOPIC_IN_BROKER, Side::delete_topic),
        (rq::GET_ALL_TOPIC_CONFIG, Side::all_topic_config),
        (GET_TOPIC_STATS_INFO, Side::topic_stats),
        (GET_CONSUME_STATS, Side::consume_stats),
    ];
    // Codes of issue 16 (filters, admin, ACL), apart so the table above stays as it is.
    let more: Vec<(i32, Handler)> = vec![
        (rq::CHECK_CLIENT_CONFIG, Side::check_client_config),
        (rq::GET_BROKER_CONFIG, Side::get_broker_config),
        (rq::UPDATE_BROKER_CONFIG, Side::update_broker_config),
        (rq::GET_CONSUMER_CONNECTION_LIST, Side::consumer_connections),
        (rq::GET_PRODUCER_CONNECTION_LIST, Side::producer_connections),
        (rq::QUERY_TOPIC_CONSUME_BY_WHO, Side::consume_by_who),
        (
            rq::CLEAN_EXPIRED_CONSUMEQUEUE,
            Side::clean_expired_consume_queue,
        ),
        (rq::GET_BROKER_CLUSTER_ACL_INFO, Side::acl_info),
    ];
    let mut router = Router::new();
    for (code, handler) in table.into_iter().chain(more) {
        let side = Arc::clone(side);
        router.route(
            code,
            Arc::new(move |req: Request, resp: Responder| handler(&side, req, resp)),
        );
    }
    // A client whose connection closed leaves its groups at once, as RocketMQ's
    // ClientHousekeepingService does on channel close: rebalancing consumers must not
    // share queues with a client that is gone.
    super::txn::route(&mut router, Arc::clone(&side.broker));
    let side = Arc::clone(side);
    router.on_close(move |connection| side.forget_connection(connection));
    router
}

/// RequestCode.GET_TOPIC_STATS_INFO (topicStatus).
pub const GET_TOPIC_STATS_INFO: i32 = 202;
/// RequestCode.GET_CONSUME_STATS (consumerProgress).
pub const GET_CONSUME_STATS: i32 = 208;

/// The codes [`BrokerSide`] serves.
pub fn served_codes() -> Vec<i32> {
    let side_codes = [
        rq::HEART_BEAT,
        rq::UNREGISTER_CLIENT,
        rq::SEND_MESSAGE,
        rq::SEND_MESSAGE_V2,
        rq::SEND_BATCH_MESSAGE,
        rq::PULL_MESSAGE,
        rq::LITE_PULL_MESSAGE,
        rq::QUERY_CONSUMER_OFFSET,
        rq::UPDATE_CONSUMER_OFFSET,
        rq::GET_CONSUMER_LIST_BY_GROUP,
        rq::GET_MAX_OFFSET,
        rq::GET_MIN_OFFSET,
        rq::SEARCH_OFFSET_BY_TIMESTAMP,
        rq::QUERY_MESSAGE,
        rq::VIEW_MESSAGE_BY_ID,
        rq::CONSUMER_SEND_MSG_BACK,
        rq::LOCK_BATCH_MQ,
        rq::UNLOCK_BATCH_MQ,
        rq::GET_BROKER_RUNTIME_INFO,
        rq::UPDATE_AND_CREATE_TOPIC,
        rq::DELETE_TOPIC_IN_BROKER,
        rq::GET_ALL_TOPIC_CONFIG,
        GET_TOPIC_STATS_INFO,
        GET_CONSUME_STATS,
    ];
    let more_codes = [
        rq::CHECK_CLIENT_CONFIG,
        rq::GET_BROKER_CONFIG,
        rq::UPDATE_BROKER_CONFIG,
        rq::GET_CONSUMER_CONNECTION_LIST,
        rq::GET_PRODUCER_CONNECTION_LIST,
        rq::QUERY_TOPIC_CONSUME_BY_WHO,
        rq::CLEAN_EXPIRED_CONSUMEQUEUE,
        rq::GET_BROKER_CLUSTER_ACL_INFO,
    ];
    let mut v = side_codes.to_vec();
    v.extend_from_slice(&more_codes);
    v.extend(super::txn::CODES);
    v.sort_unstable();
    v
}

/// A request's header field, required.
fn field<'a>(cmd: &'a RemotingCommand, name: &str) -> std::result::Result<&'a str, String> {
    cmd.field(name)
        .ok_or_else(|| format!("the request has no '{name}' field"))
}

fn parsed<T: std::str::FromStr>(
    cmd: &RemotingCommand,
    name: &str,
) -> std::result::Result<T, String> {
    let v = field(cmd, name)?;
    v.trim()
        .parse()
        .map_err(|_| format!("field '{name}': '{v}' is not a number"))
}

fn opt_parsed<T: std::str::FromStr>(cmd: &RemotingCommand, name: &str, default: T) -> T {
    cmd.field(name)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn ok() -> RemotingCommand {
    error_response(rs::SUCCESS, String::new()).without_remark()
}

trait WithoutRemark {
    fn without_remark(self) -> Self;
}

impl WithoutRemark for RemotingCommand {
    fn without_remark(mut self) -> Self {
        self.remark = None;
        self
    }
}

fn invalid(remark: String) -> RemotingCommand {
    error_response(rs::INVALID_PARAMETER, remark)
}

/// A broker error as RocketMQ's broker answers it.
fn error_of(e: &Error) -> RemotingCommand {
    let code = match e.kind() {
        ErrorKind::NotLeader => code::SERVICE_NOT_AVAILABLE,
        ErrorKind::NoTopic => rs::TOPIC_NOT_EXIST,
        ErrorKind::NoPermission => rs::NO_PERMISSION,
        ErrorKind::InvalidArgument | ErrorKind::TooLarge => code::MESSAGE_ILLEGAL,
        ErrorKind::Busy => rs::SYSTEM_BUSY,
        ErrorKind::NotFound => rs::QUERY_NOT_FOUND,
        ErrorKind::Timeout => code::FLUSH_SLAVE_TIMEOUT,
        _ => rs::SYSTEM_ERROR,
    };
    error_response(code, e.message().to_string())
}

fn send_error(e: &Error, topic: &str) -> RemotingCommand {
    match e.kind() {
        ErrorKind::NotLeader => {
            error_response(code::SERVICE_NOT_AVAILABLE, SLAVE_SEND_REMARK.into())
        }
        ErrorKind::NoTopic => error_response(
            rs::TOPIC_NOT_EXIST,
            format!(
                "topic[{topic}] not exist, apply first please! {}",
                e.message()
            ),
        ),
        _ => error_of(e),
    }
}

fn kv_body(v: &Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

fn with_body(mut r: RemotingCommand, body: Vec<u8>) -> RemotingCommand {
    r.body = body;
    r
}

/// A pull's response: FOUND with the records, or what RocketMQ answers without them.
fn pull_response(r: Result<(PullArgs, PullResult)>, _parked: bool) -> RemotingCommand {
    let (args, p) = match r {
        Ok(v) => v,
        Err(e) => return error_of(&e),
    };
    let code = if !p.messages.is_empty() {
        rs::SUCCESS
    } else if args.offset > p.max_offset || args.offset < p.min_offset {
        code::PULL_OFFSET_MOVED
    } else if p.next_offset > args.offset {
        code::PULL_RETRY_IMMEDIATELY
    } else {
        code::PULL_NOT_FOUND
    };
    let mut body = Vec::new();
    for m in &p.messages {
        body.extend_from_slice(&m.record);
    }
    let remark = match code {
        rs::SUCCESS => None,
        code::PULL_OFFSET_MOVED => Some("OFFSET_OVERFLOW_BADLY".to_string()),
        code::PULL_RETRY_IMMEDIATELY => Some("NO_MATCHED_MESSAGE".to_string()),
        _ => Some("OFFSET_OVERFLOW_ONE".to_string()),
    };
    let mut resp = error_response(code, String::new());
    resp.remark = remark;
    resp.with_field("nextBeginOffset", p.next_offset.to_string())
        .with_field("minOffset", p.min_offset.to_string())
        .with_field("maxOffset", p.max_offset.to_string())
        .with_field("suggestWhichBrokerId", "0")
        .with_body(body)
}

/// Splits a message's properties into the broker's fields (tags, keys, delay) and the
/// rest.
#[allow(clippy::too_many_arguments)]
fn message_from(
    topic: &str,
    properties: &str,
    body: Bytes,
    queue_id: i32,
    flag: i32,
    sys_flag: i32,
    born_ts: i64,
    reconsume: i32,
    born_host: SocketAddr,
) -> Message {
    let mut m = Message::new(topic, body);
    m.queue_id = queue_id;
    m.flag = flag;
    m.sys_flag = sys_flag;
    m.born_timestamp = born_ts;
    m.reconsume_times = reconsume;
    m.born_host = Some(born_host);
    for (k, v) in decode_properties(properties) {
        match k.as_str() {
            "TAGS" => m.tags = Some(v),
            "KEYS" => m.keys = Some(v),
            "DELAY" => m.delay_level = v.parse().unwrap_or(0),
            _ => m.properties.push((k, v)),
        }
    }
    m
}

/// A MessageBatch body: per message TOTALSIZE, MAGICCODE, BODYCRC, FLAG, body length,
/// BODY, properties length (2 bytes), PROPERTIES (MessageDecoder.encodeMessage).
fn decode_batch(b: &[u8]) -> std::result::Result<Vec<(i32, Bytes, String)>, String> {
    let mut out = Vec::new();
    let mut at = 0usize;
    let rd = |at: usize, n: usize| -> std::result::Result<&[u8], String> {
        b.get(at..at + n)
            .ok_or_else(|| format!("batch body cut short at byte {at}"))
    };
    while at < b.len() {
        if out.len() >= MSG_BATCH_MAX {
            return Err(format!("batch holds more than {MSG_BATCH_MAX} messages"));
        }
        let total = i32::from_be_bytes(rd(at, 4)?.try_into().expect("4")) as usize;
        if total < 22 || at + total > b.len() {
            return Err(format!("batch message at byte {at}: bad size {total}"));
        }
        let flag = i32::from_be_bytes(rd(at + 12, 4)?.try_into().expect("4"));
        let body_len = i32::from_be_bytes(rd(at + 16, 4)?.try_into().expect("4"));
        if body_len < 0 || 20 + body_len as usize + 2 > total {
            return Err(format!("batch message at byte {at}: bad body length"));
        }
        let body = Bytes::copy_from_slice(rd(at + 20, body_len as usize)?);
        let p = at + 20 + body_len as usize;
        let plen = u16::from_be_bytes(rd(p, 2)?.try_into().expect("2")) as usize;
        if 20 + body_len as usize + 2 + plen > total {
            return Err(format!("batch message at byte {at}: bad properties length"));
        }
        let props = String::from_utf8_lossy(rd(p + 2, plen)?).into_owned();
        out.push((flag, body, props));
        at += total;
    }
    Ok(out)
}

/// Header fields of SEND_MESSAGE_V2 (a..n) under SEND_MESSAGE's names.
const V2_FIELDS: [(&str, &str); 14] = [
    ("a", "producerGroup"),
    ("b", "topic"),
    ("c", "defaultTopic"),
    ("d", "defaultTopicQueueNums"),
    ("e", "queueId"),
    ("f", "sysFlag"),
    ("g", "bornTimestamp"),
    ("h", "flag"),
    ("i", "properties"),
    ("j", "reconsumeTimes"),
    ("k", "unitMode"),
    ("l", "maxReconsumeTimes"),
    ("m", "batch"),
    ("n", "brokerName"),
];

fn send_response(results: &[SendResult]) -> RemotingCommand {
    let first = &results[0];
    let ids: Vec<&str> = results.iter().map(|r| r.offset_msg_id.as_str()).collect();
    ok().with_field("msgId", ids.join(","))
        .with_field("queueId", first.queue_id.to_string())
        .with_field("queueOffset", first.queue_offset.to_string())
        .with_field("MSG_REGION", "DefaultRegion")
        .with_field("TRACE_ON", "true")
}

impl Side {
    fn is_leader(&self) -> bool {
        matches!(self.broker.role(), Ok(Role::Leader))
    }

    fn heartbeat(&self, req: Request, resp: Responder) {
        let hb = match json::parse_lenient(&req.command.body) {
            Ok(v) => v,
            Err(e) => {
                resp.respond(invalid(format!("heartbeat body is not JSON: {e}")));
                return;
            }
        };
        let client = hb["clientID"].as_str().unwrap_or("").to_string();
        let mut retry_groups = Vec::new();
        let mut changed = Vec::new();
        {
            let mut c = lock(&self.clients);
            c.connections.insert(
                req.connection,
                (req.peer, req.command.language.name(), req.command.version),
            );
            for p in hb["producerDataSet"].as_array().into_iter().flatten() {
                if let Some(g) = p["groupName"].as_str() {
                    c.producers
                        .entry(g.to_string())
                        .or_default()
                        .insert(client.clone(), req.connection);
                }
            }
            for cd in hb["consumerDataSet"].as_array().into_iter().flatten() {
                let Some(g) = cd["groupName"].as_str() else {
                    continue;
                };
                let mut subs = BTreeMap::new();
                for s in cd["subscriptionDataSet"].as_array().into_iter().flatten() {
                    if let Some(t) = s["topic"].as_str() {
                        let e = s["subString"].as_str().unwrap_or("*");
                        let ty = s["expressionType"].as_str().unwrap_or("TAG");
                        subs.insert(t.to_string(), (ty.to_string(), e.to_string()));
                    }
                }
                let old = c.consumers.entry(g.to_string()).or_default().insert(
                    client.clone(),
                    (Instant::now(), subs.clone(), req.connection),
                );
                // As RocketMQ's ConsumerManager.registerConsumer: a new client or new
                // subscriptions change the group (a known client on another connection
                // does not: its id, what rebalancing splits queues by, is the same).
                if old.is_none_or(|(_, s, _)| s != subs) {
                    changed.push(g.to_string());
                }
                retry_groups.push(g.to_string());
            }
        }
        if self.is_leader() {
            for g in retry_groups {
                if self
                    .broker
                    .topic(&crate::broker::topic::retry_topic(&g))
                    .is_err()
                {
                    if let Err(e) = self.broker.ensure_retry_topic(&g, ADMIN_TIMEOUT) {
                        log::warn!("heartbeat: cannot create the retry topic of {g}: {e}");
                    }
                }
            }
        }
        resp.respond(ok());
        self.notify_ids_changed(&changed);
    }

    /// NOTIFY_CONSUMER_IDS_CHANGED (oneway, header consumerGroup) to every connection of
    /// each group's consumers, as RocketMQ's Broker2Client.notifyConsumerIdsChanged: they
    /// rebalance at once instead of at their next 20 s round.
    fn notify_ids_changed(&self, groups: &[String]) {
        let Some(pusher) = self.pusher.get() else {
            return;
        };
        if self
            .config_value("notifyConsumerIdsChangedEnable")
            .as_deref()
            == Some("false")
        {
            return;
        }
        let targets: Vec<(String, Vec<ConnectionId>)> = {
            let c = lock(&self.clients);
            groups
                .iter()
                .filter_map(|g| {
                    let map = c.consumers.get(g)?;
                    let mut conns: Vec<ConnectionId> = map.values().map(|v| v.2).collect();
                    conns.sort_unstable();
                    conns.dedup();
                    Some((g.clone(), conns))
                })
                .collect()
        };
        for (group, conns) in targets {
            for conn in conns {
                let mut cmd = RemotingCommand::request(
                    rq::NOTIFY_CONSUMER_IDS_CHANGED,
                    self.push_opaque.fetch_add(1, Ordering::Relaxed),
                )
                .with_field("consumerGroup", group.clone());
                cmd.flag |= super::codec::FLAG_ONEWAY;
                pusher.push(conn, &cmd);
            }
        }
    }

    /// A connection of a live producer of `group` (one at random).
    fn producer_connection(&self, group: &str) -> Option<ConnectionId> {
        let c = lock(&self.clients);
        let set = c.producers.get(group)?;
        let n = set.len();
        if n == 0 {
            return None;
        }
        // Spread the checks over the group's producers.
        set.values().nth(fastrand::usize(..n)).copied()
    }

    /// Drops every producer and consumer client that sent its heartbeats on `connection`.
    fn forget_connection(&self, connection: ConnectionId) {
        let mut changed = Vec::new();
        {
            let mut c = lock(&self.clients);
            c.connections.remove(&connection);
            for set in c.producers.values_mut() {
                set.retain(|_, conn| *conn != connection);
            }
            c.producers.retain(|_, set| !set.is_empty());
            for (g, map) in c.consumers.iter_mut() {
                let before = map.len();
                map.retain(|_, (_, _, conn)| *conn != connection);
                if map.len() != before {
                    changed.push(g.clone());
                }
            }
            c.consumers.retain(|_, map| !map.is_empty());
        }
        self.notify_ids_changed(&changed);
    }

    fn unregister_client(&self, req: Request, resp: Responder) {
        let cmd = &req.command;
        let client = cmd.field("clientID").unwrap_or("");
        let mut c = lock(&self.clients);
        if let Some(g) = cmd.field("producerGroup") {
            if let Some(set) = c.producers.get_mut(g) {
                set.remove(client);
            }
        }
        let mut changed = Vec::new();
        if let Some(g) = cmd.field("consumerGroup") {
            if let Some(map) = c.consumers.get_mut(g) {
                if map.remove(client).is_some() {
                    changed.push(g.to_string());
                }
                if map.is_empty() {
                    c.consumers.remove(g);
                }
            }
        }
        drop(c);
        resp.respond(ok());
        self.notify_ids_changed(&changed);
    }

    fn send_message(&self, mut req: Request, resp: Responder) {
        // SendMessageProcessor.parseRequestHeader: SEND_MESSAGE_V2 and SEND_BATCH_MESSAGE
        // come with the short (a..n) header; a batch with the long names is read too.
        let v2 = req.command.code == rq::SEND_MESSAGE_V2
            || (req.command.code == rq::SEND_BATCH_MESSAGE && req.command.field("b").is_some());
        if v2 {
            for (short, long) in V2_FIELDS {
                if let Some(v) = req.command.ext_fields.remove(short) {
                    req.command.ext_fields.insert(long.to_string(), v);
                }
            }
        }
        let cmd = &req.command;
        let topic = match field(cmd, "topic") {
            Ok(t) => t.to_string(),
            Err(e) => {
                resp.respond(invalid(e));
                return;
            }
        };
        if !self.is_leader() {
            resp.respond(error_response(
                code::SERVICE_NOT_AVAILABLE,
                SLAVE_SEND_REMARK.into(),
            ));
            return;
        }
        let queue_id: i32 = opt_parsed(cmd, "queueId", -1);
        let flag: i32 = opt_parsed(cmd, "flag", 0);
        let sys_flag: i32 = opt_parsed(cmd, "sysFlag", 0);
        let born: i64 = opt_parsed(cmd, "bornTimestamp", 0);
        let reconsume: i32 = opt_parsed(cmd, "reconsumeTimes", 0);
        let props = cmd.field("properties").unwrap_or("").to_string();
        let batch =
            cmd.code == rq::SEND_BATCH_MESSAGE || cmd.field("batch").is_some_and(|b| b == "true");
        let messages: Vec<Message> = if batch {
            match decode_batch(&cmd.body) {
                Ok(list) if !list.is_empty() => list
                    .into_iter()
                    .map(|(f, body, p)| {
                        message_from(
                            &topic, &p, body, queue_id, f, sys_flag, born, reconsume, req.peer,
                        )
                    })
                    .collect(),
                Ok(_) => {
                    resp.respond(error_response(
                        code::MESSAGE_ILLEGAL,
                        "the batch is empty".into(),
                    ));
                    return;
                }
                Err(e) => {
                    resp.respond(error_response(code::MESSAGE_ILLEGAL, e));
                    return;
                }
            }
        } else {
            let body = Bytes::from(std::mem::take(&mut req.command.body));
            vec![message_from(
                &topic, &props, body, queue_id, flag, sys_flag, born, reconsume, req.peer,
            )]
        };
        self.send_all(messages, topic, resp);
    }

    /// Sends `messages` in order without holding a worker; answers once all are
    /// committed (or the first failed).
    fn send_all(&self, messages: Vec<Message>, topic: String, resp: Responder) {
        let n = messages.len();
        struct Acc {
            results: Vec<Option<SendResult>>,
            left: usize,
            failed: Option<Error>,
            resp: Option<Responder>,
        }
        let acc = Arc::new(Mutex::new(Acc {
            results: vec![None; n],
            left: n,
            failed: None,
            resp: Some(resp),
        }));
        let finish = |acc: &mut Acc, topic: &str| {
            if let Some(resp) = acc.resp.take() {
                match &acc.failed {
                    Some(e) => resp.respond(send_error(e, topic)),
                    None => {
                        let results: Vec<SendResult> =
                            acc.results.iter_mut().filter_map(Option::take).collect();
                        resp.respond(send_response(&results))
                    }
                };
            }
        };
        for (i, m) in messages.iter().enumerate() {
            let a2 = Arc::clone(&acc);
            let t2 = topic.clone();
            let done: crate::broker::SendCallback = Box::new(move |r| {
                let mut a = lock(&a2);
                match r {
                    Ok(sr) => a.results[i] = Some(sr),
                    Err(e) => {
                        if a.failed.is_none() {
                            a.failed = Some(e)
                        }
                    }
                }
                a.left -= 1;
                if a.left == 0 {
                    finish(&mut a, &t2);
                }
            });
            if let Err(e) = self.broker.send_async(m, done) {
                let mut a = lock(&acc);
                if a.failed.is_none() {
                    a.failed = Some(e);
                }
                // Messages not handed over count as done.
                a.left -= n - i;
                if a.left == 0 {
                    finish(&mut a, &topic);
                }
                return;
            }
        }
        self.put_total.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// (expressionType, expression) of `group`'s subscription to `topic`.
    fn subscription(&self, group: &str, topic: &str) -> Option<(String, String)> {
        let c = lock(&self.clients);
        c.consumers
            .get(group)?
            .values()
            .find_map(|(_, subs, _)| subs.get(topic).cloned())
    }

    fn pull_now(&self, a: &PullArgs) -> Result<(PullArgs, PullResult)> {
        let r = self.broker.pull(
            &a.topic,
            a.queue_id,
            a.offset,
            a.max,
            a.filter.as_deref(),
            Duration::ZERO,
        )?;
        self.get_total
            .fetch_add(r.messages.len() as u64, Ordering::Relaxed);
        Ok((a.clone(), r))
    }

    fn pull_message(&self, req: Request, resp: Responder) {
        let cmd = &req.command;
        let args = (|| -> std::result::Result<(PullArgs, i32, u64, String), String> {
            let topic = field(cmd, "topic")?.to_string();
            let group = cmd.field("consumerGroup").unwrap_or("").to_string();
            let queue_id: i32 = parsed(cmd, "queueId")?;
            let offset: i64 = parsed(cmd, "queueOffset")?;
            let max: i32 = opt_parsed(cmd, "maxMsgNums", 32);
            let sys_flag: i32 = opt_parsed(cmd, "sysFlag", 0);
            let suspend: u64 = opt_parsed(cmd, "suspendTimeoutMillis", 0);
            let (expression_type, filter) = if sys_flag & PULL_FLAG_SUBSCRIPTION != 0 {
                (
                    cmd.field("expressionType").unwrap_or("").to_string(),
                    cmd.field("subscription").map(str::to_string),
                )
            } else {
                match self.subscription(&group, &topic) {
                    Some((ty, e)) => (ty, Some(e)),
                    None => (String::new(), None),
                }
            };
            // SQL92 (or any type but TAG) is refused as RocketMQ refuses it without
            // enablePropertyFilter, never served as if it were a tag expression.
            if !is_tag_type(&expression_type) {
                return Err(FILTER_REFUSED.to_string() + &expression_type);
            }
            let suspend = if sys_flag & PULL_FLAG_SUSPEND != 0 {
                suspend
            } else {
                0
            };
            if sys_flag & PULL_FLAG_COMMIT_OFFSET != 0 && !group.is_empty() {
                let commit: i64 = opt_parsed(cmd, "commitOffset", -1);
                if commit >= 0 && self.is_leader() {
                    let _ = self.broker.consumer_offset_commit(
                        &group,
                        &topic,
                        queue_id,
                        commit as u64,
                        Duration::ZERO,
                    );
                }
            }
            Ok((
                PullArgs {
                    topic,
                    queue_id,
                    offset: offset.max(0) as u64,
                    max: max.clamp(1, crate::broker::PULL_MAX as i32) as u32,
                    filter,
                },
                sys_flag,
                suspend,
                group,
            ))
        })();
        let (args, _flags, suspend, _group) = match args {
            Ok(a) => a,
            Err(e) => match e.strip_prefix(FILTER_REFUSED) {
                Some(ty) => {
                    resp.respond(error_response(
                        rs::SYSTEM_ERROR,
                        filter_not_supported_remark(ty),
                    ));
                    return;
                }
                None => {
                    resp.respond(invalid(e));
                    return;
                }
            },
        };
        let r = self.pull_now(&args);
        let waiting = matches!(&r, Ok((a, p)) if p.messages.is_empty() && a.offset == p.max_offset);
        if waiting && suspend > 0 && !self.stop.load(Ordering::Relaxed) {
            let mut parked = lock(&self.parked);
            if parked.len() < PARKED_MAX {
                parked.push(Parked {
                    pull: args,
                    deadline: Instant::now() + Duration::from_millis(suspend).min(SUSPEND_MAX),
                    responder: resp,
                });
                drop(parked);
                let _ = self.wake_tx.try_send(());
                return;
            }
        }
        resp.respond(pull_response(r, false));
    }

    /// Answers the parked pulls that have messages now or whose time is over.
    fn serve_parked(&self) {
        let now = Instant::now();
        let parked = std::mem::take(&mut *lock(&self.parked));
        let mut keep = Vec::new();
        for p in parked {
            let r = self.pull_now(&p.pull);
            let still =
                matches!(&r, Ok((a, pr)) if pr.messages.is_empty() && a.offset == pr.max_offset);
            if still && now < p.deadline && !self.stop.load(Ordering::Relaxed) {
                keep.push(p);
            } else {
                p.responder.respond(pull_response(r, true));
            }
        }
        lock(&self.parked).extend(keep);
    }

    fn queue_args(cmd: &RemotingCommand) -> std::result::Result<(String, i32), String> {
        Ok((field(cmd, "topic")?.to_string(), parsed(cmd, "queueId")?))
    }

    fn query_consumer_offset(&self, req: Request, resp: Responder) {
        let cmd = &req.command;
        let r = (|| -> std::result::Result<RemotingCommand, String> {
            let group = field(cmd, "consumerGroup")?;
            let (topic, q) = Self::queue_args(cmd)?;
            Ok(match self.broker.consumer_offset_fetch(group, &topic, q) {
                Ok(Some(o)) => ok().with_field("offset", o.to_string()),
                Ok(None) => match self.broker.queue_offsets(&topic, q) {
                    // RocketMQ: a group new to a queue that still starts at 0 reads from 0.
                    Ok((0, _)) => ok().with_field("offset", "0"),
                    _ => error_response(
                        rs::QUERY_NOT_FOUND,
                        "Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first".into(),
                    ),
                },
                Err(e) => error_of(&e),
            })
        })();
        resp.respond(r.unwrap_or_else(invalid));
    }

    fn update_consumer_offset(&self, req: Request, resp: Responder) {
        let cmd = &req.command;
        let r = (|| -> std::result::Result<RemotingCommand, String> {
            let group = field(cmd, "consumerGroup")?;
            let (topic, q) = Self::queue_args(cmd)?;
            let offset: i64 = parsed(cmd, "commitOffset")?;
            if offset < 0 {
                return Err(format!("commitOffset {offset} is negative"));
            }
            let timeout = if cmd.is_oneway() {
                Duration::ZERO
            } else {
                ADMIN_TIMEOUT
            };
            Ok(
                match self
                    .broker
                    .consumer_offset_commit(group, &topic, q, offset as u64, timeout)
                {
                    Ok(()) => ok(),
                    Err(e) => error_of(&e),
                },
            )
        })();
        resp.respond(r.unwrap_or_else(invalid));
    }

    fn consumer_list(&self, req: Request, resp: Responder) {
        let group = req.command.field("consumerGroup").unwrap_or("").to_string();
        let ids: Vec<String> = {
            let mut c = lock(&self.clients);
            match c.consumers.get_mut(&group) {
                Some(m) => {
                    // A client silent for CLIENT_EXPIRY is gone (its connection may
                    // still look open, e.g. a peer that vanished).
                    m.retain(|_, (seen, _, _)| seen.elapsed() < CLIENT_EXPIRY);
                    m.keys().cloned().collect()
                }
                None => Vec::new(),
            }
        };
        if ids.is_empty() {
            resp.respond(error_response(
                rs::SYSTEM_ERROR,
                format!("no consumer for this group, {group}"),
            ));
            return;
        }
        resp.respond(with_body(
            ok(),
            kv_body(&serde_json::json!({ "consumerIdList": ids })),
        ));
    }

    fn offsets_of(&self, cmd: &RemotingCommand) -> std::result::Result<Result<(u64, u64)>, String> {
        let (topic, q) = Self::queue_args(cmd)?;
        Ok(self.broker.queue_offsets(&topic, q))
    }

    fn max_offset(&self, req: Request, resp: Responder) {
        let r = self.offsets_of(&req.command).map(|r| match r {
            Ok((_, max)) => ok().with_field("offset", max.to_string()),
            Err(e) => error_of(&e),
        });
        resp.respond(r.unwrap_or_else(invalid));
    }

    fn min_offset(&self, req: Request, resp: Responder) {
        let r = self.offsets_of(&req.command).map(|r| match r {
            Ok((min, _)) => ok().with_field("offset", min.to_string()),
            Err(e) => error_of(&e),
        });
        resp.respond(r.unwrap_or_else(invalid));
    }

    /// The store timestamp of the message at a queue offset.
    fn stored_at(&self, topic: &str, q: i32, offset: u64) -> Result<Option<i64>> {
        let p = self
            .broker
            .pull(topic, q, offset, 1, None, Duration::ZERO)?;
        Ok(p.messages.first().map(|m| m.decoded.store_timestamp))
    }

    fn search_offset(&self, req: Request, resp: Responder) {
        let cmd = &req.command;
        let r = (|| -> std::result::Result<RemotingCommand, String> {
            let (topic, q) = Self::queue_args(cmd)?;
            let ts: i64 = parsed(cmd, "timestamp")?;
            let found = (|| -> Result<u64> {
                let (mut lo, mut hi) = self.broker.queue_offsets(&topic, q)?;
                // The first offset whose message was stored at or after `ts`.
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    match self.stored_at(&topic, q, mid)? {
                        Some(t) if t < ts => lo = mid + 1,
                        _ => hi = mid,
                    }
                }
                Ok(lo)
            })();
            Ok(match found {
                Ok(o) => ok().with_field("offset", o.to_string()),
                Err(e) => error_of(&e),
            })
        })();
        resp.respond(r.unwrap_or_else(invalid));
    }

    fn query_message(&self, req: Request, resp: Responder) {
        let cmd = &req.command;
        let r = (|| -> std::result::Result<RemotingCommand, String> {
            let topic = field(cmd, "topic")?;
            let key = field(cmd, "key")?;
            let max: i32 = opt_parsed(cmd, "maxNum", 32);
            let begin: i64 = opt_parsed(cmd, "beginTimestamp", 0);
            let end: i64 = opt_parsed(cmd, "endTimestamp", 0);
            let unique = cmd.field("_UNIQUE_KEY_QUERY").is_some_and(|v| v == "true");
            let found: Result<Vec<MessageView>> = if unique {
                match self.broker.view_by_id(key) {
                    Ok(v) if v.topic() == topic => Ok(vec![v]),
                    Ok(_) => Ok(Vec::new()),
                    Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
                    Err(e) => Err(e),
                }
            } else {
                self.broker
                    .query_by_key(topic, key, max.clamp(1, 64 * 1024) as u32, begin, end)
            };
            let found = match found {
                Ok(f) => f,
                Err(e) => return Ok(error_of(&e)),
            };
            if found.is_empty() {
                return Ok(error_response(
                    rs::QUERY_NOT_FOUND,
                    "can not find message, maybe time range not correct".into(),
                ));
            }
            let last = found
                .iter()
                .map(|m| m.decoded.store_timestamp)
                .max()
                .unwrap_or(0);
            let mut body = Vec::new();
            for m in &found {
                body.extend_from_slice(&m.record);
            }
            Ok(ok()
                .with_field("indexLastUpdateTimestamp", last.to_string())
                .with_field("indexLastUpdatePhyoffset", "0")
                .with_body(body))
        })();
        resp.respond(r.unwrap_or_else(invalid));
    }

    fn view_message(&self, req: Request, resp: Responder) {
        let r = parsed::<i64>(&req.command, "offset").map(|offset| {
            match self.broker.view_at(offset.max(0) as u64) {
                Ok(Some(v)) => with_body(ok(), v.record.to_vec()),
                Ok(None) => error_response(
                    rs::SYSTEM_ERROR,
                    format!("can not find message by the offset, {offset}"),
                ),
                Err(e) => error_of(&e),
            }
        });
        resp.respond(r.unwrap_or_else(invalid));
    }

    /// CONSUMER_SEND_MSG_BACK: the message at `offset` is sent again to
    /// `%RETRY%<group>` with a delay and its reconsume times + 1, or to `%DLQ%<group>`
    /// once they reach maxReconsumeTimes (or for delayLevel < 0), by `Broker::send_back`:
    /// the broker's own re-put, which UNIQ_KEY dedup never drops (a message retried
    /// twice within dedupWindowMs keeps its id and must still be stored).
    fn send_back(&self, req: Request, resp: Responder) {
        let cmd = &req.command;
        let parsed_args = (|| -> std::result::Result<(i64, String, i32, i32), String> {
            Ok((
                parsed(cmd, "offset")?,
                field(cmd, "group")?.to_string(),
                opt_parsed(cmd, "delayLevel", 0),
                opt_parsed(cmd, "maxReconsumeTimes", MAX_RECONSUME_TIMES),
            ))
        })();
        let (offset, group, delay, max_times) = match parsed_args {
            Ok(a) => a,
            Err(e) => {
                resp.respond(invalid(e));
                return;
            }
        };
        if !self.is_leader() {
            resp.respond(error_response(
                code::SERVICE_NOT_AVAILABLE,
                SLAVE_SEND_REMARK.into(),
            ));
            return;
        }
        let answer = match self.broker.send_back(
            &group,
            offset.max(0) as u64,
            delay,
            max_times,
            SEND_TIMEOUT,
        ) {
            Ok(_) => ok(),
            Err(e) if e.kind() == crate::error::ErrorKind::NotFound => error_response(
                rs::SYSTEM_ERROR,
                format!("look message by offset failed, {offset}"),
            ),
            Err(e) => send_error(&e, &crate::broker::topic::retry_topic(&group)),
        };
        resp.respond(answer);
    }

    fn lock_batch(&self, req: Request, resp: Responder) {
        let body = match json::parse_lenient(&req.command.body) {
            Ok(v) => v,
            Err(e) => {
                resp.respond(invalid(format!("lock body is not JSON: {e}")));
                return;
            }
        };
        let group = body["consumerGroup"].as_str().unwrap_or("").to_string();
        let client = body["clientId"].as_str().unwrap_or("").to_string();
        let mut ok_set = Vec::new();
        let now = Instant::now();
        let mut locks = lock(&self.locks);
        for mq in body["mqSet"].as_array().into_iter().flatten() {
            let key = (
                group.clone(),
                mq["topic"].as_str().unwrap_or("").to_string(),
                mq["brokerName"].as_str().unwrap_or("").to_string(),
                json::as_i32(&mq["queueId"]).unwrap_or(-1),
            );
            let free = match locks.get(&key) {
                Some((c, at)) => *c == client || now.duration_since(*at) > LOCK_LIFETIME,
                None => true,
            };
            if free {
                locks.insert(key, (client.clone(), now));
                ok_set.push(mq.clone());
            }
        }
        drop(locks);
        resp.respond(with_body(
            ok(),
            kv_body(&serde_json::json!({ "lockOKMQSet": ok_set })),
        ));
    }

    /// CHECK_CLIENT_CONFIG: a TAG subscription is fine; any other type is refused as
    /// RocketMQ refuses it while enablePropertyFilter is false.
    fn check_client_config(&self, req: Request, resp: Responder) {
        let body = match json::parse_lenient(&req.command.body) {
            Ok(v) => v,
            Err(e) => {
                resp.respond(invalid(format!("CheckClientRequestBody is not JSON: {e}")));
                return;
            }
        };
        let ty = body["subscriptionData"]["expressionType"]
            .as_str()
            .unwrap_or("");
        if is_tag_type(ty) {
            resp.respond(ok());
        } else {
            resp.respond(error_response(
                rs::SYSTEM_ERROR,
                filter_not_supported_remark(ty),
            ));
        }
    }

    fn config_value(&self, key: &str) -> Option<String> {
        lock(&self.dynamic)
            .get(key)
            .cloned()
            .or_else(|| self.config.properties.get(key).cloned())
    }

    fn data_version_json(&self) -> String {
        serde_json::json!({"counter": self.config_version.load(Ordering::Relaxed),
            "stateVersion": 0, "timestamp": self.boot_ms})
        .to_string()
    }

    /// GET_BROKER_CONFIG: the broker.conf keys (with run-time changes) as properties
    /// text, header version = the config's DataVersion.
    fn get_broker_config(&self, _req: Request, resp: Responder) {
        let mut all = self.config.properties.clone();
        all.extend(lock(&self.dynamic).clone());
        for k in DYNAMIC_KEYS {
            all.entry(k.to_string())
                .or_insert_with(|| "true".to_string());
        }
        all.entry("brokerName".into())
            .or_insert_with(|| self.config.broker_name.clone());
        all.entry("brokerClusterName".into())
            .or_insert_with(|| self.config.cluster_name.clone());
        let text: String = all.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        resp.respond(with_body(
            ok().with_field("version", self.data_version_json()),
            text.into_bytes(),
        ));
    }

    /// UPDATE_BROKER_CONFIG: body = properties text; only [`DYNAMIC_KEYS`].
    fn update_broker_config(&self, req: Request, resp: Responder) {
        let text = String::from_utf8_lossy(&req.command.body).into_owned();
        let props = properties(&text);
        let mut keys: Vec<&String> = props.keys().collect();
        keys.sort();
        if let Some(bad) = keys.iter().find(|k| !DYNAMIC_KEYS.contains(&k.as_str())) {
            resp.respond(error_response(
                rs::NO_PERMISSION,
                format!(
                    "UPDATE_BROKER_CONFIG: the key '{bad}' cannot be changed at run time \
                     (keys that can: {})",
                    DYNAMIC_KEYS.join(", ")
                ),
            ));
            return;
        }
        for (k, v) in &props {
            if v != "true" && v != "false" {
                resp.respond(invalid(format!(
                    "UPDATE_BROKER_CONFIG: the key '{k}' takes true or false, not '{v}'"
                )));
                return;
            }
        }
        log::info!("UPDATE_BROKER_CONFIG from {}: {props:?}", req.peer);
        lock(&self.dynamic).extend(props);
        self.config_version.fetch_add(1, Ordering::Relaxed);
        resp.respond(ok());
    }

    fn connection_json(c: &Clients, client_id: &str, conn: ConnectionId) -> Value {
        let (addr, language, version) = c
            .connections
            .get(&conn)
            .map(|(a, l, v)| (a.to_string(), *l, *v))
            .unwrap_or_else(|| (String::new(), "OTHER", 0));
        serde_json::json!({"clientId": client_id, "clientAddr": addr,
            "language": language, "version": version})
    }

    /// GET_CONSUMER_CONNECTION_LIST: ConsumerConnection {connectionSet,
    /// subscriptionTable, consumeType, messageModel, consumeFromWhere}.
    fn consumer_connections(&self, req: Request, resp: Responder) {
        let r = field(&req.command, "consumerGroup").map(|group| {
            let c = lock(&self.clients);
            let Some(map) = c.consumers.get(group).filter(|m| !m.is_empty()) else {
                return error_response(
                    code::CONSUMER_NOT_ONLINE,
                    format!("the consumer group[{group}] not online"),
                );
            };
            let mut set = Vec::new();
            let mut subs = serde_json::Map::new();
            for (id, (_, s, conn)) in map {
                set.push(Self::connection_json(&c, id, *conn));
                for (topic, (ty, e)) in s {
                    let tags: Vec<&str> = if is_tag_type(ty) && e != "*" {
                        e.split("||")
                            .map(str::trim)
                            .filter(|t| !t.is_empty())
                            .collect()
                    } else {
                        Vec::new()
                    };
                    let ty = if ty.is_empty() { "TAG" } else { ty.as_str() };
                    subs.insert(
                        topic.clone(),
                        serde_json::json!({"topic": topic, "subString": e,
                            "expressionType": ty, "tagsSet": tags, "codeSet": [],
                            "subVersion": 0, "classFilterMode": false}),
                    );
                }
            }
            let body = serde_json::json!({"connectionSet": set, "subscriptionTable": subs,
                "consumeType": "CONSUME_PASSIVELY", "messageModel": "CLUSTERING",
                "consumeFromWhere": "CONSUME_FROM_LAST_OFFSET"});
            with_body(ok(), kv_body(&body))
        });
        resp.respond(r.unwrap_or_else(invalid));
    }

    /// GET_PRODUCER_CONNECTION_LIST: ProducerConnection {connectionSet}.
    fn producer_connections(&self, req: Request, resp: Responder) {
        let r = field(&req.command, "producerGroup").map(|group| {
            let c = lock(&self.clients);
            let Some(set) = c.producers.get(group) else {
                return error_response(
                    rs::SYSTEM_ERROR,
                    format!("the producer group[{group}] not exist"),
                );
            };
            let list: Vec<Value> = set
                .iter()
                .map(|(id, conn)| Self::connection_json(&c, id, *conn))
                .collect();
            with_body(ok(), kv_body(&serde_json::json!({ "connectionSet": list })))
        });
        resp.respond(r.unwrap_or_else(invalid));
    }

    /// QUERY_TOPIC_CONSUME_BY_WHO: GroupList {groupList}: the groups subscribed to the
    /// topic and those with offsets on it.
    fn consume_by_who(&self, req: Request, resp: Responder) {
        let r = field(&req.command, "topic").map(|topic| {
            let mut groups: std::collections::BTreeSet<String> = lock(&self.clients)
                .consumers
                .iter()
                .filter(|(_, m)| m.values().any(|(_, s, _)| s.contains_key(topic)))
                .map(|(g, _)| g.clone())
                .collect();
            match self.broker.consumer_offsets() {
                Ok(all) => {
                    for (g, t, _, _) in all {
                        if t == topic {
                            groups.insert(g);
                        }
                    }
                    with_body(ok(), kv_body(&serde_json::json!({ "groupList": groups })))
                }
                Err(e) => error_of(&e),
            }
        });
        resp.respond(r.unwrap_or_else(invalid));
    }

    /// CLEAN_EXPIRED_CONSUMEQUEUE: SUCCESS. The queues' entries live and go with the
    /// log's retention (no consume-queue files of their own to clean).
    fn clean_expired_consume_queue(&self, req: Request, resp: Responder) {
        log::info!(
            "CLEAN_EXPIRED_CONSUMEQUEUE from {}: nothing to clean",
            req.peer
        );
        resp.respond(ok());
    }

    /// GET_BROKER_CLUSTER_ACL_INFO: GetBrokerAclConfigResponseHeader (version,
    /// allAclFileVersion, brokerName, brokerAddr, clusterName).
    fn acl_info(&self, _req: Request, resp: Responder) {
        let version = serde_json::json!({"counter": 0, "stateVersion": 0,
            "timestamp": self.boot_ms})
        .to_string();
        resp.respond(
            ok().with_field("version", version)
                .with_field("allAclFileVersion", "{}")
                .with_field("brokerName", self.config.broker_name.clone())
                .with_field("brokerAddr", self.config.broker_addr.clone())
                .with_field("clusterName", self.config.cluster_name.clone()),
        );
    }

    fn unlock_batch(&self, req: Request, resp: Responder) {
        let body = match json::parse_lenient(&req.command.body) {
            Ok(v) => v,
            Err(e) => {
                resp.respond(invalid(format!("unlock body is not JSON: {e}")));
                return;
            }
        };
        let group = body["consumerGroup"].as_str().unwrap_or("").to_string();
        let client = body["clientId"].as_str().unwrap_or("").to_string();
        let mut locks = lock(&self.locks);
        for mq in body["mqSet"].as_array().into_iter().flatten() {
            let key = (
                group.clone(),
                mq["topic"].as_str().unwrap_or("").to_string(),
                mq["brokerName"].as_str().unwrap_or("").to_string(),
                json::as_i32(&mq["queueId"]).unwrap_or(-1),
            );
            if locks.get(&key).is_some_and(|(c, _)| *c == client) {
                locks.remove(&key);
            }
        }
        drop(locks);
        resp.respond(ok());
    }

    fn tps(&self) -> (f64, f64) {
        let mut t = lock(&self.tps);
        let now = Instant::now();
        let (put, get) = (
            self.put_total.load(Ordering::Relaxed),
            self.get_total.load(Ordering::Relaxed),
        );
        match t.at {
            Some(at) if now.duration_since(at) < Duration::from_secs(1) => {}
            Some(at) => {
                let secs = now.duration_since(at).as_secs_f64();
                t.put_tps = (put - t.put) as f64 / secs;
                t.get_tps = (get - t.get) as f64 / secs;
                t.at = Some(now);
                t.put = put;
                t.get = get;
            }
            None => {
                t.at = Some(now);
                t.put = put;
                t.get = get;
            }
        }
        (t.put_tps, t.get_tps)
    }

    fn runtime_info(&self, _req: Request, resp: Responder) {
        let (put_tps, get_tps) = self.tps();
        let status = self.broker.group().status();
        let mut table = serde_json::Map::new();
        let mut put = |k: &str, v: String| {
            table.insert(k.to_string(), Value::String(v));
        };
        put("brokerVersionDesc", "V4_9_8".into());
        put("brokerVersion", super::codes::version::V4_9_8.to_string());
        put(
            "msgPutTotalTodayNow",
            self.put_total.load(Ordering::Relaxed).to_string(),
        );
        put(
            "msgGetTotalTodayNow",
            self.get_total.load(Ordering::Relaxed).to_string(),
        );
        put("putTps", format!("{put_tps:.2} {put_tps:.2} {put_tps:.2}"));
        put(
            "getTransferedTps",
            format!("{get_tps:.2} {get_tps:.2} {get_tps:.2}"),
        );
        put("pageCacheLockTimeMills", "0".into());
        put("commitLogDiskRatio", disk_ratio(&self.broker).to_string());
        put("earliestMessageTimeStamp", self.boot_ms.to_string());
        put("bootTimestamp", self.boot_ms.to_string());
        put("dLegerGroup", self.broker.group().group_name().to_string());
        put("dLegerSelfId", self.broker.group().self_id().to_string());
        if let Ok(s) = status {
            put(
                "brokerRole",
                match s.role {
                    Role::Leader => "ASYNC_MASTER".into(),
                    _ => "SLAVE".into(),
                },
            );
            put("dLegerRole", format!("{:?}", s.role).to_uppercase());
            put("dLegerTerm", s.term.to_string());
            put("dLegerLastIndex", s.last_index.to_string());
            put("dLegerCommitIndex", s.commit_index.to_string());
            put("dLegerLeaderPeer", s.leader_peer.to_string());
        }
        resp.respond(with_body(
            ok(),
            kv_body(&serde_json::json!({ "table": table })),
        ));
    }

    fn update_topic(&self, req: Request, resp: Responder) {
        let cmd = &req.command;
        let r = (|| -> std::result::Result<RemotingCommand, String> {
            let topic = field(cmd, "topic")?;
            let read: i32 = opt_parsed(cmd, "readQueueNums", 8);
            let write: i32 = opt_parsed(cmd, "writeQueueNums", 8);
            let perm: i32 = opt_parsed(cmd, "perm", 6);
            Ok(
                match self
                    .broker
                    .topic_update(topic, read, write, perm, ADMIN_TIMEOUT)
                {
                    Ok(()) => {
                        let _ = self.wake_tx.try_send(());
                        ok()
                    }
                    Err(e) => error_of(&e),
                },
            )
        })();
        resp.respond(r.unwrap_or_else(invalid));
    }

    fn delete_topic(&self, req: Request, resp: Responder) {
        let r = field(&req.command, "topic").map(|topic| {
            match self.broker.topic_delete(topic, ADMIN_TIMEOUT) {
                Ok(()) => {
                    let _ = self.wake_tx.try_send(());
                    ok()
                }
                Err(e) => error_of(&e),
            }
        });
        resp.respond(r.unwrap_or_else(invalid));
    }

    fn all_topic_config(&self, _req: Request, resp: Responder) {
        let topics = match self.broker.topic_list() {
            Ok(t) => t,
            Err(e) => {
                resp.respond(error_of(&e));
                return;
            }
        };
        let mut table = serde_json::Map::new();
        for t in topics {
            table.insert(
                t.name.clone(),
                topic_json(&t.name, t.read_queue_nums, t.write_queue_nums, t.perm),
            );
        }
        let body = serde_json::json!({
            "topicConfigTable": table,
            "dataVersion": {"counter": 0, "stateVersion": 0, "timestamp": self.boot_ms},
        });
        resp.respond(with_body(ok(), kv_body(&body)));
    }

    /// GET_TOPIC_STATS_INFO: TopicStatsTable {offsetTable: [[mq, {minOffset,
    /// maxOffset, lastUpdateTimestamp}]]}; the mq keys are written as a list of pairs
    /// (RocketMQ writes the map with object keys, which standard JSON cannot hold).
    fn topic_stats(&self, req: Request, resp: Responder) {
        let r = field(&req.command, "topic").map(|topic| match self.broker.topic(topic) {
            Ok(t) => {
                let mut table = Vec::new();
                for q in 0..t.queue_nums() {
                    let (min, max) = self.broker.queue_offsets(topic, q).unwrap_or((0, 0));
                    table.push(serde_json::json!([
                        {"topic": topic, "brokerName": self.config.broker_name, "queueId": q},
                        {"minOffset": min, "maxOffset": max, "lastUpdateTimestamp": 0}
                    ]));
                }
                with_body(ok(), kv_body(&serde_json::json!({ "offsetTable": table })))
            }
            Err(e) => error_of(&e),
        });
        resp.respond(r.unwrap_or_else(invalid));
    }

    /// GET_CONSUME_STATS: ConsumeStats {consumeTps, offsetTable: [[mq, {brokerOffset,
    /// consumerOffset, lastTimestamp}]]} for the consumer group's committed queues.
    fn consume_stats(&self, req: Request, resp: Responder) {
        let r = field(&req.command, "consumerGroup").map(|group| {
            let only_topic = req.command.field("topic").filter(|t| !t.is_empty());
            match self.broker.consumer_offsets() {
                Ok(all) => {
                    let mut table = Vec::new();
                    for (g, t, q, o) in all {
                        if g != group || only_topic.is_some_and(|x| x != t) {
                            continue;
                        }
                        let max = self.broker.queue_offsets(&t, q).map(|x| x.1).unwrap_or(0);
                        table.push(serde_json::json!([
                            {"topic": t, "brokerName": self.config.broker_name, "queueId": q},
                            {"brokerOffset": max, "consumerOffset": o, "lastTimestamp": 0}
                        ]));
                    }
                    with_body(
                        ok(),
                        kv_body(&serde_json::json!({ "consumeTps": 0.0, "offsetTable": table })),
                    )
                }
                Err(e) => error_of(&e),
            }
        });
        resp.respond(r.unwrap_or_else(invalid));
    }

    /// What this member should be registered as now; `None` while it may not register
    /// as anything new (a leader whose term's first entry is not yet committed and
    /// applied here). `first_of_term` caches (term, index of that term's first entry).
    fn wanted_id(&self, first_of_term: &mut Option<(u64, u64)>) -> Option<i64> {
        let s = self.broker.group().status().ok()?;
        match s.role {
            Role::Leader => {
                let first = match *first_of_term {
                    Some((t, i)) if t == s.term => i,
                    _ => {
                        let i = self.first_index_of_term(s.term, s.last_index, s.first_index)?;
                        *first_of_term = Some((s.term, i));
                        i
                    }
                };
                let applied = self.broker.applied_index().unwrap_or(0);
                (s.commit_index >= first && applied >= first).then_some(0)
            }
            _ => {
                *first_of_term = None;
                Some(follower_broker_id(self.broker.group().self_id()).unwrap_or(1))
            }
        }
    }

    /// The index of the first entry of `term` in the local log, scanning back from
    /// `last` (a new leader's first entry is near the end); `None` while the log holds
    /// no entry of the term yet.
    fn first_index_of_term(&self, term: u64, last: u64, first_retained: u64) -> Option<u64> {
        let group = self.broker.group();
        let term_of = |i: u64| group.read_local(i).ok().map(|(_, m)| m.term);
        if last == 0 || term_of(last)? != term {
            return None;
        }
        let mut i = last;
        // Bounded: at most this many entries of the term are looked at.
        for _ in 0..100_000 {
            if i <= first_retained.max(1) || term_of(i - 1) != Some(term) {
                return Some(i);
            }
            i -= 1;
        }
        Some(i)
    }

    fn topic_routes(&self) -> Vec<TopicRoute> {
        self.broker
            .topic_list()
            .unwrap_or_default()
            .into_iter()
            .map(|t| TopicRoute {
                name: t.name,
                read_queue_nums: t.read_queue_nums,
                write_queue_nums: t.write_queue_nums,
                perm: t.perm,
                topic_sys_flag: 0,
                order: false,
            })
            .collect()
    }

    fn refresh_registration(
        &self,
        registrar: &Option<Arc<Mutex<Registrar>>>,
        first_of_term: &mut Option<(u64, u64)>,
    ) {
        let Some(id) = self.wanted_id(first_of_term) else {
            return;
        };
        let topics = self.topic_routes();
        let mut last = lock(&self.registered);
        if last.as_ref().is_some_and(|(i, t)| *i == id && *t == topics) {
            return;
        }
        if let Some(r) = registrar {
            let reg = BrokerRegistration {
                cluster_name: self.config.cluster_name.clone(),
                broker_addr: self.config.broker_addr.clone(),
                broker_id: id,
                ha_server_addr: self.config.broker_addr.clone(),
                topics: topics.clone(),
            };
            log::info!(
                "{}/{}: registering as brokerId {id} ({})",
                self.broker.group().group_name(),
                self.broker.group().self_id(),
                self.config.broker_addr
            );
            lock(r).update(&self.config.broker_name, reg);
        }
        *last = Some((id, topics));
    }

    /// The background thread: parked pulls and registration.
    fn background(self: Arc<Self>, wake: Receiver<()>, registrar: Option<Arc<Mutex<Registrar>>>) {
        let mut first_of_term = None;
        let mut last_refresh = Instant::now() - TICK;
        let mut seen_applied = self.broker.applied_index().unwrap_or(0);
        while !self.stop.load(Ordering::SeqCst) {
            let has_parked = !lock(&self.parked).is_empty();
            if has_parked {
                // One wait for every parked pull: the broker's applied index moving on.
                let next_deadline = lock(&self.parked)
                    .iter()
                    .map(|p| p.deadline)
                    .min()
                    .unwrap_or_else(Instant::now);
                let wait = next_deadline
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(100));
                let _ = self.broker.wait_applied(seen_applied + 1, wait);
                seen_applied = self.broker.applied_index().unwrap_or(seen_applied);
                self.serve_parked();
                if wake.try_recv().is_ok() {
                    while wake.try_recv().is_ok() {}
                    self.refresh_registration(&registrar, &mut first_of_term);
                    last_refresh = Instant::now();
                }
            } else {
                match wake.recv_timeout(TICK) {
                    Ok(()) => while wake.try_recv().is_ok() {},
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
                seen_applied = self.broker.applied_index().unwrap_or(seen_applied);
                self.refresh_registration(&registrar, &mut first_of_term);
                last_refresh = Instant::now();
                continue;
            }
            if last_refresh.elapsed() >= TICK {
                self.refresh_registration(&registrar, &mut first_of_term);
                last_refresh = Instant::now();
            }
        }
    }
}

fn topic_json(name: &str, read: i32, write: i32, perm: i32) -> Value {
    serde_json::json!({
        "topicName": name,
        "readQueueNums": read,
        "writeQueueNums": write,
        "perm": perm,
        "topicFilterType": "SINGLE_TAG",
        "topicSysFlag": 0,
        "order": false,
        "attributes": {},
    })
}

/// The used fraction of the disk holding the member's store (statvfs).
fn disk_ratio(broker: &Broker) -> f64 {
    let dir = broker.group().config().member_dir();
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return 0.0;
    };
    // SAFETY: statvfs writes into the zeroed struct; the path is NUL-terminated.
    unsafe {
        let mut s: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut s) != 0 || s.f_blocks == 0 {
            return 0.0;
        }
        let used = s.f_blocks.saturating_sub(s.f_bfree) as f64;
        (used / s.f_blocks as f64 * 100.0).round() / 100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_bodies_decode_and_bad_ones_are_refused() {
        let mut b = Vec::new();
        for (body, props) in [(&b"one"[..], "TAGS\u{1}A\u{2}"), (&b"second"[..], "")] {
            let total = 4 + 4 + 4 + 4 + 4 + body.len() + 2 + props.len();
            b.extend_from_slice(&(total as i32).to_be_bytes());
            b.extend_from_slice(&0i32.to_be_bytes());
            b.extend_from_slice(&0i32.to_be_bytes());
            b.extend_from_slice(&7i32.to_be_bytes());
            b.extend_from_slice(&(body.len() as i32).to_be_bytes());
            b.extend_from_slice(body);
            b.extend_from_slice(&(props.len() as u16).to_be_bytes());
            b.extend_from_slice(props.as_bytes());
        }
        let list = decode_batch(&b).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].0, 7);
        assert_eq!(&list[1].1[..], b"second");
        assert_eq!(list[0].2, "TAGS\u{1}A\u{2}");
        assert!(decode_batch(&b[..b.len() - 1]).is_err());
        assert!(decode_batch(&[0, 0, 0, 5]).is_err());
    }

    #[test]
    fn properties_split_into_the_broker_fields() {
        let m = message_from(
            "T",
            "TAGS\u{1}TagA\u{2}KEYS\u{1}k1 k2\u{2}UNIQ_KEY\u{1}ABC\u{2}",
            Bytes::from_static(b"x"),
            -1,
            0,
            0,
            0,
            0,
            "127.0.0.1:1".parse().unwrap(),
        );
        assert_eq!(m.tags.as_deref(), Some("TagA"));
        assert_eq!(m.keys.as_deref(), Some("k1 k2"));
        assert_eq!(
            m.properties,
            vec![("UNIQ_KEY".to_string(), "ABC".to_string())]
        );
    }
}
