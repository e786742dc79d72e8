//! A logger that keeps the library's log lines, for tests that check what it says. It owns
//! the process's logger: one test per binary. Include with
//! `#[path = "common/log_capture.rs"] mod log_capture;`.
#![allow(dead_code)]

use std::sync::Mutex;

pub struct Capture {
    lines: Mutex<Vec<(log::Level, String)>>,
}

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        if record.target().starts_with("rmqraft") {
            let line = record.args().to_string();
            self.lines.lock().unwrap().push((record.level(), line));
        }
    }
    fn flush(&self) {}
}

/// Installs the capture as the process's logger, at debug level.
pub fn install() -> &'static Capture {
    let capture: &'static Capture = Box::leak(Box::new(Capture {
        lines: Mutex::new(Vec::new()),
    }));
    log::set_logger(capture).unwrap();
    log::set_max_level(log::LevelFilter::Debug);
    capture
}

/// The lines logged at `level` that contain `needle`.
pub fn lines_with(capture: &Capture, level: log::Level, needle: &str) -> Vec<String> {
    capture
        .lines
        .lock()
        .unwrap()
        .iter()
        .filter(|(l, s)| *l == level && s.contains(needle))
        .map(|(_, s)| s.clone())
        .collect()
}
