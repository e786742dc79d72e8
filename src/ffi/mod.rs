//! The C ABI of `librmqraft.so` (contract: docs/C-API.md; header: `include/rmqraft.h`).
//!
//! This module is the only place in the crate with `extern "C"` and raw pointers. Its
//! pieces:
//! - [`boundary`]: the one wrapper every export runs its body in. It catches panics
//!   (`RMQRAFT_ERR_PANIC`), turns errors into result codes, records the detail for
//!   `rmqraft_last_error`, and holds the argument helpers that reject NULL and invalid
//!   UTF-8 (`RMQRAFT_ERR_INVALID_ARGUMENT`).
//! - [`handle`]: how each opaque handle maps onto its one Rust owner.
//! - [`callbacks`]: the gate between library threads and host callbacks, which lets
//!   `rmqraft_group_close` and `rmqraft_engine_close` promise that no callback runs after
//!   they return.
//! - [`types`], [`api`]: the C types and the exported functions; [`messages`]: the
//!   message layer of ABI 0.2 (topics, sends, pulls, lookups, consumer offsets).
//!
//! The header is generated from these files by `build.rs` (cbindgen, `cbindgen.toml`) and
//! committed; a test below fails when the committed copy is stale.

// The exported functions are `unsafe` because they dereference pointers from C; their
// safety contract is the calling convention written once at the top of the header, not a
// `# Safety` section repeated on every function.
#![allow(clippy::missing_safety_doc)]

mod api;
mod boundary;
mod callbacks;
mod handle;
mod idempotent;
mod messages;
mod types;

pub use api::*;
pub use idempotent::*;
pub use messages::*;
pub use types::*;

#[cfg(test)]
mod tests;
