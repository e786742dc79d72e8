//! Fault injection for the process and network fault suites: a TCP client of a group's
//! members, concurrent appenders recording into the history (tests/history), `rmqraft
//! node` processes under kill -9 and SIGSTOP, and a fault-injecting TCP proxy.
//!
//! `RMQRAFT_FAULTS_LONG=SECONDS` runs each scenario's fault phase for that long;
//! `RMQRAFT_FAULTS_SEED=N` replays the random choices of a run (every run prints its seed).
#![allow(dead_code)]

pub mod nodes;
pub mod proxy;
pub mod remote;
pub mod workload;

use std::time::{Duration, Instant};

/// The fault phase of a scenario: `ci` by default, or RMQRAFT_FAULTS_LONG seconds.
pub fn fault_phase(ci: Duration) -> Duration {
    std::env::var("RMQRAFT_FAULTS_LONG")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(ci)
}

/// Whether RMQRAFT_FAULTS_LONG asks for more than one round of a fixed scenario.
pub fn long_run() -> Option<Duration> {
    std::env::var("RMQRAFT_FAULTS_LONG")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
}

/// A seeded generator; the seed is printed so a failing run can be replayed.
pub fn rng(scenario: &str) -> fastrand::Rng {
    let seed = std::env::var("RMQRAFT_FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("{scenario}: RMQRAFT_FAULTS_SEED={seed}");
    fastrand::Rng::with_seed(seed)
}

/// Polls `f` until it gives a value; panics naming `what` after `limit`.
pub fn wait_until<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    let mut pause = Duration::from_millis(2);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Like [`wait_until`] but reports the timeout instead of panicking.
pub fn poll_until<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(2);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}
