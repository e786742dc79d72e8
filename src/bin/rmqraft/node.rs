//! `rmqraft node`: hosts the members some broker.conf files describe until SIGTERM/SIGINT.

use crate::target::{load_config, read_config};
use rmqraft::broker::Broker;
use rmqraft::remoting::{BrokerSide, BrokerSideConfig};
use rmqraft::{Engine, ErrorKind, Group};
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
        let group = match engine.open_group(text) {
            Ok(g) => Arc::new(g),
            Err(e) => {
                close_all(&engine, &mut groups);
                return Err(format!("{}: {}", path.display(), e.message()));
            }
        };
        let (broker, side) = match serve_rocketmq(&group, text) {
            Ok(b) => b,
            Err(e) => {
                group.close();
                close_all(&engine, &mut groups);
                return Err(format!("{}: {e}", path.display()));
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
    for m in groups.iter() {
        m.group.hand_over_leadership();
    }
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
