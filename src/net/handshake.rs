//! The hello both ends exchange before any frame (layout: docs/PROTOCOL.md, "Handshake").
//!
//! The connecting side sends its hello; the accepting side checks it and answers with its
//! own hello whose `status` says whether the connection is accepted. A refused connection
//! is closed right after the answer.

use super::sock::{read_exact_by, send_all};
use std::fmt;
use std::io;
use std::net::TcpStream;
use std::time::Instant;

/// First four bytes of a hello: "RQRH".
pub const HELLO_MAGIC: u32 = u32::from_le_bytes(*b"RQRH");
/// The protocol version (handshake and frames) this code speaks.
pub const PROTOCOL_VERSION: u16 = 1;
/// Bytes of a hello before the cluster name.
pub const HELLO_FIXED_SIZE_BYTES: usize = 37;
/// Longest cluster name on the wire (its length is one byte).
pub const CLUSTER_NAME_BYTES_MAX: usize = u8::MAX as usize;

/// Reserved flag: an authentication exchange (HMAC over the nonces with a shared secret)
/// follows the hellos. This version never sets it and refuses a hello that does.
pub const FLAG_AUTH: u8 = 0x01;

/// What the connecting side is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ConnKind {
    /// Another engine: one-way Raft traffic, no responses on this connection.
    Peer = 1,
    /// A tool: requests, each answered on the same connection.
    Client = 2,
}

/// The accepting side's verdict, carried in its hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    Accepted = 0,
    WrongCluster = 1,
    UnsupportedVersion = 2,
    BadConnKind = 3,
    AuthUnsupported = 4,
    TooManyConnections = 5,
}

impl Status {
    fn from_u8(v: u8) -> Option<Status> {
        Some(match v {
            0 => Status::Accepted,
            1 => Status::WrongCluster,
            2 => Status::UnsupportedVersion,
            3 => Status::BadConnKind,
            4 => Status::AuthUnsupported,
            5 => Status::TooManyConnections,
            _ => return None,
        })
    }
    fn describe(self) -> &'static str {
        match self {
            Status::Accepted => "accepted",
            Status::WrongCluster => "cluster name mismatch",
            Status::UnsupportedVersion => "unsupported protocol version",
            Status::BadConnKind => "unknown connection kind",
            Status::AuthUnsupported => "authentication requested but not supported",
            Status::TooManyConnections => "too many connections",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub version: u16,
    pub kind: ConnKind,
    pub flags: u8,
    pub status: Status,
    pub engine_id: u64,
    /// Reserved for the authentication challenge; all zero in this version.
    pub nonce: [u8; 16],
    pub cluster: String,
}

impl Hello {
    pub fn new(kind: ConnKind, engine_id: u64, cluster: &str) -> Hello {
        Hello {
            version: PROTOCOL_VERSION,
            kind,
            flags: 0,
            status: Status::Accepted,
            engine_id,
            nonce: [0; 16],
            cluster: cluster.to_owned(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        // Cluster names are checked when the transport is made; cut defensively anyway.
        let cluster = &self.cluster.as_bytes()[..self.cluster.len().min(CLUSTER_NAME_BYTES_MAX)];
        let mut out = Vec::with_capacity(HELLO_FIXED_SIZE_BYTES + cluster.len());
        out.extend_from_slice(&HELLO_MAGIC.to_le_bytes());
        out.extend_from_slice(&self.version.to_le_bytes());
        out.push(self.kind as u8);
        out.push(self.flags);
        out.push(self.status as u8);
        out.extend_from_slice(&[0; 3]);
        out.extend_from_slice(&self.engine_id.to_le_bytes());
        out.extend_from_slice(&self.nonce);
        out.push(cluster.len() as u8);
        out.extend_from_slice(cluster);
        out
    }
}

/// Why a handshake failed.
#[derive(Debug)]
pub enum HandshakeError {
    Io(io::Error),
    BadMagic(u32),
    /// The hello is well-formed but names something this side refuses.
    Refused {
        status: Status,
        detail: String,
    },
    /// The accepting side answered with a refusal.
    RefusedByPeer(Status),
    Malformed(String),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Io(e) if e.kind() == io::ErrorKind::TimedOut => {
                write!(f, "handshake not completed in time")
            }
            HandshakeError::Io(e) => write!(f, "handshake: {e}"),
            HandshakeError::BadMagic(m) => write!(f, "bad handshake magic {m:#010x}"),
            HandshakeError::Refused { status, detail } => {
                write!(f, "refused ({}): {detail}", status.describe())
            }
            HandshakeError::RefusedByPeer(s) => write!(f, "refused by the peer: {}", s.describe()),
            HandshakeError::Malformed(why) => write!(f, "malformed handshake: {why}"),
        }
    }
}

impl From<io::Error> for HandshakeError {
    fn from(e: io::Error) -> Self {
        HandshakeError::Io(e)
    }
}

/// Reads one hello before `deadline`. Never reads more than the hello's own bytes.
pub fn read_hello(stream: &mut TcpStream, deadline: Instant) -> Result<Hello, HandshakeError> {
    let mut fixed = [0u8; HELLO_FIXED_SIZE_BYTES];
    read_exact_by(stream, &mut fixed[..4], deadline)?;
    let magic = u32::from_le_bytes(fixed[..4].try_into().expect("4 bytes"));
    if magic != HELLO_MAGIC {
        return Err(HandshakeError::BadMagic(magic));
    }
    read_exact_by(stream, &mut fixed[4..], deadline)?;
    let version = u16::from_le_bytes([fixed[4], fixed[5]]);
    let kind = match fixed[6] {
        1 => ConnKind::Peer,
        2 => ConnKind::Client,
        k => {
            return Err(HandshakeError::Refused {
                status: Status::BadConnKind,
                detail: format!("connection kind {k}"),
            })
        }
    };
    let flags = fixed[7];
    let status = Status::from_u8(fixed[8])
        .ok_or_else(|| HandshakeError::Malformed(format!("status {}", fixed[8])))?;
    let engine_id = u64::from_le_bytes(fixed[12..20].try_into().expect("8 bytes"));
    let nonce: [u8; 16] = fixed[20..36].try_into().expect("16 bytes");
    let cluster_len = fixed[36] as usize;
    let mut cluster = vec![0u8; cluster_len];
    read_exact_by(stream, &mut cluster, deadline)?;
    let cluster = String::from_utf8(cluster)
        .map_err(|_| HandshakeError::Malformed("cluster name is not UTF-8".into()))?;
    Ok(Hello {
        version,
        kind,
        flags,
        status,
        engine_id,
        nonce,
        cluster,
    })
}

/// Checks a hello against ours; the status to answer with and why.
fn verdict(theirs: &Hello, cluster: &str) -> Result<(), HandshakeError> {
    let refuse = |status, detail: String| Err(HandshakeError::Refused { status, detail });
    if theirs.version != PROTOCOL_VERSION {
        return refuse(
            Status::UnsupportedVersion,
            format!(
                "version {}, this side speaks {PROTOCOL_VERSION}",
                theirs.version
            ),
        );
    }
    if theirs.flags & FLAG_AUTH != 0 {
        return refuse(
            Status::AuthUnsupported,
            "the peer asks for authentication".into(),
        );
    }
    if theirs.flags != 0 {
        return refuse(
            Status::BadConnKind,
            format!("unknown flags {:#04x}", theirs.flags),
        );
    }
    if theirs.cluster != cluster {
        return refuse(
            Status::WrongCluster,
            format!("cluster '{}', this side is '{cluster}'", theirs.cluster),
        );
    }
    Ok(())
}

/// The accepting side: read the peer's hello, answer, and return it if accepted.
pub fn accept(
    stream: &mut TcpStream,
    cluster: &str,
    engine_id: u64,
    deadline: Instant,
) -> Result<Hello, HandshakeError> {
    let theirs = match read_hello(stream, deadline) {
        Ok(h) => h,
        Err(HandshakeError::Refused { status, detail }) => {
            // Tell the peer why before closing; best effort.
            let mut answer = Hello::new(ConnKind::Peer, engine_id, cluster);
            answer.status = status;
            let _ = send_all(stream, &answer.encode());
            return Err(HandshakeError::Refused { status, detail });
        }
        Err(e) => return Err(e),
    };
    let mut answer = Hello::new(theirs.kind, engine_id, cluster);
    let checked = verdict(&theirs, cluster);
    if let Err(HandshakeError::Refused { status, .. }) = &checked {
        answer.status = *status;
    }
    stream.set_write_timeout(Some(deadline.saturating_duration_since(Instant::now())))?;
    let sent = send_all(stream, &answer.encode());
    checked?;
    sent?;
    Ok(theirs)
}

/// The connecting side: send our hello, read the answer, return it if accepted.
pub fn connect(
    stream: &mut TcpStream,
    kind: ConnKind,
    cluster: &str,
    engine_id: u64,
    deadline: Instant,
) -> Result<Hello, HandshakeError> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed").into());
    }
    stream.set_write_timeout(Some(remaining))?;
    send_all(stream, &Hello::new(kind, engine_id, cluster).encode())?;
    let theirs = read_hello(stream, deadline)?;
    if theirs.status != Status::Accepted {
        return Err(HandshakeError::RefusedByPeer(theirs.status));
    }
    verdict(&theirs, cluster)?;
    Ok(theirs)
}

/// The answer sent to a connection refused before its hello is read (over the limit).
pub fn refusal(status: Status, engine_id: u64, cluster: &str) -> Vec<u8> {
    let mut h = Hello::new(ConnKind::Peer, engine_id, cluster);
    h.status = status;
    h.encode()
}
