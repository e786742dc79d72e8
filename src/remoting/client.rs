//! A blocking remoting client for one address: one request at a time, each with a
//! deadline. Used by the broker side's registration, by tools and by tests.

use super::codec::{self, RemotingCommand};
use super::server::send_nosignal;
use crate::error::{Error, ErrorKind, Result};
use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// A connection to one remoting server.
pub struct Client {
    stream: TcpStream,
    addr: SocketAddr,
    next_opaque: i32,
    input: Vec<u8>,
    max_frame_bytes: usize,
}

impl Client {
    /// Connects to `addr` ("host:port"), waiting at most `timeout`.
    pub fn connect(addr: &str, timeout: Duration) -> Result<Client> {
        let resolved = addr
            .to_socket_addrs()
            .map_err(|e| Error::io(format!("remoting: cannot resolve '{addr}'"), e))?
            .next()
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidArgument,
                    format!("remoting: '{addr}' has no address"),
                )
            })?;
        let stream = TcpStream::connect_timeout(&resolved, timeout)
            .map_err(|e| Error::io(format!("remoting: cannot connect to {addr}"), e))?;
        let _ = stream.set_nodelay(true);
        Ok(Client {
            stream,
            addr: resolved,
            next_opaque: 1,
            input: Vec::new(),
            max_frame_bytes: codec::FRAME_MAX_BYTES_DEFAULT,
        })
    }

    pub fn peer(&self) -> SocketAddr {
        self.addr
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.stream.local_addr().ok()
    }

    fn opaque(&mut self) -> i32 {
        let o = self.next_opaque;
        self.next_opaque = self.next_opaque.wrapping_add(1);
        o
    }

    /// Sends `request` (its opaque is assigned) and waits for its response.
    pub fn invoke(
        &mut self,
        mut request: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand> {
        let deadline = Instant::now() + timeout;
        request.opaque = self.opaque();
        request.flag &= !(codec::FLAG_RESPONSE | codec::FLAG_ONEWAY);
        self.send_raw(&encode(&request)?, deadline)?;
        loop {
            let cmd = self.read_command(deadline)?;
            if cmd.is_response() && cmd.opaque == request.opaque {
                return Ok(cmd);
            }
            log::debug!(
                "remoting: {} sent code {} opaque {} while waiting for opaque {}",
                self.addr,
                cmd.code,
                cmd.opaque,
                request.opaque
            );
        }
    }

    /// Sends `request` marked oneway.
    pub fn invoke_oneway(&mut self, mut request: RemotingCommand, timeout: Duration) -> Result<()> {
        request.opaque = self.opaque();
        request.flag = (request.flag | codec::FLAG_ONEWAY) & !codec::FLAG_RESPONSE;
        self.send_raw(&encode(&request)?, Instant::now() + timeout)
    }

    /// Writes bytes as they are (tests send malformed frames with it).
    pub fn send_raw(&mut self, mut bytes: &[u8], deadline: Instant) -> Result<()> {
        while !bytes.is_empty() {
            let left = remaining(deadline, self.addr)?;
            self.stream
                .set_write_timeout(Some(left))
                .map_err(|e| Error::io("remoting: set write timeout", e))?;
            match send_nosignal(self.stream.as_raw_fd(), bytes) {
                Ok(0) => {
                    return Err(Error::io(
                        format!("remoting: write to {}", self.addr),
                        io::ErrorKind::WriteZero.into(),
                    ))
                }
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(timed_out(self.addr))
                }
                Err(e) => return Err(Error::io(format!("remoting: write to {}", self.addr), e)),
            }
        }
        Ok(())
    }

    /// The next command the server sends, request or response. A closed connection is
    /// `Closed`; nothing before `deadline` is `Timeout`.
    pub fn read_command(&mut self, deadline: Instant) -> Result<RemotingCommand> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match codec::decode(&self.input, self.max_frame_bytes) {
                Ok(Some((cmd, used))) => {
                    self.input.drain(..used);
                    return Ok(cmd);
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(Error::corrupt(format!(
                        "remoting: {} sent a bad frame: {e}",
                        self.addr
                    )))
                }
            }
            let left = remaining(deadline, self.addr)?;
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|e| Error::io("remoting: set read timeout", e))?;
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(Error::closed(&format!(
                        "remoting: the connection to {}",
                        self.addr
                    )))
                }
                Ok(n) => self.input.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(timed_out(self.addr))
                }
                Err(e) => return Err(Error::io(format!("remoting: read from {}", self.addr), e)),
            }
        }
    }
}

fn encode(cmd: &RemotingCommand) -> Result<Vec<u8>> {
    cmd.encode()
        .map_err(|e| Error::new(ErrorKind::TooLarge, format!("remoting: {e}")))
}

fn remaining(deadline: Instant, addr: SocketAddr) -> Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(timed_out(addr));
    }
    Ok(left)
}

fn timed_out(addr: SocketAddr) -> Error {
    Error::new(
        ErrorKind::Timeout,
        format!("remoting: no answer from {addr} in time"),
    )
}
