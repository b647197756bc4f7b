//! Clients that stop: request bodies that fail once no part of them has
//! come for a while, and connections whose writes fail once the client has
//! taken none of the answer for as long.
//!
//! A client that starts sending a request and stops, or stops reading its
//! answer, would otherwise hold its connection (a REST request) or one of
//! its connection's call slots (a gRPC call) until it went away or the
//! server shut down. Every part that comes, or goes, restarts the clock, so
//! a large body sent slowly but steadily, or an answer read slowly, is
//! fine; only a standstill counts. Request bodies of upgraded connections
//! (`/stream`, `/ws`) and of gRPC's `ExecStream`, where a client may
//! rightly stay silent, are not timed; their writes are.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// What the body yields when it stalled: the error every reader of a
/// request body sees (`to_bytes`, the multipart reader, tonic's decoder).
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// No part of a request body came for `after`.
#[derive(Debug, thiserror::Error)]
#[error("no part of the request body came for {} s (--idle-timeout)", after.as_secs_f64())]
pub(crate) struct Stalled {
    pub(crate) after: Duration,
}

/// `inner`, failing with `on_stall(idle)` once `idle` passes with no frame.
pub(crate) struct StallTimeout<B> {
    inner: Pin<Box<B>>,
    sleep: Pin<Box<Sleep>>,
    idle: Duration,
    on_stall: fn(Duration) -> BoxError,
}

impl<B> StallTimeout<B> {
    /// Starts the clock now.
    pub(crate) fn new(inner: B, idle: Duration, on_stall: fn(Duration) -> BoxError) -> Self {
        Self {
            inner: Box::pin(inner),
            sleep: Box::pin(tokio::time::sleep(idle)),
            idle,
            on_stall,
        }
    }
}

/// [`Stalled`], boxed: the error of REST bodies.
pub(crate) fn stalled(after: Duration) -> BoxError {
    Box::new(Stalled { after })
}

impl<B> Body for StallTimeout<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.inner.as_mut().poll_frame(cx) {
            Poll::Ready(frame) => {
                let next = Instant::now() + self.idle;
                self.sleep.as_mut().reset(next);
                Poll::Ready(frame.map(|frame| frame.map_err(Into::into)))
            }
            Poll::Pending => match self.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err((self.on_stall)(self.idle)))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A connection whose writes fail with `TimedOut` once one has waited
/// `idle` for the client to take anything (its receive window full: it
/// stopped reading). Reads pass through untouched.
pub(crate) struct WriteStall<T> {
    inner: T,
    idle: Duration,
    /// Running while a write or flush waits.
    waiting: Option<Pin<Box<Sleep>>>,
}

impl<T> WriteStall<T> {
    pub(crate) fn new(inner: T, idle: Duration) -> Self {
        Self {
            inner,
            idle,
            waiting: None,
        }
    }

    /// What a write (or flush) that returned `result` means: progress
    /// stops the clock; waiting starts it, or fails once it ran out.
    fn timed<R>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        if result.is_ready() {
            self.waiting = None;
            return result;
        }
        let idle = self.idle;
        let waiting = self
            .waiting
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        match waiting.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the client took none of the answer for {} s (--idle-timeout)",
                    idle.as_secs_f64()
                ),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteStall<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteStall<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.timed(cx, result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.timed(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        self.timed(cx, result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.timed(cx, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    type Frames = tokio_stream::wrappers::ReceiverStream<Result<Frame<Bytes>, BoxError>>;

    /// A body whose frames come through a channel, as a client sends them.
    fn channel_body() -> (
        tokio::sync::mpsc::Sender<Result<Frame<Bytes>, BoxError>>,
        http_body_util::StreamBody<Frames>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let frames = tokio_stream::wrappers::ReceiverStream::new(rx);
        (tx, http_body_util::StreamBody::new(frames))
    }

    fn part(text: &'static str) -> Result<Frame<Bytes>, BoxError> {
        Ok(Frame::data(Bytes::from(text)))
    }

    #[tokio::test(start_paused = true)]
    async fn silence_fails_the_body_and_every_part_restarts_the_clock() {
        let (tx, body) = channel_body();
        let mut body = StallTimeout::new(body, Duration::from_secs(30), stalled);
        // Parts 20 s apart: never 30 s of silence.
        for part in ["a", "b", "c"] {
            tokio::time::advance(Duration::from_secs(20)).await;
            tx.send(self::part(part)).await.unwrap();
            let frame = body.frame().await.unwrap().unwrap();
            assert_eq!(frame.into_data().unwrap(), part);
        }
        // Then nothing: the next read fails after 30 s.
        let started = Instant::now();
        let error = body.frame().await.unwrap().unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        let stalled = error.downcast_ref::<Stalled>().expect("a Stalled error");
        assert_eq!(stalled.after, Duration::from_secs(30));
        assert_eq!(
            error.to_string(),
            "no part of the request body came for 30 s (--idle-timeout)"
        );
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn writes_fail_once_the_client_took_nothing_for_the_idle_time() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // A pipe of 64 KiB between the server's end and the client's.
        let (server, mut client) = tokio::io::duplex(64 << 10);
        let mut server = WriteStall::new(server, Duration::from_secs(30));
        // The client takes 16 KiB every 20 s: slow, but never 30 s without
        // taking something, so 256 KiB go through, waiting on it all along.
        let reader = tokio::spawn(async move {
            let mut taken = vec![0u8; 16 << 10];
            let mut total = 0;
            while total < 256 << 10 {
                tokio::time::sleep(Duration::from_secs(20)).await;
                total += client.read(&mut taken).await.unwrap();
            }
            client
        });
        let started = Instant::now();
        server.write_all(&vec![7u8; 256 << 10]).await.unwrap();
        assert!(started.elapsed() > Duration::from_secs(30), "it waited");
        let _client = reader.await.unwrap();
        // Now it takes nothing: once the pipe is full, a write waits, and
        // fails 30 s later.
        server.write_all(&vec![7u8; 64 << 10]).await.unwrap();
        let started = Instant::now();
        let error = server.write_all(b"more").await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        assert_eq!(
            error.to_string(),
            "the client took none of the answer for 30 s (--idle-timeout)"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_ends_in_time_ends() {
        let (tx, body) = channel_body();
        let mut body = StallTimeout::new(body, Duration::from_secs(30), stalled);
        tx.send(part("whole")).await.unwrap();
        drop(tx);
        let bytes = (&mut body).collect().await.unwrap().to_bytes();
        assert_eq!(bytes, "whole");
    }
}
