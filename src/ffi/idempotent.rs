//! Exactly-once appends in the C ABI (ABI 0.2, docs/C-API.md).

use super::api::entry_arg;
use super::boundary::{boundary, invalid, out_arg};
use super::callbacks::GroupShared;
use super::handle::handle_ref;
use super::types::{rmqraft_entry_meta, rmqraft_group, rmqraft_result};
use std::time::Duration;

/// Appends `len` bytes (`len` > 0) once per (`producer_id`, `sequence`) and blocks until
/// committed, at most `timeout_ms`. `producer_id`: any nonzero value the host picks
/// (random per producer instance); `sequence`: 0, 1, 2, ... per producer. Resending a
/// pair whose entry is already in the log (committed, or still in flight: then the first
/// one's outcome is awaited) appends nothing and returns RMQRAFT_OK with the original
/// entry's meta, across leader failover and restarts. At least the last 1,000 sequences
/// of each producer are remembered, for producerIdExpirationMs (default 86400000) after
/// its last append. A sequence beyond the next expected one, or older than what is
/// remembered: RMQRAFT_ERR_OUT_OF_ORDER. `rmqraft_group_read` of the entry returns the
/// `len` bytes only. Other results as `rmqraft_group_append` (RMQRAFT_ERR_TIMEOUT: resend
/// the same pair to learn the outcome).
#[no_mangle]
pub unsafe extern "C" fn rmqraft_group_append_idempotent(
    group: *mut rmqraft_group,
    producer_id: u64,
    sequence: u64,
    data: *const u8,
    len: usize,
    timeout_ms: u32,
    out: *mut rmqraft_entry_meta,
) -> rmqraft_result {
    boundary("rmqraft_group_append_idempotent", || {
        let shared: &GroupShared = handle_ref(group)?;
        if producer_id == 0 {
            return Err(invalid("producer_id must not be 0"));
        }
        let data = entry_arg(data, len)?;
        let out = out_arg(out, "out")?;
        shared.check_open()?;
        let meta = shared.group.append_idempotent(
            producer_id,
            sequence,
            data,
            Duration::from_millis(u64::from(timeout_ms)),
        )?;
        out.write(meta.into());
        Ok(())
    })
}
