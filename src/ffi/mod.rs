//! The C ABI (see ../shared/ABI.md). The only place with `extern "C"` and raw pointers.
