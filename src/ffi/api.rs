//! The exported functions. Each one is a thin body inside [`boundary`]: check the
//! arguments, call the Rust API, write the outputs last.

use super::boundary::{boundary, bytes_arg, copy_last_error, invalid, out_arg, str_arg};
use super::callbacks::{GroupShared, UserData};
use super::handle::{handle_ref, into_handle, take_handle, EngineHandle};
use super::messages::Messages;
use super::types::{
    rmqraft_append_cb, rmqraft_engine, rmqraft_entry_meta, rmqraft_group, rmqraft_group_state,
    rmqraft_result, rmqraft_result_arg, rmqraft_role_cb,
};
use crate::engine::Engine;
use crate::error::{Error, ErrorKind, Result};
use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

const fn parse_version_part(text: &str) -> u32 {
    let bytes = text.as_bytes();
    let mut value = 0u32;
    let mut i = 0;
    while i < bytes.len() {
        assert!(
            bytes[i].is_ascii_digit(),
            "version parts are decimal numbers"
        );
        value = value * 10 + (bytes[i] - b'0') as u32;
        i += 1;
    }
    value
}

const VERSION_MAJOR: u32 = parse_version_part(env!("CARGO_PKG_VERSION_MAJOR"));
const VERSION_MINOR: u32 = parse_version_part(env!("CARGO_PKG_VERSION_MINOR"));
const VERSION_PATCH: u32 = parse_version_part(env!("CARGO_PKG_VERSION_PATCH"));
const VERSION_STRING: &CStr =
    match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(s) => s,
        Err(_) => panic!("the package version contains a NUL"),
    };

/// The library's version: `RMQRAFT_VERSION_MAJOR << 16 | RMQRAFT_VERSION_MINOR << 8 |
/// RMQRAFT_VERSION_PATCH` of the library actually loaded, which may be newer than the
/// header a host was compiled with.
#[no_mangle]
pub extern "C" fn rmqraft_version() -> u32 {
    boundary("rmqraft_version", || {
        VERSION_MAJOR << 16 | VERSION_MINOR << 8 | VERSION_PATCH
    })
}

/// The library's version as a static string, e.g. "0.1.0".
#[no_mangle]
pub extern "C" fn rmqraft_version_string() -> *const c_char {
    boundary("rmqraft_version_string", || VERSION_STRING)
}

/// The name of a result constant as a static string, e.g. "RMQRAFT_ERR_NOT_LEADER";
/// "RMQRAFT_UNKNOWN_RESULT" for a number that is not a result code.
#[no_mangle]
pub extern "C" fn rmqraft_result_name(r: rmqraft_result_arg) -> *const c_char {
    boundary("rmqraft_result_name", || -> &'static CStr {
        static NAMES: OnceLock<Vec<CString>> = OnceLock::new();
        let names = NAMES.get_or_init(|| {
            let mut names = vec![CString::from(c"RMQRAFT_OK")];
            for kind in ErrorKind::ALL {
                assert_eq!(
                    usize::try_from(kind.code()).ok(),
                    Some(names.len()),
                    "result codes are dense"
                );
                names.push(CString::new(kind.abi_name()).expect("names have no NUL"));
            }
            names
        });
        match usize::try_from(r.0).ok().and_then(|i| names.get(i)) {
            Some(name) => name.as_c_str(),
            None => c"RMQRAFT_UNKNOWN_RESULT",
        }
    })
}

/// Copies the detail of this thread's last failed call ("function: message") into `buf`:
/// at most `cap - 1` bytes plus a NUL, nothing when `cap` is 0 or `buf` is NULL. Returns
/// the detail's full length (0 when no call on this thread has failed), so a host can
/// size its buffer. Successful calls leave the detail alone.
#[no_mangle]
pub unsafe extern "C" fn rmqraft_last_error(buf: *mut c_char, cap: usize) -> usize {
    boundary("rmqraft_last_error", || copy_last_error(buf, cap))
}

/// Opens an engine. `properties` is broker.conf text (engine keys: brokerClusterName,
/// rmqraftFlusher, rmqraftMaxFrameSize; other keys are ignored) and may be NULL or "".
/// On RMQRAFT_OK, `*out` is a new engine; free it with `rmqraft_engine_close()`.
///
/// When the environment variable RMQRAFT_LOG is set (e.g. "info" or
/// "rmqraft=debug"), the first engine opened in the process sends the library's log to
/// standard error with that filter; otherwise the library logs through the `log` facade
/// only and a process without a logger sees nothing.
#[no_mangle]
pub unsafe extern "C" fn rmqraft_engine_open(
    properties: *const c_char,
    out: *mut *mut rmqraft_engine,
) -> rmqraft_result {
    boundary("rmqraft_engine_open", || {
        let out = out_arg(out, "out")?;
        let properties = if properties.is_null() {
            ""
        } else {
            str_arg(properties, "properties")?
        };
        init_logging_from_env();
        let engine = Engine::open(properties)?;
        out.write(into_handle(EngineHandle {
            engine,
            groups: Mutex::new(Vec::new()),
        }));
        Ok(())
    })
}

fn init_logging_from_env() {
    if let Ok(filter) = std::env::var("RMQRAFT_LOG") {
        // Fails harmlessly when the process already has a logger.
        let _ = env_logger::Builder::new().parse_filters(&filter).try_init();
    }
}

/// Closes every group still open on the engine (as `rmqraft_group_close()` would, except
/// that their handles stay allocated: later calls on them return RMQRAFT_ERR_CLOSED and
/// each must still be freed with `rmqraft_group_close()`), stops and joins the engine's
/// threads, then frees the engine. On return no callback of any of its groups is running
/// or will run. NULL is a no-op. Must not be called from a callback.
#[no_mangle]
pub unsafe extern "C" fn rmqraft_engine_close(engine: *mut rmqraft_engine) {
    boundary("rmqraft_engine_close", || {
        let Some(handle) = take_handle(engine) else {
            return;
        };
        let groups =
            std::mem::take(&mut *handle.groups.lock().unwrap_or_else(PoisonError::into_inner));
        for group in groups.iter().filter_map(Weak::upgrade) {
            group.shutdown();
        }
        handle.engine.close();
    })
}

/// Opens one member of a group on `engine` from broker.conf text (see docs/C-API.md for the
/// keys: dLegerGroup, dLegerPeers, dLegerSelfId and storePathRootDir are required).
/// RMQRAFT_ERR_CONFIG names a bad key; RMQRAFT_ERR_EXISTS means this (group, self id) or
/// its store directory is already open; RMQRAFT_ERR_IO covers a listen address in use.
/// On RMQRAFT_OK, `*out` is a new group handle; free it with `rmqraft_group_close()`.
#[no_mangle]
pub unsafe extern "C" fn rmqraft_group_open(
    engine: *mut rmqraft_engine,
    properties: *const c_char,
    out: *mut *mut rmqraft_group,
) -> rmqraft_result {
    boundary("rmqraft_group_open", || {
        let handle = handle_ref(engine)?;
        let properties = str_arg(properties, "properties")?;
        let out = out_arg(out, "out")?;
        let group = Arc::new(handle.engine.open_group(properties)?);
        let messages = Messages::new(&group, properties)?;
        let shared = Arc::new(GroupShared::new(group, messages));
        let mut groups = handle.groups.lock().unwrap_or_else(PoisonError::into_inner);
        groups.retain(|g| g.strong_count() > 0);
        groups.push(Arc::downgrade(&shared));
        drop(groups);
        out.write(into_handle(shared));
        Ok(())
    })
}

/// Closes the member: stops its threads, flushes its log, releases its store, and frees
/// the handle. Async appends still pending are completed with RMQRAFT_ERR_OUTCOME_UNKNOWN on the
/// calling thread before it returns; on return no callback of this group is running or
/// will run. NULL is a no-op. Must not be called from a callback, nor race with other
/// calls on the same handle.
#[no_mangle]
pub unsafe extern "C" fn rmqraft_group_close(group: *mut rmqraft_group) {
    boundary("rmqraft_group_close", || {
        if let Some(shared) = take_handle(group) {
            shared.shutdown();
        }
    })
}

pub(super) fn entry_arg<'a>(data: *const u8, len: usize) -> Result<&'a [u8]> {
    if len == 0 {
        return Err(invalid("data: an entry may not be empty (len is 0)"));
    }
    // SAFETY: the ABI asks for `len` readable bytes at `data`.
    unsafe { bytes_arg(data, len, "data") }
}

/// Appends `len` bytes (`len` > 0) on the leader and blocks until the entry is committed
/// under the group's flush policy (SYNC_FLUSH: durable on a quorum; ASYNC_FLUSH: in memory
/// on a quorum), at most `timeout_ms` milliseconds. On RMQRAFT_OK, `*out` tells where the
/// entry sits. RMQRAFT_ERR_NOT_LEADER on a follower; RMQRAFT_ERR_TIMEOUT leaves the
/// outcome unknown; RMQRAFT_ERR_TOO_LARGE above maxEntrySize; RMQRAFT_ERR_BUSY when
/// maxPendingRequestsNum appends are in flight.
#[no_mangle]
pub unsafe extern "C" fn rmqraft_group_append(
    group: *mut rmqraft_group,
    data: *const u8,
    len: usize,
    timeout_ms: u32,
    out: *mut rmqraft_entry_meta,
) -> rmqraft_result {
    boundary("rmqraft_group_append", || {
        let shared = handle_ref(group)?;
        let data = entry_arg(data, len)?;
        let out = out_arg(out, "out")?;
        shared.check_open()?;
        let meta = shared
            .group
            .append(data, Duration::from_millis(u64::from(timeout_ms)))?;
        out.write(meta.into());
        Ok(())
    })
}

/// Starts appending `len` bytes (`len` > 0) on the leader and returns at once; the data
/// is copied before it returns. On RMQRAFT_OK, `cb` runs exactly once later with the
/// final result (see `rmqraft_append_cb` for the thread); on any other result `cb` never
/// runs. RMQRAFT_ERR_BUSY when maxPendingRequestsNum appends are in flight.
#[no_mangle]
pub unsafe extern "C" fn rmqraft_group_append_async(
    group: *mut rmqraft_group,
    data: *const u8,
    len: usize,
    cb: rmqraft_append_cb,
    userdata: *mut c_void,
) -> rmqraft_result {
    boundary("rmqraft_group_append_async", || {
        let shared = handle_ref(group)?;
        let data = entry_arg(data, len)?;
        let cb = cb.ok_or_else(|| invalid("cb is NULL"))?;
        shared.append_async(data, cb, UserData(userdata))
    })
}

/// Reads the committed entry `index` held by this member (leader or follower) into `buf`
/// (`cap` bytes; `buf` may be NULL when `cap` is 0). On RMQRAFT_OK, `*len_out` is the
/// entry's length and `*meta_out` its place. When the entry is longer than `cap`, returns
/// RMQRAFT_ERR_BUFFER_TOO_SMALL with `*len_out` set to the size needed (the one output
/// written on failure). RMQRAFT_ERR_NOT_FOUND when `index` is not committed yet or below
/// the first retained index. The no-op entry a new leader appends at the start of its term
/// reads as 0 bytes.
#[no_mangle]
pub unsafe extern "C" fn rmqraft_group_read(
    group: *mut rmqraft_group,
    index: u64,
    buf: *mut u8,
    cap: usize,
    len_out: *mut usize,
    meta_out: *mut rmqraft_entry_meta,
) -> rmqraft_result {
    boundary("rmqraft_group_read", || {
        let shared = handle_ref(group)?;
        if buf.is_null() && cap > 0 {
            return Err(invalid("buf is NULL but cap is not 0"));
        }
        let len_out = out_arg(len_out, "len_out")?;
        let meta_out = out_arg(meta_out, "meta_out")?;
        shared.check_open()?;
        let (body, meta) = shared.group.read(index)?;
        if body.len() > cap {
            len_out.write(body.len());
            return Err(Error::new(
                ErrorKind::BufferTooSmall,
                format!(
                    "entry {index} is {} bytes; the buffer holds {cap}",
                    body.len()
                ),
            ));
        }
        if !body.is_empty() {
            // SAFETY: `buf` is non-NULL here (cap >= len > 0) and holds `cap` bytes.
            std::ptr::copy_nonoverlapping(body.as_ptr(), buf, body.len());
        }
        len_out.write(body.len());
        meta_out.write(meta.into());
        Ok(())
    })
}

/// Fills `*out` with this member's view of its group: role, positions of itself and of
/// the known leader in dLegerPeers, term and log indexes.
#[no_mangle]
pub unsafe extern "C" fn rmqraft_group_status(
    group: *const rmqraft_group,
    out: *mut rmqraft_group_state,
) -> rmqraft_result {
    boundary("rmqraft_group_status", || {
        let shared = handle_ref(group)?;
        let out = out_arg(out, "out")?;
        shared.check_open()?;
        out.write(shared.group.status()?.into());
        Ok(())
    })
}

/// Sets the role callback, replacing any previous one; NULL `cb` removes it. The new
/// callback is called once at once with the current role (possibly before this call
/// returns), then on every change. On return the previous callback is not running and
/// will not run again, so its `userdata` may be freed.
#[no_mangle]
pub unsafe extern "C" fn rmqraft_group_set_role_callback(
    group: *mut rmqraft_group,
    cb: rmqraft_role_cb,
    userdata: *mut c_void,
) -> rmqraft_result {
    boundary("rmqraft_group_set_role_callback", || {
        let shared = handle_ref(group)?;
        shared.set_role_callback(cb, UserData(userdata))
    })
}

/// On the leader: hands leadership to the member `peer_id` (e.g. "n1", one of
/// dLegerPeers) and waits, at most `timeout_ms` milliseconds, until it leads.
/// RMQRAFT_ERR_NOT_LEADER when this member does not lead; RMQRAFT_ERR_TIMEOUT when the
/// transfer did not finish in time.
#[no_mangle]
pub unsafe extern "C" fn rmqraft_group_transfer_leadership(
    group: *mut rmqraft_group,
    peer_id: *const c_char,
    timeout_ms: u32,
) -> rmqraft_result {
    boundary("rmqraft_group_transfer_leadership", || {
        let shared = handle_ref(group)?;
        let peer_id = str_arg(peer_id, "peer_id")?;
        shared.check_open()?;
        shared
            .group
            .transfer_leadership(peer_id, Duration::from_millis(u64::from(timeout_ms)))
    })
}

/// Blocks until this member knows a leader (itself or a peer), at most `timeout_ms`:
/// RMQRAFT_OK with `*leader_peer_out` = the leader's position in dLegerPeers (0-based), or
/// RMQRAFT_ERR_TIMEOUT when none is known by then. Woken by role changes, not by polling.
#[no_mangle]
pub unsafe extern "C" fn rmqraft_group_wait_leader(
    group: *mut rmqraft_group,
    timeout_ms: u32,
    leader_peer_out: *mut i32,
) -> rmqraft_result {
    boundary("rmqraft_group_wait_leader", || {
        let shared = handle_ref(group)?;
        let out = out_arg(leader_peer_out, "leader_peer_out")?;
        shared.check_open()?;
        let leader = shared
            .group
            .wait_leader(Duration::from_millis(u64::from(timeout_ms)))?;
        out.write(leader);
        Ok(())
    })
}
