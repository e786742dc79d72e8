//! The quorum commit index: a pure function over the members' acknowledged indexes.

/// The highest index held by a majority of `acked` (one value per member, self included).
///
/// With `n` members a majority is `n / 2 + 1`; sorting descending, the value at position
/// `n / 2` is held by at least that many members. An empty slice gives 0.
pub fn quorum_index(acked: &[u64]) -> u64 {
    if acked.is_empty() {
        return 0;
    }
    let mut sorted = acked.to_vec();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted[acked.len() / 2]
}

/// Members in a majority of `members`.
pub fn majority(members: usize) -> usize {
    members / 2 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_index_table() {
        let table: &[(&[u64], u64)] = &[
            (&[], 0),
            (&[7], 7),
            (&[5, 3], 3),
            (&[5, 3, 1], 3),
            (&[1, 3, 5], 3),
            (&[9, 9, 0], 9),
            (&[0, 0, 9], 0),
            (&[4, 4, 4], 4),
            (&[10, 8, 6, 4], 6),
            (&[10, 8, 6, 4, 2], 6),
            (&[2, 10, 4, 8, 6], 6),
            (&[100, 0, 0, 0, 100], 0),
            (&[100, 100, 0, 0, 100], 100),
        ];
        for (acked, want) in table {
            assert_eq!(quorum_index(acked), *want, "{acked:?}");
        }
    }

    #[test]
    fn majority_table() {
        for (n, want) in [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (7, 4)] {
            assert_eq!(majority(n), want);
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The quorum index is held by a majority, and no higher value is.
        #[test]
        fn quorum_index_is_the_highest_majority_value(acked in proptest::collection::vec(0u64..20, 1..8)) {
            let q = quorum_index(&acked);
            let holding = |v: u64| acked.iter().filter(|&&a| a >= v).count();
            prop_assert!(holding(q) >= majority(acked.len()));
            prop_assert!(holding(q + 1) < majority(acked.len()));
        }
    }
}
