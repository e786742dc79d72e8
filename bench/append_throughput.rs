//! `cargo bench --bench append_throughput -- [options]`
//!
//! Closed-loop clients append fixed-size entries and wait for each acknowledgement; the
//! latency of every acknowledged append goes into an HDR histogram. By default each
//! replica runs in its own Engine in this process, talking over loopback TCP, and the
//! clients call the leader's API in-process, as an embedding host does. `--remote -c FILE`
//! drives an existing cluster over TCP through the client protocol instead.
//!
//! `--messages` sends RocketMQ messages through the broker layer instead (`broker::Broker`:
//! one topic of 8 queues per group, a key and a tag per message, the body of
//! `--entry-size` bytes) and then measures a consumer pulling the whole backlog of group 0
//! from a follower, queue by queue.
//!
//! The last line on stdout is machine-readable:
//! `append_throughput entries_per_s=N mib_per_s=F p50_us=N p99_us=N p999_us=N replicas=R
//! groups=G clients=C entry_size=B flush=sync|async seconds=S`

#[path = "common.rs"]
mod common;
use common::free_ports;
use hdrhistogram::Histogram;
use rmqraft::broker::{self, Broker};
use rmqraft::net::{CallError, MembersClient, Message};
use rmqraft::{Engine, ErrorKind, Group, GroupConfig, Role};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const USAGE: &str = "usage: append_throughput [--replicas 1|3|5] [--groups G] [--clients C] \
[--entry-size BYTES] [--seconds S] [--warmup S] [--flush sync|async] [--dir PATH] [--json] \
[--flusher auto|io_uring|pwrite] [--sync-mode auto|fdatasync|syncfs] [--set KEY=VALUE]... [--blocking] [--remote -c FILE]
[--messages]

By default each in-process client is a closed loop driven by append_async: it issues its
next append from the completion of the previous one, as an asynchronous broker pipeline
does. --blocking runs one thread per client calling the blocking append instead.
--messages sends messages (topic, key, tags) through the broker layer, then pulls the
backlog of group 0 from a follower and reports both.";

/// The topic `--messages` sends to, and its queues.
const BENCH_TOPIC: &str = "BenchTopic";
const BENCH_QUEUES: i32 = 8;

#[derive(Debug, Clone)]
struct Options {
    replicas: usize,
    groups: usize,
    clients: usize,
    entry_size: usize,
    seconds: u64,
    warmup: u64,
    flush_sync: bool,
    dir: Option<PathBuf>,
    json: bool,
    remote: Option<PathBuf>,
    flusher: String,
    blocking: bool,
    sync_mode: String,
    /// `--set KEY=VALUE`: more broker.conf lines for every group member.
    extra: Vec<String>,
    messages: bool,
}

fn parse_options() -> Result<Options, String> {
    let mut o = Options {
        replicas: 3,
        groups: 1,
        clients: 64,
        entry_size: 1024,
        seconds: 10,
        warmup: 2,
        flush_sync: true,
        dir: None,
        json: false,
        remote: None,
        flusher: "auto".to_string(),
        blocking: false,
        sync_mode: "auto".to_string(),
        extra: Vec::new(),
        messages: false,
    };
    let mut args = std::env::args().skip(1);
    let mut remote = false;
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        fn number<T: std::str::FromStr>(name: &str, text: String) -> Result<T, String> {
            text.parse()
                .map_err(|_| format!("{name}: '{text}' is not a number"))
        }
        match arg.as_str() {
            "--bench" => {}
            "--replicas" => o.replicas = number("--replicas", value("--replicas")?)?,
            "--groups" => o.groups = number("--groups", value("--groups")?)?,
            "--clients" => o.clients = number("--clients", value("--clients")?)?,
            "--entry-size" => o.entry_size = number("--entry-size", value("--entry-size")?)?,
            "--seconds" => o.seconds = number("--seconds", value("--seconds")?)?,
            "--warmup" => o.warmup = number("--warmup", value("--warmup")?)?,
            "--flush" => {
                o.flush_sync = match value("--flush")?.as_str() {
                    "sync" => true,
                    "async" => false,
                    other => return Err(format!("--flush: '{other}' is not sync or async")),
                }
            }
            "--flusher" => o.flusher = value("--flusher")?,
            "--dir" => o.dir = Some(PathBuf::from(value("--dir")?)),
            "--json" => o.json = true,
            "--blocking" => o.blocking = true,
            "--messages" => o.messages = true,
            "--sync-mode" => o.sync_mode = value("--sync-mode")?,
            "--set" => {
                let line = value("--set")?;
                if !line.contains('=') {
                    return Err(format!("--set: '{line}' is not KEY=VALUE"));
                }
                o.extra.push(line);
            }
            "--remote" => remote = true,
            "-c" => o.remote = Some(PathBuf::from(value("-c")?)),
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown option '{other}'\n{USAGE}")),
        }
    }
    if o.messages && (remote || o.blocking) {
        return Err(format!(
            "--messages runs in-process closed loops only\n{USAGE}"
        ));
    }
    if remote != o.remote.is_some() {
        return Err(format!("--remote and -c FILE go together\n{USAGE}"));
    }
    if ![1, 3, 5].contains(&o.replicas) {
        return Err("--replicas: must be 1, 3 or 5".into());
    }
    if o.groups == 0
        || o.groups > 256
        || o.clients == 0
        || o.clients > 4096
        || o.entry_size == 0
        || o.seconds == 0
    {
        return Err(format!(
            "--groups 1..256, --clients 1..4096, --entry-size and --seconds > 0\n{USAGE}"
        ));
    }
    Ok(o)
}

/// What the client threads share.
struct Shared {
    measuring: AtomicBool,
    stop: AtomicBool,
    acked: AtomicU64,
    histograms: Vec<Mutex<Histogram<u64>>>,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Shared {
    fn new(clients: usize) -> Shared {
        Shared {
            measuring: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            acked: AtomicU64::new(0),
            histograms: (0..clients)
                .map(|_| Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3).unwrap()))
                .collect(),
            errors: Mutex::new(BTreeMap::new()),
        }
    }

    fn record(&self, client: usize, started: Instant) {
        if self.measuring.load(Ordering::Relaxed) {
            let us = started.elapsed().as_micros().max(1) as u64;
            let _ = self.histograms[client]
                .lock()
                .unwrap()
                .record(us.min(60_000_000));
            self.acked.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn error(&self, what: String) {
        if self.measuring.load(Ordering::Relaxed) {
            *self.errors.lock().unwrap().entry(what).or_insert(0) += 1;
        }
    }

    fn merged(&self) -> Histogram<u64> {
        let mut all = Histogram::new_with_bounds(1, 60_000_000, 3).unwrap();
        for h in &self.histograms {
            all.add(&*h.lock().unwrap()).unwrap();
        }
        all
    }
}

/// The in-process cluster: one engine per replica, each hosting one member of every group.
struct LocalCluster {
    engines: Vec<Engine>,
    groups: Vec<Vec<Arc<Group>>>,
    /// With `--messages`: the broker over each member, as `groups`.
    brokers: Vec<Vec<Broker>>,
    _tempdir: Option<tempfile::TempDir>,
}

fn start_local(o: &Options) -> Result<LocalCluster, String> {
    let (root, tempdir) = match &o.dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let t = tempfile::Builder::new()
                .prefix("append_throughput")
                .tempdir()
                .map_err(|e| e.to_string())?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let ports = free_ports(o.replicas);
    let peers: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("n{i}-127.0.0.1:{p}"))
        .collect();
    let peers = peers.join(";");
    let engines: Vec<Engine> = (0..o.replicas)
        .map(|_| {
            Engine::open(&format!(
                "brokerClusterName=Bench\nrmqraftFlusher={}\nrmqraftSyncMode={}",
                o.flusher, o.sync_mode
            ))
        })
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let mut groups = Vec::new();
    let mut brokers = Vec::new();
    for g in 0..o.groups {
        let mut members = Vec::new();
        let mut member_brokers = Vec::new();
        for (i, engine) in engines.iter().enumerate() {
            let props = format!(
                "dLegerGroup=bench{g}\ndLegerPeers={peers}\ndLegerSelfId=n{i}\nstorePathRootDir={}\n\
                 mappedFileSizeCommitLog={}\nflushDiskType={}\nmaxPendingRequestsNum=100000\n{}",
                root.join(format!("bench{g}")).display(),
                (256u64 << 20).checked_div(o.groups as u64).unwrap_or(0).max(16 << 20),
                if o.flush_sync { "SYNC_FLUSH" } else { "ASYNC_FLUSH" },
                o.extra.join("\n")
            );
            let member = Arc::new(engine.open_group(&props).map_err(|e| e.to_string())?);
            if o.messages {
                member_brokers
                    .push(Broker::open(Arc::clone(&member), &props).map_err(|e| e.to_string())?);
            }
            members.push(member);
        }
        groups.push(members);
        brokers.push(member_brokers);
    }
    Ok(LocalCluster {
        engines,
        groups,
        brokers,
        _tempdir: tempdir,
    })
}

fn leader_of(members: &[Arc<Group>]) -> Option<usize> {
    members
        .iter()
        .position(|g| g.status().map(|s| s.role == Role::Leader).unwrap_or(false))
}

fn run_local_client(
    cluster: &LocalCluster,
    group: usize,
    client: usize,
    data: &[u8],
    shared: &Shared,
) {
    let members = &cluster.groups[group];
    let mut leader = leader_of(members).unwrap_or(0);
    while !shared.stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        match members[leader].append(data, Duration::from_secs(10)) {
            Ok(_) => shared.record(client, started),
            Err(e) => {
                shared.error(e.kind().abi_name().to_string());
                if e.kind() == ErrorKind::NotLeader || e.kind() == ErrorKind::Closed {
                    leader = leader_of(members).unwrap_or((leader + 1) % members.len());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// Closed-loop clients driven by completions: one append in flight per client.
struct Loops {
    cluster: Arc<LocalCluster>,
    shared: Arc<Shared>,
    data: Arc<Vec<u8>>,
    /// The same bytes as `data`, shared by every message body.
    body: bytes::Bytes,
    groups: usize,
    leaders: Vec<AtomicUsize>,
    outstanding: AtomicU64,
    /// Numbers each message's key with `--messages`.
    sent: AtomicU64,
    retry: crossbeam_channel::Sender<usize>,
}

impl Loops {
    fn issue(self: &Arc<Self>, client: usize) {
        if self.shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let group = client % self.groups;
        let members = &self.cluster.groups[group];
        let leader = self.leaders[group].load(Ordering::Relaxed);
        let started = Instant::now();
        self.outstanding.fetch_add(1, Ordering::AcqRel);
        let accepted = match self.cluster.brokers.get(group).filter(|b| !b.is_empty()) {
            Some(brokers) => {
                let n = self.sent.fetch_add(1, Ordering::Relaxed);
                let message = broker::Message::new(BENCH_TOPIC, bytes::Bytes::clone(&self.body))
                    .with_tags(if n.is_multiple_of(2) { "TagA" } else { "TagB" })
                    .with_keys(format!("k{n}"));
                brokers[leader].send_async(&message, self.completion(client, started))
            }
            None => members[leader].append_async(&self.data, self.completion(client, started)),
        };
        if let Err(e) = accepted {
            self.outstanding.fetch_sub(1, Ordering::AcqRel);
            self.failed(client, e);
        }
    }

    /// What runs when a client's append or send completes: record it and go on.
    fn completion<T>(
        self: &Arc<Self>,
        client: usize,
        started: Instant,
    ) -> Box<dyn FnOnce(Result<T, rmqraft::Error>) + Send> {
        let me = Arc::clone(self);
        Box::new(move |result| {
            match result {
                Ok(_) => {
                    me.shared.record(client, started);
                    me.issue(client);
                }
                Err(e) => me.failed(client, e),
            }
            me.outstanding.fetch_sub(1, Ordering::AcqRel);
        })
    }

    fn failed(&self, client: usize, e: rmqraft::Error) {
        self.shared.error(e.kind().abi_name().to_string());
        let group = client % self.groups;
        if matches!(e.kind(), ErrorKind::NotLeader | ErrorKind::Closed) {
            let members = &self.cluster.groups[group];
            let now = self.leaders[group].load(Ordering::Relaxed);
            let next = leader_of(members).unwrap_or((now + 1) % members.len());
            self.leaders[group].store(next, Ordering::Relaxed);
        }
        let _ = self.retry.send(client);
    }
}

struct Remote {
    config: GroupConfig,
    engine: rmqraft::EngineConfig,
}

fn load_remote(path: &PathBuf) -> Result<Remote, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let config = GroupConfig::from_properties(&text).map_err(|e| e.to_string())?;
    let engine = rmqraft::EngineConfig::from_properties(&text).map_err(|e| e.to_string())?;
    Ok(Remote { config, engine })
}

fn run_remote_client(remote: &Remote, client: usize, data: &[u8], shared: &Shared) {
    let peers = &remote.config.peers;
    let mut members = MembersClient::new(
        &remote.engine.cluster_name,
        &remote.config.group,
        peers.iter().map(|p| p.addr).collect(),
        remote.engine.secret.clone(),
        Duration::from_secs(2),
    );
    let mut target = client % peers.len();
    while !shared.stop.load(Ordering::Relaxed) {
        let message = Message::ClientAppend {
            data: bytes::Bytes::copy_from_slice(data),
        };
        let started = Instant::now();
        match members.call(target, message, Duration::from_secs(10)) {
            Ok(_) => shared.record(client, started),
            Err(CallError::Refused {
                kind, leader_peer, ..
            }) => {
                shared.error(kind.map_or("UNKNOWN", |k| k.abi_name()).to_string());
                if kind == Some(ErrorKind::NotLeader) {
                    if leader_peer >= 0 && (leader_peer as usize) < peers.len() {
                        target = leader_peer as usize;
                    } else {
                        target = (target + 1) % peers.len();
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
            Err(CallError::Unreachable(_)) => {
                shared.error("unreachable".to_string());
                target = (target + 1) % peers.len();
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn main() {
    let o = match parse_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .try_init();
    let shared = Arc::new(Shared::new(o.clients));
    let data: Arc<Vec<u8>> = Arc::new((0..o.entry_size).map(|i| (i % 251) as u8).collect());
    let (local, remote) = if let Some(path) = &o.remote {
        match load_remote(path) {
            Ok(r) => (None, Some(Arc::new(r))),
            Err(e) => {
                eprintln!("append_throughput: {e}");
                std::process::exit(2);
            }
        }
    } else {
        match start_local(&o) {
            Ok(c) => (Some(Arc::new(c)), None),
            Err(e) => {
                eprintln!("append_throughput: cannot start the cluster: {e}");
                std::process::exit(1);
            }
        }
    };
    if let Some(cluster) = &local {
        let deadline = Instant::now() + Duration::from_secs(30);
        while cluster.groups.iter().any(|m| leader_of(m).is_none()) {
            if Instant::now() > deadline {
                eprintln!("append_throughput: no leader elected within 30 s");
                std::process::exit(1);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    if let Some(cluster) = &local {
        for (g, brokers) in cluster.brokers.iter().enumerate() {
            if brokers.is_empty() {
                continue;
            }
            let Some(leader) = leader_of(&cluster.groups[g]) else {
                continue;
            };
            if let Err(e) = brokers[leader].topic_update(
                BENCH_TOPIC,
                BENCH_QUEUES,
                BENCH_QUEUES,
                6,
                Duration::from_secs(30),
            ) {
                eprintln!("append_throughput: cannot create {BENCH_TOPIC} on bench{g}: {e}");
                std::process::exit(1);
            }
        }
    }
    let mut threads = Vec::new();
    let mut loops: Option<Arc<Loops>> = None;
    match (&local, o.blocking || remote.is_some()) {
        (Some(cluster), false) => {
            let (retry_tx, retry_rx) = crossbeam_channel::unbounded::<usize>();
            let driver = Arc::new(Loops {
                cluster: Arc::clone(cluster),
                shared: Arc::clone(&shared),
                data: Arc::clone(&data),
                body: bytes::Bytes::copy_from_slice(&data),
                groups: o.groups,
                leaders: cluster
                    .groups
                    .iter()
                    .map(|m| AtomicUsize::new(leader_of(m).unwrap_or(0)))
                    .collect(),
                outstanding: AtomicU64::new(0),
                sent: AtomicU64::new(0),
                retry: retry_tx,
            });
            // Clients whose append failed come back here and retry after a pause.
            let retrier = Arc::downgrade(&driver);
            let stop = Arc::clone(&shared);
            threads.push(std::thread::spawn(move || {
                while !stop.stop.load(Ordering::Relaxed) {
                    if let Ok(client) = retry_rx.recv_timeout(Duration::from_millis(50)) {
                        std::thread::sleep(Duration::from_millis(1));
                        match retrier.upgrade() {
                            Some(d) => d.issue(client),
                            None => break,
                        }
                    }
                }
            }));
            for client in 0..o.clients {
                driver.issue(client);
            }
            loops = Some(driver);
        }
        _ => {
            for client in 0..o.clients {
                let shared = Arc::clone(&shared);
                let data = Arc::clone(&data);
                let local = local.clone();
                let remote = remote.clone();
                let groups = o.groups;
                threads.push(std::thread::spawn(move || match (&local, &remote) {
                    (Some(c), _) => run_local_client(c, client % groups, client, &data, &shared),
                    (_, Some(r)) => run_remote_client(r, client, &data, &shared),
                    _ => {}
                }));
            }
        }
    }
    std::thread::sleep(Duration::from_secs(o.warmup));
    shared.measuring.store(true, Ordering::Release);
    let start = Instant::now();
    let mut last = 0u64;
    // Threads of this process (engines, clients and the driver), the most seen.
    let mut process_threads = process_thread_count();
    for second in 1..=o.seconds {
        let target = start + Duration::from_secs(second);
        std::thread::sleep(target.saturating_duration_since(Instant::now()));
        process_threads = process_threads.max(process_thread_count());
        let acked = shared.acked.load(Ordering::Relaxed);
        let p99 = shared.merged().value_at_quantile(0.99);
        eprintln!(
            "[{second:>3}s] {:>9} appends/s  (total {acked}, p99 so far {p99} us)",
            acked - last
        );
        last = acked;
    }
    shared.measuring.store(false, Ordering::Release);
    let elapsed = start.elapsed().as_secs_f64();
    shared.stop.store(true, Ordering::Release);
    for t in threads {
        let _ = t.join();
    }
    if let Some(driver) = loops.take() {
        // Appends still in flight complete (or time out) before the cluster closes.
        let deadline = Instant::now() + Duration::from_secs(15);
        while driver.outstanding.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let pulled = local
        .as_ref()
        .filter(|_| o.messages)
        .map(|cluster| pull_backlog(cluster, o.entry_size));
    let hist = shared.merged();
    let acked = hist.len();
    let rate = acked as f64 / elapsed;
    let mib = rate * o.entry_size as f64 / (1024.0 * 1024.0);
    let errors = shared.errors.lock().unwrap().clone();
    let flush = if o.flush_sync { "sync" } else { "async" };
    let topology = if o.remote.is_some() {
        "remote"
    } else {
        "in-process, one engine per replica, loopback TCP"
    };
    if o.json {
        let errs: Vec<String> = errors.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        println!(
            "{{\"entries_per_s\":{rate:.0},\"mib_per_s\":{mib:.2},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{},\
             \"replicas\":{},\"groups\":{},\"clients\":{},\"entry_size\":{},\"flush\":\"{flush}\",\"seconds\":{},\"threads\":{process_threads},\"errors\":{{{}}}}}",
            hist.value_at_quantile(0.5),
            hist.value_at_quantile(0.99),
            hist.value_at_quantile(0.999),
            hist.max(),
            o.replicas,
            o.groups,
            o.clients,
            o.entry_size,
            o.seconds,
            errs.join(",")
        );
    } else {
        println!("topology      {topology}");
        println!(
            "replicas      {}   groups {}   clients {}   entry {} B   flush {flush}",
            o.replicas, o.groups, o.clients, o.entry_size
        );
        println!("acknowledged  {acked} in {elapsed:.1} s");
        println!("throughput    {rate:.0} entries/s   {mib:.1} MiB/s");
        println!(
            "latency (us)  p50 {}   p99 {}   p99.9 {}   max {}",
            hist.value_at_quantile(0.5),
            hist.value_at_quantile(0.99),
            hist.value_at_quantile(0.999),
            hist.max()
        );
        if let Some(p) = &pulled {
            println!(
                "pull          {} messages ({} queues) from follower {} in {:.2} s: {:.0} messages/s   {:.1} MiB/s",
                p.messages, BENCH_QUEUES, p.member, p.seconds, p.per_s, p.mib_per_s
            );
        }
        if errors.is_empty() {
            println!("errors        none");
        } else {
            for (kind, count) in &errors {
                println!("errors        {kind}: {count}");
            }
        }
    }
    let pull_fields = pulled.as_ref().map_or(String::new(), |p| {
        format!(
            " mode=messages pull_messages_per_s={:.0} pull_mib_per_s={:.2}",
            p.per_s, p.mib_per_s
        )
    });
    println!(
        "append_throughput entries_per_s={rate:.0} mib_per_s={mib:.2} p50_us={} p99_us={} p999_us={} replicas={} groups={} clients={} entry_size={} flush={flush} seconds={} threads={process_threads}{pull_fields}",
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        hist.value_at_quantile(0.999),
        o.replicas,
        o.groups,
        o.clients,
        o.entry_size,
        o.seconds
    );
    if let Some(cluster) = &local {
        // Where the work went: batching at each stage of the pipeline.
        for (i, engine) in cluster.engines.iter().enumerate() {
            let (rounds, jobs) = engine.flush_rounds();
            let mut line = format!("replica n{i}: flush rounds {rounds} (store jobs {jobs})");
            for members in cluster.groups.iter().take(2) {
                let c = members[i].counters();
                let per_push = if c.pushes_sent > 0 {
                    c.entries_pushed as f64 / c.pushes_sent as f64
                } else {
                    0.0
                };
                let per_round = if c.handler_rounds > 0 {
                    c.pushes_applied as f64 / c.handler_rounds as f64
                } else {
                    0.0
                };
                line += &format!(
                    "; {}: appends {} pushes {} ({per_push:.1} entries/push) applied {} ({per_round:.1} pushes/round) flush acks {} commit moves {}",
                    members[i].group_name(),
                    c.appends,
                    c.pushes_sent,
                    c.pushes_applied,
                    c.flush_acks_sent,
                    c.commit_advances
                );
            }
            eprintln!("{line}");
        }
    }
    if let Some(cluster) = local {
        if let Ok(cluster) = Arc::try_unwrap(cluster) {
            for b in cluster.brokers.iter().flatten() {
                b.close();
            }
            drop(cluster.brokers);
            // Engines first: each closes its members together (leaders hand over several
            // at a time), where dropping the groups would close them one by one.
            for e in &cluster.engines {
                e.close();
            }
            drop(cluster.groups);
        }
    }
}

/// What a consumer reading a backlog measured.
struct Pulled {
    member: String,
    messages: u64,
    seconds: f64,
    per_s: f64,
    mib_per_s: f64,
}

/// A consumer on a follower of group 0 reads every queue of the bench topic from offset 0
/// to the end the leader reached, in pulls of up to `broker::PULL_MAX` messages.
fn pull_backlog(cluster: &LocalCluster, entry_size: usize) -> Pulled {
    let members = &cluster.groups[0];
    let brokers = &cluster.brokers[0];
    let leader = leader_of(members).unwrap_or(0);
    let follower = (leader + 1) % members.len();
    let consumer = &brokers[follower];
    // The follower's broker state must have caught up with the leader's log first.
    let last = members[leader]
        .status()
        .map(|s| s.commit_index)
        .unwrap_or(0);
    if let Err(e) = consumer.wait_applied(last, Duration::from_secs(60)) {
        eprintln!("append_throughput: follower did not apply the backlog: {e}");
    }
    let start = Instant::now();
    let mut messages = 0u64;
    for queue in 0..BENCH_QUEUES {
        let end = consumer
            .queue_offsets(BENCH_TOPIC, queue)
            .map(|(_, max)| max)
            .unwrap_or(0);
        let mut offset = 0u64;
        // Bounded: every pull moves the offset forward or the loop ends.
        while offset < end {
            match consumer.pull(
                BENCH_TOPIC,
                queue,
                offset,
                broker::PULL_MAX,
                None,
                Duration::ZERO,
            ) {
                Ok(r) if r.next_offset > offset => {
                    messages += r.messages.len() as u64;
                    offset = r.next_offset;
                }
                Ok(_) => break,
                Err(e) => {
                    eprintln!("append_throughput: pull {BENCH_TOPIC}/{queue}@{offset}: {e}");
                    break;
                }
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64().max(1e-9);
    let per_s = messages as f64 / seconds;
    Pulled {
        member: members[follower].self_id().to_string(),
        messages,
        seconds,
        per_s,
        mib_per_s: per_s * entry_size as f64 / (1024.0 * 1024.0),
    }
}

/// Threads of this process now (`/proc/self/task`); 0 where that is not readable.
fn process_thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}
