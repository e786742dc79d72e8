//! The old broker's `config/*.json` (rocketmq-store-format.md 1.9): `topics.json`
//! (`topicConfigTable`) and `consumerOffset.json` (`offsetTable` of `topic@group` to
//! `{queueId: offset}`, fastjson's unquoted integer keys accepted). As RocketMQ's
//! ConfigManager does, a missing or unreadable file falls back to its `.bak`.

use crate::broker::topic::{self, TopicConfig};
use crate::error::{Error, Result};
use crate::remoting::json::{self, Value};
use std::path::Path;

pub const TOPICS: &str = "topics.json";
pub const CONSUMER_OFFSETS: &str = "consumerOffset.json";
pub const DELAY_OFFSETS: &str = "delayOffset.json";

/// Whether `dir` holds either file (or its .bak).
pub fn has_config(dir: &Path) -> bool {
    [TOPICS, CONSUMER_OFFSETS]
        .iter()
        .any(|f| dir.join(f).is_file() || dir.join(format!("{f}.bak")).is_file())
}

/// The file's JSON, or its .bak's when the file is missing or does not parse; `None`
/// when neither exists.
fn load(dir: &Path, name: &str) -> Result<Option<Value>> {
    let main = dir.join(name);
    let bak = dir.join(format!("{name}.bak"));
    let mut first_err = None;
    for path in [&main, &bak] {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("read {}", path.display()), e)),
        };
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            // RocketMQ treats an empty file as no content.
            continue;
        }
        match json::parse_lenient(&bytes) {
            Ok(v) => {
                if path == &bak {
                    log::warn!(
                        "{}: unreadable or missing; read {}",
                        main.display(),
                        bak.display()
                    );
                }
                return Ok(Some(v));
            }
            Err(e) => {
                first_err.get_or_insert(format!("{}: not JSON: {e}", path.display()));
            }
        }
    }
    match first_err {
        Some(e) => Err(Error::corrupt(format!(
            "{e} (nor is there a readable .bak)"
        ))),
        None => Ok(None),
    }
}

fn bad(path: &Path, what: String) -> Error {
    Error::corrupt(format!("{}: {what}", path.display()))
}

/// Topics of `topics.json`, by name.
pub fn topics(dir: &Path) -> Result<Vec<TopicConfig>> {
    let path = dir.join(TOPICS);
    let Some(v) = load(dir, TOPICS)? else {
        return Ok(Vec::new());
    };
    let Some(table) = v.get("topicConfigTable").and_then(Value::as_object) else {
        return Err(bad(&path, "no topicConfigTable object".to_string()));
    };
    let mut out = Vec::new();
    for (name, t) in table {
        let field = |k: &str| -> Result<i32> {
            t.get(k)
                .and_then(json::as_i32)
                .ok_or_else(|| bad(&path, format!("topic {name}: no integer {k}")))
        };
        let cfg = TopicConfig {
            name: t
                .get("topicName")
                .and_then(Value::as_str)
                .unwrap_or(name)
                .to_string(),
            read_queue_nums: field("readQueueNums")?,
            write_queue_nums: field("writeQueueNums")?,
            perm: field("perm")?,
        };
        if let Err(e) = topic::validate_config(&cfg) {
            log::warn!("{}: topic {name} skipped: {e}", path.display());
            continue;
        }
        out.push(cfg);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Offsets of `consumerOffset.json`: (consumer group, topic, queue id, offset).
pub fn consumer_offsets(dir: &Path) -> Result<Vec<(String, String, i32, u64)>> {
    let path = dir.join(CONSUMER_OFFSETS);
    let Some(v) = load(dir, CONSUMER_OFFSETS)? else {
        return Ok(Vec::new());
    };
    let Some(table) = v.get("offsetTable").and_then(Value::as_object) else {
        return Err(bad(&path, "no offsetTable object".to_string()));
    };
    let mut out = Vec::new();
    for (key, queues) in table {
        // "topic@group": topics have no '@', groups may not either; split at the last.
        let Some((topic, group)) = key.rsplit_once('@') else {
            return Err(bad(&path, format!("key {key:?} is not topic@group")));
        };
        let Some(queues) = queues.as_object() else {
            return Err(bad(&path, format!("{key}: not an object of queue offsets")));
        };
        for (qid, off) in queues {
            let q: i32 = qid
                .trim()
                .parse()
                .map_err(|_| bad(&path, format!("{key}: queue id {qid:?} is not a number")))?;
            let o = json::as_i64(off)
                .filter(|o| *o >= 0)
                .ok_or_else(|| bad(&path, format!("{key} queue {q}: offset {off} is not >= 0")))?;
            out.push((group.to_string(), topic.to_string(), q, o as u64));
        }
    }
    out.sort();
    Ok(out)
}

/// Progress of delayed messages in `delayOffset.json`: (delay level, next offset of the
/// schedule queue `level - 1` to deliver).
pub fn delay_offsets(dir: &Path) -> Result<Vec<(i32, u64)>> {
    let path = dir.join(DELAY_OFFSETS);
    let Some(v) = load(dir, DELAY_OFFSETS)? else {
        return Ok(Vec::new());
    };
    let Some(table) = v.get("offsetTable").and_then(Value::as_object) else {
        return Err(bad(&path, "no offsetTable object".to_string()));
    };
    let mut out = Vec::new();
    for (level, off) in table {
        let l: i32 = level
            .trim()
            .parse()
            .map_err(|_| bad(&path, format!("delay level {level:?} is not a number")))?;
        let o = json::as_i64(off)
            .filter(|o| *o >= 0)
            .ok_or_else(|| bad(&path, format!("level {l}: offset {off} is not >= 0")))?;
        out.push((l, o as u64));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fastjson_files_and_their_bak_are_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(CONSUMER_OFFSETS),
            "{\n\t\"offsetTable\":{\n\t\t\"T@g1\":{0:250,1:7\n\t\t},\"%RETRY%g1@g1\":{0:0}\n\t}\n}",
        )
        .unwrap();
        let o = consumer_offsets(dir.path()).unwrap();
        assert_eq!(
            o,
            vec![
                ("g1".to_string(), "%RETRY%g1".to_string(), 0, 0),
                ("g1".to_string(), "T".to_string(), 0, 250),
                ("g1".to_string(), "T".to_string(), 1, 7),
            ]
        );
        // A torn topics.json falls back to its .bak, as RocketMQ's ConfigManager does.
        std::fs::write(dir.path().join(TOPICS), "{\"topicConfigTable\":{").unwrap();
        std::fs::write(
            dir.path().join("topics.json.bak"),
            "{\"topicConfigTable\":{\"T\":{\"perm\":6,\"readQueueNums\":4,\
             \"writeQueueNums\":2,\"topicName\":\"T\"}}}",
        )
        .unwrap();
        let t = topics(dir.path()).unwrap();
        assert_eq!((t[0].read_queue_nums, t[0].write_queue_nums), (4, 2));
        std::fs::write(dir.path().join("topics.json.bak"), "nope").unwrap();
        let e = topics(dir.path()).unwrap_err();
        assert!(e.message().contains("topics.json: not JSON"), "{e}");
        std::fs::write(
            dir.path().join(DELAY_OFFSETS),
            "{\"offsetTable\":{1:5,3:0}}",
        )
        .unwrap();
        assert_eq!(delay_offsets(dir.path()).unwrap(), vec![(1, 5), (3, 0)]);
    }
}
