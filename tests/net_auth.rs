//! Peer and client authentication with `dLegerSecret`, and what an intruder without it can
//! do: wrong or missing secret, a replayed handshake, another cluster, unknown groups, a
//! 4 GiB length field, a byte a second. Loopback only, ports from the OS.

use bytes::Bytes;
use crossbeam_channel::{unbounded, Receiver};
use rmqraft::config::Secret;
use rmqraft::net::frame::{FRAME_MAGIC, FRAME_VERSION, HEADER_SIZE_BYTES};
use rmqraft::net::handshake::{
    self, AuthMessage, ConnKind, Hello, Status, AUTH_MESSAGE_SIZE_BYTES, FLAG_AUTH,
    HELLO_FIXED_SIZE_BYTES,
};
use rmqraft::net::{
    Client, ClientResponse, Frame, Handler, Message, NetLimits, Responder, Transport, VoteRequest,
    CLIENT_PEER,
};
use rmqraft::{EntryMeta, ErrorKind};
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Records the largest single allocation of the process.
struct Watching;

static LARGEST_ALLOC_BYTES: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Watching {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST_ALLOC_BYTES.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST_ALLOC_BYTES.fetch_max(new_size, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Watching = Watching;

const CLUSTER: &str = "AuthCluster";
const FRAME_MAX: u32 = 1 << 20;
const WAIT: Duration = Duration::from_secs(10);
/// How long a frame that must not arrive is waited for.
const QUIET: Duration = Duration::from_millis(700);

fn secret(s: &str) -> Secret {
    Secret::new(s.as_bytes().to_vec())
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn server(secret: Option<Secret>) -> (Transport, SocketAddr) {
    server_with(secret, NetLimits::default(), FRAME_MAX)
}

fn server_with(
    secret: Option<Secret>,
    limits: NetLimits,
    frame_max: u32,
) -> (Transport, SocketAddr) {
    let t = Transport::with_secret(CLUSTER, frame_max, limits, secret);
    let addr = t.bind(loopback()).unwrap();
    (t, addr)
}

fn collecting() -> (Handler, Receiver<Frame>) {
    let (tx, rx) = unbounded();
    let handler: Handler = Arc::new(move |frame, _responder: Option<Responder>| {
        let _ = tx.send(frame);
    });
    (handler, rx)
}

/// Answers every client request with `result` 0, and counts what it got.
fn echoing(count: Arc<AtomicUsize>) -> Handler {
    Arc::new(move |frame: Frame, responder: Option<Responder>| {
        count.fetch_add(1, Ordering::SeqCst);
        let Some(r) = responder else { return };
        r.respond(Frame {
            group: frame.group,
            from: frame.to,
            to: frame.from,
            request_id: frame.request_id,
            message: Message::ClientResp(ClientResponse {
                result: 0,
                message: "ok".into(),
                leader_peer: frame.to as i32,
                meta: EntryMeta::default(),
                data: Bytes::new(),
                status: None,
            }),
        });
    })
}

fn vote(group: &str, term: u64) -> Frame {
    Frame {
        group: group.into(),
        from: 1,
        to: 0,
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

fn append_request(group: &str, request_id: u64) -> Frame {
    Frame {
        group: group.into(),
        from: CLIENT_PEER,
        to: 0,
        request_id,
        message: Message::ClientAppend {
            data: Bytes::from_static(b"payload"),
        },
    }
}

/// Sends votes from `from` to `to` until one arrives (true) or `within` passes (false).
fn peer_frames_arrive(
    from: &Transport,
    to: SocketAddr,
    rx: &Receiver<Frame>,
    within: Duration,
) -> bool {
    let deadline = Instant::now() + within;
    let mut term = 1;
    while Instant::now() < deadline {
        from.send(to, vote("g", term));
        term += 1;
        if rx.recv_timeout(Duration::from_millis(20)).is_ok() {
            return true;
        }
    }
    false
}

fn connect_err(addr: SocketAddr, cluster: &str, secret: Option<&Secret>) -> rmqraft::Error {
    match Client::connect_with(addr, cluster, secret, WAIT) {
        Ok(_) => panic!("connection to {addr} was accepted"),
        Err(e) => e,
    }
}

/// True if the server closed the connection (EOF or reset) before `WAIT`.
fn closed_by_server(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(WAIT)).unwrap();
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
fn equal_secrets_carry_peer_and_client_traffic() {
    let s = "a-shared-secret-of-some-length";
    let (b, b_addr) = server(Some(secret(s)));
    let (handler, rx) = collecting();
    b.register("g", 0, handler).unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    b.register("c", 0, echoing(count.clone())).unwrap();
    let a = Transport::with_secret(CLUSTER, FRAME_MAX, NetLimits::default(), Some(secret(s)));
    assert!(peer_frames_arrive(&a, b_addr, &rx, WAIT));

    let mut client = Client::connect_with(b_addr, CLUSTER, Some(&secret(s)), WAIT).unwrap();
    let answer = client.call(append_request("c", 1), WAIT).unwrap();
    assert!(matches!(
        answer.message,
        Message::ClientResp(ClientResponse { result: 0, .. })
    ));
    a.close();
    b.close();
}

#[test]
fn wrong_secret_is_refused_for_peers_and_clients() {
    let (b, b_addr) = server(Some(secret("the-right-secret-0123")));
    let (handler, rx) = collecting();
    b.register("g", 0, handler).unwrap();
    let a = Transport::with_secret(
        CLUSTER,
        FRAME_MAX,
        NetLimits::default(),
        Some(secret("the-wrong-secret-0123")),
    );
    assert!(
        !peer_frames_arrive(&a, b_addr, &rx, QUIET),
        "a peer with the wrong secret got through"
    );

    let err = connect_err(b_addr, CLUSTER, Some(&secret("the-wrong-secret-0123")));
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(
        err.message()
            .contains("refused authentication: secrets differ"),
        "{err}"
    );
    a.close();
    b.close();
}

#[test]
fn a_missing_secret_on_either_side_is_refused() {
    let s = secret("only-one-side-has-it");
    // Server with a secret, dialers without.
    let (b, b_addr) = server(Some(s.clone()));
    let (handler, rx) = collecting();
    b.register("g", 0, handler).unwrap();
    let plain = Transport::new(CLUSTER, FRAME_MAX);
    assert!(!peer_frames_arrive(&plain, b_addr, &rx, QUIET));
    let err = connect_err(b_addr, CLUSTER, None);
    assert!(err.message().contains("requires authentication"), "{err}");
    // A raw hello without the flag gets the status that says why.
    let mut raw = TcpStream::connect_timeout(&b_addr, WAIT).unwrap();
    raw.write_all(&Hello::new(ConnKind::Peer, 1, CLUSTER).encode())
        .unwrap();
    let answer = handshake::read_hello(&mut raw, Instant::now() + WAIT).unwrap();
    assert_eq!(answer.status, Status::AuthRequired);
    assert!(closed_by_server(&mut raw));

    // Server without a secret, dialers with one: they refuse to talk unauthenticated.
    let (c, c_addr) = server(None);
    let (handler, rx) = collecting();
    c.register("g", 0, handler).unwrap();
    let with = Transport::with_secret(CLUSTER, FRAME_MAX, NetLimits::default(), Some(s.clone()));
    assert!(!peer_frames_arrive(&with, c_addr, &rx, QUIET));
    let err = connect_err(c_addr, CLUSTER, Some(&s));
    assert!(err.message().contains("no dLegerSecret"), "{err}");
    for t in [b, plain, c, with] {
        t.close();
    }
}

#[test]
fn a_server_that_skips_authentication_is_refused_by_a_dialer_with_a_secret() {
    // An impostor that accepts every hello without the AUTH flag or a proof.
    let listener = TcpListener::bind(loopback()).unwrap();
    let addr = listener.local_addr().unwrap();
    let impostor = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let hello = handshake::read_hello(&mut s, Instant::now() + WAIT).unwrap();
        assert_eq!(hello.flags & FLAG_AUTH, FLAG_AUTH);
        s.write_all(&Hello::new(ConnKind::Client, 5, CLUSTER).encode())
            .unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        rest
    });
    let err = connect_err(addr, CLUSTER, Some(&secret("dialer-has-a-secret")));
    assert!(err.message().contains("requires authentication"), "{err}");
    let sent_after_hello = impostor.join().unwrap();
    assert!(
        sent_after_hello.is_empty(),
        "the dialer sent {} bytes to an impostor",
        sent_after_hello.len()
    );
}

/// Forwards one connection to `to`, recording what each direction carried.
struct RecordingProxy {
    addr: SocketAddr,
    to_server: Arc<Mutex<Vec<u8>>>,
    to_client: Arc<Mutex<Vec<u8>>>,
}

fn recording_proxy(to: SocketAddr) -> RecordingProxy {
    let listener = TcpListener::bind(loopback()).unwrap();
    let addr = listener.local_addr().unwrap();
    let to_server = Arc::new(Mutex::new(Vec::new()));
    let to_client = Arc::new(Mutex::new(Vec::new()));
    let (up, down) = (to_server.clone(), to_client.clone());
    thread::spawn(move || {
        let (client, _) = listener.accept().unwrap();
        let server = TcpStream::connect_timeout(&to, WAIT).unwrap();
        let pump = |mut from: TcpStream, mut into: TcpStream, log: Arc<Mutex<Vec<u8>>>| {
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                // Ends at EOF or error; the test closes both ends.
                while let Ok(n) = from.read(&mut buf) {
                    // Recorded before forwarding, so a reply implies its request is logged.
                    log.lock().unwrap().extend_from_slice(&buf[..n]);
                    if n == 0 || into.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = into.shutdown(Shutdown::Write);
            })
        };
        let a = pump(client.try_clone().unwrap(), server.try_clone().unwrap(), up);
        let b = pump(server, client, down);
        let _ = a.join();
        let _ = b.join();
    });
    RecordingProxy {
        addr,
        to_server,
        to_client,
    }
}

#[test]
fn a_replayed_handshake_is_refused_both_ways() {
    let s = secret("replay-resistant-secret");
    let (b, b_addr) = server(Some(s.clone()));
    let count = Arc::new(AtomicUsize::new(0));
    b.register("g", 0, echoing(count.clone())).unwrap();
    let proxy = recording_proxy(b_addr);
    {
        let mut client = Client::connect_with(proxy.addr, CLUSTER, Some(&s), WAIT).unwrap();
        client.call(append_request("g", 1), WAIT).unwrap();
    }
    assert_eq!(count.load(Ordering::SeqCst), 1);
    let handshake_len = HELLO_FIXED_SIZE_BYTES + CLUSTER.len() + AUTH_MESSAGE_SIZE_BYTES;
    let recorded_up = proxy.to_server.lock().unwrap().clone();
    let recorded_down = proxy.to_client.lock().unwrap()[..handshake_len].to_vec();
    assert!(
        recorded_up.len() > handshake_len,
        "the call's frame was recorded too"
    );

    // The client's side replayed to the server: the server's new nonce makes the proof stale.
    let mut replay = TcpStream::connect_timeout(&b_addr, WAIT).unwrap();
    replay.write_all(&recorded_up).unwrap();
    let answer = handshake::read_hello(&mut replay, Instant::now() + WAIT).unwrap();
    assert_eq!(answer.status, Status::Accepted);
    let recorded_nonce: [u8; 16] = recorded_down[20..36].try_into().unwrap();
    assert_ne!(answer.nonce, recorded_nonce, "the server reused its nonce");
    let verdict = handshake::read_auth(&mut replay, Instant::now() + WAIT).unwrap();
    assert_eq!(verdict.status, Status::AuthFailed);
    assert!(closed_by_server(&mut replay));
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "a replayed frame was delivered"
    );

    // The server's side replayed to a client (an impostor server): the client's nonce
    // differs, so the recorded proof does not verify.
    let listener = TcpListener::bind(loopback()).unwrap();
    let fake = listener.local_addr().unwrap();
    let impostor = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        handshake::read_hello(&mut s, Instant::now() + WAIT).unwrap();
        s.write_all(&recorded_down[..handshake_len - AUTH_MESSAGE_SIZE_BYTES])
            .unwrap();
        let proof = handshake::read_auth(&mut s, Instant::now() + WAIT).unwrap();
        assert_eq!(proof.status, Status::Accepted);
        s.write_all(&recorded_down[handshake_len - AUTH_MESSAGE_SIZE_BYTES..])
            .unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        rest
    });
    let err = connect_err(fake, CLUSTER, Some(&s));
    assert!(err.message().contains("failed authentication"), "{err}");
    assert!(
        impostor.join().unwrap().is_empty(),
        "the client sent frames to an impostor"
    );
    b.close();
}

#[test]
fn forged_proofs_are_refused() {
    let (b, b_addr) = server(Some(secret("forgery-test-secret")));
    let count = Arc::new(AtomicUsize::new(0));
    b.register("g", 0, echoing(count.clone())).unwrap();
    for forged in [[0u8; 32], [0xff; 32]] {
        let mut s = TcpStream::connect_timeout(&b_addr, WAIT).unwrap();
        let mut hello = Hello::new(ConnKind::Client, 7, CLUSTER);
        hello.flags = FLAG_AUTH;
        hello.nonce = [9; 16];
        s.write_all(&hello.encode()).unwrap();
        let answer = handshake::read_hello(&mut s, Instant::now() + WAIT).unwrap();
        assert_eq!(
            (answer.status, answer.flags & FLAG_AUTH),
            (Status::Accepted, FLAG_AUTH)
        );
        s.write_all(
            &AuthMessage {
                status: Status::Accepted,
                mac: forged,
            }
            .encode(),
        )
        .unwrap();
        let verdict = handshake::read_auth(&mut s, Instant::now() + WAIT).unwrap();
        assert_eq!(verdict.status, Status::AuthFailed);
        assert_eq!(verdict.mac, [0; 32], "a refusal carries no proof");
        assert!(closed_by_server(&mut s));
    }
    assert_eq!(count.load(Ordering::SeqCst), 0);
    b.close();
}

#[test]
fn another_cluster_is_refused_even_with_the_secret() {
    let s = secret("cluster-bound-secret");
    let (b, b_addr) = server(Some(s.clone()));
    let (handler, rx) = collecting();
    b.register("g", 0, handler).unwrap();
    let err = connect_err(b_addr, "OtherCluster", Some(&s));
    assert!(err.message().contains("cluster name mismatch"), "{err}");
    let other = Transport::with_secret("OtherCluster", FRAME_MAX, NetLimits::default(), Some(s));
    assert!(!peer_frames_arrive(&other, b_addr, &rx, QUIET));
    other.close();
    b.close();
}

#[test]
fn frames_for_unknown_groups_are_dropped_or_answered_not_found() {
    let s = secret("unknown-group-secret");
    let (b, b_addr) = server(Some(s.clone()));
    let (handler, rx) = collecting();
    b.register("g", 0, handler).unwrap();
    // Peers: the frame for a group this engine does not host is dropped, and the
    // connection goes on carrying the known group's frames.
    let a = Transport::with_secret(CLUSTER, FRAME_MAX, NetLimits::default(), Some(s.clone()));
    for term in 1..=3 {
        assert!(a.send(b_addr, vote("not-here", term)));
    }
    assert!(peer_frames_arrive(&a, b_addr, &rx, WAIT));
    while let Ok(f) = rx.recv_timeout(Duration::from_millis(100)) {
        assert_eq!(
            f.group, "g",
            "a frame for an unregistered group was delivered"
        );
    }
    // Clients: answered NOT_FOUND instead of left to time out.
    let mut client = Client::connect_with(b_addr, CLUSTER, Some(&s), WAIT).unwrap();
    let answer = client.call(append_request("not-here", 5), WAIT).unwrap();
    let Message::ClientResp(r) = answer.message else {
        panic!("not a response")
    };
    assert_eq!(r.result, ErrorKind::NotFound.code());
    assert!(r.message.contains("not-here"), "{}", r.message);
    a.close();
    b.close();
}

#[test]
fn a_length_field_of_4_gib_is_refused_before_allocation() {
    let s = secret("length-field-secret");
    let (b, b_addr) = server_with(Some(s.clone()), NetLimits::default(), 4096);
    let count = Arc::new(AtomicUsize::new(0));
    b.register("g", 0, echoing(count.clone())).unwrap();
    for length in [u32::MAX, 1 << 31, 4097] {
        let mut stream = TcpStream::connect_timeout(&b_addr, WAIT).unwrap();
        handshake::connect_with(
            &mut stream,
            ConnKind::Client,
            CLUSTER,
            3,
            Some(&s),
            Instant::now() + WAIT,
        )
        .unwrap();
        let mut header = Vec::with_capacity(HEADER_SIZE_BYTES);
        header.extend_from_slice(&FRAME_MAGIC.to_le_bytes());
        header.push(FRAME_VERSION);
        header.push(16); // client append
        header.extend_from_slice(&0u16.to_le_bytes());
        header.extend_from_slice(&length.to_le_bytes());
        header.extend_from_slice(&1u64.to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        stream.write_all(&header).unwrap();
        // The body never comes: the refusal must not wait for it.
        let started = Instant::now();
        assert!(closed_by_server(&mut stream), "length {length} not refused");
        assert!(started.elapsed() < WAIT);
    }
    // Before any handshake a frame header is just a bad hello.
    let mut stream = TcpStream::connect_timeout(&b_addr, WAIT).unwrap();
    stream.write_all(&[0xff; 64]).unwrap();
    assert!(closed_by_server(&mut stream));
    let largest = LARGEST_ALLOC_BYTES.load(Ordering::Relaxed);
    assert!(largest < 64 << 20, "an allocation of {largest} bytes");
    assert_eq!(count.load(Ordering::SeqCst), 0);
    b.close();
}

#[test]
fn a_byte_a_second_is_cut_off_without_pinning_other_connections() {
    let s = secret("slow-loris-secret");
    let limits = NetLimits {
        handshake_timeout_ms: 1_500,
        ..NetLimits::default()
    };
    let (b, b_addr) = server_with(Some(s.clone()), limits, FRAME_MAX);
    let count = Arc::new(AtomicUsize::new(0));
    b.register("g", 0, echoing(count.clone())).unwrap();
    let mut hello = Hello::new(ConnKind::Peer, 1, CLUSTER);
    hello.flags = FLAG_AUTH;
    hello.nonce = [5; 16];
    let bytes = hello.encode();
    let slow: Vec<_> = (0..4)
        .map(|_| {
            let bytes = bytes.clone();
            thread::spawn(move || {
                let mut s = TcpStream::connect_timeout(&b_addr, WAIT).unwrap();
                let started = Instant::now();
                // One byte a second; the hello would take over half a minute.
                for b in bytes.iter().take(20) {
                    if s.write_all(std::slice::from_ref(b)).is_err() {
                        break;
                    }
                    if closed_within(&mut s, Duration::from_secs(1)) {
                        return started.elapsed();
                    }
                }
                panic!("a connection sending a byte a second was never cut off");
            })
        })
        .collect();
    // Meanwhile, well-behaved clients connect and are answered at once.
    thread::sleep(Duration::from_millis(300));
    for id in 0..10 {
        let started = Instant::now();
        let mut client = Client::connect_with(b_addr, CLUSTER, Some(&s), WAIT).unwrap();
        client.call(append_request("g", id), WAIT).unwrap();
        assert!(
            started.elapsed() < Duration::from_millis(1_000),
            "a client waited {:?}",
            started.elapsed()
        );
    }
    for t in slow {
        let cut_after = t.join().unwrap();
        assert!(
            cut_after >= Duration::from_millis(1_400),
            "cut after {cut_after:?}"
        );
        assert!(
            cut_after < Duration::from_millis(4_000),
            "cut after {cut_after:?}"
        );
    }
    b.close();
}

/// Waits up to `within` for the server to close `s`; true if it did.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            false
        }
        Err(_) => true,
    }
}

/// A client connection speaks for no member: a vote or a push on it (whatever `from` it
/// claims), or a client request claiming a member's `from`, closes the connection and
/// reaches no handler; a peer connection's frames are delivered as before.
#[test]
fn a_client_connection_cannot_speak_for_a_member() {
    let s = secret("client-from-binding-secret");
    let (b, b_addr) = server(Some(s.clone()));
    let (handler, rx) = collecting();
    b.register("g", 0, handler).unwrap();
    let push = Frame {
        group: "g".into(),
        from: 1,
        to: 0,
        request_id: 1,
        message: Message::Push(rmqraft::net::PushRequest {
            term: 9,
            prev_index: 0,
            prev_term: 0,
            commit_index: 0,
            entries: Vec::new(),
        }),
    };
    let forged_client_request = Frame {
        from: 1,
        ..append_request("g", 2)
    };
    let vote_as_client = Frame {
        from: CLIENT_PEER,
        ..vote("g", 3)
    };
    for frame in [vote("g", 1), push, vote_as_client, forged_client_request] {
        let what = format!("{:?} from {}", frame.message, frame.from);
        let mut client = Client::connect_with(b_addr, CLUSTER, Some(&s), WAIT).unwrap();
        let err = client
            .call(frame, Duration::from_millis(500))
            .expect_err(&what);
        assert_ne!(
            err.kind(),
            ErrorKind::Timeout,
            "{what}: the server must close, not ignore: {err}"
        );
        assert!(
            rx.recv_timeout(Duration::from_millis(50)).is_err(),
            "{what} reached the member"
        );
    }
    // A genuine client request still works, and peers still carry votes.
    let mut client = Client::connect_with(b_addr, CLUSTER, Some(&s), WAIT).unwrap();
    let _ = client.call(append_request("g", 4), Duration::from_millis(200));
    assert_eq!(rx.recv_timeout(WAIT).unwrap().from, CLIENT_PEER);
    let a = Transport::with_secret(CLUSTER, FRAME_MAX, NetLimits::default(), Some(s));
    assert!(peer_frames_arrive(&a, b_addr, &rx, WAIT));
    a.close();
    b.close();
}
