//! Concurrent appenders that record every append in the history, an observer of the
//! members' roles and terms, and the end-of-run check: heal, converge, make progress, read
//! every committed entry of every member, run the history checker, and check that every
//! acknowledgement's term is the term its entry holds in the final log.

use super::remote::{CallError, Remote};
use super::{poll_until, wait_until};
use crate::history::{check, History, MemberLog, Outcome, Summary};
use rmqraft::{ErrorKind, GroupStatus, Role};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Bodies are this long; each names its client and sequence number, so none repeats.
pub const BODY_BYTES: usize = 64;
/// Hard bound on one appender thread, whatever the scenario asks.
const APPENDER_LIFETIME_MAX: Duration = Duration::from_secs(3600);

pub fn payload(tag: &str, client: usize, seq: u64) -> Vec<u8> {
    let mut v = format!("{tag}-c{client}-{seq:09}-").into_bytes();
    while v.len() < BODY_BYTES {
        v.push(b'a' + (v.len() % 26) as u8);
    }
    v
}

/// One acknowledgement as the client saw it, in wall-clock order.
#[derive(Debug, Clone)]
pub struct Ack {
    pub op: usize,
    pub index: u64,
    pub term: u64,
    pub by: usize,
    pub at: Instant,
}

/// Where a group is, as its members answer.
#[derive(Debug, Clone)]
pub struct Group {
    pub cluster: String,
    pub group: String,
    pub addrs: Vec<SocketAddr>,
}

impl Group {
    pub fn remote(&self) -> Remote {
        Remote::new(&self.cluster, &self.group, &self.addrs)
    }
}

/// Appender threads, each appending through whichever member leads.
pub struct Load {
    pub history: Arc<History>,
    pub acks: Arc<Mutex<Vec<Ack>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    pub fn start(group: &Group, tag: &str, clients: usize, history: &Arc<History>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..clients)
            .map(|c| {
                let remote = group.remote();
                let history = Arc::clone(history);
                let acks = Arc::clone(&acks);
                let stop = Arc::clone(&stop);
                let tag = tag.to_string();
                std::thread::Builder::new()
                    .name(format!("appender-{c}"))
                    .spawn(move || appender(remote, &tag, c, &history, &acks, &stop))
                    .expect("spawn appender")
            })
            .collect();
        Load {
            history: Arc::clone(history),
            acks,
            stop,
            threads,
        }
    }

    /// Stops the appenders (each finishes the call it is in, bounded by its timeout) and
    /// returns the acknowledgements in the order the clients received them.
    pub fn stop(mut self) -> Vec<Ack> {
        self.stop.store(true, Ordering::Release);
        for t in self.threads.drain(..) {
            t.join().expect("appender thread panicked");
        }
        let mut acks = self.acks.lock().unwrap_or_else(|p| p.into_inner()).clone();
        acks.sort_by_key(|a| a.at);
        acks
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

fn appender(
    mut remote: Remote,
    tag: &str,
    client: usize,
    history: &History,
    acks: &Mutex<Vec<Ack>>,
    stop: &AtomicBool,
) {
    let start = Instant::now();
    let hint = AtomicI32::new(-1);
    let mut seq = 0u64;
    while !stop.load(Ordering::Acquire) && start.elapsed() < APPENDER_LIFETIME_MAX {
        let target = match hint.load(Ordering::Relaxed) {
            p if p >= 0 => p as usize,
            _ => match remote.find_leader() {
                Some(p) => p,
                None => {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            },
        };
        let data = payload(tag, client, seq);
        seq += 1;
        let id = history.invoke(&data);
        match remote.append(target, &data) {
            Ok(meta) => {
                history.ack(id, &meta);
                let ack = Ack {
                    op: id,
                    index: meta.index,
                    term: meta.term,
                    by: target,
                    at: Instant::now(),
                };
                acks.lock().unwrap_or_else(|p| p.into_inner()).push(ack);
                hint.store(target as i32, Ordering::Relaxed);
            }
            Err(CallError::Refused {
                kind,
                message,
                leader_peer,
            }) => {
                let why = format!("{kind:?} from n{target}: {message}");
                if kind.is_some_and(crate::history::is_definite_failure) {
                    history.fail(id, &why);
                } else {
                    history.unknown(id, &why);
                }
                let next = if kind == Some(ErrorKind::NotLeader) && leader_peer as usize != target {
                    leader_peer
                } else {
                    -1
                };
                hint.store(next, Ordering::Relaxed);
                if next < 0 {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            Err(CallError::Unreachable(why)) => {
                history.unknown(id, &format!("n{target}: {why}"));
                hint.store(-1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// A change of one member's role or term, as polled.
#[derive(Debug, Clone)]
pub struct Sighting {
    pub at: Instant,
    pub peer: usize,
    pub role: Role,
    pub term: u64,
}

/// Polls every member's status and keeps each change of role or term.
pub struct Observer {
    pub sightings: Arc<Mutex<Vec<Sighting>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Observer {
    pub fn start(group: &Group) -> Observer {
        let sightings = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut remote = group.remote();
        let (s, st) = (Arc::clone(&sightings), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut last: Vec<Option<(Role, u64)>> = vec![None; remote.members()];
            while !st.load(Ordering::Acquire) && start.elapsed() < APPENDER_LIFETIME_MAX {
                for (peer, status) in remote.statuses().into_iter().enumerate() {
                    let Some(status) = status else { continue };
                    let now = Some((status.role, status.term));
                    if last[peer] != now {
                        last[peer] = now;
                        s.lock().unwrap_or_else(|p| p.into_inner()).push(Sighting {
                            at: Instant::now(),
                            peer,
                            role: status.role,
                            term: status.term,
                        });
                    }
                }
                std::thread::sleep(Duration::from_millis(25));
            }
        });
        Observer {
            sightings,
            stop,
            thread: Some(thread),
        }
    }

    pub fn sightings(&self) -> Vec<Sighting> {
        self.sightings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Terms in which some member was seen leading, with who and when first.
    pub fn leader_terms(&self) -> BTreeMap<u64, (usize, Instant)> {
        let mut terms = BTreeMap::new();
        for s in self.sightings() {
            if s.role == Role::Leader {
                terms.entry(s.term).or_insert((s.peer, s.at));
            }
        }
        terms
    }

    pub fn stop(mut self) -> Vec<Sighting> {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.join().expect("observer thread panicked");
        }
        self.sightings()
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Every member answers, one leads, all agree on it and its term, and every member's
/// commit and last index equal the leader's.
pub fn converged(remote: &mut Remote) -> Option<(usize, GroupStatus)> {
    let statuses: Vec<GroupStatus> = remote.statuses().into_iter().collect::<Option<_>>()?;
    let leaders: Vec<&GroupStatus> = statuses.iter().filter(|s| s.role == Role::Leader).collect();
    let [leader] = leaders[..] else { return None };
    statuses
        .iter()
        .all(|s| {
            s.term == leader.term
                && s.leader_peer == leader.self_peer
                && s.commit_index == leader.commit_index
                && s.last_index == leader.last_index
        })
        .then_some((leader.self_peer as usize, *leader))
}

/// Appends `data` through whichever member leads within `limit`, recording it.
pub fn append_within(
    remote: &mut Remote,
    history: &History,
    data: &[u8],
    limit: Duration,
) -> Option<(usize, rmqraft::EntryMeta)> {
    let start = Instant::now();
    for _attempt in 0..1000 {
        if start.elapsed() >= limit {
            return None;
        }
        let Some(leader) = remote.find_leader() else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        let id = history.invoke(data);
        match remote.append(leader, data) {
            Ok(meta) => {
                history.ack(id, &meta);
                return Some((leader, meta));
            }
            Err(e) => {
                // The same body again would be a duplicate if the first one landed.
                history.unknown(id, &e.to_string());
                return None;
            }
        }
    }
    None
}

/// What the end-of-run check found.
#[derive(Debug)]
pub struct Verdict {
    pub summary: Summary,
    pub leader: usize,
    pub term: u64,
    pub commit_index: u64,
    /// Acks whose term was below a term in which some member had already been seen
    /// leading, at the time the client received them (each verified in the final log).
    pub acks_after_newer_leader: usize,
    pub ack_terms: usize,
    pub leader_terms_seen: usize,
    /// Time from healing to a converged group with a new append committed.
    pub recovery: Duration,
}

/// Heals nothing itself: call once every fault is off. Waits (bounded) for the group to
/// converge, appends one more entry (it must commit within `progress_limit`), reads every
/// committed entry of every member and checks them against the history and the acks.
pub fn settle_and_check(
    group: &Group,
    history: &History,
    acks: &[Ack],
    leader_terms: &BTreeMap<u64, (usize, Instant)>,
    progress_limit: Duration,
) -> Verdict {
    let healed_at = Instant::now();
    let mut remote = group.remote();
    wait_until(
        "the group to converge after healing",
        Duration::from_secs(30),
        || converged(&mut remote),
    );
    let marker = payload("after-heal", 0, fastrand::u64(..));
    let (_, meta) = append_within(&mut remote, history, &marker, progress_limit)
        .unwrap_or_else(|| panic!("no append committed within {progress_limit:?} of healing"));
    let (leader, status) = wait_until(
        "every member to commit the append after healing",
        Duration::from_secs(30),
        || converged(&mut remote).filter(|(_, s)| s.commit_index >= meta.index),
    );
    let recovery = healed_at.elapsed();

    let mut logs = Vec::new();
    let mut terms: Vec<BTreeMap<u64, u64>> = Vec::new();
    for peer in 0..remote.members() {
        let mut entries = BTreeMap::new();
        let mut member_terms = BTreeMap::new();
        for index in 1..=status.commit_index {
            let read = poll_until(Duration::from_secs(10), || remote.read(peer, index).ok())
                .ok_or_else(|| format!("n{peer}: entry {index} did not read within 10 s"));
            if let Ok((_, meta)) = &read {
                member_terms.insert(index, meta.term);
            }
            entries.insert(index, read.map(|(body, _)| body));
        }
        logs.push(MemberLog {
            member: format!("n{peer}"),
            commit_index: status.commit_index,
            entries,
        });
        terms.push(member_terms);
    }
    let summary = check(history, &logs).unwrap_or_else(|v| panic!("history check failed: {v}"));

    // A deposed leader never acknowledges after losing its term: every ack's (index,
    // term) is in the final log of every member.
    for op in history.ops() {
        if let Outcome::Acked { index, term } = op.outcome {
            for (peer, member_terms) in terms.iter().enumerate() {
                let held = member_terms.get(&index).copied();
                assert_eq!(
                    held,
                    Some(term),
                    "op{} acked at index {index} in term {term}, but n{peer} holds term {held:?} there: \
                     an acknowledgement from a leader that had lost its term",
                    op.id
                );
            }
        }
    }
    let acks_after_newer_leader = acks
        .iter()
        .filter(|a| {
            leader_terms
                .range(a.term + 1..)
                .any(|(_, (_, first_seen))| *first_seen < a.at)
        })
        .count();
    let ack_terms = acks
        .iter()
        .map(|a| a.term)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    Verdict {
        summary,
        leader,
        term: status.term,
        commit_index: status.commit_index,
        acks_after_newer_leader,
        ack_terms,
        leader_terms_seen: leader_terms.len(),
        recovery,
    }
}
