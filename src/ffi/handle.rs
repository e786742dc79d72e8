//! How each opaque C handle maps onto its one Rust owner.
//!
//! A handle pointer is a `Box<C::RustType>` turned into a raw pointer and cast to the
//! opaque C type `C`. [`into_handle`] creates one, [`handle_ref`] borrows it for the length
//! of a call (NULL gives `RMQRAFT_ERR_INVALID_ARGUMENT`), and [`take_handle`] takes the
//! box back in `_close`. Nothing else converts handle pointers.

use super::boundary::invalid;
use super::callbacks::GroupShared;
use super::types::{rmqraft_engine, rmqraft_group};
use crate::engine::Engine;
use crate::error::Result;
use std::sync::{Arc, Mutex, Weak};

/// A C handle type and the Rust value its pointer owns.
pub(crate) trait Castable {
    type RustType;
    /// Names the handle in error messages.
    const NAME: &'static str;
}

/// What an `rmqraft_engine *` owns.
pub(crate) struct EngineHandle {
    pub(crate) engine: Engine,
    /// Every group handle opened on this engine, so that closing the engine can close
    /// their callback gates too. Entries of freed group handles are pruned on open.
    pub(crate) groups: Mutex<Vec<Weak<GroupShared>>>,
}

impl Castable for rmqraft_engine {
    type RustType = EngineHandle;
    const NAME: &'static str = "engine";
}

impl Castable for rmqraft_group {
    /// Shared with the engine handle's list (as a `Weak`).
    type RustType = Arc<GroupShared>;
    const NAME: &'static str = "group";
}

pub(crate) fn into_handle<C: Castable>(value: C::RustType) -> *mut C {
    Box::into_raw(Box::new(value)).cast::<C>()
}

/// Borrows the value behind a handle.
///
/// # Safety
/// `ptr` is NULL or was returned by [`into_handle`] for the same `C` and has not been
/// passed to [`take_handle`]; the borrow ends before the handle is closed (the ABI's
/// "`_close` must not race with other calls on the same handle").
pub(crate) unsafe fn handle_ref<'a, C: Castable>(ptr: *const C) -> Result<&'a C::RustType> {
    ptr.cast::<C::RustType>()
        .as_ref()
        .ok_or_else(|| invalid(format!("{} is NULL", C::NAME)))
}

/// Takes back ownership of a handle; `None` for NULL.
///
/// # Safety
/// As for [`handle_ref`]; afterwards the pointer is dangling.
pub(crate) unsafe fn take_handle<C: Castable>(ptr: *mut C) -> Option<Box<C::RustType>> {
    if ptr.is_null() {
        None
    } else {
        Some(Box::from_raw(ptr.cast::<C::RustType>()))
    }
}
