//! DLedger stores (RocketMQ in DLedger mode) read in place: the reader and validator
//! (src/upgrade/dledger.rs) over stores written by tests/dledger_support, the store
//! tools over them, and a group taking one over.

mod dledger_support;
mod upgrade_support;

use dledger_support::{items, write};
use rmqraft::upgrade::dledger::{self, DLedgerLog};
use rmqraft::upgrade::OldLog;
use std::path::Path;

const SEG: u64 = 64 << 10;
const INDEX_FILE: u64 = 32 * 1024;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn write_one(dir: &Path, n: usize) -> dledger_support::Written {
    write(dir, SEG, INDEX_FILE, &items(n, 4, 500), 7, "n1")
}

#[test]
fn writer_follows_the_reference_layout_byte_by_byte() {
    let t = tmp();
    let d = t.path().join("dledger-n0");
    let w = write(&d, SEG, INDEX_FILE, &items(2, 1, 500), 3, "n0");
    let data = std::fs::read(d.join("data/00000000000000000000")).unwrap();
    assert_eq!(data.len() as u64, SEG);
    // Entry 0: a NOOP, 48 bytes, index 0, term 1, pos 0, body length 0.
    let mut want = Vec::new();
    want.extend_from_slice(&[0, 0, 0, 2]); // magic NOOP
    want.extend_from_slice(&[0, 0, 0, 48]); // size
    want.extend_from_slice(&[0; 8]); // index 0
    want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]); // term 1
    want.extend_from_slice(&[0; 8]); // pos 0
    want.extend_from_slice(&[0; 12]); // channel, chainCrc, bodyCrc
    want.extend_from_slice(&[0; 4]); // body length 0
    assert_eq!(&data[..48], &want[..]);
    // Entry 1 at pos 48: magic 1, size 48 + body, index 1, pos 48, the body a classic
    // record whose PHYSICALOFFSET (at body offset 28) is pos + 48 = 96.
    let e1 = &data[48..];
    assert_eq!(&e1[0..4], &[0, 0, 0, 1]);
    let size = u32::from_be_bytes(e1[4..8].try_into().unwrap());
    assert_eq!(&e1[8..16], &1u64.to_be_bytes());
    assert_eq!(&e1[24..32], &48u64.to_be_bytes());
    let body_len = u32::from_be_bytes(e1[44..48].try_into().unwrap());
    assert_eq!(size, 48 + body_len);
    let body = &e1[48..48 + body_len as usize];
    assert_eq!(
        u32::from_be_bytes(body[0..4].try_into().unwrap()),
        body_len,
        "TOTALSIZE"
    );
    assert_eq!(
        &body[4..8],
        &0xDAA3_20A7u32.to_be_bytes(),
        "message magic v1"
    );
    assert_eq!(
        &body[28..36],
        &96u64.to_be_bytes(),
        "PHYSICALOFFSET = pos + 48"
    );
    assert_eq!(w.records[0].0, 96);
    // Index record 1 at byte 32: magic, pos, size, index, term.
    let idx = std::fs::read(d.join("index/00000000000000000000")).unwrap();
    assert_eq!(&idx[32..36], &[0, 0, 0, 1]);
    assert_eq!(&idx[36..44], &48u64.to_be_bytes());
    assert_eq!(&idx[44..48], &size.to_be_bytes());
    assert_eq!(&idx[48..56], &1u64.to_be_bytes());
    assert_eq!(&idx[56..64], &1u64.to_be_bytes());
    let ct = std::fs::read_to_string(d.join("currterm")).unwrap();
    assert!(
        ct.contains("currTerm=3\n") && ct.contains("voteLeader=n0\n"),
        "{ct}"
    );
}

#[test]
fn every_entry_is_read_over_several_files_with_blanks_and_noops() {
    let t = tmp();
    let d = t.path().join("dledger-n0");
    let w = write_one(&d, 3000);
    assert!(w.end > 10 * SEG, "several data files: {}", w.end);
    let before = upgrade_support::snapshot(t.path());
    let s = dledger::scan(&d).unwrap();
    assert!(s.problems.is_empty(), "{:?}", s.problems);
    assert_eq!(s.entries.len(), 3000);
    assert_eq!(s.first_index(), Some(0));
    assert_eq!(s.last_index(), Some(2999));
    assert_eq!(s.curr_term, Some(7));
    assert_eq!(s.vote_leader.as_deref(), Some("n1"));
    assert_eq!(s.term(), 7);
    assert_eq!(s.noops(), 6);
    assert_eq!(s.end, w.end);
    assert_eq!(s.divided, (w.end / SEG + 1) * SEG);
    let offsets: Vec<u64> = w.records.iter().map(|r| r.0).collect();
    assert_eq!(s.offsets, offsets);
    assert_eq!(s.records.len(), w.records.len());
    for (meta, (off, rec, _, _)) in s.records.iter().zip(&w.records) {
        assert_eq!(meta.offset, *off);
        assert_eq!(meta.queue_offset, rec.queue_offset);
        assert_eq!(meta.topic, rec.topic);
    }
    assert!(
        s.segments.iter().rev().skip(1).all(|g| g.sealed),
        "every full file blank-sealed"
    );
    let log = DLedgerLog::open(&d, None).unwrap();
    for (off, _, bytes, _) in w.records.iter().step_by(97) {
        assert_eq!(log.read(*off).unwrap().as_deref(), Some(&bytes[..]));
        assert_eq!(
            log.read(*off - 48).unwrap(),
            None,
            "an entry header is no message"
        );
    }
    assert_eq!(log.digest().kind, "dledger");
    assert_eq!(log.divided(), s.divided);
    assert_eq!(
        upgrade_support::snapshot(t.path()),
        before,
        "nothing written"
    );
}

#[test]
fn a_torn_tail_is_cut_as_dledger_cuts_it_and_a_bad_entry_inside_is_a_problem() {
    let t = tmp();
    let d = t.path().join("dledger-n0");
    let w = write_one(&d, 3000);
    let (last_index, _, last_pos, last_size) = *w.entries.last().unwrap();
    let name = format!("{:020}", last_pos / SEG * SEG);
    let path = d.join("data").join(&name);
    let mut b = std::fs::read(&path).unwrap();
    let at = (last_pos % SEG) as usize;
    // Torn: the last entry's body half written.
    for x in &mut b[at + 60..at + last_size as usize] {
        *x = 0;
    }
    std::fs::write(&path, &b).unwrap();
    let s = dledger::scan(&d).unwrap();
    assert!(s.problems.is_empty(), "{:?}", s.problems);
    assert_eq!(s.last_index(), Some(last_index - 1));
    assert_eq!(s.end, last_pos);
    assert!(
        s.notes
            .iter()
            .any(|n| n.contains("torn tail") && n.contains(&name)),
        "{:?}",
        s.notes
    );
    assert!(DLedgerLog::open(&d, None).is_ok());
    // A pos that is not the entry's place, in a full (not the last) file.
    let (idx, _, pos, _) = w.entries[700];
    let name = format!("{:020}", pos / SEG * SEG);
    let path = d.join("data").join(&name);
    let mut b = std::fs::read(&path).unwrap();
    let at = (pos % SEG) as usize;
    b[at + 24..at + 32].copy_from_slice(&(pos + 4096).to_be_bytes());
    std::fs::write(&path, &b).unwrap();
    let s = dledger::scan(&d).unwrap();
    let p = s.problems.first().expect("a problem");
    assert_eq!(p.file, format!("data/{name}"));
    assert_eq!(p.offset, Some(pos));
    assert!(p.what.contains("pos"), "{p}");
    assert_eq!(s.last_index(), Some(idx - 1));
    let err = DLedgerLog::open(&d, None)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains(&name) && err.contains("nothing was changed"),
        "{err}"
    );
}

#[test]
fn index_gaps_terms_going_down_and_bad_currterm_are_named() {
    let t = tmp();
    let d = t.path().join("dledger-n0");
    let w = write_one(&d, 1200);
    let (_, _, pos, _) = w.entries[100];
    let path = d.join("data/00000000000000000000");
    let mut b = std::fs::read(&path).unwrap();
    let at = pos as usize;
    b[at + 8..at + 16].copy_from_slice(&500u64.to_be_bytes());
    std::fs::write(&path, &b).unwrap();
    let s = dledger::scan(&d).unwrap();
    let p = s.problems.first().expect("a problem");
    assert!(p.what.contains("index 500 after index 99"), "{p}");
    assert_eq!(p.offset, Some(pos));
    std::fs::write(d.join("currterm"), "currTerm=seven\n").unwrap();
    let s = dledger::scan(&d).unwrap();
    assert!(
        s.problems
            .iter()
            .any(|p| p.file == "currterm" && p.what.contains("seven")),
        "{:?}",
        s.problems
    );
}

#[test]
fn a_served_prefix_leaves_the_tail_out() {
    let t = tmp();
    let d = t.path().join("dledger-n0");
    let w = write_one(&d, 3000);
    let log = DLedgerLog::open(&d, Some(1500)).unwrap();
    let s = log.scan();
    assert_eq!(s.last_index(), Some(1500));
    assert!(s.left_out > 0);
    let (_, _, pos, size) = w.entries[1500];
    assert_eq!(s.end, pos + u64::from(size));
    assert_eq!(s.divided, (s.end / SEG + 1) * SEG);
    let last_served = w.records.iter().filter(|r| r.3 <= 1500).last().unwrap();
    assert!(log.read(last_served.0).unwrap().is_some());
    let first_left = w.records.iter().find(|r| r.3 > 1500).unwrap();
    assert_eq!(log.read(first_left.0).unwrap(), None);
    let full = DLedgerLog::open(&d, None).unwrap();
    assert_ne!(full.digest(), log.digest());
}

fn store_cmd(args: &[&std::ffi::OsStr]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rmqraft"))
        .arg("store")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn store_inspect_and_convert_dry_run_understand_dledger_stores() {
    let t = tmp();
    let roots: Vec<_> = (0..3).map(|i| t.path().join(format!("node{i}"))).collect();
    let all = items(1800, 3, 600);
    let mut written = Vec::new();
    for (i, r) in roots.iter().enumerate() {
        let n = if i == 2 { 1700 } else { 1800 };
        written.push(write(
            &r.join(format!("dledger-n{i}")),
            SEG,
            INDEX_FILE,
            &all[..n],
            4,
            "n0",
        ));
        dledger_support::write_config(r, 3);
    }
    let before = upgrade_support::snapshot(t.path());
    let (code, out) = store_cmd(&["inspect".as_ref(), roots[0].as_os_str()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("DLedger store"), "{out}");
    assert!(
        out.contains("entries: 1800 (1797 messages, 3 no-ops), indexes 0..=1799, terms 1..=3"),
        "{out}"
    );
    assert!(out.contains("currTerm=4 voteLeader=n0"), "{out}");
    assert!(out.contains("TakeoverTopic:0"), "{out}");
    assert!(
        out.contains("config: 1 topics, 2 consumer offsets"),
        "{out}"
    );
    let (code, out) = store_cmd(&[
        "inspect".as_ref(),
        roots[1].join("dledger-n1").as_os_str(),
        "--json".as_ref(),
    ]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["kind"], "dledger");
    assert_eq!(v["lastIndex"], 1799);
    assert_eq!(v["end"], written[1].end);

    let dirs: Vec<&std::ffi::OsStr> = roots.iter().map(|r| r.as_os_str()).collect();
    let mut args = vec!["convert".as_ref(), "--dry-run".as_ref()];
    args.extend(dirs.iter().copied());
    let (code, out) = store_cmd(&args);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Raft continues from term 4"), "{out}");
    assert!(out.contains("the copies agree through index 1699"), "{out}");
    assert!(out.contains("rmqraftTakeOverDLedgerThrough=1699"), "{out}");
    assert!(out.contains("rmqraft-n2"), "{out}");
    assert!(out.contains("not touched"), "{out}");
    let (code, out) = store_cmd(&["convert".as_ref(), dirs[0]]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("only with --dry-run"), "{out}");
    // A problem inside a copy: convert says it cannot go ahead, inspect exits 1.
    let (_, _, pos, _) = written[0].entries[300];
    let p = roots[0]
        .join("dledger-n0/data")
        .join(format!("{:020}", pos / SEG * SEG));
    let mut b = std::fs::read(&p).unwrap();
    let at = (pos % SEG) as usize;
    b[at..at + 4].copy_from_slice(&9i32.to_be_bytes());
    std::fs::write(&p, &b).unwrap();
    let (code, out) = store_cmd(&args);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("problem:") && out.contains("magic 9"), "{out}");
    let (code, out) = store_cmd(&["inspect".as_ref(), roots[0].as_os_str()]);
    assert_eq!(code, 1, "{out}");
    let mut after = upgrade_support::snapshot(t.path());
    let changed = Path::new("node0/dledger-n0/data").join(format!("{:020}", pos / SEG * SEG));
    after.insert(changed.clone(), before[&changed]);
    assert_eq!(after, before, "the tools wrote nothing");
}
