//! The fuzz targets' bodies (fuzz/src/lib.rs) as property tests on stable: 10,000 cases
//! each of hostile frames, handshakes, segments, index files and broker.conf text.
//! `RMQRAFT_FUZZ_CASES` raises (or lowers) the count.

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod bodies;

use bodies::{StoreImage, DECODE_ALLOC_BYTES_MAX};
use proptest::prelude::*;
use rmqraft::config::FlusherKind;
use rmqraft::net::handshake::{AuthMessage, ConnKind, Hello, Status, FLAG_AUTH};
use rmqraft::store::Flusher;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

#[path = "common/alloc_watch.rs"]
mod alloc_watch;
use alloc_watch::largest_alloc_in;

fn cases() -> u32 {
    std::env::var("RMQRAFT_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A store directory on tmpfs when there is one (the cases are file-system bound), the
/// flusher, and the image of a valid store, shared by the cases of one test.
struct StoreFixture {
    _root: tempfile::TempDir,
    dir: PathBuf,
    flusher: Flusher,
    image: StoreImage,
}

fn store_fixture() -> StoreFixture {
    let shm = std::path::Path::new("/dev/shm");
    let root = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let dir = root.path().join("member");
    let flusher = Flusher::start(FlusherKind::Pwrite).unwrap();
    let image = bodies::store_image(&dir, &flusher, 40);
    assert_eq!(image.entries.len(), 40);
    StoreFixture {
        _root: root,
        dir,
        flusher,
        image,
    }
}

fn segment_fixture() -> &'static Mutex<StoreFixture> {
    static F: OnceLock<Mutex<StoreFixture>> = OnceLock::new();
    F.get_or_init(|| Mutex::new(store_fixture()))
}

fn index_fixture() -> &'static Mutex<StoreFixture> {
    static F: OnceLock<Mutex<StoreFixture>> = OnceLock::new();
    F.get_or_init(|| Mutex::new(store_fixture()))
}

/// A dialer's valid-looking opening: a hello with the AUTH flag, then a proof.
fn dialer_bytes() -> Vec<u8> {
    let mut hello = Hello::new(ConnKind::Peer, 42, bodies::CLUSTER);
    hello.flags = FLAG_AUTH;
    hello.nonce = [7; 16];
    let mut out = hello.encode();
    out.extend_from_slice(
        &AuthMessage {
            status: Status::Accepted,
            mac: [3; 32],
        }
        .encode(),
    );
    out
}

const BROKER_CONF: &str = "brokerClusterName = RaftCluster\n\
    brokerName = RaftNode00\n\
    dLegerSecret = a-long-shared-secret\n\
    dLegerGroup = RaftNode00\n\
    dLegerPeers = n0-127.0.0.1:40911;n1-127.0.0.1:40912;n2-127.0.0.1:40913\n\
    dLegerSelfId = n1\n\
    storePathRootDir = /tmp/rmqstore/node01\n\
    mappedFileSizeCommitLog = 1048576\n\
    flushDiskType = ASYNC_FLUSH\n\
    # a comment\n\
    preferredLeaderIds = n0\n\
    deleteWhen = 04;16\n\
    maxEntrySize = 65536\n";

static DNS_CASES: AtomicUsize = AtomicUsize::new(0);

/// True when parsing `text` would resolve a host name in dLegerPeers (a numeric address,
/// or one whose port does not parse, needs no lookup).
fn asks_dns(text: &str) -> bool {
    let Ok(props) = rmqraft::config::parse_properties(text) else {
        return false;
    };
    let Some(peers) = props.get("dLegerPeers") else {
        return false;
    };
    peers
        .split(';')
        .filter_map(|item| item.split_once('-'))
        .any(|(_, addr)| {
            let addr = addr.trim();
            if addr.parse::<std::net::SocketAddr>().is_ok() {
                return false;
            }
            match addr.rsplit_once(':') {
                Some((host, port)) => {
                    port.parse::<u16>().is_ok() && host.parse::<std::net::IpAddr>().is_err()
                }
                None => false,
            }
        })
}

fn mutation_ops() -> impl Strategy<Value = Vec<(u32, u8)>> {
    proptest::collection::vec((any::<u32>(), any::<u8>()), 1..8)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn frame_decoder_body(data in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let largest = largest_alloc_in(|| bodies::frame_decoder(&data));
        prop_assert!(largest <= DECODE_ALLOC_BYTES_MAX, "allocated {largest} bytes");
    }

    #[test]
    fn handshake_body_with_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        let largest = largest_alloc_in(|| bodies::handshake(&data));
        prop_assert!(largest <= DECODE_ALLOC_BYTES_MAX, "allocated {largest} bytes");
    }

    #[test]
    fn handshake_body_with_mutated_openings(with_secret in any::<bool>(), ops in mutation_ops()) {
        let mut input = vec![u8::from(with_secret)];
        input.extend(bodies::mutate(&dialer_bytes(), &ops));
        let largest = largest_alloc_in(|| bodies::handshake(&input));
        prop_assert!(largest <= DECODE_ALLOC_BYTES_MAX, "allocated {largest} bytes");
    }

    #[test]
    fn segment_recovery_with_random_bytes(
        valid_prefix in 0usize..20_000,
        tail in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let f = segment_fixture().lock().unwrap_or_else(|p| p.into_inner());
        let mut segment = f.image.segment[..valid_prefix.min(f.image.segment.len())].to_vec();
        segment.extend_from_slice(&tail);
        let _ = bodies::segment_recovery(&f.dir, &f.flusher, &f.image, &segment);
    }

    #[test]
    fn segment_recovery_with_mutations(ops in mutation_ops()) {
        let f = segment_fixture().lock().unwrap_or_else(|p| p.into_inner());
        let segment = bodies::mutate(&f.image.segment, &ops);
        let _ = bodies::segment_recovery(&f.dir, &f.flusher, &f.image, &segment);
    }

    #[test]
    fn index_recovery_with_random_bytes_and_mutations(
        random in proptest::collection::vec(any::<u8>(), 0..2048),
        ops in mutation_ops(),
        use_random in any::<bool>(),
    ) {
        let f = index_fixture().lock().unwrap_or_else(|p| p.into_inner());
        let index = if use_random { random } else { bodies::mutate(&f.image.index, &ops) };
        bodies::index_recovery(&f.dir, &f.flusher, &f.image, &index);
    }

    #[test]
    fn config_parser_with_random_text(text in "(?s).{0,300}") {
        let largest = largest_alloc_in(|| bodies::config_parser(&text));
        prop_assert!(largest <= 64 << 10, "allocated {largest} bytes");
    }

    #[test]
    fn config_parser_with_mutations(ops in mutation_ops()) {
        let mutated = bodies::mutate(BROKER_CONF.as_bytes(), &ops);
        let text = String::from_utf8_lossy(&mutated);
        if asks_dns(&text) {
            // Host names in dLegerPeers are resolved; this machine's resolver is slow to
            // say no. Such cases still parse the engine keys.
            DNS_CASES.fetch_add(1, Ordering::Relaxed);
            let engine_only: String = text.lines().filter(|l| !l.contains("dLegerPeers")).collect::<Vec<_>>().join("\n");
            bodies::config_parser(&engine_only);
        } else {
            bodies::config_parser(&text);
        }
    }
}

#[test]
fn the_bodies_can_fail() {
    // Guards the properties: an intact store opens with every entry, a damaged one with
    // only the entries before the damage.
    let f = segment_fixture().lock().unwrap_or_else(|p| p.into_inner());
    let full = bodies::segment_recovery(&f.dir, &f.flusher, &f.image, &f.image.segment).unwrap();
    assert_eq!(full, 40);
    let second_record_at = 48 + f.image.entries[0].body.len();
    let cut = bodies::mutate(&f.image.segment, &[(second_record_at as u32 + 50, 0x40)]);
    let kept = bodies::segment_recovery(&f.dir, &f.flusher, &f.image, &cut).unwrap();
    assert_eq!(kept, 1, "a damaged second entry leaves one");
}
