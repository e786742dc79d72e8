//! A one-shot result that a blocking call waits for while a library thread completes it.

use crate::error::{Error, ErrorKind, Result};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Filled once by a completion callback, waited on by the caller. A parked wait (mutex +
/// condvar), not a channel: with many client threads a spinning receive burns the cores
/// the replication needs.
pub(crate) struct Slot<T> {
    value: Mutex<Option<Result<T>>>,
    cv: Condvar,
}

impl<T> Slot<T> {
    pub(crate) fn new() -> Arc<Slot<T>> {
        Arc::new(Slot {
            value: Mutex::new(None),
            cv: Condvar::new(),
        })
    }

    /// Keeps the first value; later ones are dropped.
    pub(crate) fn fill(&self, v: Result<T>) {
        if let Ok(mut g) = self.value.lock() {
            if g.is_none() {
                *g = Some(v);
            }
        }
        self.cv.notify_all();
    }

    /// The value, or `Timeout` ("`what` not committed within N ms; outcome unknown")
    /// after `timeout`.
    pub(crate) fn wait(&self, timeout: Duration, what: &str) -> Result<T> {
        let poisoned = || Error::new(ErrorKind::Panic, "a completion panicked");
        let deadline = Instant::now() + timeout;
        let mut g = self.value.lock().map_err(|_| poisoned())?;
        loop {
            if let Some(v) = g.take() {
                return v;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "{what} not committed within {} ms; outcome unknown",
                        timeout.as_millis()
                    ),
                ));
            }
            g = self
                .cv
                .wait_timeout(g, deadline - now)
                .map_err(|_| poisoned())?
                .0;
        }
    }
}
