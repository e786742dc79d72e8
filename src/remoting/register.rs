//! Registration (in progress).
