//! Seeded deterministic simulation of several Raft groups driven through `RaftCore`.
//!
//! Each member has an in-memory log that tells synced from unsynced entries; the network
//! drops, delays, reorders and duplicates messages and can be partitioned; members crash
//! (losing unsynced writes on a power loss) and restart from their persisted hard state.
//! Time is virtual. Invariants are checked after every event; a failure names the seed:
//! - at most one leader per term;
//! - log matching: an (index, term) ever appended anywhere has one prefix;
//! - a leader commits only entries a quorum holds (durably under SYNC_FLUSH);
//! - committed entries never change, and a leader of term T holds all committed before T;
//! - a member's commit index never goes down in one life and never passes its last entry;
//! - no member truncates at or below its commit index;
//! - nothing is acted on before its term and vote are persisted;
//! - after the faults stop, a new entry commits on every member within a bound;
//! - exactly-once appends: a client resends one (producer, sequence) until it sees it
//!   committed, across leader changes; each leader checks it against the producer table
//!   of its own log (`core::producers`, as the members do), and no (producer, sequence)
//!   is ever twice in a member's committed log.
//!
//! A power loss under ASYNC_FLUSH may lose acknowledged entries by design; in a group that
//! had one, only the checks that do not depend on durability stay on (one leader per term,
//! commit monotonic, no truncation below commit, hard state persisted first) and liveness
//! asks only that a leader commits. Process crashes keep the page cache and are checked in full.
//!
//! Replay one seed: `RMQRAFT_SIM_SEED=1234 cargo test --release --test sim`.
//! Run more seeds: `RMQRAFT_SIM_SEEDS=5000 cargo test --release --test sim`
//! (`RMQRAFT_SIM_FIRST_SEED` moves the start of the range).

use bytes::Bytes;
use rmqraft::core::producers::{self, Check, ProducerTable};
use rmqraft::core::Outgoing;
use rmqraft::core::{CoreConfig, Effects, LogView, PushPlan, RaftCore};
use rmqraft::net::msg::{PushRequest, PushResponse, VoteRequest, VoteResponse};
use rmqraft::{Entry, EntryKind, EntryMeta, Role};
use std::collections::HashMap;

/// Virtual milliseconds of faults per seed.
const FAULT_PHASE_MS: u64 = 10_000;
/// After faults stop, every member must hold a new committed entry within this long.
const LIVENESS_BOUND_MS: u64 = 12_000;
/// Member ticks happen this often (the group threads tick every ~10 ms).
const TICK_MS: u64 = 10;
/// Entries read per push at most (the caller may send fewer than planned).
const ENTRIES_PER_STEP_MAX: usize = 64;

fn mix(mut h: u64, v: u64) -> u64 {
    h ^= v
        .wrapping_add(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(h << 6)
        .wrapping_add(h >> 2);
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

fn body_hash(body: &[u8]) -> u64 {
    body.iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| mix(h, u64::from(*b)))
}

/// One member's disk and page cache: entries past `synced` vanish on a power loss.
#[derive(Clone, Default)]
struct MemLog {
    entries: Vec<Entry>,
    /// Chain hash up to and including each entry: equal hashes mean equal prefixes.
    hashes: Vec<u64>,
    /// Invariant: `synced <= entries.len()`.
    synced: u64,
}

impl LogView for MemLog {
    fn last_index(&self) -> u64 {
        self.entries.len() as u64
    }
    fn term_at(&self, index: u64) -> Option<u64> {
        if index == 0 {
            return Some(0);
        }
        self.entries.get(index as usize - 1).map(|e| e.term)
    }
}

impl MemLog {
    fn hash_at(&self, index: u64) -> Option<u64> {
        if index == 0 {
            return Some(0);
        }
        self.hashes.get(index as usize - 1).copied()
    }
    fn append(&mut self, entry: Entry) {
        assert_eq!(entry.index, self.last_index() + 1, "append out of order");
        let prev = self.hash_at(entry.index - 1).unwrap();
        let h = mix(
            mix(mix(prev, entry.index), entry.term),
            body_hash(&entry.body),
        );
        self.entries.push(entry);
        self.hashes.push(h);
    }
    fn truncate_from(&mut self, index: u64) {
        assert!(index >= 1);
        self.entries.truncate(index as usize - 1);
        self.hashes.truncate(index as usize - 1);
        self.synced = self.synced.min(self.last_index());
    }
    fn flush(&mut self) {
        self.synced = self.last_index();
    }
    fn power_loss(&mut self) {
        let synced = self.synced;
        self.entries.truncate(synced as usize);
        self.hashes.truncate(synced as usize);
    }
}

#[derive(Clone, Debug)]
enum Msg {
    Vote(VoteRequest),
    VoteResp(VoteResponse),
    Push(u64, PushRequest),
    PushResp(u64, PushResponse),
    TimeoutNow(u64),
}

struct InFlight {
    deliver_ms: u64,
    from: usize,
    to: usize,
    msg: Msg,
}

/// A push the dispatcher of `peer` planned and read; it is sent at `send_ms`.
struct PendingPush {
    plan: PushPlan,
    entries: Vec<Entry>,
    sent_to: u64,
    send_ms: u64,
}

struct Member {
    /// None while down.
    core: Option<RaftCore>,
    log: MemLog,
    /// What survives a crash: persisted before any message that depends on it is sent.
    hard_term: u64,
    hard_vote: Option<usize>,
    /// Highest commit index seen in this life (must never go down).
    life_commit: u64,
    next_tick_ms: u64,
    restart_ms: u64,
    /// The last term in which Leader Completeness was checked for this member as leader.
    leader_checked_term: u64,
    /// Per follower position: the dispatcher's push between plan and send.
    pending: Vec<Option<PendingPush>>,
    lives: u64,
}

struct NetConfig {
    drop_per_mille: u64,
    dup_per_mille: u64,
    delay_ms_max: u64,
}

struct Group {
    id: usize,
    seed: u64,
    cfg: CoreConfig,
    members: Vec<Member>,
    net: Vec<InFlight>,
    /// connected[a][b]: messages from a reach b.
    connected: Vec<Vec<bool>>,
    /// The leader of each term seen.
    leaders: HashMap<u64, usize>,
    /// Chain hash of every (index, term) ever appended anywhere in the group.
    entry_hashes: HashMap<(u64, u64), u64>,
    /// Each committed index from 1: its chain hash and the term of the member that first
    /// saw it committed (at least the term it was committed in).
    committed: Vec<(u64, u64)>,
    /// A power loss under ASYNC_FLUSH may lose acked entries by design; from then on the
    /// durability checks (not the others) are off for this group.
    lossy: bool,
    next_client_value: u64,
    /// The sequence the idempotent client sends (again) until it sees it committed.
    idem_seq: u64,
}

/// The producer id of the simulated idempotent client.
const SIM_PRODUCER: u64 = 0x51;

/// What a run exercised, to see that the faults and the protocol paths are reached.
#[derive(Default, Debug, Clone, Copy)]
struct Stats {
    events: u64,
    terms_with_leader: u64,
    committed_entries: u64,
    crashes: u64,
    power_losses: u64,
    truncations: u64,
    partitions: u64,
    transfers: u64,
    /// Sequences the idempotent client saw committed.
    idempotent_acked: u64,
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, o: Stats) {
        self.events += o.events;
        self.terms_with_leader += o.terms_with_leader;
        self.committed_entries += o.committed_entries;
        self.crashes += o.crashes;
        self.power_losses += o.power_losses;
        self.truncations += o.truncations;
        self.idempotent_acked += o.idempotent_acked;
        self.partitions += o.partitions;
        self.transfers += o.transfers;
    }
}

struct Sim {
    seed: u64,
    stats: Stats,
    rng: fastrand::Rng,
    now_ms: u64,
    groups: Vec<Group>,
    net: NetConfig,
    faults: bool,
    /// Faults per step scale with this (1 to 4, per seed).
    fault_intensity: u32,
}

macro_rules! check {
    ($sim:expr, $cond:expr, $($fmt:tt)*) => {
        if !$cond {
            panic!(
                "seed {} at {} ms: invariant broken: {}\nreplay: RMQRAFT_SIM_SEED={} cargo test --release --test sim",
                $sim.seed, $sim.now_ms, format!($($fmt)*), $sim.seed
            );
        }
    };
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = fastrand::Rng::with_seed(seed);
        let group_count = rng.usize(2..=3);
        let mut groups = Vec::new();
        for id in 0..group_count {
            let members = if rng.bool() { 3 } else { 5 };
            let heartbeat = rng.u64(15..=40);
            let election = heartbeat * rng.u64(3..=6);
            let preferred = if rng.u8(0..4) == 0 {
                vec![rng.usize(0..members)]
            } else {
                Vec::new()
            };
            let cfg = CoreConfig {
                members,
                self_index: 0,
                election_timeout_ms: election,
                heartbeat_interval_ms: heartbeat,
                push_timeout_ms: rng.u64(election / 2..=election * 2),
                push_window_max: rng.usize(1..=8),
                push_entries_max: rng.u64(1..=16),
                sync_flush: rng.bool(),
                preferred_leaders: preferred,
                entry_size_bytes_max: u64::MAX,
            };
            let mut group = Group {
                id,
                seed,
                cfg,
                members: Vec::new(),
                net: Vec::new(),
                connected: vec![vec![true; members]; members],
                leaders: HashMap::new(),
                entry_hashes: HashMap::new(),
                committed: Vec::new(),
                lossy: false,
                next_client_value: 0,
                idem_seq: 0,
            };
            for m in 0..members {
                group.members.push(Member {
                    core: None,
                    log: MemLog::default(),
                    hard_term: 0,
                    hard_vote: None,
                    life_commit: 0,
                    next_tick_ms: rng.u64(0..TICK_MS),
                    restart_ms: 0,
                    leader_checked_term: 0,
                    pending: (0..members).map(|_| None).collect(),
                    lives: 0,
                });
                let core = group.new_core(m, 0, seed);
                group.members[m].core = Some(core);
            }
            groups.push(group);
        }
        let fault_intensity = rng.u32(1..=4);
        let net = NetConfig {
            drop_per_mille: rng.u64(0..=150),
            dup_per_mille: rng.u64(0..=100),
            delay_ms_max: rng.u64(1..=30),
        };
        Sim {
            seed,
            stats: Stats::default(),
            rng,
            now_ms: 0,
            groups,
            net,
            faults: true,
            fault_intensity,
        }
    }

    fn run(&mut self) {
        while self.now_ms < FAULT_PHASE_MS {
            self.step();
        }
        self.heal();
        let deadline = self.now_ms + LIVENESS_BOUND_MS;
        // Per group: the client entry (index, hash) proposed after healing.
        let mut proposed: Vec<Option<(u64, u64)>> = vec![None; self.groups.len()];
        let mut done = vec![false; self.groups.len()];
        while done.iter().any(|d| !d) {
            self.step();
            for g in 0..self.groups.len() {
                if !done[g] {
                    done[g] = self.liveness_done(g, &mut proposed[g]);
                }
            }
            if self.now_ms >= deadline {
                let g = done.iter().position(|d| !d).unwrap();
                let state = self.groups[g].describe();
                check!(
                    self,
                    false,
                    "liveness: group {g} has no new entry committed on every member {LIVENESS_BOUND_MS} ms after healing (proposed {:?}; {state})",
                    proposed[g]
                );
            }
        }
        for group in &self.groups {
            group.check_exactly_once(self.now_ms);
        }
    }

    /// After healing: has a new entry committed? Without losses every member must hold it
    /// committed; after an ASYNC_FLUSH power loss (logs may have diverged by design) a
    /// leader committing it is enough.
    fn liveness_done(&mut self, g: usize, proposed: &mut Option<(u64, u64)>) -> bool {
        let now = self.now_ms;
        let group = &mut self.groups[g];
        let leader = group
            .members
            .iter()
            .position(|m| m.core.as_ref().is_some_and(|c| c.is_leader()));
        if let Some((index, hash)) = *proposed {
            let committed_on = |m: &Member| {
                m.core.as_ref().is_some_and(|c| c.commit_index >= index)
                    && m.log.hash_at(index) == Some(hash)
            };
            let done = if group.lossy {
                leader.is_some_and(|l| committed_on(&group.members[l]))
            } else {
                group.members.iter().all(committed_on)
            };
            if done {
                return true;
            }
            // Lost with a leader change before it committed: propose again.
            let leader_holds =
                leader.is_some_and(|l| group.members[l].log.hash_at(index) == Some(hash));
            if leader_holds || leader.is_none() {
                return false;
            }
        }
        *proposed = leader
            .filter(|&l| group.members[l].core.as_ref().unwrap().accepts_appends())
            .map(|l| {
                let index = group.client_append(l, now);
                (index, group.members[l].log.hash_at(index).unwrap())
            });
        false
    }

    fn heal(&mut self) {
        self.faults = false;
        self.net = NetConfig {
            drop_per_mille: 0,
            dup_per_mille: 0,
            delay_ms_max: 5,
        };
        for g in 0..self.groups.len() {
            let group = &mut self.groups[g];
            for row in group.connected.iter_mut() {
                row.iter_mut().for_each(|c| *c = true);
            }
            for m in 0..group.members.len() {
                if group.members[m].core.is_none() {
                    let seed = self.seed;
                    group.restart(m, self.now_ms, seed);
                }
            }
        }
    }

    fn step(&mut self) {
        self.now_ms += self.rng.u64(1..=4);
        let now = self.now_ms;
        for g in 0..self.groups.len() {
            if self.faults {
                self.inject_faults(g);
            }
            self.tick_members(g);
            self.run_dispatchers(g);
            self.deliver(g);
            // Background flushes (the flusher thread; ASYNC_FLUSH's interval).
            for m in 0..self.groups[g].members.len() {
                if self.groups[g].members[m].core.is_some() && self.rng.u8(0..8) == 0 {
                    let group = &mut self.groups[g];
                    group.members[m].log.flush();
                    group.local_progress(m);
                    self.check_member(g, m);
                }
            }
            if self.faults && self.rng.u8(0..10) == 0 {
                let group = &mut self.groups[g];
                if let Some(l) = group
                    .members
                    .iter()
                    .position(|m| m.core.as_ref().is_some_and(|c| c.accepts_appends()))
                {
                    if self.rng.bool() {
                        group.client_append(l, now);
                    } else {
                        group.client_append_idempotent(l, now);
                    }
                    self.check_member(g, l);
                }
            }
        }
    }

    fn inject_faults(&mut self, g: usize) {
        let now = self.now_ms;
        let seed = self.seed;
        let n = self.groups[g].members.len();
        let roll = self.rng.u32(0..10_000 / self.fault_intensity);
        let group = &mut self.groups[g];
        match roll {
            // Crash one member.
            0..=14 => {
                let m = self.rng.usize(0..n);
                if group.members[m].core.is_some() {
                    let power_loss = self.rng.bool();
                    if power_loss && !group.cfg.sync_flush {
                        group.lossy = true;
                    }
                    group.crash(m, power_loss);
                    self.stats.crashes += 1;
                    self.stats.power_losses += u64::from(power_loss);
                    group.members[m].restart_ms = now + self.rng.u64(20..=800);
                }
            }
            // Isolate one member.
            15..=22 => {
                self.stats.partitions += 1;
                let m = self.rng.usize(0..n);
                for other in 0..n {
                    if other != m {
                        group.connected[m][other] = false;
                        group.connected[other][m] = false;
                    }
                }
            }
            // Random split (sometimes one-way).
            23..=30 => {
                self.stats.partitions += 1;
                let side: Vec<bool> = (0..n).map(|_| self.rng.bool()).collect();
                let one_way = self.rng.u8(0..4) == 0;
                for a in 0..n {
                    for b in 0..n {
                        let cut = side[a] != side[b] && (!one_way || side[a]);
                        group.connected[a][b] = !cut;
                    }
                }
            }
            // Heal the network.
            31..=45 => {
                for row in group.connected.iter_mut() {
                    row.iter_mut().for_each(|c| *c = true);
                }
            }
            // Change the network's quality.
            46..=50 => {
                self.net.drop_per_mille = self.rng.u64(0..=300);
                self.net.dup_per_mille = self.rng.u64(0..=150);
                self.net.delay_ms_max = self.rng.u64(1..=60);
            }
            // An operator asks for a leadership transfer.
            51..=55 => {
                let target = self.rng.usize(0..n);
                if let Some(l) = group
                    .members
                    .iter()
                    .position(|m| m.core.as_ref().is_some_and(|c| c.is_leader()))
                {
                    let member = &mut group.members[l];
                    let core = member.core.as_mut().unwrap();
                    let mut fx = Effects::default();
                    core.transfer_leadership(target, now, &member.log, &mut fx);
                    self.stats.transfers += 1;
                    let out = group.carry_out(l, fx, now);
                    self.send_all(g, l, out);
                    self.check_member(g, l);
                }
            }
            _ => {}
        }
        for m in 0..n {
            let group = &mut self.groups[g];
            if group.members[m].core.is_none() && now >= group.members[m].restart_ms {
                group.restart(m, now, seed);
                self.check_member(g, m);
            }
        }
    }

    fn tick_members(&mut self, g: usize) {
        let now = self.now_ms;
        for m in 0..self.groups[g].members.len() {
            let group = &mut self.groups[g];
            let member = &mut group.members[m];
            let Some(core) = member.core.as_mut() else {
                continue;
            };
            if now < member.next_tick_ms {
                continue;
            }
            member.next_tick_ms = now + TICK_MS;
            let fx = core.tick(now, &member.log);
            let out = group.carry_out(m, fx, now);
            self.send_all(g, m, out);
            self.check_member(g, m);
        }
    }

    fn run_dispatchers(&mut self, g: usize) {
        let now = self.now_ms;
        let n = self.groups[g].members.len();
        for m in 0..n {
            for peer in 0..n {
                if peer == m || self.groups[g].members[m].core.is_none() {
                    continue;
                }
                // Bounded: the window limits what next_push hands out.
                for _ in 0..32 {
                    let group = &mut self.groups[g];
                    let member = &mut group.members[m];
                    if let Some(p) = &member.pending[peer] {
                        if now < p.send_ms {
                            break;
                        }
                        let p = member.pending[peer].take().unwrap();
                        let core = member.core.as_mut().unwrap();
                        core.push_sent(peer, &p.plan, p.sent_to, now);
                        let req = PushRequest {
                            term: p.plan.term,
                            prev_index: p.plan.prev_index,
                            prev_term: p.plan.prev_term,
                            commit_index: p.plan.commit_index,
                            entries: p.entries,
                        };
                        self.send(g, m, peer, Msg::Push(p.plan.request_id, req));
                        continue;
                    }
                    let core = member.core.as_mut().unwrap();
                    let Some(plan) = core.next_push(peer, now, &member.log) else {
                        break;
                    };
                    check!(
                        self,
                        plan.prev_index + 1 == plan.from_index
                            && plan.from_index <= plan.to_index + 1,
                        "group {} member {m}: malformed plan {plan:?}",
                        g
                    );
                    // The dispatcher may send fewer entries than planned.
                    let mut to = plan.to_index;
                    if to >= plan.from_index && self.rng.u8(0..4) == 0 {
                        to = self.rng.u64(plan.from_index - 1..=to);
                    }
                    to = to.min(plan.from_index + ENTRIES_PER_STEP_MAX as u64 - 1);
                    let entries: Vec<Entry> = (plan.from_index..=to)
                        .map(|i| member.log.entries[i as usize - 1].clone())
                        .collect();
                    // Sometimes the dispatcher is slow between reading and sending, and
                    // other events reach the core meanwhile.
                    let send_ms = if self.rng.u8(0..6) == 0 {
                        now + self.rng.u64(1..=20)
                    } else {
                        now
                    };
                    member.pending[peer] = Some(PendingPush {
                        plan,
                        entries,
                        sent_to: to,
                        send_ms,
                    });
                }
            }
        }
    }

    fn send_all(&mut self, g: usize, from: usize, out: Vec<(usize, Outgoing)>) {
        for (to, o) in out {
            let msg = match o {
                Outgoing::Vote(v) => Msg::Vote(v),
                Outgoing::VoteResp(v) => Msg::VoteResp(v),
                Outgoing::TimeoutNow { term } => Msg::TimeoutNow(term),
            };
            self.send(g, from, to, msg);
        }
    }

    fn send(&mut self, g: usize, from: usize, to: usize, msg: Msg) {
        if self.rng.u64(0..1000) < self.net.drop_per_mille {
            return;
        }
        let copies = if self.rng.u64(0..1000) < self.net.dup_per_mille {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let deliver_ms = self.now_ms + self.rng.u64(0..=self.net.delay_ms_max);
            self.groups[g].net.push(InFlight {
                deliver_ms,
                from,
                to,
                msg: msg.clone(),
            });
        }
    }

    fn deliver(&mut self, g: usize) {
        let now = self.now_ms;
        let net = std::mem::take(&mut self.groups[g].net);
        let (mut due, rest): (Vec<InFlight>, Vec<InFlight>) =
            net.into_iter().partition(|f| f.deliver_ms <= now);
        self.groups[g].net = rest;
        self.rng.shuffle(&mut due);
        for f in due {
            if !self.groups[g].connected[f.from][f.to] {
                continue;
            }
            self.receive(g, f.from, f.to, f.msg);
        }
    }

    fn receive(&mut self, g: usize, from: usize, to: usize, msg: Msg) {
        if trace_on() {
            eprintln!("{} g{g} {from}->{to}: {msg:?}", self.now_ms);
        }
        let now = self.now_ms;
        let sync_flush = self.groups[g].cfg.sync_flush;
        let flush_before_answer = self.rng.u8(0..10) < if sync_flush { 8 } else { 2 };
        let group = &mut self.groups[g];
        let member = &mut group.members[to];
        let Some(core) = member.core.as_mut() else {
            return;
        };
        match msg {
            Msg::Vote(req) => {
                let (fx, resp, _) = core.on_vote_request(from, &req, now, &member.log);
                let mut out = group.carry_out(to, fx, now);
                out.push((from, Outgoing::VoteResp(resp)));
                self.send_all(g, to, out);
            }
            Msg::VoteResp(resp) => {
                let fx = core.on_vote_response(from, &resp, now, &member.log);
                let out = group.carry_out(to, fx, now);
                self.send_all(g, to, out);
            }
            Msg::TimeoutNow(term) => {
                let fx = core.on_timeout_now(from, term, now, &member.log);
                let out = group.carry_out(to, fx, now);
                self.send_all(g, to, out);
            }
            Msg::PushResp(request_id, resp) => {
                let fx = core.on_push_response(from, request_id, &resp, now, &member.log);
                let out = group.carry_out(to, fx, now);
                self.send_all(g, to, out);
            }
            Msg::Push(request_id, req) => {
                let commit_before = core.commit_index;
                let (fx, outcome) = core.on_push(from, &req, now, &member.log);
                if let Some(t) = outcome.truncate_from {
                    check!(
                        self,
                        t > commit_before,
                        "group {g} member {to}: truncates from {t} at or below its commit index {commit_before}"
                    );
                    self.stats.truncations += 1;
                    let group = &mut self.groups[g];
                    group.members[to].log.truncate_from(t);
                }
                if let Some(a) = outcome.append_from {
                    for e in &req.entries[a..] {
                        self.groups[g].append(to, e.clone(), now);
                    }
                }
                let group = &mut self.groups[g];
                if flush_before_answer {
                    group.members[to].log.flush();
                }
                let mut out = group.carry_out(to, fx, now);
                if let Some(mut resp) = outcome.response {
                    let log = &group.members[to].log;
                    resp.flushed_index = log.synced;
                    resp.last_index = log.last_index();
                    self.send(g, to, from, Msg::PushResp(request_id, resp));
                }
                self.send_all(g, to, std::mem::take(&mut out));
            }
        }
        self.check_member(g, to);
    }

    /// Invariants that hold after every event on member `m`.
    fn check_member(&mut self, g: usize, m: usize) {
        self.stats.events += 1;
        let group = &mut self.groups[g];
        let sync_flush = group.cfg.sync_flush;
        let lossy = group.lossy;
        let majority = group.members.len() / 2 + 1;
        let member = &group.members[m];
        let Some(core) = member.core.as_ref() else {
            return;
        };
        let (term, role, commit) = (core.term, core.role, core.commit_index);
        let last = member.log.last_index();
        let life_commit = member.life_commit;
        if trace_on() {
            eprintln!(
                "{} g{g} m{m}: {role:?} t{term} vote {:?} commit {commit} last {last} synced {} lastterm {}",
                self.now_ms,
                core.voted_for,
                member.log.synced,
                member.log.last_term()
            );
        }
        check!(
            self,
            commit >= life_commit,
            "group {g} member {m}: commit index went from {life_commit} down to {commit}"
        );
        check!(
            self,
            commit <= last,
            "group {g} member {m}: commit index {commit} beyond its last index {last}"
        );
        check!(
            self,
            term >= member.hard_term
                && (term > member.hard_term || core.voted_for == member.hard_vote),
            "group {g} member {m}: acted on a term/vote that was never persisted"
        );
        if role == Role::Leader {
            let first = *group.leaders.entry(term).or_insert(m);
            check!(
                self,
                first == m,
                "group {g}: two leaders in term {term}: members {first} and {m}"
            );
        }
        let group = &mut self.groups[g];
        if !lossy {
            // Committed entries agree with what was committed before, and are held by a
            // quorum (durably under SYNC_FLUSH) when a leader commits them.
            let known = group.committed.len() as u64;
            let member = &group.members[m];
            if commit > 0 && commit.min(known) > 0 {
                let i = commit.min(known);
                let mine = member.log.hash_at(i);
                let want = group.committed[i as usize - 1].0;
                check!(
                    self,
                    mine == Some(want),
                    "group {g} member {m}: committed entry {i} differs from the one committed before"
                );
            }
            let member = &self.groups[g].members[m];
            if role == Role::Leader && life_commit < commit {
                for i in life_commit + 1..=commit {
                    let h = member.log.hash_at(i);
                    let holders = self.groups[g]
                        .members
                        .iter()
                        .filter(|o| o.log.hash_at(i) == h && (!sync_flush || o.log.synced >= i))
                        .count();
                    check!(
                        self,
                        holders >= majority,
                        "group {g} leader {m}: commits {i} held by only {holders} members"
                    );
                }
            }
            let group = &mut self.groups[g];
            let member = &group.members[m];
            for i in known + 1..=commit {
                group.committed.push((member.log.hash_at(i).unwrap(), term));
            }
            // Leader Completeness: a leader of term T holds every entry committed in a
            // term below T. Checked once, when it takes office.
            if role == Role::Leader && member.leader_checked_term != term {
                let below = group.committed.iter().rposition(|&(_, t)| t < term);
                if let Some(pos) = below {
                    let h = member.log.hash_at(pos as u64 + 1);
                    check!(
                        self,
                        h == Some(group.committed[pos].0),
                        "group {g} leader {m} of term {term}: lacks entries committed before its term, up to {} (last {last})",
                        pos + 1
                    );
                }
                self.groups[g].members[m].leader_checked_term = term;
            }
        }
        self.groups[g].members[m].life_commit = commit;
    }
}

impl Group {
    fn describe(&self) -> String {
        let members: Vec<String> = self
            .members
            .iter()
            .map(|m| match &m.core {
                Some(c) => {
                    let mut s = format!(
                        "{:?} t{} commit {} last {} synced {}",
                        c.role,
                        c.term,
                        c.commit_index,
                        m.log.last_index(),
                        m.log.synced
                    );
                    if c.is_leader() {
                        s += &format!(" transferee {:?}", c.transferee);
                        for (i, p) in c.progress.iter().enumerate() {
                            s += &format!(
                                " [{i}: {:?} match {} flushed {} next {} inflight {}]",
                                p.state,
                                p.match_index,
                                p.flushed_index,
                                p.next_index,
                                p.inflight()
                            );
                        }
                    }
                    s
                }
                None => "down".to_string(),
            })
            .collect();
        format!("{:?}, members: {members:?}", self.cfg)
    }

    fn new_core(&self, m: usize, now_ms: u64, seed: u64) -> RaftCore {
        let member = &self.members[m];
        let cfg = CoreConfig {
            self_index: m,
            ..self.cfg.clone()
        };
        let core_seed = seed ^ ((self.id as u64) << 48) ^ ((m as u64) << 40) ^ member.lives;
        RaftCore::new(cfg, member.hard_term, member.hard_vote, now_ms, core_seed)
    }

    fn crash(&mut self, m: usize, power_loss: bool) {
        if trace_on() {
            eprintln!("g{} m{m}: crash (power loss: {power_loss})", self.id);
        }
        let member = &mut self.members[m];
        member.core = None;
        member.pending.iter_mut().for_each(|p| *p = None);
        if power_loss {
            member.log.power_loss();
        } else {
            // The process died; the page cache reaches the disk.
            member.log.flush();
        }
    }

    fn restart(&mut self, m: usize, now_ms: u64, seed: u64) {
        self.members[m].lives += 1;
        let core = self.new_core(m, now_ms, seed);
        let member = &mut self.members[m];
        member.core = Some(core);
        member.life_commit = 0;
        member.next_tick_ms = now_ms;
    }

    fn append(&mut self, m: usize, entry: Entry, now_ms: u64) {
        let seed = self.seed;
        let key = (entry.index, entry.term);
        let log = &mut self.members[m].log;
        log.append(entry);
        let h = log.hash_at(key.0).unwrap();
        let first = *self.entry_hashes.entry(key).or_insert(h);
        if first != h && !self.lossy {
            panic!(
                "seed {seed} at {now_ms} ms: invariant broken: group {} member {m}: log matching: entry {}@{} has a different prefix than elsewhere\nreplay: RMQRAFT_SIM_SEED={seed} cargo test --release --test sim",
                self.id, key.0, key.1
            );
        }
    }

    /// The idempotent client's (re)send on leader `l`: the leader checks the pair against
    /// the producer table of its log and appends it only when fresh; a duplicate that is
    /// committed acknowledges it, and the client moves to the next sequence.
    fn client_append_idempotent(&mut self, l: usize, now_ms: u64) {
        let seed = self.seed;
        let core = self.members[l].core.as_ref().unwrap();
        let (term, commit) = (core.term, core.commit_index);
        let log = &self.members[l].log;
        let mut table = ProducerTable::new(producers::DEFAULT_EXPIRATION_MS);
        for e in log
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::Idempotent)
        {
            let meta = EntryMeta {
                index: e.index,
                term: e.term,
                pos: 0,
            };
            table.apply_body(&e.body, meta);
        }
        match table.check(SIM_PRODUCER, self.idem_seq) {
            Check::Fresh => {
                let entry = Entry {
                    index: log.last_index() + 1,
                    term,
                    kind: EntryKind::Idempotent,
                    body: producers::encode_body(SIM_PRODUCER, self.idem_seq, now_ms as i64, b"i"),
                };
                self.append(l, entry, now_ms);
                self.local_progress(l);
            }
            Check::Duplicate(meta) => {
                if meta.index <= commit {
                    self.idem_seq += 1;
                }
            }
            // An ASYNC_FLUSH power loss may lose acknowledged entries by design.
            Check::OutOfOrder(why) if !self.lossy => panic!(
                "seed {seed} at {now_ms} ms: invariant broken: group {} member {l}: idempotent client refused: {why}\nreplay: RMQRAFT_SIM_SEED={seed} cargo test --release --test sim",
                self.id
            ),
            Check::OutOfOrder(_) => {}
        }
    }

    /// No (producer, sequence) twice in any member's committed log.
    fn check_exactly_once(&self, now_ms: u64) {
        if self.lossy {
            return;
        }
        for (m, member) in self.members.iter().enumerate() {
            let Some(core) = member.core.as_ref() else {
                continue;
            };
            let commit = core.commit_index.min(member.log.last_index()) as usize;
            let mut seen = std::collections::HashSet::new();
            for e in &member.log.entries[..commit] {
                if e.kind != EntryKind::Idempotent {
                    continue;
                }
                let (p, s, _) = producers::decode_header(&e.body).expect("idempotent header");
                assert!(
                    seen.insert((p, s)),
                    "seed {} at {now_ms} ms: invariant broken: group {} member {m}: producer {p:#x} sequence {s} committed twice\nreplay: RMQRAFT_SIM_SEED={} cargo test --release --test sim",
                    self.seed, self.id, self.seed
                );
            }
        }
    }

    /// A client append on leader `l`; returns its index.
    fn client_append(&mut self, l: usize, now_ms: u64) -> u64 {
        let core = self.members[l].core.as_ref().unwrap();
        assert!(core.accepts_appends());
        let index = self.members[l].log.last_index() + 1;
        let value = self.next_client_value;
        self.next_client_value += 1;
        let body = Bytes::from(format!("g{}v{value}", self.id).into_bytes());
        let entry = Entry {
            index,
            term: core.term,
            kind: EntryKind::Normal,
            body,
        };
        self.append(l, entry, now_ms);
        self.local_progress(l);
        index
    }

    fn local_progress(&mut self, m: usize) {
        let member = &mut self.members[m];
        if let Some(core) = member.core.as_mut() {
            let _ = core.on_local_progress(member.log.synced, &member.log);
        }
    }

    /// Carries out the effects of one event in order: persist the hard state, append the
    /// no-op, then hand back the messages to send.
    fn carry_out(&mut self, m: usize, fx: Effects, now_ms: u64) -> Vec<(usize, Outgoing)> {
        let member = &mut self.members[m];
        let core = member.core.as_ref().unwrap();
        if fx.persist_hard_state {
            member.hard_term = core.term;
            member.hard_vote = core.voted_for;
        }
        if fx.append_noop {
            let entry = Entry {
                index: member.log.last_index() + 1,
                term: core.term,
                kind: EntryKind::Noop,
                body: Bytes::new(),
            };
            self.append(m, entry, now_ms);
            self.local_progress(m);
        }
        fx.messages
    }
}

fn trace_on() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("RMQRAFT_SIM_TRACE").is_some())
}

fn run_seed(seed: u64) -> Stats {
    let mut sim = Sim::new(seed);
    sim.run();
    let mut stats = sim.stats;
    for group in &sim.groups {
        stats.terms_with_leader += group.leaders.len() as u64;
        stats.committed_entries += group.committed.len() as u64;
        stats.idempotent_acked += group.idem_seq;
    }
    stats
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {v:?}"))
    })
}

#[test]
fn simulate_groups_under_faults() {
    if let Some(seed) = env_u64("RMQRAFT_SIM_SEED") {
        let stats = run_seed(seed);
        eprintln!("seed {seed}: {stats:?}");
        return;
    }
    let seeds = env_u64("RMQRAFT_SIM_SEEDS").unwrap_or(500);
    let first = env_u64("RMQRAFT_SIM_FIRST_SEED").unwrap_or(0);
    let started = std::time::Instant::now();
    let mut total = Stats::default();
    for seed in first..first + seeds {
        match std::panic::catch_unwind(|| run_seed(seed)) {
            Ok(stats) => total += stats,
            Err(_) => panic!(
                "seed {seed} failed; replay: RMQRAFT_SIM_SEED={seed} cargo test --release --test sim"
            ),
        }
    }
    eprintln!(
        "simulated {seeds} seeds in {:.1} s: {total:?}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        total.idempotent_acked > 0,
        "the idempotent client never saw a sequence committed"
    );
}
