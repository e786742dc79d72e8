//! The name server (in progress).
