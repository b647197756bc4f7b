//! Property tests: arbitrary messages survive encoding and decoding
//! unchanged, with the same validation verdict; valid messages built from
//! constrained strategies still validate on the far side; cut or padded
//! frames are rejected.

use std::{string::String, vec, vec::Vec};

use crate::{
    Accounting, Batch, BpfInstruction, CopyInFailure, CopyInItem, CopyInOutcome, CopyInStep,
    DecodeError, ErrorReply, ExecRequest, ExecResult, ItemError, ItemOutcome, Limits,
    MAX_FDS_PER_FRAME, MAX_FRAME_LEN, MAX_PROCESSES, MAX_TIME_NS, MIN_MEMORY_BYTES, Reply, Request,
    Resource, Rlimit, Stage, Status, Termination, ValidationError, decode_reply, decode_request,
    decode_request_reusing, encode_reply, encode_request,
};
use proptest::{collection::vec as vec_of, option, prelude::*, sample::Index};

fn request_frame(request: &Request) -> Vec<u8> {
    let mut buf = vec![0u8; MAX_FRAME_LEN];
    let len = encode_request(request, &mut buf).unwrap();
    buf.truncate(len);
    buf
}

fn reply_frame(reply: &Reply) -> Vec<u8> {
    let mut buf = vec![0u8; MAX_FRAME_LEN];
    let len = encode_reply(reply, &mut buf).unwrap();
    buf.truncate(len);
    buf
}

/// An absolute path without `..` components.
fn path() -> impl Strategy<Value = String> {
    "/([a-z0-9._-]{1,8}/){0,3}[a-z0-9_-]{0,8}"
        .prop_filter("no `..` component", |p| !p.split('/').any(|c| c == ".."))
}

/// Attached descriptors (up to 8) and a mapping that uses each of them,
/// some more than once, perhaps one of them as `exec_fd`.
fn descriptors() -> impl Strategy<Value = (usize, Vec<u32>, Option<u32>)> {
    (0usize..=8)
        .prop_flat_map(|attached| {
            let extra = if attached == 0 {
                Just(Vec::new()).boxed()
            } else {
                vec_of(0..attached as u32, 0..4).boxed()
            };
            let exec_fd = if attached == 0 {
                Just(None).boxed()
            } else {
                option::of(0..attached as u32).boxed()
            };
            (Just(attached), extra, exec_fd)
        })
        .prop_flat_map(|(attached, extra, exec_fd)| {
            let mut fd_map: Vec<u32> = (0..attached as u32).collect();
            // exec_fd may be the only use of its descriptor.
            if let Some(index) = exec_fd {
                fd_map.retain(|&i| i != index);
            }
            fd_map.extend(extra);
            (Just(attached), Just(fd_map).prop_shuffle(), Just(exec_fd))
        })
}

fn rlimit() -> impl Strategy<Value = Rlimit> {
    (any::<Resource>(), any::<u64>(), any::<u64>()).prop_map(|(resource, a, b)| Rlimit {
        resource,
        soft: a.min(b),
        hard: a.max(b),
    })
}

fn limits() -> impl Strategy<Value = Limits> {
    (
        option::of(1..=MAX_TIME_NS),
        option::of(1..=MAX_TIME_NS),
        option::of(1..=u64::MAX),
        option::of(MIN_MEMORY_BYTES..=u64::MAX),
        option::of(1..=MAX_PROCESSES),
    )
        .prop_map(
            |(cpu_time_ns, wall_time_ns, output_bytes, memory_bytes, processes)| Limits {
                cpu_time_ns,
                wall_time_ns,
                output_bytes,
                memory_bytes,
                processes,
            },
        )
}

/// A valid exec request and the number of descriptors that come with it.
fn valid_exec() -> impl Strategy<Value = (ExecRequest, usize)> {
    (
        (
            vec_of("[a-z/][a-z0-9./_ -]{0,15}", 1..6),
            vec_of("[A-Z_][A-Z0-9_]{0,7}=[ -~]{0,16}", 0..6),
            descriptors(),
            option::of(path()),
        ),
        (
            vec_of(rlimit(), 0..=16),
            vec_of(any::<BpfInstruction>(), 0..8),
            limits(),
            any::<bool>(),
            option::of(0..u32::MAX),
            option::of(0..u32::MAX),
        ),
    )
        .prop_map(
            |(
                (argv, env, (attached, fd_map, exec_fd), cwd),
                (mut rlimits, seccomp, limits, sync, uid, gid),
            )| {
                // One rlimit per resource: keep the first of each.
                let mut seen = std::vec::Vec::new();
                rlimits.retain(|r: &Rlimit| {
                    let fresh = !seen.contains(&r.resource);
                    seen.push(r.resource);
                    fresh
                });
                let exec = ExecRequest {
                    argv,
                    env,
                    fd_map,
                    exec_fd,
                    cwd,
                    rlimits,
                    seccomp,
                    limits,
                    sync,
                    uid,
                    gid,
                };
                (exec, attached)
            },
        )
}

fn valid_error() -> impl Strategy<Value = ErrorReply> {
    (
        any::<Stage>(),
        0..=4095i32,
        option::of(any::<String>()),
        any::<String>(),
    )
        .prop_map(|(stage, errno, path, message)| ErrorReply {
            stage,
            errno,
            path,
            message,
        })
}

fn ran() -> impl Strategy<Value = Termination> {
    prop_oneof![
        (0..=255i32).prop_map(Termination::Exited),
        (1..=64i32).prop_map(Termination::Signalled),
    ]
}

/// An exec result whose status, termination and error agree.
fn consistent_result() -> impl Strategy<Value = ExecResult> {
    let verdict = any::<Status>().prop_flat_map(|status| {
        let termination = match status {
            Status::Ok => Just(Termination::Exited(0)).boxed(),
            Status::NonzeroExit => (1..=255i32).prop_map(Termination::Exited).boxed(),
            Status::Signalled => (1..=64i32).prop_map(Termination::Signalled).boxed(),
            Status::RunnerError => prop_oneof![ran(), Just(Termination::NotStarted)].boxed(),
            _ => ran().boxed(),
        };
        let error = if status == Status::RunnerError {
            valid_error().prop_map(Some).boxed()
        } else {
            Just(None).boxed()
        };
        (Just(status), termination, error)
    });
    (
        verdict,
        any::<[u64; 4]>(),
        any::<Accounting>(),
        any::<Option<u32>>(),
    )
        .prop_map(
            |((status, termination, error), times, accounting, processes_peak)| ExecResult {
                status,
                termination,
                user_time_ns: times[0],
                system_time_ns: times[1],
                memory_bytes: times[2],
                wall_time_ns: times[3],
                accounting,
                error,
                processes_peak,
            },
        )
}

fn outcome() -> impl Strategy<Value = ItemOutcome> {
    prop_oneof![
        Just(ItemOutcome::Done),
        item_error().prop_map(ItemOutcome::Failed),
    ]
}

/// An absolute path naming a file below the root: not `/`, `/./` and the
/// like, which a copy-in refuses.
fn path_below_root() -> impl Strategy<Value = String> {
    path().prop_filter("names a file below the root", |p| {
        !p.split('/').all(|c| c.is_empty() || c == ".")
    })
}

/// A valid copy-in: 1 to 64 items, each an absolute path below the root and
/// a mode within the permission bits.
fn valid_copy_in() -> impl Strategy<Value = Vec<CopyInItem>> {
    vec_of(
        (path_below_root(), 0..=0o7777u32).prop_map(|(path, mode)| CopyInItem { path, mode }),
        1..=MAX_FDS_PER_FRAME,
    )
}

fn item_error() -> impl Strategy<Value = ItemError> {
    (0..=4095i32, any::<String>()).prop_map(|(errno, message)| ItemError { errno, message })
}

/// A valid copy-in outcome: done, or a failure of either step with an
/// errno Linux can return.
fn copy_in_outcome() -> impl Strategy<Value = CopyInOutcome> {
    prop_oneof![
        Just(CopyInOutcome::Done),
        (any::<CopyInStep>(), 0..=4095i32, any::<String>()).prop_map(|(step, errno, message)| {
            CopyInOutcome::Failed(CopyInFailure {
                step,
                errno,
                message,
            })
        }),
    ]
}

proptest! {
    #[test]
    fn request_round_trips(request: Request) {
        let frame = request_frame(&request);
        prop_assert_eq!(decode_request(&frame).unwrap(), request);
    }

    #[test]
    fn reply_round_trips(reply: Reply) {
        let frame = reply_frame(&reply);
        prop_assert_eq!(decode_reply(&frame).unwrap(), reply);
    }

    #[test]
    fn request_validation_verdict_survives_round_trip(request: Request, fds in 0usize..4) {
        let decoded = decode_request(&request_frame(&request)).unwrap();
        prop_assert_eq!(decoded.check(fds), request.check(fds));
    }

    #[test]
    fn reply_validation_verdict_survives_round_trip(reply: Reply, fds in 0usize..4) {
        let decoded = decode_reply(&reply_frame(&reply)).unwrap();
        prop_assert_eq!(decoded.check(fds), reply.check(fds));
    }

    #[test]
    fn valid_exec_round_trips_and_validates((exec, fds) in valid_exec()) {
        let request = Request::Exec(exec);
        prop_assert_eq!(request.check(fds), Ok(()));
        let decoded = decode_request(&request_frame(&request)).unwrap();
        prop_assert_eq!(decoded.validate(fds).map(|v| v.into_inner()), Ok(request));
    }

    #[test]
    fn consistent_finished_reply_round_trips_and_validates(result in consistent_result()) {
        let reply = Reply::Finished(result);
        prop_assert_eq!(reply.check(0), Ok(()));
        let decoded = decode_reply(&reply_frame(&reply)).unwrap();
        prop_assert_eq!(decoded.validate(0).map(|v| v.into_inner()), Ok(reply));
    }

    #[test]
    fn valid_opened_reply_round_trips_and_validates(results in vec_of(outcome(), 0..20)) {
        let done = results.iter().filter(|r| matches!(r, ItemOutcome::Done)).count();
        let reply = Reply::Opened(Batch { results, fds_attached: done as u32 });
        prop_assert_eq!(reply.check(done), Ok(()));
        let decoded = decode_reply(&reply_frame(&reply)).unwrap();
        prop_assert_eq!(decoded.validate(done).map(|v| v.into_inner()), Ok(reply));
    }

    #[test]
    fn valid_copy_in_round_trips_and_validates_with_one_descriptor_per_item(
        items in valid_copy_in(),
        other_fds in 0..=MAX_FDS_PER_FRAME,
    ) {
        let fds = items.len();
        let request = Request::CopyIn(items);
        prop_assert_eq!(request.check(fds), Ok(()));
        if other_fds != fds {
            prop_assert_eq!(
                request.check(other_fds),
                Err(ValidationError::FdCount { message: "copy-in", attached: other_fds, expected: fds })
            );
        }
        let decoded = decode_request(&request_frame(&request)).unwrap();
        prop_assert_eq!(decoded.validate(fds).map(|v| v.into_inner()), Ok(request));
    }

    #[test]
    fn valid_copy_out_round_trips_and_validates(paths in vec_of(path(), 1..=MAX_FDS_PER_FRAME)) {
        let request = Request::CopyOut(paths);
        prop_assert_eq!(request.check(0), Ok(()));
        let decoded = decode_request(&request_frame(&request)).unwrap();
        prop_assert_eq!(decoded.validate(0).map(|v| v.into_inner()), Ok(request));
    }

    #[test]
    fn valid_copied_in_reply_round_trips_and_validates(
        outcomes in vec_of(copy_in_outcome(), 0..=MAX_FDS_PER_FRAME),
    ) {
        let reply = Reply::CopiedIn(outcomes);
        prop_assert_eq!(reply.check(0), Ok(()));
        let decoded = decode_reply(&reply_frame(&reply)).unwrap();
        prop_assert_eq!(decoded.validate(0).map(|v| v.into_inner()), Ok(reply));
    }

    #[test]
    fn every_strict_prefix_of_a_request_frame_is_rejected(request: Request, cut: Index) {
        let frame = request_frame(&request);
        prop_assert!(decode_request(&frame[..cut.index(frame.len())]).is_err());
    }

    #[test]
    fn every_strict_prefix_of_a_reply_frame_is_rejected(reply: Reply, cut: Index) {
        let frame = reply_frame(&reply);
        prop_assert!(decode_reply(&frame[..cut.index(frame.len())]).is_err());
    }

    #[test]
    fn bytes_after_a_request_are_trailing(request: Request, extra in vec_of(any::<u8>(), 1..8)) {
        let mut frame = request_frame(&request);
        let end = frame.len();
        frame.extend_from_slice(&extra);
        prop_assert_eq!(
            decode_request(&frame),
            Err(DecodeError::TrailingBytes { message: "request", end, trailing: extra.len() })
        );
    }

    #[test]
    fn decoding_into_an_earlier_exec_gives_what_decoding_afresh_gives(
        earlier: ExecRequest,
        request: Request,
        cut: Index,
        extra in vec_of(any::<u8>(), 0..4),
    ) {
        // Whole frames, cut ones and padded ones: the same verdict, and the
        // same request, whatever `place` held before.
        let whole = request_frame(&request);
        let cut_frame = whole[..cut.index(whole.len())].to_vec();
        let mut padded = whole.clone();
        padded.extend_from_slice(&extra);
        for frame in [whole, cut_frame, padded] {
            let mut place = earlier.clone();
            match (decode_request(&frame), decode_request_reusing(&frame, &mut place)) {
                (Ok(Request::Exec(exec)), Ok(None)) => prop_assert_eq!(place, exec),
                (Ok(other), Ok(Some(reused))) => prop_assert_eq!(reused, other),
                (Err(fresh), Err(reused)) => prop_assert_eq!(reused, fresh),
                (fresh, reused) => prop_assert!(false, "{fresh:?} but {reused:?}"),
            }
        }
    }

    #[test]
    fn bytes_after_a_reply_are_trailing(reply: Reply, extra in vec_of(any::<u8>(), 1..8)) {
        let mut frame = reply_frame(&reply);
        let end = frame.len();
        frame.extend_from_slice(&extra);
        prop_assert_eq!(
            decode_reply(&frame),
            Err(DecodeError::TrailingBytes { message: "reply", end, trailing: extra.len() })
        );
    }
}
