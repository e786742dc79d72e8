//! Loopback throughput of one link: run with
//! `cargo test --release --test net_throughput -- --ignored --nocapture`.

use bytes::Bytes;
use rmqraft::net::{Frame, Handler, Message, PushRequest, Transport};
use rmqraft::{Entry, EntryKind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
#[ignore = "measurement; run in release"]
fn one_kib_push_frames_per_second() {
    const FRAMES: u64 = 500_000;
    let a = Transport::new("c", 64 << 20);
    let b = Transport::new("c", 64 << 20);
    let addr = b.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let received = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&received);
    let handler: Handler = Arc::new(move |f: Frame, _| {
        if let Message::Push(p) = f.message {
            assert_eq!(p.entries[0].body.len(), 1024);
        }
        counter.fetch_add(1, Ordering::Relaxed);
    });
    b.register("g", 1, handler).unwrap();
    let body = Bytes::from(vec![0xabu8; 1024]);
    let started = Instant::now();
    let mut accepted = 0u64;
    let mut refused = 0u64;
    for i in 0..FRAMES {
        let frame = Frame {
            group: "g".into(),
            from: 0,
            to: 1,
            request_id: i,
            message: Message::Push(PushRequest {
                term: 1,
                prev_index: i,
                prev_term: 1,
                commit_index: i,
                entries: vec![Entry {
                    index: i + 1,
                    term: 1,
                    kind: EntryKind::Normal,
                    body: body.clone(),
                }],
            }),
        };
        // A full queue drops; back off briefly, as a pipelined sender with a window would.
        if a.send(addr, frame) {
            accepted += 1;
        } else {
            refused += 1;
            std::thread::yield_now();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while received.load(Ordering::Relaxed) < accepted {
        assert!(
            Instant::now() < deadline,
            "only {} of {accepted} frames arrived",
            received.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let secs = started.elapsed().as_secs_f64();
    let rate = accepted as f64 / secs;
    eprintln!("{accepted} frames in {secs:.2} s: {rate:.0} frames/s ({refused} refused while the queue was full)");
    assert_eq!(received.load(Ordering::Relaxed), accepted);
}
