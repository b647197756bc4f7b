//! The properties the fuzz targets in `fuzz_targets/` check, written once for
//! both message directions.
//!
//! * [`decode`]: any byte string given to a decoder yields a message or an
//!   error, never a panic; an error's `Display` text can be produced.
//! * [`decode_reusing`]: decoding a request into an exec request that
//!   already holds one gives what decoding afresh gives.
//! * [`round_trip`]: a frame that decodes re-encodes (into a buffer of
//!   [`MAX_FRAME_LEN`] bytes, to no more bytes than the frame had), decodes
//!   again to an equal message, and encodes again to the same bytes.
//! * [`validate`]: the first byte chooses how many descriptors arrived with
//!   the frame (modulo `MAX_FDS_PER_FRAME + 1`), the rest is the frame;
//!   validating what decodes never panics, and a message that validates
//!   passes [`round_trip`].

use core::fmt::{self, Debug, Display, Write};
use std::cell::RefCell;

use hutch_protocol::{
    DecodeError, EncodeError, ExecRequest, MAX_FDS_PER_FRAME, MAX_FRAME_LEN, Reply, Request,
    Validated, ValidationError, decode_reply, decode_request, decode_request_reusing, encode_reply,
    encode_request,
};

/// A message type of the protocol, with its codec and validation.
pub trait Message: Sized + PartialEq + Debug {
    /// `"request"` or `"reply"`, for assertion messages.
    const NAME: &'static str;
    /// Decodes one frame.
    fn decode(frame: &[u8]) -> Result<Self, DecodeError>;
    /// Encodes one frame into `buf`, returning its length.
    fn encode(&self, buf: &mut [u8]) -> Result<usize, EncodeError>;
    /// Validates the message as received with `fds_attached` descriptors.
    fn validate(self, fds_attached: usize) -> Result<Validated<Self>, ValidationError>;
}

impl Message for Request {
    const NAME: &'static str = "request";
    fn decode(frame: &[u8]) -> Result<Self, DecodeError> {
        decode_request(frame)
    }
    fn encode(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        encode_request(self, buf)
    }
    fn validate(self, fds_attached: usize) -> Result<Validated<Self>, ValidationError> {
        Request::validate(self, fds_attached)
    }
}

impl Message for Reply {
    const NAME: &'static str = "reply";
    fn decode(frame: &[u8]) -> Result<Self, DecodeError> {
        decode_reply(frame)
    }
    fn encode(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        encode_reply(self, buf)
    }
    fn validate(self, fds_attached: usize) -> Result<Validated<Self>, ValidationError> {
        Reply::validate(self, fds_attached)
    }
}

/// Feeds `data` to the decoder of `M`; renders the error when it fails.
pub fn decode<M: Message>(data: &[u8]) {
    if let Err(error) = M::decode(data) {
        render(&error);
    }
}

/// Decodes `data` as a request twice with [`decode_request_reusing`], into
/// an exec request that first holds a fixed one and then whatever the first
/// pass left, and checks both agree with [`decode_request`]: the same
/// request, or the same error.
pub fn decode_reusing(data: &[u8]) {
    let fresh = decode_request(data);
    let mut place = ExecRequest {
        argv: (0..6).map(|i| "argument ".repeat(i)).collect(),
        env: vec!["PATH=/usr/bin:/bin".into(), "HOME=/w".into()],
        fd_map: vec![0, 1, 1],
        exec_fd: Some(2),
        cwd: Some("/tmp".into()),
        sync: true,
        uid: Some(1000),
        ..ExecRequest::default()
    };
    for _ in 0..2 {
        match (&fresh, decode_request_reusing(data, &mut place)) {
            (Ok(Request::Exec(exec)), Ok(None)) => assert_eq!(&place, exec),
            (Ok(other), Ok(Some(reused))) => assert_eq!(&reused, other),
            (Err(fresh), Err(reused)) => assert_eq!(&reused, fresh),
            (fresh, reused) => {
                panic!("decode_request gave {fresh:?}, decode_request_reusing {reused:?}")
            }
        }
    }
}

/// Checks the round trip of whatever `data` decodes to, if anything.
pub fn round_trip<M: Message>(data: &[u8]) {
    if let Ok(message) = M::decode(data) {
        check_round_trip(&message, data.len());
    }
}

/// Splits `data` into a descriptor count and a frame, decodes and validates
/// the frame, and checks the round trip of a message that validates.
pub fn validate<M: Message>(data: &[u8]) {
    let Some((&selector, frame)) = data.split_first() else {
        return;
    };
    let fds_attached = usize::from(selector) % (MAX_FDS_PER_FRAME + 1);
    let Ok(message) = M::decode(frame) else {
        return;
    };
    match message.validate(fds_attached) {
        Ok(valid) => check_round_trip(&*valid, frame.len()),
        Err(error) => render(&error),
    }
}

thread_local! {
    /// Two frame buffers, allocated once per process rather than per input.
    static BUFFERS: RefCell<(Vec<u8>, Vec<u8>)> =
        RefCell::new((vec![0; MAX_FRAME_LEN], vec![0; MAX_FRAME_LEN]));
}

/// `first` was decoded from a frame of `frame_len` bytes: encoding it must
/// succeed and give at most that many bytes (postcard's encoding is the
/// shortest, a received frame may only be longer through overlong varints);
/// decoding that must give `first` back, and encoding the copy the same bytes.
fn check_round_trip<M: Message>(first: &M, frame_len: usize) {
    BUFFERS.with_borrow_mut(|(once, twice)| {
        let len = first.encode(once).unwrap_or_else(|error| {
            panic!("a decoded {} does not encode: {error}\n{first:#?}", M::NAME)
        });
        assert!(
            len <= frame_len,
            "a {} decoded from {frame_len} bytes encodes to {len} bytes",
            M::NAME,
        );
        let second = M::decode(&once[..len]).unwrap_or_else(|error| {
            panic!(
                "a re-encoded {} does not decode: {error}\nbytes: {:02x?}\n{first:#?}",
                M::NAME,
                &once[..len],
            )
        });
        assert_eq!(
            *first,
            second,
            "a {} changed across encode and decode",
            M::NAME
        );
        let len_again = second
            .encode(twice)
            .unwrap_or_else(|error| panic!("a re-decoded {} does not encode: {error}", M::NAME));
        assert_eq!(
            once[..len],
            twice[..len_again],
            "two encodings of one {} differ",
            M::NAME,
        );
    });
}

/// Formats `value` into a sink that drops the text: catches a panicking
/// `Display` without allocating.
fn render(value: &impl Display) {
    struct Discard;
    impl Write for Discard {
        fn write_str(&mut self, _: &str) -> fmt::Result {
            Ok(())
        }
    }
    write!(Discard, "{value}").expect("formatting into a sink that never fails");
}
