//! go-judge's JSON, read and written.
//!
//! Requests are read the way Go's `encoding/json` reads them into go-judge's
//! structs: object keys match field names case-insensitively, unknown keys
//! are ignored, `null` is the same as an absent field (except in `files`,
//! where it leaves a slot for `pipeMapping`), numbers of the integer fields
//! must be non-negative integers. Where Go would fail the whole request
//! with a terse type error, these readers name the field: every error says
//! where it is, as in `cmd[0].copyIn["a.cc"].content`.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// A `/run` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRequest {
    /// Echoed by go-judge's WebSocket API only; kept for logs.
    pub request_id: String,
    /// The commands, run together.
    pub cmd: Vec<Cmd>,
    /// Pipes between the commands' descriptors.
    pub pipe_mapping: Vec<PipeMap>,
}

/// One command of a request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cmd {
    /// `args`: the program and its arguments.
    pub args: Vec<String>,
    /// `env`: `KEY=VALUE` entries.
    pub env: Vec<String>,
    /// `files`: the program's descriptors; `None` is a `null` slot.
    pub files: Vec<Option<CmdFile>>,
    /// `tty`.
    pub tty: bool,
    /// `cpuLimit`, ns.
    pub cpu_limit: u64,
    /// `realCpuLimit`, ns.
    pub real_cpu_limit: u64,
    /// `clockLimit`, ns.
    pub clock_limit: u64,
    /// `memoryLimit`, bytes.
    pub memory_limit: u64,
    /// `stackLimit`, bytes.
    pub stack_limit: u64,
    /// `procLimit`.
    pub proc_limit: u64,
    /// `cpuSetLimit`, as `0-3,5`.
    pub cpu_set_limit: String,
    /// `strictMemoryLimit` (the older name of `dataSegmentLimit`).
    pub strict_memory_limit: bool,
    /// `dataSegmentLimit`.
    pub data_segment_limit: bool,
    /// `addressSpaceLimit`.
    pub address_space_limit: bool,
    /// `copyIn`: path → file.
    pub copy_in: BTreeMap<String, CmdFile>,
    /// `copyOut`: the files to copy out.
    pub copy_out: Vec<CopyOutFile>,
    /// `copyOutCached`: the files to copy out into the store.
    pub copy_out_cached: Vec<CopyOutFile>,
    /// `copyOutMax`, bytes.
    pub copy_out_max: u64,
    /// `copyOutTruncate`.
    pub copy_out_truncate: bool,
}

/// A file to copy out: a `copyOut` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOutFile {
    /// Its path, relative to the work directory.
    pub name: String,
    /// Whether it may be missing: a `?` at the end of a JSON entry.
    pub optional: bool,
}

impl CopyOutFile {
    /// A JSON entry: `name`, or `name?` for an optional file.
    pub fn from_entry(entry: &str) -> Self {
        match entry.strip_suffix('?') {
            Some(name) => Self {
                name: name.into(),
                optional: true,
            },
            None => Self {
                name: entry.into(),
                optional: false,
            },
        }
    }
}

/// A file of `files` or `copyIn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmdFile {
    /// `{"src": path}`: a host file.
    Src(String),
    /// `{"content": text}`, or a gRPC memory file's bytes.
    Content(Vec<u8>),
    /// `{"fileId": id}`: a file of the store.
    FileId(String),
    /// `{"name": n, "max": m, "pipe": p}`: a collector.
    Collector {
        /// Its name.
        name: String,
        /// The most bytes kept.
        max: u64,
        /// Collected through a pipe.
        pipe: bool,
    },
    /// `{"symlink": target}` (copy-in only).
    Symlink(String),
    /// `{"streamIn": true}`: an input the client sends while the program
    /// runs (`/stream` only).
    StreamIn,
    /// `{"streamOut": true}`: an output the client receives while the
    /// program runs (`/stream` only).
    StreamOut,
}

/// One pipe of `pipeMapping`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipeMap {
    /// `in`: the descriptor written to.
    pub input: PipeIndex,
    /// `out`: the descriptor read from.
    pub output: PipeIndex,
    /// `name`: under which a proxy records what passes.
    pub name: String,
    /// `max`: how much a proxy records.
    pub max: u64,
    /// `proxy`: relay through the server.
    pub proxy: bool,
}

/// A command's descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipeIndex {
    /// `index`: the command.
    pub index: u64,
    /// `fd`: its descriptor.
    pub fd: u64,
}

/// An object being read, and where it is in the request.
struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

impl<'a> Obj<'a> {
    fn of(value: &'a Value, path: String) -> Result<Self, ApiError> {
        match value {
            Value::Object(map) => Ok(Obj { map, path }),
            other => Err(ApiError::bad(format!(
                "{path} must be an object, not {}",
                kind(other)
            ))),
        }
    }

    /// The field `key`, matched without regard to case; `null` is absent.
    fn get(&self, key: &str) -> Option<&'a Value> {
        let value = match self.map.get(key) {
            Some(value) => Some(value),
            None => self
                .map
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v),
        };
        value.filter(|v| !v.is_null())
    }

    fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.into()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn u64(&self, key: &str) -> Result<u64, ApiError> {
        match self.get(key) {
            None => Ok(0),
            Some(value) => value.as_u64().ok_or_else(|| {
                ApiError::bad(format!(
                    "{} must be a non-negative integer, not {}",
                    self.field(key),
                    shown(value)
                ))
            }),
        }
    }

    fn bool(&self, key: &str) -> Result<bool, ApiError> {
        match self.get(key) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(ApiError::bad(format!(
                "{} must be true or false, not {}",
                self.field(key),
                shown(other)
            ))),
        }
    }

    fn string(&self, key: &str) -> Result<Option<String>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(ApiError::bad(format!(
                "{} must be a string, not {}",
                self.field(key),
                shown(other)
            ))),
        }
    }

    fn array(&self, key: &str) -> Result<&'a [Value], ApiError> {
        match self.get(key) {
            None => Ok(&[]),
            Some(Value::Array(items)) => Ok(items),
            Some(other) => Err(ApiError::bad(format!(
                "{} must be an array, not {}",
                self.field(key),
                shown(other)
            ))),
        }
    }

    fn strings(&self, key: &str) -> Result<Vec<String>, ApiError> {
        self.array(key)?
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(s.clone()),
                // As Go reads `null` into a string: the empty one.
                Value::Null => Ok(String::new()),
                other => Err(ApiError::bad(format!(
                    "{}[{i}] must be a string, not {}",
                    self.field(key),
                    shown(other)
                ))),
            })
            .collect()
    }

    fn object(&self, key: &str) -> Result<Option<Obj<'a>>, ApiError> {
        self.get(key)
            .map(|value| Obj::of(value, self.field(key)))
            .transpose()
    }
}

/// What kind of JSON value this is, for messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A value as a message shows it: numbers and short strings in full.
fn shown(value: &Value) -> String {
    match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) if s.len() <= 40 => format!("the string {s:?}"),
        other => kind(other).into(),
    }
}

/// Reads a `/run` request body: its first JSON value, as gin reads one
/// (what follows it is not looked at).
pub fn parse_run_request(body: &[u8]) -> Result<RunRequest, ApiError> {
    parse_request(body, Trailing::Ignored)
}

/// Reads a request that must be the whole of its message, as Go's
/// `json.Unmarshal` reads one (`/stream`'s first message).
pub fn parse_whole_run_request(body: &[u8]) -> Result<RunRequest, ApiError> {
    parse_request(body, Trailing::Refused)
}

fn parse_request(body: &[u8], trailing: Trailing) -> Result<RunRequest, ApiError> {
    let value = read_json(body, trailing)
        .map_err(|e| ApiError::bad(format!("the request is not valid JSON: {e}")))?;
    run_request_from(&value)
}

/// What may follow the JSON value of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trailing {
    /// Anything: one value is read, as a Go `Decoder` reads it.
    Ignored,
    /// White space only.
    Refused,
}

/// A JSON value as Go's `encoding/json` reads it: where a string holds
/// bytes that are not UTF-8, or a `\u` escape of half a surrogate pair
/// alone, each is U+FFFD. Those are spelled so and the text read again
/// only when it fails as it is.
pub(crate) fn read_json(body: &[u8], trailing: Trailing) -> Result<Value, serde_json::Error> {
    read_value(body, trailing).or_else(|error| match as_go_reads(body) {
        Some(text) => read_value(&text, trailing),
        None => Err(error),
    })
}

fn read_value(body: &[u8], trailing: Trailing) -> Result<Value, serde_json::Error> {
    let mut reader = serde_json::Deserializer::from_slice(body);
    let value = serde::Deserialize::deserialize(&mut reader)?;
    if trailing == Trailing::Refused {
        reader.end()?;
    }
    Ok(value)
}

/// `body` with each byte of invalid UTF-8, and each lone surrogate escape
/// inside a string, replaced by U+FFFD; `None` when it has neither.
fn as_go_reads(body: &[u8]) -> Option<Vec<u8>> {
    let text = replace_invalid_utf8(body);
    match replace_lone_surrogates(text.as_bytes()) {
        Some(escaped) => Some(escaped),
        None => match text {
            std::borrow::Cow::Borrowed(_) => None,
            std::borrow::Cow::Owned(text) => Some(text.into_bytes()),
        },
    }
}

/// `bytes` as text, each byte of a sequence that is not UTF-8 a U+FFFD of
/// its own, as Go decodes them one byte at a time.
fn replace_invalid_utf8(mut bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    let mut text = String::new();
    loop {
        match std::str::from_utf8(bytes) {
            Ok(rest) if text.is_empty() => return rest.into(),
            Ok(rest) => {
                text.push_str(rest);
                return text.into();
            }
            Err(error) => {
                let (valid, rest) = bytes.split_at(error.valid_up_to());
                text.push_str(&String::from_utf8_lossy(valid));
                let bad = error.error_len().unwrap_or(rest.len());
                text.extend(std::iter::repeat_n('\u{FFFD}', bad));
                bytes = &rest[bad..];
            }
        }
    }
}

/// `text` with each `\u` escape of a surrogate inside a string that is
/// not half of a pair of escapes written `\ufffd`; `None` when there is
/// none. A `\\` is an escape of its own, so `\\ud800` is left alone.
fn replace_lone_surrogates(text: &[u8]) -> Option<Vec<u8>> {
    let unit = |at: usize| -> Option<u16> {
        let digits = text.get(at..at + 6)?.strip_prefix(b"\\u")?;
        if !digits.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        u16::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
    };
    let mut out = Vec::new();
    let (mut at, mut copied, mut in_string) = (0, 0, false);
    while let Some(&byte) = text.get(at) {
        match byte {
            b'"' => {
                in_string = !in_string;
                at += 1;
            }
            b'\\' if in_string => match unit(at) {
                Some(0xD800..=0xDBFF)
                    if unit(at + 6).is_some_and(|low| (0xDC00..=0xDFFF).contains(&low)) =>
                {
                    at += 12;
                }
                Some(0xD800..=0xDFFF) => {
                    out.extend_from_slice(&text[copied..at]);
                    out.extend_from_slice(b"\\ufffd");
                    at += 6;
                    copied = at;
                }
                Some(_) => at += 6,
                // Whatever byte follows, a `"` or a `\\` among them.
                None => at += 2,
            },
            _ => at += 1,
        }
    }
    if out.is_empty() {
        return None;
    }
    out.extend_from_slice(text.get(copied..).unwrap_or_default());
    Some(out)
}

/// [`parse_run_request`] of JSON already parsed.
pub(crate) fn run_request_from(value: &Value) -> Result<RunRequest, ApiError> {
    let request = Obj::of(value, String::new()).map_err(|_| {
        ApiError::bad(format!(
            "the request must be an object, not {}",
            kind(value)
        ))
    })?;
    let request_id = request.string("requestId")?.unwrap_or_default();
    let cmd = request
        .array("cmd")?
        .iter()
        .enumerate()
        .map(|(i, value)| parse_cmd(Obj::of(value, format!("cmd[{i}]"))?))
        .collect::<Result<Vec<_>, _>>()?;
    let pipe_mapping = request
        .array("pipeMapping")?
        .iter()
        .enumerate()
        .map(|(i, value)| parse_pipe(Obj::of(value, format!("pipeMapping[{i}]"))?))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RunRequest {
        request_id,
        cmd,
        pipe_mapping,
    })
}

fn parse_cmd(cmd: Obj<'_>) -> Result<Cmd, ApiError> {
    let files = cmd
        .array("files")?
        .iter()
        .enumerate()
        .map(|(i, value)| match value {
            Value::Null => Ok(None),
            value => parse_file(&Obj::of(value, format!("{}[{i}]", cmd.field("files")))?).map(Some),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut copy_in = BTreeMap::new();
    if let Some(map) = cmd.object("copyIn")? {
        for (path, value) in map.map {
            let file = Obj::of(value, format!("{}[{path:?}]", map.path))?;
            // A link comes before every other kind here, as in go-judge.
            let file = match file.string("symlink")? {
                Some(target) => CmdFile::Symlink(target),
                None => parse_file(&file)?,
            };
            copy_in.insert(path.clone(), file);
        }
    }
    Ok(Cmd {
        args: cmd.strings("args")?,
        env: cmd.strings("env")?,
        files,
        tty: cmd.bool("tty")?,
        cpu_limit: cmd.u64("cpuLimit")?,
        real_cpu_limit: cmd.u64("realCpuLimit")?,
        clock_limit: cmd.u64("clockLimit")?,
        memory_limit: cmd.u64("memoryLimit")?,
        stack_limit: cmd.u64("stackLimit")?,
        proc_limit: cmd.u64("procLimit")?,
        cpu_set_limit: cmd.string("cpuSetLimit")?.unwrap_or_default(),
        strict_memory_limit: cmd.bool("strictMemoryLimit")?,
        data_segment_limit: cmd.bool("dataSegmentLimit")?,
        address_space_limit: cmd.bool("addressSpaceLimit")?,
        copy_in,
        copy_out: copy_outs(&cmd, "copyOut")?,
        copy_out_cached: copy_outs(&cmd, "copyOutCached")?,
        copy_out_max: cmd.u64("copyOutMax")?,
        copy_out_truncate: cmd.bool("copyOutTruncate")?,
    })
}

/// A list of files to copy out, `?` marking the optional ones.
fn copy_outs(cmd: &Obj<'_>, key: &str) -> Result<Vec<CopyOutFile>, ApiError> {
    Ok(cmd
        .strings(key)?
        .iter()
        .map(|entry| CopyOutFile::from_entry(entry))
        .collect())
}

/// A file, by the first of go-judge's kinds it has, in go-judge's order.
fn parse_file(file: &Obj<'_>) -> Result<CmdFile, ApiError> {
    if let Some(src) = file.string("src")? {
        return Ok(CmdFile::Src(src));
    }
    if let Some(content) = file.string("content")? {
        return Ok(CmdFile::Content(content.into_bytes()));
    }
    if let Some(id) = file.string("fileId")? {
        return Ok(CmdFile::FileId(id));
    }
    let name = file.string("name")?;
    if let (Some(name), Some(_)) = (&name, file.get("max")) {
        return Ok(CmdFile::Collector {
            name: name.clone(),
            max: file.u64("max")?,
            pipe: file.bool("pipe")?,
        });
    }
    if let Some(target) = file.string("symlink")? {
        return Ok(CmdFile::Symlink(target));
    }
    if file.bool("streamIn")? {
        return Ok(CmdFile::StreamIn);
    }
    if file.bool("streamOut")? {
        return Ok(CmdFile::StreamOut);
    }
    Err(ApiError::bad(format!(
        "{} is no file: give src, content, fileId, or name and max{}",
        file.path,
        if name.is_some() {
            " (max is missing)"
        } else {
            ""
        }
    )))
}

fn parse_pipe(pipe: Obj<'_>) -> Result<PipeMap, ApiError> {
    let end = |key: &str| -> Result<PipeIndex, ApiError> {
        let end = pipe
            .object(key)?
            .ok_or_else(|| ApiError::bad(format!("{} is missing", pipe.field(key))))?;
        Ok(PipeIndex {
            index: end.u64("index")?,
            fd: end.u64("fd")?,
        })
    };
    Ok(PipeMap {
        input: end("in")?,
        output: end("out")?,
        name: pipe.string("name")?.unwrap_or_default(),
        max: pipe.u64("max")?,
        proxy: pipe.bool("proxy")?,
    })
}

/// The string field `key` of `value`, if it is an object that has one;
/// keys match as in requests, without regard to case.
pub(crate) fn string_field<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    let object = Obj::of(value, String::new()).ok()?;
    object.get(key)?.as_str()
}

/// A request's answer as go-judge's WebSockets send it (its
/// `model.Response`): the results, or why there are none.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Answer {
    pub(crate) request_id: String,
    pub(crate) results: Vec<RunResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

impl Answer {
    /// The answer of a request that did not run.
    pub(crate) fn refused(request_id: String, error: String) -> Self {
        Self {
            request_id,
            results: Vec::new(),
            error: Some(error),
        }
    }
}

/// One command's result, as go-judge writes it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RunResult {
    /// `Accepted`, `Time Limit Exceeded`, ….
    pub status: &'static str,
    /// The exit code, or the number of the signal that ended the program.
    pub exit_status: i32,
    /// Why it failed, in words.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// CPU time, ns.
    pub time: u64,
    /// Peak memory, bytes.
    pub memory: u64,
    /// Wall-clock time, ns.
    pub run_time: u64,
    /// The most processes and threads alive at once; 0 (left out) where
    /// the kernel cannot tell.
    #[serde(skip_serializing_if = "is_zero")]
    pub proc_peak: u64,
    /// Collected and copied-out files, as text.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, String>,
    /// Files put into the store: name → id.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub file_ids: BTreeMap<String, String>,
    /// Files that could not go in or come out.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub file_error: Vec<FileErrorJson>,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// One entry of `fileError`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FileErrorJson {
    /// The file.
    pub name: String,
    /// go-judge's name of the failing step.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// What went wrong.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(body: &str) -> String {
        parse_run_request(body.as_bytes()).unwrap_err().message
    }

    #[test]
    fn keys_match_without_regard_to_case_and_unknown_keys_are_ignored() {
        let request = parse_run_request(
            br#"{"CMD": [{"Args": ["x"], "CPULIMIT": 5, "copyin": {"A.txt": {"CONTENT": "a"}},
                 "unknown": {"deep": [1]}}], "requestid": "r"}"#,
        )
        .unwrap();
        assert_eq!(request.request_id, "r");
        assert_eq!(request.cmd[0].args, ["x"]);
        assert_eq!(request.cmd[0].cpu_limit, 5);
        // Keys of copyIn are paths: their case is kept.
        assert_eq!(
            request.cmd[0].copy_in["A.txt"],
            CmdFile::Content("a".into())
        );
    }

    #[test]
    fn null_is_absent_except_in_files() {
        let request = parse_run_request(
            br#"{"cmd": [{"args": ["x"], "env": null, "cpuLimit": null,
                 "files": [null, {"name": "stdout", "max": 10}]}]}"#,
        )
        .unwrap();
        assert!(request.cmd[0].env.is_empty());
        assert_eq!(request.cmd[0].cpu_limit, 0);
        assert_eq!(request.cmd[0].files[0], None);
        assert_eq!(
            request.cmd[0].files[1],
            Some(CmdFile::Collector {
                name: "stdout".into(),
                max: 10,
                pipe: false
            })
        );
    }

    #[test]
    fn a_copy_in_with_a_symlink_is_the_link_whatever_else_it_has() {
        let request = parse_run_request(
            br#"{"cmd": [{"args": ["x"], "copyIn": {
                 "a": {"content": "text", "symlink": "b"},
                 "c": {"src": "/d", "fileId": "E", "symlink": "f"}},
                 "files": [{"content": "text", "symlink": "b"}]}]}"#,
        )
        .unwrap();
        assert_eq!(request.cmd[0].copy_in["a"], CmdFile::Symlink("b".into()));
        assert_eq!(request.cmd[0].copy_in["c"], CmdFile::Symlink("f".into()));
        // In files, links are not a kind: the content is read.
        assert_eq!(
            request.cmd[0].files[0],
            Some(CmdFile::Content("text".into()))
        );
    }

    /// The content of `copyIn["a"]` in a request whose JSON for it is
    /// `json`.
    fn content_of(json: &[u8]) -> Vec<u8> {
        let mut body = br#"{"cmd": [{"args": ["x"], "copyIn": {"a": {"content": "#.to_vec();
        body.extend_from_slice(json);
        body.extend_from_slice(b"}}}]}");
        match &parse_run_request(&body).unwrap().cmd[0].copy_in["a"] {
            CmdFile::Content(bytes) => bytes.clone(),
            other => panic!("not content: {other:?}"),
        }
    }

    #[test]
    fn strings_are_read_as_go_reads_them_broken_parts_and_all() {
        // Each byte that is not UTF-8 is a U+FFFD of its own.
        assert_eq!(
            content_of(b"\"a\xff\xe2\x82b\""),
            "a\u{FFFD}\u{FFFD}\u{FFFD}b".as_bytes()
        );
        // A surrogate escape that is not half of a pair is U+FFFD; a pair
        // is its character.
        assert_eq!(content_of(br#""a\ud800b""#), "a\u{FFFD}b".as_bytes());
        assert_eq!(content_of(br#""\udc00""#), "\u{FFFD}".as_bytes());
        assert_eq!(content_of(br#""\ud800\u0041""#), "\u{FFFD}A".as_bytes());
        assert_eq!(
            content_of(br#""\ud800\ud800\udc00""#),
            "\u{FFFD}\u{10000}".as_bytes()
        );
        assert_eq!(content_of(br#""\ud83d\ude00""#), "😀".as_bytes());
        // An escaped backslash is not the start of an escape, nor is a
        // quote escaped the end of a string.
        assert_eq!(
            content_of(br#""\\ud800\"\ud800""#),
            "\\ud800\"\u{FFFD}".as_bytes()
        );
        // Both at once, and in keys too.
        let request = parse_run_request(
            b"{\"cmd\": [{\"args\": [\"\\ud800\xff\"], \"env\": [\"K\\udfff=v\"]}]}",
        )
        .unwrap();
        assert_eq!(request.cmd[0].args, ["\u{FFFD}\u{FFFD}"]);
        assert_eq!(request.cmd[0].env, ["K\u{FFFD}=v"]);
        // What Go refuses stays refused.
        assert!(
            error_of(r#"{"cmd": [{"args": ["\ud80"]}]}"#)
                .starts_with("the request is not valid JSON")
        );
        assert!(
            parse_run_request(b"{\"cmd\": [{\"args\": [\"x\"]}]\xff}")
                .unwrap_err()
                .message
                .starts_with("the request is not valid JSON")
        );
    }

    #[test]
    fn what_follows_the_request_is_not_read_except_where_go_reads_it_all() {
        let body = br#"{"cmd": [{"args": ["x"]}]} trailing {"#;
        assert_eq!(parse_run_request(body).unwrap().cmd[0].args, ["x"]);
        assert!(
            parse_whole_run_request(body)
                .unwrap_err()
                .message
                .contains("trailing characters"),
        );
        let spaced = br#"{"cmd": [{"args": ["x"]}]}  "#;
        assert!(parse_whole_run_request(spaced).is_ok());
    }

    #[test]
    fn null_in_a_list_of_strings_is_the_empty_string() {
        let request = parse_run_request(
            br#"{"cmd": [{"args": ["x", null], "env": [null], "copyOut": [null],
                 "copyOutCached": ["a", null]}]}"#,
        )
        .unwrap();
        let cmd = &request.cmd[0];
        assert_eq!(cmd.args, ["x", ""]);
        assert_eq!(cmd.env, [""]);
        assert_eq!(cmd.copy_out, [CopyOutFile::from_entry("")]);
        assert_eq!(cmd.copy_out_cached[1], CopyOutFile::from_entry(""));
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            error_of(r#"{"cmd": [{"args": ["x"], "cpuLimit": -1}]}"#),
            "cmd[0].cpuLimit must be a non-negative integer, not -1"
        );
        assert_eq!(
            error_of(r#"{"cmd": [{"args": ["x"], "memoryLimit": 1.5}]}"#),
            "cmd[0].memoryLimit must be a non-negative integer, not 1.5"
        );
        assert_eq!(
            error_of(r#"{"cmd": [{"args": ["x"], "files": [{"nam": "stdout"}]}]}"#),
            "cmd[0].files[0] is no file: give src, content, fileId, or name and max"
        );
        assert_eq!(
            error_of(r#"{"cmd": [{"args": ["x"], "copyIn": {"a": {"content": 5}}}]}"#),
            r#"cmd[0].copyIn["a"].content must be a string, not 5"#
        );
        assert_eq!(
            error_of(r#"{"cmd": [{"args": ["x"]}], "pipeMapping": [{"in": {"index": 0}}]}"#),
            "pipeMapping[0].out is missing"
        );
        assert_eq!(
            error_of("[1]"),
            "the request must be an object, not an array"
        );
        assert!(error_of("{").starts_with("the request is not valid JSON: "));
        assert_eq!(
            error_of(r#"{"cmd": [{"args": "x"}]}"#),
            r#"cmd[0].args must be an array, not the string "x""#
        );
    }

    #[test]
    fn results_leave_out_what_is_empty() {
        let result = RunResult {
            status: "Accepted",
            exit_status: 0,
            error: String::new(),
            time: 1,
            memory: 2,
            run_time: 3,
            proc_peak: 0,
            files: BTreeMap::new(),
            file_ids: BTreeMap::new(),
            file_error: Vec::new(),
        };
        assert_eq!(
            serde_json::to_string(&result).unwrap(),
            r#"{"status":"Accepted","exitStatus":0,"time":1,"memory":2,"runTime":3}"#
        );
        let result = RunResult {
            proc_peak: 4,
            ..result
        };
        assert_eq!(
            serde_json::to_string(&result).unwrap(),
            r#"{"status":"Accepted","exitStatus":0,"time":1,"memory":2,"runTime":3,"procPeak":4}"#
        );
    }
}
