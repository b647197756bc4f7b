//! Malformed frames: each is rejected with the specific error its defect
//! calls for, and none makes the decoder panic. Encoding into buffers that
//! are too small fails the same way.
//!
//! That decoding frames with huge length claims allocates little is checked
//! by `alloc_bound.rs`, on the same frames.

mod common;

use std::fmt::Debug;

use common::{HEADER, Kind, frame};
use hutch_protocol::{
    CopyInFailure, CopyInOutcome, CopyInStep, DecodeError, EncodeError, ErrorReply, ExecRequest,
    MAX_FRAME_LEN, PROTOCOL_VERSION, Reply, Request, Stage, decode_reply, decode_request,
    encode_reply, encode_request,
};
use postcard::Error as Postcard;

fn exec_frame() -> Vec<u8> {
    common::request_frame(&Request::Exec(common::exec_request()))
}

fn reply_frame() -> Vec<u8> {
    common::reply_frame(&Reply::Finished(common::runner_error_result()))
}

fn body_error(message: &'static str, reason: Postcard) -> DecodeError {
    DecodeError::Body { message, reason }
}

#[track_caller]
fn assert_request_error(frame: &[u8], expected: DecodeError) {
    assert_eq!(decode_request(frame), Err(expected), "frame {frame:02x?}");
}

#[track_caller]
fn assert_reply_error(frame: &[u8], expected: DecodeError) {
    assert_eq!(decode_reply(frame), Err(expected), "frame {frame:02x?}");
}

/// `body` with the byte at `index` replaced by `byte`.
fn with_byte(body: &[u8], index: usize, byte: u8) -> Vec<u8> {
    let mut body = body.to_vec();
    body[index] = byte;
    body
}

/// Every strict prefix of `frame` fails: a short header below four bytes,
/// a body that ends too early from there on.
fn check_truncations<T: Debug>(
    frame: &[u8],
    message: &'static str,
    decode: fn(&[u8]) -> Result<T, DecodeError>,
) {
    assert!(decode(frame).is_ok(), "the full frame decodes");
    for len in 0..frame.len() {
        let expected = if len < 4 {
            DecodeError::ShortHeader { len }
        } else {
            body_error(message, Postcard::DeserializeUnexpectedEnd)
        };
        match decode(&frame[..len]) {
            Err(error) => assert_eq!(error, expected, "prefix of {len} bytes"),
            Ok(value) => panic!("prefix of {len} bytes decoded to {value:?}"),
        }
    }
}

#[test]
fn truncated_exec_request_is_rejected_at_every_length() {
    check_truncations(&exec_frame(), "request", decode_request);
}

#[test]
fn truncated_reply_is_rejected_at_every_length() {
    check_truncations(&reply_frame(), "reply", decode_reply);
}

#[test]
fn every_sample_frame_truncated_anywhere_is_rejected() {
    for (_, request) in common::request_samples() {
        check_truncations(&common::request_frame(&request), "request", decode_request);
    }
    for (_, reply) in common::reply_samples() {
        check_truncations(&common::reply_frame(&reply), "reply", decode_reply);
    }
}

#[test]
fn frame_one_byte_over_the_maximum_is_oversized_whatever_it_holds() {
    let len = MAX_FRAME_LEN + 1;
    // A valid header and a zero body, then one of garbage: the size check
    // comes before the header is read.
    let mut valid_header = HEADER.to_vec();
    valid_header.resize(len, 0);
    let garbage = vec![0xffu8; len];
    for frame in [&valid_header, &garbage] {
        assert_request_error(frame, DecodeError::Oversized { len });
        assert_reply_error(frame, DecodeError::Oversized { len });
    }
    let huge = vec![0u8; 4 * MAX_FRAME_LEN];
    assert_request_error(
        &huge,
        DecodeError::Oversized {
            len: 4 * MAX_FRAME_LEN,
        },
    );
}

/// An exec whose frame is exactly `len` bytes, `len` ≥ 16 KiB.
fn exec_of_frame_len(len: usize) -> Request {
    let mut exec = ExecRequest {
        argv: vec!["x".to_owned(), String::new()],
        ..common::minimal_exec()
    };
    let base = common::request_frame(&Request::Exec(exec.clone())).len();
    // The empty argument's length takes one byte; a length from 2^14 to
    // 2^21 - 1 takes three.
    exec.argv[1] = "a".repeat(len - base - 2);
    Request::Exec(exec)
}

#[test]
fn frame_of_exactly_the_maximum_length_is_accepted_and_one_more_byte_is_not() {
    let request = exec_of_frame_len(MAX_FRAME_LEN);
    let mut buf = vec![0u8; 2 * MAX_FRAME_LEN];
    assert_eq!(encode_request(&request, &mut buf), Ok(MAX_FRAME_LEN));
    assert_eq!(decode_request(&buf[..MAX_FRAME_LEN]).as_ref(), Ok(&request));

    let Request::Exec(mut exec) = request else {
        unreachable!()
    };
    exec.argv[1].push('a');
    assert_eq!(
        encode_request(&Request::Exec(exec), &mut buf),
        Err(EncodeError::TooLarge {
            limit: MAX_FRAME_LEN
        })
    );
    // A valid frame padded past the maximum is oversized, not trailing.
    let mut frame = exec_frame();
    frame.resize(MAX_FRAME_LEN + 1, 0);
    assert_request_error(
        &frame,
        DecodeError::Oversized {
            len: MAX_FRAME_LEN + 1,
        },
    );
}

#[test]
fn wrong_magic_is_bad_magic() {
    for magic in [*b"HU", *b"ht", *b"TH", [0, 0], [0xff, 0xff]] {
        for base in [exec_frame(), reply_frame()] {
            let mut frame = base;
            frame[..2].copy_from_slice(&magic);
            assert_request_error(&frame, DecodeError::BadMagic { found: magic });
            assert_reply_error(&frame, DecodeError::BadMagic { found: magic });
            // Even with no body at all.
            assert_request_error(&frame[..4], DecodeError::BadMagic { found: magic });
        }
    }
}

#[test]
fn wrong_version_is_version_mismatch() {
    // (bytes 2 and 3 of the header, the version they spell little-endian)
    for (bytes, found) in [
        ([0x00, 0x00], 0u16),
        ([0x01, 0x00], 1),
        ([0x03, 0x00], 3),
        ([0x00, 0x01], 256),
        ([0x02, 0x01], 258),
        ([0xff, 0xff], u16::MAX),
    ] {
        let expected = DecodeError::VersionMismatch {
            found,
            expected: PROTOCOL_VERSION,
        };
        for base in [exec_frame(), reply_frame()] {
            let mut frame = base;
            frame[2..4].copy_from_slice(&bytes);
            assert_request_error(&frame, expected.clone());
            assert_reply_error(&frame, expected.clone());
            assert_request_error(&frame[..4], expected.clone());
        }
    }
}

#[test]
fn version_mismatch_message_names_both_versions() {
    let mut frame = exec_frame();
    frame[2..4].copy_from_slice(&[0x02, 0x01]);
    let message = decode_request(&frame).unwrap_err().to_string();
    assert!(message.contains("version 258"), "{message}");
    assert!(message.contains("version 2"), "{message}");
    assert!(
        message.starts_with("protocol version mismatch"),
        "{message}"
    );
}

#[test]
fn trailing_bytes_are_rejected_with_their_position() {
    for trailing in [1usize, 2, 100] {
        let full = exec_frame();
        let mut frame = full.clone();
        frame.resize(full.len() + trailing, 0);
        assert_request_error(
            &frame,
            DecodeError::TrailingBytes {
                message: "request",
                end: full.len(),
                trailing,
            },
        );

        let full = reply_frame();
        let mut frame = full.clone();
        frame.resize(full.len() + trailing, 0x01);
        assert_reply_error(
            &frame,
            DecodeError::TrailingBytes {
                message: "reply",
                end: full.len(),
                trailing,
            },
        );
    }
    // Ping (tag 1) followed by another ping.
    assert_request_error(
        &frame(&[0x01, 0x01]),
        DecodeError::TrailingBytes {
            message: "request",
            end: 5,
            trailing: 1,
        },
    );
}

#[test]
fn unknown_request_tags_are_body_errors() {
    let custom = body_error("request", Postcard::SerdeDeCustom);
    for tag in [
        &[0x0e][..],
        &[0x0f],
        &[0x7f],
        &[0x80, 0x01],
        &[0xff, 0xff, 0xff, 0xff, 0x0f],
    ] {
        assert_request_error(&frame(tag), custom.clone());
    }
    // Tag 13 (Regroup) is the last one: with its body it decodes.
    assert_eq!(
        decode_request(&frame(&[0x0d, 0x01, 0x01, 0x00])),
        Ok(Request::Regroup(hutch_protocol::CgroupFiles {
            version: hutch_protocol::CgroupVersion::V2,
            files: vec![hutch_protocol::CgroupFile::Procs],
        }))
    );
    // Tag 12 (CopyOut) with its body decodes.
    assert_eq!(
        decode_request(&frame(&[0x0c, 0x01, 0x01, b'/'])),
        Ok(Request::CopyOut(vec!["/".to_owned()]))
    );
    // Tag 11 (CopyIn) needs its body too.
    assert_request_error(
        &frame(&[0x0b]),
        body_error("request", Postcard::DeserializeUnexpectedEnd),
    );
    // A tag wider than u32 is not even a tag.
    assert_request_error(
        &frame(&[0xff, 0xff, 0xff, 0xff, 0x10]),
        body_error("request", Postcard::DeserializeBadVarint),
    );
}

#[test]
fn unknown_reply_tags_are_body_errors() {
    let custom = body_error("reply", Postcard::SerdeDeCustom);
    for tag in [&[0x09][..], &[0x0a], &[0x80, 0x01], &[0xc8, 0x01]] {
        assert_reply_error(&frame(tag), custom.clone());
    }
    // Tag 2 (Ack) is valid, and tag 8 (CopiedIn) is the last one.
    assert!(decode_reply(&frame(&[0x02])).is_ok());
    assert_eq!(
        decode_reply(&frame(&[0x08, 0x00])),
        Ok(Reply::CopiedIn(Vec::new()))
    );
}

/// An error reply: tag 3, stage (index 1), errno 0, path None, empty
/// message.
const ERROR_BODY: [u8; 5] = [0x03, 0x19, 0x00, 0x00, 0x00];

/// A finished reply: tag 7, status (1), termination Exited(0) (2, 3), four
/// zero times, accounting CgroupV1 (8), no error, no processes peak.
const FINISHED_BODY: [u8; 11] = [
    0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
];

#[test]
fn unknown_stage_status_termination_and_accounting_tags_are_body_errors() {
    let custom = body_error("reply", Postcard::SerdeDeCustom);
    assert!(
        decode_reply(&frame(&ERROR_BODY)).is_ok(),
        "stage 25 is valid"
    );
    for stage in [26, 27, 0x7f] {
        assert_reply_error(&frame(&with_byte(&ERROR_BODY, 1, stage)), custom.clone());
    }

    assert!(decode_reply(&frame(&with_byte(&FINISHED_BODY, 1, 8))).is_ok());
    for status in [9, 10, 0x7f] {
        assert_reply_error(
            &frame(&with_byte(&FINISHED_BODY, 1, status)),
            custom.clone(),
        );
    }
    assert!(decode_reply(&frame(&with_byte(&FINISHED_BODY, 8, 2))).is_ok());
    assert_reply_error(&frame(&with_byte(&FINISHED_BODY, 8, 3)), custom.clone());
    // Termination NotStarted (2) has no code: drop one byte.
    let mut not_started = with_byte(&FINISHED_BODY, 2, 2);
    not_started.remove(3);
    assert!(decode_reply(&frame(&not_started)).is_ok());
    assert_reply_error(&frame(&with_byte(&FINISHED_BODY, 2, 3)), custom);
}

#[test]
fn unknown_item_outcome_mount_access_and_resource_tags_are_body_errors() {
    // Opened: tag 4, one result (Done, index 2), 1 descriptor.
    let opened = [0x04, 0x01, 0x00, 0x01];
    assert!(decode_reply(&frame(&opened)).is_ok());
    assert_reply_error(
        &frame(&with_byte(&opened, 2, 2)),
        body_error("reply", Postcard::SerdeDeCustom),
    );

    let custom = body_error("request", Postcard::SerdeDeCustom);
    // Configure: one mount, Proc (index 2) of "/" read-only, then empty
    // symlinks and masked paths, names, workdir "/", ids 0, no command,
    // the container's own file system.
    let configure = [
        0x02, 0x01, 0x02, 0x01, b'/', 0x01, 0x00, 0x00, 0x00, 0x00, 0x01, b'/', 0x00, 0x00, 0x00,
        0x00,
    ];
    assert!(decode_request(&frame(&configure)).is_ok());
    for mount in [4, 5, 0x7f] {
        assert_request_error(&frame(&with_byte(&configure, 2, mount)), custom.clone());
    }

    // Open: one item "/a", access (index 5), flags, mode 0, no parents.
    let open = [
        0x03, 0x01, 0x02, b'/', b'a', 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    assert!(decode_request(&frame(&open)).is_ok());
    assert_request_error(&frame(&with_byte(&open, 5, 3)), custom.clone());

    // Exec "x" with one rlimit: resource (index 9), soft 0, hard 0.
    let exec = [
        0x07, 0x01, 0x01, b'x', 0x00, 0x00, 0x00, 0x00, 0x01, 0x0f, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    assert!(decode_request(&frame(&exec)).is_ok(), "Rttime is valid");
    assert_request_error(&frame(&with_byte(&exec, 9, 0x10)), custom);
}

#[test]
fn unknown_cgroup_version_and_file_tags_are_body_errors() {
    use hutch_protocol::{CgroupFile, CgroupFiles, CgroupVersion};
    let custom = body_error("request", Postcard::SerdeDeCustom);
    // Cgroup: tag 10, version (index 1), two files: Procs, then the file
    // at index 4.
    let cgroup = [0x0a, 0x01, 0x02, 0x00, 0x0d];
    assert_eq!(
        decode_request(&frame(&cgroup)),
        Ok(Request::Cgroup(CgroupFiles {
            version: CgroupVersion::V2,
            files: vec![CgroupFile::Procs, CgroupFile::Reclaim],
        })),
        "file tag 13 is Reclaim"
    );
    assert_eq!(
        decode_request(&frame(&with_byte(&cgroup, 4, 14))),
        Ok(Request::Cgroup(CgroupFiles {
            version: CgroupVersion::V2,
            files: vec![CgroupFile::Procs, CgroupFile::PidsPeak],
        })),
        "file tag 14 is PidsPeak"
    );
    assert_eq!(
        decode_request(&frame(&with_byte(&cgroup, 4, 15))),
        Ok(Request::Cgroup(CgroupFiles {
            version: CgroupVersion::V2,
            files: vec![CgroupFile::Procs, CgroupFile::Dir],
        })),
        "file tag 15 is Dir"
    );
    // File tags end at 15 (Dir); an init from before Dir rejects 15 in the
    // same way, which is why a host sends it only to an init announcing
    // INIT_CGROUP_DIR (and a version 1 init, which predates Reclaim,
    // rejected 13, sent only to one announcing INIT_V2_RECLAIM).
    for file in [16, 17, 0x7f] {
        assert_request_error(&frame(&with_byte(&cgroup, 4, file)), custom.clone());
    }
    // Version tags end at 1 (V2).
    for version in [2, 0x7f] {
        assert_request_error(&frame(&with_byte(&cgroup, 1, version)), custom.clone());
    }
}

#[test]
fn unknown_copy_in_outcome_and_step_tags_are_body_errors() {
    let custom = body_error("reply", Postcard::SerdeDeCustom);
    // CopiedIn: tag 8, one outcome: Failed (tag 1, at body index 2), step
    // Fill (tag 1, at index 3), errno 0, empty message.
    let copied_in = [0x08, 0x01, 0x01, 0x01, 0x00, 0x00];
    assert_eq!(
        decode_reply(&frame(&copied_in)),
        Ok(Reply::CopiedIn(vec![CopyInOutcome::Failed(
            CopyInFailure {
                step: CopyInStep::Fill,
                errno: 0,
                message: String::new(),
            }
        )]))
    );
    assert_eq!(
        decode_reply(&frame(&with_byte(&copied_in, 3, 0x00))),
        Ok(Reply::CopiedIn(vec![CopyInOutcome::Failed(
            CopyInFailure {
                step: CopyInStep::Create,
                errno: 0,
                message: String::new(),
            }
        )]))
    );
    // Outcome tags end at 1 (Failed): the old FillFailed tag 2 is gone.
    for outcome in [2, 3, 0x7f] {
        assert_reply_error(&frame(&with_byte(&copied_in, 2, outcome)), custom.clone());
    }
    // Step tags end at 1 (Fill).
    for step in [2, 3, 0x7f] {
        assert_reply_error(&frame(&with_byte(&copied_in, 3, step)), custom.clone());
    }
    // A Done outcome has no step: the bytes after it are the next outcome's.
    assert_eq!(
        decode_reply(&frame(&[0x08, 0x02, 0x00, 0x00])),
        Ok(Reply::CopiedIn(vec![CopyInOutcome::Done; 2]))
    );
    assert_reply_error(
        &frame(&[0x08, 0x01, 0x00, 0x01]),
        DecodeError::TrailingBytes {
            message: "reply",
            end: HEADER.len() + 3,
            trailing: 1,
        },
    );
}

#[test]
fn invalid_utf8_in_a_string_is_a_bad_utf8_body_error() {
    let bad_utf8 = body_error("request", Postcard::DeserializeBadUtf8);
    for bytes in [
        &[0xff][..],
        &[0xc0, 0xaf],       // overlong encoding of '/'
        &[0xed, 0xa0, 0x80], // a UTF-16 surrogate
        &[0xe2, 0x82],       // cut multi-byte sequence
        &[0x80],             // lone continuation byte
    ] {
        // Delete "/<bytes>".
        let mut body = vec![0x04, bytes.len() as u8 + 1, b'/'];
        body.extend_from_slice(bytes);
        assert_request_error(&frame(&body), bad_utf8.clone());

        // Exec with argv ["<bytes>"].
        let mut body = vec![0x07, 0x01, bytes.len() as u8];
        body.extend_from_slice(bytes);
        body.extend_from_slice(&[0; 14]);
        assert_request_error(&frame(&body), bad_utf8.clone());

        // CopyIn of "/<bytes>", mode 0.
        let mut body = vec![0x0b, 0x01, bytes.len() as u8 + 1, b'/'];
        body.extend_from_slice(bytes);
        body.push(0x00);
        assert_request_error(&frame(&body), bad_utf8.clone());

        // CopyOut of "/ok" and "/<bytes>".
        let mut body = vec![
            0x0c,
            0x02,
            0x03,
            b'/',
            b'o',
            b'k',
            bytes.len() as u8 + 1,
            b'/',
        ];
        body.extend_from_slice(bytes);
        assert_request_error(&frame(&body), bad_utf8.clone());
    }
    // The same shape with valid UTF-8 decodes.
    assert!(decode_request(&frame(&[0x04, 0x03, b'/', 0xc3, 0xa9])).is_ok());

    // An error reply whose message is invalid.
    let body = [0x03, 0x00, 0x00, 0x00, 0x02, b'o', 0xff];
    assert_reply_error(
        &frame(&body),
        body_error("reply", Postcard::DeserializeBadUtf8),
    );
}

#[test]
fn length_claims_beyond_the_frame_are_body_errors() {
    let frames = common::overlong_claim_frames();
    assert!(frames.len() > 100);
    for (name, kind, frame) in frames {
        let (message, result) = match kind {
            Kind::Request => ("request", decode_request(&frame).map(|_| ())),
            Kind::Reply => ("reply", decode_reply(&frame).map(|_| ())),
        };
        let reason = if name.ends_with("2^70") {
            Postcard::DeserializeBadVarint
        } else {
            Postcard::DeserializeUnexpectedEnd
        };
        assert_eq!(result, Err(body_error(message, reason)), "{name}");
    }
}

#[test]
fn argv_count_and_string_length_of_u32_max_are_rejected() {
    // Exec claiming 2^32 - 1 arguments, with none.
    assert_request_error(
        &frame(&[0x07, 0xff, 0xff, 0xff, 0xff, 0x0f]),
        body_error("request", Postcard::DeserializeUnexpectedEnd),
    );
    // Delete of a path claiming 2^32 - 1 bytes, with one.
    assert_request_error(
        &frame(&[0x04, 0xff, 0xff, 0xff, 0xff, 0x0f, b'/']),
        body_error("request", Postcard::DeserializeUnexpectedEnd),
    );
}

#[test]
fn overlong_varints_are_bad_varint_body_errors() {
    let request = body_error("request", Postcard::DeserializeBadVarint);
    let reply = body_error("reply", Postcard::DeserializeBadVarint);
    // u32 (a started pid): six bytes, or a fifth byte above 0x0f.
    assert_reply_error(
        &frame(&[0x06, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00]),
        reply.clone(),
    );
    assert_reply_error(&frame(&[0x06, 0xff, 0xff, 0xff, 0xff, 0x10]), reply.clone());
    assert_eq!(
        decode_reply(&frame(&[0x06, 0xff, 0xff, 0xff, 0xff, 0x0f])),
        Ok(Reply::Started { pid: u32::MAX })
    );
    // u16 (a hello version): a third byte above 0x03.
    assert_request_error(&frame(&[0x00, 0x80, 0x80, 0x04, 0x00]), request.clone());
    assert!(decode_request(&frame(&[0x00, 0xff, 0xff, 0x03, 0x00])).is_ok());
    // u64 (hello features): a tenth byte above 0x01, or eleven bytes.
    let mut features = vec![0x00, 0x01];
    features.extend_from_slice(&[0xff; 9]);
    features.push(0x02);
    assert_request_error(&frame(&features), request.clone());
    let mut features = vec![0x00, 0x01];
    features.extend_from_slice(&[0x80; 10]);
    features.push(0x00);
    assert_request_error(&frame(&features), request.clone());
    // usize (a string length): eleven bytes.
    let mut delete = vec![0x04];
    delete.extend_from_slice(&[0x80; 10]);
    delete.push(0x00);
    assert_request_error(&frame(&delete), request.clone());
    // u32 (a copy-in mode): a fifth byte above 0x0f.
    assert_request_error(
        &frame(&[0x0b, 0x01, 0x02, b'/', b'a', 0xff, 0xff, 0xff, 0xff, 0x10]),
        request,
    );
    // i32 (an errno): a fifth byte above 0x0f.
    assert_reply_error(
        &frame(&[0x03, 0x00, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x00, 0x00]),
        reply.clone(),
    );
    // The errno of a failed copy-in item (after its step, Create): six
    // bytes.
    assert_reply_error(
        &frame(&[
            0x08, 0x01, 0x01, 0x00, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 0x00,
        ]),
        reply,
    );
}

#[test]
fn option_tags_other_than_0_and_1_are_bad_option_body_errors() {
    let minimal = common::request_frame(&Request::Exec(common::minimal_exec()));
    // Header, tag, argv ["true"] (6 bytes), env, fd_map: exec_fd at 13,
    // cwd at 14; the limits at 17..22; uid at 23, gid at 24.
    for (index, byte) in [(13, 2), (14, 0xff), (17, 2), (21, 0x80), (23, 2), (24, 3)] {
        let mut frame = minimal.clone();
        frame[index] = byte;
        assert_request_error(
            &frame,
            body_error("request", Postcard::DeserializeBadOption),
        );
    }
    // An error reply with a path tag of 2, and a finished reply with an
    // error tag of 2.
    assert_reply_error(
        &frame(&[0x03, 0x00, 0x00, 0x02, 0x00]),
        body_error("reply", Postcard::DeserializeBadOption),
    );
    assert_reply_error(
        &frame(&with_byte(&FINISHED_BODY, 9, 2)),
        body_error("reply", Postcard::DeserializeBadOption),
    );
}

#[test]
fn bool_bytes_other_than_0_and_1_are_bad_bool_body_errors() {
    let minimal = common::request_frame(&Request::Exec(common::minimal_exec()));
    // sync is at 22.
    for byte in [2, 0x80, 0xff] {
        let mut frame = minimal.clone();
        frame[22] = byte;
        assert_request_error(&frame, body_error("request", Postcard::DeserializeBadBool));
    }
    // A proc mount whose read_only is 2.
    let configure = [
        0x02, 0x01, 0x02, 0x01, b'/', 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, b'/', 0x00, 0x00, 0x00,
    ];
    assert_request_error(
        &frame(&configure),
        body_error("request", Postcard::DeserializeBadBool),
    );
}

#[test]
fn encoding_into_a_buffer_shorter_than_the_header_is_buffer_too_small() {
    for len in 0..4 {
        let mut buf = vec![0u8; len];
        assert_eq!(
            encode_request(&Request::Ping, &mut buf),
            Err(EncodeError::BufferTooSmall { len })
        );
        assert_eq!(
            encode_reply(&Reply::Pong, &mut buf),
            Err(EncodeError::BufferTooSmall { len })
        );
    }
}

#[test]
fn encoding_into_a_buffer_without_room_for_the_body_is_too_large() {
    let mut buf = [0u8; 4];
    assert_eq!(
        encode_request(&Request::Ping, &mut buf),
        Err(EncodeError::TooLarge { limit: 4 })
    );
    assert_eq!(
        encode_reply(&Reply::Pong, &mut buf),
        Err(EncodeError::TooLarge { limit: 4 })
    );

    let request = Request::Exec(common::exec_request());
    let full = common::request_frame(&request).len();
    for len in 4..full {
        let mut buf = vec![0u8; len];
        assert_eq!(
            encode_request(&request, &mut buf),
            Err(EncodeError::TooLarge { limit: len }),
            "buffer of {len} bytes"
        );
    }
    let mut buf = vec![0u8; full];
    assert_eq!(encode_request(&request, &mut buf), Ok(full));

    let reply = Reply::Finished(common::runner_error_result());
    let full = common::reply_frame(&reply).len();
    for len in 4..full {
        let mut buf = vec![0u8; len];
        assert_eq!(
            encode_reply(&reply, &mut buf),
            Err(EncodeError::TooLarge { limit: len }),
            "buffer of {len} bytes"
        );
    }
}

#[test]
fn encoding_a_value_larger_than_the_maximum_frame_is_too_large() {
    let mut buf = vec![0u8; 4 * MAX_FRAME_LEN];
    let request = Request::Exec(ExecRequest {
        argv: vec!["a".repeat(300 * 1024)],
        ..common::minimal_exec()
    });
    assert_eq!(
        encode_request(&request, &mut buf),
        Err(EncodeError::TooLarge {
            limit: MAX_FRAME_LEN
        })
    );
    let reply = Reply::Error(ErrorReply {
        stage: Stage::Protocol,
        errno: 0,
        path: None,
        message: "m".repeat(MAX_FRAME_LEN),
    });
    assert_eq!(
        encode_reply(&reply, &mut buf),
        Err(EncodeError::TooLarge {
            limit: MAX_FRAME_LEN
        })
    );
}

#[test]
fn body_error_messages_name_the_message_kind() {
    let request = decode_request(&frame(&[0x0a])).unwrap_err().to_string();
    assert!(request.starts_with("malformed request body"), "{request}");
    let reply = decode_reply(&frame(&[0x09])).unwrap_err().to_string();
    assert!(reply.starts_with("malformed reply body"), "{reply}");
}
