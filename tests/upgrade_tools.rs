//! `rmqraft store inspect | diff | align` on the Java-written fixtures and on stores
//! written here (thousands of messages, several segments, v2 topics, IPv6 hosts): a
//! slave copy cut short or with a flipped byte is caught and repaired; bad input is
//! named by file and offset and nothing is rewritten.

mod upgrade_support;

use rmqraft::upgrade::{classic, tools};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use upgrade_support::*;

const SEG: u64 = 64 << 10;

fn rmqraft(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rmqraft"))
        .args(args)
        .output()
        .expect("run rmqraft");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn inspect_reads_both_java_fixtures() {
    let r = tools::inspect(&fixture("v4.2-unclean")).unwrap();
    assert!(r.scan.problems.is_empty(), "{:?}", r.scan.problems);
    assert_eq!(r.scan.records.len(), 179);
    assert_eq!(r.scan.segments.len(), 5);
    assert_eq!(r.scan.segment_size, 8192);
    assert_eq!(
        r.scan.divided, 32768,
        "the unsealed fourth segment ends at 32768"
    );
    assert_eq!(r.queues.len(), 1);
    assert_eq!((r.queues[0].min_offset, r.queues[0].max_offset), (0, 178));
    let notes = r.notes.join("\n");
    assert!(notes.contains("abort present"), "{notes}");
    assert!(
        notes.contains("56 units") && notes.contains("lags by 123"),
        "{notes}"
    );
    assert!(notes.contains("empty last segment"), "{notes}");
    for (i, m) in r.scan.records.iter().enumerate() {
        assert_eq!(m.queue_offset, i as i64);
        assert_eq!(m.topic, "abc");
    }

    let r = tools::inspect(&fixture("v4.4-single")).unwrap();
    assert!(r.scan.problems.is_empty());
    assert_eq!(r.scan.records.len(), 47);
    assert_eq!(r.scan.end, 8192, "sealed by its BLANK");
    assert_eq!(r.scan.divided, 8192);
    assert_eq!(r.topics_in_config, 9);
    assert_eq!(r.consumer_offsets_in_config, 5);

    let (code, out, err) = rmqraft(&["store", "inspect", p(&fixture("v4.4-single")), "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["messages"], 47);
    assert_eq!(v["lastOffset"], 7912);
    assert_eq!(v["queues"][0]["topic"], "abc");
    assert_eq!(v["queues"][0]["maxOffset"], 46);
    assert_eq!(v["problems"].as_array().unwrap().len(), 0);
}

#[test]
fn a_written_store_with_v2_topics_and_ipv6_hosts_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let msgs = messages(3000, 4);
    let w = write_store(dir.path(), SEG, &msgs, 4);
    let r = tools::inspect(dir.path()).unwrap();
    assert!(r.scan.problems.is_empty(), "{:?}", r.scan.problems);
    assert_eq!(r.scan.records.len(), 3000);
    assert!(r.scan.segments.len() >= 5, "several segments");
    assert_eq!(r.scan.end, w.end);
    for ((off, rec, _), m) in w.records.iter().zip(&r.scan.records) {
        assert_eq!(m.offset, *off);
        assert_eq!(m.topic, rec.topic);
        assert_eq!(m.store_host, rec.store_host);
        assert_eq!(m.keys.as_deref(), rec.keys());
    }
    assert!(r.scan.records.iter().any(|m| m.topic.len() == 200));
    assert!(r.scan.records.iter().any(|m| m.store_host.is_ipv6()));
    let text = r.text();
    assert!(text.contains("OrderTopic:3"), "{text}");
    assert!(text.contains("problems: none"), "{text}");
}

#[test]
fn a_slave_copy_cut_short_is_caught_and_aligned() {
    let dir = tempfile::tempdir().unwrap();
    let (master, slave) = (dir.path().join("master"), dir.path().join("slave"));
    let msgs = messages(2500, 4);
    write_store(&master, SEG, &msgs, 4);
    copy_dir(&master, &slave);
    let (code, out, _) = rmqraft(&["store", "diff", p(&master), p(&slave)]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("same: 2500 messages"), "{out}");

    // The slave lost the end of its last segment (a copy that stopped part way).
    let scan = classic::scan(&master.join("commitlog")).unwrap();
    let last = scan.segments.last().unwrap();
    let cut_at = scan
        .records
        .iter()
        .rev()
        .find(|r| r.offset >= last.from + 100)
        .unwrap()
        .clone();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(slave.join("commitlog").join(&last.name))
        .unwrap();
    f.set_len(cut_at.offset - last.from + 10).unwrap();
    drop(f);

    let (code, out, _) = rmqraft(&["store", "inspect", p(&slave)]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&last.name) && out.contains("a truncated or grown copy"),
        "{out}"
    );
    let (code, out, _) = rmqraft(&["store", "diff", p(&master), p(&slave)]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("message at offset {}", cut_at.offset)) && out.contains("A has it"),
        "{out}"
    );
    assert!(out.contains(&cut_at.topic), "names the topic: {out}");
    assert!(
        out.contains(cut_at.keys.as_deref().unwrap()),
        "names the key: {out}"
    );

    // Dry run: says what, writes nothing.
    let before = snapshot(&slave);
    let (code, out, err) = rmqraft(&[
        "store",
        "align",
        "--from",
        p(&master),
        "--to",
        p(&slave),
        "--dry-run",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("dry run") && out.contains(&last.name), "{out}");
    assert_eq!(snapshot(&slave), before);

    let (code, out, err) = rmqraft(&["store", "align", "--from", p(&master), "--to", p(&slave)]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("done: 1 segment files written"), "{out}");
    // Only the damaged segment was written.
    let after = snapshot(&slave);
    for (path, v) in &before {
        if !path.ends_with(&last.name) {
            assert_eq!(after.get(path), Some(v), "{} untouched", path.display());
        }
    }
    let (code, out, _) = rmqraft(&["store", "diff", p(&master), p(&slave)]);
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = rmqraft(&["store", "align", "--from", p(&master), "--to", p(&slave)]);
    assert_eq!(code, 0);
    assert!(out.contains("nothing to do"), "{out}");
}

#[test]
fn a_flipped_byte_is_named_and_only_it_is_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let (master, slave) = (dir.path().join("master"), dir.path().join("slave"));
    let w = write_store(&master, SEG, &messages(2000, 4), 4);
    copy_dir(&master, &slave);
    // A byte of the body of a message in the second segment.
    let (off, rec, bytes) = w
        .records
        .iter()
        .find(|(o, _, _)| *o > SEG + 1000)
        .unwrap()
        .clone();
    let body_at = bytes
        .windows(rec.body.len())
        .position(|x| x == rec.body)
        .unwrap() as u64;
    let flip = off + body_at + 3;
    let seg_name = format!("{:020}", flip / SEG * SEG);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(slave.join("commitlog").join(&seg_name))
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, flip % SEG).unwrap();
    f.write_all_at(&[b[0] ^ 0x20], flip % SEG).unwrap();
    drop(f);

    let d = tools::diff(&master, &slave).unwrap();
    assert!(!d.same);
    let first = &d.lines[0];
    assert!(
        first.contains(&format!("message at offset {off}")),
        "{first}"
    );
    assert!(
        first.contains("B has") && first.contains("BODYCRC"),
        "{first}"
    );
    let (code, out, _) = rmqraft(&["store", "inspect", p(&slave)]);
    assert_eq!(code, 1);
    assert!(
        out.contains(&format!("{seg_name} at offset {off}")),
        "{out}"
    );

    let actions = tools::align(&master, &slave, false).unwrap();
    assert!(
        actions.iter().any(|a| a.contains(&seg_name)
            && a.contains("1 differing bytes rewritten in 1 runs")
            && a.contains(&format!("first at offset {flip}"))),
        "{actions:?}"
    );
    assert!(tools::diff(&master, &slave).unwrap().same);
}

/// A store, one way broken, must be named by file and offset by inspect, refused by
/// align (as the source) and by a member opening over it, and left as it was.
fn assert_bad_input_named(break_it: impl Fn(&Path) -> (String, u64), what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("old");
    write_store(&store, SEG, &messages(1500, 2), 2);
    let (file, offset) = break_it(&store.join("commitlog"));
    let before = snapshot(&store);

    let (code, out, _) = rmqraft(&["store", "inspect", p(&store)]);
    assert_eq!(code, 1, "{out}");
    let place = format!("{file} at offset {offset}");
    assert!(
        out.contains(&place) && out.contains(what),
        "'{place}' / '{what}' in:\n{out}"
    );

    let to = dir.path().join("copy");
    let (code, _, err) = rmqraft(&["store", "align", "--from", p(&store), "--to", p(&to)]);
    assert_eq!(code, 2);
    assert!(
        err.contains(&place) && err.contains("nothing was changed"),
        "{err}"
    );
    assert!(!to.exists());

    // A member over it refuses before anything is written.
    let root = dir.path().join("new");
    let ports = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let props = format!(
        "dLegerGroup=G\ndLegerPeers=n0-127.0.0.1:{ports}\ndLegerSelfId=n0\nstorePathRootDir={}\n\
         storePathCommitLog={}\n",
        root.display(),
        store.join("commitlog").display()
    );
    let engine = rmqraft::Engine::open("").unwrap();
    let err = engine.open_group(&props).err().expect("refused");
    engine.close();
    assert!(
        err.message().contains(&place) && err.message().contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(snapshot(&store), before, "nothing rewritten");
}

#[test]
fn a_truncated_segment_is_named() {
    assert_bad_input_named(
        |log| {
            let name = format!("{:020}", SEG);
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(log.join(&name))
                .unwrap();
            f.set_len(SEG / 2).unwrap();
            (name, SEG + SEG / 2)
        },
        "a truncated or grown copy",
    );
}

#[test]
fn a_wrong_segment_size_is_named() {
    assert_bad_input_named(
        |log| {
            let name = format!("{:020}", 2 * SEG);
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(log.join(&name))
                .unwrap();
            f.set_len(SEG + 4096).unwrap();
            (name, 3 * SEG)
        },
        "bytes, but the segments are 65536 bytes",
    );
}

#[test]
fn garbage_in_place_of_a_record_is_named() {
    assert_bad_input_named(
        |log| {
            let scan = classic::scan(log).unwrap();
            let r = scan.records.iter().find(|r| r.offset > SEG + 500).unwrap();
            let name = format!("{:020}", r.offset / SEG * SEG);
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(log.join(&name))
                .unwrap();
            f.write_all_at(&[0xAB; 16], r.offset % SEG).unwrap();
            (name, r.offset)
        },
        "illegal magic code",
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec!["store"],
        vec!["store", "frob"],
        vec!["store", "diff", "/nonexistent-a"],
        vec!["store", "align", "--from", "/a"],
    ] {
        let (code, _, err) = rmqraft(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains("rmqraft store"), "{err}");
    }
    let (code, _, err) = rmqraft(&["store", "inspect", "/nonexistent-dir-xyz"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("/nonexistent-dir-xyz") && err.contains("not a directory"),
        "{err}"
    );
}
