//! `rmqraft node`: hosts the members some broker.conf files describe until SIGTERM/SIGINT.

use crate::target::{load_config, read_config};
use rmqraft::broker::Broker;
use rmqraft::remoting::{BrokerSide, BrokerSideConfig};
use rmqraft::{Engine, ErrorKind, Group};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The signal that asked us to stop, 0 while none has.
pub static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_stop_signal(signal: libc::c_int) {
    STOP_SIGNAL.store(signal, Ordering::SeqCst);
    // A second Ctrl-C while closing ends the process at once.
    // SAFETY: signal() is async-signal-safe; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
    }
}

pub fn install_stop_handlers() -> Result<(), String> {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only stores to an atomic and calls signal(), both
        // async-signal-safe.
        let previous = unsafe {
            libc::signal(
                signal,
                on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
        if previous == libc::SIG_ERR {
            return Err(format!(
                "cannot handle signal {signal}: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        _ => "a signal",
    }
}

/// How often the foreground loop looks for a stop signal.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How often it checks that every member is still healthy.
const HEALTH_INTERVAL: Duration = Duration::from_secs(1);

pub fn run(configs: &[PathBuf]) -> Result<(), String> {
    let texts: Vec<String> = configs
        .iter()
        .map(|p| read_config(p))
        .collect::<Result<_, _>>()?;
    // Check every file before anything starts, so a bad one is a single clear line.
    for path in configs {
        load_config(path)?;
    }
    install_stop_handlers()?;
    let engine = Engine::open(&texts[0])
        .map_err(|e| format!("{}: {}", configs[0].display(), e.message()))?;
    let mut groups: Vec<Member> = Vec::new();
    for (path, text) in configs.iter().zip(&texts) {
        let ports = member_ports(path)?;
        let mut port_wait = PortWait::new();
        let (group, broker, side) = loop {
            let group = match engine.open_group(text) {
                Ok(g) => Arc::new(g),
                Err(e) => {
                    if port_wait.again(path, &ports) {
                        continue;
                    }
                    close_all(&engine, &mut groups);
                    return Err(format!("{}: {}", path.display(), e.message()));
                }
            };
            match serve_rocketmq(&group, text) {
                Ok((broker, side)) => break (group, broker, side),
                Err(e) => {
                    group.close();
                    if port_wait.again(path, &ports) {
                        continue;
                    }
                    close_all(&engine, &mut groups);
                    return Err(format!("{}: {e}", path.display()));
                }
            }
        };
        let config = group.config();
        println!(
            "rmqraft node (pid {}): {}/{} open, Raft address {}, store {}, cluster {}",
            std::process::id(),
            group.group_name(),
            group.self_id(),
            config.self_peer().addr,
            config.member_dir().display(),
            engine.config().cluster_name
        );
        if let Some(side) = &side {
            println!(
                "rmqraft node (pid {}): {}/{} serves RocketMQ clients on {}",
                std::process::id(),
                group.group_name(),
                group.self_id(),
                side.local_addr().map(|a| a.to_string()).unwrap_or_default()
            );
        }
        groups.push(Member {
            group,
            broker,
            side,
        });
    }
    let result = wait_for_stop(&groups);
    close_all(&engine, &mut groups);
    match &result {
        Ok(signal) => println!(
            "rmqraft node (pid {}): {} received; all members closed",
            std::process::id(),
            signal_name(*signal)
        ),
        Err(_) => println!(
            "rmqraft node (pid {}): closed after a member failed",
            std::process::id()
        ),
    }
    result.map(|_| ())
}

/// Returns the stop signal, or the first member failure.
fn wait_for_stop(groups: &[Member]) -> Result<i32, String> {
    let mut last_check = Instant::now();
    loop {
        let signal = STOP_SIGNAL.load(Ordering::SeqCst);
        if signal != 0 {
            return Ok(signal);
        }
        std::thread::sleep(POLL_INTERVAL);
        if last_check.elapsed() >= HEALTH_INTERVAL {
            last_check = Instant::now();
            for Member { group, .. } in groups {
                if let Err(e) = group.status() {
                    if e.kind() != ErrorKind::Closed {
                        return Err(format!(
                            "{}/{} failed: {e}",
                            group.group_name(),
                            group.self_id()
                        ));
                    }
                }
            }
        }
    }
}

/// How long a member whose port is taken keeps trying to open. A port in Linux's
/// ephemeral range (32768-60999, RocketMQ's 40911 included) can be held for a while by
/// any outbound connection of the machine that got it while the member was down.
const PORT_WAIT: Duration = Duration::from_secs(60);
/// Pause between two tries.
const PORT_RETRY: Duration = Duration::from_millis(500);

/// The ports a member listens on: its Raft address and, with `listenPort`, the broker
/// port, each with what names it in broker.conf.
fn member_ports(path: &std::path::Path) -> Result<Vec<(SocketAddr, String)>, String> {
    let (_, group) = load_config(path)?;
    let mut ports = vec![(
        group.self_peer().addr,
        format!("{}'s address in dLegerPeers", group.self_id),
    )];
    let text = read_config(path)?;
    for line in text.lines() {
        let Some((k, v)) = line.split_once(['=', ':']) else {
            continue;
        };
        if k.trim() == "listenPort" {
            if let Ok(port) = v.trim().parse::<u16>() {
                ports.push((SocketAddr::from(([0, 0, 0, 0], port)), "listenPort".into()));
            }
        }
    }
    Ok(ports)
}

/// The retries of one member's open while one of its ports is taken.
struct PortWait {
    deadline: Instant,
    said: Option<Instant>,
}

/// How often the wait for a taken port is said again.
const PORT_SAY_EVERY: Duration = Duration::from_secs(10);

impl PortWait {
    fn new() -> PortWait {
        PortWait {
            deadline: Instant::now() + PORT_WAIT,
            said: None,
        }
    }

    /// After a failed open: when one of the member's ports is taken and the deadline has
    /// not passed, says so (naming the port and the key; then every few seconds) and waits
    /// a moment: true means try again. False when every port is free (the open failed
    /// for another reason) or the deadline passed.
    fn again(&mut self, path: &std::path::Path, ports: &[(SocketAddr, String)]) -> bool {
        let taken = ports.iter().find(|(addr, _)| {
            matches!(std::net::TcpListener::bind(addr),
                    Err(e) if e.kind() == std::io::ErrorKind::AddrInUse)
        });
        let Some((addr, what)) = taken else {
            return false;
        };
        let now = Instant::now();
        if now >= self.deadline {
            return false;
        }
        if self
            .said
            .is_none_or(|t| now.duration_since(t) >= PORT_SAY_EVERY)
        {
            self.said = Some(now);
            eprintln!(
                "rmqraft node: {}: port {} ({what}) is taken, by another process or by an \
                 outbound connection that was given it while this member was down; trying \
                 again for up to {} s",
                path.display(),
                addr.port(),
                (self.deadline - now).as_secs()
            );
        }
        std::thread::sleep(PORT_RETRY.min(self.deadline - now));
        true
    }
}

/// One hosted member: its group, and when its config has `listenPort` the broker and
/// the RocketMQ protocol served over it.
struct Member {
    group: Arc<Group>,
    broker: Option<Arc<Broker>>,
    side: Option<BrokerSide>,
}

/// Opens the broker of a member whose config has `listenPort` and serves RocketMQ's
/// broker codes on that port (registering with `namesrvAddr`).
fn serve_rocketmq(
    group: &Arc<Group>,
    text: &str,
) -> Result<(Option<Arc<Broker>>, Option<BrokerSide>), String> {
    let has_port = text.lines().any(|l| {
        l.split_once(['=', ':'])
            .is_some_and(|(k, _)| k.trim() == "listenPort")
    });
    if !has_port {
        return Ok((None, None));
    }
    let broker = Arc::new(Broker::open(Arc::clone(group), text).map_err(|e| e.to_string())?);
    let config = match BrokerSideConfig::from_properties(text, &broker) {
        Ok(Some(c)) => c,
        Ok(None) => return Ok((Some(broker), None)),
        Err(e) => {
            broker.close();
            return Err(e.to_string());
        }
    };
    match BrokerSide::start(Arc::clone(&broker), config) {
        Ok(side) => Ok((Some(broker), Some(side))),
        Err(e) => {
            broker.close();
            Err(e.to_string())
        }
    }
}

fn close_all(engine: &Engine, groups: &mut Vec<Member>) {
    // Leaders hand over while their RocketMQ port still answers, so sends in flight
    // complete and new ones are told to go to the new leader.
    engine.hand_over_leaders();
    for mut m in groups.drain(..) {
        log::info!("closing {}/{}", m.group.group_name(), m.group.self_id());
        if let Some(mut side) = m.side.take() {
            side.stop();
        }
        if let Some(broker) = m.broker.take() {
            broker.close();
        }
        m.group.close();
    }
    engine.close();
}
