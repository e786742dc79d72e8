//! The one error type of the crate. Its kinds map 1:1 onto the C ABI's result codes
//! (docs/C-API.md); the numbers never change.

use std::fmt;

/// What went wrong, as the C ABI numbers it. `repr(i32)` values are the ABI's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum ErrorKind {
    InvalidArgument = 1,
    Config = 2,
    NotLeader = 3,
    Timeout = 4,
    Io = 5,
    Corrupt = 6,
    NotFound = 7,
    Closed = 8,
    Busy = 9,
    TooLarge = 10,
    BufferTooSmall = 11,
    Exists = 12,
    Panic = 13,
    DiskFull = 14,
    /// Idempotent append: the sequence skips ahead of the producer's next one.
    OutOfOrder = 15,
    /// The topic does not exist on this group (and is not auto-created).
    NoTopic = 16,
    /// The topic's perm forbids this write or read.
    NoPermission = 17,
    /// An accepted append or send may or may not commit (leadership changed or the
    /// member failed before it was decided). Never used when the entry is known lost.
    OutcomeUnknown = 18,
}

impl ErrorKind {
    /// All kinds, in ABI order.
    pub const ALL: [ErrorKind; 18] = [
        ErrorKind::InvalidArgument,
        ErrorKind::Config,
        ErrorKind::NotLeader,
        ErrorKind::Timeout,
        ErrorKind::Io,
        ErrorKind::Corrupt,
        ErrorKind::NotFound,
        ErrorKind::Closed,
        ErrorKind::Busy,
        ErrorKind::TooLarge,
        ErrorKind::BufferTooSmall,
        ErrorKind::Exists,
        ErrorKind::Panic,
        ErrorKind::DiskFull,
        ErrorKind::OutOfOrder,
        ErrorKind::NoTopic,
        ErrorKind::NoPermission,
        ErrorKind::OutcomeUnknown,
    ];

    pub fn code(self) -> i32 {
        self as i32
    }

    pub fn from_code(code: i32) -> Option<ErrorKind> {
        ErrorKind::ALL.iter().copied().find(|k| k.code() == code)
    }

    /// The ABI constant's name, e.g. `RMQRAFT_ERR_NOT_LEADER`.
    pub fn abi_name(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "RMQRAFT_ERR_INVALID_ARGUMENT",
            ErrorKind::Config => "RMQRAFT_ERR_CONFIG",
            ErrorKind::NotLeader => "RMQRAFT_ERR_NOT_LEADER",
            ErrorKind::Timeout => "RMQRAFT_ERR_TIMEOUT",
            ErrorKind::Io => "RMQRAFT_ERR_IO",
            ErrorKind::Corrupt => "RMQRAFT_ERR_CORRUPT",
            ErrorKind::NotFound => "RMQRAFT_ERR_NOT_FOUND",
            ErrorKind::Closed => "RMQRAFT_ERR_CLOSED",
            ErrorKind::Busy => "RMQRAFT_ERR_BUSY",
            ErrorKind::TooLarge => "RMQRAFT_ERR_TOO_LARGE",
            ErrorKind::BufferTooSmall => "RMQRAFT_ERR_BUFFER_TOO_SMALL",
            ErrorKind::Exists => "RMQRAFT_ERR_EXISTS",
            ErrorKind::Panic => "RMQRAFT_ERR_PANIC",
            ErrorKind::DiskFull => "RMQRAFT_ERR_DISK_FULL",
            ErrorKind::OutOfOrder => "RMQRAFT_ERR_OUT_OF_ORDER",
            ErrorKind::NoTopic => "RMQRAFT_ERR_NO_TOPIC",
            ErrorKind::NoPermission => "RMQRAFT_ERR_NO_PERMISSION",
            ErrorKind::OutcomeUnknown => "RMQRAFT_ERR_OUTCOME_UNKNOWN",
        }
    }
}

/// An error with a message a user can act on ("dLegerPeers: peer 'n3' has no address").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    pub fn message(&self) -> &str {
        &self.message
    }
    pub fn config(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Config, message)
    }
    pub fn closed(what: &str) -> Error {
        Error::new(ErrorKind::Closed, format!("{what} is closed"))
    }
    pub fn corrupt(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Corrupt, message)
    }
    /// An I/O error with context; ENOSPC becomes `DiskFull`.
    pub fn io(context: impl fmt::Display, err: std::io::Error) -> Error {
        let kind = if err.raw_os_error() == Some(libc::ENOSPC) {
            ErrorKind::DiskFull
        } else {
            ErrorKind::Io
        };
        Error::new(kind, format!("{context}: {err}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.abi_name(), self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;
