//! `rmqraft node`: hosts the members some broker.conf files describe until SIGTERM/SIGINT.

use crate::target::{load_config, read_config};
use rmqraft::{Engine, ErrorKind, Group};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};
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
    let mut groups: Vec<Group> = Vec::new();
    for (path, text) in configs.iter().zip(&texts) {
        let group = match engine.open_group(text) {
            Ok(g) => g,
            Err(e) => {
                close_all(&engine, &mut groups);
                return Err(format!("{}: {}", path.display(), e.message()));
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
        groups.push(group);
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
fn wait_for_stop(groups: &[Group]) -> Result<i32, String> {
    let mut last_check = Instant::now();
    loop {
        let signal = STOP_SIGNAL.load(Ordering::SeqCst);
        if signal != 0 {
            return Ok(signal);
        }
        std::thread::sleep(POLL_INTERVAL);
        if last_check.elapsed() >= HEALTH_INTERVAL {
            last_check = Instant::now();
            for group in groups {
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

fn close_all(engine: &Engine, groups: &mut Vec<Group>) {
    for group in groups.drain(..) {
        log::info!("closing {}/{}", group.group_name(), group.self_id());
        group.close();
    }
    engine.close();
}
