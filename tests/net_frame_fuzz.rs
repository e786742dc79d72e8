//! Decoding hostile bytes: never a panic, never an allocation past the frame limit.

use bytes::Bytes;
use proptest::prelude::*;
use rmqraft::net::frame::{decode, encode, Decoder, FrameError, FRAME_MAGIC, HEADER_SIZE_BYTES};
use rmqraft::net::{Frame, Message, PushRequest, VoteResponse};
use rmqraft::{Entry, EntryKind};

#[path = "common/alloc_watch.rs"]
mod alloc_watch;
use alloc_watch::largest_alloc_in;

const LIMIT: u32 = 4096;
/// One read chunk of the decoder plus the frame limit.
const ALLOC_BOUND_BYTES: usize = 64 * 1024 + LIMIT as usize;

/// Feeds `input` to a fresh decoder in `chunk`-sized pieces until it errors or runs dry.
fn drain(input: &[u8], chunk: usize) -> Vec<Result<Frame, FrameError>> {
    let mut dec = Decoder::new(LIMIT);
    let mut out = Vec::new();
    // Each frame consumes at least one byte, so this is bounded by the input length.
    for piece in input.chunks(chunk.max(1)) {
        dec.extend(piece);
        loop {
            match dec.next_frame() {
                Ok(Some(f)) => out.push(Ok(f)),
                Ok(None) => break,
                Err(e) => {
                    out.push(Err(e));
                    return out;
                }
            }
        }
    }
    out
}

/// A frame header for `kind` and `body` (after the address), with a correct CRC, so the
/// body decoder sees the random bytes.
fn framed(kind: u8, request_id: u64, addr_and_body: &[u8]) -> Vec<u8> {
    let total = HEADER_SIZE_BYTES + addr_and_body.len();
    let mut b = Vec::with_capacity(total);
    b.extend_from_slice(&FRAME_MAGIC.to_le_bytes());
    b.push(1);
    b.push(kind);
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(&(total as u32).to_le_bytes());
    b.extend_from_slice(&request_id.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(addr_and_body);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&b[..20]), &b[24..]);
    b[20..24].copy_from_slice(&crc.to_le_bytes());
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_nor_overallocate(
        input in proptest::collection::vec(any::<u8>(), 0..1024),
        chunk in 1usize..64,
    ) {
        let largest = largest_alloc_in(|| { drain(&input, chunk); });
        prop_assert!(largest <= ALLOC_BOUND_BYTES, "allocated {largest} bytes");
    }

    #[test]
    fn random_bodies_behind_a_valid_header_never_panic_nor_overallocate(
        kind in prop::sample::select(vec![1u8, 2, 3, 4, 5, 16, 17, 18, 19, 20]),
        request_id in any::<u64>(),
        addr_and_body in proptest::collection::vec(any::<u8>(), 0..600),
        // Seed the push count field with large values often.
        big_count in any::<u32>(),
    ) {
        let mut body = addr_and_body;
        // A short ASCII group name, so most cases get past the address into the body.
        if body.len() >= 3 {
            let group_len = (body[0] as usize % 8).min(body.len() - 3);
            body[0] = group_len as u8;
            body[1..1 + group_len].fill(b'g');
            let count_at = 1 + group_len + 2 + 32;
            if kind == 3 && body.len() >= count_at + 4 {
                body[count_at..count_at + 4].copy_from_slice(&big_count.to_le_bytes());
            }
        }
        let bytes = framed(kind, request_id, &body);
        let largest = largest_alloc_in(|| {
            if bytes.len() <= LIMIT as usize {
                let _ = decode(Bytes::from(bytes.clone()), LIMIT);
            }
            drain(&bytes, 7);
        });
        prop_assert!(largest <= ALLOC_BOUND_BYTES, "allocated {largest} bytes");
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn encoded_frames_round_trip_through_a_split_stream(
        group in "[A-Za-z0-9_-]{0,40}",
        from in any::<u8>(),
        to in any::<u8>(),
        term in any::<u64>(),
        bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8),
        chunk in 1usize..100,
    ) {
        let entries = bodies.into_iter().enumerate().map(|(i, b)| Entry {
            index: term.wrapping_add(i as u64),
            term,
            kind: if b.is_empty() { EntryKind::Noop } else { EntryKind::Normal },
            body: Bytes::from(b),
        }).collect();
        let frames = vec![
            Frame { group: group.clone(), from, to, request_id: term, message: Message::Push(PushRequest {
                term, prev_index: term / 2, prev_term: term / 3, commit_index: term / 4, entries,
            })},
            Frame { group, from: to, to: from, request_id: !term, message: Message::VoteResp(VoteResponse {
                term, granted: term % 2 == 0, pre_vote: term % 3 == 0,
            })},
        ];
        let mut stream = Vec::new();
        for f in &frames {
            encode(f, &mut stream).unwrap();
        }
        let got: Vec<Frame> = drain(&stream, chunk).into_iter().map(|r| r.unwrap()).collect();
        prop_assert_eq!(got, frames);
    }
}

#[test]
fn the_allocation_watch_can_fail() {
    // Guards the guard: a large allocation on a watched thread is seen.
    let largest = largest_alloc_in(|| drop(std::hint::black_box(vec![0u8; ALLOC_BOUND_BYTES + 1])));
    assert!(largest > ALLOC_BOUND_BYTES);
}
