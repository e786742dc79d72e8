//! `rmqraft fast-try start|stop`: a three-member group in the background, like
//! RocketMQ's `bin/dledger/fast-try.sh`, but stopping exactly the processes it started.

use crate::output::{collect_rows, table};
use crate::target::{
    broker_conf_with, generated_config_path, load_config, shipped_configs, target_of,
    RocketmqPorts, Target,
};
use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long start waits for the group to elect a leader.
const ELECTION_WAIT: Duration = Duration::from_secs(30);
/// How long stop waits after SIGTERM before it sends SIGKILL.
const STOP_WAIT: Duration = Duration::from_secs(15);
/// Log lines shown for each member when start fails.
const LOG_TAIL_LINES: usize = 15;

const PID_FILE: &str = "pids";

/// One started member: its peer id, process id and config file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Started {
    peer: String,
    pid: i32,
    config: PathBuf,
}

fn pid_file(dir: &Path) -> PathBuf {
    dir.join(PID_FILE)
}

fn log_path(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("node0{i}.log"))
}

/// Lines `peer pid config`.
fn read_pid_file(dir: &Path) -> Result<Option<Vec<Started>>, String> {
    let path = pid_file(dir);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut started = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut parts = line.splitn(3, ' ');
        let (Some(peer), Some(pid), Some(config)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("{}: bad line '{line}'", path.display()));
        };
        let pid: i32 = pid
            .parse()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{}: bad pid in '{line}'", path.display()))?;
        started.push(Started {
            peer: peer.to_string(),
            pid,
            config: PathBuf::from(config),
        });
    }
    Ok(Some(started))
}

fn write_pid_file(dir: &Path, started: &[Started]) -> Result<(), String> {
    let path = pid_file(dir);
    let text: String = started
        .iter()
        .map(|s| format!("{} {} {}\n", s.peer, s.pid, s.config.display()))
        .collect();
    let tmp = dir.join(format!("{PID_FILE}.tmp"));
    fs::write(&tmp, text)
        .and_then(|_| fs::rename(&tmp, &path))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Whether `pid` runs (a zombie does not count) and is an `rmqraft node` (or the
/// `rmqraft namesrv` fast-try started) process.
fn is_our_node(pid: i32) -> bool {
    if !is_running(pid) {
        return false;
    }
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let exe_is_rmqraft = args
        .first()
        .map(|a| a.ends_with(b"rmqraft"))
        .unwrap_or(false);
    exe_is_rmqraft
        && args
            .get(1)
            .map(|a| *a == b"node" || *a == b"namesrv")
            .unwrap_or(false)
}

/// Whether `pid` exists and is not a zombie.
pub fn is_running(pid: i32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name, which may itself hold ')'.
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].trim_start().chars().next());
    !matches!(state, Some('Z') | Some('X') | None)
}

fn send_signal(pid: i32, signal: libc::c_int) {
    // SAFETY: kill() with a positive pid only sends a signal.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// SIGTERM to each pid, then SIGKILL to those still running after `STOP_WAIT`.
/// Returns the pids that needed SIGKILL.
fn terminate(pids: &[i32]) -> Vec<i32> {
    for &pid in pids {
        send_signal(pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + STOP_WAIT;
    while Instant::now() < deadline && pids.iter().any(|&p| is_running(p)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let leftovers: Vec<i32> = pids.iter().copied().filter(|&p| is_running(p)).collect();
    for &pid in &leftovers {
        send_signal(pid, libc::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && leftovers.iter().any(|&p| is_running(p)) {
        std::thread::sleep(Duration::from_millis(20));
    }
    leftovers
}

fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(LOG_TAIL_LINES);
    lines[from..].join("\n")
}

/// The config of member `i` of extra group `g` (1 ..): `broker-g<g>-n<i>.conf` in `dir`.
fn group_config_path(dir: &Path, g: u32, i: usize) -> PathBuf {
    dir.join(format!("broker-g{g}-n{i}.conf"))
}

/// The configs of the extra groups (`--groups`) member `i` runs, as start generated them.
fn extra_group_configs(dir: &Path, i: usize) -> Vec<PathBuf> {
    (1..10)
        .map(|g| group_config_path(dir, g, i))
        .take_while(|p| p.exists())
        .collect()
}

/// The three config files to run: generated in `dir` for `ports` (and the extra groups'
/// in `dir` too), or the shipped ones.
fn prepare_configs(
    dir: &Path,
    ports: Option<[u16; 3]>,
    rocketmq: Option<RocketmqPorts>,
    groups: u32,
) -> Result<Vec<PathBuf>, String> {
    // Extra group configs of an earlier run would be started again by restart-member.
    for g in 1..10 {
        for i in 0..3 {
            let _ = fs::remove_file(group_config_path(dir, g, i));
        }
    }
    let generate = ports.is_some() || rocketmq.is_some() || groups > 1;
    let ports = ports.unwrap_or(crate::target::SHIPPED_RAFT_PORTS);
    let rocketmq = rocketmq.unwrap_or_default();
    let conf = |g: u32, i: usize| -> String {
        let shift = |p: u16, by: u32| p.checked_add(by as u16).unwrap_or(p);
        let raft = ports.map(|p| shift(p, 3 * g));
        let rocketmq = RocketmqPorts {
            namesrv: rocketmq.namesrv,
            listen: rocketmq.listen.map(|p| shift(p, g)),
        };
        let store = if g == 0 {
            dir.join("store").join(format!("node0{i}"))
        } else {
            dir.join("store")
                .join(format!("g{g}"))
                .join(format!("node0{i}"))
        };
        let mut text = broker_conf_with(i, raft, &store, rocketmq);
        if groups > 1 {
            text = text.replace("RaftNode00", &format!("RaftNode{g:02}"));
            text.push_str(&format!(
                "# [rmqraft] The member this group prefers as its leader (spread over the processes).\n\
                 preferredLeaderIds = n{}\n",
                g % 3
            ));
            // ListenPorts 1 apart: listenPort - 2 (the VIP channel) is another's port.
            text.push_str("# [rmqraft] No VIP channel: listenPort - 2 is another member's port.\nvipChannelEnabled = false\n");
        }
        text
    };
    if !generate {
        let shipped = shipped_configs()?;
        // Clients look for generated configs first: drop those of an earlier run.
        for i in 0..3 {
            let _ = fs::remove_file(generated_config_path(dir, i));
        }
        return Ok(shipped);
    }
    for g in 1..groups {
        for i in 0..3 {
            let path = group_config_path(dir, g, i);
            fs::write(&path, conf(g, i)).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    (0..3)
        .map(|i| {
            let path = generated_config_path(dir, i);
            fs::write(&path, conf(0, i)).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(path)
        })
        .collect()
}

/// How long start keeps checking a taken port: another process's short-lived outbound
/// connection may hold it for a moment (the shipped ports are in Linux's ephemeral range).
const PORT_CHECK_WAIT: Duration = Duration::from_secs(3);

fn check_ports_free(target: &Target) -> Result<(), String> {
    let deadline = Instant::now() + PORT_CHECK_WAIT;
    for peer in &target.peers {
        loop {
            let Err(e) = TcpListener::bind(peer.addr) else {
                break;
            };
            if Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            return Err(format!(
                "port {} ({}'s address {} in dLegerPeers) is taken: {e}; stop whatever uses \
                 it (another fast-try? `rmqraft fast-try stop`), or pick free ones with \
                 --ports P0,P1,P2",
                peer.addr.port(),
                peer.id,
                peer.addr
            ));
        }
    }
    Ok(())
}

/// A member store that holds something: fast-try resumes it (and says so).
fn store_in_use(member_dir: &Path) -> bool {
    fs::read_dir(member_dir)
        .map(|mut entries| entries.next().is_some())
        .unwrap_or(false)
}

/// The pid file's peer name of the name server fast-try starts.
const NAMESRV_PEER: &str = "namesrv";

/// Starts `exe namesrv -p PORT --listen 127.0.0.1` detached, and waits until it accepts.
fn spawn_namesrv(exe: &Path, dir: &Path, port: u16) -> Result<Started, String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    if let Err(e) = TcpListener::bind(addr) {
        return Err(format!(
            "port {port} (the name server's) is taken: {e}; stop whatever uses it, or pick \
             free ports with --rocketmq-ports NS,L0,L1,L2"
        ));
    }
    let log = dir.join("namesrv.log");
    let mut child = spawn_detached(
        exe,
        &["namesrv", "-p", &port.to_string(), "--listen", "127.0.0.1"],
        &log,
        false,
    )?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
            return Ok(Started {
                peer: NAMESRV_PEER.to_string(),
                pid: child.id() as i32,
                config: PathBuf::from(format!("namesrv:{port}")),
            });
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "the name server exited ({status}); last lines of {}:\n{}",
                log.display(),
                log_tail(&log)
            ));
        }
        if Instant::now() >= deadline {
            terminate(&[child.id() as i32]);
            return Err(format!("the name server does not accept on {addr}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the name server lists a brokerId 0 for `group`.
fn wait_master_registered(namesrv: &str, group: &str) -> Result<String, String> {
    use rmqraft::remoting::client::Client;
    use rmqraft::remoting::codec::RemotingCommand;
    use rmqraft::remoting::codes::request as rq;
    let deadline = Instant::now() + ELECTION_WAIT;
    loop {
        let found = Client::connect(namesrv, Duration::from_secs(2))
            .and_then(|mut c| {
                c.invoke(
                    RemotingCommand::request(rq::GET_BROKER_CLUSTER_INFO, 0),
                    Duration::from_secs(2),
                )
            })
            .ok()
            .and_then(|r| rmqraft::remoting::json::parse_lenient(&r.body).ok())
            .and_then(|v| {
                v["brokerAddrTable"][group]["brokerAddrs"]["0"]
                    .as_str()
                    .map(str::to_string)
            });
        if let Some(addr) = found {
            return Ok(addr);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no master of {group} registered with the name server {namesrv} within {} s",
                ELECTION_WAIT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn start(
    dir: &Path,
    ports: Option<[u16; 3]>,
    rocketmq_ports: Option<[u16; 4]>,
    groups: u32,
    clean: bool,
) -> Result<(), String> {
    let rocketmq = rocketmq_ports.map(|p| RocketmqPorts {
        namesrv: p[0],
        listen: [p[1], p[2], p[3]],
    });
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if let Some(previous) = read_pid_file(dir)? {
        let live: Vec<String> = previous
            .iter()
            .filter(|s| is_our_node(s.pid))
            .map(|s| format!("{} pid {}", s.peer, s.pid))
            .collect();
        if !live.is_empty() {
            return Err(format!(
                "fast-try is already running from {} ({}); run `rmqraft fast-try stop{}` first",
                dir.display(),
                live.join(", "),
                dir_flag(dir)
            ));
        }
        let _ = fs::remove_file(pid_file(dir));
    }
    let configs = prepare_configs(dir, ports, rocketmq, groups)?;
    let mut target = None;
    let mut stores = Vec::new();
    for path in &configs {
        let (engine, group) = load_config(path)?;
        target.get_or_insert(target_of(&engine, &group));
        stores.push(group.member_dir());
    }
    let target = target.ok_or("no config")?;
    // Free ports also mean that no member of this group runs here (each listens on its
    // port while its store is open), so --clean cannot delete a store in use.
    check_ports_free(&target)?;
    let mut resumed = vec![false; stores.len()];
    for (i, store) in stores.iter().enumerate() {
        if clean && store.exists() {
            fs::remove_dir_all(store)
                .map_err(|e| format!("--clean: removing {}: {e}", store.display()))?;
            println!("fast-try: removed the store at {}", store.display());
        }
        resumed[i] = store_in_use(store);
    }

    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    let namesrv_port = rocketmq.unwrap_or_default().namesrv;
    let namesrv = spawn_namesrv(&exe, dir, namesrv_port)?;
    let namesrv_addr = format!("127.0.0.1:{namesrv_port}");
    let mut started: Vec<Started> = Vec::new();
    let result =
        spawn_and_wait(&exe, dir, &configs, &target, &mut started, &namesrv).and_then(|()| {
            let names: Vec<String> = match groups {
                1 => vec![target.group.clone()],
                n => (0..n).map(|g| format!("RaftNode{g:02}")).collect(),
            };
            for name in names {
                wait_master_registered(&namesrv_addr, &name)?;
            }
            Ok(())
        });
    if let Err(why) = result {
        let mut pids: Vec<i32> = started.iter().map(|s| s.pid).collect();
        pids.push(namesrv.pid);
        terminate(&pids);
        let _ = fs::remove_file(pid_file(dir));
        let mut message = format!("fast-try start failed: {why}");
        for i in 0..started.len() {
            let tail = log_tail(&log_path(dir, i));
            if !tail.is_empty() {
                message.push_str(&format!(
                    "\n--- last lines of {}:\n{tail}",
                    log_path(dir, i).display()
                ));
            }
        }
        message.push_str("\n(the processes it started were stopped)");
        return Err(message);
    }
    let rows = collect_rows(std::slice::from_ref(&target));
    let mut out = std::io::stdout().lock();
    for (i, store) in stores.iter().enumerate().filter(|(i, _)| resumed[*i]) {
        let (term, last) = rows
            .iter()
            .find(|r| r.position == i)
            .and_then(|r| r.report.as_ref().ok())
            .map(|r| (r.status.term.to_string(), r.status.last_index.to_string()))
            .unwrap_or_else(|| ("?".into(), "?".into()));
        let _ = writeln!(
            out,
            "fast-try: resuming the store at {} (term {term}, last index {last}); \
             `fast-try start --clean` starts empty",
            store.display()
        );
    }
    let _ = write!(out, "{}", table(&rows));
    let me = invoked_as();
    let d = dir_flag(dir);
    let _ = writeln!(
        out,
        "\nfast-try: {} is up: pids {}; logs, pids{} in {}.\n\
         RocketMQ clients: namesrvAddr={namesrv_addr} (name server pid {}).\n\
         Next steps:\n  \
         {me} clusterList -n {namesrv_addr}\n  \
         {me} send -n {namesrv_addr} -t TopicTest -k order-1 --body hello\n  \
         {me} queryMsgByKey -n {namesrv_addr} -t TopicTest -k order-1\n  \
         {me} cluster-list{d}\n  \
         {me} append{d} --count 1000\n  \
         kill -9 <the LEADER's pid>, then {me} cluster-list{d}: a follower takes over\n  \
         {me} fast-try stop{d}",
        target.group,
        started
            .iter()
            .filter(|s| s.peer != NAMESRV_PEER)
            .map(|s| s.pid.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        if ports.is_some() || rocketmq.is_some() {
            ", configs"
        } else {
            ""
        },
        dir.display(),
        namesrv.pid,
    );
    Ok(())
}

/// How the user ran us, for hints they can paste: `rmqraft` when found on PATH, else the
/// path they typed (e.g. target/release/rmqraft under `cargo run`).
fn invoked_as() -> String {
    std::env::args_os()
        .next()
        .map(|a| a.to_string_lossy().into_owned())
        .filter(|a| a.contains('/'))
        .unwrap_or_else(|| "rmqraft".to_string())
}

/// ` --dir DIR` when DIR is not the default, for the hints printed to the user.
fn dir_flag(dir: &Path) -> String {
    if dir == Path::new(crate::args::FAST_TRY_DIR) {
        String::new()
    } else {
        format!(" --dir {}", dir.display())
    }
}

/// Starts `exe node -c config` detached (its own session, output to `log`).
fn spawn_node(
    exe: &Path,
    config: &Path,
    log: &Path,
    append_log: bool,
) -> Result<std::process::Child, String> {
    let mut args: Vec<String> = vec!["node".into(), "-c".into()];
    args.push(config.as_os_str().to_string_lossy().into_owned());
    // The extra groups (`--groups`) this member runs, when start generated its config.
    if let (Some(dir), Some(name)) = (config.parent(), config.file_name()) {
        if let Some(i) = (0..3).find(|i| {
            name == generated_config_path(dir, *i)
                .file_name()
                .unwrap_or_default()
        }) {
            for extra in extra_group_configs(dir, i) {
                args.push("-c".into());
                args.push(extra.as_os_str().to_string_lossy().into_owned());
            }
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    spawn_detached(exe, &args, log, append_log)
}

/// Starts `exe args` detached (its own session, output to `log`).
fn spawn_detached(
    exe: &Path,
    args: &[&str],
    log: &Path,
    append_log: bool,
) -> Result<std::process::Child, String> {
    let stdout = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append_log)
        .truncate(!append_log)
        .open(log)
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let stderr = stdout
        .try_clone()
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let mut command = Command::new(exe);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    // SAFETY: setsid() is async-signal-safe; it detaches the node from our terminal
    // and session so it outlives this command and ignores the terminal's Ctrl-C.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
        .spawn()
        .map_err(|e| format!("cannot start {} node: {e}", exe.display()))
}

/// Starts one member fast-try started before, after it died or was killed: same config,
/// detached, its pid recorded so that `stop` stops it. Waits until it answers.
pub fn restart_member(dir: &Path, id: &str) -> Result<(), String> {
    let Some(mut started) = read_pid_file(dir)? else {
        return Err(format!(
            "fast-try was not started from {} (no {} file); run `rmqraft fast-try start{}`",
            dir.display(),
            pid_file(dir).display(),
            dir_flag(dir)
        ));
    };
    if id == NAMESRV_PEER {
        return Err(format!(
            "restart-member restarts a group member; the name server restarts with \
             `rmqraft fast-try stop{d}` and `start{d}`",
            d = dir_flag(dir)
        ));
    }
    let Some(i) = started.iter().position(|s| s.peer == id) else {
        let ids: Vec<&str> = started.iter().map(|s| s.peer.as_str()).collect();
        return Err(format!(
            "'{id}' is not a member fast-try started (it started {})",
            ids.join(", ")
        ));
    };
    if is_our_node(started[i].pid) {
        return Err(format!(
            "{id} is running (pid {}); kill it first, or `rmqraft fast-try stop{}`",
            started[i].pid,
            dir_flag(dir)
        ));
    }
    let config = started[i].config.clone();
    let (engine, group) = load_config(&config)?;
    let target = target_of(&engine, &group);
    let position = group.self_index;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    let log = log_path(dir, i);
    let mut child = spawn_node(&exe, &config, &log, true)?;
    started[i].pid = child.id() as i32;
    write_pid_file(dir, &started)?;
    let deadline = Instant::now() + ELECTION_WAIT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "{id} exited ({status}); last lines of {}:\n{}",
                log.display(),
                log_tail(&log)
            ));
        }
        let rows = collect_rows(std::slice::from_ref(&target));
        if let Some(Ok(report)) = rows
            .iter()
            .find(|r| r.position == position)
            .map(|r| r.report.as_ref())
        {
            println!(
                "fast-try: restarted {id} (pid {}): {} in term {}, last index {}; log {}",
                started[i].pid,
                report.status.role.name(),
                report.status.term,
                report.status.last_index,
                log.display()
            );
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{id} (pid {}) does not answer after {} s; see {}",
                started[i].pid,
                ELECTION_WAIT.as_secs(),
                log.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn spawn_and_wait(
    exe: &Path,
    dir: &Path,
    configs: &[PathBuf],
    target: &Target,
    started: &mut Vec<Started>,
    namesrv: &Started,
) -> Result<(), String> {
    let mut children = Vec::new();
    for (i, config) in configs.iter().enumerate() {
        let child = spawn_node(exe, config, &log_path(dir, i), false)?;
        started.push(Started {
            peer: target
                .peers
                .get(i)
                .map(|p| p.id.clone())
                .unwrap_or_else(|| format!("n{i}")),
            pid: child.id() as i32,
            config: config.clone(),
        });
        let mut all = started.clone();
        all.push(namesrv.clone());
        write_pid_file(dir, &all)?;
        children.push(child);
    }

    let deadline = Instant::now() + ELECTION_WAIT;
    let last_state = loop {
        for (i, child) in children.iter_mut().enumerate() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "{} exited ({status}) before a leader was elected",
                    started[i].peer
                ));
            }
        }
        let rows = collect_rows(std::slice::from_ref(target));
        let all_answer = rows.iter().all(|r| r.report.is_ok());
        if all_answer && rows.iter().any(|r| r.is_leader()) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            break rows
                .iter()
                .map(|r| format!("{} {}", r.peer, r.role()))
                .collect::<Vec<_>>()
                .join(", ");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Err(format!(
        "no leader within {} s (last seen: {last_state})",
        ELECTION_WAIT.as_secs()
    ))
}

pub fn stop(dir: &Path) -> Result<(), String> {
    let Some(started) = read_pid_file(dir)? else {
        println!(
            "fast-try: nothing to stop (no {} file)",
            pid_file(dir).display()
        );
        return Ok(());
    };
    let mut ours = Vec::new();
    for s in &started {
        if is_our_node(s.pid) {
            ours.push(s.clone());
        } else if is_running(s.pid) {
            println!(
                "fast-try: pid {} (was {}) is no longer an rmqraft node; left alone",
                s.pid, s.peer
            );
        } else {
            println!("fast-try: {} (pid {}) was not running", s.peer, s.pid);
        }
    }
    let pids: Vec<i32> = ours.iter().map(|s| s.pid).collect();
    let killed = terminate(&pids);
    for s in &ours {
        if killed.contains(&s.pid) {
            println!(
                "fast-try: stopped {} (pid {}) with SIGKILL: it did not exit within {} s of SIGTERM",
                s.peer,
                s.pid,
                STOP_WAIT.as_secs()
            );
        } else {
            println!("fast-try: stopped {} (pid {})", s.peer, s.pid);
        }
    }
    let still: Vec<String> = pids
        .iter()
        .filter(|&&p| is_running(p))
        .map(|p| p.to_string())
        .collect();
    if !still.is_empty() {
        return Err(format!("pids {} are still running", still.join(", ")));
    }
    fs::remove_file(pid_file(dir)).map_err(|e| format!("{}: {e}", pid_file(dir).display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_file_round_trip_and_liveness() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_pid_file(dir.path()).unwrap(), None);
        let started = vec![
            Started {
                peer: "n0".into(),
                pid: 12,
                config: PathBuf::from("/a b/broker-n0.conf"),
            },
            Started {
                peer: "n1".into(),
                pid: 13,
                config: PathBuf::from("c.conf"),
            },
        ];
        write_pid_file(dir.path(), &started).unwrap();
        assert_eq!(read_pid_file(dir.path()).unwrap(), Some(started));
        let me = std::process::id() as i32;
        assert!(is_running(me));
        assert!(!is_our_node(me), "the test binary is not an rmqraft node");
    }
}
