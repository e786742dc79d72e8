//! A remoting server: one I/O thread with a readiness loop (mio, epoll) for every client
//! connection, and a small bounded pool of worker threads running the handlers.
//!
//! Client connections are many and mostly idle (every producer and consumer holds one per
//! broker), so an idle connection costs a table entry and a socket, not a thread or a
//! buffer: its input buffer is released between frames. Requests go to the workers through
//! a bounded queue; when it is full the request is answered SYSTEM_BUSY, as RocketMQ's
//! broker answers when its executor rejects a task. A handler answers through a
//! [`Responder`], at once or later from any thread (a parked long-polling pull is a
//! responder kept aside, not a blocked worker).
//!
//! Limits, all in [`ServerConfig`]: the frame size (checked before the body is read), the
//! bytes queued to a connection (reading from it pauses above `output_pause_bytes`, it is
//! closed above `output_max_bytes`), the number of connections, and an idle timeout.
//! A malformed frame closes its connection only.

use super::codec::{self, CodecError, RemotingCommand, SerializeType};
use super::codes::response;
use crate::error::{Error, ErrorKind, Result};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::{HashMap, VecDeque};
use std::io::{self, Read};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_CONNECTION: u64 = 2;
/// Listeners after the first take tokens down from the top (connections count up from 2).
const EXTRA_LISTENER_TOP: usize = usize::MAX;
/// Bytes read from a socket at a time, into one buffer shared by all connections.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// An input buffer larger than this is released once it is empty again.
const KEEP_INPUT_BYTES: usize = 4 * 1024;
const LISTEN_BACKLOG: i32 = 1024;
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// A connection's number, unique for the server's lifetime.
pub type ConnectionId = u64;

/// Sizes and counts of a [`Server`].
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Thread names start with this.
    pub name: String,
    /// Worker threads running handlers.
    pub workers: usize,
    /// Requests waiting for a worker; beyond it requests are answered SYSTEM_BUSY.
    pub queue_len: usize,
    /// A whole frame, its length field included (RocketMQ's frameMaxLength).
    pub max_frame_bytes: usize,
    pub max_connections: usize,
    /// A connection that sends nothing this long is closed (RocketMQ's
    /// serverChannelMaxIdleTimeSeconds, 120 s); `None` keeps idle connections forever.
    pub idle_timeout: Option<Duration>,
    /// Reading from a connection pauses while this much output waits for it.
    pub output_pause_bytes: usize,
    /// A connection with this much output waiting (it does not read) is closed.
    pub output_max_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            name: "remoting".to_string(),
            workers: 4,
            queue_len: 4096,
            max_frame_bytes: codec::FRAME_MAX_BYTES_DEFAULT,
            max_connections: 65536,
            idle_timeout: Some(Duration::from_secs(120)),
            output_pause_bytes: 4 * 1024 * 1024,
            output_max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// A request as a handler sees it.
#[derive(Debug)]
pub struct Request {
    pub command: RemotingCommand,
    pub connection: ConnectionId,
    pub peer: SocketAddr,
}

/// Serves one or more request codes. Runs on a worker thread; must answer through the
/// responder (now, or later from any thread). A responder dropped unanswered answers
/// SYSTEM_ERROR itself, so a client never waits for a response that cannot come.
pub trait RequestHandler: Send + Sync {
    fn handle(&self, request: Request, responder: Responder);
}

impl<F> RequestHandler for F
where
    F: Fn(Request, Responder) + Send + Sync,
{
    fn handle(&self, request: Request, responder: Responder) {
        self(request, responder)
    }
}

type CloseListener = Arc<dyn Fn(ConnectionId) + Send + Sync>;

/// The table of request codes and their handlers, and who hears of closed connections.
#[derive(Default, Clone)]
pub struct Router {
    handlers: HashMap<i32, Arc<dyn RequestHandler>>,
    close_listeners: Vec<CloseListener>,
}

impl Router {
    pub fn new() -> Router {
        Router::default()
    }

    /// Serves `code` with `handler` (a later call for the same code replaces it).
    pub fn route(&mut self, code: i32, handler: Arc<dyn RequestHandler>) -> &mut Router {
        self.handlers.insert(code, handler);
        self
    }

    /// `listener` hears of every closed connection, on the I/O thread: keep it short.
    pub fn on_close(
        &mut self,
        listener: impl Fn(ConnectionId) + Send + Sync + 'static,
    ) -> &mut Router {
        self.close_listeners.push(Arc::new(listener));
        self
    }

    pub fn codes(&self) -> Vec<i32> {
        let mut codes: Vec<i32> = self.handlers.keys().copied().collect();
        codes.sort_unstable();
        codes
    }
}

enum Outbound {
    Frame(ConnectionId, Vec<u8>),
    /// A worker found a malformed frame.
    Close(ConnectionId, String),
}

/// Sends frames to connections from any thread, waking the I/O thread.
#[derive(Clone)]
pub struct Pusher {
    tx: Sender<Outbound>,
    waker: Arc<Waker>,
}

impl Pusher {
    /// Queues `command` to `connection` (a server-initiated request, e.g. a oneway notice).
    /// Returns false when the server is gone or the command cannot be encoded; a
    /// connection closed meanwhile drops it silently.
    pub fn push(&self, connection: ConnectionId, command: &RemotingCommand) -> bool {
        match command.encode() {
            Ok(frame) => self.push_frame(connection, frame),
            Err(e) => {
                log::warn!(
                    "remoting: cannot send code {} to connection {connection}: {e}",
                    command.code
                );
                false
            }
        }
    }

    fn push_frame(&self, connection: ConnectionId, frame: Vec<u8>) -> bool {
        if self.tx.send(Outbound::Frame(connection, frame)).is_err() {
            return false;
        }
        let _ = self.waker.wake();
        true
    }
}

/// Where the response to one request goes.
pub struct Responder {
    connection: ConnectionId,
    opaque: i32,
    serialize_type: SerializeType,
    oneway: bool,
    request_code: i32,
    pusher: Option<Pusher>,
}

impl Responder {
    pub fn connection(&self) -> ConnectionId {
        self.connection
    }

    /// A oneway request's responder sends nothing.
    pub fn is_oneway(&self) -> bool {
        self.oneway
    }

    /// Sends `response` (its opaque, flag and serialize type are set to answer the
    /// request). Returns false when nothing was sent (oneway, or the server is gone).
    pub fn respond(mut self, response: RemotingCommand) -> bool {
        self.send(response)
    }

    fn send(&mut self, mut response: RemotingCommand) -> bool {
        let Some(pusher) = self.pusher.take() else {
            return false;
        };
        if self.oneway {
            return false;
        }
        response.opaque = self.opaque;
        response.flag |= codec::FLAG_RESPONSE;
        response.serialize_type = self.serialize_type;
        let frame = response.encode().or_else(|e| {
            log::error!(
                "remoting: response to code {} cannot be encoded: {e}",
                self.request_code
            );
            let mut fallback = error_response(
                response::SYSTEM_ERROR,
                format!("response cannot be encoded: {e}"),
            );
            fallback.opaque = self.opaque;
            fallback.serialize_type = self.serialize_type;
            fallback.encode()
        });
        match frame {
            Ok(frame) => pusher.push_frame(self.connection, frame),
            Err(_) => false,
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if self.pusher.is_some() && !self.oneway {
            let code = self.request_code;
            log::warn!("remoting: request code {code} was dropped without a response");
            self.send(error_response(
                response::SYSTEM_ERROR,
                format!("request code {code} was dropped without a response"),
            ));
        }
    }
}

/// A response with `code` and `remark`, for [`Responder::respond`].
pub fn error_response(code: i32, remark: String) -> RemotingCommand {
    let mut r = RemotingCommand::request(code, 0);
    r.flag = codec::FLAG_RESPONSE;
    r.remark = Some(remark);
    r
}

/// A whole frame without its length field: decoded on a worker, not the I/O thread.
struct Task {
    frame: Vec<u8>,
    connection: ConnectionId,
    peer: SocketAddr,
}

/// A running server. [`Server::shutdown`] (or drop) stops it and joins every thread.
pub struct Server {
    local_addr: SocketAddr,
    local_addrs: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
    pusher: Pusher,
    connections: Arc<AtomicUsize>,
    io_thread: Option<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
}

impl Server {
    /// Binds `addr` and serves `router`.
    pub fn start(addr: SocketAddr, router: Router, config: ServerConfig) -> Result<Server> {
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|e| Error::io(format!("remoting: cannot listen on {addr}"), e))?;
        Server::start_on(listener, router, config)
    }

    /// Serves `router` on a bound listener.
    pub fn start_on(
        listener: std::net::TcpListener,
        router: Router,
        config: ServerConfig,
    ) -> Result<Server> {
        Server::start_on_all(vec![listener], router, config)
    }

    /// Serves `router` on every listener (e.g. a broker's listenPort and its VIP channel,
    /// listenPort - 2): one I/O thread, one worker pool, connection ids unique across
    /// all of them. [`Server::local_addr`] is the first listener's.
    pub fn start_on_all(
        listeners: Vec<std::net::TcpListener>,
        router: Router,
        config: ServerConfig,
    ) -> Result<Server> {
        if config.workers == 0 || config.queue_len == 0 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "remoting: workers and queue_len must be at least 1",
            ));
        }
        if listeners.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "remoting: no listener to serve",
            ));
        }
        let poll = Poll::new().map_err(|e| Error::io("remoting: epoll", e))?;
        let mut local_addrs = Vec::with_capacity(listeners.len());
        let mut mio_listeners = Vec::with_capacity(listeners.len());
        for (i, listener) in listeners.into_iter().enumerate() {
            listener
                .set_nonblocking(true)
                .map_err(|e| Error::io("remoting: listener", e))?;
            widen_backlog(&listener);
            let addr = listener
                .local_addr()
                .map_err(|e| Error::io("remoting: listener address", e))?;
            let mut listener = TcpListener::from_std(listener);
            poll.registry()
                .register(&mut listener, listener_token(i), Interest::READABLE)
                .map_err(|e| Error::io(format!("remoting: register listener {addr}"), e))?;
            local_addrs.push(addr);
            mio_listeners.push(listener);
        }
        let local_addr = local_addrs[0];
        let waker = Arc::new(
            Waker::new(poll.registry(), WAKER).map_err(|e| Error::io("remoting: waker", e))?,
        );
        let (out_tx, out_rx) = crossbeam_channel::unbounded();
        let pusher = Pusher { tx: out_tx, waker };
        let (task_tx, task_rx) = crossbeam_channel::bounded::<Task>(config.queue_len);
        let close_listeners = router.close_listeners.clone();
        let router = Arc::new(router);
        let mut workers = Vec::with_capacity(config.workers);
        for i in 0..config.workers {
            let rx = task_rx.clone();
            let (router, pusher) = (router.clone(), pusher.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("{}-worker-{i}", config.name))
                .spawn(move || worker_loop(rx, router, pusher));
            match spawned {
                Ok(h) => workers.push(h),
                Err(e) => {
                    drop(task_tx);
                    for w in workers {
                        let _ = w.join();
                    }
                    return Err(Error::io("remoting: spawn worker", e));
                }
            }
        }
        drop(task_rx);
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let io = IoLoop {
            poll,
            listeners: mio_listeners,
            close_listeners,
            config: config.clone(),
            conns: HashMap::new(),
            next_id: FIRST_CONNECTION,
            tasks: task_tx,
            out_rx,
            pusher: pusher.clone(),
            stop: stop.clone(),
            connections: connections.clone(),
            scratch: vec![0u8; READ_CHUNK_BYTES],
        };
        let io_thread = std::thread::Builder::new()
            .name(format!("{}-io", config.name))
            .spawn(move || io.run());
        let io_thread = match io_thread {
            Ok(h) => h,
            Err(e) => {
                // The loop was dropped with its task sender: the workers end.
                for w in workers {
                    let _ = w.join();
                }
                return Err(Error::io("remoting: spawn I/O thread", e));
            }
        };
        log::info!("remoting: {} listening on {local_addrs:?}", config.name);
        Ok(Server {
            local_addr,
            local_addrs,
            stop,
            pusher,
            connections,
            io_thread: Some(io_thread),
            workers,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Every listener's address, the first one's first.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Open client connections.
    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Sends to connections from any thread.
    pub fn pusher(&self) -> Pusher {
        self.pusher.clone()
    }

    /// Closes the listener and every connection, and joins the threads. Responses sent
    /// afterwards are dropped.
    pub fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.pusher.waker.wake();
        if let Some(h) = self.io_thread.take() {
            if h.join().is_err() {
                log::error!("remoting: the I/O thread panicked");
            }
        }
        for w in self.workers.drain(..) {
            if w.join().is_err() {
                log::error!("remoting: a worker panicked");
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn worker_loop(rx: Receiver<Task>, router: Arc<Router>, pusher: Pusher) {
    for task in rx {
        match codec::decode_frame(&task.frame) {
            Ok(command) => dispatch(&router, &pusher, task.connection, task.peer, command),
            Err(e) => {
                let why = malformed(&e);
                let _ = pusher.tx.send(Outbound::Close(task.connection, why));
                let _ = pusher.waker.wake();
            }
        }
    }
}

fn responder_for(
    pusher: &Pusher,
    connection: ConnectionId,
    command: &RemotingCommand,
) -> Responder {
    Responder {
        connection,
        opaque: command.opaque,
        serialize_type: command.serialize_type,
        oneway: command.is_oneway(),
        request_code: command.code,
        pusher: Some(pusher.clone()),
    }
}

/// Runs the handler of `command`'s code, or answers REQUEST_CODE_NOT_SUPPORTED as
/// RocketMQ does (the remark names the code).
fn dispatch(
    router: &Router,
    pusher: &Pusher,
    connection: ConnectionId,
    peer: SocketAddr,
    command: RemotingCommand,
) {
    if command.is_response() {
        log::debug!(
            "remoting: ignored a response (code {}, opaque {}) from {peer}",
            command.code,
            command.opaque
        );
        return;
    }
    let responder = responder_for(pusher, connection, &command);
    let Some(handler) = router.handlers.get(&command.code) else {
        let remark = format!(" request type {} not supported", command.code);
        log::warn!("remoting: {peer}{remark}");
        responder.respond(error_response(response::REQUEST_CODE_NOT_SUPPORTED, remark));
        return;
    };
    let code = command.code;
    let request = Request {
        command,
        connection,
        peer,
    };
    // A panicking handler drops its responder, which answers SYSTEM_ERROR.
    if catch_unwind(AssertUnwindSafe(|| handler.handle(request, responder))).is_err() {
        log::error!("remoting: the handler of request code {code} panicked");
    }
}

struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    input: Vec<u8>,
    output: VecDeque<Vec<u8>>,
    /// Bytes of `output[0]` already written.
    written: usize,
    output_bytes: usize,
    paused: bool,
    writable_interest: bool,
    last_input: Instant,
}

struct IoLoop {
    poll: Poll,
    listeners: Vec<TcpListener>,
    close_listeners: Vec<CloseListener>,
    config: ServerConfig,
    conns: HashMap<ConnectionId, Conn>,
    next_id: ConnectionId,
    tasks: Sender<Task>,
    out_rx: Receiver<Outbound>,
    pusher: Pusher,
    stop: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
    scratch: Vec<u8>,
}

enum Closing {
    Keep,
    Close(String),
}

impl IoLoop {
    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut last_idle_scan = Instant::now();
        while !self.stop.load(Ordering::SeqCst) {
            if let Err(e) = self.poll.poll(&mut events, Some(POLL_INTERVAL)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!("remoting: epoll failed, the server stops: {e}");
                break;
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(0),
                    WAKER => {}
                    Token(t) if EXTRA_LISTENER_TOP - t < self.listeners.len() - 1 => {
                        self.accept(EXTRA_LISTENER_TOP - t + 1)
                    }
                    Token(t) => {
                        let id = t as ConnectionId;
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.on_readable(id);
                        }
                        if event.is_writable() {
                            self.flush(id);
                        }
                    }
                }
            }
            self.drain_outbound();
            if last_idle_scan.elapsed() >= Duration::from_secs(1) {
                last_idle_scan = Instant::now();
                self.close_idle();
            }
        }
        let ids: Vec<ConnectionId> = self.conns.keys().copied().collect();
        for id in ids {
            self.close(id, "the server stops");
        }
    }

    fn accept(&mut self, listener: usize) {
        loop {
            match self.listeners[listener].accept() {
                Ok((mut stream, peer)) => {
                    if self.conns.len() >= self.config.max_connections {
                        log::warn!(
                            "remoting: refused {peer}: {} connections is the limit",
                            self.config.max_connections
                        );
                        continue;
                    }
                    let id = self.next_id;
                    self.next_id += 1;
                    let _ = stream.set_nodelay(true);
                    if let Err(e) = self.poll.registry().register(
                        &mut stream,
                        Token(id as usize),
                        Interest::READABLE,
                    ) {
                        log::warn!("remoting: cannot register {peer}: {e}");
                        continue;
                    }
                    log::debug!("remoting: connection {id} from {peer}");
                    self.conns.insert(
                        id,
                        Conn {
                            stream,
                            peer,
                            input: Vec::new(),
                            output: VecDeque::new(),
                            written: 0,
                            output_bytes: 0,
                            paused: false,
                            writable_interest: false,
                            last_input: Instant::now(),
                        },
                    );
                    self.connections.store(self.conns.len(), Ordering::Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: leave the backlog for the next event.
                    log::warn!("remoting: accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn on_readable(&mut self, id: ConnectionId) {
        if let Closing::Close(why) = self.read_all(id) {
            self.close(id, &why);
        }
    }

    /// Reads until the socket would block (readiness is edge-triggered) or the connection
    /// pauses, dispatching every whole frame.
    fn read_all(&mut self, id: ConnectionId) -> Closing {
        loop {
            let Some(conn) = self.conns.get_mut(&id) else {
                return Closing::Keep;
            };
            if conn.paused {
                return Closing::Keep;
            }
            match conn.stream.read(&mut self.scratch) {
                Ok(0) => return Closing::Close("closed by the peer".to_string()),
                Ok(n) => {
                    conn.last_input = Instant::now();
                    conn.input.extend_from_slice(&self.scratch[..n]);
                    if let Closing::Close(why) = self.dispatch_frames(id) {
                        return Closing::Close(why);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Closing::Keep,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Closing::Close(format!("read failed: {e}")),
            }
        }
    }

    fn dispatch_frames(&mut self, id: ConnectionId) -> Closing {
        let max = self.config.max_frame_bytes;
        let mut consumed = 0;
        let mut frames = Vec::new();
        let Some(conn) = self.conns.get_mut(&id) else {
            return Closing::Keep;
        };
        let peer = conn.peer;
        let result = loop {
            let rest = &conn.input[consumed..];
            match codec::frame_size(rest, max) {
                Ok(Some(size)) if rest.len() >= size => {
                    frames.push(rest[4..size].to_vec());
                    consumed += size;
                }
                Ok(_) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        conn.input.drain(..consumed);
        if conn.input.is_empty() && conn.input.capacity() > KEEP_INPUT_BYTES {
            conn.input = Vec::new();
        }
        for frame in frames {
            if let Closing::Close(why) = self.submit(id, peer, frame) {
                return Closing::Close(why);
            }
        }
        match result {
            Ok(()) => Closing::Keep,
            Err(e) => Closing::Close(malformed(&e)),
        }
    }

    /// Queues a frame for the workers. When the queue is full the request is answered
    /// SYSTEM_BUSY, as RocketMQ answers when its executor rejects a task.
    fn submit(&mut self, connection: ConnectionId, peer: SocketAddr, frame: Vec<u8>) -> Closing {
        let task = Task {
            frame,
            connection,
            peer,
        };
        let task = match self.tasks.try_send(task) {
            Ok(()) => return Closing::Keep,
            Err(TrySendError::Full(task)) | Err(TrySendError::Disconnected(task)) => task,
        };
        match codec::decode_frame(&task.frame) {
            Ok(command) if !command.is_response() => {
                responder_for(&self.pusher, connection, &command).respond(error_response(
                    response::SYSTEM_BUSY,
                    "[OVERLOAD]system busy, start flow control for a while".to_string(),
                ));
                Closing::Keep
            }
            Ok(_) => Closing::Keep,
            Err(e) => Closing::Close(malformed(&e)),
        }
    }

    fn drain_outbound(&mut self) {
        let mut touched = Vec::new();
        while let Ok(out) = self.out_rx.try_recv() {
            let (id, frame) = match out {
                Outbound::Frame(id, frame) => (id, frame),
                Outbound::Close(id, why) => {
                    self.close(id, &why);
                    continue;
                }
            };
            let Some(conn) = self.conns.get_mut(&id) else {
                continue;
            };
            conn.output_bytes += frame.len();
            conn.output.push_back(frame);
            if conn.output_bytes > self.config.output_max_bytes {
                let why = format!(
                    "{} bytes of output wait for it (limit {}); it does not read",
                    conn.output_bytes, self.config.output_max_bytes
                );
                self.close(id, &why);
                continue;
            }
            if conn.output_bytes > self.config.output_pause_bytes {
                conn.paused = true;
            }
            touched.push(id);
        }
        touched.sort_unstable();
        touched.dedup();
        for id in touched {
            self.flush(id);
        }
    }

    fn flush(&mut self, id: ConnectionId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let fd = conn.stream.as_raw_fd();
        while let Some(front) = conn.output.front() {
            match send_nosignal(fd, &front[conn.written..]) {
                Ok(n) => {
                    conn.written += n;
                    conn.output_bytes -= n;
                    if conn.written == front.len() {
                        conn.output.pop_front();
                        conn.written = 0;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.close(id, &format!("write failed: {e}"));
                    return;
                }
            }
        }
        let want_writable = !conn.output.is_empty();
        if want_writable != conn.writable_interest {
            let interest = if want_writable {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if let Err(e) =
                self.poll
                    .registry()
                    .reregister(&mut conn.stream, Token(id as usize), interest)
            {
                self.close(id, &format!("cannot re-register: {e}"));
                return;
            }
            conn.writable_interest = want_writable;
        }
        if conn.paused && conn.output_bytes <= self.config.output_pause_bytes / 2 {
            conn.paused = false;
            // Readiness is edge-triggered: bytes that arrived while paused raise no new event.
            self.on_readable(id);
        }
    }

    fn close_idle(&mut self) {
        let Some(timeout) = self.config.idle_timeout else {
            return;
        };
        let idle: Vec<ConnectionId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.last_input.elapsed() > timeout && c.output.is_empty())
            .map(|(id, _)| *id)
            .collect();
        for id in idle {
            self.close(id, &format!("idle for more than {timeout:?}"));
        }
    }

    fn close(&mut self, id: ConnectionId, why: &str) {
        let Some(mut conn) = self.conns.remove(&id) else {
            return;
        };
        log::debug!("remoting: connection {id} from {} closed: {why}", conn.peer);
        let _ = self.poll.registry().deregister(&mut conn.stream);
        self.connections.store(self.conns.len(), Ordering::Relaxed);
        for listener in &self.close_listeners {
            listener(id);
        }
    }
}

fn malformed(e: &CodecError) -> String {
    log::warn!("remoting: malformed frame, closing the connection: {e}");
    format!("malformed frame: {e}")
}

/// The standard library listens with a backlog of 128; clients connect in bursts (every
/// producer and consumer at start-up), so take RocketMQ's serverSocketBacklog of 1024.
/// Listening again on a listening socket only changes its backlog.
/// The poll token of listener `i` (0: [`LISTENER`]).
fn listener_token(i: usize) -> Token {
    if i == 0 {
        LISTENER
    } else {
        Token(EXTRA_LISTENER_TOP - (i - 1))
    }
}

fn widen_backlog(listener: &std::net::TcpListener) {
    // SAFETY: `listen` on a socket the listener owns; no memory is passed.
    if unsafe { libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG) } != 0 {
        log::debug!(
            "remoting: cannot widen the listen backlog: {}",
            io::Error::last_os_error()
        );
    }
}

/// One non-blocking send that never raises SIGPIPE (hosts embedding the library may not
/// ignore it).
pub(crate) fn send_nosignal(fd: i32, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a valid readable slice for its length; `fd` is owned by the caller's
    // stream, which outlives the call.
    let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}
