//! Golden frames: the exact bytes of every sample message of
//! `common::request_samples` and `common::reply_samples`.
//!
//! A change to these bytes is a protocol version bump: a receiver of the
//! current version would misread the new encoding. Do not update a vector
//! to make a test pass without bumping `PROTOCOL_VERSION` (and then every
//! vector's header).
//!
//! The encoding is postcard's: unsigned integers (u16, u32, u64) and
//! lengths as LEB128 varints, i32 as a zigzag varint, an enum tag as a
//! varint of the variant's index, `Option` as a 0 or 1 byte before the
//! value, `bool` as a 0 or 1 byte, structs as their fields in order. The
//! entries marked "checked by hand" were decoded byte by byte against that
//! specification.

mod common;

use std::{collections::BTreeSet, fmt::Debug};

use hutch_protocol::{
    Access, Accounting, CgroupFile, CopyInOutcome, CopyInStep, DecodeError, EncodeError,
    ItemOutcome, MAGIC, MAX_FRAME_LEN, Mount, PROTOCOL_VERSION, Reply, Request, Stage, Status,
    Termination, decode_reply, decode_request, encode_reply, encode_request,
};

/// Checks that the sample `name` encodes to exactly `golden`, and that
/// `golden` decodes to exactly the sample.
fn check<T: PartialEq + Debug>(
    samples: Vec<(&'static str, T)>,
    name: &str,
    golden: &[u8],
    encode: fn(&T, &mut [u8]) -> Result<usize, EncodeError>,
    decode: fn(&[u8]) -> Result<T, DecodeError>,
) {
    let value = samples
        .into_iter()
        .find_map(|(n, value)| (n == name).then_some(value))
        .unwrap_or_else(|| panic!("no sample named {name:?}"));
    let mut buf = vec![0u8; MAX_FRAME_LEN];
    let len = encode(&value, &mut buf).expect("sample encodes");
    assert_eq!(
        &buf[..len],
        golden,
        "encoding of {name:?} differs from its golden frame"
    );
    assert_eq!(
        decode(golden).expect("golden frame decodes"),
        value,
        "golden frame of {name:?} decodes to another value"
    );
}

macro_rules! golden {
    (
        $samples:path, $encode:path, $decode:path;
        $($(#[$meta:meta])* $test:ident: $name:literal => [$($byte:literal),* $(,)?];)*
    ) => {
        $(
            $(#[$meta])*
            #[test]
            fn $test() {
                check($samples(), $name, &[$($byte),*], $encode, $decode);
            }
        )*

        /// The name of every sample pinned here.
        pub(super) const NAMES: &[&str] = &[$($name),*];
    };
}

mod request {
    use super::{check, common, decode_request, encode_request};

    golden! {
        common::request_samples, encode_request, decode_request;
        hello: "hello" => [
            0x48, 0x54, 0x02, 0x00, 0x00, 0x02, 0x00,
        ];
        // Checked by hand: header; tag 0 (Hello); version 2 as a one-byte
        // varint; u64::MAX as a LEB128 varint: nine bytes of seven set bits
        // with the continuation bit (63 bits), then 0x01 for the last bit.
        hello_all_features: "hello-all-features" => [
            0x48, 0x54, 0x02, 0x00,
            0x00,
            0x02,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ];
        // Checked by hand: "HT", version 2 as a little-endian u16, tag 1.
        ping: "ping" => [
            0x48, 0x54, 0x02, 0x00, 0x01,
        ];
        configure: "configure" => [
            0x48, 0x54, 0x02, 0x00, 0x02, 0x05, 0x00, 0x04, 0x2f, 0x75, 0x73, 0x72,
            0x04, 0x2f, 0x75, 0x73, 0x72, 0x00, 0x01, 0x01, 0x00, 0x00, 0x08, 0x2f,
            0x73, 0x72, 0x76, 0x2f, 0x62, 0x6f, 0x78, 0x04, 0x2f, 0x62, 0x6f, 0x78,
            0x01, 0x01, 0x01, 0x01, 0x01, 0x04, 0x2f, 0x74, 0x6d, 0x70, 0x80, 0x80,
            0x80, 0x20, 0x80, 0x20, 0xff, 0x07, 0x00, 0x02, 0x05, 0x2f, 0x70, 0x72,
            0x6f, 0x63, 0x01, 0x03, 0x09, 0x2f, 0x64, 0x65, 0x76, 0x2f, 0x6e, 0x75,
            0x6c, 0x6c, 0x09, 0x2f, 0x64, 0x65, 0x76, 0x2f, 0x6e, 0x75, 0x6c, 0x6c,
            0x01, 0x07, 0x2f, 0x64, 0x65, 0x76, 0x2f, 0x66, 0x64, 0x0d, 0x2f, 0x70,
            0x72, 0x6f, 0x63, 0x2f, 0x73, 0x65, 0x6c, 0x66, 0x2f, 0x66, 0x64, 0x01,
            0x0b, 0x2f, 0x70, 0x72, 0x6f, 0x63, 0x2f, 0x6b, 0x63, 0x6f, 0x72, 0x65,
            0x05, 0x68, 0x75, 0x74, 0x63, 0x68, 0x00, 0x04, 0x2f, 0x62, 0x6f, 0x78,
            0xe8, 0x07, 0xe8, 0x07, 0x00, 0x00,
        ];
        configure_minimal: "configure-minimal" => [
            0x48, 0x54, 0x02, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x05, 0x6c, 0x6f,
            0x63, 0x61, 0x6c, 0x01, 0x2f, 0x00, 0x00, 0x01, 0x09, 0x2f, 0x62, 0x69,
            0x6e, 0x2f, 0x74, 0x72, 0x75, 0x65, 0x01,
        ];
        open: "open" => [
            0x48, 0x54, 0x02, 0x00, 0x03, 0x03, 0x0b, 0x2f, 0x62, 0x6f, 0x78, 0x2f,
            0x69, 0x6e, 0x2e, 0x74, 0x78, 0x74, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x13, 0x2f, 0x62, 0x6f, 0x78, 0x2f, 0x6f, 0x75, 0x74, 0x2f, 0x72,
            0x65, 0x73, 0x75, 0x6c, 0x74, 0x2e, 0x74, 0x78, 0x74, 0x01, 0x01, 0x00,
            0x01, 0x00, 0xa4, 0x03, 0x01, 0x08, 0x2f, 0x62, 0x6f, 0x78, 0x2f, 0x6c,
            0x6f, 0x67, 0x02, 0x01, 0x01, 0x00, 0x01, 0x80, 0x03, 0x00,
        ];
        delete: "delete" => [
            0x48, 0x54, 0x02, 0x00, 0x04, 0x13, 0x2f, 0x62, 0x6f, 0x78, 0x2f, 0x6f,
            0x75, 0x74, 0x2f, 0x72, 0x65, 0x73, 0x75, 0x6c, 0x74, 0x2e, 0x74, 0x78,
            0x74,
        ];
        symlink: "symlink" => [
            0x48, 0x54, 0x02, 0x00, 0x05, 0x02, 0x0b, 0x2f, 0x62, 0x6f, 0x78, 0x2f,
            0x70, 0x79, 0x74, 0x68, 0x6f, 0x6e, 0x10, 0x2f, 0x75, 0x73, 0x72, 0x2f,
            0x62, 0x69, 0x6e, 0x2f, 0x70, 0x79, 0x74, 0x68, 0x6f, 0x6e, 0x33, 0x09,
            0x2f, 0x62, 0x6f, 0x78, 0x2f, 0x64, 0x61, 0x74, 0x61, 0x0b, 0x2e, 0x2e,
            0x2f, 0x73, 0x72, 0x76, 0x2f, 0x64, 0x61, 0x74, 0x61,
        ];
        reset: "reset" => [
            0x48, 0x54, 0x02, 0x00, 0x06,
        ];
        exec: "exec" => [
            0x48, 0x54, 0x02, 0x00, 0x07, 0x02, 0x10, 0x2f, 0x75, 0x73, 0x72, 0x2f,
            0x62, 0x69, 0x6e, 0x2f, 0x70, 0x79, 0x74, 0x68, 0x6f, 0x6e, 0x33, 0x07,
            0x6d, 0x61, 0x69, 0x6e, 0x2e, 0x70, 0x79, 0x02, 0x12, 0x50, 0x41, 0x54,
            0x48, 0x3d, 0x2f, 0x75, 0x73, 0x72, 0x2f, 0x62, 0x69, 0x6e, 0x3a, 0x2f,
            0x62, 0x69, 0x6e, 0x09, 0x48, 0x4f, 0x4d, 0x45, 0x3d, 0x2f, 0x62, 0x6f,
            0x78, 0x03, 0x00, 0x01, 0x02, 0x00, 0x01, 0x04, 0x2f, 0x62, 0x6f, 0x78,
            0x03, 0x03, 0x80, 0x80, 0x80, 0x04, 0x80, 0x80, 0x80, 0x04, 0x07, 0x40,
            0x40, 0x04, 0x00, 0x00, 0x04, 0x20, 0x00, 0x00, 0x04, 0x15, 0x00, 0x01,
            0xbe, 0x80, 0x80, 0x80, 0x0c, 0x06, 0x00, 0x00, 0x80, 0x80, 0xfc, 0xff,
            0x07, 0x06, 0x00, 0x00, 0x80, 0x80, 0x80, 0x80, 0x08, 0x01, 0x80, 0xa8,
            0xd6, 0xb9, 0x07, 0x01, 0x80, 0xe4, 0x97, 0xd0, 0x12, 0x01, 0x80, 0x80,
            0x40, 0x01, 0x80, 0x80, 0x80, 0x80, 0x01, 0x01, 0x10, 0x01, 0x01, 0xe8,
            0x07, 0x01, 0xe8, 0x07,
        ];
        // Checked by hand: tag 7 (Exec); argv: length 1, then "true" as
        // length 4 and its bytes; env, fd_map empty (length 0); exec_fd, cwd
        // None (0); rlimits, seccomp empty; the five limits None; sync false;
        // uid, gid None.
        exec_minimal: "exec-minimal" => [
            0x48, 0x54, 0x02, 0x00,
            0x07,
            0x01, 0x04, 0x74, 0x72, 0x75, 0x65,
            0x00, 0x00,
            0x00, 0x00,
            0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00,
            0x00,
            0x00, 0x00,
        ];
        // Checked by hand: tag 7; argv ["prog", "-v"]; env empty; fd_map
        // [1, 2, 2]; exec_fd Some(0) as 1 then 0; the rest as exec-minimal.
        exec_fd: "exec-fd" => [
            0x48, 0x54, 0x02, 0x00,
            0x07,
            0x02, 0x04, 0x70, 0x72, 0x6f, 0x67, 0x02, 0x2d, 0x76,
            0x00,
            0x03, 0x01, 0x02, 0x02,
            0x01, 0x00,
            0x00,
            0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00,
            0x00,
            0x00, 0x00,
        ];
        exec_rlimits: "exec-rlimits" => [
            0x48, 0x54, 0x02, 0x00, 0x07, 0x01, 0x04, 0x74, 0x72, 0x75, 0x65, 0x00,
            0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x01, 0x01, 0x01, 0x02, 0x02,
            0x02, 0x03, 0x03, 0x03, 0x04, 0x04, 0x04, 0x05, 0x05, 0x05, 0x06, 0x06,
            0x06, 0x07, 0x07, 0x07, 0x08, 0x08, 0x08, 0x09, 0x09, 0x09, 0x0a, 0x0a,
            0x0a, 0x0b, 0x0b, 0x0b, 0x0c, 0x0c, 0x0c, 0x0d, 0x0d, 0x0d, 0x0e, 0x0e,
            0x0e, 0x0f, 0x0f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ];
        proceed: "proceed" => [
            0x48, 0x54, 0x02, 0x00, 0x08,
        ];
        kill: "kill" => [
            0x48, 0x54, 0x02, 0x00, 0x09,
        ];
        // tag 10, version V1 (0), 13 files: three Procs (0), then tags 1, 2,
        // 3, 5, 6, 7, 8, 9, 10, 11.
        cgroup_v1: "cgroup-v1" => [
            0x48, 0x54, 0x02, 0x00, 0x0a, 0x00, 0x0d, 0x00, 0x00, 0x00, 0x01, 0x02,
            0x03, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b,
        ];
        // tag 10, version V1 (0), 2 files: Procs (0), MemoryStat (12).
        cgroup_v1_memory_stat: "cgroup-v1-memory-stat" => [
            0x48, 0x54, 0x02, 0x00, 0x0a, 0x00, 0x02, 0x00, 0x0c,
        ];
        // tag 10, version V2 (1), 8 files: Procs, CpuStat (4), then 5, 6, 7,
        // 8, 10, 11.
        cgroup_v2: "cgroup-v2" => [
            0x48, 0x54, 0x02, 0x00, 0x0a, 0x01, 0x08, 0x00, 0x04, 0x05, 0x06, 0x07,
            0x08, 0x0a, 0x0b,
        ];
        // Checked by hand: tag 10, version V2 (1), 10 files: the eight of
        // "cgroup-v2" (0, 4, 5, 6, 7, 8, 10, 11), then MemoryStat (12) and
        // Reclaim (13), each tag one byte.
        cgroup_v2_reclaim: "cgroup-v2-reclaim" => [
            0x48, 0x54, 0x02, 0x00, 0x0a, 0x01, 0x0a, 0x00, 0x04, 0x05, 0x06, 0x07,
            0x08, 0x0a, 0x0b, 0x0c, 0x0d,
        ];
        // Checked by hand: tag 13 (Regroup), version V1 (0), 4 files: three
        // Procs (0), then PidsPeak (14).
        regroup_v1: "regroup-v1" => [
            0x48, 0x54, 0x02, 0x00, 0x0d, 0x00, 0x04, 0x00, 0x00, 0x00, 0x0e,
        ];
        // tag 13, version V2 (1), 1 file: Procs.
        regroup_v2: "regroup-v2" => [
            0x48, 0x54, 0x02, 0x00, 0x0d, 0x01, 0x01, 0x00,
        ];
        // Checked by hand: tag 10 (Cgroup), version V2 (1), 11 files: Dir
        // (15), then 4, 5, 6, 7, 8, 10, 11, 12, 13 and PidsPeak (14).
        cgroup_v2_dir: "cgroup-v2-dir" => [
            0x48, 0x54, 0x02, 0x00, 0x0a, 0x01, 0x0b, 0x0f, 0x04, 0x05, 0x06, 0x07,
            0x08, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e,
        ];
        // tag 13 (Regroup), version V2 (1), 2 files: Dir (15), PidsPeak (14).
        regroup_v2_dir: "regroup-v2-dir" => [
            0x48, 0x54, 0x02, 0x00, 0x0d, 0x01, 0x02, 0x0f, 0x0e,
        ];
        // Checked by hand: tag 11 (CopyIn); 3 items, each a path (length,
        // then its bytes) and a mode: "/box/main.py" (12 bytes), 0o644 = 420
        // = 3 × 128 + 0x24: 0xa4, 0x03; "/box/bin/run" (12 bytes), 0o755 =
        // 493 = 3 × 128 + 0x6d: 0xed, 0x03; "/box/all" (8 bytes), 0o7777 =
        // 4095 = 31 × 128 + 0x7f: 0xff, 0x1f.
        copy_in: "copy-in" => [
            0x48, 0x54, 0x02, 0x00,
            0x0b,
            0x03,
            0x0c, 0x2f, 0x62, 0x6f, 0x78, 0x2f, 0x6d, 0x61, 0x69, 0x6e, 0x2e, 0x70, 0x79,
            0xa4, 0x03,
            0x0c, 0x2f, 0x62, 0x6f, 0x78, 0x2f, 0x62, 0x69, 0x6e, 0x2f, 0x72, 0x75, 0x6e,
            0xed, 0x03,
            0x08, 0x2f, 0x62, 0x6f, 0x78, 0x2f, 0x61, 0x6c, 0x6c,
            0xff, 0x1f,
        ];
        // Checked by hand: tag 11; 1 item: "/a" (2 bytes), mode 0.
        copy_in_minimal: "copy-in-minimal" => [
            0x48, 0x54, 0x02, 0x00, 0x0b, 0x01, 0x02, 0x2f, 0x61, 0x00,
        ];
        // Checked by hand: tag 12 (CopyOut); 3 strings: "/box/out.txt" (12
        // bytes), "/box/result/answer" (18, 0x12), "/tmp/log" (8).
        copy_out: "copy-out" => [
            0x48, 0x54, 0x02, 0x00,
            0x0c,
            0x03,
            0x0c, 0x2f, 0x62, 0x6f, 0x78, 0x2f, 0x6f, 0x75, 0x74, 0x2e, 0x74, 0x78, 0x74,
            0x12, 0x2f, 0x62, 0x6f, 0x78, 0x2f, 0x72, 0x65, 0x73, 0x75, 0x6c, 0x74, 0x2f,
            0x61, 0x6e, 0x73, 0x77, 0x65, 0x72,
            0x08, 0x2f, 0x74, 0x6d, 0x70, 0x2f, 0x6c, 0x6f, 0x67,
        ];
    }
}

mod reply {
    use super::{check, common, decode_reply, encode_reply};

    golden! {
        common::reply_samples, encode_reply, decode_reply;
        hello: "hello" => [
            0x48, 0x54, 0x02, 0x00, 0x00, 0x02, 0x00,
        ];
        pong: "pong" => [
            0x48, 0x54, 0x02, 0x00, 0x01,
        ];
        ack: "ack" => [
            0x48, 0x54, 0x02, 0x00, 0x02,
        ];
        // Checked by hand: tag 3 (Error); stage Open, tag 13; errno 13 as a
        // zigzag varint, 26; path Some: 1, then length 11 and "/box/in.txt";
        // message: length 17 and "permission denied".
        error: "error" => [
            0x48, 0x54, 0x02, 0x00,
            0x03,
            0x0d,
            0x1a,
            0x01, 0x0b, 0x2f, 0x62, 0x6f, 0x78, 0x2f, 0x69, 0x6e, 0x2e, 0x74, 0x78, 0x74,
            0x11, 0x70, 0x65, 0x72, 0x6d, 0x69, 0x73, 0x73, 0x69, 0x6f, 0x6e, 0x20,
            0x64, 0x65, 0x6e, 0x69, 0x65, 0x64,
        ];
        opened: "opened" => [
            0x48, 0x54, 0x02, 0x00, 0x04, 0x03, 0x00, 0x01, 0x04, 0x0c, 0x6e, 0x6f,
            0x20, 0x73, 0x75, 0x63, 0x68, 0x20, 0x66, 0x69, 0x6c, 0x65, 0x00, 0x02,
        ];
        opened_empty: "opened-empty" => [
            0x48, 0x54, 0x02, 0x00, 0x04, 0x00, 0x00,
        ];
        linked: "linked" => [
            0x48, 0x54, 0x02, 0x00, 0x05, 0x02, 0x00, 0x01, 0x22, 0x0b, 0x66, 0x69,
            0x6c, 0x65, 0x20, 0x65, 0x78, 0x69, 0x73, 0x74, 0x73, 0x00,
        ];
        started: "started" => [
            0x48, 0x54, 0x02, 0x00, 0x06, 0x02,
        ];
        // Checked by hand: tag 6; pid 2^22 - 1: three groups of seven set
        // bits with the continuation bit, then 0x01.
        started_large_pid: "started-large-pid" => [
            0x48, 0x54, 0x02, 0x00, 0x06, 0xff, 0xff, 0xff, 0x01,
        ];
        // Checked by hand: tag 7 (Finished); status Ok, 0; termination
        // Exited, tag 0, code 0 zigzag 0; user time 1_234_567 = 0x12d687:
        // groups 0x07, 0x2d, 0x4b; system time 345_678 = 0x5464e: groups
        // 0x4e, 0x0c, 0x15; memory 9 MiB = 0x900000: groups 0, 0, 0x40, 0x04;
        // wall time 2_000_001 = 0x1e8481: groups 0x01, 0x09, 0x7a; accounting
        // CgroupV2, 1; error None, 0; processes peak Some(1): 1, then 1.
        finished_ok: "finished-ok" => [
            0x48, 0x54, 0x02, 0x00,
            0x07,
            0x00,
            0x00, 0x00,
            0x87, 0xad, 0x4b,
            0xce, 0x8c, 0x15,
            0x80, 0x80, 0xc0, 0x04,
            0x81, 0x89, 0x7a,
            0x01,
            0x00,
            0x01, 0x01,
        ];
        finished_nonzero_exit: "finished-nonzero-exit" => [
            0x48, 0x54, 0x02, 0x00, 0x07, 0x01, 0x00, 0x02, 0x87, 0xad, 0x4b, 0xce,
            0x8c, 0x15, 0x80, 0x80, 0xc0, 0x04, 0x81, 0x89, 0x7a, 0x00, 0x00,
            0x01, 0x01,
        ];
        // Checked by hand: status Signalled, 2; termination Signalled, tag 1,
        // signal 11 zigzag 22 (0x16); accounting Rusage, 2; error None, 0;
        // processes peak Some(300): 1, then 300 = 0x12c: groups 0x2c with
        // the continuation bit (0xac), then 0x02.
        finished_signalled: "finished-signalled" => [
            0x48, 0x54, 0x02, 0x00, 0x07, 0x02, 0x01, 0x16, 0xfb, 0xa8, 0xd6, 0xb9,
            0x07, 0xc0, 0x9f, 0xab, 0x03, 0x80, 0x80, 0x80, 0x80, 0x01, 0x80, 0xea,
            0xad, 0xe9, 0x07, 0x02, 0x00,
            0x01, 0xac, 0x02,
        ];
        finished_time_limit: "finished-time-limit" => [
            0x48, 0x54, 0x02, 0x00, 0x07, 0x03, 0x01, 0x12, 0xfb, 0xa8, 0xd6, 0xb9,
            0x07, 0xc0, 0x9f, 0xab, 0x03, 0x80, 0x80, 0x80, 0x80, 0x01, 0x80, 0xea,
            0xad, 0xe9, 0x07, 0x01, 0x00,
            0x01, 0xac, 0x02,
        ];
        finished_wall_time_limit: "finished-wall-time-limit" => [
            0x48, 0x54, 0x02, 0x00, 0x07, 0x04, 0x01, 0x12, 0xfb, 0xa8, 0xd6, 0xb9,
            0x07, 0xc0, 0x9f, 0xab, 0x03, 0x80, 0x80, 0x80, 0x80, 0x01, 0x80, 0xea,
            0xad, 0xe9, 0x07, 0x01, 0x00,
            0x01, 0xac, 0x02,
        ];
        finished_memory_limit: "finished-memory-limit" => [
            0x48, 0x54, 0x02, 0x00, 0x07, 0x05, 0x01, 0x12, 0xfb, 0xa8, 0xd6, 0xb9,
            0x07, 0xc0, 0x9f, 0xab, 0x03, 0x80, 0x80, 0x80, 0x80, 0x01, 0x80, 0xea,
            0xad, 0xe9, 0x07, 0x00, 0x00,
            0x01, 0xac, 0x02,
        ];
        finished_output_limit: "finished-output-limit" => [
            0x48, 0x54, 0x02, 0x00, 0x07, 0x06, 0x01, 0x32, 0xfb, 0xa8, 0xd6, 0xb9,
            0x07, 0xc0, 0x9f, 0xab, 0x03, 0x80, 0x80, 0x80, 0x80, 0x01, 0x80, 0xea,
            0xad, 0xe9, 0x07, 0x02, 0x00,
            0x01, 0xac, 0x02,
        ];
        finished_disallowed_syscall: "finished-disallowed-syscall" => [
            0x48, 0x54, 0x02, 0x00, 0x07, 0x07, 0x01, 0x3e, 0xfb, 0xa8, 0xd6, 0xb9,
            0x07, 0xc0, 0x9f, 0xab, 0x03, 0x80, 0x80, 0x80, 0x80, 0x01, 0x80, 0xea,
            0xad, 0xe9, 0x07, 0x01, 0x00,
            0x01, 0xac, 0x02,
        ];
        finished_runner_error: "finished-runner-error" => [
            0x48, 0x54, 0x02, 0x00, 0x07, 0x08, 0x02, 0x00, 0x00, 0x00, 0xe0, 0xc6,
            0x5b, 0x01, 0x01, 0x18, 0x04, 0x01, 0x10, 0x2f, 0x75, 0x73, 0x72, 0x2f,
            0x62, 0x69, 0x6e, 0x2f, 0x70, 0x79, 0x74, 0x68, 0x6f, 0x6e, 0x34, 0x19,
            0x6e, 0x6f, 0x20, 0x73, 0x75, 0x63, 0x68, 0x20, 0x66, 0x69, 0x6c, 0x65,
            0x20, 0x6f, 0x72, 0x20, 0x64, 0x69, 0x72, 0x65, 0x63, 0x74, 0x6f, 0x72,
            0x79,
            0x00,
        ];
        error_stage_protocol: "error-stage-protocol" => [
            0x48, 0x54, 0x02, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00,
        ];
        error_stage_validate: "error-stage-validate" => [
            0x48, 0x54, 0x02, 0x00, 0x03, 0x01, 0x00, 0x00, 0x00,
        ];
        error_stage_handshake: "error-stage-handshake" => [
            0x48, 0x54, 0x02, 0x00, 0x03, 0x02, 0x00, 0x00, 0x00,
        ];
        error_stage_state: "error-stage-state" => [
            0x48, 0x54, 0x02, 0x00, 0x03, 0x03, 0x00, 0x00, 0x00,
        ];
        error_stage_mount: "error-stage-mount" => [
            0x48, 0x54, 0x02, 0x00, 0x03, 0x04, 0x00, 0x00, 0x00,
        ];
        error_stage_proc: "error-stage-proc" => [
            0x48, 0x54, 0x02, 0x00, 0x03, 0x05, 0x00, 0x00, 0x00,
        ];
        error_stage_pivot_root: "error-stage-pivot-root" => [
            0x48, 0x54, 0x02, 0x00, 0x03, 0x06, 0x00, 0x00, 0x00,
        ];
        error_stage_symlink: "error-stage-symlink" => [
            0x48, 0x54, 0x02, 0x00, 0x03, 0x07, 0x00, 0x00, 0x00,
        ];
        error_stage_mask: "error-stage-mask" => [
            0x48, 0x54, 0x02, 0x00, 0x03, 0x08, 0x00, 0x00, 0x00,
        ];
        error_stage_remount_root: "error-stage-remount-root" => [
            0x48, 0x54, 0x02, 0x00, 0x03, 0x09, 0x00, 0x00, 0x00,
        ];
        error_stage_hostname: "error-stage-hostname" => [
            0x48, 0x54, 0x02, 0x00, 0x03, 0x0a, 0x00, 0x00, 0x00,
        ];
        error_stage_workdir: "error-stage-workdir" => [
            0x48, 0x54, 0x02, 0x00, 0x03, 0x0b, 0x00, 0x00, 0x00,
        ];
        error_stage_init_command: "error-stage-init-command" => [
            0x48, 0x54, 0x02, 0x00, 0x03, 0x0c, 0x00, 0x00, 0x00,
        ];
        error_stage_open: "error-stage-open" => [
            0x48, 0x54, 0x02, 0x00, 0x03, 0x0d, 0x00, 0x00, 0x00,
        ];
        error_stage_delete: "error-stage-delete" => [
            0x48, 0x54, 0x02, 0x00, 0x03, 0x0e, 0x00, 0x00, 0x00,
        ];
        error_stage_reset: "error-stage-reset" => [
            0x48, 0x54, 0x02, 0x00, 0x03, 0x0f, 0x00, 0x00, 0x00,
        ];
        error_stage_spawn: "error-stage-spawn" => [
            0x48, 0x54, 0x02, 0x00, 0x03, 0x10, 0x00, 0x00, 0x00,
        ];
        error_stage_fds: "error-stage-fds" => [
            0x48, 0x54, 0x02, 0x00, 0x03, 0x11, 0x00, 0x00, 0x00,
        ];
        error_stage_cgroup: "error-stage-cgroup" => [
            0x48, 0x54, 0x02, 0x00, 0x03, 0x12, 0x00, 0x00, 0x00,
        ];
        error_stage_rlimit: "error-stage-rlimit" => [
            0x48, 0x54, 0x02, 0x00, 0x03, 0x13, 0x00, 0x00, 0x00,
        ];
        error_stage_chdir: "error-stage-chdir" => [
            0x48, 0x54, 0x02, 0x00, 0x03, 0x14, 0x00, 0x00, 0x00,
        ];
        error_stage_credentials: "error-stage-credentials" => [
            0x48, 0x54, 0x02, 0x00, 0x03, 0x15, 0x00, 0x00, 0x00,
        ];
        error_stage_capabilities: "error-stage-capabilities" => [
            0x48, 0x54, 0x02, 0x00, 0x03, 0x16, 0x00, 0x00, 0x00,
        ];
        error_stage_seccomp: "error-stage-seccomp" => [
            0x48, 0x54, 0x02, 0x00, 0x03, 0x17, 0x00, 0x00, 0x00,
        ];
        error_stage_execve: "error-stage-execve" => [
            0x48, 0x54, 0x02, 0x00, 0x03, 0x18, 0x00, 0x00, 0x00,
        ];
        error_stage_wait: "error-stage-wait" => [
            0x48, 0x54, 0x02, 0x00, 0x03, 0x19, 0x00, 0x00, 0x00,
        ];
        // Checked by hand: tag 8 (CopiedIn); 3 outcomes: Done (0); Failed
        // (1), step Create (0), errno 21 zigzag 42 (0x2a), "is a directory"
        // (14 bytes); Failed (1), step Fill (1), errno 28 zigzag 56 (0x38),
        // "no space left on device" (23 bytes, 0x17).
        copied_in: "copied-in" => [
            0x48, 0x54, 0x02, 0x00,
            0x08,
            0x03,
            0x00,
            0x01, 0x00, 0x2a,
            0x0e, 0x69, 0x73, 0x20, 0x61, 0x20, 0x64, 0x69, 0x72, 0x65, 0x63, 0x74, 0x6f,
            0x72, 0x79,
            0x01, 0x01, 0x38,
            0x17, 0x6e, 0x6f, 0x20, 0x73, 0x70, 0x61, 0x63, 0x65, 0x20, 0x6c, 0x65, 0x66,
            0x74, 0x20, 0x6f, 0x6e, 0x20, 0x64, 0x65, 0x76, 0x69, 0x63, 0x65,
        ];
        // Checked by hand: tag 8; 1 outcome, Done (0).
        copied_in_done: "copied-in-done" => [
            0x48, 0x54, 0x02, 0x00, 0x08, 0x01, 0x00,
        ];
    }
}

/// Feature bits travel in `Hello` and `HelloReply`: their values are wire
/// values as much as the tags are, and a bit once given never changes.
#[test]
fn init_feature_bits_are_pinned() {
    use hutch_protocol::features;
    assert_eq!(features::INIT_MEMORY_STAT, 1 << 0);
    assert_eq!(features::INIT_COPY, 1 << 1);
    assert_eq!(features::INIT_V2_RECLAIM, 1 << 2);
    assert_eq!(features::INIT_NET, 1 << 3);
    assert_eq!(features::INIT_CGROUP_DIR, 1 << 4);
    assert_eq!(features::INIT_KNOWN, 0b1_1111);
    let pinned = features::INIT_MEMORY_STAT | features::INIT_COPY | features::INIT_V2_RECLAIM;
    assert_eq!(
        features::INIT_KNOWN & pinned,
        pinned,
        "the init announces every bit it knows"
    );
    // An init's Hello with these three bits: features 7, one byte.
    let mut buf = vec![0u8; MAX_FRAME_LEN];
    let hello = Reply::Hello(hutch_protocol::HelloReply {
        version: PROTOCOL_VERSION,
        features: pinned,
    });
    let len = encode_reply(&hello, &mut buf).unwrap();
    assert_eq!(&buf[..len], [0x48, 0x54, 0x02, 0x00, 0x00, 0x02, 0x07]);
}

#[test]
fn golden_frames_are_for_protocol_version_2() {
    // Every vector above starts with this header. A version bump changes
    // it, and so every vector.
    assert_eq!(MAGIC, *b"HT");
    assert_eq!(PROTOCOL_VERSION, 2);
    assert_eq!(common::HEADER, [0x48, 0x54, 0x02, 0x00]);
}

fn names_of<T>(samples: &[(&'static str, T)]) -> Vec<&'static str> {
    samples.iter().map(|(name, _)| *name).collect()
}

fn assert_same_names(kind: &str, samples: &[&str], golden: &[&str]) {
    let sample_set: BTreeSet<_> = samples.iter().copied().collect();
    let golden_set: BTreeSet<_> = golden.iter().copied().collect();
    assert_eq!(
        sample_set.len(),
        samples.len(),
        "duplicate {kind} sample names"
    );
    assert_eq!(
        golden_set.len(),
        golden.len(),
        "duplicate {kind} golden names"
    );
    let unpinned: Vec<_> = sample_set.difference(&golden_set).collect();
    let orphans: Vec<_> = golden_set.difference(&sample_set).collect();
    assert!(
        unpinned.is_empty(),
        "{kind} samples without a golden frame: {unpinned:?}"
    );
    assert!(
        orphans.is_empty(),
        "{kind} golden frames without a sample: {orphans:?}"
    );
}

#[test]
fn every_request_sample_has_a_golden_frame() {
    assert_same_names(
        "request",
        &names_of(&common::request_samples()),
        request::NAMES,
    );
}

#[test]
fn every_reply_sample_has_a_golden_frame() {
    assert_same_names("reply", &names_of(&common::reply_samples()), reply::NAMES);
}

/// Records what a sample exercises. The matches are exhaustive, so a new
/// variant of any of these enums does not compile until it is listed here
/// (and then the coverage tests ask for a golden frame of it).
#[derive(Default)]
struct Coverage(BTreeSet<String>);

impl Coverage {
    fn note(&mut self, what: impl Into<String>) {
        self.0.insert(what.into());
    }

    fn option<T>(&mut self, field: &str, value: &Option<T>) {
        let state = if value.is_some() { "some" } else { "none" };
        self.note(format!("{field}={state}"));
    }

    fn request(&mut self, request: &Request) {
        let variant = match request {
            Request::Hello(_) => "hello",
            Request::Ping => "ping",
            Request::Configure(configure) => {
                for mount in &configure.mounts {
                    self.mount(mount);
                }
                "configure"
            }
            Request::Open(items) => {
                for item in items {
                    self.access(item.flags.access);
                }
                "open"
            }
            Request::Delete(_) => "delete",
            Request::Symlink(_) => "symlink",
            Request::Reset => "reset",
            Request::Exec(exec) => {
                self.option("exec_fd", &exec.exec_fd);
                self.option("cwd", &exec.cwd);
                self.option("uid", &exec.uid);
                self.option("gid", &exec.gid);
                self.option("cpu_time_ns", &exec.limits.cpu_time_ns);
                self.option("wall_time_ns", &exec.limits.wall_time_ns);
                self.option("output_bytes", &exec.limits.output_bytes);
                self.option("memory_bytes", &exec.limits.memory_bytes);
                self.option("processes", &exec.limits.processes);
                self.note(format!("sync={}", exec.sync));
                for rlimit in &exec.rlimits {
                    self.note(format!("Resource::{:?}", rlimit.resource));
                }
                "exec"
            }
            Request::Proceed => "proceed",
            Request::Kill => "kill",
            Request::Cgroup(cgroup) => {
                self.note(format!("CgroupVersion::{:?}", cgroup.version));
                for file in &cgroup.files {
                    self.cgroup_file(*file);
                }
                "cgroup"
            }
            Request::CopyIn(items) => {
                for item in items {
                    self.note(format!("copy-in mode={:o}", item.mode));
                }
                "copy-in"
            }
            Request::CopyOut(_) => "copy-out",
            Request::Regroup(cgroup) => {
                self.note(format!("CgroupVersion::{:?}", cgroup.version));
                for file in &cgroup.files {
                    self.cgroup_file(*file);
                }
                "regroup"
            }
        };
        self.note(format!("Request::{variant}"));
    }

    fn mount(&mut self, mount: &Mount) {
        let variant = match mount {
            Mount::Bind { .. } => "bind",
            Mount::Tmpfs { .. } => "tmpfs",
            Mount::Proc { .. } => "proc",
            Mount::Device { .. } => "device",
        };
        self.note(format!("Mount::{variant}"));
    }

    fn access(&mut self, access: Access) {
        let variant = match access {
            Access::Read => "read",
            Access::Write => "write",
            Access::ReadWrite => "read-write",
        };
        self.note(format!("Access::{variant}"));
    }

    fn reply(&mut self, reply: &Reply) {
        let variant = match reply {
            Reply::Hello(_) => "hello",
            Reply::Pong => "pong",
            Reply::Ack => "ack",
            Reply::Error(error) => {
                self.stage(error.stage);
                self.option("error path", &error.path);
                "error"
            }
            Reply::Opened(batch) | Reply::Linked(batch) => {
                for outcome in &batch.results {
                    let outcome = match outcome {
                        ItemOutcome::Done => "done",
                        ItemOutcome::Failed(_) => "failed",
                    };
                    self.note(format!("ItemOutcome::{outcome}"));
                }
                if matches!(reply, Reply::Opened(_)) {
                    "opened"
                } else {
                    "linked"
                }
            }
            Reply::Started { .. } => "started",
            Reply::Finished(result) => {
                self.status(result.status);
                let termination = match result.termination {
                    Termination::Exited(_) => "exited",
                    Termination::Signalled(_) => "signalled",
                    Termination::NotStarted => "not-started",
                };
                self.note(format!("Termination::{termination}"));
                let accounting = match result.accounting {
                    Accounting::CgroupV1 => "cgroup-v1",
                    Accounting::CgroupV2 => "cgroup-v2",
                    Accounting::Rusage => "rusage",
                };
                self.note(format!("Accounting::{accounting}"));
                self.option("result error", &result.error);
                self.option("processes peak", &result.processes_peak);
                "finished"
            }
            Reply::CopiedIn(outcomes) => {
                for outcome in outcomes {
                    match outcome {
                        CopyInOutcome::Done => self.note("CopyInOutcome::done"),
                        CopyInOutcome::Failed(failure) => {
                            self.note("CopyInOutcome::failed");
                            let step = match failure.step {
                                CopyInStep::Create => "create",
                                CopyInStep::Fill => "fill",
                            };
                            self.note(format!("CopyInStep::{step}"));
                        }
                    }
                }
                "copied-in"
            }
        };
        self.note(format!("Reply::{variant}"));
    }

    /// By wire tag, through a match without a wildcard: a file added to
    /// `CgroupFile` fails to compile here until it has a tag, and then
    /// fails the coverage test until a sample carries it.
    fn cgroup_file(&mut self, file: CgroupFile) {
        let tag = match file {
            CgroupFile::Procs => 0,
            CgroupFile::CpuUser => 1,
            CgroupFile::CpuSystem => 2,
            CgroupFile::CpuUsage => 3,
            CgroupFile::CpuStat => 4,
            CgroupFile::MemoryPeak => 5,
            CgroupFile::OomEvents => 6,
            CgroupFile::MemoryLimit => 7,
            CgroupFile::SwapLimit => 8,
            CgroupFile::ForceEmpty => 9,
            CgroupFile::PidsLimit => 10,
            CgroupFile::MemoryUsage => 11,
            CgroupFile::MemoryStat => 12,
            CgroupFile::Reclaim => 13,
            CgroupFile::PidsPeak => 14,
            CgroupFile::Dir => 15,
        };
        self.note(format!("CgroupFile::{tag}"));
    }

    fn stage(&mut self, stage: Stage) {
        let tag = match stage {
            Stage::Protocol => 0,
            Stage::Validate => 1,
            Stage::Handshake => 2,
            Stage::State => 3,
            Stage::Mount => 4,
            Stage::Proc => 5,
            Stage::PivotRoot => 6,
            Stage::Symlink => 7,
            Stage::Mask => 8,
            Stage::RemountRoot => 9,
            Stage::Hostname => 10,
            Stage::Workdir => 11,
            Stage::InitCommand => 12,
            Stage::Open => 13,
            Stage::Delete => 14,
            Stage::Reset => 15,
            Stage::Spawn => 16,
            Stage::Fds => 17,
            Stage::Cgroup => 18,
            Stage::Rlimit => 19,
            Stage::Chdir => 20,
            Stage::Credentials => 21,
            Stage::Capabilities => 22,
            Stage::Seccomp => 23,
            Stage::Execve => 24,
            Stage::Wait => 25,
        };
        self.note(format!("Stage::{tag}"));
    }

    fn status(&mut self, status: Status) {
        let tag = match status {
            Status::Ok => 0,
            Status::NonzeroExit => 1,
            Status::Signalled => 2,
            Status::TimeLimit => 3,
            Status::WallTimeLimit => 4,
            Status::MemoryLimit => 5,
            Status::OutputLimit => 6,
            Status::DisallowedSyscall => 7,
            Status::RunnerError => 8,
        };
        self.note(format!("Status::{tag}"));
    }

    fn assert_has(&self, expected: impl IntoIterator<Item = String>) {
        let missing: Vec<_> = expected
            .into_iter()
            .filter(|what| !self.0.contains(what))
            .collect();
        assert!(missing.is_empty(), "no golden frame exercises {missing:?}");
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn golden_requests_cover_every_variant_and_option() {
    let mut coverage = Coverage::default();
    for (_, request) in common::request_samples() {
        coverage.request(&request);
    }
    coverage.assert_has(strings(&[
        "Request::hello",
        "Request::ping",
        "Request::configure",
        "Request::open",
        "Request::delete",
        "Request::symlink",
        "Request::reset",
        "Request::exec",
        "Request::proceed",
        "Request::kill",
        "Request::cgroup",
        "Request::copy-in",
        "Request::copy-out",
        "Request::regroup",
        "CgroupVersion::V1",
        "CgroupVersion::V2",
        "Mount::bind",
        "Mount::tmpfs",
        "Mount::proc",
        "Mount::device",
        "Access::read",
        "Access::write",
        "Access::read-write",
        "sync=true",
        "sync=false",
        // The smallest and the largest mode, and two in between.
        "copy-in mode=0",
        "copy-in mode=644",
        "copy-in mode=755",
        "copy-in mode=7777",
    ]));
    for field in [
        "exec_fd",
        "cwd",
        "uid",
        "gid",
        "cpu_time_ns",
        "wall_time_ns",
        "output_bytes",
        "memory_bytes",
        "processes",
    ] {
        coverage.assert_has([format!("{field}=none"), format!("{field}=some")]);
    }
    coverage.assert_has(common::RESOURCES.iter().map(|r| format!("Resource::{r:?}")));
    // Procs (0) to Dir (15).
    coverage.assert_has((0..16).map(|tag| format!("CgroupFile::{tag}")));
    // Each v2-only file in a v2 sample, each v1-only one in a v1 sample,
    // MemoryStat in both (on v2 beside Reclaim).
    let mut by_version = BTreeSet::new();
    for (_, request) in common::request_samples() {
        if let Request::Cgroup(cgroup) = request {
            for file in cgroup.files {
                by_version.insert(format!("{:?} {file:?}", cgroup.version));
            }
        }
    }
    for expected in [
        "V1 CpuUser",
        "V1 CpuSystem",
        "V1 CpuUsage",
        "V1 ForceEmpty",
        "V1 MemoryStat",
        "V2 CpuStat",
        "V2 MemoryStat",
        "V2 Reclaim",
    ] {
        assert!(
            by_version.contains(expected),
            "no golden frame has {expected}: {by_version:?}"
        );
    }
}

#[test]
fn golden_replies_cover_every_variant_and_option() {
    let mut coverage = Coverage::default();
    for (_, reply) in common::reply_samples() {
        coverage.reply(&reply);
    }
    coverage.assert_has(strings(&[
        "Reply::hello",
        "Reply::pong",
        "Reply::ack",
        "Reply::error",
        "Reply::opened",
        "Reply::linked",
        "Reply::started",
        "Reply::finished",
        "Reply::copied-in",
        "ItemOutcome::done",
        "ItemOutcome::failed",
        "CopyInOutcome::done",
        "CopyInOutcome::failed",
        "CopyInStep::create",
        "CopyInStep::fill",
        "Termination::exited",
        "Termination::signalled",
        "Termination::not-started",
        "Accounting::cgroup-v1",
        "Accounting::cgroup-v2",
        "Accounting::rusage",
        "error path=none",
        "error path=some",
        "result error=none",
        "result error=some",
        "processes peak=none",
        "processes peak=some",
    ]));
    coverage.assert_has((0..26).map(|tag| format!("Stage::{tag}")));
    coverage.assert_has((0..9).map(|tag| format!("Status::{tag}")));
}
