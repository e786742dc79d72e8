//! The engine's TCP transport.
//!
//! CONTRACT (the group layer relies on exactly this):
//! - One `Transport` per engine. `listen(addr)` binds once per address (a second call for
//!   the same address is a no-op), so several groups and several members share a port.
//! - Inbound frames are routed by `(group, to)` to the handler registered for them, on the
//!   connection's reader thread; a handler must not block for long.
//! - `send(addr, frame)` never blocks: it queues the frame on the link to `addr` (bounded;
//!   when full or down the frame is dropped and `false` returned). Links connect lazily
//!   and reconnect with backoff.
//! - Client connections: frames from clients arrive with a `Responder` to answer on.
//! - `close()` stops and joins every thread it started.
//!
//! Threads: one acceptor per listening address, one reader per inbound connection, one
//! writer per outbound link (remote address). Connection model and limits:
//! docs/PROTOCOL.md.

use super::frame::{encode, encoded_len, Decoder, FrameError};
use super::handshake::{self, ConnKind, HandshakeError, Status, CLUSTER_NAME_BYTES_MAX};
use super::log_limit::{held_back_note, LogLimiter};
use super::msg::{ClientResponse, Frame, Message, CLIENT_PEER};
use super::sock::{is_timeout, readable_or_closed, send_all, wait_readable};
use crate::config::Secret;
use crate::error::{Error, ErrorKind, Result};
use crate::types::EntryMeta;
use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use log::{debug, error, info, warn};
use std::collections::HashMap;
use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Limits of one transport. Every queue and wait is bounded by one of these.
#[derive(Debug, Clone)]
pub struct NetLimits {
    /// Frames queued on one outbound link before `send` drops.
    pub link_queue_frames_max: usize,
    /// Encoded bytes queued on one outbound link before `send` drops.
    pub link_queue_bytes_max: usize,
    /// Bytes gathered into one write by a link writer.
    pub write_batch_bytes_max: usize,
    /// Inbound connections served at once; more are refused.
    pub inbound_connections_max: usize,
    /// Time a new connection has to complete its handshake.
    pub handshake_timeout_ms: u64,
    /// Time a link waits for a TCP connect.
    pub connect_timeout_ms: u64,
    /// First reconnect delay of a link; doubles after every failure up to the max.
    pub reconnect_backoff_min_ms: u64,
    pub reconnect_backoff_max_ms: u64,
    /// A client connection silent this long is closed.
    pub client_idle_timeout_ms: u64,
    /// A client that does not read its answers for this long is disconnected.
    pub client_write_timeout_ms: u64,
}

impl Default for NetLimits {
    fn default() -> Self {
        NetLimits {
            link_queue_frames_max: 8192,
            link_queue_bytes_max: 256 << 20,
            write_batch_bytes_max: 1 << 20,
            inbound_connections_max: 1024,
            handshake_timeout_ms: 5_000,
            connect_timeout_ms: 1_000,
            reconnect_backoff_min_ms: 10,
            reconnect_backoff_max_ms: 1_000,
            client_idle_timeout_ms: 600_000,
            client_write_timeout_ms: 5_000,
        }
    }
}

/// Poll period of acceptors: the longest `close()` waits for one to notice.
const ACCEPT_POLL_MS: i32 = 50;

/// A remote that keeps failing its handshake (a reconnect loop with the wrong secret, a
/// flood of connections) gets one log line per kind of failure in this interval.
const REFUSAL_LOG_INTERVAL_MS: u64 = 10_000;
/// `LogLimiter` key of "over the connection limit" (other keys are handshake statuses).
const LOG_KEY_CONNECTION_LIMIT: u8 = 254;
/// `LogLimiter` key of handshakes that failed without a status (I/O, timeout, garbage).
const LOG_KEY_HANDSHAKE_IO: u8 = 255;

/// Answers one client request on the connection it came from. Cheap to clone and send.
#[derive(Clone)]
pub struct Responder {
    conn: Arc<ClientConn>,
}

struct ClientConn {
    /// Serializes answers from several threads; each answer is one write.
    stream: Mutex<TcpStream>,
    peer: SocketAddr,
    frame_size_bytes_max: u32,
}

impl Responder {
    /// Writes `frame` back to the client. A client that does not read within the write
    /// timeout, or a broken connection, gets the connection closed; the answer is lost.
    pub fn respond(&self, frame: Frame) {
        let conn = &self.conn;
        let mut buf = Vec::new();
        if let Err(e) = encode(&frame, &mut buf) {
            warn!("answer to client {}: {e}; dropped", conn.peer);
            return;
        }
        if buf.len() > conn.frame_size_bytes_max as usize {
            warn!(
                "answer to client {} is {} bytes, over the frame limit of {}; dropped",
                conn.peer,
                buf.len(),
                conn.frame_size_bytes_max
            );
            return;
        }
        let stream = conn.stream.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = send_all(&stream, &buf) {
            debug!(
                "answer to client {}: {e}; closing the connection",
                conn.peer
            );
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.conn.peer
    }
}

/// Called for every inbound frame addressed to a registered (group, member).
pub type Handler = Arc<dyn Fn(Frame, Option<Responder>) + Send + Sync>;

/// The engine's network endpoint. `Send + Sync`; share it behind an `Arc`.
pub struct Transport {
    inner: Arc<Inner>,
}

struct Inner {
    cluster_name: String,
    engine_id: u64,
    /// `dLegerSecret`: when set, every connection in either direction authenticates.
    secret: Option<Secret>,
    refusal_log: LogLimiter,
    frame_size_bytes_max: u32,
    limits: NetLimits,
    closed: AtomicBool,
    handlers: RwLock<HashMap<String, HashMap<u8, Handler>>>,
    listeners: Mutex<Vec<ListenerEntry>>,
    conns: Mutex<HashMap<u64, ConnEntry>>,
    next_conn_id: AtomicU64,
    links: RwLock<HashMap<SocketAddr, Link>>,
}

struct ListenerEntry {
    requested: SocketAddr,
    local: SocketAddr,
    thread: JoinHandle<()>,
}

struct ConnEntry {
    /// A handle on the socket so `close()` can wake the reader.
    stream: TcpStream,
    finished: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

struct Link {
    tx: Sender<Frame>,
    shared: Arc<LinkShared>,
    thread: JoinHandle<()>,
}

struct LinkShared {
    queued_bytes: AtomicUsize,
    /// The connected socket, so `close()` can interrupt a blocked write.
    stream: Mutex<Option<TcpStream>>,
}

impl Transport {
    /// A transport with the default [`NetLimits`].
    pub fn new(cluster_name: &str, frame_size_bytes_max: u32) -> Transport {
        Transport::with_limits(cluster_name, frame_size_bytes_max, NetLimits::default())
    }

    pub fn with_limits(
        cluster_name: &str,
        frame_size_bytes_max: u32,
        limits: NetLimits,
    ) -> Transport {
        Transport::with_secret(cluster_name, frame_size_bytes_max, limits, None)
    }

    /// A transport whose connections, inbound and outbound, peer and client, authenticate
    /// with `secret` (`dLegerSecret`; docs/PROTOCOL.md, "Authentication"). Engines and
    /// clients without the same secret are refused.
    pub fn with_secret(
        cluster_name: &str,
        frame_size_bytes_max: u32,
        limits: NetLimits,
        secret: Option<Secret>,
    ) -> Transport {
        let mut cluster = cluster_name.to_owned();
        if cluster.len() > CLUSTER_NAME_BYTES_MAX {
            // The configuration keeps names short; a longer one could never handshake.
            warn!("cluster name is over {CLUSTER_NAME_BYTES_MAX} bytes; using its prefix");
            let mut cut = CLUSTER_NAME_BYTES_MAX;
            while !cluster.is_char_boundary(cut) {
                cut -= 1;
            }
            cluster.truncate(cut);
        }
        Transport {
            inner: Arc::new(Inner {
                cluster_name: cluster,
                engine_id: fastrand::u64(..),
                secret,
                refusal_log: LogLimiter::new(Duration::from_millis(REFUSAL_LOG_INTERVAL_MS)),
                frame_size_bytes_max: frame_size_bytes_max
                    .max(super::frame::FRAME_SIZE_LIMIT_BYTES_MIN),
                limits,
                closed: AtomicBool::new(false),
                handlers: RwLock::new(HashMap::new()),
                listeners: Mutex::new(Vec::new()),
                conns: Mutex::new(HashMap::new()),
                next_conn_id: AtomicU64::new(1),
                links: RwLock::new(HashMap::new()),
            }),
        }
    }

    /// This engine's random id, sent in every handshake.
    pub fn engine_id(&self) -> u64 {
        self.inner.engine_id
    }

    pub fn listen(&self, addr: SocketAddr) -> Result<()> {
        self.bind(addr).map(|_| ())
    }

    /// Like [`Transport::listen`], returning the bound address (useful with port 0; every
    /// call with port 0 binds a new port).
    pub fn bind(&self, addr: SocketAddr) -> Result<SocketAddr> {
        let inner = &self.inner;
        let mut listeners = lock(&inner.listeners);
        if inner.closed.load(Ordering::Acquire) {
            return Err(Error::closed("transport"));
        }
        if addr.port() != 0 {
            if let Some(l) = listeners
                .iter()
                .find(|l| l.requested == addr || l.local == addr)
            {
                return Ok(l.local);
            }
        }
        let listener =
            TcpListener::bind(addr).map_err(|e| Error::io(format!("listen {addr}"), e))?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::io(format!("listen {addr}"), e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io(format!("listen {addr}"), e))?;
        let worker = Arc::clone(inner);
        let thread = thread::Builder::new()
            .name(format!("rqnet-acc-{}", local.port()))
            .spawn(move || accept_loop(worker, listener, local))
            .map_err(|e| Error::io(format!("listen {addr}: spawn acceptor"), e))?;
        info!("listening on {local}");
        listeners.push(ListenerEntry {
            requested: addr,
            local,
            thread,
        });
        Ok(local)
    }

    /// The addresses bound so far.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        lock(&self.inner.listeners)
            .iter()
            .map(|l| l.local)
            .collect()
    }

    pub fn register(&self, group: &str, member: u8, handler: Handler) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::closed("transport"));
        }
        if member == CLIENT_PEER {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("group '{group}': member {member} is reserved for clients"),
            ));
        }
        let mut handlers = self
            .inner
            .handlers
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let members = handlers.entry(group.to_owned()).or_default();
        if members.contains_key(&member) {
            return Err(Error::new(
                ErrorKind::Exists,
                format!("group '{group}': member {member} is already registered on this engine"),
            ));
        }
        members.insert(member, handler);
        Ok(())
    }

    pub fn unregister(&self, group: &str, member: u8) {
        let mut handlers = self
            .inner
            .handlers
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(members) = handlers.get_mut(group) {
            members.remove(&member);
            if members.is_empty() {
                handlers.remove(group);
            }
        }
    }

    /// Drops the connection of the link to `addr`, if any; the next frame reconnects.
    /// For a peer that stopped answering: a connection whose far end is gone while this
    /// side still accepts writes (half-open) is otherwise never noticed, since peer links
    /// only write.
    pub fn reset_link(&self, addr: SocketAddr) {
        let links = self.inner.links.read().unwrap_or_else(|p| p.into_inner());
        if let Some(link) = links.get(&addr) {
            if let Some(stream) = lock(&link.shared.stream).as_ref() {
                debug!("link to {addr}: reset on request");
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }

    pub fn send(&self, addr: SocketAddr, frame: Frame) -> bool {
        let inner = &self.inner;
        if inner.closed.load(Ordering::Acquire) {
            return false;
        }
        let len = match encoded_len(&frame) {
            Ok(len) if len <= inner.frame_size_bytes_max as usize => len,
            Ok(len) => {
                warn!(
                    "frame for {addr} (group '{}') is {len} bytes, over the limit of {}; dropped",
                    frame.group, inner.frame_size_bytes_max
                );
                return false;
            }
            Err(e) => {
                warn!("frame for {addr}: {e}; dropped");
                return false;
            }
        };
        {
            let links = inner.links.read().unwrap_or_else(|p| p.into_inner());
            if let Some(link) = links.get(&addr) {
                return link.offer(frame, len, &inner.limits);
            }
        }
        let mut links = inner.links.write().unwrap_or_else(|p| p.into_inner());
        // Checked under the lock `close()` drains, so no link is made after it.
        if inner.closed.load(Ordering::Acquire) {
            return false;
        }
        if let std::collections::hash_map::Entry::Vacant(slot) = links.entry(addr) {
            let (tx, rx) = crossbeam_channel::bounded(inner.limits.link_queue_frames_max.max(1));
            let shared = Arc::new(LinkShared {
                queued_bytes: AtomicUsize::new(0),
                stream: Mutex::new(None),
            });
            let worker = Arc::clone(inner);
            let worker_shared = Arc::clone(&shared);
            let spawned = thread::Builder::new()
                .name(format!("rqnet-wr-{}", addr.port()))
                .spawn(move || link_writer(worker, addr, rx, worker_shared));
            match spawned {
                Ok(thread) => {
                    slot.insert(Link { tx, shared, thread });
                }
                Err(e) => {
                    warn!("link to {addr}: cannot spawn its writer: {e}; frame dropped");
                    return false;
                }
            }
        }
        links[&addr].offer(frame, len, &inner.limits)
    }

    /// Counts for metrics: (listener threads, open inbound connections, outbound links,
    /// bytes queued on those links). Each connection and each link has one thread.
    pub fn stats(&self) -> (u64, u64, u64, u64) {
        let inner = &self.inner;
        let listeners = lock(&inner.listeners).len() as u64;
        let conns = lock(&inner.conns)
            .values()
            .filter(|c| !c.finished.load(Ordering::Acquire))
            .count() as u64;
        let links = inner.links.read().unwrap_or_else(|p| p.into_inner());
        let queued: usize = links
            .values()
            .map(|l| l.shared.queued_bytes.load(Ordering::Relaxed))
            .sum();
        (listeners, conns, links.len() as u64, queued as u64)
    }

    /// Stops every thread and joins it; the listening ports are free afterwards. Must not
    /// be called from a handler (it would wait for its own reader thread).
    pub fn close(&self) {
        let inner = &self.inner;
        if inner.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let listeners = std::mem::take(&mut *lock(&inner.listeners));
        for l in listeners {
            join(l.thread, "acceptor");
            debug!("stopped listening on {}", l.local);
        }
        let conns = std::mem::take(&mut *lock(&inner.conns));
        for (_, c) in conns.iter() {
            let _ = c.stream.shutdown(Shutdown::Both);
        }
        for (_, mut c) in conns {
            if let Some(t) = c.thread.take() {
                join(t, "connection reader");
            }
        }
        let links = std::mem::take(&mut *inner.links.write().unwrap_or_else(|p| p.into_inner()));
        for (addr, link) in links {
            drop(link.tx);
            if let Some(s) = lock(&link.shared.stream).as_ref() {
                let _ = s.shutdown(Shutdown::Both);
            }
            join(link.thread, "link writer");
            debug!("link to {addr} closed");
        }
        lock_write(&inner.handlers).clear();
        info!("transport closed");
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        self.close();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn lock_write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|p| p.into_inner())
}

/// Joins a thread unless it is the calling one.
fn join(t: JoinHandle<()>, what: &str) {
    if t.thread().id() == thread::current().id() {
        warn!("transport closed from its own {what} thread; not waiting for it");
        return;
    }
    if t.join().is_err() {
        warn!("a transport {what} thread panicked");
    }
}

impl Link {
    fn offer(&self, frame: Frame, len: usize, limits: &NetLimits) -> bool {
        let queued = self.shared.queued_bytes.fetch_add(len, Ordering::AcqRel);
        if queued + len > limits.link_queue_bytes_max {
            self.shared.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            return false;
        }
        match self.tx.try_send(frame) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.shared.queued_bytes.fetch_sub(len, Ordering::AcqRel);
                false
            }
        }
    }
}

fn accept_loop(inner: Arc<Inner>, listener: TcpListener, local: SocketAddr) {
    let mut error_pause_ms = 1u64;
    while !inner.closed.load(Ordering::Acquire) {
        if !wait_readable(listener.as_raw_fd(), ACCEPT_POLL_MS) {
            continue;
        }
        match listener.accept() {
            Ok((stream, peer)) => {
                error_pause_ms = 1;
                admit(&inner, stream, peer);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                warn!("accept on {local}: {e}");
                thread::sleep(Duration::from_millis(error_pause_ms));
                error_pause_ms = (error_pause_ms * 2).min(ACCEPT_POLL_MS as u64);
            }
        }
    }
}

/// Starts a reader for an accepted connection, or refuses it when over the limit.
fn admit(inner: &Arc<Inner>, stream: TcpStream, peer: SocketAddr) {
    let mut conns = lock(&inner.conns);
    if inner.closed.load(Ordering::Acquire) {
        return;
    }
    // Reap readers that have finished.
    let done: Vec<u64> = conns
        .iter()
        .filter(|(_, c)| c.finished.load(Ordering::Acquire))
        .map(|(id, _)| *id)
        .collect();
    for id in done {
        if let Some(mut c) = conns.remove(&id) {
            if let Some(t) = c.thread.take() {
                join(t, "connection reader");
            }
        }
    }
    if conns.len() >= inner.limits.inbound_connections_max {
        if let Some(held_back) = inner.refusal_log.admit(peer.ip(), LOG_KEY_CONNECTION_LIMIT) {
            warn!(
                "refusing connection from {peer}: {} connections open, the limit{}",
                conns.len(),
                held_back_note(held_back)
            );
        }
        // Best effort: the socket buffer of a new connection takes a hello without blocking.
        let _ = stream.set_nonblocking(true);
        let _ = send_all(
            &stream,
            &handshake::refusal(
                Status::TooManyConnections,
                inner.engine_id,
                &inner.cluster_name,
            ),
        );
        // Unread input makes the close a reset, which can discard the refusal before the
        // peer reads it; drop what already arrived.
        let mut sink = [0u8; 512];
        let _ = (&stream).read(&mut sink);
        return;
    }
    let handle = match stream
        .set_nonblocking(false)
        .and_then(|_| stream.try_clone())
    {
        Ok(h) => h,
        Err(e) => {
            warn!("connection from {peer}: {e}");
            return;
        }
    };
    let id = inner.next_conn_id.fetch_add(1, Ordering::Relaxed);
    let finished = Arc::new(AtomicBool::new(false));
    let worker = Arc::clone(inner);
    let worker_finished = Arc::clone(&finished);
    let spawned = thread::Builder::new()
        .name(format!("rqnet-rd-{id}"))
        .spawn(move || {
            serve(&worker, stream, peer);
            worker_finished.store(true, Ordering::Release);
        });
    match spawned {
        Ok(t) => {
            conns.insert(
                id,
                ConnEntry {
                    stream: handle,
                    finished,
                    thread: Some(t),
                },
            );
        }
        Err(e) => warn!("connection from {peer}: cannot spawn its reader: {e}"),
    }
}

/// The reader of one inbound connection: handshake, then frames until EOF or an error.
fn serve(inner: &Inner, mut stream: TcpStream, peer: SocketAddr) {
    let deadline = Instant::now() + Duration::from_millis(inner.limits.handshake_timeout_ms);
    let hello = match handshake::accept_with(
        &mut stream,
        &inner.cluster_name,
        inner.engine_id,
        inner.secret.as_ref(),
        deadline,
    ) {
        Ok(h) => h,
        Err(HandshakeError::Io(e)) if !is_timeout(&e) && inner.closed.load(Ordering::Acquire) => {
            return;
        }
        Err(e) => {
            log_refusal(inner, peer, &e, "connection from");
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(None);
    let responder = match hello.kind {
        ConnKind::Peer => {
            debug!(
                "peer connection from {peer} (engine {:016x})",
                hello.engine_id
            );
            if stream.set_read_timeout(None).is_err() {
                return;
            }
            None
        }
        ConnKind::Client => {
            debug!("client connection from {peer}");
            let idle = Duration::from_millis(inner.limits.client_idle_timeout_ms.max(1));
            let write = Duration::from_millis(inner.limits.client_write_timeout_ms.max(1));
            let writer = match stream.try_clone() {
                Ok(w) => w,
                Err(e) => {
                    warn!("client connection from {peer}: {e}");
                    return;
                }
            };
            if stream.set_read_timeout(Some(idle)).is_err()
                || writer.set_write_timeout(Some(write)).is_err()
            {
                return;
            }
            Some(Responder {
                conn: Arc::new(ClientConn {
                    stream: Mutex::new(writer),
                    peer,
                    frame_size_bytes_max: inner.frame_size_bytes_max,
                }),
            })
        }
    };
    let mut decoder = Decoder::new(inner.frame_size_bytes_max);
    loop {
        match decoder.read_from(&mut stream) {
            Ok(0) => {
                debug!("connection from {peer} closed by the peer");
                return;
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(&e) => {
                info!("client connection from {peer} idle too long; closing it");
                let _ = stream.shutdown(Shutdown::Both);
                return;
            }
            Err(e) => {
                if !inner.closed.load(Ordering::Acquire) {
                    debug!("connection from {peer}: {e}");
                }
                return;
            }
        }
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    let admitted = admits(hello.kind, &frame.message)
                        .and_then(|()| binds_from(hello.kind, &frame));
                    if let Err(why) = admitted {
                        warn!("connection from {peer}: {why}; closing it");
                        let _ = stream.shutdown(Shutdown::Both);
                        return;
                    }
                    dispatch(inner, frame, responder.as_ref(), peer)
                }
                Ok(None) => break,
                Err(e) => {
                    refuse_corrupt(&stream, peer, &e);
                    return;
                }
            }
        }
    }
}

/// Logs a failed handshake with `peer`, at most once per interval per peer address and
/// kind of failure. A disagreement on the secret is an error: the group cannot work.
fn log_refusal(inner: &Inner, peer: SocketAddr, e: &HandshakeError, context: &str) {
    let key = e.status().map_or(LOG_KEY_HANDSHAKE_IO, |s| s as u8);
    let Some(held_back) = inner.refusal_log.admit(peer.ip(), key) else {
        return;
    };
    let note = held_back_note(held_back);
    if e.is_auth_problem() {
        error!("peer {peer} {e}{note}");
    } else {
        warn!("{context} peer {peer}: {e}{note}");
    }
}

/// Which messages a connection of each kind may carry. A client connection that sent
/// Raft messages could speak for any member (`from` is only a byte in the frame): only
/// an authenticated peer connection carries votes and pushes, and only a client
/// connection carries client requests.
fn admits(kind: ConnKind, message: &Message) -> std::result::Result<(), String> {
    let raft = matches!(
        message,
        Message::Vote(_)
            | Message::VoteResp(_)
            | Message::Push(_)
            | Message::PushResp(_)
            | Message::TimeoutNow { .. }
            | Message::OldLog { .. }
            | Message::OldLogResp { .. }
    );
    match kind {
        ConnKind::Peer if !raft => Err(format!(
            "a peer connection sent a client message ({})",
            message_name(message)
        )),
        ConnKind::Client if raft => Err(format!(
            "a client connection sent a Raft message ({}), which only peer connections may carry",
            message_name(message)
        )),
        _ => Ok(()),
    }
}

/// Binds a connection's `from` to what its handshake authenticated. A client connection
/// speaks for no member: every frame on it carries `CLIENT_PEER`, and its answers go back
/// on it (a member number there would make a member take the client for a peer). A peer
/// connection speaks for members of the engine that dialled it, never for a client. (The
/// handshake authenticates an engine, which may hold several members of one group, so a
/// peer connection's `from` is not narrowed further.)
fn binds_from(kind: ConnKind, frame: &Frame) -> std::result::Result<(), String> {
    match kind {
        ConnKind::Client if frame.from != CLIENT_PEER => Err(format!(
            "a client connection sent a frame from member {} of group '{}'",
            frame.from, frame.group
        )),
        ConnKind::Peer if frame.from == CLIENT_PEER => Err(format!(
            "a peer connection sent a frame from a client for group '{}'",
            frame.group
        )),
        _ => Ok(()),
    }
}

fn message_name(message: &Message) -> &'static str {
    match message {
        Message::Vote(_) => "Vote",
        Message::VoteResp(_) => "VoteResp",
        Message::Push(_) => "Push",
        Message::PushResp(_) => "PushResp",
        Message::TimeoutNow { .. } => "TimeoutNow",
        Message::OldLog { .. } => "OldLog",
        Message::OldLogResp { .. } => "OldLogResp",
        Message::ClientAppend { .. } => "ClientAppend",
        Message::ClientAppendIdempotent { .. } => "ClientAppendIdempotent",
        Message::ClientRead { .. } => "ClientRead",
        Message::ClientStatus => "ClientStatus",
        Message::ClientTransfer { .. } => "ClientTransfer",
        Message::ClientResp(_) => "ClientResp",
    }
}

fn refuse_corrupt(stream: &TcpStream, peer: SocketAddr, e: &FrameError) {
    warn!("connection from {peer}: {e}; closing it");
    let _ = stream.shutdown(Shutdown::Both);
}

fn dispatch(inner: &Inner, frame: Frame, responder: Option<&Responder>, peer: SocketAddr) {
    let handler = {
        let handlers = inner.handlers.read().unwrap_or_else(|p| p.into_inner());
        handlers
            .get(frame.group.as_str())
            .and_then(|m| m.get(&frame.to))
            .cloned()
    };
    match handler {
        Some(h) => h(frame, responder.cloned()),
        None => {
            debug!(
                "frame from {peer} for group '{}' member {}: not on this engine; dropped",
                frame.group, frame.to
            );
            // A client would otherwise wait for its timeout.
            if let Some(r) = responder {
                if !matches!(frame.message, Message::ClientResp(_)) {
                    r.respond(Frame {
                        message: Message::ClientResp(ClientResponse {
                            result: ErrorKind::NotFound.code(),
                            message: format!(
                                "group '{}' has no member {} on this engine",
                                frame.group, frame.to
                            ),
                            leader_peer: -1,
                            meta: EntryMeta::default(),
                            data: Bytes::new(),
                            status: None,
                        }),
                        group: frame.group,
                        from: frame.to,
                        to: frame.from,
                        request_id: frame.request_id,
                    });
                }
            }
        }
    }
}

/// The writer of one outbound link: connects when a frame arrives, batches what is
/// queued into one write, reconnects with backoff, and drops frames while down.
fn link_writer(inner: Arc<Inner>, addr: SocketAddr, rx: Receiver<Frame>, shared: Arc<LinkShared>) {
    let limits = &inner.limits;
    let backoff_min = Duration::from_millis(limits.reconnect_backoff_min_ms.max(1));
    let backoff_max =
        Duration::from_millis(limits.reconnect_backoff_max_ms.max(1)).max(backoff_min);
    let mut backoff = backoff_min;
    let mut retry_at = Instant::now();
    let mut stream: Option<TcpStream> = None;
    let mut failures = 0u64;
    let mut dropped = 0u64;
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        let first = match rx.recv() {
            Ok(f) => f,
            Err(_) => break,
        };
        if inner.closed.load(Ordering::Acquire) {
            break;
        }
        if let Some(s) = &stream {
            if readable_or_closed(s) {
                debug!("link to {addr}: closed by the peer; reconnecting");
                disconnect(&shared, &mut stream);
                retry_at = Instant::now();
            }
        }
        if stream.is_none() {
            if Instant::now() < retry_at {
                shared
                    .queued_bytes
                    .fetch_sub(encoded_len_or_zero(&first), Ordering::AcqRel);
                dropped += 1;
                continue;
            }
            match connect(&inner, addr, &shared) {
                Ok(s) => {
                    if failures > 0 || dropped > 0 {
                        info!("link to {addr} up after {failures} failed attempts, {dropped} frames dropped");
                    } else {
                        debug!("link to {addr} up");
                    }
                    failures = 0;
                    dropped = 0;
                    backoff = backoff_min;
                    stream = Some(s);
                }
                Err(e) => {
                    if failures == 0 {
                        warn!("link to {addr}: {e}; retrying with backoff");
                    } else {
                        debug!("link to {addr}: {e} (attempt {})", failures + 1);
                    }
                    failures += 1;
                    retry_at = Instant::now() + backoff;
                    backoff = (backoff * 2).min(backoff_max);
                    shared
                        .queued_bytes
                        .fetch_sub(encoded_len_or_zero(&first), Ordering::AcqRel);
                    dropped += 1;
                    continue;
                }
            }
        }
        buf.clear();
        append(&mut buf, &first, &shared);
        while buf.len() < limits.write_batch_bytes_max {
            match rx.try_recv() {
                Ok(f) => append(&mut buf, &f, &shared),
                Err(_) => break,
            }
        }
        let s = stream.as_ref().expect("connected above");
        if let Err(e) = send_all(s, &buf) {
            if !inner.closed.load(Ordering::Acquire) {
                info!("link to {addr}: write failed: {e}; reconnecting");
            }
            disconnect(&shared, &mut stream);
            retry_at = Instant::now() + backoff;
            backoff = (backoff * 2).min(backoff_max);
        }
    }
    disconnect(&shared, &mut stream);
}

fn encoded_len_or_zero(frame: &Frame) -> usize {
    encoded_len(frame).unwrap_or(0)
}

/// Encodes `frame` onto the batch and releases its bytes from the queue account.
fn append(buf: &mut Vec<u8>, frame: &Frame, shared: &LinkShared) {
    let before = buf.len();
    if let Err(e) = encode(frame, buf) {
        // `send` checked the frame; this cannot happen for frames it accepted.
        warn!("frame for group '{}': {e}; dropped", frame.group);
    }
    shared
        .queued_bytes
        .fetch_sub(buf.len() - before, Ordering::AcqRel);
}

fn disconnect(shared: &LinkShared, stream: &mut Option<TcpStream>) {
    if let Some(s) = stream.take() {
        let _ = s.shutdown(Shutdown::Both);
    }
    *lock(&shared.stream) = None;
}

fn connect(inner: &Inner, addr: SocketAddr, shared: &LinkShared) -> io::Result<TcpStream> {
    let timeout = Duration::from_millis(inner.limits.connect_timeout_ms.max(1));
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_nodelay(true)?;
    // Published before the handshake so `close()` can interrupt it.
    *lock(&shared.stream) = Some(stream.try_clone()?);
    if inner.closed.load(Ordering::Acquire) {
        return Err(io::Error::other("transport closed"));
    }
    let deadline = Instant::now() + Duration::from_millis(inner.limits.handshake_timeout_ms);
    let result = handshake::connect_with(
        &mut stream,
        ConnKind::Peer,
        &inner.cluster_name,
        inner.engine_id,
        inner.secret.as_ref(),
        deadline,
    );
    match result {
        Ok(hello) => {
            debug!("link to {addr}: engine {:016x}", hello.engine_id);
            stream.set_write_timeout(None)?;
            Ok(stream)
        }
        Err(e) => {
            if e.is_auth_problem() {
                log_refusal(inner, addr, &e, "link to");
            }
            *lock(&shared.stream) = None;
            let _ = stream.shutdown(Shutdown::Both);
            Err(io::Error::other(e.to_string()))
        }
    }
}

/// A blocking client of one member, for tools and the `--remote` benchmark.
pub struct Client {
    stream: TcpStream,
    addr: SocketAddr,
    decoder: Decoder,
    buf: Vec<u8>,
}

/// Frame limit of a [`Client`]: the configuration's default.
pub const CLIENT_FRAME_SIZE_BYTES_MAX: u32 = 64 << 20;

impl Client {
    pub fn connect(addr: SocketAddr, cluster_name: &str, timeout: Duration) -> Result<Client> {
        Client::connect_with(addr, cluster_name, None, timeout)
    }

    /// Like [`Client::connect`], authenticating with `secret` (the engine's `dLegerSecret`),
    /// which an engine with a secret requires.
    pub fn connect_with(
        addr: SocketAddr,
        cluster_name: &str,
        secret: Option<&Secret>,
        timeout: Duration,
    ) -> Result<Client> {
        let deadline = Instant::now() + timeout;
        let mut stream = TcpStream::connect_timeout(&addr, timeout.max(Duration::from_millis(1)))
            .map_err(|e| Error::io(format!("connect {addr}"), e))?;
        stream
            .set_nodelay(true)
            .map_err(|e| Error::io(format!("connect {addr}"), e))?;
        match handshake::connect_with(
            &mut stream,
            ConnKind::Client,
            cluster_name,
            fastrand::u64(..),
            secret,
            deadline,
        ) {
            Ok(_) => {}
            Err(HandshakeError::Io(e)) if is_timeout(&e) => {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "connect {addr}: handshake not answered within {} ms",
                        timeout.as_millis()
                    ),
                ))
            }
            Err(e) => return Err(Error::new(ErrorKind::Io, format!("connect {addr}: {e}"))),
        }
        Ok(Client {
            stream,
            addr,
            decoder: Decoder::new(CLIENT_FRAME_SIZE_BYTES_MAX),
            buf: Vec::new(),
        })
    }

    /// Sends a client request frame and waits for its answer (the frame with the same
    /// `request_id`; answers to earlier, abandoned calls are skipped).
    pub fn call(&mut self, frame: Frame, timeout: Duration) -> Result<Frame> {
        let addr = self.addr;
        let deadline = Instant::now() + timeout;
        let timed_out = || {
            Error::new(
                ErrorKind::Timeout,
                format!("no answer from {addr} within {} ms", timeout.as_millis()),
            )
        };
        self.buf.clear();
        encode(&frame, &mut self.buf)?;
        self.stream
            .set_write_timeout(Some(timeout.max(Duration::from_millis(1))))
            .map_err(|e| Error::io(format!("send to {addr}"), e))?;
        send_all(&self.stream, &self.buf).map_err(|e| {
            if is_timeout(&e) {
                timed_out()
            } else {
                Error::io(format!("send to {addr}"), e)
            }
        })?;
        loop {
            while let Some(answer) = self.decoder.next_frame()? {
                if answer.request_id == frame.request_id {
                    return Ok(answer);
                }
                debug!(
                    "client of {addr}: skipping answer to request {}",
                    answer.request_id
                );
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(timed_out());
            }
            self.stream
                .set_read_timeout(Some(deadline - now))
                .map_err(|e| Error::io(format!("receive from {addr}"), e))?;
            match self.decoder.read_from(&mut self.stream) {
                Ok(0) => {
                    return Err(Error::new(
                        ErrorKind::Io,
                        format!("receive from {addr}: connection closed by the server"),
                    ))
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => {}
                Err(e) => return Err(Error::io(format!("receive from {addr}"), e)),
            }
        }
    }
}
