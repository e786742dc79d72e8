//! Storage against an in-memory model: random appends, truncations, syncs and reopens.

use bytes::Bytes;
use proptest::prelude::*;
use rmqraft::config::{FlushDiskType, FlusherKind};
use rmqraft::store::{Flusher, LogStore, StoreOptions};
use rmqraft::{Entry, EntryKind};
use std::sync::Arc;

#[derive(Debug, Clone)]
enum Op {
    Append {
        count: usize,
        len: usize,
        term_step: u64,
    },
    Truncate {
        back: u64,
    },
    Sync,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1usize..20, 0usize..3000, 0u64..2).prop_map(|(count, len, term_step)| Op::Append { count, len, term_step }),
        2 => (0u64..30).prop_map(|back| Op::Truncate { back }),
        1 => Just(Op::Sync),
        1 => Just(Op::Reopen),
    ]
}

fn open(dir: &std::path::Path, f: &Flusher, flush: FlushDiskType) -> LogStore {
    let opts = StoreOptions {
        dir: dir.to_path_buf(),
        segment_size_bytes: 16 << 10,
        flush,
        async_flush_interval_ms: 5,
        entry_size_bytes_max: 4 << 10,
        prewrite_segments: false,
        classic_commitlog_dir: None,
    };
    let (s, rec) = LogStore::open(opts, f, Arc::new(|_| {})).unwrap();
    assert_eq!(rec.truncated_entries, 0, "{:?}", rec.notes);
    assert!(rec.notes.is_empty(), "{:?}", rec.notes);
    s
}

fn check(s: &LogStore, model: &[Entry]) {
    assert_eq!(s.first_index(), 1);
    assert_eq!(s.last_index(), model.len() as u64);
    assert_eq!(s.last_term(), model.last().map_or(0, |e| e.term));
    assert!(s.flushed_index() <= s.last_index());
    for e in model {
        assert_eq!(&s.read(e.index).unwrap().0, e);
        assert_eq!(s.term_at(e.index), Some(e.term));
    }
    assert_eq!(s.term_at(model.len() as u64 + 1), None);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn store_matches_model(ops in proptest::collection::vec(op(), 1..25), async_flush: bool) {
        let tmp = tempfile::tempdir().unwrap();
        let f = Flusher::start(FlusherKind::Auto).unwrap();
        let flush = if async_flush { FlushDiskType::AsyncFlush } else { FlushDiskType::SyncFlush };
        let mut s = open(tmp.path(), &f, flush);
        let mut model: Vec<Entry> = Vec::new();
        let mut term = 1u64;
        for (n, op) in ops.into_iter().enumerate() {
            match op {
                Op::Append { count, len, term_step } => {
                    term += term_step;
                    for k in 0..count {
                        let index = model.len() as u64 + 1;
                        let body: Vec<u8> = (0..(len + k * 13) % 4000).map(|b| (b as u8) ^ (n as u8) ^ (index as u8)).collect();
                        let kind = if body.is_empty() { EntryKind::Noop } else { EntryKind::Normal };
                        let e = Entry { index, term, kind, body: Bytes::from(body) };
                        let meta = s.append(&e).unwrap();
                        prop_assert_eq!(meta.index, index);
                        model.push(e);
                    }
                }
                Op::Truncate { back } => {
                    let from = (model.len() as u64 + 1).saturating_sub(back).max(1);
                    s.truncate_suffix(from).unwrap();
                    model.truncate(from as usize - 1);
                    prop_assert!(s.flushed_index() < from);
                }
                Op::Sync => {
                    s.sync().unwrap();
                    prop_assert_eq!(s.flushed_index(), model.len() as u64);
                }
                Op::Reopen => {
                    s.close().unwrap();
                    s = open(tmp.path(), &f, flush);
                    prop_assert_eq!(s.flushed_index(), model.len() as u64);
                }
            }
            check(&s, &model);
        }
        s.close().unwrap();
        let s = open(tmp.path(), &f, flush);
        check(&s, &model);
        drop(s);
        f.close();
    }
}
