//! The remoting frame against byte strings laid out as RocketMQ's Java sources document
//! them (RemotingCommand.encode, RocketMQSerializable, fastjson's field order), and the
//! decoder against arbitrary input.

use proptest::prelude::*;
use rmqraft::remoting::codec::{self, CodecError, LanguageCode, RemotingCommand, SerializeType};
use std::collections::BTreeMap;

const MAX: usize = codec::FRAME_MAX_BYTES_DEFAULT;

fn frame(serialize_type: u8, header: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&((4 + header.len() + body.len()) as u32).to_be_bytes());
    out.push(serialize_type);
    out.extend_from_slice(&(header.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(header);
    out.extend_from_slice(body);
    out
}

/// A GET_ROUTEINFO_BY_TOPIC request as a Java 4.9.8 client's fastjson writes it.
const JAVA_JSON_REQUEST: &str = r#"{"code":105,"extFields":{"topic":"TopicTest"},"flag":0,"language":"JAVA","opaque":7,"serializeTypeCurrentRPC":"JSON","version":409}"#;

#[test]
fn java_json_request_decodes() {
    let bytes = frame(0, JAVA_JSON_REQUEST.as_bytes(), b"");
    let (cmd, used) = codec::decode(&bytes, MAX).unwrap().unwrap();
    assert_eq!(used, bytes.len());
    assert_eq!(cmd.code, 105);
    assert_eq!(cmd.language, LanguageCode::JAVA);
    assert_eq!(cmd.version, 409);
    assert_eq!(cmd.opaque, 7);
    assert_eq!(cmd.flag, 0);
    assert_eq!(cmd.remark, None);
    assert_eq!(cmd.field("topic"), Some("TopicTest"));
    assert_eq!(cmd.serialize_type, SerializeType::Json);
    assert!(cmd.body.is_empty());
}

#[test]
fn json_encoding_matches_fastjson_byte_for_byte() {
    let mut cmd = RemotingCommand::request(105, 7).with_field("topic", "TopicTest");
    cmd.version = 409;
    assert_eq!(
        cmd.encode().unwrap(),
        frame(0, JAVA_JSON_REQUEST.as_bytes(), b"")
    );
}

#[test]
fn json_response_carries_serialize_type_and_remark() {
    let req = RemotingCommand::request(9999, 42);
    let mut resp = req.response_to(3, Some(" request type 9999 not supported".into()));
    resp.version = 409;
    let bytes = resp.encode().unwrap();
    let header = &bytes[8..];
    assert_eq!(
        std::str::from_utf8(header).unwrap(),
        r#"{"code":3,"flag":1,"language":"JAVA","opaque":42,"remark":" request type 9999 not supported","serializeTypeCurrentRPC":"JSON","version":409}"#
    );
}

/// Other clients' JSON: numbers as strings, language as a number, extra fields, fastjson's
/// unquoted keys.
#[test]
fn tolerant_json_headers() {
    let header = r#"{"code":"34","language":9,"opaque":-5,"flag":2,"extFields":{"n":3,"b":true,"z":null},"suspended":false,"remark":null}"#;
    let (cmd, _) = codec::decode(&frame(0, header.as_bytes(), b"xy"), MAX)
        .unwrap()
        .unwrap();
    assert_eq!(cmd.code, 34);
    assert_eq!(cmd.language, LanguageCode::GO);
    assert_eq!(cmd.opaque, -5);
    assert!(cmd.is_oneway());
    assert_eq!(cmd.field("n"), Some("3"));
    assert_eq!(cmd.field("b"), Some("true"));
    assert_eq!(cmd.field("z"), None);
    assert_eq!(cmd.body, b"xy");
}

/// RocketMQSerializable.rocketMQProtocolEncode's layout, written out by hand.
fn java_binary_request() -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&[0x00, 0x69]); // code 105
    h.push(0x00); // JAVA
    h.extend_from_slice(&[0x01, 0x99]); // version 409
    h.extend_from_slice(&[0, 0, 0, 7]); // opaque
    h.extend_from_slice(&[0, 0, 0, 0]); // flag
    h.extend_from_slice(&[0, 0, 0, 0]); // no remark
    h.extend_from_slice(&[0, 0, 0, 20]); // extFields bytes
    h.extend_from_slice(&[0, 5]);
    h.extend_from_slice(b"topic");
    h.extend_from_slice(&[0, 0, 0, 9]);
    h.extend_from_slice(b"TopicTest");
    assert_eq!(h.len(), 41);
    h
}

#[test]
fn java_binary_request_decodes_and_encodes_identically() {
    let h = java_binary_request();
    let bytes = frame(1, &h, b"body");
    assert_eq!(&bytes[..8], &[0, 0, 0, 49, 1, 0, 0, 41]);
    let (cmd, used) = codec::decode(&bytes, MAX).unwrap().unwrap();
    assert_eq!(used, 53);
    assert_eq!(cmd.code, 105);
    assert_eq!(cmd.version, 409);
    assert_eq!(cmd.opaque, 7);
    assert_eq!(cmd.remark, None);
    assert_eq!(cmd.field("topic"), Some("TopicTest"));
    assert_eq!(cmd.serialize_type, SerializeType::RocketMq);
    assert_eq!(cmd.body, b"body");
    assert_eq!(cmd.encode().unwrap(), bytes);
}

#[test]
fn binary_response_with_remark() {
    let mut cmd = RemotingCommand::request(3, -1);
    cmd.flag = 1;
    cmd.version = 0;
    cmd.remark = Some("é".into());
    cmd.serialize_type = SerializeType::RocketMq;
    let bytes = cmd.encode().unwrap();
    let expected_header = [
        0x00, 0x03, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 0, 0, 0, 2, 0xc3, 0xa9,
        0, 0, 0, 0,
    ];
    assert_eq!(bytes, frame(1, &expected_header, b""));
}

#[test]
fn bad_frames_are_errors() {
    // Announced length over the limit: refused from the 4 length bytes alone.
    let huge = (MAX as u32).to_be_bytes();
    assert!(matches!(
        codec::decode(&huge, MAX),
        Err(CodecError::FrameTooLarge { .. })
    ));
    // Header longer than the frame.
    let mut bad = frame(0, b"{}", b"");
    bad[7] = 200;
    assert!(matches!(
        codec::decode(&bad, MAX),
        Err(CodecError::HeaderLength { .. })
    ));
    // Unknown serialize type.
    assert!(matches!(
        codec::decode(&frame(7, b"{}", b""), MAX),
        Err(CodecError::UnknownSerializeType(7))
    ));
    // JSON without a code, JSON that is not an object, not JSON.
    for h in [
        &b"{}"[..],
        b"[1]",
        b"{\"code\":",
        b"{\"code\":1,\"extFields\":[]}",
    ] {
        assert!(
            matches!(
                codec::decode(&frame(0, h, b""), MAX),
                Err(CodecError::Header(_))
            ),
            "{h:?}"
        );
    }
    // Binary: a remark length past the header, a negative key length, truncated fields.
    let mut h = java_binary_request();
    h[16] = 0x7f;
    assert!(matches!(
        codec::decode(&frame(1, &h, b""), MAX),
        Err(CodecError::Header(_))
    ));
    let mut h = java_binary_request();
    h[21] = 0xff;
    assert!(matches!(
        codec::decode(&frame(1, &h, b""), MAX),
        Err(CodecError::Header(_))
    ));
    let h = java_binary_request();
    for cut in 0..h.len() {
        assert!(
            matches!(
                codec::decode(&frame(1, &h[..cut], b""), MAX),
                Err(CodecError::Header(_))
            ),
            "cut at {cut}"
        );
    }
    // Partial frames wait for more bytes.
    let whole = frame(1, &java_binary_request(), b"abc");
    for cut in 0..whole.len() {
        assert_eq!(codec::decode(&whole[..cut], MAX), Ok(None), "cut at {cut}");
    }
}

fn arb_command() -> impl Strategy<Value = RemotingCommand> {
    (
        any::<i16>(),
        0u8..14,
        any::<i16>(),
        any::<i32>(),
        0i32..4,
        proptest::option::of("\\PC{1,20}"),
        proptest::collection::btree_map("[a-zA-Z0-9_]{1,12}", "\\PC{0,20}", 0..6),
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(
            |(code, lang, version, opaque, flag, remark, ext, binary, body)| RemotingCommand {
                code: i32::from(code),
                language: LanguageCode(lang),
                version: i32::from(version),
                opaque,
                flag,
                remark,
                ext_fields: ext.into_iter().collect::<BTreeMap<_, _>>(),
                serialize_type: if binary {
                    SerializeType::RocketMq
                } else {
                    SerializeType::Json
                },
                body,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn round_trip(cmd in arb_command()) {
        let bytes = cmd.encode().unwrap();
        let (back, used) = codec::decode(&bytes, MAX).unwrap().unwrap();
        prop_assert_eq!(used, bytes.len());
        prop_assert_eq!(back, cmd);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = codec::decode(&bytes, 1024);
    }

    #[test]
    fn mutated_frames_never_panic(cmd in arb_command(), at in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
        let mut bytes = cmd.encode().unwrap();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        let _ = codec::decode(&bytes, MAX);
        let c = cut.index(bytes.len());
        let _ = codec::decode(&bytes[..c], MAX);
        // Frames with a valid length prefix but arbitrary header/body content.
        if bytes.len() > 8 {
            let _ = codec::decode_frame(&bytes[4..]);
        }
    }
}
