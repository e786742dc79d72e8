//! Frame encoding and decoding (see docs/PROTOCOL.md).
