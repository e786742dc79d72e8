//! What an operator watches: a snapshot of an engine's counters and gauges
//! ([`MetricsSnapshot`], `Engine::metrics`), its Prometheus text exposition (format
//! 0.0.4), and the small HTTP/1.1 server that serves it on `rmqraftMetricsPort`.
//!
//! Counters on hot paths are relaxed atomics: the append path takes no lock for them.
//! A snapshot reads each member's state under its lock, once per scrape.

use crate::error::{Error, ErrorKind, Result};
use crate::types::Role;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Upper bounds of the flush latency buckets, in microseconds (the exposition shows
/// them in seconds); `+Inf` follows.
pub const FLUSH_BUCKETS_US: [u64; 14] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000,
];

/// A latency histogram updated with relaxed atomics (one bucket, the count and the sum
/// per observation).
#[derive(Debug, Default)]
pub(crate) struct LatencyHistogram {
    /// Per bucket, not cumulative; the last one is `+Inf`.
    buckets: [AtomicU64; FLUSH_BUCKETS_US.len() + 1],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl LatencyHistogram {
    pub(crate) fn observe(&self, elapsed: Duration) {
        let us = elapsed.as_micros().min(u128::from(u64::MAX)) as u64;
        let bucket = FLUSH_BUCKETS_US.partition_point(|bound| *bound < us);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Histogram {
        let mut cumulative = Vec::with_capacity(self.buckets.len());
        let mut total = 0u64;
        for bucket in &self.buckets {
            total += bucket.load(Ordering::Relaxed);
            cumulative.push(total);
        }
        Histogram {
            cumulative_counts: cumulative,
            count: total,
            sum_seconds: self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// A histogram as Prometheus shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Observations at or below each bound of [`FLUSH_BUCKETS_US`], then all (`+Inf`).
    pub cumulative_counts: Vec<u64>,
    pub count: u64,
    pub sum_seconds: f64,
}

/// A follower as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowerMetrics {
    /// The follower's `dLegerSelfId`.
    pub peer: String,
    /// Highest index known to match the leader's log.
    pub match_index: u64,
    /// Committed entries the follower does not hold yet (`commit_index - match_index`).
    pub commit_lag_entries: u64,
}

/// What a broker on the member counts (RocketMQ sends and pulls).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BrokerMetrics {
    pub sends_total: u64,
    pub pulls_total: u64,
    /// The last log index the broker applied (consume queues, topics, offsets).
    pub applied_index: u64,
}

/// One member of one group.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupMetrics {
    pub group: String,
    pub self_id: String,
    pub role: Role,
    pub term: u64,
    pub commit_index: u64,
    pub last_index: u64,
    pub flushed_index: u64,
    /// The commit index this member's readers of committed entries (the producer table,
    /// a broker's dispatch, `read_committed`) were last woken for.
    pub applied_index: u64,
    /// On the leader, one per follower; empty elsewhere.
    pub followers: Vec<FollowerMetrics>,
    /// Client appends accepted.
    pub appends_total: u64,
    /// Appends that ended in an error, by kind: refused by the call, or completed with
    /// the error later (only kinds seen so far).
    pub append_errors: Vec<(ErrorKind, u64)>,
    /// Flusher rounds that carried this member's store, and how long each took.
    pub flush_rounds_total: u64,
    pub flush_seconds: Histogram,
    /// Times this member started campaigning.
    pub elections_total: u64,
    /// Bytes of segment files this member holds.
    pub disk_bytes: u64,
    /// When a broker is open on the member.
    pub broker: Option<BrokerMetrics>,
}

/// Per engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineMetrics {
    pub groups: u64,
    /// Threads the engine runs: scheduler, flusher, listeners, connection readers, link
    /// writers and the metrics server.
    pub threads: u64,
    /// Inbound connections (peers and clients) open now.
    pub connections: u64,
    /// Outbound links to other engines.
    pub peer_links: u64,
    /// Bytes queued on outbound links.
    pub link_queued_bytes: u64,
    /// Jobs waiting per scheduler queue: (queue, depth).
    pub queue_depths: Vec<(&'static str, u64)>,
    /// Group-commit rounds of the engine's flusher and the store jobs they carried.
    pub flush_rounds_total: u64,
    pub flush_jobs_total: u64,
}

/// Everything `GET /metrics` shows, from the Rust API.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsSnapshot {
    pub engine: EngineMetrics,
    pub groups: Vec<GroupMetrics>,
}

/// Per-member counters kept by the broker on it (relaxed atomics).
#[derive(Debug, Default)]
pub(crate) struct BrokerCounters {
    pub open: AtomicBool,
    pub sends: AtomicU64,
    pub pulls: AtomicU64,
    pub applied_index: AtomicU64,
}

impl BrokerCounters {
    pub(crate) fn snapshot(&self) -> Option<BrokerMetrics> {
        self.open.load(Ordering::Relaxed).then(|| BrokerMetrics {
            sends_total: self.sends.load(Ordering::Relaxed),
            pulls_total: self.pulls.load(Ordering::Relaxed),
            applied_index: self.applied_index.load(Ordering::Relaxed),
        })
    }
}

/// `NotLeader` -> `not_leader`: the `kind` label of append errors.
pub fn kind_label(kind: ErrorKind) -> String {
    let name = format!("{kind:?}");
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn role_label(role: Role) -> &'static str {
    match role {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::Candidate => "candidate",
    }
}

/// A label value with `\`, `"` and newlines escaped, as the text format asks.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// One metric family: HELP and TYPE once, then its samples.
struct Family<'a> {
    out: &'a mut String,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &str, kind: &str, help: &str) -> Family<'a> {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"{}\"", escape(val));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

fn seconds_bound(us: u64) -> String {
    format!("{}", us as f64 / 1e6)
}

impl MetricsSnapshot {
    /// The Prometheus text exposition (format 0.0.4) of this snapshot.
    pub fn to_prometheus(&self) -> String {
        let mut out = String::with_capacity(1024 + 2048 * self.groups.len());
        let g = &self.groups;
        let ids = |m: &GroupMetrics| [("group", m.group.clone()), ("self_id", m.self_id.clone())];
        type Gauge = fn(&GroupMetrics) -> u64;
        let gauges: [(&str, &str, Gauge); 6] = [
            ("rmqraft_group_term", "Current Raft term.", |m| m.term),
            (
                "rmqraft_group_commit_index",
                "Highest log index known committed.",
                |m| m.commit_index,
            ),
            (
                "rmqraft_group_last_index",
                "Last log index held by this member.",
                |m| m.last_index,
            ),
            (
                "rmqraft_group_flushed_index",
                "Last log index durable on this member's disk.",
                |m| m.flushed_index,
            ),
            (
                "rmqraft_group_applied_index",
                "Commit index this member's readers of committed entries were woken for.",
                |m| m.applied_index,
            ),
            (
                "rmqraft_group_disk_bytes",
                "Bytes of segment files this member holds.",
                |m| m.disk_bytes,
            ),
        ];
        {
            let mut f = Family::new(
                &mut out,
                "rmqraft_group_role",
                "gauge",
                "1 for this member's current role (leader, follower, candidate), 0 for the others.",
            );
            for m in g {
                let [(a, av), (b, bv)] = ids(m);
                for role in [Role::Leader, Role::Follower, Role::Candidate] {
                    let on = u8::from(m.role == role);
                    f.sample(
                        "rmqraft_group_role",
                        &[(a, &av), (b, &bv), ("role", role_label(role))],
                        on,
                    );
                }
            }
        }
        for (name, help, value) in gauges {
            let mut f = Family::new(&mut out, name, "gauge", help);
            for m in g {
                let [(a, av), (b, bv)] = ids(m);
                f.sample(name, &[(a, &av), (b, &bv)], value(m));
            }
        }
        {
            let name = "rmqraft_group_follower_commit_lag_entries";
            let mut f = Family::new(
                &mut out,
                name,
                "gauge",
                "On the leader: committed entries a follower does not hold yet.",
            );
            for m in g {
                let [(a, av), (b, bv)] = ids(m);
                for p in &m.followers {
                    f.sample(
                        name,
                        &[(a, &av), (b, &bv), ("peer", &p.peer)],
                        p.commit_lag_entries,
                    );
                }
            }
        }
        {
            let name = "rmqraft_group_follower_match_index";
            let mut f = Family::new(
                &mut out,
                name,
                "gauge",
                "On the leader: highest index known to match on a follower.",
            );
            for m in g {
                let [(a, av), (b, bv)] = ids(m);
                for p in &m.followers {
                    f.sample(
                        name,
                        &[(a, &av), (b, &bv), ("peer", &p.peer)],
                        p.match_index,
                    );
                }
            }
        }
        let counters: [(&str, &str, Gauge); 3] = [
            (
                "rmqraft_group_appends_total",
                "Client appends accepted by this member.",
                |m| m.appends_total,
            ),
            (
                "rmqraft_group_flush_rounds_total",
                "Flusher rounds that carried this member's store.",
                |m| m.flush_rounds_total,
            ),
            (
                "rmqraft_group_elections_total",
                "Campaigns this member started.",
                |m| m.elections_total,
            ),
        ];
        for (name, help, value) in counters {
            let mut f = Family::new(&mut out, name, "counter", help);
            for m in g {
                let [(a, av), (b, bv)] = ids(m);
                f.sample(name, &[(a, &av), (b, &bv)], value(m));
            }
        }
        {
            let name = "rmqraft_group_append_errors_total";
            let mut f = Family::new(
                &mut out,
                name,
                "counter",
                "Appends that ended in an error, by kind (refused, or completed with the error).",
            );
            for m in g {
                let [(a, av), (b, bv)] = ids(m);
                for (kind, n) in &m.append_errors {
                    f.sample(name, &[(a, &av), (b, &bv), ("kind", &kind_label(*kind))], n);
                }
            }
        }
        {
            let name = "rmqraft_group_flush_duration_seconds";
            let mut f = Family::new(
                &mut out,
                name,
                "histogram",
                "Time of each flusher round (write and sync) that carried this member's store.",
            );
            for m in g {
                let [(a, av), (b, bv)] = ids(m);
                let h = &m.flush_seconds;
                let bucket = format!("{name}_bucket");
                for (i, n) in h.cumulative_counts.iter().enumerate() {
                    let le = match FLUSH_BUCKETS_US.get(i) {
                        Some(us) => seconds_bound(*us),
                        None => "+Inf".to_string(),
                    };
                    f.sample(&bucket, &[(a, &av), (b, &bv), ("le", &le)], n);
                }
                f.sample(&format!("{name}_sum"), &[(a, &av), (b, &bv)], h.sum_seconds);
                f.sample(&format!("{name}_count"), &[(a, &av), (b, &bv)], h.count);
            }
        }
        type BrokerValue = fn(&BrokerMetrics) -> u64;
        let broker: [(&str, &str, &str, BrokerValue); 3] = [
            (
                "rmqraft_broker_sends_total",
                "counter",
                "Messages the broker on this member was asked to send.",
                |b| b.sends_total,
            ),
            (
                "rmqraft_broker_pulls_total",
                "counter",
                "Pull requests the broker on this member served.",
                |b| b.pulls_total,
            ),
            (
                "rmqraft_broker_applied_index",
                "gauge",
                "Last log index the broker on this member applied.",
                |b| b.applied_index,
            ),
        ];
        for (name, kind, help, value) in broker {
            let mut f = Family::new(&mut out, name, kind, help);
            for m in g {
                if let Some(b) = &m.broker {
                    let [(a, av), (bk, bv)] = ids(m);
                    f.sample(name, &[(a, &av), (bk, &bv)], value(b));
                }
            }
        }
        let e = &self.engine;
        let engine: [(&str, &str, &str, u64); 7] = [
            (
                "rmqraft_engine_groups",
                "gauge",
                "Members open in this engine.",
                e.groups,
            ),
            (
                "rmqraft_engine_threads",
                "gauge",
                "Threads this engine runs.",
                e.threads,
            ),
            (
                "rmqraft_engine_connections",
                "gauge",
                "Inbound connections (peers and clients) open.",
                e.connections,
            ),
            (
                "rmqraft_engine_peer_links",
                "gauge",
                "Outbound links to other engines.",
                e.peer_links,
            ),
            (
                "rmqraft_engine_link_queued_bytes",
                "gauge",
                "Bytes queued on outbound links.",
                e.link_queued_bytes,
            ),
            (
                "rmqraft_engine_flush_rounds_total",
                "counter",
                "Group-commit rounds of the engine's flusher.",
                e.flush_rounds_total,
            ),
            (
                "rmqraft_engine_flush_jobs_total",
                "counter",
                "Store jobs carried by the flusher's rounds.",
                e.flush_jobs_total,
            ),
        ];
        for (name, kind, help, value) in engine {
            Family::new(&mut out, name, kind, help).sample(name, &[], value);
        }
        {
            let name = "rmqraft_engine_queue_depth";
            let mut f = Family::new(&mut out, name, "gauge", "Jobs waiting per scheduler queue.");
            for (queue, depth) in &e.queue_depths {
                f.sample(name, &[("queue", queue)], depth);
            }
        }
        out
    }
}

/// Requests served at once; the next wait in the listen backlog.
const CONNECTIONS_AT_ONCE: usize = 1;
/// A scraper that sends nothing, or reads nothing, for this long is dropped.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// A request head longer than this is refused.
const REQUEST_HEAD_BYTES_MAX: usize = 8192;

/// Makes the exposition text for one scrape.
pub(crate) type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Serves `GET /metrics` on one thread, one connection at a time
/// ([`CONNECTIONS_AT_ONCE`]), each with read and write timeouts.
pub(crate) struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    pub(crate) fn start(addr: SocketAddr, render: Render) -> Result<MetricsServer> {
        let listener = TcpListener::bind(addr)
            .map_err(|e| Error::io(format!("rmqraftMetricsPort: cannot listen on {addr}"), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("rmqraftMetricsPort: local address", e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("rq-metrics".into())
            .spawn(move || serve(listener, &stopping, &render))
            .map_err(|e| Error::io("rmqraftMetricsPort: spawn the metrics server", e))?;
        log::info!("metrics: serving GET /metrics on {addr}");
        Ok(MetricsServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops and joins the thread (a connection to the listener wakes its accept).
    pub(crate) fn stop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.stop.store(true, Ordering::Release);
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
            });
        }
        if let Err(err) = TcpStream::connect_timeout(&wake, IO_TIMEOUT) {
            log::warn!("metrics: cannot wake the server at {wake} to stop it: {err}");
        }
        let _ = thread.join();
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(listener: TcpListener, stop: &AtomicBool, render: &Render) {
    debug_assert_eq!(CONNECTIONS_AT_ONCE, 1);
    for conn in listener.incoming() {
        if stop.load(Ordering::Acquire) {
            return;
        }
        match conn {
            Ok(stream) => {
                if let Err(err) = answer(stream, render) {
                    log::debug!("metrics: {err}");
                }
            }
            Err(err) => {
                log::debug!("metrics: accept: {err}");
                // Out of descriptors and the like: do not spin.
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn answer(mut stream: TcpStream, render: &Render) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let started = Instant::now();
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > REQUEST_HEAD_BYTES_MAX || started.elapsed() > IO_TIMEOUT {
            return respond(&mut stream, "431 Request Header Fields Too Large", "");
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => respond(&mut stream, "200 OK", &render()),
        ("GET", _) => respond(&mut stream, "404 Not Found", "only /metrics is served\n"),
        _ => respond(
            &mut stream,
            "405 Method Not Allowed",
            "only GET is served\n",
        ),
    }
}

fn respond(stream: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = LatencyHistogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_micros(101));
        h.observe(Duration::from_secs(10));
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.cumulative_counts[0], 2);
        assert_eq!(s.cumulative_counts[1], 3);
        assert_eq!(*s.cumulative_counts.last().unwrap(), 4);
        assert_eq!(s.cumulative_counts[FLUSH_BUCKETS_US.len() - 1], 3);
    }

    #[test]
    fn kind_labels_are_snake_case() {
        assert_eq!(kind_label(ErrorKind::NotLeader), "not_leader");
        assert_eq!(kind_label(ErrorKind::OutcomeUnknown), "outcome_unknown");
        assert_eq!(kind_label(ErrorKind::Io), "io");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
