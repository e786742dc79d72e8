//! Rate limits for log lines a remote can cause at will (refused handshakes, a full
//! connection table, a peer reconnecting with the wrong secret): one line per key per
//! interval, with a count of the lines held back since the last one.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys remembered at once; past this, stale keys are forgotten, then every new remote
/// shares one key.
const KEYS_MAX: usize = 1024;

pub(crate) struct LogLimiter {
    interval: Duration,
    seen: Mutex<HashMap<(IpAddr, u8), Slot>>,
}

struct Slot {
    last: Instant,
    held_back: u64,
}

impl LogLimiter {
    pub(crate) fn new(interval: Duration) -> LogLimiter {
        LogLimiter {
            interval,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(held_back)` when a line about (`ip`, `what`) may be logged now; `None` when
    /// one was logged less than the interval ago (this one is counted instead).
    pub(crate) fn admit(&self, ip: IpAddr, what: u8) -> Option<u64> {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let mut key = (ip, what);
        if !seen.contains_key(&key) && seen.len() >= KEYS_MAX {
            let interval = self.interval;
            seen.retain(|_, s| now.duration_since(s.last) < interval);
            if seen.len() >= KEYS_MAX {
                key = (IpAddr::V4(Ipv4Addr::UNSPECIFIED), what);
            }
        }
        match seen.get_mut(&key) {
            Some(slot) if now.duration_since(slot.last) < self.interval => {
                slot.held_back += 1;
                None
            }
            Some(slot) => {
                let held_back = slot.held_back;
                slot.last = now;
                slot.held_back = 0;
                Some(held_back)
            }
            None => {
                seen.insert(
                    key,
                    Slot {
                        last: now,
                        held_back: 0,
                    },
                );
                Some(0)
            }
        }
    }
}

/// " (N similar lines held back)" or nothing.
pub(crate) fn held_back_note(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} similar lines in the last interval held back)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_key_per_interval() {
        let l = LogLimiter::new(Duration::from_millis(200));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(l.admit(a, 1), Some(0));
        assert_eq!(l.admit(a, 1), None);
        assert_eq!(l.admit(a, 1), None);
        assert_eq!(l.admit(a, 2), Some(0));
        assert_eq!(l.admit(b, 1), Some(0));
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(l.admit(a, 1), Some(2));
    }

    #[test]
    fn many_remotes_share_a_key_past_the_bound() {
        let l = LogLimiter::new(Duration::from_secs(60));
        for i in 0..KEYS_MAX as u32 {
            assert!(l.admit(IpAddr::V4(Ipv4Addr::from(i + 1)), 0).is_some());
        }
        let extra = |i: u32| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        assert_eq!(l.admit(extra(1), 0), Some(0));
        assert_eq!(l.admit(extra(2), 0), None);
        assert!(l.seen.lock().unwrap().len() <= KEYS_MAX + 1);
    }
}
