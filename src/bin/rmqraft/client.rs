//! The client subcommands: cluster-list, append, read, transfer-leader.

use crate::args::TargetArgs;
use crate::output::{collect_rows, json_line, table, unreachable_notes};
use crate::remote::{Appender, Backoff, CallError, Remote, CALL_TIMEOUT};
use crate::target::{resolve, Target};
use rmqraft::net::Message;
use rmqraft::Role;
use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn first_target(args: &TargetArgs) -> Result<Target, String> {
    let mut targets = resolve(args)?;
    if targets.len() > 1 {
        return Err("this subcommand talks to one group; give one -c FILE".to_string());
    }
    Ok(targets.remove(0))
}

/// Prints the table (or JSON lines); fails when no member answered.
pub fn cluster_list(args: &TargetArgs, json: bool) -> Result<(), String> {
    let targets = resolve(args)?;
    let rows = collect_rows(&targets);
    let mut out = std::io::stdout().lock();
    if json {
        for row in &rows {
            let _ = writeln!(out, "{}", json_line(row));
        }
    } else {
        let _ = write!(out, "{}", table(&rows));
    }
    let _ = out.flush();
    if !json {
        for note in unreachable_notes(&rows) {
            eprintln!("{note}");
        }
    }
    if rows.iter().all(|r| r.report.is_err()) {
        let cluster = targets.first().map(|t| t.cluster.as_str()).unwrap_or("");
        return Err(format!(
            "no member answered: is the group running, with brokerClusterName '{cluster}' \
             (with -p, name another one with --cluster NAME)?"
        ));
    }
    Ok(())
}

/// How often `cluster-list --watch` asks every member.
const WATCH_INTERVAL: Duration = Duration::from_millis(100);

/// The leader of a group as `--watch` follows it: peer id, term, pid.
fn leader_of(rows: &[crate::output::MemberRow]) -> Option<(String, u64, u32)> {
    rows.iter().find_map(|r| match &r.report {
        Ok(rep) if rep.status.role == Role::Leader => {
            Some((r.peer.clone(), rep.status.term, rep.pid))
        }
        _ => None,
    })
}

/// Prints the table, then one line at every change of leader, until interrupted.
pub fn watch_leader(args: &TargetArgs) -> Result<(), String> {
    let target = first_target(args)?;
    let targets = std::slice::from_ref(&target);
    let started = Instant::now();
    let rows = collect_rows(targets);
    let mut out = std::io::stdout();
    let _ = write!(out, "{}", table(&rows));
    let _ = writeln!(
        out,
        "watching {} every {} ms; Ctrl-C to stop",
        target.group,
        WATCH_INTERVAL.as_millis()
    );
    let mut shown: Option<Option<(String, u64, u32)>> = None;
    let mut leaderless_since: Option<Instant> = None;
    loop {
        let rows = collect_rows(targets);
        let leader = leader_of(&rows);
        if shown.as_ref() != Some(&leader) {
            let at = started.elapsed().as_secs_f64();
            let line = match &leader {
                Some((peer, term, pid)) => {
                    let gap = leaderless_since
                        .take()
                        .map(|t| format!(" after {} ms without a leader", t.elapsed().as_millis()))
                        .unwrap_or_default();
                    format!("+{at:.3}s  leader {peer} (term {term}, pid {pid}){gap}")
                }
                None => {
                    leaderless_since.get_or_insert_with(Instant::now);
                    let roles: Vec<String> = rows
                        .iter()
                        .map(|r| format!("{} {}", r.peer, r.role()))
                        .collect();
                    format!("+{at:.3}s  no leader: {}", roles.join(", "))
                }
            };
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
            shown = Some(leader);
        }
        std::thread::sleep(WATCH_INTERVAL);
    }
}

/// The body of entry `i` (from 0) of an append run.
fn body(i: u64, size_bytes: Option<usize>, data: Option<&[u8]>, run_id: u128) -> Vec<u8> {
    if let Some(d) = data {
        return d.to_vec();
    }
    let text = format!("rmqraft entry {i} of run {run_id}");
    match size_bytes {
        None => text.into_bytes(),
        Some(size) => {
            let mut b = text.into_bytes();
            b.resize(size, b'.');
            b
        }
    }
}

/// Tells on stderr what a command waits for while no leader is known: on a terminal one
/// line rewritten at most once a second, elsewhere (a log, a pipe) one line at the start.
/// Returns whether it wrote a line still open on a terminal (to end it before more output).
fn waiting_notice(remote: &mut Remote) -> std::rc::Rc<std::cell::Cell<bool>> {
    let addrs: Vec<String> = remote
        .target
        .peers
        .iter()
        .map(|p| p.addr.to_string())
        .collect();
    let what = format!(
        "waiting for a leader of {} at {}",
        remote.target.group,
        addrs.join(",")
    );
    let terminal = stderr_is_terminal();
    let open_line = std::rc::Rc::new(std::cell::Cell::new(false));
    let line_open = std::rc::Rc::clone(&open_line);
    let mut last: Option<Instant> = None;
    remote.on_wait = Some(Box::new(move |why: &str| {
        if terminal {
            if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
                return;
            }
            let waited = last.map(|_| " (still)").unwrap_or("");
            eprint!("\r\x1b[K{what}{waited}: {why}");
            line_open.set(true);
        } else if last.is_none() {
            eprintln!("{what}: {why}");
        } else {
            return;
        }
        last = Some(Instant::now());
    }));
    open_line
}

/// Ends the notice's line on a terminal, if one is open.
fn end_notice(open_line: &std::cell::Cell<bool>) {
    if open_line.replace(false) {
        eprintln!();
    }
}

fn stderr_is_terminal() -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(libc::STDERR_FILENO) == 1 }
}

/// Above this many entries, append prints a summary instead of one line per entry.
const APPEND_LINES_MAX: u64 = 100;

pub fn append(
    args: &TargetArgs,
    count: u64,
    size_bytes: Option<usize>,
    data: Option<&[u8]>,
    timeout_ms: u64,
) -> Result<(), String> {
    let target = first_target(args)?;
    let group = target.group.clone();
    let mut remote = Remote::new(target);
    let notice = waiting_notice(&mut remote);
    let mut appender = Appender::new(remote);
    let retry_window = Duration::from_millis(timeout_ms);
    let run_id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    // Retries are exactly-once: one random producer id per run, entry i is sequence i.
    let producer_id = fastrand::u64(1..);
    let each = count <= APPEND_LINES_MAX;
    let progress = !each && stderr_is_terminal();
    let started = Instant::now();
    let mut last_progress = started;
    let mut first = None;
    let mut last = None;
    let mut out = std::io::stdout().lock();
    for i in 0..count {
        let meta = appender
            .append_idempotent(
                producer_id,
                i,
                &body(i, size_bytes, data, run_id),
                retry_window,
            )
            .map_err(|e| {
                end_notice(&notice);
                if progress {
                    eprintln!();
                }
                format!("append {} of {count} to {group}: {e}", i + 1)
            })?;
        end_notice(&notice);
        first.get_or_insert(meta);
        last = Some(meta);
        if each {
            let _ = writeln!(
                out,
                "appended index={} term={} pos={}",
                meta.index, meta.term, meta.pos
            );
        } else if progress && last_progress.elapsed() >= Duration::from_millis(100) {
            last_progress = Instant::now();
            let rate = (i + 1) as f64 / started.elapsed().as_secs_f64().max(1e-9);
            eprint!(
                "\rappended {}/{count} ({}%), {rate:.0}/s, index {}   ",
                i + 1,
                (i + 1) * 100 / count,
                meta.index
            );
        }
    }
    if progress {
        eprint!("\r{:70}\r", "");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let stats = appender.stats;
    if let (Some(first), Some(last), false) = (first, last, each) {
        let _ = writeln!(
            out,
            "appended {count} entries to {group}: index {}..{}, term {}..{}, {:.2} s, \
             {:.0} appends/s",
            first.index,
            last.index,
            first.term,
            last.term,
            elapsed,
            count as f64 / elapsed.max(1e-9)
        );
    }
    if stats.redirects > 0 || stats.retries > 0 {
        let _ = writeln!(
            out,
            "followed {} NOT_LEADER redirect(s), retried {} time(s)",
            stats.redirects, stats.retries
        );
    }
    Ok(())
}

/// The entry body as text when it is printable UTF-8, else as hex.
fn show_body(data: &[u8]) -> String {
    match std::str::from_utf8(data) {
        Ok("") => "(empty)".to_string(),
        Ok(text)
            if !text
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t') =>
        {
            format!("text: {text}")
        }
        _ => {
            let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
            format!("hex: {hex}")
        }
    }
}

pub fn read(args: &TargetArgs, index: u64, count: u64, peer: Option<&str>) -> Result<(), String> {
    let target = first_target(args)?;
    let peer_index = match peer {
        Some(id) => Some(target.peer_index(id)?),
        None => None,
    };
    let mut remote = Remote::new(target);
    let notice = waiting_notice(&mut remote);
    let member = match peer_index {
        Some(p) => p,
        None => {
            let found = remote.find_leader(Instant::now() + Duration::from_secs(10));
            end_notice(&notice);
            found?
        }
    };
    // Entries past the member's commit index are not there to read: stop at it.
    let commit = remote
        .status(member)
        .map_err(|e| format!("{}: {e}", remote.peer_name(member)))?
        .status
        .commit_index;
    let asked_end = index.saturating_add(count);
    if index > commit {
        return Err(format!(
            "index {index} is not committed on {}: its commit index is {commit}",
            remote.peer_name(member)
        ));
    }
    let end = asked_end.min(commit + 1);
    let mut out = std::io::stdout().lock();
    let mut failed = 0u64;
    for i in index..end {
        match remote.call(member, Message::ClientRead { index: i }, CALL_TIMEOUT) {
            Ok(r) => {
                let _ = writeln!(
                    out,
                    "index={} term={} pos={} size={} {}",
                    r.meta.index,
                    r.meta.term,
                    r.meta.pos,
                    r.data.len(),
                    show_body(&r.data)
                );
            }
            Err(e) => {
                let why = format!("index {i} on {}: {}", remote.peer_name(member), e);
                if count == 1 {
                    return Err(why);
                }
                failed += 1;
                let _ = out.flush();
                eprintln!("{why}");
                if matches!(e, CallError::Unreachable(_)) {
                    break;
                }
            }
        }
    }
    let _ = out.flush();
    if end < asked_end {
        eprintln!(
            "stopped at the commit index {commit}; {} further entries are not committed",
            grouped(asked_end - end)
        );
    }
    if failed > 0 {
        return Err(format!("{failed} of {} read(s) failed", end - index));
    }
    Ok(())
}

/// 99996 -> "99,996".
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn transfer_leader(args: &TargetArgs, to: &str, timeout_ms: u64) -> Result<(), String> {
    let target = first_target(args)?;
    let to_index = target.peer_index(to)?;
    let group = target.group.clone();
    let mut remote = Remote::new(target);
    let started = Instant::now();
    let deadline = started + Duration::from_millis(timeout_ms);
    let mut leader = remote.find_leader(deadline)?;
    let from_id = remote.target.peers[leader].id.clone();
    if leader == to_index {
        println!("{to} already leads {group}");
        return Ok(());
    }
    let mut backoff = Backoff::new();
    // A hand-over can race with an election; follow the leader a few times at most.
    for _ in 0..5 {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = Message::ClientTransfer {
            to_peer: to.to_string(),
            timeout_ms: left.as_millis().min(u128::from(u32::MAX)) as u32,
        };
        match remote.call(leader, message, left + CALL_TIMEOUT) {
            Ok(_) => {
                let term = remote
                    .status(to_index)
                    .ok()
                    .filter(|r| r.status.role == Role::Leader)
                    .map(|r| format!(" (term {})", r.status.term))
                    .unwrap_or_default();
                println!(
                    "leadership of {group} moved from {from_id} to {to}{term} in {} ms",
                    started.elapsed().as_millis()
                );
                return Ok(());
            }
            Err(CallError::Refused {
                kind: Some(rmqraft::ErrorKind::NotLeader),
                leader_peer,
                message,
            }) => {
                if leader_peer == to_index as i32 {
                    println!("{to} already leads {group}");
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    return Err(message);
                }
                backoff.sleep_until(deadline);
                leader = remote.find_leader(deadline)?;
                if leader == to_index {
                    println!("{to} already leads {group}");
                    return Ok(());
                }
            }
            Err(e) => {
                return Err(format!(
                    "transfer to {to} via {}: {}",
                    remote.peer_name(leader),
                    e
                ))
            }
        }
    }
    Err(format!(
        "leadership of {group} kept moving; {to} does not lead"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        assert_eq!(body(3, None, Some(b"hi"), 1), b"hi");
        assert_eq!(body(3, None, Some(&[0, 255, 10]), 1), [0, 255, 10]);
        assert_eq!(body(3, Some(40), None, 1).len(), 40);
        assert_eq!(body(3, Some(2), None, 1).len(), 2);
        assert_eq!(show_body(b"hello"), "text: hello");
        assert_eq!(show_body(&[0, 255]), "hex: 00ff");
        assert_eq!(show_body(b""), "(empty)");
    }

    #[test]
    fn thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(10030), "10,030");
        assert_eq!(grouped(99996), "99,996");
        assert_eq!(grouped(1234567), "1,234,567");
    }
}
