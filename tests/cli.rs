//! The `rmqraft` binary end to end, on loopback: fast-try start, cluster-list, append,
//! kill -9 of the leader, failover, reads, stop; and its errors.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_rmqraft");
/// Generous: the machine is small and tests run in parallel.
const DEADLINE: Duration = Duration::from_secs(60);

struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Output {
    fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs the binary, killing it if it has not exited within `DEADLINE`.
fn rmqraft(args: &[&str]) -> Output {
    rmqraft_with_input(args, None)
}

/// Runs the binary with `input` on its standard input (none: /dev/null).
fn rmqraft_with_input(args: &[&str], input: Option<&[u8]>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rmqraft");
    if let (Some(bytes), Some(mut stdin)) = (input, child.stdin.take()) {
        let bytes = bytes.to_vec();
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&bytes);
        });
    }
    let mut stdout_pipe = child.stdout.take().expect("stdout");
    let mut stderr_pipe = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout_pipe.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr_pipe.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rmqraft {args:?} did not exit within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        code: status.code(),
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

/// The Raft ports in the configs fast-try generated in `dir`.
fn cluster_ports(dir: &Path) -> Vec<String> {
    (0..3)
        .map(|i| {
            let text = std::fs::read_to_string(dir.join(format!("broker-n{i}.conf")))
                .expect("generated config");
            let peers = text
                .lines()
                .find_map(|l| l.strip_prefix("dLegerPeers"))
                .expect("dLegerPeers line");
            let entry = peers.split(';').nth(i).expect("peer entry");
            entry.rsplit(':').next().unwrap().trim().to_string()
        })
        .collect()
}

/// `n` distinct ports that were free a moment ago.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind port 0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// Whether `pid` runs (a zombie does not count).
fn is_running(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].trim_start().chars().next());
    !matches!(state, Some('Z') | Some('X') | None)
}

/// The pids of the members fast-try recorded in `dir` (not its name server's).
fn recorded_pids(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("pids"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with("namesrv "))
        .filter_map(|l| l.split(' ').nth(1)?.parse().ok())
        .collect()
}

/// Every pid fast-try recorded in `dir`, its name server's included.
fn all_recorded_pids(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("pids"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(1)?.parse().ok())
        .collect()
}

/// The first of `n` consecutive ports that were all free a moment ago.
fn free_port_block(n: u16) -> u16 {
    for _ in 0..200 {
        let base = free_ports(1)[0];
        if base > u16::MAX - n {
            continue;
        }
        let held: Vec<TcpListener> = (base..base + n)
            .map_while(|p| TcpListener::bind(("127.0.0.1", p)).ok())
            .collect();
        if held.len() == n as usize {
            return base;
        }
    }
    panic!("no block of {n} free ports");
}

/// `--rocketmq-ports` of free ports: the name server's and three listenPorts.
fn free_rocketmq_ports() -> String {
    let p = free_ports(4);
    format!("{},{},{},{}", p[0], p[1], p[2], p[3])
}

/// Kills, even when the test fails, every node fast-try started from `dir` (by the pids it
/// recorded, and by those the test saw).
struct NodesGuard {
    dir: PathBuf,
    seen: Vec<i32>,
}

impl Drop for NodesGuard {
    fn drop(&mut self) {
        let mut pids = all_recorded_pids(&self.dir);
        pids.extend(&self.seen);
        for pid in pids {
            let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains("rmqraft"))
                .unwrap_or(false);
            if ours && is_running(pid) {
                // SAFETY: sends a signal to a process this test started.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
}

/// The value of `key` in one of cluster-list's flat JSON lines.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let tag = format!("\"{key}\":");
    let start = line
        .find(&tag)
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        + tag.len();
    let rest = &line[start..];
    if let Some(s) = rest.strip_prefix('"') {
        &s[..s.find('"').expect("closing quote")]
    } else {
        &rest[..rest.find([',', '}']).expect("end of value")]
    }
}

struct Member {
    peer: String,
    role: String,
    term: u64,
    last_index: u64,
    pid: i32,
}

fn cluster_list(dir: &str) -> (Vec<Member>, Output) {
    let out = rmqraft(&["cluster-list", "--dir", dir, "--json"]);
    let members = out
        .stdout
        .lines()
        .map(|line| Member {
            peer: field(line, "peer").to_string(),
            role: field(line, "role").to_string(),
            term: field(line, "term").parse().unwrap_or(0),
            last_index: field(line, "last_index").parse().unwrap_or(0),
            pid: field(line, "pid").parse().unwrap_or(0),
        })
        .collect();
    (members, out)
}

/// Polls until `f` gives a value, at most `DEADLINE`.
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `appended 1000 entries to G: index A..B, ...` -> (A, B).
fn summary_range(stdout: &str) -> (u64, u64) {
    let after = stdout.split("index ").nth(1).expect("index range");
    let range = after.split(',').next().expect("range");
    let (a, b) = range.split_once("..").expect("a..b");
    (a.parse().expect("first"), b.parse().expect("last"))
}

#[test]
fn fast_try_failover_and_stop() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir_path = tmp.path().join("fast-try");
    let dir = dir_path.to_str().expect("utf-8 path").to_string();
    let mut guard = NodesGuard {
        dir: dir_path.clone(),
        seen: Vec::new(),
    };

    // A port taken between choosing and binding is retried with fresh ports.
    let mut started = None;
    for _attempt in 0..4 {
        let ports = free_ports(3);
        let ports = format!("{},{},{}", ports[0], ports[1], ports[2]);
        let rocketmq = free_rocketmq_ports();
        let out = rmqraft(&[
            "fast-try",
            "start",
            "--dir",
            &dir,
            "--ports",
            &ports,
            "--rocketmq-ports",
            &rocketmq,
        ]);
        if out.ok() {
            started = Some(out);
            break;
        }
        assert!(
            out.stderr.contains("taken") || out.stderr.contains("in use"),
            "fast-try start failed: {out:?}"
        );
    }
    let started = started.expect("fast-try start kept finding its ports taken");
    assert!(started.stdout.contains("LEADER"), "{started:?}");
    let pids = recorded_pids(&dir_path);
    assert_eq!(pids.len(), 3, "{started:?}");
    guard.seen.extend(&pids);

    // A second start refuses while the first runs.
    let again = rmqraft(&["fast-try", "start", "--dir", &dir]);
    assert!(
        !again.ok() && again.stderr.contains("already running"),
        "{again:?}"
    );

    let (members, out) = cluster_list(&dir);
    assert!(out.ok(), "{out:?}");
    assert_eq!(members.len(), 3, "{out:?}");
    let leaders: Vec<&Member> = members.iter().filter(|m| m.role == "LEADER").collect();
    assert_eq!(leaders.len(), 1, "{out:?}");
    let old_leader = leaders[0].peer.clone();
    let old_leader_pid = leaders[0].pid;
    let old_term = leaders[0].term;
    assert!(pids.contains(&old_leader_pid), "{out:?} vs {pids:?}");

    let out = rmqraft(&["append", "--dir", &dir, "--count", "1000"]);
    assert!(out.ok(), "{out:?}");
    let (first, last) = summary_range(&out.stdout);
    assert_eq!(last - first + 1, 1000, "{out:?}");

    // The leader dies while a second client appends: that client has to find the new
    // leader and go on.
    let leader_last = |members: &[Member]| {
        members
            .iter()
            .find(|m| m.peer == old_leader)
            .map(|m| m.last_index)
    };
    let before = leader_last(&cluster_list(&dir).0).expect("leader's row");
    let background_dir = dir.clone();
    let background = std::thread::spawn(move || {
        rmqraft(&["append", "--dir", &background_dir, "--count", "2000"])
    });
    wait_for("the second append to be under way", || {
        let (members, _) = cluster_list(&dir);
        let under_way = leader_last(&members).is_some_and(|l| l >= before + 200);
        (under_way || background.is_finished()).then_some(())
    });
    // SAFETY: kills the leader's node process, which this test started.
    assert_eq!(unsafe { libc::kill(old_leader_pid, libc::SIGKILL) }, 0);
    let killed_at = Instant::now();
    let new_leader = wait_for("a new leader", || {
        let (members, _) = cluster_list(&dir);
        members
            .into_iter()
            .find(|m| m.role == "LEADER" && m.peer != old_leader)
    });
    let failover = killed_at.elapsed();
    println!(
        "failover after kill -9 of {old_leader} (pid {old_leader_pid}): {} ms, {} leads in term {}",
        failover.as_millis(),
        new_leader.peer,
        new_leader.term
    );
    assert!(new_leader.term > old_term);
    assert!(
        failover < Duration::from_secs(20),
        "failover took {failover:?}"
    );

    let through = background.join().expect("append thread");
    assert!(through.ok(), "append through the failover: {through:?}");
    // Exactly once: the retries are idempotent appends, so the range holds the 2000
    // entries and at most one no-op per new term, never an entry twice.
    let (through_first, through_last) = summary_range(&through.stdout);
    assert!(through_last - through_first + 1 >= 2000, "{through:?}");
    println!("append through the failover: {}", through.stdout.trim_end());

    let (members, out) = cluster_list(&dir);
    assert!(out.ok(), "{out:?}");
    let final_term = members.iter().map(|m| m.term).max().unwrap_or(0);
    assert!(
        through_last - through_first < 2000 + (final_term - old_term),
        "more entries than appends plus no-ops: {through:?}, terms {old_term}..{final_term}"
    );
    let dead = members
        .iter()
        .find(|m| m.peer == old_leader)
        .expect("row of the killed member");
    assert_eq!(dead.role, "UNREACHABLE", "{out:?}");
    let survivors: Vec<String> = ["n0", "n1", "n2"]
        .iter()
        .filter(|p| **p != old_leader)
        .map(|p| p.to_string())
        .collect();

    // Every surviving member serves the entries appended before the kill, and the last
    // one appended through it.
    let middle = (first + last) / 2;
    let expected = [
        (first, "rmqraft entry 0 of run".to_string()),
        (middle, format!("rmqraft entry {} of run", middle - first)),
        (last, "rmqraft entry 999 of run".to_string()),
        (through_last, "rmqraft entry 1999 of run".to_string()),
    ];
    for peer in &survivors {
        for (index, text) in &expected {
            let index_text = index.to_string();
            let out = wait_for(&format!("entry {index} on {peer}"), || {
                let out = rmqraft(&[
                    "read",
                    "--dir",
                    &dir,
                    "--peer",
                    peer,
                    "--index",
                    &index_text,
                ]);
                out.ok().then_some(out)
            });
            assert!(
                out.stdout.starts_with(&format!("index={index} ")) && out.stdout.contains(text),
                "{out:?}"
            );
        }
    }

    let out = rmqraft(&["append", "--dir", &dir, "--count", "10"]);
    assert!(out.ok(), "{out:?}");
    assert_eq!(out.stdout.matches("appended index=").count(), 10, "{out:?}");
    assert!(
        !out.stdout.contains(&format!("term={old_term} ")),
        "{out:?}"
    );

    // Binary data from standard input: one entry, read back as hex.
    let out = rmqraft_with_input(
        &["append", "--dir", &dir, "--file", "-"],
        Some(&[0, 1, 0xff, b'x']),
    );
    assert!(out.ok(), "{out:?}");
    let binary_index: u64 = out
        .stdout
        .strip_prefix("appended index=")
        .and_then(|r| r.split(' ').next())
        .and_then(|i| i.parse().ok())
        .unwrap_or_else(|| panic!("{out:?}"));
    let out = rmqraft(&["read", "--dir", &dir, "--index", &binary_index.to_string()]);
    assert!(out.ok() && out.stdout.contains("hex: 0001ff78"), "{out:?}");

    // Reading past the end stops at the commit index and says so, in one line.
    let out = rmqraft(&[
        "read",
        "--dir",
        &dir,
        "--index",
        &binary_index.to_string(),
        "--count",
        "100000",
    ]);
    assert!(out.ok(), "{out:?}");
    assert!(
        out.stderr.contains("stopped at the commit index")
            && out.stderr.contains("further entries are not committed")
            && out.stderr.lines().count() == 1,
        "{out:?}"
    );
    assert!(out.stdout.lines().count() < 100, "{out:?}");

    // The killed member comes back with restart-member; stop stops it too.
    let out = rmqraft(&["fast-try", "restart-member", &old_leader, "--dir", &dir]);
    assert!(
        out.ok()
            && out
                .stdout
                .contains(&format!("restarted {old_leader} (pid ")),
        "{out:?}"
    );
    let pids_now = recorded_pids(&dir_path);
    guard.seen.extend(&pids_now);
    assert!(!pids_now.contains(&old_leader_pid), "{pids_now:?}");
    let again = rmqraft(&["fast-try", "restart-member", &old_leader, "--dir", &dir]);
    assert!(
        !again.ok() && again.stderr.contains("is running"),
        "{again:?}"
    );
    wait_for("the restarted member to follow", || {
        let (members, _) = cluster_list(&dir);
        members
            .iter()
            .any(|m| m.peer == old_leader && m.role == "FOLLOWER")
            .then_some(())
    });

    let out = rmqraft(&["fast-try", "stop", "--dir", &dir]);
    assert!(out.ok(), "{out:?}");
    for peer in ["n0", "n1", "n2"] {
        assert!(out.stdout.contains(&format!("stopped {peer} ")), "{out:?}");
    }
    assert!(!dir_path.join("pids").exists());
    let left: Vec<i32> = pids
        .iter()
        .chain(&pids_now)
        .copied()
        .filter(|&p| is_running(p))
        .collect();
    assert!(left.is_empty(), "still running: {left:?}");

    // Starting again resumes the stores and says so; --clean starts empty.
    let ports: Vec<String> = cluster_ports(&dir_path);
    let ports = ports.join(",");
    // The stores name the Raft ports; the RocketMQ ports may change: fresh ones, as those
    // of the first start may have been handed out since.
    let rocketmq = free_rocketmq_ports();
    let out = rmqraft(&[
        "fast-try",
        "start",
        "--dir",
        &dir,
        "--ports",
        &ports,
        "--rocketmq-ports",
        &rocketmq,
    ]);
    guard.seen.extend(all_recorded_pids(&dir_path));
    if out.ok() {
        assert_eq!(
            out.stdout
                .matches("fast-try: resuming the store at ")
                .count(),
            3,
            "{out:?}"
        );
        let stop = rmqraft(&["fast-try", "stop", "--dir", &dir]);
        assert!(stop.ok(), "{stop:?}");
        let out = rmqraft(&[
            "fast-try",
            "start",
            "--dir",
            &dir,
            "--ports",
            &ports,
            "--rocketmq-ports",
            &rocketmq,
            "--clean",
        ]);
        guard.seen.extend(all_recorded_pids(&dir_path));
        assert!(out.ok(), "{out:?}");
        assert_eq!(
            out.stdout.matches("removed the store at").count(),
            3,
            "{out:?}"
        );
        assert!(!out.stdout.contains("resuming"), "{out:?}");
        let stop = rmqraft(&["fast-try", "stop", "--dir", &dir]);
        assert!(stop.ok(), "{stop:?}");
    } else {
        // Only a port taken meanwhile by another process excuses a failed start.
        assert!(out.stderr.contains("taken"), "{out:?}");
    }

    let out = rmqraft(&["fast-try", "stop", "--dir", &dir]);
    assert!(
        out.ok() && out.stdout.contains("nothing to stop"),
        "{out:?}"
    );
}

#[test]
fn fast_try_names_a_taken_port() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_str().expect("utf-8 path");
    let holder = TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = holder.local_addr().expect("addr").port();
    let free = free_ports(2);
    let ports = format!("{},{taken},{}", free[0], free[1]);
    let out = rmqraft(&["fast-try", "start", "--dir", dir, "--ports", &ports]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains(&format!("port {taken} ")) && out.stderr.contains("taken"),
        "{out:?}"
    );
    assert!(recorded_pids(tmp.path()).is_empty());
}

fn one_line_error(out: &Output) -> &str {
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(!out.stderr.contains("panicked"), "{out:?}");
    out.stderr.trim_end()
}

#[test]
fn bad_config_is_one_line_naming_the_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bad = tmp.path().join("bad.conf");
    std::fs::write(
        &bad,
        format!(
            "brokerClusterName=RaftCluster\ndLegerGroup=G\n\
             dLegerPeers=n0-127.0.0.1:1;n1-127.0.0.1:2;n2-127.0.0.1:3\ndLegerSelfId=n0\n\
             storePathRootDir={}\nflushDiskType=SOMETIMES\n",
            tmp.path().display()
        ),
    )
    .expect("write config");
    let bad = bad.to_str().expect("utf-8 path");
    for args in [vec!["node", "-c", bad], vec!["cluster-list", "-c", bad]] {
        let out = rmqraft(&args);
        let line = one_line_error(&out);
        assert!(
            line.contains("flushDiskType") && line.contains("SOMETIMES"),
            "{out:?}"
        );
        assert!(line.contains("bad.conf"), "{out:?}");
    }

    let missing = tmp.path().join("missing-self.conf");
    std::fs::write(&missing, "dLegerGroup=G\ndLegerPeers=n0-127.0.0.1:1\n").expect("write");
    let out = rmqraft(&["node", "-c", missing.to_str().expect("utf-8 path")]);
    assert!(one_line_error(&out).contains("dLegerSelfId"), "{out:?}");

    let out = rmqraft(&["append", "--count", "0"]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
}

#[test]
fn each_subcommand_has_its_own_help_and_errors_name_the_option() {
    let global = rmqraft(&["--help"]);
    assert!(global.ok(), "{global:?}");
    for sub in [
        "node",
        "fast-try",
        "cluster-list",
        "append",
        "read",
        "transfer-leader",
    ] {
        let out = rmqraft(&[sub, "--help"]);
        assert!(out.ok(), "{out:?}");
        assert!(
            out.stdout.contains("Options:") && out.stdout.contains("Example:"),
            "{out:?}"
        );
        assert_ne!(
            out.stdout, global.stdout,
            "{sub} --help prints the global page"
        );
    }
    let out = rmqraft(&["read", "--index", "-1"]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr
            .contains("--index: '-1' is not a non-negative integer (see `rmqraft read --help`)"),
        "{out:?}"
    );
}

#[test]
fn append_with_no_member_running_says_what_it_waits_for() {
    let ports = free_ports(3);
    let peers = format!(
        "n0-127.0.0.1:{};n1-127.0.0.1:{};n2-127.0.0.1:{}",
        ports[0], ports[1], ports[2]
    );
    let out = rmqraft(&[
        "append",
        "-p",
        &peers,
        "-g",
        "Nobody",
        "--timeout-ms",
        "1500",
    ]);
    assert_eq!(out.code, Some(1), "{out:?}");
    // Not a terminal: one line at the start, then the final error.
    let waiting: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("waiting for a leader of Nobody at 127.0.0.1:"))
        .collect();
    assert_eq!(waiting.len(), 1, "{out:?}");
    assert!(waiting[0].contains("n0 is unreachable"), "{out:?}");
}

/// A RocketMQ user's session: fast-try start (a name server and three brokers), mqadmin's
/// clusterList, send, queryMsgByKey and queryMsgById through the name server; kill -9 of
/// the master, and sends go on to the new one.
#[test]
fn fast_try_serves_rocketmq_clients_through_a_name_server() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir_path = tmp.path().join("fast-try");
    let dir = dir_path.to_str().expect("utf-8 path").to_string();
    let mut guard = NodesGuard {
        dir: dir_path.clone(),
        seen: Vec::new(),
    };
    let mut namesrv = None;
    for _attempt in 0..4 {
        let raft = free_ports(3);
        let raft = format!("{},{},{}", raft[0], raft[1], raft[2]);
        let rocketmq = free_rocketmq_ports();
        let out = rmqraft(&[
            "fast-try",
            "start",
            "--dir",
            &dir,
            "--ports",
            &raft,
            "--rocketmq-ports",
            &rocketmq,
        ]);
        if out.ok() {
            assert!(
                out.stdout.contains("RocketMQ clients: namesrvAddr="),
                "{out:?}"
            );
            namesrv = Some(format!("127.0.0.1:{}", rocketmq.split(',').next().unwrap()));
            break;
        }
        assert!(
            out.stderr.contains("taken") || out.stderr.contains("in use"),
            "fast-try start failed: {out:?}"
        );
    }
    let ns = namesrv.expect("fast-try start kept finding its ports taken");
    guard.seen.extend(all_recorded_pids(&dir_path));

    // clusterList: mqadmin's columns, one master (BID 0) and two slaves.
    let out = rmqraft(&["clusterList", "-n", &ns, "--raft"]);
    assert!(out.ok(), "{out:?}");
    for column in [
        "#Cluster Name",
        "#Broker Name",
        "#BID",
        "#Addr",
        "#InTPS(LOAD)",
        "#Term",
    ] {
        assert!(out.stdout.contains(column), "{column}: {out:?}");
    }
    let out = rmqraft(&["clusterList", "-n", &ns, "--json"]);
    assert!(out.ok(), "{out:?}");
    let ids: Vec<&str> = out.stdout.lines().map(|l| field(l, "brokerId")).collect();
    assert_eq!(ids.len(), 3, "{out:?}");
    assert_eq!(ids.iter().filter(|i| **i == "0").count(), 1, "{out:?}");

    // send, then find the message by key and by id.
    let out = rmqraft(&[
        "send",
        "-n",
        &ns,
        "-t",
        "TopicTest",
        "-k",
        "order-1",
        "--tags",
        "TagA",
        "--body",
        "hello",
        "--json",
    ]);
    assert!(out.ok(), "{out:?}");
    let offset_id = field(out.stdout.trim(), "offsetMsgId").to_string();
    assert_eq!(offset_id.len(), 32, "{out:?}");
    // A send returns at its commit; the key index follows within moments.
    let out = wait_for("order-1 by key", || {
        let out = rmqraft(&[
            "queryMsgByKey",
            "-n",
            &ns,
            "-t",
            "TopicTest",
            "-k",
            "order-1",
        ]);
        out.ok().then_some(out)
    });
    assert!(out.stdout.contains("Body: hello"), "{out:?}");
    let out = rmqraft(&["queryMsgById", "-n", &ns, "-i", &offset_id, "--json"]);
    assert!(out.ok(), "{out:?}");
    assert_eq!(field(out.stdout.trim(), "body"), "hello", "{out:?}");

    // kill -9 the master: the next send waits for the new master and succeeds.
    let (members, out) = cluster_list(&dir);
    let leader = members
        .iter()
        .find(|m| m.role == "LEADER")
        .unwrap_or_else(|| panic!("no leader: {out:?}"));
    // SAFETY: sends a signal to a process this test started.
    unsafe {
        libc::kill(leader.pid, libc::SIGKILL);
    }
    let out = rmqraft(&[
        "send",
        "-n",
        &ns,
        "-t",
        "TopicTest",
        "-k",
        "order-2",
        "--body",
        "again",
        "--json",
    ]);
    assert!(out.ok(), "{out:?}");
    // A send returns at its commit; the key index follows within moments.
    let out = wait_for("order-2 by key", || {
        let out = rmqraft(&[
            "queryMsgByKey",
            "-n",
            &ns,
            "-t",
            "TopicTest",
            "-k",
            "order-2",
        ]);
        out.ok().then_some(out)
    });
    assert!(out.stdout.contains("Body: again"), "{out:?}");
    // The new master is BID 0 (the killed one dropped out with its connection).
    wait_for("one master in clusterList", || {
        let out = rmqraft(&["clusterList", "-n", &ns, "--json"]);
        let ids: Vec<String> = out
            .stdout
            .lines()
            .map(|l| field(l, "brokerId").to_string())
            .collect();
        (ids.len() == 2 && ids.iter().filter(|i| *i == "0").count() == 1).then_some(())
    });

    let stop = rmqraft(&["fast-try", "stop", "--dir", &dir]);
    assert!(stop.ok(), "{stop:?}");
    assert!(stop.stdout.contains("stopped namesrv"), "{stop:?}");
    guard.seen.clear();
}

/// `fast-try start --groups 3`: three groups across the three processes, each led by a
/// different process (preferredLeaderIds), all registered; sends spread over the groups.
#[test]
fn fast_try_groups_spread_their_masters() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir_path = tmp.path().join("fast-try");
    let dir = dir_path.to_str().expect("utf-8 path").to_string();
    let mut guard = NodesGuard {
        dir: dir_path.clone(),
        seen: Vec::new(),
    };
    let mut namesrv = None;
    for _attempt in 0..4 {
        // Group g shifts the Raft ports by 3g and the listenPorts by g: a block of 19
        // free ports holds them all.
        let p = free_port_block(19);
        let raft = format!("{},{},{}", p, p + 1, p + 2);
        let rocketmq = format!("{},{},{},{}", p + 18, p + 9, p + 12, p + 15);
        let out = rmqraft(&[
            "fast-try",
            "start",
            "--dir",
            &dir,
            "--groups",
            "3",
            "--ports",
            &raft,
            "--rocketmq-ports",
            &rocketmq,
        ]);
        guard.seen.extend(all_recorded_pids(&dir_path));
        if out.ok() {
            namesrv = Some(format!("127.0.0.1:{}", rocketmq.split(',').next().unwrap()));
            break;
        }
        assert!(
            out.stderr.contains("taken") || out.stderr.contains("in use"),
            "fast-try start failed: {out:?}"
        );
    }
    let ns = namesrv.expect("fast-try start kept finding its ports taken");
    // Each group's master is registered; the preferred leaders are three processes.
    let masters = wait_for("three masters on three processes", || {
        let out = rmqraft(&["clusterList", "-n", &ns, "--json"]);
        let masters: std::collections::BTreeMap<String, String> = out
            .stdout
            .lines()
            .filter(|l| field(l, "brokerId") == "0")
            .map(|l| {
                (
                    field(l, "brokerName").to_string(),
                    field(l, "addr").to_string(),
                )
            })
            .collect();
        let addrs: std::collections::BTreeSet<&String> = masters.values().collect();
        (out.stdout.lines().count() == 9 && masters.len() == 3 && addrs.len() == 3)
            .then_some(masters)
    });
    assert!(masters.contains_key("RaftNode02"), "{masters:?}");
    let mut groups = std::collections::BTreeSet::new();
    for i in 0..9 {
        let key = format!("spread-{i}");
        let out = rmqraft(&["send", "-n", &ns, "-t", "TopicSpread", "-k", &key, "--json"]);
        assert!(out.ok(), "{out:?}");
        groups.insert(field(out.stdout.trim(), "brokerName").to_string());
    }
    assert!(groups.len() >= 2, "sends all went to {groups:?}");
    let stop = rmqraft(&["fast-try", "stop", "--dir", &dir]);
    assert!(stop.ok(), "{stop:?}");
    guard.seen.clear();
}

/// A member whose Raft port is taken when it starts (an outbound connection may hold a
/// port of the ephemeral range while the member is down) says which port and key, keeps
/// trying, and opens once the port is free.
#[test]
fn node_waits_for_its_taken_port_and_says_so() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let holder = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = holder.local_addr().expect("addr").port();
    let conf = tmp.path().join("broker.conf");
    std::fs::write(
        &conf,
        format!(
            "dLegerGroup=PortWait\ndLegerPeers=n0-127.0.0.1:{port}\ndLegerSelfId=n0\n\
             storePathRootDir={}\nmappedFileSizeCommitLog=1048576\n",
            tmp.path().join("store").display()
        ),
    )
    .expect("write broker.conf");
    let stdout_path = tmp.path().join("node.out");
    let stderr_path = tmp.path().join("node.err");
    let mut child = Command::new(BIN)
        .arg("node")
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).expect("node.out"))
        .stderr(std::fs::File::create(&stderr_path).expect("node.err"))
        .spawn()
        .expect("start rmqraft node");
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let said = format!("port {port} (n0's address in dLegerPeers) is taken");
    wait_for("the taken port named on stderr", || {
        read(&stderr_path).contains(&said).then_some(())
    });
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "node gave up at once: {}",
        read(&stderr_path)
    );
    drop(holder);
    wait_for("the member open once its port is free", || {
        read(&stdout_path)
            .contains("PortWait/n0 open")
            .then_some(())
    });
    // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = wait_for("node to exit after SIGTERM", || {
        child.try_wait().expect("try_wait")
    });
    assert!(
        status.success(),
        "node exit {status:?}: {}",
        read(&stderr_path)
    );
}
