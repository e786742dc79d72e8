//! The classic RocketMQ 4.x remoting frame and its two header encodings.
//!
//! ```text
//! frame   = length:i32 | kind:i32 | header | body          (all integers big-endian)
//! length  = 4 + header length + body length                 (the bytes after itself)
//! kind    = serialize type << 24 | header length            (type 0 JSON, 1 ROCKETMQ)
//! ```
//!
//! The JSON header is RemotingCommand as fastjson writes it:
//! `{"code":105,"extFields":{"topic":"T"},"flag":0,"language":"JAVA","opaque":3,
//! "serializeTypeCurrentRPC":"JSON","version":409}`.
//! The ROCKETMQ header is RocketMQSerializable's layout:
//!
//! ```text
//! code:i16 language:u8 version:i16 opaque:i32 flag:i32
//! remark_len:i32 remark
//! ext_len:i32 ( key_len:i16 key value_len:i32 value )*      (ext_len bytes in all)
//! ```
//!
//! Decoding never trusts a length: the frame's length is checked against the limit before
//! its body is waited for, and every field read is bounds-checked; bad input is an error,
//! never a panic.

use super::json;
use std::collections::BTreeMap;
use std::fmt;

/// RocketMQ's default `com.rocketmq.remoting.frameMaxLength`: a whole frame, its length
/// field included, is at most this long.
pub const FRAME_MAX_BYTES_DEFAULT: usize = 16 * 1024 * 1024;

/// Flag bit 0: the command is a response.
pub const FLAG_RESPONSE: i32 = 1;
/// Flag bit 1: the request wants no response.
pub const FLAG_ONEWAY: i32 = 1 << 1;

/// The largest header the 24-bit header length can describe.
const HEADER_MAX_BYTES: usize = 0x00FF_FFFF;

/// How a frame's header is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SerializeType {
    Json,
    RocketMq,
}

impl SerializeType {
    pub fn code(self) -> u8 {
        match self {
            SerializeType::Json => 0,
            SerializeType::RocketMq => 1,
        }
    }

    pub fn from_code(code: u8) -> Option<SerializeType> {
        match code {
            0 => Some(SerializeType::Json),
            1 => Some(SerializeType::RocketMq),
            _ => None,
        }
    }

    /// The name RocketMQ's JSON headers carry in `serializeTypeCurrentRPC`.
    pub fn name(self) -> &'static str {
        match self {
            SerializeType::Json => "JSON",
            SerializeType::RocketMq => "ROCKETMQ",
        }
    }
}

/// A client's language (LanguageCode.java): a byte in ROCKETMQ headers, a name in JSON ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LanguageCode(pub u8);

impl LanguageCode {
    pub const JAVA: LanguageCode = LanguageCode(0);
    pub const CPP: LanguageCode = LanguageCode(1);
    pub const OTHER: LanguageCode = LanguageCode(7);
    pub const GO: LanguageCode = LanguageCode(9);
    pub const RUST: LanguageCode = LanguageCode(12);

    const NAMES: [&'static str; 14] = [
        "JAVA", "CPP", "DOTNET", "PYTHON", "DELPHI", "ERLANG", "RUBY", "OTHER", "HTTP", "GO",
        "PHP", "OMS", "RUST", "NODE_JS",
    ];

    /// The enum name, or "OTHER" for a byte RocketMQ does not know.
    pub fn name(self) -> &'static str {
        Self::NAMES.get(self.0 as usize).copied().unwrap_or("OTHER")
    }

    pub fn from_name(name: &str) -> LanguageCode {
        Self::NAMES
            .iter()
            .position(|n| *n == name)
            .map(|i| LanguageCode(i as u8))
            .unwrap_or(Self::OTHER)
    }
}

/// Why bytes are not a frame. Any of them closes the connection that sent them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodecError {
    /// The length field announces more than the limit allows.
    FrameTooLarge {
        frame_bytes: u64,
        max_bytes: usize,
    },
    /// The length field is below the 4 bytes of the header-length field.
    FrameTooShort {
        length: i32,
    },
    /// The header length does not fit in the frame.
    HeaderLength {
        header_bytes: usize,
        frame_bytes: usize,
    },
    UnknownSerializeType(u8),
    /// The header's content is not a RemotingCommand.
    Header(String),
    /// A command too large to be framed.
    Encode(String),
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::FrameTooLarge {
                frame_bytes,
                max_bytes,
            } => write!(
                f,
                "frame of {frame_bytes} bytes is over the limit of {max_bytes} bytes"
            ),
            CodecError::FrameTooShort { length } => {
                write!(f, "frame length {length} is below the minimum of 4")
            }
            CodecError::HeaderLength {
                header_bytes,
                frame_bytes,
            } => write!(
                f,
                "header length {header_bytes} does not fit in a frame of {frame_bytes} bytes"
            ),
            CodecError::UnknownSerializeType(t) => {
                write!(
                    f,
                    "unknown serialize type {t} (0 JSON and 1 ROCKETMQ are known)"
                )
            }
            CodecError::Header(m) => write!(f, "bad header: {m}"),
            CodecError::Encode(m) => write!(f, "cannot encode: {m}"),
        }
    }
}

impl std::error::Error for CodecError {}

/// One request or response (RocketMQ's RemotingCommand).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotingCommand {
    /// A request code, or a response code in a response.
    pub code: i32,
    pub language: LanguageCode,
    /// The sender's MQVersion ordinal.
    pub version: i32,
    /// Matches a response to its request.
    pub opaque: i32,
    /// Bit 0 response, bit 1 oneway.
    pub flag: i32,
    pub remark: Option<String>,
    /// The command's custom header, as strings.
    pub ext_fields: BTreeMap<String, String>,
    /// The header encoding it came in or goes out in.
    pub serialize_type: SerializeType,
    pub body: Vec<u8>,
}

impl RemotingCommand {
    /// A request as this crate sends it: Rust's language code is unknown to old Java
    /// peers, so commands say JAVA, as RocketMQ's own broker does.
    pub fn request(code: i32, opaque: i32) -> RemotingCommand {
        RemotingCommand {
            code,
            language: LanguageCode::JAVA,
            version: super::codes::version::V4_9_8,
            opaque,
            flag: 0,
            remark: None,
            ext_fields: BTreeMap::new(),
            serialize_type: SerializeType::Json,
            body: Vec::new(),
        }
    }

    /// The response to this request: same opaque and serialize type, response flag set.
    pub fn response_to(&self, code: i32, remark: Option<String>) -> RemotingCommand {
        RemotingCommand {
            code,
            language: LanguageCode::JAVA,
            version: super::codes::version::V4_9_8,
            opaque: self.opaque,
            flag: FLAG_RESPONSE,
            remark,
            ext_fields: BTreeMap::new(),
            serialize_type: self.serialize_type,
            body: Vec::new(),
        }
    }

    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }

    pub fn field(&self, name: &str) -> Option<&str> {
        self.ext_fields.get(name).map(String::as_str)
    }

    /// A header field the request must carry; the error is RocketMQ's text for a missing
    /// `@CFNotNull` field.
    pub fn required(&self, name: &str) -> Result<&str, String> {
        self.field(name)
            .ok_or_else(|| format!("the custom field <{name}> is null"))
    }

    /// A required integer field (Java's Integer/Long header fields travel as text).
    pub fn required_i64(&self, name: &str) -> Result<i64, String> {
        let v = self.required(name)?;
        v.trim()
            .parse()
            .map_err(|_| format!("the custom field <{name}> is not a number: '{v}'"))
    }

    /// An optional integer field; absent or not a number is `None`.
    pub fn optional_i64(&self, name: &str) -> Option<i64> {
        self.field(name).and_then(|v| v.trim().parse().ok())
    }

    /// An optional boolean field, parsed as Java's Boolean.parseBoolean does.
    pub fn optional_bool(&self, name: &str) -> Option<bool> {
        self.field(name)
            .map(|v| v.trim().eq_ignore_ascii_case("true"))
    }

    pub fn set_field(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.ext_fields.insert(name.into(), value.into());
    }

    pub fn with_field(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.set_field(name, value);
        self
    }

    pub fn with_body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }

    /// The whole frame, length field first.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        let header = match self.serialize_type {
            SerializeType::Json => self.json_header(),
            SerializeType::RocketMq => self.binary_header()?,
        };
        if header.len() > HEADER_MAX_BYTES {
            return Err(CodecError::Encode(format!(
                "header of {} bytes is over the 24-bit limit",
                header.len()
            )));
        }
        let length = 4 + header.len() + self.body.len();
        if length > i32::MAX as usize {
            return Err(CodecError::Encode(format!(
                "frame of {length} bytes is over 2^31"
            )));
        }
        let mut out = Vec::with_capacity(4 + length);
        out.extend_from_slice(&(length as i32).to_be_bytes());
        let kind = (u32::from(self.serialize_type.code()) << 24) | header.len() as u32;
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&self.body);
        Ok(out)
    }

    /// fastjson's field order (alphabetical); null remark and empty extFields left out,
    /// as fastjson leaves out nulls.
    fn json_header(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(format!("{{\"code\":{}", self.code).as_bytes());
        if !self.ext_fields.is_empty() {
            out.extend_from_slice(b",\"extFields\":{");
            for (i, (k, v)) in self.ext_fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json::write_string(&mut out, k);
                out.push(b':');
                json::write_string(&mut out, v);
            }
            out.push(b'}');
        }
        out.extend_from_slice(
            format!(
                ",\"flag\":{},\"language\":\"{}\",\"opaque\":{}",
                self.flag,
                self.language.name(),
                self.opaque
            )
            .as_bytes(),
        );
        if let Some(remark) = &self.remark {
            out.extend_from_slice(b",\"remark\":");
            json::write_string(&mut out, remark);
        }
        out.extend_from_slice(
            format!(
                ",\"serializeTypeCurrentRPC\":\"{}\",\"version\":{}}}",
                self.serialize_type.name(),
                self.version
            )
            .as_bytes(),
        );
        out
    }

    /// RocketMQSerializable's layout. Code and version are 16-bit there; RocketMQ truncates
    /// larger values the same way.
    fn binary_header(&self) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&(self.code as i16).to_be_bytes());
        out.push(self.language.0);
        out.extend_from_slice(&(self.version as i16).to_be_bytes());
        out.extend_from_slice(&self.opaque.to_be_bytes());
        out.extend_from_slice(&self.flag.to_be_bytes());
        let remark = self.remark.as_deref().unwrap_or("");
        out.extend_from_slice(&(remark.len() as i32).to_be_bytes());
        out.extend_from_slice(remark.as_bytes());
        let ext_at = out.len();
        out.extend_from_slice(&0i32.to_be_bytes());
        for (k, v) in &self.ext_fields {
            if k.len() > i16::MAX as usize {
                return Err(CodecError::Encode(format!(
                    "extFields key of {} bytes is over the 16-bit limit",
                    k.len()
                )));
            }
            out.extend_from_slice(&(k.len() as i16).to_be_bytes());
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(&(v.len() as i32).to_be_bytes());
            out.extend_from_slice(v.as_bytes());
        }
        let ext_len = out.len() - ext_at - 4;
        out[ext_at..ext_at + 4].copy_from_slice(&(ext_len as i32).to_be_bytes());
        Ok(out)
    }
}

/// The size of the frame starting at `buf` (its length field included), once its 4-byte
/// length field has arrived: checked against `max_bytes` before anything else is read.
pub fn frame_size(buf: &[u8], max_bytes: usize) -> Result<Option<usize>, CodecError> {
    let Some(prefix) = buf.get(..4) else {
        return Ok(None);
    };
    let length = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    if length < 4 {
        return Err(CodecError::FrameTooShort { length });
    }
    let frame_bytes = length as u64 + 4;
    if frame_bytes > max_bytes as u64 {
        return Err(CodecError::FrameTooLarge {
            frame_bytes,
            max_bytes,
        });
    }
    Ok(Some(frame_bytes as usize))
}

/// Decodes the first frame in `buf` if it has arrived whole: the command and the bytes it
/// took.
pub fn decode(
    buf: &[u8],
    max_bytes: usize,
) -> Result<Option<(RemotingCommand, usize)>, CodecError> {
    let Some(size) = frame_size(buf, max_bytes)? else {
        return Ok(None);
    };
    let Some(frame) = buf.get(4..size) else {
        return Ok(None);
    };
    Ok(Some((decode_frame(frame)?, size)))
}

/// Decodes a frame without its length field: `kind | header | body`.
pub fn decode_frame(frame: &[u8]) -> Result<RemotingCommand, CodecError> {
    let mut r = Reader::new(frame);
    let kind = r.u32().ok_or(CodecError::FrameTooShort {
        length: frame.len() as i32,
    })?;
    let header_bytes = (kind & 0x00FF_FFFF) as usize;
    let type_code = (kind >> 24) as u8;
    if header_bytes > frame.len() - 4 {
        return Err(CodecError::HeaderLength {
            header_bytes,
            frame_bytes: frame.len() + 4,
        });
    }
    let header = &frame[4..4 + header_bytes];
    let body = frame[4 + header_bytes..].to_vec();
    let mut cmd = match SerializeType::from_code(type_code) {
        Some(SerializeType::Json) => decode_json_header(header)?,
        Some(SerializeType::RocketMq) => decode_binary_header(header)?,
        None => return Err(CodecError::UnknownSerializeType(type_code)),
    };
    cmd.body = body;
    Ok(cmd)
}

fn header_err(m: impl Into<String>) -> CodecError {
    CodecError::Header(m.into())
}

fn decode_json_header(header: &[u8]) -> Result<RemotingCommand, CodecError> {
    let value = json::parse_lenient(header).map_err(|e| header_err(format!("JSON: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| header_err("JSON header is not an object"))?;
    let int = |name: &str| -> Result<i32, CodecError> {
        match obj.get(name) {
            None | Some(json::Value::Null) => Ok(0),
            Some(v) => json::as_i32(v)
                .ok_or_else(|| header_err(format!("{name} is not a 32-bit integer: {v}"))),
        }
    };
    let code = match obj.get("code") {
        Some(v) => json::as_i32(v)
            .ok_or_else(|| header_err(format!("code is not a 32-bit integer: {v}")))?,
        None => return Err(header_err("JSON header has no code")),
    };
    let language = match obj.get("language") {
        Some(json::Value::String(s)) => LanguageCode::from_name(s),
        Some(v) => match json::as_i32(v) {
            Some(n) if (0..=255).contains(&n) => LanguageCode(n as u8),
            _ => LanguageCode::OTHER,
        },
        None => LanguageCode::JAVA,
    };
    let remark = match obj.get("remark") {
        None | Some(json::Value::Null) => None,
        Some(json::Value::String(s)) => Some(s.clone()),
        Some(v) => Some(v.to_string()),
    };
    let mut ext_fields = BTreeMap::new();
    match obj.get("extFields") {
        None | Some(json::Value::Null) => {}
        Some(json::Value::Object(map)) => {
            for (k, v) in map {
                match v {
                    json::Value::Null => {}
                    json::Value::String(s) => {
                        ext_fields.insert(k.clone(), s.clone());
                    }
                    other => {
                        ext_fields.insert(k.clone(), other.to_string());
                    }
                }
            }
        }
        Some(v) => return Err(header_err(format!("extFields is not an object: {v}"))),
    }
    Ok(RemotingCommand {
        code,
        language,
        version: int("version")?,
        opaque: int("opaque")?,
        flag: int("flag")?,
        remark,
        ext_fields,
        serialize_type: SerializeType::Json,
        body: Vec::new(),
    })
}

fn decode_binary_header(header: &[u8]) -> Result<RemotingCommand, CodecError> {
    let mut r = Reader::new(header);
    let short = |what: &str| {
        header_err(format!(
            "ROCKETMQ header of {} bytes ends inside {what}",
            header.len()
        ))
    };
    let code = r.i16().ok_or_else(|| short("code"))?;
    let language = r.u8().ok_or_else(|| short("language"))?;
    let version = r.i16().ok_or_else(|| short("version"))?;
    let opaque = r.i32().ok_or_else(|| short("opaque"))?;
    let flag = r.i32().ok_or_else(|| short("flag"))?;
    let remark_len = r.i32().ok_or_else(|| short("the remark length"))?;
    let remark = if remark_len == 0 {
        None
    } else {
        let bytes = r.take_len(remark_len as i64).ok_or_else(|| {
            header_err(format!(
                "remark length {remark_len} does not fit in the header"
            ))
        })?;
        Some(String::from_utf8_lossy(bytes).into_owned())
    };
    let ext_len = r.i32().ok_or_else(|| short("the extFields length"))?;
    let mut ext_fields = BTreeMap::new();
    if ext_len > 0 {
        let ext = r.take_len(ext_len as i64).ok_or_else(|| {
            header_err(format!(
                "extFields length {ext_len} does not fit in the header"
            ))
        })?;
        let mut e = Reader::new(ext);
        while !e.is_empty() {
            let key_len = e
                .i16()
                .ok_or_else(|| header_err("extFields end inside a key length"))?;
            let key = e.take_len(i64::from(key_len)).ok_or_else(|| {
                header_err(format!("extFields key length {key_len} does not fit"))
            })?;
            let value_len = e
                .i32()
                .ok_or_else(|| header_err("extFields end inside a value length"))?;
            let value = e.take_len(i64::from(value_len)).ok_or_else(|| {
                header_err(format!("extFields value length {value_len} does not fit"))
            })?;
            ext_fields.insert(
                String::from_utf8_lossy(key).into_owned(),
                String::from_utf8_lossy(value).into_owned(),
            );
        }
    }
    Ok(RemotingCommand {
        code: i32::from(code),
        language: LanguageCode(language),
        version: i32::from(version),
        opaque,
        flag,
        remark,
        ext_fields,
        serialize_type: SerializeType::RocketMq,
        body: Vec::new(),
    })
}

/// Bounds-checked big-endian reads.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }
    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.buf.len() {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }
    /// A length read from the input: negative or past the end is `None`.
    fn take_len(&mut self, n: i64) -> Option<&'a [u8]> {
        if n < 0 {
            return None;
        }
        self.take(usize::try_from(n).ok()?)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Option<i32> {
        self.take(4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.i32().map(|v| v as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_names_round_trip() {
        for i in 0..14u8 {
            assert_eq!(
                LanguageCode::from_name(LanguageCode(i).name()),
                LanguageCode(i)
            );
        }
        assert_eq!(LanguageCode(200).name(), "OTHER");
        assert_eq!(LanguageCode::from_name("COBOL"), LanguageCode::OTHER);
    }

    #[test]
    fn typed_header_fields() {
        let cmd = RemotingCommand::request(10, 1)
            .with_field("queueId", " 3 ")
            .with_field("batch", "TRUE")
            .with_field("bad", "x");
        assert_eq!(cmd.required_i64("queueId"), Ok(3));
        assert_eq!(
            cmd.required("topic"),
            Err("the custom field <topic> is null".to_string())
        );
        assert!(cmd.required_i64("bad").unwrap_err().contains("'x'"));
        assert_eq!(cmd.optional_i64("bad"), None);
        assert_eq!(cmd.optional_bool("batch"), Some(true));
        assert_eq!(cmd.optional_bool("bad"), Some(false));
        assert_eq!(cmd.optional_bool("none"), None);
    }

    #[test]
    fn frame_size_checks_the_limit_before_the_body() {
        let mut buf = (100i32).to_be_bytes().to_vec();
        assert_eq!(frame_size(&buf, 1000), Ok(Some(104)));
        assert!(matches!(
            frame_size(&buf, 103),
            Err(CodecError::FrameTooLarge {
                frame_bytes: 104,
                ..
            })
        ));
        buf = (-1i32).to_be_bytes().to_vec();
        assert!(matches!(
            frame_size(&buf, 1000),
            Err(CodecError::FrameTooShort { length: -1 })
        ));
        assert_eq!(frame_size(&[0, 0], 1000), Ok(None));
    }
}
