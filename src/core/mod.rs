//! Pure Raft decisions: no clock, thread or I/O inside.
