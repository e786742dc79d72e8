//! The broker side's registration against this crate's name server: brokers appear in
//! routes, a role change swaps brokerId 0 at once, periodic registration keeps them alive,
//! and they leave when removed, stopped or disconnected.

mod common;

use common::wait_for;
use rmqraft::remoting::client::Client;
use rmqraft::remoting::codec::RemotingCommand;
use rmqraft::remoting::codes::{request as rq, response as rs};
use rmqraft::remoting::json::Value;
use rmqraft::remoting::namesrv::{NameServer, NameServerConfig};
use rmqraft::remoting::register::follower_broker_id;
use rmqraft::remoting::{BrokerRegistration, Registrar, RegistrarConfig, TopicRoute};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);

fn namesrv(expiry: Duration) -> NameServer {
    common::init_logging();
    let mut c = NameServerConfig::new("127.0.0.1:0".parse().unwrap());
    c.broker_expiry = expiry;
    c.scan_interval = Duration::from_millis(50);
    NameServer::start_with(c).unwrap()
}

fn member(addr: &str, broker_id: i64) -> BrokerRegistration {
    BrokerRegistration {
        cluster_name: "RaftCluster".into(),
        broker_addr: addr.into(),
        broker_id,
        ha_server_addr: addr.into(),
        topics: vec![TopicRoute::new("TopicTest", 4)],
    }
}

/// brokerId -> addr of `group` in TopicTest's route, or None without a route.
fn route_addrs(ns: &NameServer, group: &str) -> Option<Vec<(String, String)>> {
    let mut c = Client::connect(&ns.local_addr().to_string(), T).unwrap();
    let resp = c
        .invoke(
            RemotingCommand::request(rq::GET_ROUTEINFO_BY_TOPIC, 0)
                .with_field("topic", "TopicTest"),
            T,
        )
        .unwrap();
    if resp.code != rs::SUCCESS {
        return None;
    }
    let v: Value = serde_json::from_slice(&resp.body).unwrap();
    let b = v["brokerDatas"]
        .as_array()?
        .iter()
        .find(|b| b["brokerName"] == group)?;
    Some(
        b["brokerAddrs"]
            .as_object()?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect(),
    )
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// Waits for the route within `limit`, far below the 30 s period: proves "at once".
fn wait_route(ns: &NameServer, group: &str, want: &[(&str, &str)], limit: Duration) {
    let start = Instant::now();
    let want = pairs(want);
    loop {
        let got = route_addrs(ns, group);
        if got.as_ref() == Some(&want) {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "route of {group}: {got:?}, want {want:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn registers_with_every_name_server_and_swaps_the_master_at_once() {
    let ns1 = namesrv(Duration::from_secs(120));
    let ns2 = namesrv(Duration::from_secs(120));
    let namesrv_addr = format!("{};{}", ns1.local_addr(), ns2.local_addr());
    // Two engines, one registrar each.
    let ra = Registrar::start(RegistrarConfig::new(namesrv_addr.clone())).unwrap();
    let rb = Registrar::start(RegistrarConfig::new(namesrv_addr)).unwrap();
    let (a, b) = ("127.0.0.1:30911", "127.0.0.1:30921");
    ra.update("RaftNode00", member(a, 0));
    rb.update("RaftNode00", member(b, follower_broker_id("n1").unwrap()));
    for ns in [&ns1, &ns2] {
        wait_route(
            ns,
            "RaftNode00",
            &[("0", a), ("2", b)],
            Duration::from_secs(5),
        );
    }
    // b leads: it registers as 0 at once and displaces a; a re-registers as a follower.
    rb.update("RaftNode00", member(b, 0));
    for ns in [&ns1, &ns2] {
        wait_route(ns, "RaftNode00", &[("0", b)], Duration::from_secs(5));
    }
    ra.update("RaftNode00", member(a, follower_broker_id("n0").unwrap()));
    for ns in [&ns1, &ns2] {
        wait_route(
            ns,
            "RaftNode00",
            &[("0", b), ("1", a)],
            Duration::from_secs(5),
        );
    }
    // Removing a broker unregisters it at once.
    ra.remove("RaftNode00");
    for ns in [&ns1, &ns2] {
        wait_route(ns, "RaftNode00", &[("0", b)], Duration::from_secs(5));
    }
}

#[test]
fn periodic_registration_keeps_a_broker_alive_and_stop_unregisters() {
    let ns = namesrv(Duration::from_millis(500));
    let mut config = RegistrarConfig::new(ns.local_addr().to_string());
    config.period = Duration::from_millis(100);
    let mut r = Registrar::start(config).unwrap();
    r.update("g1", member("127.0.0.1:1001", 0));
    wait_route(
        &ns,
        "g1",
        &[("0", "127.0.0.1:1001")],
        Duration::from_secs(5),
    );
    // 12 periods span more than twice the expiry: only re-registration keeps it.
    let start = r.registrations();
    wait_for("12 periodic registrations", || {
        (r.registrations() >= start + 12).then_some(())
    });
    assert_eq!(ns.brokers().len(), 1, "{:?}", ns.brokers());
    r.stop();
    assert!(
        ns.brokers().is_empty(),
        "stop unregisters: {:?}",
        ns.brokers()
    );
}

/// A relay between the registrar and the name server that the test can cut, as a crash
/// of the broker's host or a network failure would.
struct Relay {
    addr: std::net::SocketAddr,
    sockets: std::sync::Arc<std::sync::Mutex<Vec<TcpStream>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Relay {
    fn start(to: std::net::SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let sockets: std::sync::Arc<std::sync::Mutex<Vec<TcpStream>>> = Default::default();
        let s = sockets.clone();
        // One connection is relayed; the listener closes after it.
        let acceptor = std::thread::spawn(move || {
            let (inbound, _) = listener.accept().unwrap();
            let outbound = TcpStream::connect(to).unwrap();
            s.lock()
                .unwrap()
                .extend([inbound.try_clone().unwrap(), outbound.try_clone().unwrap()]);
            let (mut i2, mut o2) = (inbound.try_clone().unwrap(), outbound.try_clone().unwrap());
            let up = std::thread::spawn(move || {
                let _ = std::io::copy(&mut i2, &mut o2);
                let _ = o2.shutdown(Shutdown::Both);
            });
            let (mut o3, mut i3) = (outbound, inbound);
            let _ = std::io::copy(&mut o3, &mut i3);
            let _ = i3.shutdown(Shutdown::Both);
            up.join().unwrap();
        });
        Relay {
            addr,
            sockets,
            threads: vec![acceptor],
        }
    }

    fn cut(&mut self) {
        for s in self.sockets.lock().unwrap().iter() {
            let _ = s.shutdown(Shutdown::Both);
        }
        for t in self.threads.drain(..) {
            t.join().unwrap();
        }
    }
}

#[test]
fn a_closed_registration_connection_drops_its_brokers() {
    let ns = namesrv(Duration::from_secs(120));
    let mut relay = Relay::start(ns.local_addr());
    let r = Registrar::start(RegistrarConfig::new(relay.addr.to_string())).unwrap();
    r.update("g1", member("127.0.0.1:1001", 0));
    r.update("g2", member("127.0.0.1:1002", 0));
    wait_route(
        &ns,
        "g1",
        &[("0", "127.0.0.1:1001")],
        Duration::from_secs(5),
    );
    wait_route(
        &ns,
        "g2",
        &[("0", "127.0.0.1:1002")],
        Duration::from_secs(5),
    );
    relay.cut();
    wait_for("both brokers of the closed connection drop", || {
        ns.brokers().is_empty().then_some(())
    });
    assert_eq!(route_addrs(&ns, "g1"), None);
    drop(r);
}

#[test]
fn a_dead_name_server_does_not_stop_registration_with_the_others() {
    let ns = namesrv(Duration::from_secs(120));
    let dead = common::free_ports(1)[0];
    let mut r = Registrar::start(RegistrarConfig::new(format!(
        "127.0.0.1:{dead};{}",
        ns.local_addr()
    )))
    .unwrap();
    for g in 0..20 {
        r.update(
            &format!("g{g}"),
            member(&format!("127.0.0.1:{}", 1000 + g), 0),
        );
    }
    wait_for("20 brokers", || (ns.brokers().len() == 20).then_some(()));
    let started = Instant::now();
    r.stop();
    assert!(
        ns.brokers().is_empty(),
        "stop unregistered from the live one"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}
