//! Between library threads and host callbacks.
//!
//! Each group handle owns a [`CallbackGate`]. Library threads reach host callbacks only
//! through it, and it counts the callbacks running, so that:
//! - `rmqraft_group_close` (and `rmqraft_engine_close` for the groups it closes) returns
//!   only once no callback of the group is running, and none can start afterwards;
//! - `rmqraft_group_set_role_callback` returns only once the callback it replaced is not
//!   running, so the host may free the old `userdata` at once;
//! - every accepted async append reaches its callback exactly once: appends still pending
//!   when the group closes are completed with `RMQRAFT_ERR_OUTCOME_UNKNOWN` by the closing thread.
//!
//! A thread waiting for callbacks to finish does not count callbacks it is itself inside
//! (a role callback may replace the role callback without deadlocking).

use super::messages::Messages;
use super::types::{rmqraft_entry_meta, rmqraft_result, rmqraft_role, rmqraft_send_result};
use crate::broker::SendResult;
use crate::engine::{Group, RoleListener};
use crate::error::{Error, Result};
use crate::types::{EntryMeta, Role};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ffi::c_void;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

/// The host's `void *userdata`, passed back untouched. The host promises it may be used
/// from library threads (the header documents which thread runs each callback).
#[derive(Clone, Copy)]
pub(crate) struct UserData(pub(crate) *mut c_void);
// SAFETY: the library never dereferences it; it only hands it back to the host's callback.
unsafe impl Send for UserData {}
unsafe impl Sync for UserData {}

pub(crate) type AppendFn = unsafe extern "C" fn(
    userdata: *mut c_void,
    result: rmqraft_result,
    meta: *const rmqraft_entry_meta,
);
pub(crate) type SendFn = unsafe extern "C" fn(
    userdata: *mut c_void,
    result: rmqraft_result,
    res: *const rmqraft_send_result,
);
pub(crate) type RoleFn =
    unsafe extern "C" fn(userdata: *mut c_void, role: rmqraft_role, term: u64, leader_peer: i32);

#[derive(Clone, Copy)]
struct AppendTarget {
    cb: AppendFn,
    userdata: UserData,
}

#[derive(Clone, Copy)]
struct SendTarget {
    cb: SendFn,
    userdata: UserData,
}

/// The host callback an accepted async call completes.
#[derive(Clone, Copy)]
enum AsyncTarget {
    Append(AppendTarget),
    Send(SendTarget),
}

#[derive(Clone, Copy)]
struct RoleTarget {
    cb: RoleFn,
    userdata: UserData,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Append,
    Role,
}

thread_local! {
    /// The gates (by address) whose callbacks this thread is inside, innermost last.
    static INSIDE: RefCell<Vec<(usize, Kind)>> = const { RefCell::new(Vec::new()) };
}

#[derive(Default)]
struct GateState {
    closed: bool,
    next_append_id: u64,
    /// Accepted async appends and sends whose callback has not started, by submission
    /// order.
    pending_appends: BTreeMap<u64, AsyncTarget>,
    role: Option<RoleTarget>,
    /// Bumped on every role-callback change; a listener of an older generation is mute.
    role_generation: u64,
    running_appends: usize,
    running_roles: usize,
}

pub(crate) struct CallbackGate {
    state: Mutex<GateState>,
    /// Signalled whenever a running callback returns.
    idle: Condvar,
}

impl CallbackGate {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        // No code panics while holding this lock; a poisoned state is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn key(&self) -> usize {
        self as *const CallbackGate as usize
    }

    /// How many callbacks of `kind` of this gate the current thread is inside.
    fn running_here(&self, kind: Kind) -> usize {
        let key = self.key();
        INSIDE.with(|inside| {
            inside
                .borrow()
                .iter()
                .filter(|e| **e == (key, kind))
                .count()
        })
    }

    /// Waits until no callback of `kind` runs on another thread.
    fn wait_idle<'a>(
        &self,
        mut state: MutexGuard<'a, GateState>,
        kinds: &[Kind],
    ) -> MutexGuard<'a, GateState> {
        let mine: Vec<(Kind, usize)> = kinds.iter().map(|k| (*k, self.running_here(*k))).collect();
        let busy = |s: &GateState| {
            mine.iter().any(|(kind, here)| match kind {
                Kind::Append => s.running_appends > *here,
                Kind::Role => s.running_roles > *here,
            })
        };
        while busy(&state) {
            state = self
                .idle
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state
    }
}

/// Marks the current thread as inside a callback of `gate` until dropped. The gate's
/// running count was raised by the caller, under the same lock that chose the callback.
struct Running<'a> {
    gate: &'a CallbackGate,
    kind: Kind,
}

impl<'a> Running<'a> {
    fn enter(gate: &'a CallbackGate, kind: Kind) -> Running<'a> {
        INSIDE.with(|inside| inside.borrow_mut().push((gate.key(), kind)));
        Running { gate, kind }
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        INSIDE.with(|inside| {
            let mut inside = inside.borrow_mut();
            let entry = (self.gate.key(), self.kind);
            if let Some(at) = inside.iter().rposition(|e| *e == entry) {
                inside.remove(at);
            }
        });
        let mut state = self.gate.lock();
        match self.kind {
            Kind::Append => state.running_appends -= 1,
            Kind::Role => state.running_roles -= 1,
        }
        drop(state);
        self.gate.idle.notify_all();
    }
}

/// Takes the pending callback `id` and marks it running; `None` when the closing thread
/// already completed it.
fn start_async(gate: &CallbackGate, id: u64) -> Option<AsyncTarget> {
    let mut state = gate.lock();
    let target = state.pending_appends.remove(&id)?;
    state.running_appends += 1;
    Some(target)
}

fn finish_append(gate: &CallbackGate, id: u64, result: Result<EntryMeta>) {
    let target = {
        match start_async(gate, id) {
            Some(AsyncTarget::Append(t)) => t,
            // Already completed with RMQRAFT_ERR_CLOSED by the closing thread.
            _ => return,
        }
    };
    let _running = Running::enter(gate, Kind::Append);
    let (code, meta) = match result {
        Ok(meta) => (rmqraft_result::RMQRAFT_OK, meta.into()),
        Err(err) => (err.kind().into(), rmqraft_entry_meta::default()),
    };
    // SAFETY: the host gave this function and userdata for exactly this call.
    unsafe { (target.cb)(target.userdata.0, code, &meta) };
}

fn finish_send(gate: &CallbackGate, id: u64, result: Result<SendResult>) {
    let Some(AsyncTarget::Send(target)) = start_async(gate, id) else {
        // Already completed with RMQRAFT_ERR_OUTCOME_UNKNOWN by the closing thread.
        return;
    };
    let _running = Running::enter(gate, Kind::Append);
    match result {
        Ok(r) => {
            let res = rmqraft_send_result::from(&r);
            // SAFETY: the host gave this function and userdata for exactly this call.
            unsafe { (target.cb)(target.userdata.0, rmqraft_result::RMQRAFT_OK, &res) };
        }
        Err(err) => {
            log::debug!("rmqraft_message_send_async: {err}");
            // SAFETY: as above; res is NULL unless the result is RMQRAFT_OK.
            unsafe { (target.cb)(target.userdata.0, err.kind().into(), std::ptr::null()) };
        }
    }
}

fn deliver_role(gate: &CallbackGate, generation: u64, role: Role, term: u64, leader_peer: i32) {
    let target = {
        let mut state = gate.lock();
        if state.closed || state.role_generation != generation {
            return;
        }
        let Some(target) = state.role else { return };
        state.running_roles += 1;
        target
    };
    let _running = Running::enter(gate, Kind::Role);
    // SAFETY: the host registered this function and userdata; set_role_callback and close
    // wait for this call to return before letting the host free them.
    unsafe { (target.cb)(target.userdata.0, role.into(), term, leader_peer) };
}

/// What an `rmqraft_group *` owns (through an `Arc`, see `handle.rs`).
pub(crate) struct GroupShared {
    pub(crate) group: Arc<Group>,
    /// The member's message layer (opened on its first use, see messages.rs).
    pub(crate) messages: Messages,
    gate: Arc<CallbackGate>,
    /// Serialises role-callback changes so that the engine ends up with the listener of
    /// the latest generation.
    role_setter: Mutex<()>,
}

impl GroupShared {
    pub(crate) fn new(group: Arc<Group>, messages: Messages) -> GroupShared {
        GroupShared {
            group,
            messages,
            gate: Arc::new(CallbackGate {
                state: Mutex::new(GateState::default()),
                idle: Condvar::new(),
            }),
            role_setter: Mutex::new(()),
        }
    }

    /// `Closed` once the handle's group was closed (directly or by closing its engine).
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.gate.lock().closed {
            return Err(Error::closed("group"));
        }
        Ok(())
    }

    /// Starts an async append; on `Ok`, `cb` runs exactly once, on `Err` never.
    pub(crate) fn append_async(&self, data: &[u8], cb: AppendFn, userdata: UserData) -> Result<()> {
        let id = {
            let mut state = self.gate.lock();
            if state.closed {
                return Err(Error::closed("group"));
            }
            state.next_append_id += 1;
            let id = state.next_append_id;
            state
                .pending_appends
                .insert(id, AsyncTarget::Append(AppendTarget { cb, userdata }));
            id
        };
        let gate = Arc::clone(&self.gate);
        match self.group.append_async(
            data,
            Box::new(move |result| finish_append(&gate, id, result)),
        ) {
            Ok(()) => Ok(()),
            Err(err) => {
                if self.gate.lock().pending_appends.remove(&id).is_some() {
                    Err(err)
                } else {
                    // A concurrent engine close took it and completes it with
                    // RMQRAFT_ERR_CLOSED: to the host, the append was accepted.
                    Ok(())
                }
            }
        }
    }

    /// Starts an async send through `start` (which hands its completion to the broker);
    /// on `Ok`, `cb` runs exactly once, on `Err` never.
    pub(crate) fn send_async(
        &self,
        cb: SendFn,
        userdata: UserData,
        start: impl FnOnce(crate::broker::SendCallback) -> Result<()>,
    ) -> Result<()> {
        let id = {
            let mut state = self.gate.lock();
            if state.closed {
                return Err(Error::closed("group"));
            }
            state.next_append_id += 1;
            let id = state.next_append_id;
            state
                .pending_appends
                .insert(id, AsyncTarget::Send(SendTarget { cb, userdata }));
            id
        };
        let gate = Arc::clone(&self.gate);
        match start(Box::new(move |result| finish_send(&gate, id, result))) {
            Ok(()) => Ok(()),
            Err(err) => {
                if self.gate.lock().pending_appends.remove(&id).is_some() {
                    Err(err)
                } else {
                    // A concurrent close took it and completes it: to the host, the
                    // send was accepted.
                    Ok(())
                }
            }
        }
    }

    /// Replaces (or with `None` removes) the role callback. On return the previous one
    /// is not running and will not run again.
    pub(crate) fn set_role_callback(&self, cb: Option<RoleFn>, userdata: UserData) -> Result<()> {
        let _setter = self
            .role_setter
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let generation = {
            let mut state = self.gate.lock();
            if state.closed {
                return Err(Error::closed("group"));
            }
            state.role_generation += 1;
            state.role = cb.map(|cb| RoleTarget { cb, userdata });
            let state = self.gate.wait_idle(state, &[Kind::Role]);
            state.role_generation
        };
        let listener: Option<RoleListener> = cb.map(|_| {
            let gate = Arc::clone(&self.gate);
            Box::new(move |role: Role, term: u64, leader_peer: i32| {
                deliver_role(&gate, generation, role, term, leader_peer)
            }) as RoleListener
        });
        if let Err(err) = self.group.set_role_listener(listener) {
            let mut state = self.gate.lock();
            if state.role_generation == generation {
                state.role = None;
            }
            return Err(err);
        }
        Ok(())
    }

    /// Closes the member and its gate. On return no callback of this group runs or will
    /// run; appends still pending were completed with `RMQRAFT_ERR_OUTCOME_UNKNOWN` on this thread.
    /// Idempotent.
    pub(crate) fn shutdown(&self) {
        // The broker first: it joins its threads and checkpoints over an open member.
        self.messages.close();
        self.group.close();
        let orphans: Vec<AsyncTarget> = {
            let mut state = self.gate.lock();
            state.closed = true;
            state.role = None;
            let mut state = self.gate.wait_idle(state, &[Kind::Append, Kind::Role]);
            std::mem::take(&mut state.pending_appends)
                .into_values()
                .collect()
        };
        if !orphans.is_empty() {
            log::debug!(
                "{} pending appends completed with an unknown outcome",
                orphans.len()
            );
        }
        let zeros = rmqraft_entry_meta::default();
        for target in orphans {
            // SAFETY: as in finish_append; each target was removed from the map, so it
            // is called exactly once.
            match target {
                // The entry may already be on other members: its outcome is unknown, not
                // "never stored" (ABI 0.2: an error other than TIMEOUT and
                // OUTCOME_UNKNOWN promises the entry will never commit).
                AsyncTarget::Append(t) => unsafe {
                    (t.cb)(
                        t.userdata.0,
                        rmqraft_result::RMQRAFT_ERR_OUTCOME_UNKNOWN,
                        &zeros,
                    )
                },
                AsyncTarget::Send(t) => unsafe {
                    (t.cb)(
                        t.userdata.0,
                        rmqraft_result::RMQRAFT_ERR_OUTCOME_UNKNOWN,
                        std::ptr::null(),
                    )
                },
            }
        }
    }
}

// The handles are used from any host thread at once.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<GroupShared>();
    assert_send_sync::<crate::engine::Engine>();
};
