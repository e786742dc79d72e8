//! `cargo bench --bench failover -- [--trials N]`
//!
//! Measures, over N trials of a fresh 3-member group (each member in its own engine, loopback
//! TCP, default timing keys): the time from opening the members to a leader that accepts an
//! append, and the time from closing that leader to a new leader accepting an append.
//! Prints each trial, then median and max of both.

#[path = "common.rs"]
mod common;
use common::free_ports;
use rmqraft::{Engine, ErrorKind, Group, Role};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(30);

/// Appends on whichever member leads until one accepts; returns its position.
fn append_on_leader(groups: &[Option<(Engine, Group)>], start: Instant) -> Option<usize> {
    while start.elapsed() < DEADLINE {
        for (i, member) in groups.iter().enumerate() {
            let Some((_, group)) = member else { continue };
            if group
                .status()
                .map(|s| s.role == Role::Leader)
                .unwrap_or(false)
            {
                match group.append(b"probe", Duration::from_secs(2)) {
                    Ok(_) => return Some(i),
                    Err(e) if matches!(e.kind(), ErrorKind::NotLeader | ErrorKind::Timeout) => {}
                    Err(e) => panic!("append: {e}"),
                }
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

fn stats(name: &str, mut v: Vec<f64>) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    println!(
        "{name}: median {median:.0} ms, min {:.0} ms, max {:.0} ms over {} trials",
        v[0],
        v[v.len() - 1],
        v.len()
    );
}

fn main() {
    let mut trials = 10usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--bench" => {}
            "--trials" => {
                trials = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(10)
                    .clamp(1, 1000)
            }
            other => {
                eprintln!("usage: failover [--trials N] (unknown '{other}')");
                std::process::exit(2);
            }
        }
    }
    let mut elections = Vec::new();
    let mut failovers = Vec::new();
    for trial in 1..=trials {
        let dir = tempfile::tempdir().unwrap();
        let ports = free_ports(3);
        let peers: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("n{i}-127.0.0.1:{p}"))
            .collect();
        let start = Instant::now();
        let mut members: Vec<Option<(Engine, Group)>> = (0..3)
            .map(|i| {
                let engine = Engine::open("").unwrap();
                let props = format!(
                    "dLegerGroup=Failover\ndLegerPeers={}\ndLegerSelfId=n{i}\nstorePathRootDir={}\nmappedFileSizeCommitLog=4194304\n",
                    peers.join(";"),
                    dir.path().display()
                );
                let group = engine.open_group(&props).unwrap();
                Some((engine, group))
            })
            .collect();
        let leader = append_on_leader(&members, start).expect("a first leader");
        let elected_ms = start.elapsed().as_secs_f64() * 1000.0;
        if let Some((engine, group)) = members[leader].take() {
            let closing = Instant::now();
            group.close();
            engine.close();
            let new_leader = append_on_leader(&members, closing).expect("a new leader");
            let failover_ms = closing.elapsed().as_secs_f64() * 1000.0;
            println!("trial {trial}: first leader n{leader} accepted an append after {elected_ms:.0} ms; n{new_leader} after closing it: {failover_ms:.0} ms");
            failovers.push(failover_ms);
        }
        elections.push(elected_ms);
    }
    stats("election after start", elections);
    stats(
        "failover (leader closed -> new leader accepts an append)",
        failovers,
    );
}
