//! One end of the `SOCK_SEQPACKET` connection between host and init: frames
//! out and in, with file descriptors as `SCM_RIGHTS`.
//!
//! Both the host library and init compile this file, so the two ends treat
//! the socket identically: buffers sized to the protocol maximum, truncated
//! datagrams and truncated control data rejected, received descriptors
//! close-on-exec, `MSG_NOSIGNAL` on every send.

use alloc::vec::Vec;
use core::mem::MaybeUninit;

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::io::{IoSlice, IoSliceMut};

use hutch_protocol::{
    DecodeError, EncodeError, ExecRequest, MAX_FDS_PER_FRAME, MAX_FRAME_LEN, Reply, Request,
};
use rustix::io::Errno;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

/// Why a frame could not be sent or received.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The peer closed its end: it exited or was killed.
    #[error("peer closed the connection")]
    Closed,
    /// `sendmsg` or `recvmsg` failed.
    #[error("socket {op} failed")]
    Socket {
        /// `send` or `receive`.
        op: &'static str,
        /// The OS error.
        #[source]
        errno: crate::OsError,
    },
    /// The datagram was longer than [`MAX_FRAME_LEN`].
    #[error("received a frame longer than {MAX_FRAME_LEN} bytes")]
    Truncated,
    /// More descriptors came than [`MAX_FDS_PER_FRAME`].
    #[error("received more than {MAX_FDS_PER_FRAME} descriptors with one frame")]
    TooManyFds,
    /// The frame could not be encoded.
    #[error("cannot encode {kind}")]
    Encode {
        /// The message kind.
        kind: &'static str,
        /// Why.
        #[source]
        source: EncodeError,
    },
    /// The frame could not be decoded.
    #[error("cannot decode a frame from the peer")]
    Decode(#[source] DecodeError),
}

const CMSG_LEN: usize = rustix::cmsg_space!(ScmRights(MAX_FDS_PER_FRAME));

/// A connected `SOCK_SEQPACKET` socket with its frame buffer.
pub struct Channel {
    socket: OwnedFd,
    buf: crate::sys::FrameBuffer,
}

impl Channel {
    /// Wraps a connected `SOCK_SEQPACKET` socket.
    pub fn new(socket: OwnedFd) -> Self {
        Self {
            socket,
            buf: crate::sys::FrameBuffer::new(MAX_FRAME_LEN),
        }
    }

    /// The socket, for polling.
    pub fn socket(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }

    /// Sends `request` with `fds` attached.
    #[allow(dead_code)]
    pub fn send_request(
        &mut self,
        request: &Request,
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), ChannelError> {
        let len = hutch_protocol::encode_request(request, &mut self.buf).map_err(|source| {
            ChannelError::Encode {
                kind: request.kind(),
                source,
            }
        })?;
        send_frame(self.socket.as_fd(), &self.buf[..len], fds)
    }

    /// Sends `reply` with `fds` attached.
    #[allow(dead_code)]
    pub fn send_reply(
        &mut self,
        reply: &Reply,
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), ChannelError> {
        let len = hutch_protocol::encode_reply(reply, &mut self.buf).map_err(|source| {
            ChannelError::Encode {
                kind: reply.kind(),
                source,
            }
        })?;
        send_frame(self.socket.as_fd(), &self.buf[..len], fds)
    }

    /// Receives one request and the descriptors that came with it.
    #[allow(dead_code)]
    pub fn recv_request(&mut self, fds: &mut Vec<OwnedFd>) -> Result<Request, ChannelError> {
        let len = recv_frame(self.socket.as_fd(), &mut self.buf, fds)?;
        hutch_protocol::decode_request(&self.buf[..len]).map_err(ChannelError::Decode)
    }

    /// Receives one request and the descriptors that came with it; an exec
    /// request is decoded into `exec` (`Ok(None)`), reusing its buffers.
    #[allow(dead_code)]
    pub fn recv_request_reusing(
        &mut self,
        fds: &mut Vec<OwnedFd>,
        exec: &mut ExecRequest,
    ) -> Result<Option<Request>, ChannelError> {
        let len = recv_frame(self.socket.as_fd(), &mut self.buf, fds)?;
        hutch_protocol::decode_request_reusing(&self.buf[..len], exec).map_err(ChannelError::Decode)
    }

    /// Receives one reply and the descriptors that came with it.
    #[allow(dead_code)]
    pub fn recv_reply(&mut self, fds: &mut Vec<OwnedFd>) -> Result<Reply, ChannelError> {
        let len = recv_frame(self.socket.as_fd(), &mut self.buf, fds)?;
        hutch_protocol::decode_reply(&self.buf[..len]).map_err(ChannelError::Decode)
    }
}

fn send_frame(
    socket: BorrowedFd<'_>,
    frame: &[u8],
    fds: &[BorrowedFd<'_>],
) -> Result<(), ChannelError> {
    let mut space = [MaybeUninit::<u8>::uninit(); CMSG_LEN];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty()
        && (fds.len() > MAX_FDS_PER_FRAME || !control.push(SendAncillaryMessage::ScmRights(fds)))
    {
        return Err(ChannelError::TooManyFds);
    }
    let iov = [IoSlice::new(frame)];
    loop {
        match rustix::net::sendmsg(socket, &iov, &mut control, SendFlags::NOSIGNAL) {
            Ok(_) => return Ok(()),
            Err(Errno::INTR) => continue,
            Err(Errno::PIPE | Errno::CONNRESET) => return Err(ChannelError::Closed),
            Err(errno) => {
                return Err(ChannelError::Socket {
                    op: "send",
                    errno: errno.into(),
                });
            }
        }
    }
}

fn recv_frame(
    socket: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> Result<usize, ChannelError> {
    fds.clear();
    let mut space = [MaybeUninit::<u8>::uninit(); CMSG_LEN];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = loop {
        match rustix::net::recvmsg(socket, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC) {
            Ok(msg) => break msg,
            Err(Errno::INTR) => continue,
            Err(Errno::CONNRESET) => return Err(ChannelError::Closed),
            Err(errno) => {
                return Err(ChannelError::Socket {
                    op: "receive",
                    errno: errno.into(),
                });
            }
        }
    };
    // Take ownership of whatever arrived first, so it is closed on every
    // error path below.
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    if msg.flags.contains(ReturnFlags::CTRUNC) || fds.len() > MAX_FDS_PER_FRAME {
        fds.clear();
        return Err(ChannelError::TooManyFds);
    }
    if msg.flags.contains(ReturnFlags::TRUNC) {
        fds.clear();
        return Err(ChannelError::Truncated);
    }
    if msg.bytes == 0 {
        // A SEQPACKET socket reads 0 bytes only at end of file: the protocol
        // never sends an empty frame.
        fds.clear();
        return Err(ChannelError::Closed);
    }
    Ok(msg.bytes)
}
