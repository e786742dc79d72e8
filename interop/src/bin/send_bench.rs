//! Sync sends through RocketMQ's protocol with rocketmq-client-rust: a name server and
//! three `rmqraft node` processes (the release binary), N groups of three members,
//! P producers each with one send in flight, 1 KiB bodies with a key and a tag, one topic
//! of 8 queues per group. Prints sends/s and latency percentiles; the last line is
//! machine-readable.
//!
//! `send_bench [--groups N] [--producers P] [--seconds S] [--warmup S] [--body BYTES]
//! [--flush sync|async]`

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rmqraft_interop::{client_options, percentile, Client, Cluster};
use rocketmq_client_rust::DefaultMQProducer;
use rocketmq_model::common::message::message_single::Message;

const USAGE: &str = "usage: send_bench [--groups N] [--producers P] [--seconds S] [--warmup S] \
[--body BYTES] [--flush sync|async]";
const TOPIC: &str = "BenchTopic";
const QUEUES: u32 = 8;

struct Options {
    groups: usize,
    producers: usize,
    seconds: u64,
    warmup: u64,
    body: usize,
    flush: String,
}

fn parse() -> Result<Options, String> {
    let mut o = Options {
        groups: 1,
        producers: 64,
        seconds: 8,
        warmup: 2,
        body: 1024,
        flush: "SYNC_FLUSH".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        let num = |name: &str, v: String| -> Result<u64, String> {
            v.parse()
                .map_err(|_| format!("{name}: '{v}' is not a number\n{USAGE}"))
        };
        match a.as_str() {
            "--groups" => o.groups = num("--groups", value("--groups")?)? as usize,
            "--producers" => o.producers = num("--producers", value("--producers")?)? as usize,
            "--seconds" => o.seconds = num("--seconds", value("--seconds")?)?,
            "--warmup" => o.warmup = num("--warmup", value("--warmup")?)?,
            "--body" => o.body = num("--body", value("--body")?)? as usize,
            "--flush" => {
                o.flush = match value("--flush")?.as_str() {
                    "sync" => "SYNC_FLUSH".into(),
                    "async" => "ASYNC_FLUSH".into(),
                    other => return Err(format!("--flush: '{other}' is not sync or async")),
                }
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown option '{other}'\n{USAGE}")),
        }
    }
    if o.groups == 0 || o.groups > 16 {
        return Err("--groups: 1 to 16".into());
    }
    if o.producers == 0 || o.producers > 1024 {
        return Err("--producers: 1 to 1024".into());
    }
    if o.seconds == 0 {
        return Err("--seconds: at least 1".into());
    }
    Ok(o)
}

fn main() {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("send_bench: {e}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(run(o));
}

async fn run(o: Options) {
    let cluster = Cluster::start_with(o.groups, &o.flush);
    cluster.create_topic(TOPIC, QUEUES);
    let client = Client::new("bench");
    let body = vec![b'x'; o.body];
    let mut producers = Vec::new();
    for i in 0..o.producers {
        let mut p = DefaultMQProducer::builder(client.runtime())
            .client_options(client_options(&cluster.namesrv_addr, 30_000))
            .producer_group(format!("bench-pg-{i}"))
            .send_msg_timeout(3000)
            .build();
        p.start().await.expect("start producer");
        producers.push(p);
    }
    // Every producer has the route before the clock starts.
    for p in &producers {
        let _ = p.send(message(&body, 0, 0)).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let producers: Vec<Arc<DefaultMQProducer>> = producers.into_iter().map(Arc::new).collect();
    for (i, p) in producers.iter().enumerate() {
        let (p, stop, measuring, errors, body) = (
            Arc::clone(p),
            Arc::clone(&stop),
            Arc::clone(&measuring),
            Arc::clone(&errors),
            body.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(1 << 14);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let t0 = Instant::now();
                let r = p.send_with_timeout(message(&body, i, n), 3000).await;
                let took = t0.elapsed();
                let ok = matches!(&r, Ok(Some(s)) if format!("{:?}", s.send_status) == "SendOk");
                if measuring.load(Ordering::Relaxed) {
                    if ok {
                        lat.push(took);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            lat
        }));
    }
    tokio::time::sleep(Duration::from_secs(o.warmup)).await;
    measuring.store(true, Ordering::SeqCst);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(o.seconds)).await;
    measuring.store(false, Ordering::SeqCst);
    let seconds = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("sender task"));
    }
    all.sort();
    let per_s = all.len() as f64 / seconds;
    let (p50, p99, p999) = (
        percentile(&all, 50.0),
        percentile(&all, 99.0),
        percentile(&all, 99.9),
    );
    let errors = errors.load(Ordering::SeqCst);
    println!(
        "send_bench: {} groups, {} producers, {}, {} B bodies: {} sends in {:.1} s = {:.0} sends/s, \
         p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, {} errors",
        o.groups,
        o.producers,
        o.flush,
        o.body,
        all.len(),
        seconds,
        per_s,
        ms(p50),
        ms(p99),
        ms(p999),
        errors
    );
    println!(
        "mode=remoting groups={} producers={} flush={} sends_per_s={:.0} p50_ms={:.3} p99_ms={:.3} \
         p999_ms={:.3} errors={}",
        o.groups,
        o.producers,
        o.flush,
        per_s,
        ms(p50),
        ms(p99),
        ms(p999),
        errors
    );
    for p in producers {
        if let Ok(mut p) = Arc::try_unwrap(p) {
            p.shutdown().await;
        }
    }
    client.shutdown().await;
    drop(cluster);
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn message(body: &[u8], producer: usize, n: u64) -> Message {
    Message::builder()
        .topic(TOPIC)
        .tags("TagA")
        .key(format!("p{producer}-{n}"))
        .body_slice(body)
        .build_unchecked()
}
