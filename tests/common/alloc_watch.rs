//! A global allocator for tests that must bound allocations: it records the largest single
//! allocation made by a thread inside `largest_alloc_in`. Include with
//! `#[path = "common/alloc_watch.rs"] mod alloc_watch;` (it installs the global allocator).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

struct Watching;

static LARGEST_ALLOC_BYTES: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static WATCHED: Cell<bool> = const { Cell::new(false) };
}

fn note(size: usize) {
    if WATCHED.try_with(|w| w.get()).unwrap_or(false) {
        LARGEST_ALLOC_BYTES.fetch_max(size, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Watching {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Watching = Watching;

/// Tests run in parallel threads; the watch is per thread, the maximum is shared.
static WATCH: Mutex<()> = Mutex::new(());

/// Runs `f` and returns the largest allocation it made on this thread.
pub fn largest_alloc_in(f: impl FnOnce()) -> usize {
    let _one_at_a_time = WATCH.lock().unwrap_or_else(|p| p.into_inner());
    LARGEST_ALLOC_BYTES.store(0, Ordering::Relaxed);
    WATCHED.with(|w| w.set(true));
    f();
    WATCHED.with(|w| w.set(false));
    LARGEST_ALLOC_BYTES.load(Ordering::Relaxed)
}
