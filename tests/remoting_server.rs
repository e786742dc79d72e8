//! The remoting server: unknown codes, oneway requests, malformed frames, parked requests
//! answered later, many idle connections, and a clean shutdown.

mod common;

use common::wait_for;
use rmqraft::remoting::client::Client;
use rmqraft::remoting::codec::{RemotingCommand, SerializeType};
use rmqraft::remoting::server::{Request, Responder, Router, Server, ServerConfig};
use rmqraft::ErrorKind;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);
const ECHO: i32 = 1;
const PARK: i32 = 2;
const DROP: i32 = 4;
const PANIC: i32 = 5;

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

struct Fixture {
    server: Server,
    echoes: Arc<AtomicUsize>,
    parked: Arc<Mutex<Vec<(Request, Responder)>>>,
    closed: Arc<Mutex<Vec<u64>>>,
}

fn start(config: ServerConfig) -> Fixture {
    common::init_logging();
    let echoes = Arc::new(AtomicUsize::new(0));
    let parked: Arc<Mutex<Vec<(Request, Responder)>>> = Arc::default();
    let closed: Arc<Mutex<Vec<u64>>> = Arc::default();
    let mut router = Router::new();
    let e = echoes.clone();
    router.route(
        ECHO,
        Arc::new(move |req: Request, resp: Responder| {
            e.fetch_add(1, Ordering::SeqCst);
            let out = req
                .command
                .response_to(0, None)
                .with_body(req.command.body.clone());
            resp.respond(out);
        }),
    );
    let p = parked.clone();
    router.route(
        PARK,
        Arc::new(move |req: Request, resp: Responder| p.lock().unwrap().push((req, resp))),
    );
    router.route(DROP, Arc::new(|_req: Request, _resp: Responder| {}));
    router.route(
        PANIC,
        Arc::new(|_req: Request, _resp: Responder| panic!("handler fails on purpose")),
    );
    let c = closed.clone();
    router.on_close(move |id| c.lock().unwrap().push(id));
    let server = Server::start(any_port(), router, config).expect("server starts");
    Fixture {
        server,
        echoes,
        parked,
        closed,
    }
}

fn connect(server: &Server) -> Client {
    Client::connect(&server.local_addr().to_string(), T).expect("connect")
}

/// Threads of this process whose name starts with `prefix` (tests may share a process).
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}

#[test]
fn unknown_code_is_answered_in_the_serialize_type_asked() {
    let f = start(ServerConfig::default());
    let mut c = connect(&f.server);
    for st in [SerializeType::Json, SerializeType::RocketMq] {
        let mut req = RemotingCommand::request(9999, 0);
        req.serialize_type = st;
        let resp = c.invoke(req, T).unwrap();
        assert_eq!(resp.code, 3, "REQUEST_CODE_NOT_SUPPORTED");
        assert_eq!(
            resp.remark.as_deref(),
            Some(" request type 9999 not supported")
        );
        assert_eq!(resp.serialize_type, st);
        assert!(resp.is_response());
    }
}

#[test]
fn oneway_requests_are_not_answered() {
    let f = start(ServerConfig::default());
    let mut c = connect(&f.server);
    c.invoke_oneway(RemotingCommand::request(ECHO, 0), T)
        .unwrap();
    c.invoke_oneway(RemotingCommand::request(9999, 0), T)
        .unwrap();
    let resp = c
        .invoke(
            RemotingCommand::request(ECHO, 0).with_body(b"ping".to_vec()),
            T,
        )
        .unwrap();
    assert_eq!(resp.body, b"ping");
    // The oneway echo ran (handlers see oneway requests) but sent nothing: the next
    // command on the connection was the answer to the normal request.
    wait_for("both echoes ran", || {
        (f.echoes.load(Ordering::SeqCst) == 2).then_some(())
    });
    let err = c
        .read_command(Instant::now() + Duration::from_millis(300))
        .unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Timeout,
        "nothing more was sent: {err}"
    );
}

#[test]
fn malformed_frame_closes_only_its_connection() {
    let f = start(ServerConfig::default());
    let mut good = connect(&f.server);
    let mut bad_type = connect(&f.server);
    let mut too_large = connect(&f.server);
    wait_for("3 connections", || {
        (f.server.connection_count() == 3).then_some(())
    });

    // Serialize type 7 does not exist.
    let deadline = Instant::now() + T;
    bad_type
        .send_raw(&[0, 0, 0, 6, 7, 0, 0, 2, b'{', b'}'], deadline)
        .unwrap();
    let err = bad_type.read_command(deadline).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed, "{err}");

    // A length over the limit is refused from the length field alone: no body is sent.
    too_large.send_raw(&[0x7f, 0, 0, 0], deadline).unwrap();
    let err = too_large.read_command(deadline).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Closed | ErrorKind::Io),
        "{err}"
    );

    let resp = good.invoke(RemotingCommand::request(ECHO, 0), T).unwrap();
    assert_eq!(resp.code, 0);
    wait_for("2 connections closed", || {
        (f.closed.lock().unwrap().len() == 2).then_some(())
    });
    assert_eq!(f.server.connection_count(), 1);
}

#[test]
fn parked_request_is_answered_later_without_holding_a_worker() {
    let f = start(ServerConfig {
        workers: 1,
        ..ServerConfig::default()
    });
    let mut a = connect(&f.server);
    let mut b = connect(&f.server);
    let deadline = Instant::now() + T;
    let mut park = RemotingCommand::request(PARK, 77);
    park.serialize_type = SerializeType::RocketMq;
    let frame = park.encode().unwrap();
    a.send_raw(&frame, deadline).unwrap();
    wait_for("the request is parked", || {
        (f.parked.lock().unwrap().len() == 1).then_some(())
    });
    // The only worker is free: another connection is served meanwhile.
    assert_eq!(
        b.invoke(RemotingCommand::request(ECHO, 0), T).unwrap().code,
        0
    );
    let (req, responder) = f.parked.lock().unwrap().pop().unwrap();
    let answer = std::thread::spawn(move || {
        responder.respond(req.command.response_to(0, Some("woken".into())))
    });
    assert!(answer.join().unwrap(), "the response was queued");
    let resp = a.read_command(deadline).unwrap();
    assert_eq!(resp.opaque, 77);
    assert_eq!(resp.remark.as_deref(), Some("woken"));
    assert_eq!(resp.serialize_type, SerializeType::RocketMq);
}

#[test]
fn dropped_or_panicking_handlers_answer_system_error() {
    let f = start(ServerConfig::default());
    let mut c = connect(&f.server);
    let resp = c.invoke(RemotingCommand::request(DROP, 0), T).unwrap();
    assert_eq!(resp.code, 1, "SYSTEM_ERROR");
    let resp = c.invoke(RemotingCommand::request(PANIC, 0), T).unwrap();
    assert_eq!(resp.code, 1, "SYSTEM_ERROR");
    // The worker survived.
    assert_eq!(
        c.invoke(RemotingCommand::request(ECHO, 0), T).unwrap().code,
        0
    );
}

#[test]
fn a_full_queue_answers_system_busy() {
    common::init_logging();
    let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
    let (started_tx, started_rx) = crossbeam_channel::unbounded::<i32>();
    let mut router = Router::new();
    router.route(
        ECHO,
        Arc::new(move |req: Request, resp: Responder| {
            // Holds the only worker until the test lets it go.
            let _ = started_tx.send(req.command.opaque);
            let _ = release_rx.recv_timeout(T);
            resp.respond(req.command.response_to(0, None));
        }),
    );
    let config = ServerConfig {
        workers: 1,
        queue_len: 1,
        ..ServerConfig::default()
    };
    let server = Server::start(any_port(), router, config).unwrap();
    let mut c = connect(&server);
    let deadline = Instant::now() + T;
    // The first occupies the worker, the second fills the queue, the third is refused.
    c.send_raw(
        &RemotingCommand::request(ECHO, 1).encode().unwrap(),
        deadline,
    )
    .unwrap();
    assert_eq!(
        started_rx.recv_timeout(T),
        Ok(1),
        "the worker holds the first"
    );
    let mut rest = RemotingCommand::request(ECHO, 2).encode().unwrap();
    rest.extend(RemotingCommand::request(ECHO, 3).encode().unwrap());
    c.send_raw(&rest, deadline).unwrap();
    let busy = c.read_command(deadline).unwrap();
    assert_eq!(
        (busy.code, busy.opaque),
        (2, 3),
        "SYSTEM_BUSY for the third"
    );
    assert!(busy.remark.unwrap().contains("system busy"));
    release_tx.send(()).unwrap();
    release_tx.send(()).unwrap();
    let mut served: Vec<i32> = (0..2)
        .map(|_| c.read_command(deadline).unwrap().opaque)
        .collect();
    served.sort_unstable();
    assert_eq!(served, vec![1, 2]);
}

#[test]
fn shutdown_joins_every_thread_and_closes_connections() {
    let mut f = start(ServerConfig {
        name: "joins".into(),
        ..ServerConfig::default()
    });
    wait_for("an I/O thread and 4 workers", || {
        (threads_named("joins-") == 5).then_some(())
    });
    let mut c = connect(&f.server);
    assert_eq!(
        c.invoke(RemotingCommand::request(ECHO, 0), T).unwrap().code,
        0
    );
    let mut a = connect(&f.server);
    a.send_raw(
        &RemotingCommand::request(PARK, 1).encode().unwrap(),
        Instant::now() + T,
    )
    .unwrap();
    wait_for("parked", || {
        (f.parked.lock().unwrap().len() == 1).then_some(())
    });
    f.server.shutdown();
    assert_eq!(threads_named("joins-"), 0, "every server thread joined");
    let err = c.read_command(Instant::now() + T).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Closed | ErrorKind::Io),
        "{err}"
    );
    // A parked responder answering after shutdown is harmless.
    let (req, responder) = f.parked.lock().unwrap().pop().unwrap();
    assert!(!responder.respond(req.command.response_to(0, None)));
}

#[test]
fn garbage_on_many_connections_leaves_the_server_serving() {
    let f = start(ServerConfig::default());
    let addr = f.server.local_addr().to_string();
    let mut rng = fastrand::Rng::with_seed(11);
    let deadline = Instant::now() + T;
    for i in 0..64 {
        let mut c = Client::connect(&addr, T).unwrap();
        let len = rng.usize(1..512);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        if i % 2 == 0 {
            // A plausible length field with a garbage header behind it.
            let l = (len as u32).saturating_sub(4).max(4).to_be_bytes();
            bytes.splice(0..0, l);
        }
        let _ = c.send_raw(&bytes, deadline);
        // Whatever happens to this connection, the server keeps serving others.
        let mut good = connect(&f.server);
        assert_eq!(
            good.invoke(RemotingCommand::request(ECHO, 0), T)
                .unwrap()
                .code,
            0
        );
    }
}

#[test]
fn the_server_pushes_requests_to_a_connection() {
    common::init_logging();
    let pusher: Arc<std::sync::OnceLock<rmqraft::remoting::server::Pusher>> = Arc::default();
    let p = pusher.clone();
    let mut router = Router::new();
    router.route(
        ECHO,
        Arc::new(move |req: Request, resp: Responder| {
            // A notice to this client first (as NOTIFY_CONSUMER_IDS_CHANGED is), then the answer.
            let mut notice = RemotingCommand::request(40, 900).with_field("consumerGroup", "G");
            notice.flag = 2;
            assert!(p.get().unwrap().push(req.connection, &notice));
            resp.respond(req.command.response_to(0, None));
        }),
    );
    let server = Server::start(any_port(), router, ServerConfig::default()).unwrap();
    assert!(pusher.set(server.pusher()).is_ok());
    let mut c = connect(&server);
    let deadline = Instant::now() + T;
    c.send_raw(
        &RemotingCommand::request(ECHO, 5).encode().unwrap(),
        deadline,
    )
    .unwrap();
    let notice = c.read_command(deadline).unwrap();
    assert_eq!(
        (notice.code, notice.opaque, notice.is_oneway()),
        (40, 900, true)
    );
    assert_eq!(notice.field("consumerGroup"), Some("G"));
    let resp = c.read_command(deadline).unwrap();
    assert_eq!((resp.opaque, resp.is_response()), (5, true));
}

#[test]
fn a_connection_that_does_not_read_is_closed_at_the_output_limit() {
    common::init_logging();
    let mut router = Router::new();
    router.route(
        ECHO,
        Arc::new(|req: Request, resp: Responder| {
            // The remark tells the client its connection id.
            let id = req.connection.to_string();
            resp.respond(req.command.response_to(0, Some(id)));
        }),
    );
    let config = ServerConfig {
        output_pause_bytes: 256 * 1024,
        output_max_bytes: 1024 * 1024,
        ..ServerConfig::default()
    };
    let server = Server::start(any_port(), router, config).unwrap();
    let mut reader = connect(&server);
    let mut stuck = connect(&server);
    let stuck_id: u64 = stuck
        .invoke(RemotingCommand::request(ECHO, 0), T)
        .unwrap()
        .remark
        .unwrap()
        .parse()
        .unwrap();
    // 40 MiB for a client that reads nothing: far more than the socket buffers hold.
    let pusher = server.pusher();
    let big = RemotingCommand::request(40, 0).with_body(vec![7; 2 * 1024 * 1024]);
    for _ in 0..20 {
        pusher.push(stuck_id, &big);
    }
    wait_for("the stuck connection is closed", || {
        (server.connection_count() == 1).then_some(())
    });
    // The other one is untouched.
    assert_eq!(
        reader
            .invoke(RemotingCommand::request(ECHO, 0), T)
            .unwrap()
            .code,
        0
    );
}

#[test]
fn a_silent_connection_is_closed_after_the_idle_timeout() {
    let f = start(ServerConfig {
        idle_timeout: Some(Duration::from_millis(1500)),
        ..ServerConfig::default()
    });
    // Before the connections exist: the silent one cannot be closed 1.5 s after this.
    let started = Instant::now();
    let silent = connect(&f.server);
    let mut busy = connect(&f.server);
    wait_for("2 connections", || {
        (f.server.connection_count() == 2).then_some(())
    });
    // The busy one sends every 200 ms; the silent one sends nothing.
    while f.server.connection_count() == 2 {
        assert!(
            started.elapsed() < T,
            "the silent connection was never closed"
        );
        assert_eq!(
            busy.invoke(RemotingCommand::request(ECHO, 0), T)
                .unwrap()
                .code,
            0
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "closed too early"
    );
    assert_eq!(f.server.connection_count(), 1);
    assert_eq!(
        busy.invoke(RemotingCommand::request(ECHO, 0), T)
            .unwrap()
            .code,
        0
    );
    drop(silent);
}
