//! Drives the release `rmqraft` binary for tests and benchmarks with real RocketMQ clients:
//! a name server (`rmqraft namesrv`) and three `rmqraft node` processes hosting one or more
//! three-member groups, written as broker.conf files in a temporary directory, every port
//! from the OS, loopback only. Every process is killed (SIGKILL) when the [`Cluster`] is
//! dropped, whatever the exit path.

use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rocketmq_client_rust::{ClientConfig, ClientOptions, ClientRuntime, ClientRuntimeConfig};
use rocketmq_runtime::{RuntimeConfig, RuntimeOwner};

/// The cluster name every member registers under.
pub const CLUSTER: &str = "RaftCluster";

/// The `rmqraft` binary: `$RMQRAFT_BIN`, else the library's `target/release/rmqraft`.
pub fn rmqraft_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("RMQRAFT_BIN") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/rmqraft")
}

/// A port that was free a moment ago (bound to port 0 on loopback, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// `n` distinct free ports.
pub fn free_ports(n: usize) -> Vec<u16> {
    // Hold them all while choosing, so no two are the same.
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// `n` distinct free ports: the name server's last, then (raft, listen) pairs for
/// `members` members, popped from the end. Each listen port's VIP channel, port - 2
/// (RocketMQ's fast remoting port), is free too and none of the others, so no member's
/// VIP channel takes another member's port. Tries a bounded number of times.
fn member_ports(n: usize, members: usize) -> Vec<u16> {
    for _ in 0..50 {
        let ports = free_ports(n);
        // Member k's raft port is ports[n - 2 - 2k], its listen port the one before.
        let listen: Vec<u16> = (0..members).map(|k| ports[n - 3 - 2 * k]).collect();
        let clash = listen.iter().any(|&l| {
            l < 3 || ports.contains(&(l - 2)) || TcpListener::bind(("127.0.0.1", l - 2)).is_err()
        });
        if !clash {
            return ports;
        }
    }
    panic!("no {n} free ports whose VIP channels (listenPort - 2) are free too after 50 tries");
}

/// Waits for `check` to give a value, every 50 ms, at most `limit`; panics naming `what`
/// (and with `context()`'s text) when it never does.
pub fn wait_for<T>(
    what: &str,
    limit: Duration,
    context: impl Fn() -> String,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out after {limit:?} waiting for {what}\n{}",
                context()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The name of group `g`, its dLegerGroup and brokerName.
pub fn group_name(g: usize) -> String {
    format!("RaftNode{g:02}")
}

/// One member's ports.
#[derive(Debug, Clone, Copy)]
struct MemberPorts {
    raft: u16,
    listen: u16,
}

/// A name server and three `rmqraft node` processes; process `i` hosts member `n<i>` of
/// every group. Group `g` prefers member `n<g % 3>` as its leader.
pub struct Cluster {
    dir: tempfile::TempDir,
    groups: usize,
    pub namesrv_addr: String,
    namesrv: Option<Child>,
    nodes: Vec<Option<Child>>,
    /// ports[g][i]
    ports: Vec<Vec<MemberPorts>>,
    flush: String,
    /// More broker.conf lines for every member.
    extra_conf: String,
}

impl Cluster {
    /// Starts a name server and `groups` groups of three members under SYNC_FLUSH, and
    /// waits until every group has registered a master and two slaves.
    pub fn start(groups: usize) -> Cluster {
        Self::start_with(groups, "SYNC_FLUSH")
    }

    /// [`Cluster::start`] with another flushDiskType.
    pub fn start_with(groups: usize, flush: &str) -> Cluster {
        Self::start_with_conf(groups, flush, "")
    }

    /// [`Cluster::start_with`] with more broker.conf lines (`key = value\n`) for every member.
    pub fn start_with_conf(groups: usize, flush: &str, extra_conf: &str) -> Cluster {
        assert!(groups >= 1, "a cluster needs a group");
        let bin = rmqraft_bin();
        assert!(
            bin.exists(),
            "{} is missing: build it with `cargo build --release` in the library",
            bin.display()
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ports_all = member_ports(1 + groups * 6, groups * 3);
        let ns_port = ports_all.pop().expect("a port");
        let ports: Vec<Vec<MemberPorts>> = (0..groups)
            .map(|_| {
                (0..3)
                    .map(|_| MemberPorts {
                        raft: ports_all.pop().expect("a port"),
                        listen: ports_all.pop().expect("a port"),
                    })
                    .collect()
            })
            .collect();
        let mut cluster = Cluster {
            namesrv_addr: format!("127.0.0.1:{ns_port}"),
            dir,
            groups,
            namesrv: None,
            nodes: vec![None, None, None],
            ports,
            flush: flush.to_string(),
            extra_conf: extra_conf.to_string(),
        };
        cluster.namesrv = Some(cluster.spawn_namesrv(ns_port));
        for i in 0..3 {
            cluster.start_node(i);
        }
        cluster.wait_registered(Duration::from_secs(60));
        cluster
    }

    /// The directory of the cluster's files (configs, stores, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn groups(&self) -> usize {
        self.groups
    }

    /// The listen address (ip:listenPort) of member `i` of group `g`.
    pub fn broker_addr(&self, g: usize, i: usize) -> String {
        format!("127.0.0.1:{}", self.ports[g][i].listen)
    }

    fn spawn_namesrv(&self, port: u16) -> Child {
        let log = self.dir().join("namesrv.log");
        let out = fs::File::create(&log).expect("namesrv log");
        let err = out.try_clone().expect("namesrv log");
        Command::new(rmqraft_bin())
            .args(["namesrv", "-p", &port.to_string(), "--listen", "127.0.0.1"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start rmqraft namesrv")
    }

    fn config_path(&self, g: usize, i: usize) -> PathBuf {
        self.dir().join(format!("broker-g{g}-n{i}.conf"))
    }

    fn write_config(&self, g: usize, i: usize) -> PathBuf {
        let peers = self.ports[g]
            .iter()
            .enumerate()
            .map(|(n, p)| format!("n{n}-127.0.0.1:{}", p.raft))
            .collect::<Vec<_>>()
            .join(";");
        let name = group_name(g);
        let store = self
            .dir()
            .join("store")
            .join(format!("g{g}"))
            .join(format!("n{i}"));
        let text = format!(
            "brokerClusterName = {CLUSTER}\n\
             brokerName = {name}\n\
             listenPort = {listen}\n\
             namesrvAddr = {ns}\n\
             storePathRootDir = {store}\n\
             flushDiskType = {flush}\n\
             mappedFileSizeCommitLog = 67108864\n\
             enableDLegerCommitLog = true\n\
             dLegerGroup = {name}\n\
             dLegerPeers = {peers}\n\
             dLegerSelfId = n{i}\n\
             preferredLeaderIds = n{pref}\n{extra}",
            listen = self.ports[g][i].listen,
            ns = self.namesrv_addr,
            store = store.display(),
            flush = self.flush,
            pref = g % 3,
            extra = self.extra_conf,
        );
        let path = self.config_path(g, i);
        fs::write(&path, text).expect("write broker.conf");
        path
    }

    fn node_log(&self, i: usize) -> PathBuf {
        self.dir().join(format!("node{i}.log"))
    }

    /// Starts (or restarts) process `i`, which hosts member n<i> of every group.
    pub fn start_node(&mut self, i: usize) {
        assert!(self.nodes[i].is_none(), "node {i} is already running");
        let mut cmd = Command::new(rmqraft_bin());
        cmd.arg("node");
        for g in 0..self.groups {
            let path = self.write_config(g, i);
            cmd.arg("-c").arg(path);
        }
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.node_log(i))
            .expect("node log");
        let err = out.try_clone().expect("node log");
        let child = cmd
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start rmqraft node");
        self.nodes[i] = Some(child);
    }

    /// SIGKILLs process `i` and reaps it.
    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs `rmqraft ARGS -n <namesrv>`.
    pub fn admin(&self, args: &[&str]) -> Output {
        Command::new(rmqraft_bin())
            .args(args)
            .args(["-n", &self.namesrv_addr])
            .stdin(Stdio::null())
            .output()
            .expect("run rmqraft")
    }

    /// `clusterList --json`: (brokerName, brokerId, addr) of every registered member.
    pub fn members(&self) -> Vec<(String, i64, String)> {
        let out = self.admin(&["clusterList", "--json"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| {
                let id = match &v["brokerId"] {
                    serde_json::Value::Number(n) => n.as_i64()?,
                    serde_json::Value::String(s) => s.parse().ok()?,
                    _ => return None,
                };
                Some((
                    v["brokerName"].as_str()?.to_string(),
                    id,
                    v["addr"].as_str()?.to_string(),
                ))
            })
            .collect()
    }

    /// The master address of group `g` as the name server has it.
    pub fn master_of(&self, g: usize) -> Option<String> {
        let name = group_name(g);
        self.members()
            .into_iter()
            .find(|(n, id, _)| *n == name && *id == 0)
            .map(|(_, _, a)| a)
    }

    /// Which process (0..3) hosts the master of group `g`.
    pub fn master_node_of(&self, g: usize) -> Option<usize> {
        let addr = self.master_of(g)?;
        (0..3).find(|&i| self.broker_addr(g, i) == addr)
    }

    /// Waits until every group has a master and two slaves registered.
    pub fn wait_registered(&self, limit: Duration) {
        wait_for(
            "every group registered with a master and two slaves",
            limit,
            || self.logs(),
            || {
                self.check_alive();
                let members = self.members();
                (0..self.groups)
                    .all(|g| {
                        let name = group_name(g);
                        let mine: Vec<_> = members.iter().filter(|m| m.0 == name).collect();
                        mine.len() == 3 && mine.iter().filter(|m| m.1 == 0).count() == 1
                    })
                    .then_some(())
            },
        );
    }

    /// Panics (with the logs) if a process that should run has exited.
    pub fn check_alive(&self) {
        // try_wait needs &mut; a zero-signal kill tells the same.
        let mut dead = Vec::new();
        if let Some(c) = &self.namesrv {
            if !pid_alive(c.id()) {
                dead.push("namesrv".to_string());
            }
        }
        for (i, c) in self.nodes.iter().enumerate() {
            if let Some(c) = c {
                if !pid_alive(c.id()) {
                    dead.push(format!("node{i}"));
                }
            }
        }
        assert!(dead.is_empty(), "{dead:?} exited\n{}", self.logs());
    }

    /// Creates `topic` with `queues` queues on every master and waits until the name
    /// server's route lists it on every group.
    pub fn create_topic(&self, topic: &str, queues: u32) {
        let q = queues.to_string();
        // A leader handing over to its preferredLeaderIds member refuses admin requests
        // for a moment: ask again until a master takes it.
        let last = std::cell::RefCell::new(String::new());
        wait_for(
            &format!("updateTopic {topic}"),
            Duration::from_secs(20),
            || format!("last answer: {}\n{}", last.borrow(), self.logs()),
            || {
                let out = self.admin(&[
                    "updateTopic",
                    "-c",
                    CLUSTER,
                    "-t",
                    topic,
                    "-r",
                    &q,
                    "-w",
                    &q,
                ]);
                *last.borrow_mut() = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                out.status.success().then_some(())
            },
        );
        self.wait_route(topic, Duration::from_secs(20));
        self.wait_preferred_masters(Duration::from_secs(30));
    }

    /// Waits until every group's master is its preferredLeaderIds member, registered as
    /// brokerId 0: a client started before the hand-over to it may fetch a route without
    /// a master and fail its first sends at once.
    pub fn wait_preferred_masters(&self, limit: Duration) {
        wait_for(
            "every group's preferred member registered as its master",
            limit,
            || self.logs(),
            || {
                let out = self.admin(&["clusterList", "--json"]);
                let text = String::from_utf8_lossy(&out.stdout).to_string();
                let masters: Vec<(String, String)> = text
                    .lines()
                    .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                    .filter(|v| v["brokerId"].as_i64() == Some(0) || v["brokerId"] == "0")
                    .map(|v| {
                        let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
                        (s("brokerName"), s("addr"))
                    })
                    .collect();
                (0..self.groups)
                    .all(|g| masters.contains(&(group_name(g), self.broker_addr(g, g % 3))))
                    .then_some(())
            },
        );
    }

    /// Waits until `topicStatus` shows `topic` on every group.
    pub fn wait_route(&self, topic: &str, limit: Duration) {
        wait_for(
            &format!("the route of {topic} on every group"),
            limit,
            || self.logs(),
            || {
                let out = self.admin(&["topicStatus", "-t", topic, "--json"]);
                let text = String::from_utf8_lossy(&out.stdout).to_string();
                (0..self.groups)
                    .all(|g| text.contains(&format!("\"{}\"", group_name(g))))
                    .then_some(())
            },
        );
    }

    /// The last lines of every process's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        let mut files = vec![self.dir().join("namesrv.log")];
        files.extend((0..3).map(|i| self.node_log(i)));
        for f in files {
            let text = read_tail(&f, 40);
            s.push_str(&format!("--- {} ---\n{text}\n", f.display()));
        }
        s
    }
}

fn pid_alive(pid: u32) -> bool {
    // A reaped or zombie child: /proc/<pid>/stat state Z or missing.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn read_tail(path: &Path, lines: usize) -> String {
    let mut text = String::new();
    if let Ok(mut f) = fs::File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..3 {
            self.kill_node(i);
        }
        if let Some(mut c) = self.namesrv.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// The client library's runtime: one per test, shut down by [`Client::shutdown`].
pub struct Client {
    owner: RuntimeOwner,
    runtime: Arc<ClientRuntime>,
}

impl Client {
    pub fn new(scope: &str) -> Client {
        let owner = RuntimeOwner::plan(RuntimeConfig {
            thread_name: format!("rmq-{scope}"),
            ..Default::default()
        })
        .expect("runtime plan")
        .build()
        .expect("client runtime");
        let runtime = ClientRuntime::try_new(
            owner.root_context().component("client"),
            ClientRuntimeConfig::default(),
            rocketmq_observability::TelemetryHandle::noop(),
        )
        .expect("client runtime");
        Client { owner, runtime }
    }

    pub fn runtime(&self) -> Arc<ClientRuntime> {
        Arc::clone(&self.runtime)
    }

    pub async fn shutdown(self) {
        let Client { owner, runtime } = self;
        let _ = runtime.shutdown().await;
        let _ = owner.shutdown_tasks().await;
        let _ = owner.shutdown_background();
    }
}

/// The lowest pollNameServerInterval and heartbeatBrokerInterval rocketmq-client-rust
/// accepts (its ClientConfigValidator; RocketMQ's defaults are 30 s).
pub const CLIENT_MIN_INTERVAL_MS: u32 = 10_000;

/// Client options as a user who wants quick failover sets them: the name server polled
/// every `poll_ms` (RocketMQ's pollNameServerInterval, 30 s by default; the client refuses
/// less than 10 s), heartbeats every 10 s, offsets persisted every second.
pub fn client_options(namesrv: &str, poll_ms: u32) -> ClientOptions {
    let mut c = ClientConfig::default();
    c.set_namesrv_addr(namesrv.into());
    c.set_poll_name_server_interval(poll_ms);
    c.set_heartbeat_broker_interval(CLIENT_MIN_INTERVAL_MS);
    c.set_persist_consumer_offset_interval(1000);
    c.set_pull_time_delay_millis_when_exception(200);
    c.set_instance_name(format!("interop-{}", std::process::id()).into());
    ClientOptions::legacy(c)
}

/// The p-th percentile (0..=100) of sorted `v`.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}
