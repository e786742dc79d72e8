//! Tests of the boundary that need no running engine; the C, C++ and Java programs under
//! ffi-tests/ test the ABI end to end.

use super::boundary::boundary;
use super::*;
use crate::error::{Error, ErrorKind, Result};
use std::ffi::{c_char, CStr};

fn last_error() -> String {
    let mut buf = [0 as c_char; 256];
    let len = unsafe { rmqraft_last_error(buf.as_mut_ptr(), buf.len()) };
    let text = unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(len, text.len());
    text
}

#[test]
fn committed_header_is_current() {
    let generated = include_str!(concat!(env!("OUT_DIR"), "/rmqraft.h"));
    let committed = include_str!("../../include/rmqraft.h");
    assert!(
        generated == committed,
        "include/rmqraft.h is stale: run `RMQRAFT_UPDATE_HEADER=1 cargo build` and commit it"
    );
}

/// Names of `rmqraft_` functions declared in a C header: `rmqraft_x(` after a return type.
fn declared_functions(header: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in header.lines() {
        let line = line.trim_start();
        if line.starts_with('*') || line.starts_with("/*") || line.starts_with("typedef") {
            continue;
        }
        for (at, _) in line.match_indices("rmqraft_") {
            let rest = &line[at..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            if at > 0 && rest[end..].starts_with('(') && !line[..at].ends_with('_') {
                names.push(rest[..end].to_string());
            }
        }
    }
    names
}

#[test]
fn c_api_doc_names_every_function() {
    let header = include_str!("../../include/rmqraft.h");
    let doc = include_str!("../../docs/C-API.md");
    let functions = declared_functions(header);
    // Sanity: the parser finds the functions (a broken parser would pass vacuously).
    assert!(
        functions.len() >= 15 && functions.iter().any(|f| f == "rmqraft_group_wait_leader"),
        "{functions:?}"
    );
    let missing: Vec<_> = functions
        .iter()
        .filter(|f| !doc.contains(&format!("`{f}`")) && !doc.contains(&format!("{f}(")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/C-API.md does not name {missing:?}, declared in include/rmqraft.h"
    );
}

#[test]
fn a_panic_becomes_a_result_and_a_message() {
    let r = boundary("test_fn", || -> Result<()> { panic!("boom {}", 7) });
    assert_eq!(r, rmqraft_result::RMQRAFT_ERR_PANIC);
    assert_eq!(last_error(), "test_fn: panicked: boom 7");
    // A later success leaves the detail alone; a later failure replaces it.
    assert_eq!(
        boundary("ok_fn", || -> Result<()> { Ok(()) }),
        rmqraft_result::RMQRAFT_OK
    );
    assert_eq!(last_error(), "test_fn: panicked: boom 7");
    let r = boundary("busy_fn", || -> Result<()> {
        Err(Error::new(ErrorKind::Busy, "full"))
    });
    assert_eq!(r, rmqraft_result::RMQRAFT_ERR_BUSY);
    assert_eq!(last_error(), "busy_fn: full");
}

#[test]
fn last_error_truncates_and_reports_the_full_length() {
    let _ = boundary("f", || -> Result<()> { Err(Error::config("abcdef")) });
    let mut buf = [b'x' as c_char; 5];
    let len = unsafe { rmqraft_last_error(buf.as_mut_ptr(), 4) };
    assert_eq!(len, "f: abcdef".len());
    assert_eq!(unsafe { CStr::from_ptr(buf.as_ptr()) }.to_bytes(), b"f: ");
    assert_eq!(buf[4], b'x' as c_char, "nothing written past cap");
    let mut one = [b'x' as c_char; 1];
    assert_eq!(unsafe { rmqraft_last_error(one.as_mut_ptr(), 0) }, len);
    assert_eq!(one[0], b'x' as c_char, "cap 0 writes nothing");
    assert_eq!(unsafe { rmqraft_last_error(std::ptr::null_mut(), 0) }, len);
}

#[test]
fn last_error_is_per_thread() {
    let _ = boundary("here", || -> Result<()> { Err(Error::config("mine")) });
    std::thread::spawn(|| {
        assert_eq!(unsafe { rmqraft_last_error(std::ptr::null_mut(), 0) }, 0);
        let _ = boundary("there", || -> Result<()> { Err(Error::config("theirs")) });
    })
    .join()
    .unwrap();
    assert_eq!(last_error(), "here: mine");
}

#[test]
fn result_names_match_the_error_kinds() {
    let name = |code: u32| {
        unsafe { CStr::from_ptr(rmqraft_result_name(rmqraft_result_arg(code))) }
            .to_str()
            .unwrap()
    };
    assert_eq!(name(0), "RMQRAFT_OK");
    for kind in ErrorKind::ALL {
        let code = rmqraft_result::from(kind) as u32;
        assert_eq!(code as i32, kind.code());
        assert_eq!(name(code), kind.abi_name());
    }
    assert_eq!(name(19), "RMQRAFT_UNKNOWN_RESULT");
    assert_eq!(name(u32::MAX), "RMQRAFT_UNKNOWN_RESULT");
}

#[test]
fn version_matches_the_package() {
    let expected = env!("CARGO_PKG_VERSION");
    let parts: Vec<u32> = expected.split('.').map(|p| p.parse().unwrap()).collect();
    assert_eq!(rmqraft_version(), parts[0] << 16 | parts[1] << 8 | parts[2]);
    assert_eq!(
        unsafe { CStr::from_ptr(rmqraft_version_string()) }
            .to_str()
            .unwrap(),
        expected
    );
}

#[test]
fn null_arguments_are_rejected_before_any_work() {
    let mut engine = std::ptr::null_mut();
    assert_eq!(
        unsafe { rmqraft_engine_open(std::ptr::null(), std::ptr::null_mut()) },
        rmqraft_result::RMQRAFT_ERR_INVALID_ARGUMENT
    );
    assert_eq!(
        unsafe { rmqraft_engine_open(c"\xff".as_ptr(), &mut engine) },
        rmqraft_result::RMQRAFT_ERR_INVALID_ARGUMENT
    );
    assert!(engine.is_null(), "no output on failure");
    assert!(last_error().contains("not UTF-8"), "{}", last_error());
    let mut meta = rmqraft_entry_meta::default();
    let r = unsafe { rmqraft_group_append(std::ptr::null_mut(), b"x".as_ptr(), 1, 10, &mut meta) };
    assert_eq!(r, rmqraft_result::RMQRAFT_ERR_INVALID_ARGUMENT);
    assert_eq!(last_error(), "rmqraft_group_append: group is NULL");
    unsafe {
        rmqraft_engine_close(std::ptr::null_mut());
        rmqraft_group_close(std::ptr::null_mut());
    }
}
