//! Command-line parsing: subcommands and their flags.

use lexopt::prelude::*;
use std::path::PathBuf;

pub const USAGE: &str = "\
rmqraft: replicated commitlog groups (Raft over TCP), RocketMQ DLedger style

Usage:
  rmqraft node -c FILE [-c FILE ...]
  rmqraft fast-try start [--dir DIR] [--ports P0,P1,P2]
  rmqraft fast-try stop  [--dir DIR]
  rmqraft cluster-list    [TARGET] [--json | --watch]
  rmqraft append          [TARGET] [--count N] [--size BYTES | --data TEXT] [--timeout-ms MS]
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
  --timeout-ms MS      append: how long one entry may wait for a leader through a failover
                       (default 30000); transfer-leader: how long the hand-over may take (default 10000)
  --index I            read: the first index to read
  --peer ID            read: the member to read from (default: the leader)
  --to ID              transfer-leader: the member that should lead
  --ports P0,P1,P2     fast-try start: generate configs in DIR for these Raft ports
  -h, --help           this text
  -V, --version        the version

Exit status: 0 on success, 1 when the operation failed, 2 on a usage error.
Logging of `node`: RUST_LOG (default info).
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FastTryAction {
    Start,
    Stop,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Version,
    Node {
        configs: Vec<PathBuf>,
    },
    FastTry {
        action: FastTryAction,
        dir: PathBuf,
        ports: Option<[u16; 3]>,
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

fn positive(parser: &mut lexopt::Parser, flag: &str) -> Parsed<u64> {
    let value: u64 = parser.value()?.parse()?;
    if value == 0 {
        return usage(format!("{flag} must be at least 1"));
    }
    Ok(value)
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
        None => return Ok(Command::Help),
        Some(Item::Flag(f)) if is_help(&f) => return Ok(Command::Help),
        Some(Item::Flag(f)) if f == "-V" || f == "--version" => return Ok(Command::Version),
        Some(Item::Value(v)) => v.string()?,
        Some(item) => return unexpected(item),
    };
    match sub.as_str() {
        "help" => Ok(Command::Help),
        "node" => parse_node(&mut parser),
        "fast-try" => parse_fast_try(&mut parser),
        "cluster-list" | "clusterList" => parse_cluster_list(&mut parser),
        "append" => parse_append(&mut parser),
        "read" => parse_read(&mut parser),
        "transfer-leader" => parse_transfer(&mut parser),
        other => usage(format!("unknown subcommand '{other}'")),
    }
}

fn parse_node(parser: &mut lexopt::Parser) -> Parsed<Command> {
    let mut configs = Vec::new();
    while let Some(item) = next_item(parser)? {
        match &item {
            Item::Flag(f) if f == "-c" || f == "--config" => configs.push(parser.value()?.into()),
            Item::Flag(f) if is_help(f) => return Ok(Command::Help),
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
    while let Some(item) = next_item(parser)? {
        match &item {
            Item::Value(v) if action.is_none() => {
                action = Some(match v.to_str() {
                    Some("start") => FastTryAction::Start,
                    Some("stop") => FastTryAction::Stop,
                    _ => {
                        return usage(format!(
                            "fast-try: '{}' is not start or stop",
                            v.to_string_lossy()
                        ))
                    }
                })
            }
            Item::Flag(f) if f == "--dir" => dir = parser.value()?.into(),
            Item::Flag(f) if f == "--ports" => {
                ports = Some(parse_ports(&parser.value()?.string()?)?)
            }
            Item::Flag(f) if is_help(f) => return Ok(Command::Help),
            _ => return unexpected(item),
        }
    }
    let Some(action) = action else {
        return usage("fast-try: say start or stop");
    };
    if action == FastTryAction::Stop && ports.is_some() {
        return usage("fast-try stop: --ports is for start");
    }
    Ok(Command::FastTry { action, dir, ports })
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
        return Ok(Command::Help);
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
    let mut timeout_ms = 30_000;
    let target = parse_flags(parser, |flag, parser| {
        match flag {
            "-n" | "--count" => count = positive(parser, "--count")?,
            "--size" => size_bytes = Some(parser.value()?.parse()?),
            "--data" => data = Some(parser.value()?.string()?),
            "--timeout-ms" => timeout_ms = positive(parser, "--timeout-ms")?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let Some(target) = target else {
        return Ok(Command::Help);
    };
    if size_bytes.is_some() && data.is_some() {
        return usage("append: use --size or --data, not both");
    }
    Ok(Command::Append {
        target,
        count,
        size_bytes,
        data,
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
        return Ok(Command::Help);
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
        return Ok(Command::Help);
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
        assert_eq!(p(&[]).unwrap(), Command::Help);
        assert!(matches!(
            p(&["fast-try", "start", "--ports", "1,2,3"]).unwrap(),
            Command::FastTry {
                action: FastTryAction::Start,
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
}
