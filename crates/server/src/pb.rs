//! go-judge's gRPC messages (protobuf package `pb`), as Rust types.
//!
//! These are the messages of go-judge's `Executor` service, field for
//! field: the same names (in snake case), the same field numbers and wire
//! types, so that a client generated from go-judge's `.proto` files (JOJ3's,
//! say) talks to `hutch serve --grpc-listen` unchanged. Every field has
//! implicit presence, as there: a value equal to its default is not sent.
//! Maps are [`BTreeMap`]s, so that a message always encodes to the same
//! bytes.
//!
//! `docs/server.md` ("gRPC") says which calls hutch serves and how each
//! field is read.

use std::collections::BTreeMap;

/// `pb.Request`: the commands of one `Exec` call.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Request {
    /// `requestID` (1): echoed in the response.
    #[prost(string, tag = "1")]
    pub request_id: String,
    /// `cmd` (2): the commands, run together.
    #[prost(message, repeated, tag = "2")]
    pub cmd: Vec<request::CmdType>,
    /// `pipeMapping` (3): pipes between the commands' descriptors.
    #[prost(message, repeated, tag = "3")]
    pub pipe_mapping: Vec<request::PipeMap>,
}

/// The messages nested in [`Request`].
pub mod request {
    use super::BTreeMap;

    /// `Request.LocalFile`: a host file, by path.
    #[derive(Clone, PartialEq, Eq, prost::Message)]
    pub struct LocalFile {
        /// `src` (1).
        #[prost(string, tag = "1")]
        pub src: String,
    }

    /// `Request.MemoryFile`: the content itself.
    #[derive(Clone, PartialEq, Eq, prost::Message)]
    pub struct MemoryFile {
        /// `content` (1).
        #[prost(bytes = "vec", tag = "1")]
        pub content: Vec<u8>,
    }

    /// `Request.CachedFile`: a file of the store, by id.
    #[derive(Clone, PartialEq, Eq, prost::Message)]
    pub struct CachedFile {
        /// `fileID` (1).
        #[prost(string, tag = "1")]
        pub file_id: String,
    }

    /// `Request.PipeCollector`: an output to collect.
    #[derive(Clone, PartialEq, Eq, prost::Message)]
    pub struct PipeCollector {
        /// `name` (1): the name the output is returned under.
        #[prost(string, tag = "1")]
        pub name: String,
        /// `max` (2): the most bytes kept.
        #[prost(int64, tag = "2")]
        pub max: i64,
        /// `pipe` (3): collected through a pipe rather than a file.
        #[prost(bool, tag = "3")]
        pub pipe: bool,
    }

    /// `Request.File`: one of the kinds of file; none at all is an empty
    /// slot, for a pipe of `pipeMapping` to fill.
    #[derive(Clone, PartialEq, Eq, prost::Message)]
    pub struct File {
        /// The `file` one-of (1–6).
        #[prost(oneof = "file::File", tags = "1, 2, 3, 4, 5, 6")]
        pub file: Option<file::File>,
    }

    /// The one-of of [`File`].
    pub mod file {
        /// Which kind of file.
        #[derive(Clone, PartialEq, Eq, prost::Oneof)]
        pub enum File {
            /// `local` (1).
            #[prost(message, tag = "1")]
            Local(super::LocalFile),
            /// `memory` (2).
            #[prost(message, tag = "2")]
            Memory(super::MemoryFile),
            /// `cached` (3).
            #[prost(message, tag = "3")]
            Cached(super::CachedFile),
            /// `pipe` (4).
            #[prost(message, tag = "4")]
            Pipe(super::PipeCollector),
            /// `streamIn` (5), a `google.protobuf.Empty`: go-judge's
            /// streaming call only.
            #[prost(message, tag = "5")]
            StreamIn(()),
            /// `streamOut` (6), a `google.protobuf.Empty`: go-judge's
            /// streaming call only.
            #[prost(message, tag = "6")]
            StreamOut(()),
        }
    }

    /// `Request.CmdType`: one command.
    #[derive(Clone, PartialEq, Eq, prost::Message)]
    pub struct CmdType {
        /// `args` (1): the program and its arguments.
        #[prost(string, repeated, tag = "1")]
        pub args: Vec<String>,
        /// `env` (2): `KEY=VALUE` entries.
        #[prost(string, repeated, tag = "2")]
        pub env: Vec<String>,
        /// `files` (3): the program's descriptors, from 0.
        #[prost(message, repeated, tag = "3")]
        pub files: Vec<File>,
        /// `tty` (13).
        #[prost(bool, tag = "13")]
        pub tty: bool,
        /// `cpuTimeLimit` (4), ns.
        #[prost(uint64, tag = "4")]
        pub cpu_time_limit: u64,
        /// `clockTimeLimit` (5), ns.
        #[prost(uint64, tag = "5")]
        pub clock_time_limit: u64,
        /// `memoryLimit` (6), bytes.
        #[prost(uint64, tag = "6")]
        pub memory_limit: u64,
        /// `stackLimit` (12), bytes.
        #[prost(uint64, tag = "12")]
        pub stack_limit: u64,
        /// `procLimit` (7).
        #[prost(uint64, tag = "7")]
        pub proc_limit: u64,
        /// `cpuRateLimit` (15), ignored as go-judge ignores it by default.
        #[prost(uint64, tag = "15")]
        pub cpu_rate_limit: u64,
        /// `cpuSetLimit` (17), as `0-3,5`.
        #[prost(string, tag = "17")]
        pub cpu_set_limit: String,
        /// `dataSegmentLimit` (16).
        #[prost(bool, tag = "16")]
        pub data_segment_limit: bool,
        /// `addressSpaceLimit` (19).
        #[prost(bool, tag = "19")]
        pub address_space_limit: bool,
        /// `copyIn` (8): path → file.
        #[prost(btree_map = "string, message", tag = "8")]
        pub copy_in: BTreeMap<String, File>,
        /// `symlinks` (18): path → target.
        #[prost(btree_map = "string, string", tag = "18")]
        pub symlinks: BTreeMap<String, String>,
        /// `copyOut` (9).
        #[prost(message, repeated, tag = "9")]
        pub copy_out: Vec<CmdCopyOutFile>,
        /// `copyOutCached` (10).
        #[prost(message, repeated, tag = "10")]
        pub copy_out_cached: Vec<CmdCopyOutFile>,
        /// `copyOutDir` (11), deprecated there and ignored here.
        #[prost(string, tag = "11")]
        pub copy_out_dir: String,
        /// `copyOutMax` (14), bytes.
        #[prost(uint64, tag = "14")]
        pub copy_out_max: u64,
        /// `copyOutTruncate` (20).
        #[prost(bool, tag = "20")]
        pub copy_out_truncate: bool,
    }

    /// `Request.CmdCopyOutFile`: a file to copy out.
    #[derive(Clone, PartialEq, Eq, prost::Message)]
    pub struct CmdCopyOutFile {
        /// `name` (1): its path in the work directory.
        #[prost(string, tag = "1")]
        pub name: String,
        /// `optional` (2): missing is no error.
        #[prost(bool, tag = "2")]
        pub optional: bool,
    }

    /// `Request.PipeMap`: one pipe.
    #[derive(Clone, PartialEq, Eq, prost::Message)]
    pub struct PipeMap {
        /// `in` (1): the descriptor written to.
        #[prost(message, optional, tag = "1")]
        pub r#in: Option<pipe_map::PipeIndex>,
        /// `out` (2): the descriptor read from.
        #[prost(message, optional, tag = "2")]
        pub out: Option<pipe_map::PipeIndex>,
        /// `proxy` (3): relay through the server.
        #[prost(bool, tag = "3")]
        pub proxy: bool,
        /// `name` (4): under which a proxy records what passes.
        #[prost(string, tag = "4")]
        pub name: String,
        /// `max` (5): how much a proxy records.
        #[prost(uint64, tag = "5")]
        pub max: u64,
        /// `disableZeroCopy` (6): a hint hutch has no use for.
        #[prost(bool, tag = "6")]
        pub disable_zero_copy: bool,
    }

    /// The messages nested in [`PipeMap`].
    pub mod pipe_map {
        /// `Request.PipeMap.PipeIndex`: a command's descriptor.
        #[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
        pub struct PipeIndex {
            /// `index` (1): the command.
            #[prost(int32, tag = "1")]
            pub index: i32,
            /// `fd` (2): its descriptor.
            #[prost(int32, tag = "2")]
            pub fd: i32,
        }
    }
}

/// `pb.Response`: the answer to `Exec`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Response {
    /// `requestID` (1): the request's.
    #[prost(string, tag = "1")]
    pub request_id: String,
    /// `results` (2): one per command, in order.
    #[prost(message, repeated, tag = "2")]
    pub results: Vec<response::Result>,
    /// `error` (3).
    #[prost(string, tag = "3")]
    pub error: String,
}

/// The messages nested in [`Response`].
pub mod response {
    use super::BTreeMap;

    /// `Response.FileError`: a file that could not go in or come out.
    #[derive(Clone, PartialEq, Eq, prost::Message)]
    pub struct FileError {
        /// `name` (1).
        #[prost(string, tag = "1")]
        pub name: String,
        /// `type` (2): a [`file_error::ErrorType`].
        #[prost(enumeration = "file_error::ErrorType", tag = "2")]
        pub r#type: i32,
        /// `message` (3).
        #[prost(string, tag = "3")]
        pub message: String,
    }

    /// The enum of [`FileError`].
    pub mod file_error {
        /// `Response.FileError.ErrorType`: the step that failed.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
        #[repr(i32)]
        pub enum ErrorType {
            /// The source of a copy-in could not be opened.
            CopyInOpenFile = 0,
            /// A copied-in file could not be created.
            CopyInCreateFile = 1,
            /// A copied-in file could not be filled.
            CopyInCopyContent = 2,
            /// A copy-out file could not be opened.
            CopyOutOpen = 3,
            /// A copy-out file is not a regular file.
            CopyOutNotRegularFile = 4,
            /// A copy-out file is larger than allowed.
            CopyOutSizeExceeded = 5,
            /// The store could not take a copied-out file.
            CopyOutCreateFile = 6,
            /// A copy-out file could not be read.
            CopyOutCopyContent = 7,
            /// A collector got more than its `max`.
            CollectSizeExceeded = 8,
            /// A symbolic link could not be made.
            Symlink = 9,
        }
    }

    /// `Response.Result`: one command's result.
    #[derive(Clone, PartialEq, Eq, prost::Message)]
    pub struct Result {
        /// `status` (1): a [`result::StatusType`].
        #[prost(enumeration = "result::StatusType", tag = "1")]
        pub status: i32,
        /// `exitStatus` (2): the exit code, or the signal's number.
        #[prost(int32, tag = "2")]
        pub exit_status: i32,
        /// `error` (3).
        #[prost(string, tag = "3")]
        pub error: String,
        /// `time` (4): CPU time, ns.
        #[prost(uint64, tag = "4")]
        pub time: u64,
        /// `runTime` (8): wall-clock time, ns.
        #[prost(uint64, tag = "8")]
        pub run_time: u64,
        /// `procPeak` (10): the most processes and threads alive at once.
        #[prost(uint64, tag = "10")]
        pub proc_peak: u64,
        /// `memory` (5): peak memory, bytes.
        #[prost(uint64, tag = "5")]
        pub memory: u64,
        /// `files` (6): collected and copied-out files.
        #[prost(btree_map = "string, bytes", tag = "6")]
        pub files: BTreeMap<String, Vec<u8>>,
        /// `fileIDs` (7): files put into the store, name → id.
        #[prost(btree_map = "string, string", tag = "7")]
        pub file_ids: BTreeMap<String, String>,
        /// `fileError` (9).
        #[prost(message, repeated, tag = "9")]
        pub file_error: Vec<FileError>,
    }

    /// The enum of [`Result`].
    pub mod result {
        /// `Response.Result.StatusType`: go-judge's statuses, by number.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
        #[repr(i32)]
        pub enum StatusType {
            /// No status.
            Invalid = 0,
            /// `Accepted`.
            Accepted = 1,
            /// Not used by go-judge or hutch.
            WrongAnswer = 2,
            /// Not used by go-judge or hutch.
            PartiallyCorrect = 3,
            /// `Memory Limit Exceeded`.
            MemoryLimitExceeded = 4,
            /// `Time Limit Exceeded`.
            TimeLimitExceeded = 5,
            /// `Output Limit Exceeded`.
            OutputLimitExceeded = 6,
            /// `File Error`.
            FileError = 7,
            /// `Nonzero Exit Status`.
            NonZeroExitStatus = 8,
            /// `Signalled`.
            Signalled = 9,
            /// `Dangerous Syscall`.
            DangerousSyscall = 10,
            /// Not used by go-judge or hutch.
            JudgementFailed = 11,
            /// Not used by go-judge or hutch.
            InvalidInteraction = 12,
            /// `Internal Error`.
            InternalError = 13,
        }
    }
}

/// `pb.FileID`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct FileId {
    /// `fileID` (1).
    #[prost(string, tag = "1")]
    pub file_id: String,
}

/// `pb.FileContent`: a stored file's name and content.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct FileContent {
    /// `name` (1).
    #[prost(string, tag = "1")]
    pub name: String,
    /// `content` (2).
    #[prost(bytes = "vec", tag = "2")]
    pub content: Vec<u8>,
}

/// `pb.FileListType`: every stored file.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct FileListType {
    /// `fileIDs` (1): id → name.
    #[prost(btree_map = "string, string", tag = "1")]
    pub file_ids: BTreeMap<String, String>,
}

/// `pb.StreamRequest`: one message from a client of `ExecStream`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct StreamRequest {
    /// The `request` one-of (1–4).
    #[prost(oneof = "stream_request::Request", tags = "1, 2, 3, 4")]
    pub request: Option<stream_request::Request>,
}

/// The messages nested in [`StreamRequest`].
pub mod stream_request {
    /// `StreamRequest.Input`: bytes for a `streamIn`.
    #[derive(Clone, PartialEq, Eq, prost::Message)]
    pub struct Input {
        /// `index` (1): the command.
        #[prost(uint32, tag = "1")]
        pub index: u32,
        /// `fd` (3): its descriptor.
        #[prost(uint32, tag = "3")]
        pub fd: u32,
        /// `content` (2).
        #[prost(bytes = "vec", tag = "2")]
        pub content: Vec<u8>,
    }

    /// `StreamRequest.Resize`: a terminal's size.
    #[derive(Clone, PartialEq, Eq, prost::Message)]
    pub struct Resize {
        /// `index` (1): the command.
        #[prost(uint32, tag = "1")]
        pub index: u32,
        /// `fd` (6): its descriptor.
        #[prost(uint32, tag = "6")]
        pub fd: u32,
        /// `rows` (2).
        #[prost(uint32, tag = "2")]
        pub rows: u32,
        /// `cols` (3).
        #[prost(uint32, tag = "3")]
        pub cols: u32,
        /// `x` (4).
        #[prost(uint32, tag = "4")]
        pub x: u32,
        /// `y` (5).
        #[prost(uint32, tag = "5")]
        pub y: u32,
    }

    /// What the message is.
    #[derive(Clone, PartialEq, Eq, prost::Oneof)]
    pub enum Request {
        /// `execRequest` (1): the commands; the first message.
        #[prost(message, tag = "1")]
        ExecRequest(super::Request),
        /// `execInput` (2).
        #[prost(message, tag = "2")]
        ExecInput(Input),
        /// `execResize` (3).
        #[prost(message, tag = "3")]
        ExecResize(Resize),
        /// `execCancel` (4), a `google.protobuf.Empty`.
        #[prost(message, tag = "4")]
        ExecCancel(()),
    }
}

/// `pb.StreamResponse`: one message to a client of `ExecStream`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct StreamResponse {
    /// The `response` one-of (1–2).
    #[prost(oneof = "stream_response::Response", tags = "1, 2")]
    pub response: Option<stream_response::Response>,
}

/// The messages nested in [`StreamResponse`].
pub mod stream_response {
    /// `StreamResponse.Output`: bytes a `streamOut` gave.
    #[derive(Clone, PartialEq, Eq, prost::Message)]
    pub struct Output {
        /// `index` (1): the command.
        #[prost(uint32, tag = "1")]
        pub index: u32,
        /// `fd` (3): its descriptor.
        #[prost(uint32, tag = "3")]
        pub fd: u32,
        /// `content` (2).
        #[prost(bytes = "vec", tag = "2")]
        pub content: Vec<u8>,
    }

    /// What the message is.
    #[derive(Clone, PartialEq, Eq, prost::Oneof)]
    pub enum Response {
        /// `execResponse` (1): the results; the last message.
        #[prost(message, tag = "1")]
        ExecResponse(super::Response),
        /// `execOutput` (2).
        #[prost(message, tag = "2")]
        ExecOutput(Output),
    }
}

#[cfg(test)]
mod tests {
    //! Each vector is what a protobuf library made of go-judge's own
    //! `.proto` files encodes for a message with every field set (or, for
    //! the empty file, none): decoding it here must give every field
    //! back, so each field's number and wire type are go-judge's.

    use prost::Message;

    use super::request::file::File as Kind;
    use super::request::{
        CachedFile, CmdCopyOutFile, CmdType, File, LocalFile, MemoryFile, PipeCollector, PipeMap,
        pipe_map::PipeIndex,
    };
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    fn file(kind: Kind) -> File {
        File { file: Some(kind) }
    }

    #[test]
    fn a_request_with_every_field_decodes_as_go_judge_encodes_it() {
        let bytes = hex(
            "0a03726964127e0a01610a016212034b3d561a060a040a022f731a0612040a0200ff1a061a040a024944\
             1a0b22090a036f7574100918011a022a001a0232001a002004280530063807420b0a02696e1205120\
             30a01784a050a016f100152030a01635a0164600c6801700e780f8001018a0103302d3192010\
             60a016c120174980101a001011a150a0408011002120408031004180122017028053001",
        );
        let expected = Request {
            request_id: "rid".into(),
            cmd: vec![CmdType {
                args: vec!["a".into(), "b".into()],
                env: vec!["K=V".into()],
                files: vec![
                    file(Kind::Local(LocalFile { src: "/s".into() })),
                    file(Kind::Memory(MemoryFile {
                        content: vec![0, 0xff],
                    })),
                    file(Kind::Cached(CachedFile {
                        file_id: "ID".into(),
                    })),
                    file(Kind::Pipe(PipeCollector {
                        name: "out".into(),
                        max: 9,
                        pipe: true,
                    })),
                    file(Kind::StreamIn(())),
                    file(Kind::StreamOut(())),
                    File { file: None },
                ],
                tty: true,
                cpu_time_limit: 4,
                clock_time_limit: 5,
                memory_limit: 6,
                stack_limit: 12,
                proc_limit: 7,
                cpu_rate_limit: 15,
                cpu_set_limit: "0-1".into(),
                data_segment_limit: true,
                address_space_limit: true,
                copy_in: [(
                    "in".to_owned(),
                    file(Kind::Memory(MemoryFile {
                        content: b"x".to_vec(),
                    })),
                )]
                .into(),
                symlinks: [("l".to_owned(), "t".to_owned())].into(),
                copy_out: vec![CmdCopyOutFile {
                    name: "o".into(),
                    optional: true,
                }],
                copy_out_cached: vec![CmdCopyOutFile {
                    name: "c".into(),
                    optional: false,
                }],
                copy_out_dir: "d".into(),
                copy_out_max: 14,
                copy_out_truncate: true,
            }],
            pipe_mapping: vec![PipeMap {
                r#in: Some(PipeIndex { index: 1, fd: 2 }),
                out: Some(PipeIndex { index: 3, fd: 4 }),
                proxy: true,
                name: "p".into(),
                max: 5,
                disable_zero_copy: true,
            }],
        };
        assert_eq!(Request::decode(bytes.as_slice()).unwrap(), expected);
        let again = Request::decode(expected.encode_to_vec().as_slice()).unwrap();
        assert_eq!(again, expected);
    }

    #[test]
    fn a_response_with_every_field_decodes_as_go_judge_encodes_it() {
        let bytes = hex(
            "0a03726964123c080910f5ffffffffffffffff011a016520042805320c0a067374646f757412020102\
             3a0a0a0362696e120346494440084a080a016610041a016d500a1a03657272",
        );
        let expected = Response {
            request_id: "rid".into(),
            results: vec![response::Result {
                status: response::result::StatusType::Signalled as i32,
                exit_status: -11,
                error: "e".into(),
                time: 4,
                run_time: 8,
                proc_peak: 10,
                memory: 5,
                files: [("stdout".to_owned(), vec![1, 2])].into(),
                file_ids: [("bin".to_owned(), "FID".to_owned())].into(),
                file_error: vec![response::FileError {
                    name: "f".into(),
                    r#type: response::file_error::ErrorType::CopyOutNotRegularFile as i32,
                    message: "m".into(),
                }],
            }],
            error: "err".into(),
        };
        assert_eq!(Response::decode(bytes.as_slice()).unwrap(), expected);
        let again = Response::decode(expected.encode_to_vec().as_slice()).unwrap();
        assert_eq!(again, expected);
    }

    #[test]
    fn the_file_messages_decode_as_go_judge_encodes_them() {
        assert_eq!(
            FileContent::decode(hex("0a016e12020063").as_slice()).unwrap(),
            FileContent {
                name: "n".into(),
                content: vec![0, b'c'],
            }
        );
        assert_eq!(
            FileListType::decode(hex("0a0a0a02494412046e616d65").as_slice()).unwrap(),
            FileListType {
                file_ids: [("ID".to_owned(), "name".to_owned())].into(),
            }
        );
        assert_eq!(
            FileId::decode(hex("0a024944").as_slice()).unwrap(),
            FileId {
                file_id: "ID".into()
            }
        );
    }

    #[test]
    fn stream_messages_decode_as_go_judge_encodes_them() {
        use stream_request::Request as Kind;
        let cases = [
            (
                "0a0a0a017212050a03636174",
                Kind::ExecRequest(Request {
                    request_id: "r".into(),
                    cmd: vec![CmdType {
                        args: vec!["cat".into()],
                        ..CmdType::default()
                    }],
                    ..Request::default()
                }),
            ),
            (
                "12080801120200781802",
                Kind::ExecInput(stream_request::Input {
                    index: 1,
                    fd: 2,
                    content: vec![0, b'x'],
                }),
            ),
            (
                "1a0c080110031804200528063002",
                Kind::ExecResize(stream_request::Resize {
                    index: 1,
                    fd: 2,
                    rows: 3,
                    cols: 4,
                    x: 5,
                    y: 6,
                }),
            ),
            ("2200", Kind::ExecCancel(())),
        ];
        for (bytes, expected) in cases {
            let decoded = StreamRequest::decode(&hex(bytes)[..]).unwrap();
            assert_eq!(decoded.request, Some(expected.clone()), "{bytes}");
            let encoded = StreamRequest {
                request: Some(expected),
            }
            .encode_to_vec();
            assert_eq!(encoded, hex(bytes));
        }

        use stream_response::Response as Out;
        let cases = [
            (
                "1209080312036869ff1801",
                Out::ExecOutput(stream_response::Output {
                    index: 3,
                    fd: 1,
                    content: b"hi\xff".to_vec(),
                }),
            ),
            (
                "0a0a0a0172120208011a0165",
                Out::ExecResponse(Response {
                    request_id: "r".into(),
                    results: vec![response::Result {
                        status: response::result::StatusType::Accepted as i32,
                        ..response::Result::default()
                    }],
                    error: "e".into(),
                }),
            ),
        ];
        for (bytes, expected) in cases {
            let decoded = StreamResponse::decode(&hex(bytes)[..]).unwrap();
            assert_eq!(decoded.response, Some(expected.clone()), "{bytes}");
            let encoded = StreamResponse {
                response: Some(expected),
            }
            .encode_to_vec();
            assert_eq!(encoded, hex(bytes), "encoded as go-judge's library does");
        }
    }
}
