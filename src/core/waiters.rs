//! The outcome of a waiting append, decided by the committed log alone.
//!
//! An append made on a leader waits under its (index, term). Only a committed entry at
//! its index decides it: the same term means committed, another term means definitely
//! not. A follower truncating the entry decides nothing: a later leader that holds it
//! may still commit it (Raft paper, Figure 8). A member that stops before the decision
//! leaves the outcome unknown. Keying by (index, term) keeps two appends at one index
//! (made in different terms by a member that led twice) apart.

use super::raft::LogView;
use std::collections::BTreeMap;

/// What the committed log says of a waiting append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decided {
    /// The committed entry at its index is the append's.
    Committed,
    /// The committed entry at its index is of another term: the append never commits.
    Replaced { committed_term: u64 },
    /// Its index is committed but no longer held here (retention removed it): this member
    /// cannot tell.
    Unknown,
}

/// Appends waiting for their outcome, by (index, term).
#[derive(Debug)]
pub struct Waiters<T> {
    /// Invariant: every key has index >= 1.
    by_key: BTreeMap<(u64, u64), T>,
}

impl<T> Default for Waiters<T> {
    fn default() -> Self {
        Waiters {
            by_key: BTreeMap::new(),
        }
    }
}

impl<T> Waiters<T> {
    pub fn new() -> Waiters<T> {
        Waiters::default()
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// The waiter of the lowest (index, term), the first to time out.
    pub fn first(&self) -> Option<&T> {
        self.by_key.values().next()
    }

    /// Adds the waiter of the append at (`index`, `term`). An (index, term) names one
    /// entry, so a second waiter for it is refused and handed back.
    pub fn insert(&mut self, index: u64, term: u64, waiter: T) -> Result<(), T> {
        if index == 0 || self.by_key.contains_key(&(index, term)) {
            return Err(waiter);
        }
        self.by_key.insert((index, term), waiter);
        Ok(())
    }

    /// Removes and returns the waiters the committed log up to `commit_index` decides,
    /// lowest index first. `log` must hold every entry up to `commit_index` it still
    /// retains; waiters above the commit index stay, whatever `log` holds there.
    pub fn take_decided<L: LogView>(
        &mut self,
        commit_index: u64,
        log: &L,
    ) -> Vec<((u64, u64), T, Decided)> {
        let mut out = Vec::new();
        while let Some(entry) = self.by_key.first_entry() {
            let (index, term) = *entry.key();
            if index > commit_index {
                break;
            }
            let decided = match log.term_at(index) {
                Some(t) if t == term => Decided::Committed,
                Some(t) => Decided::Replaced { committed_term: t },
                None => Decided::Unknown,
            };
            out.push(((index, term), entry.remove(), decided));
        }
        out
    }

    /// Removes and returns, lowest index first, the waiters for which `expired` holds,
    /// stopping at the first for which it does not (deadlines grow with the index).
    pub fn take_expired(&mut self, mut expired: impl FnMut(&T) -> bool) -> Vec<((u64, u64), T)> {
        let mut out = Vec::new();
        while let Some(entry) = self.by_key.first_entry() {
            if !expired(entry.get()) {
                break;
            }
            let key = *entry.key();
            out.push((key, entry.remove()));
        }
        out
    }

    /// Removes and returns every waiter (the member stops: their outcome is unknown).
    pub fn take_all(&mut self) -> Vec<((u64, u64), T)> {
        std::mem::take(&mut self.by_key).into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Terms(Vec<u64>);

    impl LogView for Terms {
        fn last_index(&self) -> u64 {
            self.0.len() as u64
        }
        fn term_at(&self, index: u64) -> Option<u64> {
            if index == 0 {
                return Some(0);
            }
            self.0.get(index as usize - 1).copied()
        }
    }

    #[test]
    fn only_the_committed_entry_at_the_index_decides() {
        let mut w = Waiters::new();
        for (index, term) in [(1, 1), (2, 1), (2, 3), (3, 3), (4, 3)] {
            w.insert(index, term, (index, term)).unwrap();
        }
        assert_eq!(w.insert(2, 3, (9, 9)), Err((9, 9)), "one waiter per entry");
        assert_eq!(w.insert(0, 1, (0, 1)), Err((0, 1)));
        let log = Terms(vec![1, 3, 3, 3]);
        assert!(w.take_decided(0, &log).is_empty());
        let decided: Vec<_> = w
            .take_decided(3, &log)
            .into_iter()
            .map(|(k, _, d)| (k, d))
            .collect();
        assert_eq!(
            decided,
            vec![
                ((1, 1), Decided::Committed),
                ((2, 1), Decided::Replaced { committed_term: 3 }),
                ((2, 3), Decided::Committed),
                ((3, 3), Decided::Committed),
            ]
        );
        assert_eq!(w.len(), 1, "entry 4 is not committed: still waiting");
        // Retention removed the committed entry: this member cannot tell.
        let decided = w.take_decided(4, &Terms(vec![]));
        assert_eq!(decided[0].2, Decided::Unknown);
        assert!(w.is_empty());
    }

    #[test]
    fn expiry_and_take_all_empty_the_table_in_index_order() {
        let mut w = Waiters::new();
        for index in 1..=4 {
            w.insert(index, 2, index).unwrap();
        }
        let expired: Vec<_> = w
            .take_expired(|&i| i <= 2)
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert_eq!(expired, vec![1, 2]);
        let rest: Vec<_> = w.take_all().into_iter().map(|(_, v)| v).collect();
        assert_eq!(rest, vec![3, 4]);
        assert!(w.is_empty());
    }
}
