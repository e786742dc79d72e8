//! 1,000 idle client connections cost little: no thread each, a few hundred bytes each.
//! Alone in its test binary, so the process's RSS is the server's and the clients' only.

mod common;

use common::wait_for;
use rmqraft::remoting::client::Client;
use rmqraft::remoting::codec::RemotingCommand;
use rmqraft::remoting::server::{Request, Responder, Router, Server, ServerConfig};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);
const ECHO: i32 = 1;

fn proc_status(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap())
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"))
}

/// Threads of this process whose name starts with `prefix` (tests may share a process).
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}

/// Raises the soft limit on open files toward the hard one; returns the soft limit.
fn raise_nofile_limit(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write and read a valid rlimit struct on the stack.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
    }
    lim.rlim_cur
}

#[test]
fn a_thousand_idle_connections_cost_little() {
    // Both ends of every connection live in this process.
    let limit = raise_nofile_limit(4096);
    let n = 1000.min((limit.saturating_sub(200) / 2) as usize);
    assert!(
        n >= 300,
        "RLIMIT_NOFILE {limit} leaves room for {n} connections only"
    );
    common::init_logging();
    let mut router = Router::new();
    router.route(
        ECHO,
        Arc::new(|req: Request, resp: Responder| {
            resp.respond(req.command.response_to(0, None));
        }),
    );
    let config = ServerConfig {
        name: "idle1k".into(),
        ..ServerConfig::default()
    };
    let server = Server::start("127.0.0.1:0".parse().unwrap(), router, config).unwrap();
    // A thread names itself once it runs.
    let threads_before = wait_for("an I/O thread and 4 workers", || {
        let n = threads_named("idle1k-");
        (n == 5).then_some(n)
    });
    let rss_before = proc_status("VmRSS:");
    let addr = server.local_addr();
    let started = Instant::now();
    let clients: Vec<TcpStream> = (0..n)
        .map(|_| TcpStream::connect_timeout(&addr, T).expect("connect"))
        .collect();
    eprintln!("connected in {:?}", started.elapsed());
    wait_for("every connection accepted", || {
        (server.connection_count() == n).then_some(())
    });
    let threads_after = threads_named("idle1k-");
    let rss_after = proc_status("VmRSS:");
    let growth_kib = rss_after.saturating_sub(rss_before);
    eprintln!(
        "{n} idle connections: RSS +{growth_kib} KiB, threads {threads_before} -> {threads_after}"
    );
    assert_eq!(threads_after, threads_before, "no thread per connection");
    assert!(
        growth_kib < 8 * n as u64,
        "RSS grew {growth_kib} KiB for {n} idle connections (bound: 8 KiB each, both ends)"
    );
    // They are served, not just held.
    let mut c = Client::connect(&server.local_addr().to_string(), T).unwrap();
    assert_eq!(
        c.invoke(RemotingCommand::request(ECHO, 0), T).unwrap().code,
        0
    );
    drop(clients);
    wait_for("all closed", || {
        (server.connection_count() == 1).then_some(())
    });
}
