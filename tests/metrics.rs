//! `GET /metrics` on a running 3-member group: every line of the exposition parses, TYPE
//! comes before a family's samples, labels are right, and counters rise after appends.

mod common;

use common::{free_ports, group_props, init_logging, wait_for, DEADLINE};
use rmqraft::{Engine, ErrorKind, Group, Role};
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

struct Member {
    engine: Engine,
    group: Group,
}

fn start(root: &std::path::Path) -> Vec<Member> {
    for attempt in 0..5 {
        let raft = free_ports(3);
        let metrics = free_ports(3);
        let opened: rmqraft::Result<Vec<Member>> = (0..3)
            .map(|i| {
                let engine = Engine::open(&format!(
                    "brokerClusterName=TestCluster\nrmqraftMetricsHost=127.0.0.1\n\
                     rmqraftMetricsPort={}\n",
                    metrics[i]
                ))?;
                let group = engine.open_group(&group_props("M0", &raft, i, root, ""))?;
                Ok(Member { engine, group })
            })
            .collect();
        match opened {
            Ok(members) => return members,
            Err(e) if attempt < 4 && e.kind() == ErrorKind::Io => continue,
            Err(e) => panic!("cannot start the group: {e}"),
        }
    }
    unreachable!()
}

/// (status line, body) of one GET.
fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read the answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head and a body");
    let status = head.lines().next().unwrap_or("").to_string();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("Content-Length")
        .parse()
        .unwrap();
    assert_eq!(length, body.len(), "Content-Length matches the body");
    (status, body.to_string())
}

#[derive(Debug)]
struct Sample {
    name: String,
    labels: HashMap<String, String>,
    value: f64,
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `k="v",k2="v2"` with `\\`, `\"` and `\n` escapes.
fn parse_labels(text: &str, line: &str) -> HashMap<String, String> {
    let mut labels = HashMap::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("label without =\" in {line:?}"));
        assert!(valid_name(key), "label name {key:?} in {line:?}");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    other => panic!("bad escape {other:?} in {line:?}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value in {line:?}"),
            }
        };
        assert!(
            labels.insert(key.to_string(), value).is_none(),
            "label {key} twice in {line:?}"
        );
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    labels
}

/// Parses the whole exposition, asserting the text format's rules; returns the samples.
fn parse(text: &str) -> Vec<Sample> {
    assert!(text.ends_with('\n'), "the exposition ends with a newline");
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helped: HashSet<String> = HashSet::new();
    let mut with_samples: HashSet<String> = HashSet::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        assert!(!line.is_empty(), "no empty lines");
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP name text");
            assert!(valid_name(name) && !help.is_empty(), "{line:?}");
            assert!(helped.insert(name.to_string()), "HELP twice for {name}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(valid_name(name), "{line:?}");
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "type {kind:?}"
            );
            assert!(
                !with_samples.contains(name),
                "TYPE of {name} after its samples"
            );
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "TYPE twice for {name}"
            );
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counter {name} ends in _total");
            }
            if kind == "histogram" {
                assert!(name.ends_with("_seconds"), "histogram {name} in seconds");
            }
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment {line:?}");
        let (series, value) = line.rsplit_once(' ').expect("name and value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("value {v:?} in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let inner = rest.strip_suffix('}').expect("labels end with }");
                (name, parse_labels(inner, line))
            }
            None => (series, HashMap::new()),
        };
        assert!(valid_name(name), "sample name {name:?}");
        assert!(name.starts_with("rmqraft_"), "{name} is rmqraft_...");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| types.get(*base).is_some_and(|k| k == "histogram"))
            })
            .unwrap_or(name);
        let kind = types
            .get(family)
            .unwrap_or_else(|| panic!("sample {name} before (or without) its TYPE"));
        assert!(helped.contains(family), "{family} has HELP");
        if kind == "histogram" && name.ends_with("_bucket") {
            assert!(labels.contains_key("le"), "bucket with le: {line:?}");
        }
        if family.starts_with("rmqraft_group_") || family.starts_with("rmqraft_broker_") {
            assert_eq!(
                labels.get("group").map(String::as_str),
                Some("M0"),
                "{line:?}"
            );
            assert!(labels.contains_key("self_id"), "{line:?}");
        }
        if kind == "counter" {
            assert!(value >= 0.0, "{line:?}");
        }
        with_samples.insert(family.to_string());
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    samples
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

fn leader_of(members: &[Member]) -> usize {
    wait_for("a leader known to every member", || {
        let statuses: Vec<_> = members
            .iter()
            .map(|m| m.group.status().ok())
            .collect::<Option<_>>()?;
        let leaders: Vec<_> = statuses.iter().filter(|s| s.role == Role::Leader).collect();
        (leaders.len() == 1
            && statuses
                .iter()
                .all(|s| s.leader_peer == leaders[0].self_peer && s.term == leaders[0].term))
        .then(|| leaders[0].self_peer as usize)
    })
}

fn append_n(group: &Group, from: u64, n: u64) {
    for i in from..from + n {
        group
            .append(&common::body(i, 64), DEADLINE)
            .unwrap_or_else(|e| panic!("append {i}: {e}"));
    }
}

#[test]
fn metrics_endpoint_of_a_running_group_parses_and_counts() {
    init_logging();
    let root = tempfile::tempdir().unwrap();
    let members = start(root.path());
    let leader = leader_of(&members);
    let lead = &members[leader];
    append_n(&lead.group, 0, 20);
    let addrs: Vec<SocketAddr> = members
        .iter()
        .map(|m| m.engine.metrics_addr().expect("metrics are served"))
        .collect();

    let scrape = |i: usize| {
        let (status, body) = get(addrs[i], "/metrics");
        assert_eq!(status, "HTTP/1.1 200 OK", "member {i}");
        parse(&body)
    };
    let before: Vec<Vec<Sample>> = (0..3).map(scrape).collect();
    for (i, samples) in before.iter().enumerate() {
        let me = format!("n{i}");
        let id = [("self_id", me.as_str())];
        let role = if i == leader { "leader" } else { "follower" };
        let is_role = |r: &str| {
            value(
                samples,
                "rmqraft_group_role",
                &[("self_id", &me), ("role", r)],
            )
        };
        // A follower may briefly show no leader (candidate) only before one is known:
        // every member knows the leader here.
        assert_eq!(is_role(role), Some(1.0), "member {i} is {role}");
        assert_eq!(is_role("candidate"), Some(0.0), "member {i}");
        for name in [
            "rmqraft_group_term",
            "rmqraft_group_commit_index",
            "rmqraft_group_last_index",
            "rmqraft_group_applied_index",
            "rmqraft_group_disk_bytes",
            "rmqraft_group_appends_total",
            "rmqraft_group_flush_rounds_total",
            "rmqraft_group_elections_total",
            "rmqraft_group_flush_duration_seconds_count",
            "rmqraft_engine_threads",
            "rmqraft_engine_connections",
        ] {
            let labels: &[(&str, &str)] = if name.starts_with("rmqraft_group_") {
                &id
            } else {
                &[]
            };
            assert!(
                value(samples, name, labels).is_some(),
                "member {i} shows {name}"
            );
        }
        assert!(value(samples, "rmqraft_group_last_index", &id).unwrap() >= 20.0);
        assert!(value(samples, "rmqraft_group_disk_bytes", &id).unwrap() > 0.0);
        assert!(value(samples, "rmqraft_engine_threads", &[]).unwrap() >= 3.0);
        assert!(
            value(
                samples,
                "rmqraft_group_flush_duration_seconds_bucket",
                &[("self_id", &me), ("le", "+Inf")]
            )
            .unwrap()
                >= 1.0,
            "member {i} flushed"
        );
    }
    // The leader shows one commit lag per follower, labelled with the follower's id.
    let peers: HashSet<String> = before[leader]
        .iter()
        .filter(|s| s.name == "rmqraft_group_follower_commit_lag_entries")
        .map(|s| s.labels["peer"].clone())
        .collect();
    let expected: HashSet<String> = (0..3)
        .filter(|i| *i != leader)
        .map(|i| format!("n{i}"))
        .collect();
    assert_eq!(peers, expected);
    for i in (0..3).filter(|i| *i != leader) {
        assert!(!before[i]
            .iter()
            .any(|s| s.name == "rmqraft_group_follower_commit_lag_entries"));
    }

    // Counters rise after appends.
    let me = format!("n{leader}");
    let id = [("self_id", me.as_str())];
    let appends_before = value(&before[leader], "rmqraft_group_appends_total", &id).unwrap();
    let rounds_before = value(&before[leader], "rmqraft_group_flush_rounds_total", &id).unwrap();
    assert!(appends_before >= 20.0, "appends_total {appends_before}");
    append_n(&lead.group, 20, 10);
    let after = scrape(leader);
    let appends_after = value(&after, "rmqraft_group_appends_total", &id).unwrap();
    assert!(
        appends_after >= appends_before + 10.0,
        "appends_total {appends_before} -> {appends_after}"
    );
    assert!(value(&after, "rmqraft_group_flush_rounds_total", &id).unwrap() > rounds_before);
    let commit = value(&after, "rmqraft_group_commit_index", &id).unwrap();
    assert!(commit >= 30.0, "commit index {commit}");

    // The Rust API shows the same numbers.
    let snapshot = lead.engine.metrics();
    assert_eq!(snapshot.engine.groups, 1);
    let g = &snapshot.groups[0];
    assert_eq!((g.group.as_str(), g.self_id.as_str()), ("M0", me.as_str()));
    assert_eq!(g.role, Role::Leader);
    assert!(g.appends_total as f64 >= appends_after);
    assert_eq!(g.followers.len(), 2);
    // An append on a follower is refused and counted by kind.
    let follower = (leader + 1) % 3;
    let refused = members[follower].group.append(b"x", Duration::from_secs(1));
    assert_eq!(refused.unwrap_err().kind(), ErrorKind::NotLeader);
    let (status, body) = get(addrs[follower], "/metrics");
    assert!(status.ends_with("200 OK"));
    let samples = parse(&body);
    let f = format!("n{follower}");
    assert_eq!(
        value(
            &samples,
            "rmqraft_group_append_errors_total",
            &[("self_id", &f), ("kind", "not_leader")]
        ),
        Some(1.0)
    );

    // Other paths and methods are answered, not dropped.
    assert!(get(addrs[0], "/other").0.contains("404"));

    // Closing the engine stops and joins the server: its port refuses connections.
    for m in members {
        m.group.close();
        m.engine.close();
    }
    let deadline = Instant::now() + DEADLINE;
    for addr in addrs {
        while TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
            assert!(Instant::now() < deadline, "{addr} still serves after close");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn metrics_port_keys_are_checked() {
    let err = Engine::open("rmqraftMetricsPort=70000")
        .err()
        .expect("refused");
    assert!(err.message().contains("rmqraftMetricsPort"), "{err}");
    let err = Engine::open("rmqraftMetricsHost=nowhere")
        .err()
        .expect("refused");
    assert!(err.message().contains("rmqraftMetricsHost"), "{err}");
    let engine = Engine::open("").unwrap();
    assert_eq!(engine.metrics_addr(), None, "off by default");
    assert_eq!(engine.metrics().engine.groups, 0);
}
