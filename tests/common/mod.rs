//! Loopback clusters for the integration tests: every member in its own engine (as on
//! separate machines), ports from the OS, a fresh store directory per test, and waits on
//! conditions with deadlines.
#![allow(dead_code)]

use rmqraft::{Engine, ErrorKind, Group, GroupStatus, Role};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Generous: the machine is small and tests run in parallel.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub fn init_logging() {
    let _ = env_logger::builder().is_test(true).try_init();
}

/// `n` ports that were free a moment ago (the listeners are held together, then closed).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind port 0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

pub fn peers_string(ports: &[u16]) -> String {
    ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("n{i}-127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(";")
}

pub fn group_props(
    group: &str,
    ports: &[u16],
    self_index: usize,
    root: &Path,
    extra: &str,
) -> String {
    format!(
        "dLegerGroup={group}\ndLegerPeers={}\ndLegerSelfId=n{self_index}\nstorePathRootDir={}\n\
         mappedFileSizeCommitLog=1048576\n{extra}\n",
        peers_string(ports),
        root.display()
    )
}

/// Polls `f` until it returns `Ok`, or panics with `what` and the last error after
/// `DEADLINE`.
pub fn wait_for_ok<T>(what: &str, mut f: impl FnMut() -> rmqraft::Result<T>) -> T {
    let start = Instant::now();
    loop {
        let last = match f() {
            Ok(v) => return v,
            Err(e) => e,
        };
        assert!(
            start.elapsed() < DEADLINE,
            "timed out after {DEADLINE:?} waiting for {what}; last error: {last}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `f` until it returns `Some`, or panics with `what` after `DEADLINE`.
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// A group whose members each live in their own engine.
pub struct Cluster {
    pub root: tempfile::TempDir,
    pub name: String,
    pub ports: Vec<u16>,
    pub extra: String,
    pub members: Vec<Option<(Engine, Group)>>,
}

impl Cluster {
    pub fn start(n: usize, extra: &str) -> Cluster {
        init_logging();
        let root = tempfile::tempdir().expect("tempdir");
        let mut cluster = Cluster {
            root,
            name: "RaftNode00".to_string(),
            ports: Vec::new(),
            extra: extra.to_string(),
            members: (0..n).map(|_| None).collect(),
        };
        // A port taken between free_ports and bind is retried with fresh ports.
        for attempt in 0..5 {
            cluster.ports = free_ports(n);
            let opened: Result<Vec<_>, _> = (0..n).map(|i| cluster.open_member(i)).collect();
            match opened {
                Ok(members) => {
                    cluster.members = members.into_iter().map(Some).collect();
                    return cluster;
                }
                Err(e) if attempt < 4 && e.kind() == ErrorKind::Io => continue,
                Err(e) => panic!("cannot start the cluster: {e}"),
            }
        }
        unreachable!()
    }

    pub fn props(&self, i: usize) -> String {
        group_props(&self.name, &self.ports, i, self.root.path(), &self.extra)
    }

    pub fn member_dir(&self, i: usize) -> PathBuf {
        self.root.path().join(format!("dledger-n{i}"))
    }

    fn open_member(&self, i: usize) -> rmqraft::Result<(Engine, Group)> {
        let engine = Engine::open("brokerClusterName=TestCluster")?;
        let group = engine.open_group(&self.props(i))?;
        Ok((engine, group))
    }

    pub fn restart(&mut self, i: usize) {
        assert!(self.members[i].is_none(), "member {i} is running");
        // The port may be briefly taken; any other refusal is worth seeing in a failure.
        let member = wait_for_ok("member to reopen", || self.open_member(i));
        self.members[i] = Some(member);
    }

    pub fn stop(&mut self, i: usize) {
        if let Some((engine, group)) = self.members[i].take() {
            group.close();
            engine.close();
        }
    }

    pub fn group(&self, i: usize) -> &Group {
        &self.members[i].as_ref().expect("member is running").1
    }

    pub fn running(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|i| self.members[*i].is_some())
            .collect()
    }

    pub fn status(&self, i: usize) -> Option<GroupStatus> {
        self.members[i].as_ref().and_then(|(_, g)| g.status().ok())
    }

    /// The one running member that leads and is acknowledged by every running member.
    pub fn wait_leader(&self) -> usize {
        wait_for("a leader known to every running member", || {
            let running = self.running();
            let statuses: Vec<_> = running.iter().filter_map(|i| self.status(*i)).collect();
            let leaders: Vec<_> = statuses.iter().filter(|s| s.role == Role::Leader).collect();
            if leaders.len() != 1 {
                return None;
            }
            let leader = leaders[0];
            let agreed = statuses
                .iter()
                .all(|s| s.leader_peer == leader.self_peer && s.term == leader.term);
            agreed.then_some(leader.self_peer as usize)
        })
    }

    /// Appends through whichever member leads, retrying while leadership moves.
    pub fn append(&self, data: &[u8]) -> rmqraft::EntryMeta {
        wait_for("an append to commit", || {
            let leader = self.running().into_iter().find(|i| {
                self.status(*i)
                    .map(|s| s.role == Role::Leader)
                    .unwrap_or(false)
            })?;
            match self.group(leader).append(data, Duration::from_secs(5)) {
                Ok(meta) => Some(meta),
                Err(e) if matches!(e.kind(), ErrorKind::NotLeader | ErrorKind::Closed) => None,
                Err(e) => panic!("append failed: {e}"),
            }
        })
    }

    /// Waits until every running member has committed at least `index`.
    pub fn wait_committed(&self, index: u64) {
        wait_for(&format!("every running member to commit {index}"), || {
            self.running()
                .iter()
                .all(|i| {
                    self.status(*i)
                        .map(|s| s.commit_index >= index)
                        .unwrap_or(false)
                })
                .then_some(())
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.stop(i);
        }
    }
}

/// A body that names its sequence number, so a read can be checked against it.
pub fn body(seq: u64, len: usize) -> Vec<u8> {
    let mut v = format!("entry-{seq:010}-").into_bytes();
    while v.len() < len {
        v.push(b'a' + (v.len() % 26) as u8);
    }
    v.truncate(len.max(16));
    v
}
