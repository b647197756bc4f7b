//! The wire format spoken between a hutch host and the init process of each
//! of its containers.
//!
//! Every message travels as one `SOCK_SEQPACKET` datagram, a *frame*: a
//! four-byte header ([`MAGIC`], the bytes `HT`, then [`PROTOCOL_VERSION`] as
//! a little-endian `u16`) followed by the [postcard] encoding of one
//! [`Request`] (host → init) or one [`Reply`] (init → host). File
//! descriptors travel beside the frame as `SCM_RIGHTS`; a message says how
//! many it carries and what each is for, and the receiver checks that count.
//!
//! Three steps turn bytes into something a handler may act on:
//!
//! 1. [`decode_request`] / [`decode_reply`] check the frame length against
//!    [`MAX_FRAME_LEN`], the header, and decode the body, rejecting trailing
//!    bytes. They never panic and allocate at most a small multiple of the
//!    frame length (see `docs/protocol.md`).
//! 2. [`Request::validate`] / [`Reply::validate`] check what the type system
//!    cannot: non-empty argv, absolute NUL-free paths, an fd mapping that
//!    matches the descriptors that came with the frame, limits in range. They
//!    return a [`Validated`] value, the only kind the host and init act on.
//! 3. Encoding ([`encode_request`], [`encode_reply`]) writes into a buffer the
//!    caller owns, with no allocation. It does not validate: a sender runs
//!    [`Request::check`] (or [`Reply::check`]) first, with the number of
//!    descriptors it will attach, so that it never sends what the peer
//!    refuses.
//!
//! ```
//! use hutch_protocol::{decode_request, encode_request, Request, MAX_FRAME_LEN};
//!
//! let mut buf = [0u8; MAX_FRAME_LEN];
//! let len = encode_request(&Request::Ping, &mut buf).unwrap();
//! assert_eq!(&buf[..len], &[b'H', b'T', 2, 0, 1]);
//! let decoded = decode_request(&buf[..len]).unwrap().validate(0).unwrap();
//! assert_eq!(*decoded, Request::Ping);
//! ```
//!
//! # On the socket
//!
//! This crate makes and reads frames and makes no system call. A peer that
//! carries them over the socket follows these rules (`docs/protocol.md`,
//! "Transport", has them in full; `crates/init/src/channel.rs` is the code
//! both hutch ends use):
//!
//! - One connected `AF_UNIX` `SOCK_SEQPACKET` pair per container; init finds
//!   its end at fd 3. One datagram is one frame: there is no length prefix,
//!   and no frame is empty, so a read of 0 bytes means the peer closed its
//!   end.
//! - A frame goes out in one `sendmsg`, its descriptors (at most
//!   [`MAX_FDS_PER_FRAME`]) as one `SCM_RIGHTS` control message in the same
//!   call; a message names them by their index in that array. The sending
//!   end's `SO_SNDBUF` must hold a datagram of [`MAX_FRAME_LEN`] bytes: the
//!   usual default refuses long frames with `EMSGSIZE`.
//! - A frame comes in through one `recvmsg` into a buffer of
//!   [`MAX_FRAME_LEN`] bytes, with `MSG_CMSG_CLOEXEC`. `MSG_TRUNC` in the
//!   returned flags means the datagram was longer: reject it without
//!   decoding. `MSG_CTRUNC`, or more than [`MAX_FDS_PER_FRAME`]
//!   descriptors, means close every descriptor that came and reject the
//!   frame.
//! - Decode, then validate with the number of descriptors that actually
//!   came.
//! - The host speaks first (`Hello`); init answers each request with one
//!   reply, in order. The exceptions are `Kill`, never answered by itself,
//!   and a synchronised `Exec`, answered by `Started` and then `Finished`.
//!
//! # Features
//!
//! The crate is `no_std` with `alloc`, has no OS calls, and forbids unsafe
//! code. Its default feature `std` links `std`: a `no_std` program depends
//! on it with `default-features = false`, or its own `#[panic_handler]`
//! clashes with `std`'s (error E0152). The errors implement
//! [`core::error::Error`] either way. The byte-level specification is
//! `docs/protocol.md` in the repository.

#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;
#[cfg(test)]
extern crate std;

mod frame;
mod reply;
mod request;
mod validate;

pub use frame::{
    DecodeError, EncodeError, HEADER_LEN, MAGIC, MAX_FDS_PER_FRAME, MAX_FRAME_LEN,
    PROTOCOL_VERSION, decode_reply, decode_request, decode_request_reusing, encode_reply,
    encode_request,
};
pub use reply::{
    Accounting, Batch, CopyInFailure, CopyInOutcome, CopyInStep, ErrorReply, ExecResult,
    HelloReply, ItemError, ItemOutcome, Reply, Stage, Status, Termination,
};
pub use request::{
    Access, BpfInstruction, CgroupFile, CgroupFiles, CgroupVersion, Configure, CopyInItem, Delete,
    ExecRequest, FileSystem, Hello, Limits, Mount, MountFlags, OpenFlags, OpenItem, Request,
    Resource, Rlimit, SymlinkItem,
};
pub use validate::{
    MAX_ARGS, MAX_BATCH, MAX_BPF_INSTRUCTIONS, MAX_ENV, MAX_MOUNTS, MAX_NAME_LEN, MAX_PATH_LEN,
    MAX_PROCESSES, MAX_TIME_NS, MIN_MEMORY_BYTES, Validated, ValidationError,
};

/// The search path a program gets when its environment names none.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Feature bits a host announces in [`Hello::features`] and init in
/// [`HelloReply::features`]; a receiver ignores bits it does not know.
pub mod features {
    /// The host cloned the container without a network namespace and asks
    /// init to make one before it answers the hello: the costliest
    /// namespace to make is then made while the host sets up the
    /// container's cgroup. Init announces [`INIT_NET`] when it did.
    pub const HOST_NET_BY_INIT: u64 = 1 << 0;
    /// Every host feature bit defined by this version of the crate.
    pub const HOST_KNOWN: u64 = HOST_NET_BY_INIT;
    /// Init accepts [`CgroupFile::MemoryStat`](crate::CgroupFile::MemoryStat)
    /// in a `Cgroup` request.
    pub const INIT_MEMORY_STAT: u64 = 1 << 0;
    /// Init serves [`Request::CopyIn`](crate::Request::CopyIn) and
    /// [`Request::CopyOut`](crate::Request::CopyOut).
    pub const INIT_COPY: u64 = 1 << 1;
    /// Init accepts [`CgroupFile::Reclaim`](crate::CgroupFile::Reclaim) and a
    /// v2 [`CgroupFile::MemoryStat`](crate::CgroupFile::MemoryStat), and
    /// reclaims through them at a reset.
    pub const INIT_V2_RECLAIM: u64 = 1 << 2;
    /// Init makes the network namespace when the host's hello asks
    /// ([`HOST_NET_BY_INIT`]); an init without this bit made none, and the
    /// host must not use it.
    pub const INIT_NET: u64 = 1 << 3;
    /// Init accepts [`CgroupFile::Dir`](crate::CgroupFile::Dir) in a
    /// `Cgroup` or `Regroup` request and starts programs in that group.
    pub const INIT_CGROUP_DIR: u64 = 1 << 4;
    /// Every init feature bit defined by this version of the crate.
    pub const INIT_KNOWN: u64 =
        INIT_MEMORY_STAT | INIT_COPY | INIT_V2_RECLAIM | INIT_NET | INIT_CGROUP_DIR;
}

#[cfg(test)]
mod tests;
