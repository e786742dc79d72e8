//! Thousands of connections against the leader of a 3-member group running with a
//! `dLegerSecret`: the connection limit refuses the extras, memory and threads stay
//! bounded, and the group keeps committing appends throughout.

mod common;

use common::{free_ports, group_props, init_logging, wait_for};
use rmqraft::net::handshake::{Status, HELLO_FIXED_SIZE_BYTES};
use rmqraft::{Engine, ErrorKind, Group, Role};
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const FLOOD_CONNECTIONS: usize = 2000;
/// `NetLimits::default().inbound_connections_max`, which engines use.
const INBOUND_MAX: usize = 1024;
/// Growth of the resident set allowed while the flood is held open (1024 reader threads
/// waiting on a handshake take a few MiB; an unbounded accept would take far more).
const RSS_GROWTH_BYTES_MAX: u64 = 96 << 20;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    pages * page
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

fn open_cluster(root: &std::path::Path) -> (Vec<u16>, Vec<(Engine, Group)>) {
    let engine_conf = "brokerClusterName=FloodCluster\ndLegerSecret=flood-test-shared-secret\n";
    for _attempt in 0..5 {
        let ports = free_ports(3);
        let opened: rmqraft::Result<Vec<_>> = (0..3)
            .map(|i| {
                let engine = Engine::open(engine_conf)?;
                let group = engine.open_group(&group_props("FloodGroup", &ports, i, root, ""))?;
                Ok((engine, group))
            })
            .collect();
        match opened {
            Ok(members) => return (ports, members),
            Err(e) if e.kind() == ErrorKind::Io => continue,
            Err(e) => panic!("cannot open the cluster: {e}"),
        }
    }
    panic!("no free ports for the cluster");
}

fn leader(members: &[(Engine, Group)]) -> usize {
    wait_for("a leader", || {
        members
            .iter()
            .position(|(_, g)| g.status().map(|s| s.role == Role::Leader).unwrap_or(false))
    })
}

#[test]
fn thousands_of_connections_are_refused_past_the_limit_while_the_group_commits() {
    init_logging();
    let root = tempfile::tempdir().unwrap();
    let (ports, members) = open_cluster(root.path());
    let l = leader(&members);
    let first = members[l]
        .1
        .append(b"before the flood", Duration::from_secs(10))
        .unwrap();
    let target: SocketAddr = format!("127.0.0.1:{}", ports[l]).parse().unwrap();

    let rss_before = rss_bytes();
    let threads_before = threads();
    let started = Instant::now();
    let mut flood = Vec::with_capacity(FLOOD_CONNECTIONS);
    let mut connect_failures = 0;
    for _ in 0..FLOOD_CONNECTIONS {
        match TcpStream::connect_timeout(&target, Duration::from_millis(500)) {
            Ok(s) => flood.push(s),
            Err(_) => connect_failures += 1,
        }
    }
    // Appends go on while every flood connection is held open.
    let mut committed = Vec::new();
    for i in 0..20u32 {
        let body = format!("during the flood {i}");
        let meta = members[l]
            .1
            .append(body.as_bytes(), Duration::from_secs(5))
            .unwrap();
        committed.push(meta.index);
    }
    let rss_during = rss_bytes();
    let threads_during = threads();
    let flood_took = started.elapsed();

    // Each connection is either held (waiting for its hello) or refused with status 5.
    // A moment first, so connections still in the listen backlog are accepted or refused.
    std::thread::sleep(Duration::from_millis(500));
    let mut refused = 0;
    let mut held = 0;
    for s in &mut flood {
        s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
        let mut answer = [0u8; HELLO_FIXED_SIZE_BYTES + 64];
        match s.read(&mut answer) {
            Ok(n) if n >= HELLO_FIXED_SIZE_BYTES => {
                assert_eq!(answer[8], Status::TooManyConnections as u8);
                refused += 1;
            }
            Ok(_) => refused += 1,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                held += 1
            }
            Err(_) => refused += 1,
        }
    }
    drop(flood);
    eprintln!(
        "flood: {held} held, {refused} refused, {connect_failures} connect failures in {flood_took:?}; \
         rss {} -> {} MiB; threads {threads_before} -> {threads_during}",
        rss_before >> 20,
        rss_during >> 20
    );
    assert!(
        held <= INBOUND_MAX,
        "{held} connections held over a limit of {INBOUND_MAX}"
    );
    assert!(
        refused + connect_failures >= FLOOD_CONNECTIONS - INBOUND_MAX,
        "only {refused} refused"
    );
    assert!(
        threads_during <= threads_before + INBOUND_MAX + 8,
        "threads grew from {threads_before} to {threads_during}"
    );
    let growth = rss_during.saturating_sub(rss_before);
    assert!(
        growth < RSS_GROWTH_BYTES_MAX,
        "resident memory grew by {} MiB",
        growth >> 20
    );
    assert!(
        committed.windows(2).all(|w| w[1] == w[0] + 1),
        "{committed:?}"
    );
    assert!(committed[0] > first.index);

    // Every member has the entries appended during the flood.
    let last = *committed.last().unwrap();
    wait_for("every member to commit the flood's appends", || {
        members
            .iter()
            .all(|(_, g)| g.status().map(|s| s.commit_index >= last).unwrap_or(false))
            .then_some(())
    });
    // And an authenticated client is served once the flood is gone.
    let mut client = wait_for("a client to get a connection slot", || {
        rmqraft::net::Client::connect_with(
            target,
            "FloodCluster",
            Some(&rmqraft::config::Secret::new(
                b"flood-test-shared-secret".to_vec(),
            )),
            Duration::from_secs(2),
        )
        .ok()
    });
    let status = client
        .call(
            rmqraft::net::Frame {
                group: "FloodGroup".into(),
                from: rmqraft::net::CLIENT_PEER,
                to: l as u8,
                request_id: 1,
                message: rmqraft::net::Message::ClientStatus,
            },
            Duration::from_secs(5),
        )
        .unwrap();
    assert!(matches!(status.message, rmqraft::net::Message::ClientResp(ref r) if r.result == 0));
    for (engine, group) in members {
        group.close();
        engine.close();
    }
}
