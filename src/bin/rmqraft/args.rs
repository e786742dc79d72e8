//! Command-line parsing: subcommands and their flags.

use lexopt::prelude::*;
#[cfg(test)]
use std::path::Path;
use std::path::PathBuf;

pub const USAGE: &str = "\
rmqraft: replicated commitlog groups (Raft over TCP), RocketMQ DLedger style

Usage:
  rmqraft node -c FILE [-c FILE ...]
  rmqraft fast-try start [--dir DIR] [--ports P0,P1,P2] [--rocketmq-ports NS,L0,L1,L2]
                         [--groups N] [--clean]
  rmqraft fast-try restart-member ID [--dir DIR]
  rmqraft fast-try stop  [--dir DIR]
  rmqraft namesrv [-p PORT]
  rmqraft store inspect DIR [--json] | diff DIR_A DIR_B | align --from A --to B [--dry-run]
  rmqraft clusterList|send|pull|queryMsgByKey|queryMsgById|updateTopic|topicList|
          topicStatus|consumerProgress|consumerConnection|producerConnection|brokerStatus
          [-n NAMESRV] ...   (mqadmin's commands; --help each)
  rmqraft cluster-list    [TARGET] [--json | --watch]
  rmqraft append          [TARGET] [--count N] [--size BYTES | --data TEXT | --file PATH]
                          [--timeout-ms MS]
  rmqraft read            [TARGET] --index I [--count N] [--peer ID]
  rmqraft transfer-leader [TARGET] --to ID [--timeout-ms MS]

TARGET names the group to talk to:
  -c, --config FILE    a broker.conf of the group (dLegerGroup, dLegerPeers, brokerClusterName);
                       cluster-list accepts several, one group each
  -p, --peers PEERS    'n0-host:port;n1-host:port;...' (with -g)
  -g, --group GROUP    the dLegerGroup (with -p)
      --cluster NAME   brokerClusterName the members expect (with -p; default DefaultCluster)
      --dir DIR        fast-try's directory (default /tmp/rmqraft-fast-try)
  Without -c or -p: the group fast-try started from DIR (its generated configs when it was
  given --ports, else the shipped conf/dledger/broker-n0.conf).

Options:
  --json               cluster-list: one JSON object per member per line
  --watch              cluster-list: the table, then a line at every change of leader
                       (until Ctrl-C); shows how long the group had no leader
  --count N            append: entries to append (default 1); read: entries from --index (default 1)
  --size BYTES         append: generated bodies of exactly BYTES bytes
  --data TEXT          append: the body of every entry
  --file PATH          append: the file's bytes (any binary data) are the body; '-' reads stdin
  --timeout-ms MS      append: how long one entry may wait for a leader through a failover
                       (default 30000); transfer-leader: how long the hand-over may take (default 10000)
  --index I            read: the first index to read
  --peer ID            read: the member to read from (default: the leader)
  --to ID              transfer-leader: the member that should lead
  --ports P0,P1,P2     fast-try start: generate configs in DIR for these Raft ports
  --rocketmq-ports NS,L0,L1,L2
                       fast-try start: the name server's port and the listenPorts (default
                       9876,30911,30921,30931); generates configs in DIR
  --groups N           fast-try start: N groups (RaftNode00 ..) across the three processes,
                       leaders spread by preferredLeaderIds; group g's ports are shifted
                       (Raft +3g, listenPort +g); generates configs in DIR
  --clean              fast-try start: delete the members' stores first
  -h, --help           this text (`rmqraft SUBCOMMAND --help`: that subcommand's)
  -V, --version        the version

Exit status: 0 on success, 1 when the operation failed, 2 on a usage error.
Logging of `node`: RUST_LOG (default info).
";

/// `rmqraft SUBCOMMAND --help`: that subcommand's usage, options and an example.
pub fn subcommand_usage(sub: &str) -> Option<String> {
    let (text, target, example) = match sub {
        "node" => (
            NODE_USAGE,
            false,
            "rmqraft node -c conf/dledger/broker-n0.conf",
        ),
        "fast-try" => (
            FAST_TRY_USAGE,
            false,
            "rmqraft fast-try start --clean\n  \
             kill -9 <the LEADER's pid>; rmqraft fast-try restart-member n0",
        ),
        "cluster-list" => (
            CLUSTER_LIST_USAGE,
            true,
            "rmqraft cluster-list -c conf/dledger/broker-n0.conf --watch",
        ),
        "append" => (
            APPEND_USAGE,
            true,
            "rmqraft append --count 1000\n  rmqraft append --file image.png\n  \
             tar c docs | rmqraft append --file -",
        ),
        "read" => (
            READ_USAGE,
            true,
            "rmqraft read --index 1000 --count 10 --peer n1",
        ),
        "transfer-leader" => (TRANSFER_USAGE, true, "rmqraft transfer-leader --to n1"),
        _ => return None,
    };
    let target = if target { TARGET_HELP } else { "" };
    Some(format!("{text}{target}\nExample:\n  {example}\n"))
}

const TARGET_HELP: &str = "
TARGET (default: the group fast-try started from --dir):
  -c, --config FILE    a broker.conf of the group (dLegerGroup, dLegerPeers, brokerClusterName)
  -p, --peers PEERS    'n0-host:port;n1-host:port;...' (with -g GROUP)
  -g, --group GROUP    the dLegerGroup (with -p)
      --cluster NAME   brokerClusterName the members expect (with -p; default DefaultCluster)
      --dir DIR        fast-try's directory (default /tmp/rmqraft-fast-try)
";

const NODE_USAGE: &str = "\
Usage: rmqraft node -c FILE [-c FILE ...]

Runs the group members the broker.conf files describe (one member per file, one engine for
all) until SIGTERM or Ctrl-C. Logging: RUST_LOG (default info).

Options:
  -c, --config FILE    a broker.conf (dLegerGroup, dLegerPeers, dLegerSelfId, storePathRootDir)
";

const FAST_TRY_USAGE: &str = "\
Usage:
  rmqraft fast-try start [--dir DIR] [--ports P0,P1,P2] [--rocketmq-ports NS,L0,L1,L2] [--clean]
  rmqraft fast-try restart-member ID [--dir DIR]
  rmqraft fast-try stop [--dir DIR]

start: runs a name server (`rmqraft namesrv`, port 9876) and three `rmqraft node` processes
in the background (conf/dledger/broker-n0..2.conf, or configs generated in DIR for --ports
or --rocketmq-ports), waits for a leader registered as brokerId 0 and prints the table;
RocketMQ clients then use namesrvAddr=127.0.0.1:9876. An
existing store is resumed, and start says so (its term and last index).
restart-member: starts member ID (n0, n1, n2) again after it was killed, with the same
config, detached like the others; stop stops it too.
stop: stops exactly the processes start and restart-member started.

Options:
  --dir DIR            where pids, logs and generated configs go (default /tmp/rmqraft-fast-try)
  --ports P0,P1,P2     start: generate configs in DIR for these Raft ports
  --rocketmq-ports NS,L0,L1,L2
                       start: the name server's port and the members' listenPorts
                       (default 9876,30911,30921,30931); generates configs in DIR
  --groups N           start: N groups (RaftNode00, RaftNode01, ..) across the three
                       processes, group g led by n(g mod 3) (preferredLeaderIds), its Raft
                       ports +3g and listenPorts +g; generates configs in DIR
  --clean              start: delete the three members' store directories first (refused
                       while one of the members runs)
";

const CLUSTER_LIST_USAGE: &str = "\
Usage: rmqraft cluster-list [TARGET] [--json | --watch]

One row per member, like mqadmin clusterList: BID 0 is the leader (master). Several
-c FILE: one group each.

Options:
  --json               one JSON object per member per line
  --watch              the table, then a line at every change of leader (until Ctrl-C)
";

const APPEND_USAGE: &str = "\
Usage: rmqraft append [TARGET] [--count N] [--size BYTES | --data TEXT | --file PATH]
                      [--timeout-ms MS]

Appends entries on the leader (following NOT_LEADER redirects) and prints where each went.
While no leader is known it says what it is waiting for.

Options:
  -n, --count N        entries to append (default 1)
  --size BYTES         generated bodies of exactly BYTES bytes
  --data TEXT          the body of every entry
  --file PATH          the file's bytes (any binary data) are the body: one entry, or
                       --count N copies; '-' reads standard input
  --timeout-ms MS      how long one entry may wait for a leader through a failover
                       (default 30000)
";

const READ_USAGE: &str = "\
Usage: rmqraft read [TARGET] --index I [--count N] [--peer ID]

Reads committed entries; a printable body is shown as text, another as hex. Reading stops
at the member's commit index, and says how many of the entries asked for are not
committed.

Options:
  -i, --index I        the first index to read (from 1)
  -n, --count N        entries to read from I (default 1)
  --peer ID            the member to read from (default: the leader)
";

const TRANSFER_USAGE: &str = "\
Usage: rmqraft transfer-leader [TARGET] --to ID [--timeout-ms MS]

Hands leadership to member ID and waits until it leads.

Options:
  --to ID              the member that should lead (n0, n1, ...)
  --timeout-ms MS      how long the hand-over may take (default 10000)
";

/// Where fast-try keeps pids, logs and generated configs unless `--dir` says otherwise.
pub const FAST_TRY_DIR: &str = "/tmp/rmqraft-fast-try";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetArgs {
    pub configs: Vec<PathBuf>,
    pub peers: Option<String>,
    pub group: Option<String>,
    pub cluster: Option<String>,
    pub dir: PathBuf,
}

impl Default for TargetArgs {
    fn default() -> Self {
        TargetArgs {
            configs: Vec::new(),
            peers: None,
            group: None,
            cluster: None,
            dir: PathBuf::from(FAST_TRY_DIR),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FastTryAction {
    /// `clean`: delete the members' stores first.
    Start {
        clean: bool,
    },
    Stop,
    /// Starts the member with this peer id again.
    RestartMember(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// The global usage, or that of the named subcommand.
    Help(Option<String>),
    Version,
    Node {
        configs: Vec<PathBuf>,
    },
    FastTry {
        action: FastTryAction,
        dir: PathBuf,
        ports: Option<[u16; 3]>,
        /// `--rocketmq-ports NS,L0,L1,L2`: the name server's port and the listenPorts.
        rocketmq_ports: Option<[u16; 4]>,
        /// `--groups N`: groups across the three processes (1 ..= 9).
        groups: u32,
    },
    ClusterList {
        target: TargetArgs,
        json: bool,
        watch: bool,
    },
    Append {
        target: TargetArgs,
        count: u64,
        size_bytes: Option<usize>,
        data: Option<String>,
        /// `-` for standard input.
        file: Option<PathBuf>,
        timeout_ms: u64,
    },
    Read {
        target: TargetArgs,
        index: u64,
        count: u64,
        peer: Option<String>,
    },
    TransferLeader {
        target: TargetArgs,
        to: String,
        timeout_ms: u64,
    },
}

/// A usage error: the message says what was wrong.
#[derive(Debug)]
pub struct UsageError(pub String);

impl From<lexopt::Error> for UsageError {
    fn from(e: lexopt::Error) -> Self {
        UsageError(e.to_string())
    }
}

type Parsed<T> = Result<T, UsageError>;

fn usage<T>(message: impl Into<String>) -> Parsed<T> {
    Err(UsageError(message.into()))
}

/// One command-line item, owned so that the parser can be asked for the flag's value.
enum Item {
    /// `-c` or `--config`, as written.
    Flag(String),
    Value(std::ffi::OsString),
}

fn next_item(parser: &mut lexopt::Parser) -> Parsed<Option<Item>> {
    Ok(parser.next()?.map(|arg| match arg {
        Short(c) => Item::Flag(format!("-{c}")),
        Long(l) => Item::Flag(format!("--{l}")),
        Value(v) => Item::Value(v),
    }))
}

fn unexpected<T>(item: Item) -> Parsed<T> {
    match item {
        Item::Flag(f) => usage(format!("invalid option '{f}'")),
        Item::Value(v) => usage(format!("unexpected argument '{}'", v.to_string_lossy())),
    }
}

fn is_help(flag: &str) -> bool {
    flag == "-h" || flag == "--help"
}

/// Handles the TARGET flags; `Ok(false)` when `flag` is not one of them.
fn target_flag(flag: &str, parser: &mut lexopt::Parser, t: &mut TargetArgs) -> Parsed<bool> {
    match flag {
        "-c" | "--config" => t.configs.push(parser.value()?.into()),
        "-p" | "--peers" => t.peers = Some(parser.value()?.string()?),
        "-g" | "--group" => t.group = Some(parser.value()?.string()?),
        "--cluster" => t.cluster = Some(parser.value()?.string()?),
        "--dir" => t.dir = parser.value()?.into(),
        _ => return Ok(false),
    }
    Ok(true)
}

fn check_target(t: &TargetArgs) -> Parsed<()> {
    if !t.configs.is_empty() && (t.peers.is_some() || t.group.is_some()) {
        return usage("use -c FILE or -p PEERS -g GROUP, not both");
    }
    if t.peers.is_some() != t.group.is_some() {
        return usage("-p PEERS and -g GROUP go together");
    }
    if t.cluster.is_some() && !t.configs.is_empty() {
        return usage("--cluster goes with -p; with -c the file's brokerClusterName is used");
    }
    Ok(())
}

/// The value of `flag` as a non-negative integer; the error names the flag and the value.
fn number<T: std::str::FromStr>(parser: &mut lexopt::Parser, flag: &str) -> Parsed<T> {
    let value = parser
        .value()
        .map_err(|_| UsageError(format!("{flag}: a value is missing")))?;
    let text = value.to_string_lossy();
    text.parse()
        .map_err(|_| UsageError(format!("{flag}: '{text}' is not a non-negative integer")))
}

fn positive(parser: &mut lexopt::Parser, flag: &str) -> Parsed<u64> {
    let value: u64 = number(parser, flag)?;
    if value == 0 {
        return usage(format!("{flag}: must be at least 1"));
    }
    Ok(value)
}

fn parse_rocketmq_ports(text: &str) -> Parsed<[u16; 4]> {
    let ports: Vec<u16> = text
        .split(',')
        .map(|p| p.trim().parse::<u16>().ok().filter(|p| *p != 0))
        .collect::<Option<_>>()
        .unwrap_or_default();
    let distinct: std::collections::BTreeSet<u16> = ports.iter().copied().collect();
    match ports.as_slice() {
        [a, b, c, d] if distinct.len() == 4 => Ok([*a, *b, *c, *d]),
        _ => usage(format!(
            "--rocketmq-ports: '{text}' is not four distinct non-zero ports \
             NAMESRV,LISTEN0,LISTEN1,LISTEN2 like 9876,30911,30921,30931"
        )),
    }
}

fn parse_ports(text: &str) -> Parsed<[u16; 3]> {
    let ports: Vec<u16> = text
        .split(',')
        .map(|p| p.trim().parse::<u16>())
        .collect::<Result<_, _>>()
        .map_err(|_| {
            UsageError(format!(
                "--ports: '{text}' is not three ports like 40911,40912,40913"
            ))
        })?;
    match ports.as_slice() {
        [a, b, c] if *a != 0 && *b != 0 && *c != 0 && a != b && b != c && a != c => {
            Ok([*a, *b, *c])
        }
        _ => usage(format!(
            "--ports: '{text}' is not three distinct non-zero ports like 40911,40912,40913"
        )),
    }
}

pub fn parse(args: impl IntoIterator<Item = std::ffi::OsString>) -> Parsed<Command> {
    let mut parser = lexopt::Parser::from_args(args);
    let sub = match next_item(&mut parser)? {
        None => return Ok(Command::Help(None)),
        Some(Item::Flag(f)) if is_help(&f) => return Ok(Command::Help(None)),
        Some(Item::Flag(f)) if f == "-V" || f == "--version" => return Ok(Command::Version),
        Some(Item::Value(v)) => v.string()?,
        Some(item) => return unexpected(item),
    };
    match sub.as_str() {
        "help" => {
            let topic = match next_item(&mut parser)? {
                Some(Item::Value(v)) => Some(canonical(&v.string()?).to_string()),
                _ => None,
            };
            Ok(Command::Help(topic))
        }
        "node" => parse_node(&mut parser),
        "fast-try" => parse_fast_try(&mut parser),
        "cluster-list" | "clusterList" => parse_cluster_list(&mut parser),
        "append" => parse_append(&mut parser),
        "read" => parse_read(&mut parser),
        "transfer-leader" => parse_transfer(&mut parser),
        other => usage(format!("unknown subcommand '{other}'")),
    }
    .map(|c| match c {
        Command::Help(None) => Command::Help(Some(canonical(&sub).to_string())),
        c => c,
    })
    .map(|c| match c {
        Command::Help(Some(t)) if subcommand_usage(&t).is_none() => Command::Help(None),
        c => c,
    })
}

/// The subcommand's name as its help knows it.
fn canonical(sub: &str) -> &str {
    match sub {
        "clusterList" => "cluster-list",
        other => other,
    }
}

fn parse_node(parser: &mut lexopt::Parser) -> Parsed<Command> {
    let mut configs = Vec::new();
    while let Some(item) = next_item(parser)? {
        match &item {
            Item::Flag(f) if f == "-c" || f == "--config" => configs.push(parser.value()?.into()),
            Item::Flag(f) if is_help(f) => return Ok(Command::Help(None)),
            _ => return unexpected(item),
        }
    }
    if configs.is_empty() {
        return usage("node: give at least one -c FILE");
    }
    Ok(Command::Node { configs })
}

fn parse_fast_try(parser: &mut lexopt::Parser) -> Parsed<Command> {
    let mut action = None;
    let mut dir = PathBuf::from(FAST_TRY_DIR);
    let mut ports = None;
    let mut rocketmq_ports = None;
    let mut groups = 1u32;
    let mut clean = false;
    while let Some(item) = next_item(parser)? {
        match &item {
            Item::Value(v) if action.is_none() => {
                action = Some(match v.to_str() {
                    Some("start") => FastTryAction::Start { clean: false },
                    Some("stop") => FastTryAction::Stop,
                    Some("restart-member") => FastTryAction::RestartMember(String::new()),
                    _ => {
                        return usage(format!(
                            "fast-try: '{}' is not start, restart-member or stop",
                            v.to_string_lossy()
                        ))
                    }
                })
            }
            Item::Value(v) if action == Some(FastTryAction::RestartMember(String::new())) => {
                action = Some(FastTryAction::RestartMember(v.clone().string()?))
            }
            Item::Flag(f) if f == "--clean" => clean = true,
            Item::Flag(f) if f == "--dir" => dir = parser.value()?.into(),
            Item::Flag(f) if f == "--ports" => {
                ports = Some(parse_ports(&parser.value()?.string()?)?)
            }
            Item::Flag(f) if f == "--groups" => {
                groups = match positive(parser, "--groups")? {
                    n @ 1..=9 => n as u32,
                    n => return usage(format!("--groups: {n} is not 1 to 9")),
                }
            }
            Item::Flag(f) if f == "--rocketmq-ports" => {
                rocketmq_ports = Some(parse_rocketmq_ports(&parser.value()?.string()?)?)
            }
            Item::Flag(f) if is_help(f) => return Ok(Command::Help(None)),
            _ => return unexpected(item),
        }
    }
    let action = match action {
        None => return usage("fast-try: say start, restart-member ID or stop"),
        Some(FastTryAction::RestartMember(id)) if id.is_empty() => {
            return usage("fast-try restart-member: name the member, e.g. n0")
        }
        Some(FastTryAction::Start { .. }) => FastTryAction::Start { clean },
        Some(other) => other,
    };
    if !matches!(action, FastTryAction::Start { .. })
        && (ports.is_some() || clean || rocketmq_ports.is_some() || groups != 1)
    {
        return usage("fast-try: --ports, --rocketmq-ports, --groups and --clean are for start");
    }
    Ok(Command::FastTry {
        action,
        dir,
        ports,
        rocketmq_ports,
        groups,
    })
}

/// Parses a subcommand's flags: the TARGET flags, help, and those `own` takes (it
/// returns `Ok(false)` for a flag it does not know).
fn parse_flags(
    parser: &mut lexopt::Parser,
    mut own: impl FnMut(&str, &mut lexopt::Parser) -> Parsed<bool>,
) -> Parsed<Option<TargetArgs>> {
    let mut target = TargetArgs::default();
    while let Some(item) = next_item(parser)? {
        let Item::Flag(flag) = &item else {
            return unexpected(item);
        };
        if is_help(flag) {
            return Ok(None);
        }
        if !target_flag(flag, parser, &mut target)? && !own(flag, parser)? {
            return unexpected(item);
        }
    }
    check_target(&target)?;
    Ok(Some(target))
}

fn parse_cluster_list(parser: &mut lexopt::Parser) -> Parsed<Command> {
    let mut json = false;
    let mut watch = false;
    let target = parse_flags(parser, |flag, _| {
        match flag {
            "--json" => json = true,
            "--watch" => watch = true,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let Some(target) = target else {
        return Ok(Command::Help(None));
    };
    if json && watch {
        return usage("cluster-list: use --json or --watch, not both");
    }
    Ok(Command::ClusterList {
        target,
        json,
        watch,
    })
}

fn parse_append(parser: &mut lexopt::Parser) -> Parsed<Command> {
    let mut count = 1;
    let mut size_bytes = None;
    let mut data = None;
    let mut file = None;
    let mut timeout_ms = 30_000;
    let target = parse_flags(parser, |flag, parser| {
        match flag {
            "-n" | "--count" => count = positive(parser, "--count")?,
            "--size" => size_bytes = Some(number(parser, "--size")?),
            "--data" => data = Some(parser.value()?.string()?),
            "--file" => file = Some(PathBuf::from(parser.value()?)),
            "--timeout-ms" => timeout_ms = positive(parser, "--timeout-ms")?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let Some(target) = target else {
        return Ok(Command::Help(None));
    };
    let bodies = [size_bytes.is_some(), data.is_some(), file.is_some()];
    if bodies.iter().filter(|b| **b).count() > 1 {
        return usage("append: use one of --size, --data and --file");
    }
    Ok(Command::Append {
        target,
        count,
        size_bytes,
        data,
        file,
        timeout_ms,
    })
}

fn parse_read(parser: &mut lexopt::Parser) -> Parsed<Command> {
    let mut index = None;
    let mut count = 1;
    let mut peer = None;
    let target = parse_flags(parser, |flag, parser| {
        match flag {
            "-i" | "--index" => index = Some(positive(parser, "--index")?),
            "-n" | "--count" => count = positive(parser, "--count")?,
            "--peer" => peer = Some(parser.value()?.string()?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let Some(target) = target else {
        return Ok(Command::Help(None));
    };
    let Some(index) = index else {
        return usage("read: give --index I");
    };
    Ok(Command::Read {
        target,
        index,
        count,
        peer,
    })
}

fn parse_transfer(parser: &mut lexopt::Parser) -> Parsed<Command> {
    let mut to = None;
    let mut timeout_ms = 10_000;
    let target = parse_flags(parser, |flag, parser| {
        match flag {
            "--to" => to = Some(parser.value()?.string()?),
            "--timeout-ms" => timeout_ms = positive(parser, "--timeout-ms")?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let Some(target) = target else {
        return Ok(Command::Help(None));
    };
    let Some(to) = to else {
        return usage("transfer-leader: give --to ID");
    };
    Ok(Command::TransferLeader {
        target,
        to,
        timeout_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Parsed<Command> {
        parse(args.iter().map(std::ffi::OsString::from))
    }

    #[test]
    fn subcommands_and_flags() {
        assert_eq!(p(&[]).unwrap(), Command::Help(None));
        assert!(matches!(
            p(&["fast-try", "start", "--ports", "1,2,3"]).unwrap(),
            Command::FastTry {
                action: FastTryAction::Start { clean: false },
                ports: Some([1, 2, 3]),
                ..
            }
        ));
        assert!(p(&["fast-try", "start", "--ports", "1,2,2"]).is_err());
        assert!(p(&["fast-try"]).is_err());
        let Command::Append { target, count, .. } =
            p(&["append", "-p", "n0-127.0.0.1:1", "-g", "G", "--count", "5"]).unwrap()
        else {
            panic!("not append")
        };
        assert_eq!(count, 5);
        assert_eq!(target.group.as_deref(), Some("G"));
        assert!(p(&["append", "-p", "n0-127.0.0.1:1"]).is_err());
        assert!(p(&["append", "--size", "3", "--data", "x"]).is_err());
        assert!(p(&["append", "--count", "0"]).is_err());
        assert!(p(&["read"]).is_err());
        assert!(p(&["transfer-leader"]).is_err());
        assert!(p(&["bogus"]).is_err());
        assert!(p(&["node"]).is_err());
        assert!(matches!(
            p(&["cluster-list", "--json", "-c", "a.conf", "-c", "b.conf"]).unwrap(),
            Command::ClusterList { json: true, .. }
        ));
        assert!(matches!(
            p(&["cluster-list", "--watch"]).unwrap(),
            Command::ClusterList { watch: true, .. }
        ));
        assert!(p(&["cluster-list", "--watch", "--json"]).is_err());
    }

    fn usage_error(args: &[&str]) -> String {
        match p(args) {
            Err(UsageError(m)) => m,
            Ok(c) => panic!("{args:?} parsed as {c:?}"),
        }
    }

    #[test]
    fn errors_name_the_option_and_the_value() {
        assert_eq!(
            usage_error(&["read", "--index", "-1"]),
            "--index: '-1' is not a non-negative integer"
        );
        assert_eq!(
            usage_error(&["append", "--count", "ten"]),
            "--count: 'ten' is not a non-negative integer"
        );
        assert_eq!(
            usage_error(&["append", "--size", "1k"]),
            "--size: '1k' is not a non-negative integer"
        );
        assert_eq!(
            usage_error(&["read", "--index", "0"]),
            "--index: must be at least 1"
        );
        assert_eq!(
            usage_error(&["read", "--index"]),
            "--index: a value is missing"
        );
        assert!(usage_error(&["append", "--data", "x", "--file", "-"]).contains("one of"));
        assert!(usage_error(&["fast-try", "restart-member"]).contains("name the member"));
        assert!(usage_error(&["fast-try", "stop", "--clean"]).contains("for start"));
    }

    #[test]
    fn fast_try_actions_and_append_file() {
        assert_eq!(
            p(&["fast-try", "start", "--clean"]).unwrap(),
            Command::FastTry {
                action: FastTryAction::Start { clean: true },
                dir: PathBuf::from(FAST_TRY_DIR),
                ports: None,
                rocketmq_ports: None,
                groups: 1,
            }
        );
        assert!(matches!(
            p(&["fast-try", "restart-member", "n0", "--dir", "/x"]).unwrap(),
            Command::FastTry { action: FastTryAction::RestartMember(id), .. } if id == "n0"
        ));
        assert!(matches!(
            p(&["append", "--file", "-"]).unwrap(),
            Command::Append { file: Some(f), .. } if f == Path::new("-")
        ));
    }

    #[test]
    fn every_subcommand_has_its_own_help() {
        for sub in [
            "node",
            "fast-try",
            "cluster-list",
            "append",
            "read",
            "transfer-leader",
        ] {
            let cmd = p(&[sub, "--help"]).unwrap();
            assert_eq!(cmd, Command::Help(Some(sub.to_string())), "{sub}");
            assert_eq!(p(&["help", sub]).unwrap(), cmd);
            let text = subcommand_usage(sub).unwrap();
            assert!(
                text.contains(&format!("Usage: rmqraft {sub}"))
                    || text.contains(&format!("  rmqraft {sub} ")),
                "{sub}: {text}"
            );
            assert!(
                text.contains("Options:") && text.contains("Example:\n  rmqraft "),
                "{sub}: {text}"
            );
            assert_ne!(text, USAGE);
        }
        assert!(subcommand_usage("append").unwrap().contains("--file PATH"));
        assert_eq!(p(&["help"]).unwrap(), Command::Help(None));
        assert_eq!(
            p(&["clusterList", "-h"]).unwrap(),
            Command::Help(Some("cluster-list".into()))
        );
    }
}
