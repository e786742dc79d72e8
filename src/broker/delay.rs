//! Delayed messages, as RocketMQ's ScheduleMessageService: a send with `delay_level` n
//! is stored in SCHEDULE_TOPIC_XXXX queue n-1 (REAL_TOPIC / REAL_QID name where it
//! goes), its consume-queue tags code is the delivery time, and the leader re-puts it
//! into its topic when due. Each delivered message carries `RMQRAFT_DELAY_FROM =
//! <level>:<schedule offset>`, so delivery progress is in the log itself: every member
//! derives it when dispatching, and a new leader continues where the log says, never
//! delivering one schedule entry twice.

use super::record::{self, MessageRecord};
use super::{topic, Inner, Message};
use crate::types::Role;
use crate::wait::Slot;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Property of a delivered message: `<level>:<schedule queue offset>`.
pub const DELAY_FROM: &str = "RMQRAFT_DELAY_FROM";
/// The leader checks for due messages at least this often.
const TICK: Duration = Duration::from_millis(50);
/// A follower looks whether it leads this often (it delivers nothing).
const IDLE_TICK: Duration = Duration::from_millis(500);
/// Schedule units looked at per level and round.
const BATCH: u64 = 64;

pub fn parse_from(v: &str) -> Option<(i32, u64)> {
    let (l, o) = v.split_once(':')?;
    Some((l.parse().ok()?, o.parse().ok()?))
}

/// The consume-queue tags code: the delivery time for a scheduled message, else the
/// tags' hash.
pub fn tags_code(rec: &record::RecordHead<'_>, levels_ms: &[u64]) -> i64 {
    if rec.topic == topic::SCHEDULE_TOPIC {
        if let Some(level) = rec
            .property(record::prop::DELAY)
            .and_then(|l| l.parse::<usize>().ok())
        {
            let level = level.clamp(1, levels_ms.len().max(1));
            let delay = levels_ms.get(level - 1).copied().unwrap_or(0) as i64;
            return rec.store_timestamp.saturating_add(delay);
        }
    }
    rec.tags()
        .map_or(0, |t| i64::from(record::java_string_hash(t)))
}

/// The message a schedule entry becomes when delivered.
fn delivered(rec: &MessageRecord) -> Option<Message> {
    let topic = rec.property(record::prop::REAL_TOPIC)?.to_string();
    let queue_id = rec.property(record::prop::REAL_QID)?.parse().ok()?;
    let properties = record::decode_properties(&rec.properties)
        .into_iter()
        .filter(|(k, _)| {
            k != record::prop::DELAY && k != record::prop::TAGS && k != record::prop::KEYS
        })
        .collect();
    Some(Message {
        topic,
        tags: rec.tags().map(str::to_string),
        keys: rec.keys().map(str::to_string),
        properties,
        body: rec.body.clone(),
        queue_id,
        flag: rec.flag,
        delay_level: 0,
        born_timestamp: rec.born_timestamp,
        born_host: Some(rec.born_host),
        sys_flag: rec.sys_flag,
        reconsume_times: rec.reconsume_times,
    })
}

impl Inner {
    /// The leader's delivery thread.
    pub(super) fn schedule_loop(self: Arc<Self>) {
        let levels = self.config.delay_levels_ms.len() as i32;
        let mut term_seen = 0;
        let mut term_start = 0;
        let mut progress: Option<BTreeMap<i32, u64>> = None;
        let mut warned = None;
        let mut tick = IDLE_TICK;
        while !self.closing() {
            // A bounded wait, woken early by the dispatch thread.
            match self.state.lock() {
                Ok(st) => {
                    if self.applied_cv.wait_timeout(st, tick).is_err() {
                        return;
                    }
                }
                Err(_) => return,
            }
            let Ok(status) = self.group.status() else {
                continue;
            };
            if status.role != Role::Leader {
                progress = None;
                term_seen = 0;
                tick = IDLE_TICK;
                continue;
            }
            tick = TICK;
            if status.term != term_seen {
                // Everything before this term must be applied before this leader knows
                // what was delivered; what it delivers itself it tracks here.
                term_seen = status.term;
                term_start = status.last_index;
                progress = None;
            }
            if progress.is_none() {
                match self.state.lock() {
                    Ok(st) if st.applied >= term_start => {
                        progress = Some(st.delay_progress.clone());
                    }
                    Ok(_) => continue,
                    Err(_) => return,
                }
            }
            let Some(prog) = progress.as_mut() else {
                continue;
            };
            let now = super::now_ms();
            let mut lost = false;
            for level in 1..=levels {
                let from = prog.get(&level).copied().unwrap_or(0);
                let (from, units) = {
                    let Ok(st) = self.state.lock() else { return };
                    match st
                        .queues
                        .get(&(topic::SCHEDULE_TOPIC.to_string(), level - 1))
                    {
                        // Below min: gone with retention.
                        Some(q) => (
                            from.max(q.min),
                            q.read(from.max(q.min), BATCH).unwrap_or_default(),
                        ),
                        None => (from, Vec::new()),
                    }
                };
                for (i, unit) in units.iter().enumerate() {
                    if unit.tags_code > now || self.closing() {
                        break;
                    }
                    let offset = from + i as u64;
                    let view = match self.read_message(unit.commitlog_offset as u64) {
                        Ok(Some(v)) => v,
                        _ => break,
                    };
                    let Some(m) = delivered(&view.decoded) else {
                        log::warn!(
                            "schedule level {level} offset {offset}: no REAL_TOPIC/REAL_QID; skipped"
                        );
                        prog.insert(level, offset + 1);
                        continue;
                    };
                    let slot = Slot::new();
                    let filler = Arc::clone(&slot);
                    let t = Duration::from_secs(5);
                    let r = self
                        .put(
                            &m,
                            Box::new(move |r| filler.fill(r)),
                            t,
                            Some((level, offset)),
                            false,
                        )
                        .and_then(|()| slot.wait(t, "the delayed message"));
                    match r {
                        Ok(_) => {
                            prog.insert(level, offset + 1);
                        }
                        Err(err) => {
                            if warned != Some((level, offset)) {
                                warned = Some((level, offset));
                                log::warn!(
                                    "delivering the delayed message at level {level} offset {offset} to {}: {err}; retrying",
                                    m.topic
                                );
                            }
                            lost = true;
                            break;
                        }
                    }
                }
                if lost {
                    break;
                }
            }
            if lost {
                // The outcome may be unknown: learn it from the log once everything
                // in it now is applied.
                progress = None;
                term_start = self.group.status().map_or(term_start, |s| s.last_index);
            }
        }
    }
}
