//! The broker side's registration with the name servers: one thread per engine registers
//! every broker (group member) it is given with every address in `namesrvAddr`, every
//! 30 s (RocketMQ's registerNameServerPeriod) and at once when a broker changes (a role
//! change: DLedger brokers re-register as brokerId 0 when they lead, as selfId's number + 1
//! when they follow).
//!
//! Registration holds one connection per name server: a name server drops the brokers of
//! a connection that closes, so after a reconnect every broker is registered again at once.
//! Name servers are served one after another; a dead one costs up to `timeout` per round.

use super::client::Client;
use super::codec::RemotingCommand;
use super::codes::request as rq;
use super::codes::response as rs;
use super::json;
use super::namesrv::java_crc32;
use crate::error::{Error, ErrorKind, Result};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// RocketMQ's registerNameServerPeriod.
pub const PERIOD_DEFAULT: Duration = Duration::from_secs(30);

/// One topic as the name server routes it (TopicConfig's routed fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRoute {
    pub name: String,
    pub read_queue_nums: i32,
    pub write_queue_nums: i32,
    /// PermName bits: 6 is read and write.
    pub perm: i32,
    pub topic_sys_flag: i32,
    pub order: bool,
}

impl TopicRoute {
    /// A read-write topic with `queues` read and write queues.
    pub fn new(name: impl Into<String>, queues: i32) -> TopicRoute {
        TopicRoute {
            name: name.into(),
            read_queue_nums: queues,
            write_queue_nums: queues,
            perm: super::codes::perm::READ | super::codes::perm::WRITE,
            topic_sys_flag: 0,
            order: false,
        }
    }
}

/// What one broker (a group member serving RocketMQ clients) registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerRegistration {
    /// brokerClusterName.
    pub cluster_name: String,
    /// ip:listenPort clients reach the member on.
    pub broker_addr: String,
    /// 0 for the leader, otherwise [`follower_broker_id`].
    pub broker_id: i64,
    /// RocketMQ's HA address; DLedger members have none of their own, the broker address
    /// is sent in its place.
    pub ha_server_addr: String,
    pub topics: Vec<TopicRoute>,
}

/// RocketMQ's DLedger convention for a follower's brokerId: dLegerSelfId's number + 1
/// ("n2" is 3). `None` when the id has no number after its first character.
pub fn follower_broker_id(self_id: &str) -> Option<i64> {
    let mut chars = self_id.chars();
    chars.next()?;
    let n: i64 = chars.as_str().parse().ok()?;
    n.checked_add(1)
}

/// Where and how often to register.
#[derive(Debug, Clone)]
pub struct RegistrarConfig {
    /// namesrvAddr: "host:port;host:port".
    pub namesrv_addr: String,
    pub period: Duration,
    /// For connecting and for each request.
    pub timeout: Duration,
}

impl RegistrarConfig {
    pub fn new(namesrv_addr: impl Into<String>) -> RegistrarConfig {
        RegistrarConfig {
            namesrv_addr: namesrv_addr.into(),
            period: PERIOD_DEFAULT,
            timeout: Duration::from_secs(3),
        }
    }
}

enum Cmd {
    Update(String, BrokerRegistration),
    Remove(String),
    RegisterAll,
}

/// The registration thread; [`Registrar::stop`] (or drop) unregisters every broker and
/// joins it.
pub struct Registrar {
    tx: Option<Sender<Cmd>>,
    thread: Option<JoinHandle<()>>,
    registered: Arc<AtomicU64>,
}

impl Registrar {
    pub fn start(config: RegistrarConfig) -> Result<Registrar> {
        let addrs: Vec<String> = config
            .namesrv_addr
            .split(';')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect();
        if addrs.is_empty() {
            return Err(Error::config(format!(
                "namesrvAddr: '{}' names no name server (expected 'host:port;host:port')",
                config.namesrv_addr
            )));
        }
        if let Some(bad) = addrs.iter().find(|a| {
            a.rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
        }) {
            return Err(Error::config(format!(
                "namesrvAddr: '{bad}' is not host:port"
            )));
        }
        let (tx, rx) = crossbeam_channel::unbounded();
        let registered = Arc::new(AtomicU64::new(0));
        let state = Worker {
            addrs,
            period: config.period,
            timeout: config.timeout,
            brokers: BTreeMap::new(),
            conns: HashMap::new(),
            registered: registered.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("namesrv-register".to_string())
            .spawn(move || state.run(rx))
            .map_err(|e| Error::io("registrar: spawn", e))?;
        Ok(Registrar {
            tx: Some(tx),
            thread: Some(thread),
            registered,
        })
    }

    /// Sets what `broker_name` (the group) registers and registers it at once with every
    /// name server.
    pub fn update(&self, broker_name: &str, registration: BrokerRegistration) {
        self.send(Cmd::Update(broker_name.to_string(), registration));
    }

    /// Unregisters `broker_name` at once and stops registering it.
    pub fn remove(&self, broker_name: &str) {
        self.send(Cmd::Remove(broker_name.to_string()));
    }

    /// Registers every broker now rather than at the next period.
    pub fn register_all_now(&self) {
        self.send(Cmd::RegisterAll);
    }

    /// Successful REGISTER_BROKER requests so far (one per broker per name server).
    pub fn registrations(&self) -> u64 {
        self.registered.load(Ordering::Relaxed)
    }

    fn send(&self, cmd: Cmd) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(cmd);
        }
    }

    /// Unregisters every broker (each name server bounded by the timeout) and joins the
    /// thread.
    pub fn stop(&mut self) {
        self.tx.take();
        if let Some(h) = self.thread.take() {
            if h.join().is_err() {
                log::error!("registrar: the registration thread panicked");
            }
        }
    }
}

impl Drop for Registrar {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Broker {
    registration: BrokerRegistration,
    /// DataVersion: bumped when the topics change.
    counter: u64,
    timestamp_ms: u64,
}

struct Worker {
    addrs: Vec<String>,
    period: Duration,
    timeout: Duration,
    brokers: BTreeMap<String, Broker>,
    conns: HashMap<String, Client>,
    registered: Arc<AtomicU64>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Worker {
    fn run(mut self, rx: Receiver<Cmd>) {
        let mut next_round = Instant::now() + self.period;
        loop {
            let wait = next_round.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(Cmd::Update(name, registration)) => {
                    let topics_changed = self
                        .brokers
                        .get(&name)
                        .map(|b| b.registration.topics != registration.topics);
                    let entry = self.brokers.entry(name.clone()).or_insert(Broker {
                        registration: registration.clone(),
                        counter: 0,
                        timestamp_ms: now_ms(),
                    });
                    if topics_changed == Some(true) {
                        entry.counter += 1;
                        entry.timestamp_ms = now_ms();
                    }
                    entry.registration = registration;
                    self.register_everywhere(&[name]);
                }
                Ok(Cmd::Remove(name)) => {
                    if let Some(b) = self.brokers.remove(&name) {
                        self.unregister_everywhere(&[(name, b.registration)]);
                    }
                }
                Ok(Cmd::RegisterAll) => self.register_all(),
                Err(RecvTimeoutError::Timeout) => {
                    self.register_all();
                    next_round = Instant::now() + self.period;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        let brokers: Vec<(String, BrokerRegistration)> = std::mem::take(&mut self.brokers)
            .into_iter()
            .map(|(name, b)| (name, b.registration))
            .collect();
        self.unregister_everywhere(&brokers);
    }

    fn register_all(&mut self) {
        let names: Vec<String> = self.brokers.keys().cloned().collect();
        self.register_everywhere(&names);
    }

    fn register_everywhere(&mut self, names: &[String]) {
        for addr in self.addrs.clone() {
            let fresh = !self.conns.contains_key(&addr);
            // A new connection carries no registration yet: send every broker on it.
            let names: Vec<String> = if fresh {
                self.brokers.keys().cloned().collect()
            } else {
                names.to_vec()
            };
            for name in names {
                if let Err(e) = self.register_one(&addr, &name) {
                    log::warn!("registrar: registering {name} with name server {addr} failed: {e}");
                    self.conns.remove(&addr);
                    break;
                }
            }
        }
    }

    fn connection(&mut self, addr: &str) -> Result<&mut Client> {
        if !self.conns.contains_key(addr) {
            let c = Client::connect(addr, self.timeout)?;
            log::info!("registrar: connected to name server {addr}");
            self.conns.insert(addr.to_string(), c);
        }
        Ok(self.conns.get_mut(addr).expect("inserted above"))
    }

    fn register_one(&mut self, addr: &str, name: &str) -> Result<()> {
        let Some(b) = self.brokers.get(name) else {
            return Ok(());
        };
        let request = register_request(name, b);
        let (broker_id, broker_addr) =
            (b.registration.broker_id, b.registration.broker_addr.clone());
        let timeout = self.timeout;
        let resp = self.connection(addr)?.invoke(request, timeout)?;
        if resp.code != rs::SUCCESS {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "code {}: {}",
                    resp.code,
                    resp.remark.as_deref().unwrap_or("no remark")
                ),
            ));
        }
        self.registered.fetch_add(1, Ordering::Relaxed);
        log::debug!("registrar: {name} registered with {addr} as {broker_id} ({broker_addr})");
        Ok(())
    }

    /// A name server that fails is skipped for the rest of the brokers: stopping costs at
    /// most one timeout per dead name server, not one per broker.
    fn unregister_everywhere(&mut self, brokers: &[(String, BrokerRegistration)]) {
        for addr in self.addrs.clone() {
            for (name, reg) in brokers {
                let request = RemotingCommand::request(rq::UNREGISTER_BROKER, 0)
                    .with_field("brokerName", name.as_str())
                    .with_field("brokerAddr", reg.broker_addr.as_str())
                    .with_field("clusterName", reg.cluster_name.as_str())
                    .with_field("brokerId", reg.broker_id.to_string());
                let timeout = self.timeout;
                let result = self
                    .connection(&addr)
                    .and_then(|c| c.invoke(request, timeout));
                match result {
                    Ok(resp) if resp.code == rs::SUCCESS => {
                        log::info!("registrar: {name} unregistered from {addr}")
                    }
                    Ok(resp) => log::warn!(
                        "registrar: unregistering {name} from {addr}: code {} {:?}",
                        resp.code,
                        resp.remark
                    ),
                    Err(e) => {
                        log::warn!("registrar: unregistering from {addr} failed: {e}");
                        self.conns.remove(&addr);
                        break;
                    }
                }
            }
        }
    }
}

/// REGISTER_BROKER with a RegisterBrokerBody as RocketMQ 4.9 brokers send it.
fn register_request(name: &str, b: &Broker) -> RemotingCommand {
    let reg = &b.registration;
    let mut table = json::Map::new();
    for t in &reg.topics {
        table.insert(
            t.name.clone(),
            serde_json::json!({
                "attributes": {},
                "order": t.order,
                "perm": t.perm,
                "readQueueNums": t.read_queue_nums,
                "topicFilterType": "SINGLE_TAG",
                "topicName": t.name,
                "topicSysFlag": t.topic_sys_flag,
                "writeQueueNums": t.write_queue_nums,
            }),
        );
    }
    let body = serde_json::json!({
        "filterServerList": [],
        "topicConfigSerializeWrapper": {
            "dataVersion": {"counter": b.counter, "stateVersion": 0, "timestamp": b.timestamp_ms},
            "topicConfigTable": table,
        },
    })
    .to_string()
    .into_bytes();
    RemotingCommand::request(rq::REGISTER_BROKER, 0)
        .with_field("brokerName", name)
        .with_field("brokerAddr", reg.broker_addr.as_str())
        .with_field("clusterName", reg.cluster_name.as_str())
        .with_field("haServerAddr", reg.ha_server_addr.as_str())
        .with_field("brokerId", reg.broker_id.to_string())
        .with_field("compressed", "false")
        .with_field("bodyCrc32", java_crc32(&body).to_string())
        .with_body(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dledger_follower_ids() {
        assert_eq!(follower_broker_id("n0"), Some(1));
        assert_eq!(follower_broker_id("n2"), Some(3));
        assert_eq!(follower_broker_id("n"), None);
        assert_eq!(follower_broker_id("nx"), None);
        assert_eq!(follower_broker_id(""), None);
    }

    #[test]
    fn bad_namesrv_addr_is_refused() {
        for bad in ["", " ; ", "host", "host:port"] {
            let err = Registrar::start(RegistrarConfig::new(bad)).err().unwrap();
            assert!(err.message().starts_with("namesrvAddr:"), "{err}");
        }
    }
}
