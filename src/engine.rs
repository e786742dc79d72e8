//! The public API: `Engine` and `Group`.

use crate::config::{EngineConfig, GroupConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::group::Member;
use crate::net::{NetLimits, Transport};
use crate::store::Flusher;
use crate::types::{Entry, EntryKind, EntryMeta, GroupStatus};
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use crate::group::{AppendCallback, Counters, RoleListener, Stamp};
use crate::metrics::{EngineMetrics, MetricsSnapshot};

struct EngineInner {
    config: EngineConfig,
    transport: Arc<Transport>,
    flusher: Flusher,
    /// The threads serving every member (`group::sched`).
    sched: crate::group::sched::Sched,
    /// Open members; a member leaves this list when it closes.
    members: Mutex<Vec<Arc<Member>>>,
    epoch: Instant,
    closed: AtomicBool,
    /// Serves `GET /metrics` when `rmqraftMetricsPort` is set.
    metrics_server: Mutex<Option<crate::metrics::MetricsServer>>,
}

/// One per process is typical: owns the listeners, the flusher and the groups.
pub struct Engine {
    inner: Arc<EngineInner>,
}

impl Engine {
    /// Opens an engine. `properties` is broker.conf text (may be empty).
    pub fn open(properties: &str) -> Result<Engine> {
        let config = EngineConfig::from_properties(properties)?;
        let flusher = Flusher::start_with(config.flusher, config.sync_mode)?;
        log::info!(
            "engine for cluster '{}': flusher uses {}",
            config.cluster_name,
            flusher.mode()
        );
        let transport = Arc::new(Transport::with_secret(
            &config.cluster_name,
            config.frame_size_bytes_max,
            NetLimits::default(),
            config.secret.clone(),
        ));
        let epoch = Instant::now();
        let sched = match crate::group::sched::Sched::start(Arc::clone(&transport), epoch) {
            Ok(sched) => sched,
            Err(err) => {
                transport.close();
                flusher.close();
                return Err(err);
            }
        };
        let metrics_addr = (config.metrics_port != 0)
            .then(|| std::net::SocketAddr::new(config.metrics_host, config.metrics_port));
        let engine = Engine {
            inner: Arc::new(EngineInner {
                config,
                transport,
                flusher,
                sched,
                members: Mutex::new(Vec::new()),
                epoch,
                closed: AtomicBool::new(false),
                metrics_server: Mutex::new(None),
            }),
        };
        if let Some(addr) = metrics_addr {
            let weak = Arc::downgrade(&engine.inner);
            let render: crate::metrics::Render = Arc::new(move || match weak.upgrade() {
                Some(inner) => inner.metrics().to_prometheus(),
                None => String::new(),
            });
            let server = crate::metrics::MetricsServer::start(addr, render)?;
            if let Ok(mut slot) = engine.inner.metrics_server.lock() {
                *slot = Some(server);
            }
        }
        Ok(engine)
    }

    /// Where `GET /metrics` is served (`rmqraftMetricsPort`), if it is.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        let server = self.inner.metrics_server.lock().ok()?;
        server.as_ref().map(|s| s.local_addr())
    }

    /// Every counter and gauge of this engine and its open members: the numbers
    /// `GET /metrics` shows (`MetricsSnapshot::to_prometheus`).
    pub fn metrics(&self) -> MetricsSnapshot {
        self.inner.metrics()
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Opens one member of a group from broker.conf text.
    pub fn open_group(&self, properties: &str) -> Result<Group> {
        let config = GroupConfig::from_properties(properties)?;
        let expiration_ms = crate::idempotent::expiration_ms(properties)?;
        let inner = &self.inner;
        let mut members = inner
            .members
            .lock()
            .map_err(|_| Error::new(ErrorKind::Panic, "engine lock poisoned"))?;
        if inner.closed.load(Ordering::Acquire) {
            return Err(Error::closed("the engine"));
        }
        if let Some(m) = members.iter().find(|m| {
            (m.config.group == config.group && m.config.self_id == config.self_id)
                || m.config.member_dir() == config.member_dir()
        }) {
            return Err(Error::new(
                ErrorKind::Exists,
                format!(
                    "{}/{} (store {}) is already open in this engine",
                    m.config.group,
                    m.config.self_id,
                    m.config.member_dir().display()
                ),
            ));
        }
        let member = Member::open(
            config,
            Arc::clone(&inner.transport),
            &inner.flusher,
            inner.sched.inner(),
            inner.epoch,
        )?;
        members.push(Arc::clone(&member));
        log::info!(
            "{}/{}: opened with {}",
            member.config.group,
            member.config.self_id,
            member.config.effective_summary()
        );
        let producers = Arc::new(crate::idempotent::Producers::new(
            Arc::clone(&member),
            expiration_ms,
        ));
        if let Err(err) = producers.start() {
            member.close();
            return Err(err);
        }
        let weak = Arc::downgrade(&producers);
        let _ = member
            .idempotent
            .set(Box::new(move |producer, sequence, data, done| {
                match weak.upgrade() {
                    Some(p) => p.append_async(producer, sequence, data, done),
                    None => Err(Error::closed("the group member")),
                }
            }));
        Ok(Group {
            member,
            producers,
            engine: Arc::downgrade(inner),
        })
    }

    /// Group-commit rounds of this engine's flusher, and the store jobs they carried.
    pub fn flush_rounds(&self) -> (u64, u64) {
        self.inner.flusher.rounds()
    }

    /// The first step of a planned close of a whole engine, for a host that must stop
    /// its own front ends after it (as [`Group::hand_over_leadership`] for one member):
    /// every member that leads hands leadership to its most up-to-date live follower,
    /// several at a time, so this takes about one hand-over however many groups lead
    /// here. [`Engine::close`] does the same first.
    pub fn hand_over_leaders(&self) {
        let members: Vec<Arc<Member>> = match self.inner.members.lock() {
            Ok(m) => m.clone(),
            Err(p) => p.into_inner().clone(),
        };
        if members.len() == 1 {
            members[0].hand_over_for_close();
        } else {
            hand_over_all(&members);
        }
    }

    /// Closes every group still open, stops and joins every thread. Idempotent.
    pub fn close(&self) {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let server = match self.inner.metrics_server.lock() {
            Ok(mut s) => s.take(),
            Err(p) => p.into_inner().take(),
        };
        if let Some(mut server) = server {
            server.stop();
        }
        let members = match self.inner.members.lock() {
            Ok(mut m) => std::mem::take(&mut *m),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        };
        hand_over_all(&members);
        for member in members {
            member.close();
        }
        self.inner.sched.close();
        self.inner.transport.close();
        self.inner.flusher.close();
    }
}

/// Threads that hand leadership over at an engine's close, at most.
const HAND_OVER_THREADS_MAX: usize = 8;

/// Hands over the leadership of every member that leads, several at a time: an engine
/// leading many groups would otherwise close in (groups x hand-over time), up to twice
/// the election timeout each when the followers are going too. A few short-lived
/// threads, joined before this returns; a member that is no longer leading when its
/// close comes does nothing more.
fn hand_over_all(members: &[Arc<Member>]) {
    if members.len() < 2 {
        return;
    }
    let per_thread = members.len().div_ceil(HAND_OVER_THREADS_MAX);
    std::thread::scope(|s| {
        for chunk in members.chunks(per_thread) {
            let spawned = std::thread::Builder::new()
                .name("rq-handover".to_string())
                .spawn_scoped(s, move || {
                    for m in chunk {
                        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            m.hand_over_for_close()
                        }));
                        if r.is_err() {
                            log::error!("handing leadership over at close panicked");
                        }
                    }
                });
            if spawned.is_err() {
                // No thread: each member hands over in its own close, one by one.
                return;
            }
        }
    });
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.close();
    }
}

impl EngineInner {
    fn metrics(&self) -> MetricsSnapshot {
        let members: Vec<Arc<Member>> = match self.members.lock() {
            Ok(m) => m.clone(),
            Err(p) => p.into_inner().clone(),
        };
        let groups: Vec<_> = members.iter().filter_map(|m| m.metrics()).collect();
        let (listeners, connections, peer_links, link_queued_bytes) = self.transport.stats();
        let (sched_threads, queue_depths) = self.sched.stats();
        let (flush_rounds_total, flush_jobs_total) = self.flusher.rounds();
        let metrics_threads = u64::from(self.config.metrics_port != 0);
        // The flusher's thread, the scheduler's, one per listener, inbound connection and
        // outbound link, and the metrics server's.
        let threads = 1 + sched_threads + listeners + connections + peer_links + metrics_threads;
        MetricsSnapshot {
            engine: EngineMetrics {
                groups: groups.len() as u64,
                threads,
                connections,
                peer_links,
                link_queued_bytes,
                queue_depths,
                flush_rounds_total,
                flush_jobs_total,
            },
            groups,
        }
    }
}

/// One member of one replicated commitlog group. Usable from any thread.
pub struct Group {
    member: Arc<Member>,
    producers: Arc<crate::idempotent::Producers>,
    engine: std::sync::Weak<EngineInner>,
}

impl Group {
    /// Appends on the leader and blocks until committed under the flush policy.
    pub fn append(&self, data: &[u8], timeout: Duration) -> Result<EntryMeta> {
        self.member.append(data, timeout)
    }

    /// Appends without blocking. On `Ok(())`, `callback` runs exactly once later, on a
    /// library thread, with the final result; on `Err`, it never runs.
    pub fn append_async(&self, data: &[u8], callback: AppendCallback) -> Result<()> {
        self.member.append_async(data, callback)
    }

    /// Appends `data` exactly once per (`producer_id`, `sequence`) and blocks until
    /// committed, at most `timeout`. `producer_id` is any nonzero value (random per
    /// producer instance); sequences run 0, 1, 2, ... per producer. Resending a pair
    /// already in the log (committed, or in flight: then the first one's outcome is
    /// awaited) appends nothing and returns the original entry's meta, across leader
    /// changes and restarts. A sequence beyond the next one, or older than the last
    /// 1,000 remembered: `OutOfOrder`. `read` of the entry returns `data` only.
    pub fn append_idempotent(
        &self,
        producer_id: u64,
        sequence: u64,
        data: &[u8],
        timeout: Duration,
    ) -> Result<EntryMeta> {
        self.producers.append(producer_id, sequence, data, timeout)
    }

    /// [`Group::append_idempotent`] without blocking: on `Ok(())`, `callback` runs
    /// exactly once later, on a library thread; on `Err`, it never runs.
    pub fn append_idempotent_async(
        &self,
        producer_id: u64,
        sequence: u64,
        data: &[u8],
        callback: AppendCallback,
    ) -> Result<()> {
        self.producers
            .append_async(producer_id, sequence, data, callback)
    }

    /// Appends an entry of `kind` whose body, exactly `body_len` bytes, `stamp` makes
    /// from the entry's [`EntryPlace`](crate::types::EntryPlace) (index, term, position,
    /// body position). The stamp runs under the member lock right before the entry is
    /// stored, so stamps run in log order: the broker fills a message's commitlog offset
    /// (`body_pos`) and queue offset there. Keep it short and never call this group from
    /// inside it. On `Ok(())` `done` runs exactly once, as for [`Group::append_async`];
    /// on `Err` (the stamp's own error included) nothing was stored and it never runs.
    pub fn append_with(
        &self,
        kind: EntryKind,
        body_len: usize,
        stamp: Stamp,
        done: AppendCallback,
    ) -> Result<()> {
        self.member.append_with(kind, body_len, stamp, done)
    }

    /// A cursor over committed entries, on any member: entries `from_index..`, at most
    /// `max_entries` and about `max_bytes` of bodies (always at least one when one is
    /// committed). When none is committed at `from_index` yet, waits up to `wait` for
    /// the commit index to move and returns an empty list if it did not. No-op entries
    /// are included (kind `Noop`, empty body) so the caller can step over them. `NotFound`
    /// when `from_index` is below the first retained entry; `Closed` once closing.
    pub fn read_committed(
        &self,
        from_index: u64,
        max_entries: usize,
        max_bytes: usize,
        wait: Duration,
    ) -> Result<Vec<(Entry, EntryMeta)>> {
        self.member
            .read_committed(from_index, max_entries, max_bytes, wait)
    }

    /// Reads any entry in this member's log, committed or not: what a new leader
    /// inherits beyond the commit index (it commits with the leader's first entry of its
    /// term, or is replaced if another member leads).
    pub fn read_local(&self, index: u64) -> Result<(Entry, EntryMeta)> {
        self.member.read_local(index)
    }

    /// The committed entry whose record, or whose body, starts at log position `pos`
    /// (a message's commitlog offset is its entry's body position).
    pub fn read_committed_at(&self, pos: u64) -> Result<(Entry, EntryMeta)> {
        self.member.read_committed_at(pos)
    }

    /// Reads a committed entry held by this member (leader or follower). A no-op entry
    /// (one per leader term) reads as an empty body.
    pub fn read(&self, index: u64) -> Result<(Bytes, EntryMeta)> {
        self.member.read(index)
    }

    /// Why this member refuses to elect and serve (an upgrade in place: its old log is
    /// not the one a majority of the group holds), or `None`. Recorded in
    /// `<member>/broker/old-log.refused`, so it holds across restarts.
    pub fn old_log_refusal(&self) -> Option<crate::Error> {
        self.member.old_log_refusal()
    }

    /// Hands this member's old-log digest (`upgrade::OldLogDigest::encode`) to the
    /// before-election comparison; the broker does it when it opens over an old store.
    pub fn set_old_log_digest(&self, digest: Vec<u8>) {
        self.member.set_old_log_digest(digest)
    }

    pub fn status(&self) -> Result<GroupStatus> {
        self.member.status()
    }

    /// Keeps every entry from log index `keep_from` on through retention, for a reader
    /// of the log above the group that has not yet made its state durable past it (the
    /// broker holds at its checkpoint). `u64::MAX` lifts the hold.
    pub fn hold_retention(&self, keep_from: u64) {
        self.member.hold_retention(keep_from)
    }

    /// Runs retention now, as at `deleteWhen`, keeping segments younger than
    /// `file_reserved_hours` (0: every full, flushed segment no member or reader needs);
    /// returns how many segments were deleted.
    pub fn apply_retention_now(&self, file_reserved_hours: u64) -> Result<usize> {
        self.member.apply_retention_now(file_reserved_hours)
    }

    /// Appends per second accepted by this member, over the last second.
    pub fn append_tps(&self) -> f64 {
        self.member.append_tps()
    }

    /// Sets (or with `None` removes) the role listener. It is called once soon with the
    /// current role, then on every change, on the member's role thread. After this
    /// returns, a replaced listener is never called again.
    pub fn set_role_listener(&self, listener: Option<RoleListener>) -> Result<()> {
        self.member.set_role_listener(listener)
    }

    /// Waits until this member knows a leader (itself or a peer), at most `timeout`
    /// (`Timeout` then); returns the leader's position in dLegerPeers.
    pub fn wait_leader(&self, timeout: Duration) -> Result<i32> {
        self.member.wait_leader(timeout)
    }

    /// On the leader: hands leadership to `peer_id` and waits until it leads.
    pub fn transfer_leadership(&self, peer_id: &str, timeout: Duration) -> Result<()> {
        self.member.transfer_leadership(peer_id, timeout)
    }

    /// Counters a broker open on this member keeps (sends, pulls, applied index).
    pub(crate) fn broker_counters(&self) -> &crate::metrics::BrokerCounters {
        self.member.broker_counters()
    }

    /// This member's metrics (as `Engine::metrics` shows them); `None` once closed.
    pub fn metrics(&self) -> Option<crate::metrics::GroupMetrics> {
        self.member.metrics()
    }

    /// Hot-path counters of this member.
    pub fn counters(&self) -> crate::group::Counters {
        self.member.counters()
    }

    /// This member's id (`dLegerSelfId`).
    pub fn self_id(&self) -> &str {
        &self.member.config.self_id
    }

    /// The group's name (`dLegerGroup`).
    pub fn group_name(&self) -> &str {
        &self.member.config.group
    }

    pub fn config(&self) -> &GroupConfig {
        &self.member.config
    }

    /// The first step of a planned close, for a host that must stop its own front end
    /// after it (a broker's RocketMQ port): when this member leads, hands leadership to
    /// the most up-to-date live follower and waits, at most twice the election timeout,
    /// until it leads and this member's pending appends are decided. Appends meanwhile
    /// are refused with `NotLeader`. `close` does the same first.
    pub fn hand_over_leadership(&self) {
        self.member.hand_over_for_close();
    }

    /// Stops the member's threads, flushes, releases the store lock. Idempotent; later
    /// calls on this handle return `Closed`.
    pub fn close(&self) {
        self.member.close();
        self.producers.close();
        if let Some(engine) = self.engine.upgrade() {
            if let Ok(mut members) = engine.members.lock() {
                members.retain(|m| !Arc::ptr_eq(m, &self.member));
            }
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.close();
    }
}
