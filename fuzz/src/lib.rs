//! Bodies of the fuzz targets, as plain functions: the libFuzzer targets in
//! `fuzz_targets/` call them, and `tests/fuzz_props.rs` (which includes this file) runs
//! the same bodies as property tests on stable. Each panics on a broken property.
//!
//! Properties: decoding hostile bytes never panics and never allocates more than the
//! frame limit plus one read chunk; a handshake fed hostile bytes never accepts without a
//! valid proof; a store opened over damaged files returns a log that is a prefix of what
//! was written (or a clear error); a config error names a key or a line.

use bytes::Bytes;
use rmqraft::config::{EngineConfig, GroupConfig, Secret};
use rmqraft::net::frame::Decoder;
use rmqraft::net::handshake::{self, AuthMessage, ConnKind, HandshakeIo, AUTH_MESSAGE_SIZE_BYTES};
use rmqraft::store::{FlushedCallback, Flusher, LogStore, StoreOptions};
use rmqraft::{Entry, ErrorKind};
use std::collections::VecDeque;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Frame limit of the decoder under test.
pub const FRAME_LIMIT_BYTES: u32 = 4096;
/// The most any decoding body may allocate at once: the frame limit plus a read chunk.
pub const DECODE_ALLOC_BYTES_MAX: usize = FRAME_LIMIT_BYTES as usize + 64 * 1024;
/// Segment size of the stores under test: the smallest `mappedFileSizeCommitLog`.
pub const SEGMENT_SIZE_BYTES: u64 = 64 << 10;
pub const CLUSTER: &str = "FuzzCluster";

/// The frame decoder over `data`, fed in pieces whose size the first byte picks.
pub fn frame_decoder(data: &[u8]) {
    let (chunk, input) = match data.split_first() {
        Some((c, rest)) => (usize::from(*c % 64) + 1, rest),
        None => (1, data),
    };
    let mut dec = Decoder::new(FRAME_LIMIT_BYTES);
    for piece in input.chunks(chunk) {
        dec.extend(piece);
        // Each frame consumes at least its 27 bytes, so this ends.
        loop {
            match dec.next_frame() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(dec.buffer_capacity() <= DECODE_ALLOC_BYTES_MAX + piece.len());
    }
}

/// A handshake stream over fixed input; writes are collected. Reading past the input is
/// a timeout, as a silent peer would be.
pub struct Scripted<'a> {
    input: &'a [u8],
    pub written: Vec<u8>,
}

impl<'a> Scripted<'a> {
    pub fn new(input: &'a [u8]) -> Scripted<'a> {
        Scripted {
            input,
            written: Vec::new(),
        }
    }
}

impl HandshakeIo for Scripted<'_> {
    fn read_exact_by(&mut self, buf: &mut [u8], _deadline: Instant) -> io::Result<()> {
        if self.input.len() < buf.len() {
            self.input = &[];
            return Err(io::Error::new(io::ErrorKind::TimedOut, "input exhausted"));
        }
        let (head, rest) = self.input.split_at(buf.len());
        buf.copy_from_slice(head);
        self.input = rest;
        Ok(())
    }

    fn write_all_by(&mut self, buf: &[u8], _deadline: Instant) -> io::Result<()> {
        self.written.extend_from_slice(buf);
        Ok(())
    }
}

/// Both ends of the handshake fed `data` as the other side's bytes, with and without a
/// secret. Without the secret nobody can produce a valid proof for this side's fresh
/// nonce, so with a secret neither end may succeed.
pub fn handshake(data: &[u8]) {
    let secret = Secret::new(b"fuzzing-secret-0123456789".to_vec());
    let deadline = Instant::now() + Duration::from_secs(1);
    let (with_secret, input) = match data.split_first() {
        Some((b, rest)) => (b & 1 == 1, rest),
        None => (false, data),
    };
    let secret = with_secret.then_some(&secret);

    let mut acceptor = Scripted::new(input);
    let accepted = handshake::accept_with(&mut acceptor, CLUSTER, 1, secret, deadline);
    assert!(
        !(accepted.is_ok() && secret.is_some()),
        "accepted a forged proof"
    );
    // The acceptor writes its hello and at most one authentication message.
    assert!(acceptor.written.len() <= 37 + CLUSTER.len() + AUTH_MESSAGE_SIZE_BYTES);

    let mut dialer = Scripted::new(input);
    let connected =
        handshake::connect_with(&mut dialer, ConnKind::Peer, CLUSTER, 2, secret, deadline);
    assert!(
        !(connected.is_ok() && secret.is_some()),
        "trusted a forged acceptor"
    );

    if let Ok(b) = <&[u8; AUTH_MESSAGE_SIZE_BYTES]>::try_from(
        input.get(..AUTH_MESSAGE_SIZE_BYTES).unwrap_or(&[]),
    ) {
        if let Ok(m) = AuthMessage::decode(b) {
            assert_eq!(&m.encode(), b);
        }
    }
}

/// The files of a store that holds `entries`, to start each case from.
pub struct StoreImage {
    pub term: Vec<u8>,
    pub checkpoint: Vec<u8>,
    pub segment: Vec<u8>,
    pub index: Vec<u8>,
    pub entries: Vec<Entry>,
}

const SEGMENT_NAME: &str = "00000000000000000000";

pub fn store_options(dir: &Path) -> StoreOptions {
    StoreOptions {
        dir: dir.to_path_buf(),
        segment_size_bytes: SEGMENT_SIZE_BYTES,
        flush: rmqraft::FlushDiskType::SyncFlush,
        async_flush_interval_ms: 10,
        entry_size_bytes_max: 16 << 10,
        prewrite_segments: false,
        classic_commitlog_dir: None,
    }
}

fn no_callback() -> FlushedCallback {
    Arc::new(|_| {})
}

/// Writes `count` entries into a fresh store at `dir`, closes it and reads its files.
pub fn store_image(dir: &Path, flusher: &Flusher, count: u64) -> StoreImage {
    let _ = std::fs::remove_dir_all(dir);
    let (mut store, _) =
        LogStore::open(store_options(dir), flusher, no_callback()).expect("open a fresh store");
    let mut entries = Vec::new();
    for i in 1..=count {
        let entry = Entry {
            index: i,
            term: 1 + i / 5,
            kind: rmqraft::EntryKind::Normal,
            body: Bytes::from(vec![i as u8; 10 + (i as usize * 37) % 300]),
        };
        store.append(&entry).expect("append");
        entries.push(entry);
    }
    store.close().expect("close");
    let read = |p: &str| std::fs::read(dir.join(p)).expect("read a store file");
    StoreImage {
        term: read("term"),
        checkpoint: read("checkpoint"),
        segment: read(&format!("data/{SEGMENT_NAME}")),
        index: read(&format!("index/{SEGMENT_NAME}")),
        entries,
    }
}

/// Lays out a store directory from `image`, with `segment` and `index` in place of its own.
fn lay_out(dir: &Path, image: &StoreImage, segment: &[u8], index: &[u8]) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("data")).expect("mkdir data");
    std::fs::create_dir_all(dir.join("index")).expect("mkdir index");
    std::fs::write(dir.join("term"), &image.term).expect("write term");
    std::fs::write(dir.join("checkpoint"), &image.checkpoint).expect("write checkpoint");
    let segment = &segment[..segment.len().min(SEGMENT_SIZE_BYTES as usize)];
    std::fs::write(dir.join("data").join(SEGMENT_NAME), segment).expect("write segment");
    std::fs::write(dir.join("index").join(SEGMENT_NAME), index).expect("write index");
}

/// Opens the store laid out at `dir`. Ok: the log must be a prefix of `image.entries`
/// (every entry readable and equal to what was written); Err: a corruption or
/// configuration error that says what is wrong. Returns the recovered last index.
fn open_and_check(dir: &Path, flusher: &Flusher, image: &StoreImage) -> Result<u64, ErrorKind> {
    match LogStore::open(store_options(dir), flusher, no_callback()) {
        Ok((store, _recovery)) => {
            let last = store.last_index();
            assert!(
                last <= image.entries.len() as u64,
                "recovered {last} entries, {} were written",
                image.entries.len()
            );
            for index in store.first_index()..=last {
                let (entry, _meta) = store.read(index).expect("a recovered entry reads");
                assert_eq!(
                    entry,
                    image.entries[index as usize - 1],
                    "entry {index} changed"
                );
            }
            store.close().expect("close");
            Ok(last)
        }
        Err(e) => {
            assert!(
                matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::Config),
                "unexpected error kind: {e}"
            );
            assert!(!e.message().is_empty());
            Err(e.kind())
        }
    }
}

/// `segment` as the store's only segment (next to the image's term, checkpoint and index).
pub fn segment_recovery(
    dir: &Path,
    flusher: &Flusher,
    image: &StoreImage,
    segment: &[u8],
) -> Result<u64, ErrorKind> {
    lay_out(dir, image, segment, &image.index);
    open_and_check(dir, flusher, image)
}

/// `index` as the index file of the image's intact segment: the index is derived data, so
/// the store must open with every entry.
pub fn index_recovery(dir: &Path, flusher: &Flusher, image: &StoreImage, index: &[u8]) {
    lay_out(dir, image, &image.segment, index);
    let last = open_and_check(dir, flusher, image).expect("a damaged index alone fails the open");
    assert_eq!(
        last,
        image.entries.len() as u64,
        "entries lost to a damaged index"
    );
}

fn check_config_error(e: &rmqraft::Error, text: &str) {
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    let m = e.message();
    let names_line = m.starts_with("line ");
    let names_key = rmqraft::config::ENGINE_KEYS
        .iter()
        .chain(rmqraft::config::GROUP_KEYS)
        .any(|k| m.starts_with(&format!("{k}:")));
    assert!(
        names_line || names_key,
        "config error names no key or line: {m:?} for {text:?}"
    );
}

/// Engine and group configuration from `text`: Ok, or a Config error naming a key or a line.
pub fn config_parser(text: &str) {
    if let Err(e) = EngineConfig::from_properties(text) {
        check_config_error(&e, text);
    }
    if let Err(e) = GroupConfig::from_properties(text) {
        check_config_error(&e, text);
    }
}

/// Flips, zeroes or truncates `base` as `ops` says: (position, value) pairs; a value of 0
/// zeroes a run, 1 truncates, anything else is XORed in.
pub fn mutate(base: &[u8], ops: &[(u32, u8)]) -> Vec<u8> {
    let mut out = base.to_vec();
    for &(at, v) in ops {
        if out.is_empty() {
            break;
        }
        let at = at as usize % out.len();
        match v {
            0 => {
                let end = (at + 64).min(out.len());
                out[at..end].fill(0);
            }
            1 => out.truncate(at),
            x => out[at] ^= x,
        }
    }
    out
}

/// Inputs split by a simple scheme so one fuzz input can drive a mutation.
pub fn ops_from(data: &[u8]) -> Vec<(u32, u8)> {
    let mut ops: VecDeque<u8> = data.iter().copied().collect();
    let mut out = Vec::new();
    while ops.len() >= 5 && out.len() < 16 {
        let b: Vec<u8> = ops.drain(..5).collect();
        out.push((u32::from_le_bytes([b[0], b[1], b[2], b[3]]), b[4]));
    }
    out
}
