//! The `rmqraft` command: run members (`node`), a three-member try-out group
//! (`fast-try`), and talk to a group over TCP (`cluster-list`, `append`, `read`,
//! `transfer-leader`). See docs/CLI.md.
//!
//! The crate root is a file in src/bin, so its modules are named by path: a crate root's
//! `mod x;` would look beside it, in src/bin, where Cargo would take them for binaries.

#[path = "rmqraft/args.rs"]
mod args;
#[path = "rmqraft/client.rs"]
mod client;
#[path = "rmqraft/fast_try.rs"]
mod fast_try;
#[path = "rmqraft/mqadmin.rs"]
mod mqadmin;
#[path = "rmqraft/namesrv.rs"]
mod namesrv;
#[path = "rmqraft/node.rs"]
mod node;
#[path = "rmqraft/output.rs"]
mod output;
#[path = "rmqraft/remote.rs"]
mod remote;
#[path = "rmqraft/store.rs"]
mod store;
#[path = "rmqraft/target.rs"]
mod target;

use args::{Command, FastTryAction};
use std::process::ExitCode;

/// An internal error is still one line on stderr, not a trace.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".to_string());
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        eprintln!(
            "rmqraft: internal error in thread '{name}'{place}: {}",
            what.replace('\n', " ")
        );
    }));
}

/// Client subcommands die quietly when their output pipe closes (`| head`), like other
/// command-line tools; `node` keeps ignoring SIGPIPE for its sockets.
fn default_sigpipe() {
    // SAFETY: restores the default disposition of one signal.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Help(topic) => {
            match topic.as_deref().and_then(args::subcommand_usage) {
                Some(text) => print!("{text}"),
                None => print!("{}", args::USAGE),
            }
            Ok(())
        }
        Command::Version => {
            println!("rmqraft {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Node { configs } => {
            env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
                .init();
            node::run(&configs)
        }
        Command::FastTry {
            action,
            dir,
            ports,
            rocketmq_ports,
            groups,
        } => match action {
            FastTryAction::Start { clean } => {
                fast_try::start(&dir, ports, rocketmq_ports, groups, clean)
            }
            FastTryAction::Stop => fast_try::stop(&dir),
            FastTryAction::RestartMember(id) => fast_try::restart_member(&dir, &id),
        },
        Command::ClusterList {
            target,
            json,
            watch,
        } => {
            default_sigpipe();
            if watch {
                client::watch_leader(&target)
            } else {
                client::cluster_list(&target, json)
            }
        }
        Command::Append {
            target,
            count,
            size_bytes,
            data,
            file,
            timeout_ms,
        } => {
            default_sigpipe();
            let body = match (data, file) {
                (Some(text), _) => Some(text.into_bytes()),
                (None, Some(path)) => Some(read_body_file(&path)?),
                (None, None) => None,
            };
            client::append(&target, count, size_bytes, body.as_deref(), timeout_ms)
        }
        Command::Read {
            target,
            index,
            count,
            peer,
        } => {
            default_sigpipe();
            client::read(&target, index, count, peer.as_deref())
        }
        Command::TransferLeader {
            target,
            to,
            timeout_ms,
        } => {
            default_sigpipe();
            client::transfer_leader(&target, &to, timeout_ms)
        }
    }
}

/// The bytes of `append --file PATH` (`-`: standard input), as they are.
fn read_body_file(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let (bytes, name) = if path == std::path::Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin()
            .lock()
            .read_to_end(&mut bytes)
            .map_err(|e| format!("--file -: reading standard input: {e}"))?;
        (bytes, "standard input".to_string())
    } else {
        let bytes = std::fs::read(path).map_err(|e| format!("--file {}: {e}", path.display()))?;
        (bytes, path.display().to_string())
    };
    if bytes.is_empty() {
        return Err(format!("--file: {name} is empty, and an entry must not be"));
    }
    Ok(bytes)
}

fn main() -> ExitCode {
    install_panic_hook();
    if std::env::args_os().nth(1).is_some_and(|a| a == "namesrv") {
        return namesrv::main(std::env::args_os().skip(2).collect());
    }
    if std::env::args_os().nth(1).is_some_and(|a| a == "store") {
        return store::main(std::env::args_os().skip(2).collect());
    }
    if let Some(sub) = std::env::args()
        .nth(1)
        .filter(|a| mqadmin::COMMANDS.contains(&a.as_str()))
    {
        return mqadmin::main(&sub, std::env::args_os().skip(2).collect());
    }
    let command = match args::parse(std::env::args_os().skip(1)) {
        Ok(c) => c,
        Err(args::UsageError(message)) => {
            let sub = std::env::args()
                .nth(1)
                .filter(|s| args::subcommand_usage(s).is_some());
            let help = match sub {
                Some(sub) => format!("rmqraft {sub} --help"),
                None => "rmqraft --help".to_string(),
            };
            eprintln!("rmqraft: {message} (see `{help}`)");
            return ExitCode::from(2);
        }
    };
    match run(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("rmqraft: {message}");
            ExitCode::FAILURE
        }
    }
}
