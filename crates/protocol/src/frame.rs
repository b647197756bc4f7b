//! Framing: the fixed header, the size cap, and the postcard body.
//!
//! ```text
//! offset  size  field
//! 0       2     magic, the bytes 0x48 0x54 ("HT")
//! 2       2     protocol version, little-endian u16
//! 4       n     postcard encoding of one Request or Reply, nothing after it
//! ```

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{ExecRequest, Reply, Request};

/// The two bytes every frame starts with: `HT`.
pub const MAGIC: [u8; 2] = *b"HT";

/// The protocol version this crate speaks. Any change to the encoding of an
/// existing message (a field added, removed, reordered or retyped; a variant
/// added anywhere but at the end of an enum whose receivers must understand
/// it) bumps it. See `docs/protocol.md`, "Versioning".
pub const PROTOCOL_VERSION: u16 = 2;

/// Length of the fixed header: magic and version.
pub const HEADER_LEN: usize = 4;

/// The largest frame either side sends or accepts, header included: 256 KiB.
///
/// Receivers size their buffer to this and treat a truncated datagram
/// (`MSG_TRUNC`) as oversized. Encoders refuse to produce a larger frame.
pub const MAX_FRAME_LEN: usize = 256 * 1024;

/// The most file descriptors one frame may carry as `SCM_RIGHTS`.
pub const MAX_FDS_PER_FRAME: usize = 64;

/// Why a value could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The caller's buffer cannot hold the header.
    #[error("buffer of {len} bytes cannot hold the {HEADER_LEN}-byte frame header")]
    BufferTooSmall {
        /// Length of the buffer given.
        len: usize,
    },
    /// The encoded value does not fit the buffer or [`MAX_FRAME_LEN`].
    #[error("encoded message does not fit in {limit} bytes")]
    TooLarge {
        /// The smaller of the buffer length and [`MAX_FRAME_LEN`].
        limit: usize,
    },
    /// postcard reported an error other than a full buffer.
    #[error("postcard could not encode the message")]
    Body(#[source] postcard::Error),
}

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The frame is longer than [`MAX_FRAME_LEN`]; nothing was decoded.
    #[error("frame of {len} bytes exceeds the maximum of {MAX_FRAME_LEN} bytes")]
    Oversized {
        /// Length of the frame received.
        len: usize,
    },
    /// The frame is shorter than the header.
    #[error("frame of {len} bytes is shorter than the {HEADER_LEN}-byte header")]
    ShortHeader {
        /// Length of the frame received.
        len: usize,
    },
    /// The frame does not start with [`MAGIC`].
    #[error("bad frame magic {found:02x?}, expected {MAGIC:02x?}")]
    BadMagic {
        /// The first two bytes of the frame.
        found: [u8; 2],
    },
    /// The peer speaks another protocol version.
    #[error(
        "protocol version mismatch: peer speaks version {found}, this side speaks version {expected}"
    )]
    VersionMismatch {
        /// The version in the frame header.
        found: u16,
        /// [`PROTOCOL_VERSION`].
        expected: u16,
    },
    /// The body is not a valid encoding of the message type.
    #[error("malformed {message} body: {reason}")]
    Body {
        /// `"request"` or `"reply"`.
        message: &'static str,
        /// What postcard found wrong: a truncated body, a bad enum tag,
        /// invalid UTF-8, an overlong varint, a length beyond the frame.
        #[source]
        reason: postcard::Error,
    },
    /// A complete message was decoded but bytes follow it.
    #[error("{trailing} trailing bytes after the {message} ends at byte {end} of the frame")]
    TrailingBytes {
        /// `"request"` or `"reply"`.
        message: &'static str,
        /// Frame offset where the message ended.
        end: usize,
        /// How many bytes follow it.
        trailing: usize,
    },
}

/// Encodes `request` as one frame into `buf`; returns the frame length.
///
/// It does not validate: a request that breaks the rules of
/// [`Request::check`] encodes all the same, and the peer then refuses it.
/// Call [`Request::check`] first, with the number of descriptors that will
/// be attached (`hutch-host` does so for every request it sends).
///
/// ```
/// use hutch_protocol::{encode_request, ExecRequest, Request, MAX_FRAME_LEN};
///
/// let empty_argv = Request::Exec(ExecRequest::default());
/// let mut buf = [0u8; MAX_FRAME_LEN];
/// assert!(encode_request(&empty_argv, &mut buf).is_ok());
/// assert!(empty_argv.check(0).is_err());
/// ```
pub fn encode_request(request: &Request, buf: &mut [u8]) -> Result<usize, EncodeError> {
    encode(request, buf)
}

/// Encodes `reply` as one frame into `buf`; returns the frame length.
///
/// As [`encode_request`], it does not validate: call [`Reply::check`]
/// first.
pub fn encode_reply(reply: &Reply, buf: &mut [u8]) -> Result<usize, EncodeError> {
    encode(reply, buf)
}

/// Decodes one request frame. The result is structurally sound but not yet
/// checked: call [`Request::validate`] before acting on it.
pub fn decode_request(frame: &[u8]) -> Result<Request, DecodeError> {
    decode(frame, "request")
}

/// Decodes one reply frame. The result is structurally sound but not yet
/// checked: call [`Reply::validate`] before acting on it.
pub fn decode_reply(frame: &[u8]) -> Result<Reply, DecodeError> {
    decode(frame, "reply")
}

fn encode<T: Serialize>(value: &T, buf: &mut [u8]) -> Result<usize, EncodeError> {
    if buf.len() < HEADER_LEN {
        return Err(EncodeError::BufferTooSmall { len: buf.len() });
    }
    let limit = buf.len().min(MAX_FRAME_LEN);
    let (header, body) = buf[..limit].split_at_mut(HEADER_LEN);
    header[..2].copy_from_slice(&MAGIC);
    header[2..].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    match postcard::to_slice(value, body) {
        Ok(written) => Ok(HEADER_LEN + written.len()),
        Err(postcard::Error::SerializeBufferFull) => Err(EncodeError::TooLarge { limit }),
        Err(other) => Err(EncodeError::Body(other)),
    }
}

/// The tag of [`Request::Exec`], in the one byte its varint takes.
const EXEC_TAG: u8 = 7;

/// Decodes one request frame as [`decode_request`] does, except that an
/// `Exec` request is decoded into `exec`, reusing the vectors and strings
/// it already holds: `Ok(None)` then means `exec` holds the request; any
/// other request comes back as `Ok(Some(request))`.
///
/// A receiver that keeps one `ExecRequest` for all its execs decodes the
/// usual exec without allocating once those buffers have grown to the
/// requests' size (a `cwd` is the exception: an `Option` is always
/// decoded afresh). After an error `exec` holds a partly decoded request;
/// the next call overwrites all of it. As with `decode_request`, call
/// [`ExecRequest::check`] before acting on the result.
pub fn decode_request_reusing(
    frame: &[u8],
    exec: &mut ExecRequest,
) -> Result<Option<Request>, DecodeError> {
    let body = body(frame)?;
    let Some((&EXEC_TAG, fields)) = body.split_first() else {
        return decode(frame, "request").map(Some);
    };
    let mut deserializer = postcard::Deserializer::from_bytes(fields);
    ExecRequest::deserialize_in_place(&mut deserializer, exec).map_err(|reason| {
        DecodeError::Body {
            message: "request",
            reason,
        }
    })?;
    match deserializer.finalize() {
        Ok([]) => Ok(None),
        Ok(rest) => Err(DecodeError::TrailingBytes {
            message: "request",
            end: frame.len() - rest.len(),
            trailing: rest.len(),
        }),
        Err(reason) => Err(DecodeError::Body {
            message: "request",
            reason,
        }),
    }
}

/// The body of a frame whose size and header are right.
fn body(frame: &[u8]) -> Result<&[u8], DecodeError> {
    if frame.len() > MAX_FRAME_LEN {
        return Err(DecodeError::Oversized { len: frame.len() });
    }
    let Some((header, body)) = frame.split_first_chunk::<HEADER_LEN>() else {
        return Err(DecodeError::ShortHeader { len: frame.len() });
    };
    let magic = [header[0], header[1]];
    if magic != MAGIC {
        return Err(DecodeError::BadMagic { found: magic });
    }
    let version = u16::from_le_bytes([header[2], header[3]]);
    if version != PROTOCOL_VERSION {
        return Err(DecodeError::VersionMismatch {
            found: version,
            expected: PROTOCOL_VERSION,
        });
    }
    Ok(body)
}

fn decode<T: DeserializeOwned>(frame: &[u8], message: &'static str) -> Result<T, DecodeError> {
    let body = body(frame)?;
    match postcard::take_from_bytes::<T>(body) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(DecodeError::TrailingBytes {
            message,
            end: frame.len() - rest.len(),
            trailing: rest.len(),
        }),
        Err(reason) => Err(DecodeError::Body { message, reason }),
    }
}
