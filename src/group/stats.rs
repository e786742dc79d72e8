//! What a member shows to `Engine::metrics` and `GET /metrics`: counters kept with
//! relaxed atomics on the hot paths, gauges read under the member's lock per scrape.

use super::Member;
use crate::error::ErrorKind;
use crate::metrics::{BrokerCounters, FollowerMetrics, GroupMetrics};
use crate::types::Role;
use std::sync::atomic::Ordering;

/// Slots of the per-kind error counters: every `ErrorKind::code()` is below this.
pub(super) const ERROR_CODES: usize = ErrorKind::ALL.len() + 1;

impl Member {
    /// Counts an append that ended in `kind` (refused by the call or completed with it).
    pub(super) fn count_append_error(&self, kind: ErrorKind) {
        if let Some(n) = self.counters.append_errors.get(kind.code() as usize) {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counters a broker open on this member keeps.
    pub(crate) fn broker_counters(&self) -> &BrokerCounters {
        &self.counters.broker
    }

    /// This member's metrics; `None` once it is closing.
    pub(crate) fn metrics(&self) -> Option<GroupMetrics> {
        if self.is_closing() {
            return None;
        }
        let (status, followers, applied_index, disk_bytes, flush_seconds) = {
            let st = self.state.lock().ok()?;
            let commit = st.core.commit_index;
            let followers = if st.core.role == Role::Leader {
                st.core
                    .progress
                    .iter()
                    .enumerate()
                    .filter(|(peer, _)| *peer != self.config.self_index)
                    .map(|(peer, p)| FollowerMetrics {
                        peer: self.config.peers[peer].id.clone(),
                        match_index: p.match_index,
                        commit_lag_entries: commit.saturating_sub(p.match_index),
                    })
                    .collect()
            } else {
                Vec::new()
            };
            (
                (
                    super::api::reported_role(&st),
                    st.core.term,
                    commit,
                    st.store.last_index(),
                    st.store.flushed_index(),
                ),
                followers,
                st.commit_notified,
                st.store.disk_bytes(),
                st.store.flush_latency(),
            )
        };
        let (role, term, commit_index, last_index, flushed_index) = status;
        let c = &self.counters;
        let append_errors = ErrorKind::ALL
            .iter()
            .filter_map(|kind| {
                let n = c.append_errors[kind.code() as usize].load(Ordering::Relaxed);
                (n > 0).then_some((*kind, n))
            })
            .collect();
        Some(GroupMetrics {
            group: self.config.group.clone(),
            self_id: self.config.self_id.clone(),
            role,
            term,
            commit_index,
            last_index,
            flushed_index,
            applied_index,
            followers,
            appends_total: self.appends_total.load(Ordering::Relaxed),
            append_errors,
            flush_rounds_total: flush_seconds.count,
            flush_seconds,
            elections_total: c.elections.load(Ordering::Relaxed),
            disk_bytes,
            broker: c.broker.snapshot(),
        })
    }
}
