//! A fault-injecting TCP proxy for one directed peer link, and a mesh of them.
//!
//! Peer traffic in rmqraft is one-way: member i sends to j over the link it dials to the
//! address its own config lists for j (j's answers travel on j's link to i). Giving member
//! i a config whose entry for j is the proxy of link i->j puts every directed link under
//! the test's control without touching the engine.
//!
//! Modes act on the dialer-to-listener direction, where all of a link's frames travel;
//! the other direction (the handshake answer) always passes:
//! - `Pass`; `Delay(d)`: every chunk is held `d` before it is written on (order kept);
//! - `Hold`: the proxy stops reading, so bytes wait in the kernel buffers and the
//!   dialer's writes block once they fill: a partition the TCP connection survives;
//! - `Drop`: bytes are read and thrown away. A TCP stream cannot lose bytes in the middle,
//!   so every connection that lost some is reset when the mode changes back.
//!
//! And actions on the connections open now: [`Proxy::reset`] closes both sides
//! abruptly (RST), [`Proxy::half_open`] closes the listener's side while the dialer's
//! side stays open and its writes keep succeeding into nowhere, [`Proxy::corrupt_next`]
//! flips a byte inside the body of the next frames, which the frame CRC must catch.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Delay(Duration),
    Hold,
    Drop,
}

/// How often blocked proxy threads look at the mode and the closing flag.
const POLL: Duration = Duration::from_millis(10);
const CHUNK_BYTES: usize = 64 * 1024;
/// Hard bound on a proxy's life, whatever the test does.
const LIFETIME_MAX: Duration = Duration::from_secs(3600);

struct Conn {
    down: TcpStream,
    up: TcpStream,
    lost_bytes: AtomicBool,
    half_open: AtomicBool,
    dead: AtomicBool,
}

impl Conn {
    fn kill(&self, abortive: bool) {
        if self.dead.swap(true, Ordering::AcqRel) {
            return;
        }
        if abortive {
            set_linger_zero(&self.down);
            set_linger_zero(&self.up);
        }
        let _ = self.down.shutdown(Shutdown::Both);
        let _ = self.up.shutdown(Shutdown::Both);
    }
}

/// Makes the last close of `s` send RST instead of FIN.
fn set_linger_zero(s: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on an open socket with a correctly sized `linger`.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

struct Shared {
    name: String,
    target: SocketAddr,
    mode: Mutex<Mode>,
    corrupt_pending: AtomicU64,
    closing: AtomicBool,
    conns: Mutex<Vec<Arc<Conn>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    accepted: AtomicU64,
    corrupted: AtomicU64,
    forwarded_bytes: AtomicU64,
    started: Instant,
}

impl Shared {
    fn mode(&self) -> Mode {
        *self.mode.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stopping(&self) -> bool {
        self.closing.load(Ordering::Acquire) || self.started.elapsed() > LIFETIME_MAX
    }

    fn spawn(&self, name: &str, f: impl FnOnce() + Send + 'static) {
        let t = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(f)
            .expect("spawn proxy thread");
        let mut threads = self.threads.lock().unwrap_or_else(|p| p.into_inner());
        threads.retain(|t| !t.is_finished());
        threads.push(t);
    }
}

pub struct Proxy {
    pub listen: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Proxy {
    /// A proxy on a free loopback port forwarding to `target`.
    pub fn start(name: &str, target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let listen = listener.local_addr().expect("proxy addr");
        let shared = Arc::new(Shared {
            name: name.to_string(),
            target,
            mode: Mutex::new(Mode::Pass),
            corrupt_pending: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
            accepted: AtomicU64::new(0),
            corrupted: AtomicU64::new(0),
            forwarded_bytes: AtomicU64::new(0),
            started: Instant::now(),
        });
        let s = Arc::clone(&shared);
        let acceptor = std::thread::Builder::new()
            .name(format!("proxy-{name}"))
            .spawn(move || accept_loop(&s, listener))
            .expect("spawn proxy acceptor");
        Proxy {
            listen,
            shared,
            acceptor: Some(acceptor),
        }
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    pub fn mode(&self) -> Mode {
        self.shared.mode()
    }

    /// Switches the mode; connections that lost bytes under `Drop`, and half-open ones,
    /// are reset when leaving it for a forwarding mode.
    pub fn set(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap_or_else(|p| p.into_inner()) = mode;
        if mode != Mode::Drop {
            for c in self.conns() {
                if c.lost_bytes.load(Ordering::Acquire) || c.half_open.load(Ordering::Acquire) {
                    c.kill(true);
                }
            }
        }
    }

    fn conns(&self) -> Vec<Arc<Conn>> {
        let mut conns = self.shared.conns.lock().unwrap_or_else(|p| p.into_inner());
        conns.retain(|c| !c.dead.load(Ordering::Acquire));
        conns.clone()
    }

    /// Closes both sides of every open connection abruptly.
    pub fn reset(&self) {
        for c in self.conns() {
            c.kill(true);
        }
    }

    /// The listener's side of every open connection is closed; the dialer's stays open
    /// and what it writes is read and discarded, so it sees no error.
    pub fn half_open(&self) {
        for c in self.conns() {
            c.half_open.store(true, Ordering::Release);
            c.lost_bytes.store(true, Ordering::Release);
            let _ = c.up.shutdown(Shutdown::Both);
        }
    }

    /// Flips one byte in the body of each of the next `n` frames.
    pub fn corrupt_next(&self, n: u64) {
        self.shared.corrupt_pending.fetch_add(n, Ordering::AcqRel);
    }

    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Acquire)
    }

    pub fn corrupted(&self) -> u64 {
        self.shared.corrupted.load(Ordering::Acquire)
    }

    pub fn forwarded_bytes(&self) -> u64 {
        self.shared.forwarded_bytes.load(Ordering::Acquire)
    }

    pub fn open_connections(&self) -> usize {
        self.conns().len()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::Release);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
        for c in self.conns() {
            c.kill(true);
        }
        let threads = std::mem::take(
            &mut *self
                .shared
                .threads
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        for t in threads {
            let _ = t.join();
        }
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: TcpListener) {
    while !shared.stopping() {
        let down = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(POLL);
                continue;
            }
            Err(_) => {
                std::thread::sleep(POLL);
                continue;
            }
        };
        shared.accepted.fetch_add(1, Ordering::AcqRel);
        let Ok(up) = TcpStream::connect_timeout(&shared.target, Duration::from_secs(1)) else {
            // The listener is down: the dialer sees its connection closed.
            set_linger_zero(&down);
            drop(down);
            continue;
        };
        let _ = down.set_nonblocking(false);
        let _ = down.set_nodelay(true);
        let _ = up.set_nodelay(true);
        let conn = Arc::new(Conn {
            down,
            up,
            lost_bytes: AtomicBool::new(false),
            half_open: AtomicBool::new(false),
            dead: AtomicBool::new(false),
        });
        shared
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::clone(&conn));
        let (tx, rx) = crossbeam_channel::bounded::<(Instant, Vec<u8>)>(1024);
        let (s, c) = (Arc::clone(shared), Arc::clone(&conn));
        shared.spawn("proxy-fwd-read", move || forward_reader(&s, &c, tx));
        let (s, c) = (Arc::clone(shared), Arc::clone(&conn));
        shared.spawn("proxy-fwd-write", move || forward_writer(&s, &c, rx));
        let (s, c) = (Arc::clone(shared), Arc::clone(&conn));
        shared.spawn("proxy-back", move || backward(&s, &c));
    }
}

fn live(shared: &Shared, conn: &Conn) -> bool {
    !shared.stopping() && !conn.dead.load(Ordering::Acquire)
}

/// Dialer -> proxy: applies the mode, queues chunks with the time they are due.
fn forward_reader(shared: &Shared, conn: &Conn, tx: crossbeam_channel::Sender<(Instant, Vec<u8>)>) {
    let mut down = match conn.down.try_clone() {
        Ok(s) => s,
        Err(_) => return conn.kill(true),
    };
    let _ = down.set_read_timeout(Some(POLL));
    let mut tracker = FrameTracker::default();
    let mut buf = vec![0u8; CHUNK_BYTES];
    while live(shared, conn) {
        let half_open = conn.half_open.load(Ordering::Acquire);
        let mode = shared.mode();
        if mode == Mode::Hold && !half_open {
            std::thread::sleep(POLL);
            continue;
        }
        let n = match down.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(_) => break,
        };
        // The mode may have changed while the read blocked: bytes that arrive after a cut
        // must obey it (held until the cut ends, or dropped), or a partition would leak
        // what was sent after it began.
        let mut mode = mode;
        while live(shared, conn) {
            mode = shared.mode();
            if mode != Mode::Hold || conn.half_open.load(Ordering::Acquire) {
                break;
            }
            std::thread::sleep(POLL);
        }
        let half_open = conn.half_open.load(Ordering::Acquire);
        if half_open || mode == Mode::Drop {
            conn.lost_bytes.store(true, Ordering::Release);
            continue;
        }
        let mut chunk = buf[..n].to_vec();
        if shared.corrupt_pending.load(Ordering::Acquire) > 0 {
            if let Some(at) = tracker.first_body_byte(&chunk) {
                if shared
                    .corrupt_pending
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| p.checked_sub(1))
                    .is_ok()
                {
                    chunk[at] ^= 0x5a;
                    shared.corrupted.fetch_add(1, Ordering::AcqRel);
                }
            }
        }
        tracker.advance(&chunk);
        let due = match mode {
            Mode::Delay(d) => Instant::now() + d,
            _ => Instant::now(),
        };
        if tx.send((due, chunk)).is_err() {
            break;
        }
    }
    conn.kill(false);
}

fn forward_writer(
    shared: &Shared,
    conn: &Conn,
    rx: crossbeam_channel::Receiver<(Instant, Vec<u8>)>,
) {
    let mut up = match conn.up.try_clone() {
        Ok(s) => s,
        Err(_) => return conn.kill(true),
    };
    while live(shared, conn) {
        let (due, chunk) = match rx.recv_timeout(POLL) {
            Ok(item) => item,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        };
        while Instant::now() < due && live(shared, conn) {
            std::thread::sleep((due - Instant::now()).min(POLL));
        }
        // A cut that began while the chunk waited holds or drops it too.
        while shared.mode() == Mode::Hold
            && live(shared, conn)
            && !conn.half_open.load(Ordering::Acquire)
        {
            std::thread::sleep(POLL);
        }
        if shared.mode() == Mode::Drop {
            conn.lost_bytes.store(true, Ordering::Release);
            continue;
        }
        if conn.half_open.load(Ordering::Acquire) {
            continue;
        }
        if up.write_all(&chunk).is_err() {
            break;
        }
        shared
            .forwarded_bytes
            .fetch_add(chunk.len() as u64, Ordering::AcqRel);
    }
    conn.kill(false);
}

/// Listener -> dialer: always passes. When the listener closes (e.g. after a corrupt
/// frame) the dialer's side is closed too, unless the connection is half-open on purpose.
fn backward(shared: &Shared, conn: &Conn) {
    let (mut up, mut down) = match (conn.up.try_clone(), conn.down.try_clone()) {
        (Ok(u), Ok(d)) => (u, d),
        _ => return conn.kill(true),
    };
    let _ = up.set_read_timeout(Some(POLL));
    let mut buf = vec![0u8; CHUNK_BYTES];
    while live(shared, conn) {
        match up.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if down.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => break,
        }
    }
    if conn.half_open.load(Ordering::Acquire) {
        // Keep the dialer's side open; the forward reader goes on discarding.
        while live(shared, conn) {
            std::thread::sleep(POLL);
        }
    } else {
        conn.kill(false);
    }
}

/// Follows the dialer's byte stream (hello, then frames: docs/PROTOCOL.md) to find bytes
/// inside a frame body, where the CRC (bytes [24, length)) covers them.
#[derive(Default)]
struct FrameTracker {
    /// Bytes of the stream seen so far.
    pos: u64,
    /// Hello length once its cluster-length byte (offset 36) was seen.
    hello_len: Option<u64>,
    /// Offset in the current frame and its length once known.
    frame_off: u64,
    frame_len: Option<u64>,
    len_bytes: [u8; 4],
}

impl FrameTracker {
    const HELLO_FIXED: u64 = 37;
    const FRAME_HEADER: u64 = 24;

    /// Index of the first byte of `chunk` inside a frame body, without advancing.
    fn first_body_byte(&self, chunk: &[u8]) -> Option<usize> {
        let mut probe = FrameTracker {
            pos: self.pos,
            hello_len: self.hello_len,
            frame_off: self.frame_off,
            frame_len: self.frame_len,
            len_bytes: self.len_bytes,
        };
        for (i, &b) in chunk.iter().enumerate() {
            if probe.in_body() {
                return Some(i);
            }
            probe.step(b);
        }
        None
    }

    fn in_body(&self) -> bool {
        let in_frames = matches!(self.hello_len, Some(h) if self.pos >= h);
        in_frames
            && self.frame_off >= Self::FRAME_HEADER
            && self.frame_len.is_some_and(|l| self.frame_off < l)
    }

    fn advance(&mut self, chunk: &[u8]) {
        for &b in chunk {
            self.step(b);
        }
    }

    fn step(&mut self, b: u8) {
        match self.hello_len {
            Some(h) if self.pos >= h => {
                if (8..12).contains(&self.frame_off) {
                    self.len_bytes[(self.frame_off - 8) as usize] = b;
                    if self.frame_off == 11 {
                        self.frame_len = Some(u64::from(u32::from_le_bytes(self.len_bytes)));
                    }
                }
                self.frame_off += 1;
                if self.frame_len.is_some_and(|l| self.frame_off >= l) {
                    self.frame_off = 0;
                    self.frame_len = None;
                }
            }
            _ => {
                if self.pos == Self::HELLO_FIXED - 1 {
                    self.hello_len = Some(Self::HELLO_FIXED + u64::from(b));
                }
            }
        }
        self.pos += 1;
    }
}

/// The proxies of every directed link of an `n`-member group: `link(i, j)` carries what
/// member i sends to member j.
pub struct Mesh {
    pub n: usize,
    links: Vec<Option<Proxy>>,
}

impl Mesh {
    pub fn start(targets: &[SocketAddr]) -> Mesh {
        let n = targets.len();
        let links = (0..n * n)
            .map(|k| {
                let (i, j) = (k / n, k % n);
                (i != j).then(|| Proxy::start(&format!("n{i}->n{j}"), targets[j]))
            })
            .collect();
        Mesh { n, links }
    }

    pub fn link(&self, from: usize, to: usize) -> &Proxy {
        self.links[from * self.n + to]
            .as_ref()
            .expect("no link from a member to itself")
    }

    pub fn links(&self) -> impl Iterator<Item = &Proxy> {
        self.links.iter().flatten()
    }

    /// The address member `from`'s config lists for member `to`.
    pub fn addr(&self, from: usize, to: usize) -> SocketAddr {
        self.link(from, to).listen
    }

    /// Cuts every link between `side` and the other members, both ways.
    pub fn split(&self, side: &[usize], mode: Mode) {
        for i in 0..self.n {
            for j in 0..self.n {
                if i != j && side.contains(&i) != side.contains(&j) {
                    self.link(i, j).set(mode);
                }
            }
        }
    }

    pub fn isolate(&self, member: usize, mode: Mode) {
        self.split(&[member], mode);
    }

    pub fn set_all(&self, mode: Mode) {
        for l in self.links() {
            l.set(mode);
        }
    }

    pub fn heal(&self) {
        self.set_all(Mode::Pass);
    }

    pub fn accepted(&self) -> u64 {
        self.links().map(|l| l.accepted()).sum()
    }

    pub fn corrupted(&self) -> u64 {
        self.links().map(|l| l.corrupted()).sum()
    }
}
