//! The handshake both ends exchange before any frame (layout: docs/PROTOCOL.md,
//! "Handshake" and "Authentication").
//!
//! The connecting side (the dialer) sends its hello; the accepting side checks it and
//! answers with its own hello whose `status` says whether the connection is accepted. A
//! refused connection is closed right after the answer. When the engines have a
//! `dLegerSecret`, two authentication messages follow: the dialer's proof, then the
//! acceptor's verdict and its own proof. Both proofs are HMAC-SHA256 under the secret over
//! the cluster, the connection kind, both engine ids and both sides' fresh nonces.

use super::sock::{read_exact_by, send_all};
use crate::config::Secret;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use std::io::{self, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// First four bytes of a hello: "RQRH".
pub const HELLO_MAGIC: u32 = u32::from_le_bytes(*b"RQRH");
/// The protocol version (handshake and frames) this code speaks.
pub const PROTOCOL_VERSION: u16 = 1;
/// Bytes of a hello before the cluster name.
pub const HELLO_FIXED_SIZE_BYTES: usize = 37;
/// Longest cluster name on the wire (its length is one byte).
pub const CLUSTER_NAME_BYTES_MAX: usize = u8::MAX as usize;
/// Bytes of the random challenge each side puts in its hello.
pub const NONCE_SIZE_BYTES: usize = 16;

/// Hello flag: this side has a secret; the authentication messages follow the hellos.
pub const FLAG_AUTH: u8 = 0x01;

/// First four bytes of an authentication message: "RQRA".
pub const AUTH_MAGIC: u32 = u32::from_le_bytes(*b"RQRA");
/// Bytes of an HMAC-SHA256 tag.
pub const MAC_SIZE_BYTES: usize = 32;
/// Bytes of an authentication message: magic, status, 3 reserved, tag.
pub const AUTH_MESSAGE_SIZE_BYTES: usize = 4 + 1 + 3 + MAC_SIZE_BYTES;
/// Domain separation: the first bytes of every MAC input.
const MAC_LABEL: &[u8] = b"rmqraft-auth-v1";

/// Which end of the connection computed a proof; part of the MAC input, so one side's
/// proof is never valid as the other's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Role {
    Dialer = 1,
    Acceptor = 2,
}

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
    /// The dialer asks for authentication; this side has no secret.
    AuthUnsupported = 4,
    TooManyConnections = 5,
    /// This side has a secret; the dialer did not ask for authentication.
    AuthRequired = 6,
    /// The proof does not match: the secrets differ, or the handshake was replayed.
    AuthFailed = 7,
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
            6 => Status::AuthRequired,
            7 => Status::AuthFailed,
            _ => return None,
        })
    }
    pub fn describe(self) -> &'static str {
        match self {
            Status::Accepted => "accepted",
            Status::WrongCluster => "cluster name mismatch",
            Status::UnsupportedVersion => "unsupported protocol version",
            Status::BadConnKind => "unknown connection kind",
            Status::AuthUnsupported => "authentication requested but this side has no dLegerSecret",
            Status::TooManyConnections => "too many connections",
            Status::AuthRequired => "this side requires authentication (dLegerSecret)",
            Status::AuthFailed => "authentication failed: secrets differ",
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
    /// The challenge: random when `FLAG_AUTH` is set, else zero.
    pub nonce: [u8; NONCE_SIZE_BYTES],
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
            nonce: [0; NONCE_SIZE_BYTES],
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
    /// The other side's messages are well-formed but this side refuses them.
    Refused {
        status: Status,
        detail: String,
    },
    /// The other side answered with a refusal.
    RefusedByPeer(Status),
    Malformed(String),
}

impl HandshakeError {
    /// The status behind a refusal, by either side.
    pub fn status(&self) -> Option<Status> {
        match self {
            HandshakeError::Refused { status, .. } | HandshakeError::RefusedByPeer(status) => {
                Some(*status)
            }
            _ => None,
        }
    }

    /// True when the two sides disagree on `dLegerSecret` (or a proof was forged or
    /// replayed): an operator has something to fix.
    pub fn is_auth_problem(&self) -> bool {
        matches!(
            self.status(),
            Some(Status::AuthFailed | Status::AuthRequired | Status::AuthUnsupported)
        )
    }
}

/// Reads as "peer 10.0.0.2:40100 {self}" in logs.
impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Io(e) if e.kind() == io::ErrorKind::TimedOut => {
                write!(f, "did not complete the handshake in time")
            }
            HandshakeError::Io(e) => write!(f, "handshake: {e}"),
            HandshakeError::BadMagic(m) => write!(f, "sent a bad handshake magic {m:#010x}"),
            HandshakeError::Refused {
                status: Status::AuthFailed,
                detail,
            } => write!(
                f,
                "failed authentication: secrets differ ({detail}); dLegerSecret must be the same on every member"
            ),
            HandshakeError::Refused {
                status: Status::AuthRequired,
                ..
            } => write!(
                f,
                "refused: it has no dLegerSecret but this engine requires authentication"
            ),
            HandshakeError::Refused {
                status: Status::AuthUnsupported,
                ..
            } => write!(
                f,
                "refused: it asks for authentication but this engine has no dLegerSecret"
            ),
            HandshakeError::Refused { status, detail } => {
                write!(f, "refused ({}): {detail}", status.describe())
            }
            HandshakeError::RefusedByPeer(Status::AuthFailed) => write!(
                f,
                "refused authentication: secrets differ; dLegerSecret must be the same on every member"
            ),
            HandshakeError::RefusedByPeer(Status::AuthRequired) => write!(
                f,
                "refused the connection: it requires authentication and this engine has no dLegerSecret"
            ),
            HandshakeError::RefusedByPeer(Status::AuthUnsupported) => write!(
                f,
                "refused the connection: it has no dLegerSecret and this engine asks for authentication"
            ),
            HandshakeError::RefusedByPeer(s) => write!(f, "refused the connection: {}", s.describe()),
            HandshakeError::Malformed(why) => write!(f, "sent a malformed handshake: {why}"),
        }
    }
}

impl From<io::Error> for HandshakeError {
    fn from(e: io::Error) -> Self {
        HandshakeError::Io(e)
    }
}

/// The byte stream a handshake runs over: a `TcpStream`, or memory in tests and fuzzing.
pub trait HandshakeIo {
    /// Fills `buf` before `deadline`; `TimedOut` if it passes first, `UnexpectedEof` if
    /// the other side closes.
    fn read_exact_by(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<()>;
    /// Writes all of `buf` before `deadline`.
    fn write_all_by(&mut self, buf: &[u8], deadline: Instant) -> io::Result<()>;
}

impl HandshakeIo for TcpStream {
    fn read_exact_by(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<()> {
        read_exact_by(self, buf, deadline)
    }

    fn write_all_by(&mut self, buf: &[u8], deadline: Instant) -> io::Result<()> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
        }
        self.set_write_timeout(Some(remaining.max(Duration::from_millis(1))))?;
        send_all(self, buf)
    }
}

/// Reads one hello before `deadline`. Never reads more than the hello's own bytes.
pub fn read_hello<S: HandshakeIo>(
    stream: &mut S,
    deadline: Instant,
) -> Result<Hello, HandshakeError> {
    let mut fixed = [0u8; HELLO_FIXED_SIZE_BYTES];
    stream.read_exact_by(&mut fixed[..4], deadline)?;
    let magic = u32::from_le_bytes(fixed[..4].try_into().expect("4 bytes"));
    if magic != HELLO_MAGIC {
        return Err(HandshakeError::BadMagic(magic));
    }
    stream.read_exact_by(&mut fixed[4..], deadline)?;
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
    let nonce: [u8; NONCE_SIZE_BYTES] = fixed[20..36].try_into().expect("16 bytes");
    let cluster_len = fixed[36] as usize;
    let mut cluster = [0u8; CLUSTER_NAME_BYTES_MAX];
    stream.read_exact_by(&mut cluster[..cluster_len], deadline)?;
    let cluster = std::str::from_utf8(&cluster[..cluster_len])
        .map_err(|_| HandshakeError::Malformed("cluster name is not UTF-8".into()))?
        .to_owned();
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

/// The message carrying a proof (or, from the acceptor, the verdict on the dialer's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthMessage {
    pub status: Status,
    /// The sender's HMAC; zero in a refusal.
    pub mac: [u8; MAC_SIZE_BYTES],
}

impl AuthMessage {
    pub fn encode(&self) -> [u8; AUTH_MESSAGE_SIZE_BYTES] {
        let mut out = [0u8; AUTH_MESSAGE_SIZE_BYTES];
        out[..4].copy_from_slice(&AUTH_MAGIC.to_le_bytes());
        out[4] = self.status as u8;
        out[8..].copy_from_slice(&self.mac);
        out
    }

    pub fn decode(b: &[u8; AUTH_MESSAGE_SIZE_BYTES]) -> Result<AuthMessage, HandshakeError> {
        let magic = u32::from_le_bytes(b[..4].try_into().expect("4 bytes"));
        if magic != AUTH_MAGIC {
            return Err(HandshakeError::BadMagic(magic));
        }
        let status = Status::from_u8(b[4])
            .ok_or_else(|| HandshakeError::Malformed(format!("authentication status {}", b[4])))?;
        if b[5..8] != [0; 3] {
            return Err(HandshakeError::Malformed(
                "reserved bytes of the authentication message are not zero".into(),
            ));
        }
        Ok(AuthMessage {
            status,
            mac: b[8..].try_into().expect("32 bytes"),
        })
    }
}

/// Reads one authentication message before `deadline`.
pub fn read_auth<S: HandshakeIo>(
    stream: &mut S,
    deadline: Instant,
) -> Result<AuthMessage, HandshakeError> {
    let mut b = [0u8; AUTH_MESSAGE_SIZE_BYTES];
    stream.read_exact_by(&mut b, deadline)?;
    AuthMessage::decode(&b)
}

/// What a proof is bound to: one handshake between two engines.
#[derive(Debug, Clone, Copy)]
pub struct Transcript<'a> {
    pub kind: ConnKind,
    pub cluster: &'a str,
    pub dialer_id: u64,
    pub acceptor_id: u64,
    pub dialer_nonce: &'a [u8; NONCE_SIZE_BYTES],
    pub acceptor_nonce: &'a [u8; NONCE_SIZE_BYTES],
}

impl Transcript<'_> {
    fn keyed(&self, secret: &Secret, role: Role) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any size");
        mac.update(MAC_LABEL);
        mac.update(&[role as u8]);
        mac.update(&PROTOCOL_VERSION.to_le_bytes());
        mac.update(&[self.kind as u8]);
        // The name is at most 255 bytes (checked when the hello was read or made).
        let cluster = &self.cluster.as_bytes()[..self.cluster.len().min(CLUSTER_NAME_BYTES_MAX)];
        mac.update(&[cluster.len() as u8]);
        mac.update(cluster);
        mac.update(&self.dialer_id.to_le_bytes());
        mac.update(&self.acceptor_id.to_le_bytes());
        mac.update(self.dialer_nonce);
        mac.update(self.acceptor_nonce);
        mac
    }

    /// HMAC-SHA256(secret, label, role, version, kind, cluster, ids, nonces).
    pub fn proof(&self, secret: &Secret, role: Role) -> [u8; MAC_SIZE_BYTES] {
        self.keyed(secret, role).finalize().into_bytes().into()
    }

    /// Checks `role`'s proof in constant time.
    pub fn verify(&self, secret: &Secret, role: Role, mac: &[u8; MAC_SIZE_BYTES]) -> bool {
        self.keyed(secret, role).verify_slice(mac).is_ok()
    }
}

/// 16 bytes from the kernel's CSPRNG (getrandom(2), else /dev/urandom).
pub fn fresh_nonce() -> io::Result<[u8; NONCE_SIZE_BYTES]> {
    let mut nonce = [0u8; NONCE_SIZE_BYTES];
    let mut filled = 0;
    // getrandom never returns short reads of 16 bytes once seeded; the bound covers EINTR.
    for _ in 0..16 {
        // SAFETY: the pointer and length describe the unfilled tail of `nonce`.
        let n = unsafe {
            libc::getrandom(
                nonce[filled..].as_mut_ptr().cast(),
                NONCE_SIZE_BYTES - filled,
                0,
            )
        };
        if n > 0 {
            filled += n as usize;
            if filled == NONCE_SIZE_BYTES {
                return Ok(nonce);
            }
            continue;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            break;
        }
    }
    std::fs::File::open("/dev/urandom")?.read_exact(&mut nonce)?;
    Ok(nonce)
}

/// Checks a hello against this side's cluster and secret; the refusal if any.
fn verdict(theirs: &Hello, cluster: &str, have_secret: bool) -> Result<(), HandshakeError> {
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
    if theirs.flags & !FLAG_AUTH != 0 {
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
    match (have_secret, theirs.flags & FLAG_AUTH != 0) {
        (false, true) => refuse(
            Status::AuthUnsupported,
            "the peer asks for authentication".into(),
        ),
        (true, false) => refuse(
            Status::AuthRequired,
            "the peer does not authenticate".into(),
        ),
        _ => Ok(()),
    }
}

/// The accepting side without a secret: read the peer's hello, answer, and return it if
/// accepted.
pub fn accept<S: HandshakeIo>(
    stream: &mut S,
    cluster: &str,
    engine_id: u64,
    deadline: Instant,
) -> Result<Hello, HandshakeError> {
    accept_with(stream, cluster, engine_id, None, deadline)
}

/// The accepting side: read the peer's hello, answer it, and with a secret check the
/// peer's proof and send the verdict and this side's proof. Returns the peer's hello if
/// accepted; the whole exchange must finish before `deadline`.
pub fn accept_with<S: HandshakeIo>(
    stream: &mut S,
    cluster: &str,
    engine_id: u64,
    secret: Option<&Secret>,
    deadline: Instant,
) -> Result<Hello, HandshakeError> {
    let theirs = match read_hello(stream, deadline) {
        Ok(h) => h,
        Err(HandshakeError::Refused { status, detail }) => {
            // Tell the peer why before closing; best effort.
            let mut answer = Hello::new(ConnKind::Peer, engine_id, cluster);
            answer.status = status;
            let _ = stream.write_all_by(&answer.encode(), deadline);
            return Err(HandshakeError::Refused { status, detail });
        }
        Err(e) => return Err(e),
    };
    let mut answer = Hello::new(theirs.kind, engine_id, cluster);
    if secret.is_some() {
        answer.flags |= FLAG_AUTH;
        answer.nonce = fresh_nonce()?;
    }
    let checked = verdict(&theirs, cluster, secret.is_some());
    if let Err(HandshakeError::Refused { status, .. }) = &checked {
        answer.status = *status;
    }
    let sent = stream.write_all_by(&answer.encode(), deadline);
    checked?;
    sent?;
    let Some(secret) = secret else {
        return Ok(theirs);
    };
    let transcript = Transcript {
        kind: theirs.kind,
        cluster,
        dialer_id: theirs.engine_id,
        acceptor_id: engine_id,
        dialer_nonce: &theirs.nonce,
        acceptor_nonce: &answer.nonce,
    };
    let proof = read_auth(stream, deadline)?;
    if proof.status != Status::Accepted {
        return Err(HandshakeError::RefusedByPeer(proof.status));
    }
    if !transcript.verify(secret, Role::Dialer, &proof.mac) {
        let refusal = AuthMessage {
            status: Status::AuthFailed,
            mac: [0; MAC_SIZE_BYTES],
        };
        let _ = stream.write_all_by(&refusal.encode(), deadline);
        return Err(HandshakeError::Refused {
            status: Status::AuthFailed,
            detail: "its proof does not match this engine's secret, or was replayed".into(),
        });
    }
    let ours = AuthMessage {
        status: Status::Accepted,
        mac: transcript.proof(secret, Role::Acceptor),
    };
    stream.write_all_by(&ours.encode(), deadline)?;
    Ok(theirs)
}

/// The connecting side without a secret: send our hello, read the answer, return it if
/// accepted.
pub fn connect<S: HandshakeIo>(
    stream: &mut S,
    kind: ConnKind,
    cluster: &str,
    engine_id: u64,
    deadline: Instant,
) -> Result<Hello, HandshakeError> {
    connect_with(stream, kind, cluster, engine_id, None, deadline)
}

/// The connecting side: send our hello, read the answer, and with a secret send our
/// proof and check the acceptor's verdict and proof. Returns the acceptor's hello if
/// accepted; the whole exchange must finish before `deadline`.
pub fn connect_with<S: HandshakeIo>(
    stream: &mut S,
    kind: ConnKind,
    cluster: &str,
    engine_id: u64,
    secret: Option<&Secret>,
    deadline: Instant,
) -> Result<Hello, HandshakeError> {
    let mut ours = Hello::new(kind, engine_id, cluster);
    if secret.is_some() {
        ours.flags |= FLAG_AUTH;
        ours.nonce = fresh_nonce()?;
    }
    stream.write_all_by(&ours.encode(), deadline)?;
    let theirs = read_hello(stream, deadline)?;
    if theirs.status != Status::Accepted {
        return Err(HandshakeError::RefusedByPeer(theirs.status));
    }
    // An acceptor that skips authentication while this side has a secret is refused here.
    verdict(&theirs, cluster, secret.is_some())?;
    let Some(secret) = secret else {
        return Ok(theirs);
    };
    if theirs.nonce == ours.nonce {
        return Err(HandshakeError::Refused {
            status: Status::AuthFailed,
            detail: "it echoed this side's challenge".into(),
        });
    }
    let transcript = Transcript {
        kind,
        cluster,
        dialer_id: engine_id,
        acceptor_id: theirs.engine_id,
        dialer_nonce: &ours.nonce,
        acceptor_nonce: &theirs.nonce,
    };
    let proof = AuthMessage {
        status: Status::Accepted,
        mac: transcript.proof(secret, Role::Dialer),
    };
    stream.write_all_by(&proof.encode(), deadline)?;
    let reply = read_auth(stream, deadline)?;
    if reply.status != Status::Accepted {
        return Err(HandshakeError::RefusedByPeer(reply.status));
    }
    if !transcript.verify(secret, Role::Acceptor, &reply.mac) {
        return Err(HandshakeError::Refused {
            status: Status::AuthFailed,
            detail: "its proof does not match this engine's secret".into(),
        });
    }
    Ok(theirs)
}

/// The answer sent to a connection refused before its hello is read (over the limit).
pub fn refusal(status: Status, engine_id: u64, cluster: &str) -> Vec<u8> {
    let mut h = Hello::new(ConnKind::Peer, engine_id, cluster);
    h.status = status;
    h.encode()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// Two in-memory pipes; a read past the written bytes is a timeout (nothing blocks).
    #[derive(Default)]
    struct Pipe {
        incoming: VecDeque<u8>,
        outgoing: Vec<u8>,
    }

    impl HandshakeIo for Pipe {
        fn read_exact_by(&mut self, buf: &mut [u8], _deadline: Instant) -> io::Result<()> {
            if self.incoming.len() < buf.len() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no more input"));
            }
            for b in buf.iter_mut() {
                *b = self.incoming.pop_front().expect("checked length");
            }
            Ok(())
        }
        fn write_all_by(&mut self, buf: &[u8], _deadline: Instant) -> io::Result<()> {
            self.outgoing.extend_from_slice(buf);
            Ok(())
        }
    }

    fn transcript<'a>(dn: &'a [u8; 16], an: &'a [u8; 16]) -> Transcript<'a> {
        Transcript {
            kind: ConnKind::Peer,
            cluster: "c",
            dialer_id: 1,
            acceptor_id: 2,
            dialer_nonce: dn,
            acceptor_nonce: an,
        }
    }

    #[test]
    fn proofs_depend_on_every_bound_field_and_the_role() {
        let secret = Secret::new(b"0123456789abcdef".to_vec());
        let (dn, an) = ([1u8; 16], [2u8; 16]);
        let base = transcript(&dn, &an);
        let mac = base.proof(&secret, Role::Dialer);
        assert!(base.verify(&secret, Role::Dialer, &mac));
        assert!(!base.verify(&secret, Role::Acceptor, &mac));
        assert!(!base.verify(
            &Secret::new(b"0123456789abcdeF".to_vec()),
            Role::Dialer,
            &mac
        ));
        let other_nonce = [3u8; 16];
        let variants = [
            Transcript {
                kind: ConnKind::Client,
                ..base
            },
            Transcript {
                cluster: "d",
                ..base
            },
            Transcript {
                dialer_id: 9,
                ..base
            },
            Transcript {
                acceptor_id: 9,
                ..base
            },
            Transcript {
                dialer_nonce: &other_nonce,
                ..base
            },
            Transcript {
                acceptor_nonce: &other_nonce,
                ..base
            },
        ];
        for (i, t) in variants.iter().enumerate() {
            assert!(
                !t.verify(&secret, Role::Dialer, &mac),
                "variant {i} verified"
            );
        }
    }

    #[test]
    fn nonces_are_fresh() {
        let a = fresh_nonce().unwrap();
        let b = fresh_nonce().unwrap();
        assert_ne!(a, b);
        assert_ne!(a, [0; 16]);
    }

    #[test]
    fn auth_message_round_trips_and_checks_its_reserved_bytes() {
        let m = AuthMessage {
            status: Status::AuthFailed,
            mac: [7; 32],
        };
        let mut b = m.encode();
        assert_eq!(AuthMessage::decode(&b).unwrap(), m);
        b[6] = 1;
        assert!(matches!(
            AuthMessage::decode(&b),
            Err(HandshakeError::Malformed(_))
        ));
    }

    /// The acceptor's answer to a hello, in memory.
    #[test]
    fn acceptor_answers_by_whether_each_side_has_a_secret() {
        let run = |dialer: Option<&Secret>, acceptor: Option<&Secret>| {
            let deadline = Instant::now() + Duration::from_secs(1);
            // Step by step: the functions are blocking, so play each message by hand.
            let mut d = Pipe::default();
            let mut ours = Hello::new(ConnKind::Peer, 1, "c");
            if dialer.is_some() {
                ours.flags |= FLAG_AUTH;
                ours.nonce = fresh_nonce().unwrap();
            }
            d.outgoing.extend_from_slice(&ours.encode());
            let mut a = Pipe {
                incoming: d.outgoing.drain(..).collect(),
                ..Pipe::default()
            };
            // The acceptor stops for lack of input after its hello when auth is on.
            let first = accept_with(&mut a, "c", 2, acceptor, deadline);
            (first, a.outgoing)
        };
        let s1 = Secret::new(b"secret-one-secret-one".to_vec());
        let (r, out) = run(None, None);
        assert!(r.is_ok());
        assert_eq!(out.len(), HELLO_FIXED_SIZE_BYTES + 1);
        let (r, _) = run(None, Some(&s1));
        assert_eq!(r.unwrap_err().status(), Some(Status::AuthRequired));
        let (r, _) = run(Some(&s1), None);
        assert_eq!(r.unwrap_err().status(), Some(Status::AuthUnsupported));
        let (r, out) = run(Some(&s1), Some(&s1));
        assert!(
            matches!(r, Err(HandshakeError::Io(_))),
            "waits for the proof"
        );
        assert_eq!(out.len(), HELLO_FIXED_SIZE_BYTES + 1);
        assert_eq!(out[7] & FLAG_AUTH, FLAG_AUTH);
    }
}
