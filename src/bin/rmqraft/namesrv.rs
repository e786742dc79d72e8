//! `rmqraft namesrv [-p PORT]`: a RocketMQ name server (see docs/REMOTING.md) until
//! SIGTERM/SIGINT.

use crate::node::{install_stop_handlers, signal_name, STOP_SIGNAL};
use lexopt::prelude::*;
use rmqraft::remoting::namesrv::{NameServer, NameServerConfig, PORT_DEFAULT};
use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

const USAGE: &str = "\
Usage: rmqraft namesrv [-p PORT] [--listen IP]

A RocketMQ name server: brokers register with it, clients ask it for routes.
  -p, --port PORT   the port to serve (default 9876, RocketMQ's)
      --listen IP   the address to bind (default 0.0.0.0)
  -h, --help        this text
Logging: RUST_LOG (default info).
";

fn parse(args: Vec<OsString>) -> Result<Option<SocketAddr>, String> {
    let mut port = PORT_DEFAULT;
    let mut ip = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let mut p = lexopt::Parser::from_args(args);
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Short('p') | Long("port") => {
                let v = p.value().map_err(|e| e.to_string())?;
                let v = v.to_string_lossy();
                port = v
                    .parse()
                    .map_err(|_| format!("-p: '{v}' is not a port number"))?;
            }
            Long("listen") => {
                let v = p.value().map_err(|e| e.to_string())?;
                let v = v.to_string_lossy();
                ip = v
                    .parse()
                    .map_err(|_| format!("--listen: '{v}' is not an IP address"))?;
            }
            Short('h') | Long("help") => return Ok(None),
            other => return Err(other.unexpected().to_string()),
        }
    }
    Ok(Some(SocketAddr::new(ip, port)))
}

/// Runs the subcommand; `args` are the words after `namesrv`.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let addr = match parse(args) {
        Ok(Some(addr)) => addr,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("rmqraft namesrv: {message} (see `rmqraft namesrv --help`)");
            return ExitCode::from(2);
        }
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    if let Err(message) = install_stop_handlers() {
        eprintln!("rmqraft namesrv: {message}");
        return ExitCode::FAILURE;
    }
    let mut server = match NameServer::start_with(NameServerConfig::new(addr)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rmqraft namesrv: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "The Name Server boot success. serializeType=JSON, address {}",
        server.local_addr()
    );
    let signal = loop {
        let s = STOP_SIGNAL.load(Ordering::SeqCst);
        if s != 0 {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    server.stop();
    println!("rmqraft namesrv: stopped on {}", signal_name(signal));
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        let a = |v: &[&str]| parse(v.iter().map(OsString::from).collect());
        assert_eq!(a(&[]).unwrap().unwrap().port(), 9876);
        assert_eq!(a(&["-p", "19876"]).unwrap().unwrap().port(), 19876);
        assert_eq!(
            a(&["--listen", "127.0.0.1", "--port", "1"])
                .unwrap()
                .unwrap()
                .to_string(),
            "127.0.0.1:1"
        );
        assert_eq!(a(&["-h"]).unwrap(), None);
        assert!(a(&["-p", "x"]).unwrap_err().contains("'x' is not a port"));
        assert!(a(&["--bogus"]).is_err());
    }
}
