//! JSON as RocketMQ's Java side writes it (fastjson): standard JSON, except that maps with
//! integer keys (`HashMap<Long, String> brokerAddrs`, a queue mapping's `currIdMap`) come
//! with the keys unquoted, `{0:"127.0.0.1:10911"}`. [`parse_lenient`] accepts both.

pub use serde_json::{Map, Value};

/// Parses standard JSON, or fastjson's JSON with bare object keys.
pub fn parse_lenient(bytes: &[u8]) -> Result<Value, String> {
    match serde_json::from_slice(bytes) {
        Ok(v) => Ok(v),
        Err(first) => {
            let quoted = quote_bare_keys(bytes).ok_or_else(|| first.to_string())?;
            serde_json::from_slice(&quoted).map_err(|_| first.to_string())
        }
    }
}

/// Rewrites `{0:"a",-1:"b"}` as `{"0":"a","-1":"b"}`; `None` when nothing needed quoting.
fn quote_bare_keys(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len() + 16);
    // true for an object, false for an array; the depth is bounded by the input length.
    let mut stack: Vec<bool> = Vec::new();
    let mut expect_key = false;
    let mut changed = false;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'"' => {
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                let end = (i + 1).min(bytes.len());
                out.extend_from_slice(&bytes[start..end]);
                expect_key = false;
                i = end;
                continue;
            }
            b'{' => {
                stack.push(true);
                expect_key = true;
            }
            b'[' => {
                stack.push(false);
                expect_key = false;
            }
            b'}' | b']' => {
                stack.pop();
                expect_key = false;
            }
            b',' => expect_key = stack.last() == Some(&true),
            b':' => expect_key = false,
            b' ' | b'\t' | b'\r' | b'\n' => {}
            _ if expect_key => {
                let start = i;
                while i < bytes.len() && !matches!(bytes[i], b':' | b' ' | b'\t' | b'\r' | b'\n') {
                    i += 1;
                }
                out.push(b'"');
                out.extend_from_slice(&bytes[start..i]);
                out.push(b'"');
                expect_key = false;
                changed = true;
                continue;
            }
            _ => {}
        }
        out.push(c);
        i += 1;
    }
    changed.then_some(out)
}

/// Appends `s` as a JSON string literal.
pub fn write_string(out: &mut Vec<u8>, s: &str) {
    // Writing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// A number, or a string holding one (Java writes some header fields either way).
pub fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub fn as_i32(v: &Value) -> Option<i32> {
    as_i64(v).and_then(|n| i32::try_from(n).ok())
}

pub fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => Some(s.eq_ignore_ascii_case("true")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fastjson_integer_keys_are_accepted() {
        let v = parse_lenient(
            br#"{"brokerAddrs":{0:"127.0.0.1:10911",1:"127.0.0.1:10921"},"s":"a:{b"}"#,
        )
        .unwrap();
        assert_eq!(v["brokerAddrs"]["0"], "127.0.0.1:10911");
        assert_eq!(v["brokerAddrs"]["1"], "127.0.0.1:10921");
        assert_eq!(v["s"], "a:{b");
        let v = parse_lenient(br#"{"m":{ -3 : [1,{7:"x"}] }}"#).unwrap();
        assert_eq!(v["m"]["-3"][1]["7"], "x");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [&b"{"[..], b"{0", b"{0:", b"\"", b"{\"a\\", b"}}]]", b"{:1}"] {
            assert!(
                parse_lenient(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
