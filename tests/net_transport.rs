//! The TCP transport on loopback: routing, client calls, refusals, reconnects, close.

use bytes::Bytes;
use crossbeam_channel::{unbounded, Receiver};
use rmqraft::net::frame::{encode, FRAME_MAGIC, FRAME_VERSION, HEADER_SIZE_BYTES};
use rmqraft::net::handshake::{self, ConnKind, Hello, Status};
use rmqraft::net::{
    Client, ClientResponse, Frame, Handler, Message, NetLimits, Responder, Transport, VoteRequest,
    CLIENT_PEER,
};
use rmqraft::{Entry, EntryKind, EntryMeta, ErrorKind};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CLUSTER: &str = "DefaultCluster";
const FRAME_MAX: u32 = 1 << 20;
const WAIT: Duration = Duration::from_secs(10);

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A handler that forwards what it gets (and whether a responder came along).
fn collecting() -> (Handler, Receiver<(Frame, bool)>) {
    let (tx, rx) = unbounded();
    let handler: Handler = Arc::new(move |frame, responder: Option<Responder>| {
        let _ = tx.send((frame, responder.is_some()));
    });
    (handler, rx)
}

/// A handler that answers every client request with its payload echoed back.
fn echoing() -> Handler {
    Arc::new(|frame: Frame, responder: Option<Responder>| {
        let Some(r) = responder else { return };
        let data = match frame.message {
            Message::ClientAppend { data } => data,
            _ => Bytes::new(),
        };
        r.respond(Frame {
            group: frame.group,
            from: frame.to,
            to: frame.from,
            request_id: frame.request_id,
            message: Message::ClientResp(ClientResponse {
                result: 0,
                message: "ok".into(),
                leader_peer: frame.to as i32,
                meta: EntryMeta {
                    index: 7,
                    term: 1,
                    pos: 0,
                },
                data,
                status: None,
            }),
        });
    })
}

fn vote(group: &str, from: u8, to: u8, term: u64) -> Frame {
    Frame {
        group: group.into(),
        from,
        to,
        request_id: term,
        message: Message::Vote(VoteRequest {
            term,
            last_index: 0,
            last_term: 0,
            pre_vote: false,
            transfer: false,
        }),
    }
}

fn append_request(group: &str, to: u8, request_id: u64, data: &'static [u8]) -> Frame {
    Frame {
        group: group.into(),
        from: CLIENT_PEER,
        to,
        request_id,
        message: Message::ClientAppend {
            data: Bytes::from_static(data),
        },
    }
}

/// Connects raw TCP and completes a handshake as `kind`.
fn raw_connect(addr: SocketAddr, kind: ConnKind) -> TcpStream {
    let mut s = TcpStream::connect_timeout(&addr, WAIT).unwrap();
    handshake::connect(&mut s, kind, CLUSTER, 99, Instant::now() + WAIT).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

/// True if the server closed the connection (EOF or reset) before the deadline.
fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn two_transports_route_two_groups_over_one_port() {
    let a = Transport::new(CLUSTER, FRAME_MAX);
    let b = Transport::new(CLUSTER, FRAME_MAX);
    let a_addr = a.bind(loopback()).unwrap();
    let b_addr = b.bind(loopback()).unwrap();
    let (b_g1, b_g1_rx) = collecting();
    let (b_g2, b_g2_rx) = collecting();
    let (a_g1, a_g1_rx) = collecting();
    b.register("g1", 1, b_g1).unwrap();
    b.register("g2", 1, b_g2).unwrap();
    a.register("g1", 0, a_g1).unwrap();
    assert_eq!(
        b.register("g1", 1, collecting().0).unwrap_err().kind(),
        ErrorKind::Exists
    );

    for term in 1..=50 {
        assert!(a.send(b_addr, vote("g1", 0, 1, term)));
        assert!(a.send(b_addr, vote("g2", 0, 1, 1000 + term)));
    }
    // Not registered on B: dropped there without harm.
    assert!(a.send(b_addr, vote("g3", 0, 1, 1)));
    for term in 1..=50 {
        let (f, with_responder) = b_g1_rx.recv_timeout(WAIT).unwrap();
        assert_eq!(
            (f.group.as_str(), f.request_id, with_responder),
            ("g1", term, false)
        );
        let (f, _) = b_g2_rx.recv_timeout(WAIT).unwrap();
        assert_eq!((f.group.as_str(), f.request_id), ("g2", 1000 + term));
    }
    // And back the other way.
    assert!(b.send(a_addr, vote("g1", 1, 0, 5)));
    let (f, _) = a_g1_rx.recv_timeout(WAIT).unwrap();
    assert_eq!((f.from, f.to, f.request_id), (1, 0, 5));

    // A frame over the limit is refused by `send`, not sent to kill the connection.
    let big = Frame {
        group: "g1".into(),
        from: 0,
        to: 1,
        request_id: 1,
        message: Message::ClientAppend {
            data: Bytes::from(vec![0u8; FRAME_MAX as usize]),
        },
    };
    assert!(!a.send(b_addr, big));
    assert!(a.send(b_addr, vote("g1", 0, 1, 77)));
    assert_eq!(b_g1_rx.recv_timeout(WAIT).unwrap().0.request_id, 77);
    a.close();
    b.close();
}

#[test]
fn push_batches_arrive_intact() {
    let a = Transport::new(CLUSTER, FRAME_MAX);
    let b = Transport::new(CLUSTER, FRAME_MAX);
    let b_addr = b.bind(loopback()).unwrap();
    let (h, rx) = collecting();
    b.register("g", 2, h).unwrap();
    let entries: Vec<Entry> = (1..=20)
        .map(|i| Entry {
            index: i,
            term: 3,
            kind: EntryKind::Normal,
            body: Bytes::from(vec![i as u8; 1024]),
        })
        .collect();
    let frame = Frame {
        group: "g".into(),
        from: 0,
        to: 2,
        request_id: 9,
        message: Message::Push(rmqraft::net::PushRequest {
            term: 3,
            prev_index: 0,
            prev_term: 0,
            commit_index: 0,
            entries,
        }),
    };
    assert!(a.send(b_addr, frame.clone()));
    assert_eq!(rx.recv_timeout(WAIT).unwrap().0, frame);
}

#[test]
fn client_call_is_answered_through_the_responder() {
    let server = Transport::new(CLUSTER, FRAME_MAX);
    let addr = server.bind(loopback()).unwrap();
    server.register("g", 0, echoing()).unwrap();
    let mut client = Client::connect(addr, CLUSTER, WAIT).unwrap();
    for id in 1..=20u64 {
        let answer = client
            .call(append_request("g", 0, id, b"payload"), WAIT)
            .unwrap();
        assert_eq!(answer.request_id, id);
        let Message::ClientResp(r) = answer.message else {
            panic!("not a response")
        };
        assert_eq!((r.result, &r.data[..]), (0, &b"payload"[..]));
    }
    // Unknown member: answered with NOT_FOUND instead of left to time out.
    let answer = client
        .call(append_request("g", 5, 100, b"x"), WAIT)
        .unwrap();
    let Message::ClientResp(r) = answer.message else {
        panic!("not a response")
    };
    assert_eq!(r.result, ErrorKind::NotFound.code());
    server.close();
}

#[test]
fn client_call_times_out_when_nobody_answers() {
    let server = Transport::new(CLUSTER, FRAME_MAX);
    let addr = server.bind(loopback()).unwrap();
    let (silent, rx) = collecting();
    server.register("g", 0, silent).unwrap();
    let mut client = Client::connect(addr, CLUSTER, WAIT).unwrap();
    let err = client
        .call(append_request("g", 0, 1, b"x"), Duration::from_millis(200))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(
        rx.recv_timeout(WAIT).unwrap().1,
        "client frames come with a responder"
    );
}

#[test]
fn wrong_cluster_is_refused() {
    let server = Transport::new(CLUSTER, FRAME_MAX);
    let addr = server.bind(loopback()).unwrap();
    let err = match Client::connect(addr, "OtherCluster", WAIT) {
        Ok(_) => panic!("a client of another cluster was accepted"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(err.message().contains("cluster"), "{err}");

    // A peer of another cluster gets the refusal status, then the connection closes.
    let mut s = TcpStream::connect_timeout(&addr, WAIT).unwrap();
    s.write_all(&Hello::new(ConnKind::Peer, 1, "OtherCluster").encode())
        .unwrap();
    let answer = handshake::read_hello(&mut s, Instant::now() + WAIT).unwrap();
    assert_eq!(answer.status, Status::WrongCluster);
    s.set_read_timeout(Some(WAIT)).unwrap();
    assert!(closed_by_server(&mut s));

    // Garbage instead of a hello: closed.
    let mut s = TcpStream::connect_timeout(&addr, WAIT).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    assert!(closed_by_server(&mut s));
}

#[test]
fn slow_handshake_is_cut_off() {
    let limits = NetLimits {
        handshake_timeout_ms: 200,
        ..NetLimits::default()
    };
    let server = Transport::with_limits(CLUSTER, FRAME_MAX, limits);
    let addr = server.bind(loopback()).unwrap();
    let mut s = TcpStream::connect_timeout(&addr, WAIT).unwrap();
    s.write_all(&Hello::new(ConnKind::Client, 1, CLUSTER).encode()[..3])
        .unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let started = Instant::now();
    assert!(closed_by_server(&mut s));
    assert!(started.elapsed() < WAIT);
}

#[test]
fn oversized_frame_is_refused_from_its_header() {
    let server = Transport::new(CLUSTER, 4096);
    let addr = server.bind(loopback()).unwrap();
    server.register("g", 0, echoing()).unwrap();
    let mut s = raw_connect(addr, ConnKind::Client);
    let mut header = Vec::with_capacity(HEADER_SIZE_BYTES);
    header.extend_from_slice(&FRAME_MAGIC.to_le_bytes());
    header.push(FRAME_VERSION);
    header.push(16); // client append
    header.extend_from_slice(&0u16.to_le_bytes());
    header.extend_from_slice(&100_000u32.to_le_bytes());
    header.extend_from_slice(&1u64.to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    s.write_all(&header).unwrap();
    // The body is never sent: the server must close on the header alone.
    assert!(closed_by_server(&mut s));
}

#[test]
fn corrupt_frame_closes_only_its_connection() {
    let server = Transport::new(CLUSTER, FRAME_MAX);
    let addr = server.bind(loopback()).unwrap();
    server.register("g", 0, echoing()).unwrap();
    let mut good = Client::connect(addr, CLUSTER, WAIT).unwrap();
    assert!(good.call(append_request("g", 0, 1, b"a"), WAIT).is_ok());

    let mut bad = raw_connect(addr, ConnKind::Client);
    let mut bytes = Vec::new();
    encode(&append_request("g", 0, 2, b"hello"), &mut bytes).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff; // breaks the CRC
    bad.write_all(&bytes).unwrap();
    assert!(closed_by_server(&mut bad));

    let answer = good
        .call(append_request("g", 0, 3, b"still here"), WAIT)
        .unwrap();
    let Message::ClientResp(r) = answer.message else {
        panic!("not a response")
    };
    assert_eq!(&r.data[..], b"still here");
}

#[test]
fn link_reconnects_after_the_remote_restarts() {
    let a = Transport::new(CLUSTER, FRAME_MAX);
    let b = Transport::new(CLUSTER, FRAME_MAX);
    let b_addr = b.bind(loopback()).unwrap();
    let (h, rx) = collecting();
    b.register("g", 1, h).unwrap();
    assert!(a.send(b_addr, vote("g", 0, 1, 1)));
    assert_eq!(rx.recv_timeout(WAIT).unwrap().0.request_id, 1);
    b.close();

    // Reopen on the same port; if someone took it meanwhile, use a fresh one.
    let b2 = Transport::new(CLUSTER, FRAME_MAX);
    let target = match b2.bind(b_addr) {
        Ok(addr) => addr,
        Err(_) => b2.bind(loopback()).unwrap(),
    };
    let (h, rx) = collecting();
    b2.register("g", 1, h).unwrap();
    // Frames sent while the link is down are dropped; keep sending until one arrives.
    let deadline = Instant::now() + WAIT;
    let mut term = 100;
    let got = loop {
        assert!(
            Instant::now() < deadline,
            "no frame reached the restarted transport"
        );
        term += 1;
        a.send(target, vote("g", 0, 1, term));
        if let Ok((f, _)) = rx.recv_timeout(Duration::from_millis(20)) {
            break f;
        }
    };
    assert!(got.request_id > 100);
    a.close();
    b2.close();
}

#[test]
fn close_joins_threads_and_frees_the_port() {
    let a = Transport::new(CLUSTER, FRAME_MAX);
    let server = Transport::new(CLUSTER, FRAME_MAX);
    let addr = server.bind(loopback()).unwrap();
    // The same address again is a no-op.
    assert_eq!(server.bind(addr).unwrap(), addr);
    server.listen(addr).unwrap();
    assert_eq!(server.local_addrs(), vec![addr]);
    let (h, rx) = collecting();
    server.register("g", 0, h).unwrap();
    let _client = Client::connect(addr, CLUSTER, WAIT).unwrap();
    assert!(a.send(addr, vote("g", 1, 0, 1)));
    rx.recv_timeout(WAIT).unwrap();

    server.close();
    let names = thread_names();
    let port = addr.port();
    assert!(
        !names.iter().any(|n| n == &format!("rqnet-acc-{port}")),
        "acceptor still running: {names:?}"
    );
    assert_eq!(server.listen(addr).unwrap_err().kind(), ErrorKind::Closed);
    assert!(!server.send(addr, vote("g", 1, 0, 2)));
    // The port is free again.
    TcpListener::bind(addr).expect("port still bound after close");
    a.close();
}

#[test]
fn listen_on_a_taken_port_names_the_address() {
    let holder = TcpListener::bind(loopback()).unwrap();
    let addr = holder.local_addr().unwrap();
    let t = Transport::new(CLUSTER, FRAME_MAX);
    let err = t.listen(addr).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(
        err.message().starts_with(&format!("listen {addr}:")),
        "{err}"
    );
}

#[test]
fn connections_over_the_limit_are_refused() {
    let limits = NetLimits {
        inbound_connections_max: 2,
        ..NetLimits::default()
    };
    let server = Transport::with_limits(CLUSTER, FRAME_MAX, limits);
    let addr = server.bind(loopback()).unwrap();
    let _c1 = Client::connect(addr, CLUSTER, WAIT).unwrap();
    let _c2 = Client::connect(addr, CLUSTER, WAIT).unwrap();
    let err = match Client::connect(addr, CLUSTER, WAIT) {
        Ok(_) => panic!("third connection accepted over a limit of 2"),
        Err(e) => e,
    };
    // The refusal says why, unless the close raced ahead of it (then a plain reset).
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    assert!(
        err.message().contains("too many connections") || err.message().contains("reset"),
        "{err}"
    );
    drop(_c1);
    // Once a connection ends its slot is reused (the reader notices EOF first).
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(
            Instant::now() < deadline,
            "slot of a closed connection never freed"
        );
        if Client::connect(addr, CLUSTER, WAIT).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn thread_names() -> Vec<String> {
    let mut names = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for task in dir.flatten() {
            if let Ok(name) = std::fs::read_to_string(task.path().join("comm")) {
                names.push(name.trim().to_owned());
            }
        }
    }
    names
}

#[test]
fn responder_answers_from_another_thread() {
    let server = Transport::new(CLUSTER, FRAME_MAX);
    let addr = server.bind(loopback()).unwrap();
    let (tx, rx) = unbounded::<(Frame, Responder)>();
    let deferred: Handler = Arc::new(move |frame, responder: Option<Responder>| {
        let _ = tx.send((frame, responder.expect("client frames carry a responder")));
    });
    server.register("g", 0, deferred).unwrap();
    let worker = std::thread::spawn(move || {
        // Answer two requests in reverse order of arrival.
        let first = rx.recv_timeout(WAIT).unwrap();
        let second = rx.recv_timeout(WAIT).unwrap();
        for (frame, r) in [second, first] {
            echoing()(frame, Some(r));
        }
    });
    let mut client = Client::connect(addr, CLUSTER, WAIT).unwrap();
    let mut raw = raw_connect(addr, ConnKind::Client);
    let mut two = Vec::new();
    encode(&append_request("g", 0, 1, b"one"), &mut two).unwrap();
    encode(&append_request("g", 0, 2, b"two"), &mut two).unwrap();
    raw.write_all(&two).unwrap();
    // Both answers come back on the raw connection, second first.
    let mut decoder = rmqraft::net::frame::Decoder::new(FRAME_MAX);
    let mut ids = Vec::new();
    let deadline = Instant::now() + WAIT;
    while ids.len() < 2 {
        assert!(Instant::now() < deadline, "answers missing: {ids:?}");
        assert!(
            decoder.read_from(&mut raw).unwrap() > 0,
            "connection closed"
        );
        while let Some(f) = decoder.next_frame().unwrap() {
            ids.push(f.request_id);
        }
    }
    assert_eq!(ids, vec![2, 1]);
    worker.join().unwrap();
    // The other client was untouched.
    drop(client.call(append_request("g", 9, 3, b"x"), WAIT).unwrap());
}

#[test]
fn a_client_connection_may_not_carry_raft_messages() {
    let server = Transport::new(CLUSTER, FRAME_MAX);
    let addr = server.bind(loopback()).unwrap();
    let (handler, got) = collecting();
    server.register("g", 0, handler).unwrap();

    // A vote claiming to come from member 1, sent on a client connection: refused, the
    // connection closed, and the member never sees it.
    let mut forged = raw_connect(addr, ConnKind::Client);
    let mut bytes = Vec::new();
    encode(&vote("g", 1, 0, 9), &mut bytes).unwrap();
    forged.write_all(&bytes).unwrap();
    assert!(closed_by_server(&mut forged));

    // A peer connection carries the same vote, and client requests still work.
    let mut peer = raw_connect(addr, ConnKind::Peer);
    let mut bytes = Vec::new();
    encode(&vote("g", 1, 0, 10), &mut bytes).unwrap();
    peer.write_all(&bytes).unwrap();
    let (frame, via_client) = got.recv_timeout(WAIT).expect("the peer's vote arrives");
    assert!(!via_client);
    assert_eq!(
        frame.request_id, 10,
        "the forged vote (request 9) was dispatched"
    );
    assert!(got.try_recv().is_err());

    // A client request on a peer connection is refused the same way.
    let mut bytes = Vec::new();
    encode(&append_request("g", 0, 11, b"x"), &mut bytes).unwrap();
    peer.write_all(&bytes).unwrap();
    assert!(closed_by_server(&mut peer));
    assert!(got.recv_timeout(Duration::from_millis(200)).is_err());
}
