//! `rmqraft node` processes: one per member, configs and logs in a tempdir, ports from the
//! OS, kill -9, SIGSTOP/SIGCONT and restarts. Every process started is killed when the
//! [`Nodes`] is dropped, also when the test fails (SIGCONT first for a stopped one).

use super::poll_until;
use super::remote::Remote;
use super::workload::Group;
use std::fs::OpenOptions;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_rmqraft");
pub const CLUSTER: &str = "ChaosCluster";
pub const GROUP: &str = "ChaosGroup";
/// A started node must answer a status call within this.
const START_LIMIT: Duration = Duration::from_secs(20);

fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind port 0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: signals a child process this harness started and has not reaped.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

pub struct Nodes {
    pub dir: tempfile::TempDir,
    pub ports: Vec<u16>,
    children: Vec<Option<Child>>,
    paused: Vec<bool>,
}

impl Nodes {
    /// Starts `n` members of one group; `extra` is added to every config.
    pub fn start(n: usize, extra: &str) -> Nodes {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut nodes = Nodes {
            dir,
            ports: Vec::new(),
            children: (0..n).map(|_| None).collect(),
            paused: vec![false; n],
        };
        // A port taken between choosing and binding: start again on fresh ports.
        for _attempt in 0..5 {
            nodes.ports = free_ports(n);
            for i in 0..n {
                nodes.write_config(i, extra);
                nodes.children[i] = Some(nodes.spawn(i));
            }
            if (0..n).all(|i| nodes.wait_answering(i)) {
                return nodes;
            }
            for i in 0..n {
                nodes.kill9(i);
            }
        }
        panic!("could not start {n} nodes:\n{}", nodes.log_tails(30));
    }

    pub fn len(&self) -> usize {
        self.children.len()
    }

    pub fn group(&self) -> Group {
        Group {
            cluster: CLUSTER.to_string(),
            group: GROUP.to_string(),
            addrs: self.addrs(),
        }
    }

    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.ports
            .iter()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
            .collect()
    }

    fn config_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("n{i}.conf"))
    }

    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("n{i}.log"))
    }

    fn write_config(&self, i: usize, extra: &str) {
        let peers = self
            .ports
            .iter()
            .enumerate()
            .map(|(j, p)| format!("n{j}-127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(";");
        let text = format!(
            "brokerClusterName={CLUSTER}\ndLegerGroup={GROUP}\ndLegerPeers={peers}\n\
             dLegerSelfId=n{i}\nstorePathRootDir={}\nmappedFileSizeCommitLog=4194304\n{extra}\n",
            self.dir.path().join(format!("store-n{i}")).display()
        );
        std::fs::write(self.config_path(i), text).expect("write config");
    }

    fn spawn(&self, i: usize) -> Child {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .expect("open node log");
        let log2 = log.try_clone().expect("clone log handle");
        Command::new(BIN)
            .arg("node")
            .arg("-c")
            .arg(self.config_path(i))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .expect("start rmqraft node")
    }

    /// Waits until member `i` answers a status call; false if its process exited.
    fn wait_answering(&mut self, i: usize) -> bool {
        let mut remote = Remote::new(CLUSTER, GROUP, &self.addrs());
        let child = self.children[i].as_mut().expect("started");
        poll_until(START_LIMIT, || {
            if let Ok(Some(_)) = child.try_wait() {
                return Some(false);
            }
            remote.status(i).map(|_| true)
        })
        .unwrap_or(false)
    }

    pub fn pid(&self, i: usize) -> Option<u32> {
        self.children[i].as_ref().map(|c| c.id())
    }

    pub fn is_up(&self, i: usize) -> bool {
        self.children[i].is_some()
    }

    pub fn is_paused(&self, i: usize) -> bool {
        self.paused[i]
    }

    /// kill -9 (after SIGCONT if stopped), and reaps it.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            if self.paused[i] {
                signal(child.id(), libc::SIGCONT);
                self.paused[i] = false;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `i` again on its store and port, retrying while the port lingers.
    pub fn restart(&mut self, i: usize) {
        assert!(self.children[i].is_none(), "n{i} is running");
        for _attempt in 0..5 {
            self.children[i] = Some(self.spawn(i));
            if self.wait_answering(i) {
                return;
            }
            self.kill9(i);
        }
        panic!("n{i} did not come back:\n{}", self.log_tails(30));
    }

    pub fn pause(&mut self, i: usize) {
        if let Some(pid) = self.pid(i) {
            signal(pid, libc::SIGSTOP);
            self.paused[i] = true;
        }
    }

    pub fn resume(&mut self, i: usize) {
        if let Some(pid) = self.pid(i) {
            signal(pid, libc::SIGCONT);
        }
        self.paused[i] = false;
    }

    /// Every member running and not stopped.
    pub fn heal(&mut self) {
        for i in 0..self.len() {
            if self.paused[i] {
                self.resume(i);
            }
            if self.children[i].is_none() {
                self.restart(i);
            }
        }
    }

    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for i in 0..self.len() {
            let text = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- n{i} log (last {lines} lines)\n"));
            for l in &all[all.len().saturating_sub(lines)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tails(40));
        }
        for i in 0..self.len() {
            self.kill9(i);
        }
    }
}
