//! The one wrapper every export runs its body in, and the argument helpers it relies on.
//!
//! [`boundary`] catches panics so that none unwinds into C (`RMQRAFT_ERR_PANIC`), turns an
//! [`Error`] into its result code, and records the failure's detail in a thread-local
//! slot read by `rmqraft_last_error`. Bodies check their arguments with the helpers below
//! first and write their outputs last, so that outputs are written only on success.

use super::types::rmqraft_result;
use crate::error::{Error, ErrorKind, Result};
use std::any::Any;
use std::cell::RefCell;
use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

thread_local! {
    /// Detail of this thread's last failed call: "<function>: <message>".
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// What an export's body returns, and what its C caller gets instead when it panics.
pub(crate) trait BoundaryReturn {
    type C;
    fn into_c(self, fn_name: &'static str) -> Self::C;
    fn on_panic() -> Self::C;
}

impl BoundaryReturn for Result<()> {
    type C = rmqraft_result;
    fn into_c(self, fn_name: &'static str) -> rmqraft_result {
        match self {
            Ok(()) => rmqraft_result::RMQRAFT_OK,
            Err(err) => {
                log::debug!("{fn_name}: {err}");
                record_error(fn_name, err.message());
                err.kind().into()
            }
        }
    }
    fn on_panic() -> rmqraft_result {
        rmqraft_result::RMQRAFT_ERR_PANIC
    }
}

/// Calls that cannot fail (`_close`, version queries): a panic is logged and swallowed.
impl BoundaryReturn for () {
    type C = ();
    fn into_c(self, _: &'static str) {}
    fn on_panic() {}
}

impl BoundaryReturn for u32 {
    type C = u32;
    fn into_c(self, _: &'static str) -> u32 {
        self
    }
    fn on_panic() -> u32 {
        0
    }
}

impl BoundaryReturn for usize {
    type C = usize;
    fn into_c(self, _: &'static str) -> usize {
        self
    }
    fn on_panic() -> usize {
        0
    }
}

/// Static NUL-terminated strings.
impl BoundaryReturn for &'static CStr {
    type C = *const c_char;
    fn into_c(self, _: &'static str) -> *const c_char {
        self.as_ptr()
    }
    fn on_panic() -> *const c_char {
        c"".as_ptr()
    }
}

/// Runs the body of the export `fn_name` at the C boundary.
pub(crate) fn boundary<R: BoundaryReturn>(fn_name: &'static str, body: impl FnOnce() -> R) -> R::C {
    // Unwind safety: a panicking body leaves at worst a poisoned lock or a half-updated
    // handle, which later calls report (RMQRAFT_ERR_PANIC says the handle may be unusable).
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value.into_c(fn_name),
        Err(payload) => {
            let message = format!("panicked: {}", panic_message(payload.as_ref()));
            log::error!("{fn_name}: {message}");
            record_error(fn_name, &message);
            // Dropping the payload runs foreign code (its Drop); keep that inside too.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            R::on_panic()
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "a non-string panic payload"
    }
}

fn record_error(fn_name: &str, message: &str) {
    LAST_ERROR.with(|slot| {
        if let Ok(mut slot) = slot.try_borrow_mut() {
            slot.clear();
            slot.push_str(fn_name);
            slot.push_str(": ");
            slot.push_str(message);
        }
    });
}

/// Copies this thread's last error detail into `buf` (at most `cap - 1` bytes and a NUL;
/// nothing when `cap` is 0 or `buf` is NULL) and returns its full length.
pub(crate) fn copy_last_error(buf: *mut c_char, cap: usize) -> usize {
    LAST_ERROR.with(|slot| {
        let slot = slot.borrow();
        let detail = slot.as_bytes();
        if !buf.is_null() && cap > 0 {
            let n = detail.len().min(cap - 1);
            // SAFETY: the caller gave `cap` writable bytes at `buf`; n + 1 <= cap.
            unsafe {
                std::ptr::copy_nonoverlapping(detail.as_ptr(), buf.cast::<u8>(), n);
                *buf.add(n) = 0;
            }
        }
        detail.len()
    })
}

pub(crate) fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidArgument, message)
}

/// A required input string: NUL-terminated UTF-8.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that outlives `'a`.
pub(crate) unsafe fn str_arg<'a>(ptr: *const c_char, name: &str) -> Result<&'a str> {
    if ptr.is_null() {
        return Err(invalid(format!("{name} is NULL")));
    }
    CStr::from_ptr(ptr)
        .to_str()
        .map_err(|e| invalid(format!("{name} is not UTF-8: {e}")))
}

/// A required input buffer of `len` bytes; `what` names it in errors.
///
/// # Safety
/// `ptr` is NULL or points to `len` readable bytes that outlive `'a`.
pub(crate) unsafe fn bytes_arg<'a>(ptr: *const u8, len: usize, name: &str) -> Result<&'a [u8]> {
    if ptr.is_null() {
        return Err(invalid(format!("{name} is NULL")));
    }
    Ok(std::slice::from_raw_parts(ptr, len))
}

/// An output pointer from C, checked for NULL before the call does any work and written
/// once at its end. It may point to uninitialised memory, so it is never read.
pub(crate) struct Out<T>(std::ptr::NonNull<T>);

impl<T> Out<T> {
    pub(crate) fn write(self, value: T) {
        // SAFETY: `out_arg`'s caller vouched for a writable `T` at this address.
        unsafe { self.0.as_ptr().write(value) }
    }
}

/// A required output pointer.
///
/// # Safety
/// `ptr` is NULL or points to memory writable as a `T` until the call returns.
pub(crate) unsafe fn out_arg<T>(ptr: *mut T, name: &str) -> Result<Out<T>> {
    std::ptr::NonNull::new(ptr)
        .map(Out)
        .ok_or_else(|| invalid(format!("{name} is NULL")))
}
