//! `rmqraft store inspect | diff | align`: classic RocketMQ commitlogs before an upgrade
//! in place (README, "Upgrading a master-slave store").

use lexopt::prelude::*;
use rmqraft::upgrade::{dledger, tools};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

pub const USAGE: &str = "\
Usage:
  rmqraft store inspect DIR [--json]
  rmqraft store diff DIR_A DIR_B
  rmqraft store align --from DIR_A --to DIR_B [--dry-run]
  rmqraft store convert --dry-run DIR...

DIR is a classic RocketMQ store root (holding commitlog/) or a commitlog directory; for
inspect and convert it may also be a DLedger store (dledger-<selfId>/ or its store root).

inspect: segments, messages, first and last offset, the offset new messages would start
         at, a SHA-256 of the log, topics and queues with their queue offsets, notes (an
         unclean stop, consume queues lagging the commitlog) and every problem found, each
         naming its file and offset. Exit 0: no problem; 1: problems found; 2: error.
diff:    compares two stores message by message and prints the first difference: its
         offset, topic, key and what differs. Exit 0: the same; 1: different; 2: error.
align:   makes DIR_B's commitlog (and config/*.json, for store roots) equal to DIR_A's,
         writing only the bytes that differ, and fsyncs; says what it did. Refuses when
         DIR_A has any problem or DIR_B holds segments DIR_A does not. Stop both brokers
         first. --dry-run: only say what it would do.

convert: --dry-run only: for the DLedger stores of the members (one DIR each), what
         taking them over in place would do (rmqraftTakeOverDLedger=true): each copy's
         entries, indexes and terms, the term Raft continues from, what is served and
         from which commitlog offset new messages go, the index the copies agree
         through, and what is not touched. Exit 0: can go ahead; 1: cannot; 2: error.

Example:
  rmqraft store diff /data/master/store /data/slave/store ||
    rmqraft store align --from /data/master/store --to /data/slave/store
";

enum Cmd {
    Inspect {
        dir: PathBuf,
        json: bool,
    },
    Diff {
        a: PathBuf,
        b: PathBuf,
    },
    Align {
        from: PathBuf,
        to: PathBuf,
        dry_run: bool,
    },
    Convert {
        dirs: Vec<PathBuf>,
        dry_run: bool,
    },
    Help,
}

fn parse(args: Vec<OsString>) -> Result<Cmd, String> {
    let mut p = lexopt::Parser::from_args(args);
    let mut words: Vec<PathBuf> = Vec::new();
    let (mut json, mut dry_run) = (false, false);
    let (mut from, mut to) = (None, None);
    let mut sub: Option<String> = None;
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Short('h') | Long("help") => return Ok(Cmd::Help),
            Long("json") => json = true,
            Long("dry-run") => dry_run = true,
            Long("from") => from = Some(PathBuf::from(p.value().map_err(|e| e.to_string())?)),
            Long("to") => to = Some(PathBuf::from(p.value().map_err(|e| e.to_string())?)),
            Value(v) if sub.is_none() => sub = Some(v.to_string_lossy().into_owned()),
            Value(v) => words.push(PathBuf::from(v)),
            other => return Err(other.unexpected().to_string()),
        }
    }
    let sub = sub.ok_or("a subcommand is needed: inspect, diff or align")?;
    let only = |ok: bool, flag: &str| {
        if ok {
            Ok(())
        } else {
            Err(format!("{flag} does not go with `store {sub}`"))
        }
    };
    match sub.as_str() {
        "inspect" => {
            only(!dry_run, "--dry-run")?;
            only(from.is_none() && to.is_none(), "--from/--to")?;
            match <[PathBuf; 1]>::try_from(words) {
                Ok([dir]) => Ok(Cmd::Inspect { dir, json }),
                Err(_) => Err("inspect takes one DIR".into()),
            }
        }
        "diff" => {
            only(!dry_run && !json, "--dry-run/--json")?;
            only(from.is_none() && to.is_none(), "--from/--to")?;
            match <[PathBuf; 2]>::try_from(words) {
                Ok([a, b]) => Ok(Cmd::Diff { a, b }),
                Err(_) => Err("diff takes two directories, DIR_A DIR_B".into()),
            }
        }
        "align" => {
            only(!json, "--json")?;
            if !words.is_empty() {
                return Err("align takes --from DIR_A --to DIR_B, no other words".into());
            }
            match (from, to) {
                (Some(from), Some(to)) => Ok(Cmd::Align { from, to, dry_run }),
                _ => Err("align needs both --from DIR_A and --to DIR_B".into()),
            }
        }
        "convert" => {
            only(!json, "--json")?;
            only(from.is_none() && to.is_none(), "--from/--to")?;
            if words.is_empty() {
                return Err("convert takes one DIR per member".into());
            }
            Ok(Cmd::Convert {
                dirs: words,
                dry_run,
            })
        }
        other => Err(format!(
            "unknown store subcommand '{other}': inspect, diff, align or convert"
        )),
    }
}

/// Runs the subcommand; `args` are the words after `store`.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let cmd = match parse(args) {
        Ok(c) => c,
        Err(message) => {
            eprintln!("rmqraft store: {message} (see `rmqraft store --help`)");
            return ExitCode::from(2);
        }
    };
    let fail = |e: rmqraft::Error| {
        eprintln!("rmqraft store: {}", e.message());
        ExitCode::from(2)
    };
    match cmd {
        Cmd::Help => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Cmd::Inspect { dir, json } if dledger::find_dir(&dir).is_some() => {
            match dledger::inspect(&dir) {
                Ok(r) => {
                    if json {
                        println!("{}", r.json());
                    } else {
                        print!("{}", r.text());
                    }
                    if r.problems().is_empty() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
                Err(e) => fail(e),
            }
        }
        Cmd::Convert { dry_run: false, .. } => {
            eprintln!(
                "rmqraft store: convert writes nothing, so it runs only with --dry-run: the \
                 takeover happens in place when each member starts with \
                 rmqraftTakeOverDLedger=true (README, \"Upgrade from DLedger mode\")"
            );
            ExitCode::from(2)
        }
        Cmd::Convert { dirs, .. } => match dledger::convert_dry_run(&dirs) {
            Ok((lines, ok)) => {
                for l in &lines {
                    println!("{l}");
                }
                if ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(e) => fail(e),
        },
        Cmd::Inspect { dir, json } => match tools::inspect(&dir) {
            Ok(r) => {
                if json {
                    println!("{}", r.json());
                } else {
                    print!("{}", r.text());
                }
                if r.scan.problems.is_empty() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(e) => fail(e),
        },
        Cmd::Diff { a, b } => match tools::diff(&a, &b) {
            Ok(d) => {
                for l in &d.lines {
                    println!("{l}");
                }
                if d.same {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(e) => fail(e),
        },
        Cmd::Align { from, to, dry_run } => match tools::align(&from, &to, dry_run) {
            Ok(actions) => {
                if dry_run {
                    println!("dry run: nothing written");
                }
                for a in &actions {
                    println!("{a}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
    }
}
