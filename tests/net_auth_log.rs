//! Members that disagree on `dLegerSecret` say so clearly on both sides, once per
//! interval however fast the link reconnects. One test: it owns the process's logger.

use bytes::Bytes;
use rmqraft::config::Secret;
use rmqraft::net::{Frame, Handler, Message, NetLimits, Responder, Transport};
use std::net::SocketAddr;
use std::sync::Arc;

#[path = "common/log_capture.rs"]
mod log_capture;
use log_capture::lines_with;
use std::time::{Duration, Instant};

fn transport(secret: Option<&str>) -> Transport {
    let secret = secret.map(|s| Secret::new(s.as_bytes().to_vec()));
    Transport::with_secret("LogCluster", 1 << 20, NetLimits::default(), secret)
}

fn heartbeat(term: u64) -> Frame {
    Frame {
        group: "g".into(),
        from: 1,
        to: 0,
        request_id: term,
        message: Message::ClientAppend {
            data: Bytes::from_static(b"x"),
        },
    }
}

/// Keeps a link busy for `how_long` so it reconnects as fast as its backoff allows.
fn keep_sending(from: &Transport, to: SocketAddr, how_long: Duration) {
    let deadline = Instant::now() + how_long;
    let mut term = 0;
    while Instant::now() < deadline {
        term += 1;
        from.send(to, heartbeat(term));
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn disagreeing_secrets_are_logged_on_both_sides_without_flooding() {
    let capture = log_capture::install();

    let acceptor = transport(Some("secret-on-the-acceptor"));
    let addr = acceptor.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let nothing: Handler = Arc::new(|_: Frame, _: Option<Responder>| {
        panic!("a frame got through with the wrong secret")
    });
    acceptor.register("g", 0, nothing).unwrap();

    let dialer = transport(Some("secret-on-the-dialer"));
    keep_sending(&dialer, addr, Duration::from_millis(3_500));
    dialer.close();

    let dialer_lines = lines_with(
        capture,
        log::Level::Error,
        &format!("peer {addr} refused authentication: secrets differ"),
    );
    let acceptor_lines = lines_with(
        capture,
        log::Level::Error,
        "failed authentication: secrets differ",
    );
    let attempts = lines_with(capture, log::Level::Debug, &format!("link to {addr}:")).len() + 1;
    assert!(
        attempts >= 5,
        "only {attempts} connection attempts; the test proves nothing"
    );
    assert_eq!(dialer_lines.len(), 1, "dialer: {dialer_lines:#?}");
    assert_eq!(acceptor_lines.len(), 1, "acceptor: {acceptor_lines:#?}");
    assert!(
        acceptor_lines[0].starts_with("peer 127.0.0.1:"),
        "{}",
        acceptor_lines[0]
    );
    assert!(
        dialer_lines[0].contains("dLegerSecret"),
        "{}",
        dialer_lines[0]
    );

    // A dialer without any secret: both sides name the missing secret.
    let plain = transport(None);
    keep_sending(&plain, addr, Duration::from_millis(500));
    plain.close();
    let dialer_lines = lines_with(
        capture,
        log::Level::Error,
        "requires authentication and this engine has no dLegerSecret",
    );
    let acceptor_lines = lines_with(
        capture,
        log::Level::Error,
        "has no dLegerSecret but this engine requires authentication",
    );
    assert_eq!(
        (dialer_lines.len(), acceptor_lines.len()),
        (1, 1),
        "{dialer_lines:#?} {acceptor_lines:#?}"
    );
    acceptor.close();
}
