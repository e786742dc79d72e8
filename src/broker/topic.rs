//! Topic configs and RocketMQ's topic rules.

use crate::error::{Error, ErrorKind, Result};

/// perm bit: inherit (RocketMQ's PERM_INHERIT).
pub const PERM_INHERIT: i32 = 1;
/// perm bit: writable.
pub const PERM_WRITE: i32 = 2;
/// perm bit: readable.
pub const PERM_READ: i32 = 4;
/// RocketMQ's TOPIC_MAX_LENGTH for sends (a v1 record's topic).
pub const TOPIC_SEND_BYTES_MAX: usize = 127;
/// The longest topic a record can hold at all (v2: a 2-byte length).
pub const TOPIC_BYTES_MAX: usize = 32767;
/// The default topic RocketMQ copies auto-created topics from.
pub const DEFAULT_TOPIC: &str = "TBW102";
/// Where delayed messages wait.
pub const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";
/// Prefix of a consumer group's retry topic.
pub const RETRY_PREFIX: &str = "%RETRY%";
/// Prefix of a consumer group's dead-letter topic.
pub const DLQ_PREFIX: &str = "%DLQ%";
/// Most queues a topic may have.
pub const QUEUE_NUMS_MAX: i32 = 1024;

/// One topic, as RocketMQ's topics.json holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    pub name: String,
    pub read_queue_nums: i32,
    pub write_queue_nums: i32,
    pub perm: i32,
}

impl TopicConfig {
    pub fn readable(&self) -> bool {
        self.perm & PERM_READ != 0
    }
    pub fn writable(&self) -> bool {
        self.perm & PERM_WRITE != 0
    }
    /// Queue ids that exist: `0..max(readQueueNums, writeQueueNums)`.
    pub fn queue_nums(&self) -> i32 {
        self.read_queue_nums.max(self.write_queue_nums)
    }
}

/// The retry topic of a consumer group.
pub fn retry_topic(group: &str) -> String {
    format!("{RETRY_PREFIX}{group}")
}

/// Checks a topic name as RocketMQ's TopicValidator does: not blank, only
/// `[%|a-zA-Z0-9_-]`, and (for sends) at most 127 bytes. The error names the rule.
pub fn validate_topic(name: &str, for_send: bool) -> Result<()> {
    let bad = |why: String| Err(Error::new(ErrorKind::InvalidArgument, why));
    if name.trim().is_empty() {
        return bad("the topic is blank".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '%' | '|' | '_' | '-')))
    {
        return bad(format!(
            "topic '{name}' contains the illegal character {c:?}: only ^[%|a-zA-Z0-9_-]+$ is allowed"
        ));
    }
    let max = if for_send {
        TOPIC_SEND_BYTES_MAX
    } else {
        TOPIC_BYTES_MAX
    };
    if name.len() > max {
        return bad(format!(
            "topic of {} bytes is longer than the topic max length {max}",
            name.len()
        ));
    }
    Ok(())
}

/// Checks a topic config for `topic_update`.
pub fn validate_config(t: &TopicConfig) -> Result<()> {
    validate_topic(&t.name, false)?;
    for (what, n) in [
        ("readQueueNums", t.read_queue_nums),
        ("writeQueueNums", t.write_queue_nums),
    ] {
        if !(0..=QUEUE_NUMS_MAX).contains(&n) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("{what} {n} is out of range [0, {QUEUE_NUMS_MAX}]"),
            ));
        }
    }
    if t.queue_nums() == 0 {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            "a topic needs at least one read or write queue",
        ));
    }
    if !(0..=7).contains(&t.perm) {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "perm {} is not RocketMQ's bits (1 inherit, 2 write, 4 read; 6 or 7 usual)",
                t.perm
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_named() {
        assert!(validate_topic("topic_dw_test_by_order_01", true).is_ok());
        assert!(validate_topic("%RETRY%g|x-1", true).is_ok());
        let e = validate_topic("a b", true).unwrap_err();
        assert!(e.message().contains("illegal character"), "{e}");
        let e = validate_topic("", true).unwrap_err();
        assert!(e.message().contains("blank"));
        let long = "t".repeat(128);
        let e = validate_topic(&long, true).unwrap_err();
        assert!(e.message().contains("max length 127"), "{e}");
        assert!(validate_topic(&long, false).is_ok());
    }
}
