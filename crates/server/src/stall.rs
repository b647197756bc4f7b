//! Clients that stop: request bodies that fail once no part of them has
//! come for a while, connections whose writes fail once the client has
//! taken none of the answer for as long, and HTTP/2 answers that wait as
//! long for the client's flow-control window.
//!
//! A client that starts sending a request and stops, or stops reading its
//! answer, would otherwise hold its connection (a REST request) or one of
//! its connection's call slots (a gRPC call) until it went away or the
//! server shut down. Every part that comes, or goes, restarts the clock, so
//! a large body sent slowly but steadily, or an answer read slowly, is
//! fine; only a standstill counts. Request bodies of upgraded connections
//! (`/stream`, `/ws`) and of gRPC's `ExecStream`, where a client may
//! rightly stay silent, are not timed; their writes are.
//!
//! Over HTTP/2 a client that stops reading does not stop the server's
//! writes: it stops granting window, and the server stops sending its
//! answers' data, with nothing waiting on the socket. So each gRPC answer
//! goes through [`WindowStall`], which tells its connection's [`Answers`]
//! when the server holds a part of it that the window does not let out,
//! and the connection, which watches [`Answers::stalled`] next to serving,
//! is closed once one has waited for the idle time.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
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

/// The largest part of an answer [`WindowStall`] hands on at once: 16 KiB,
/// the largest frame every HTTP/2 peer takes, so that an answer goes in as
/// many frames as it would whole, and one more for each chunk's lone last
/// byte.
const PART: usize = 16 << 10;

/// The answers of one HTTP/2 connection, and since when each waits for the
/// client to let out the part of it the server holds.
#[derive(Default)]
pub(crate) struct Answers {
    waiting: Mutex<Waiting>,
    /// Woken when an answer starts waiting while none did.
    started: Notify,
}

#[derive(Default)]
struct Waiting {
    /// The last answer's number.
    last: u64,
    /// The answers that wait, by number: since when.
    since: HashMap<u64, Instant>,
}

impl Answers {
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A number for a new answer.
    fn enter(&self) -> u64 {
        let mut waiting = self.lock();
        waiting.last += 1;
        waiting.last
    }

    /// Answer `id` waits from now.
    fn waits(&self, id: u64) {
        let mut waiting = self.lock();
        let none_did = waiting.since.is_empty();
        waiting.since.insert(id, Instant::now());
        drop(waiting);
        // Otherwise the watch already waits for an earlier deadline, and
        // looks again then.
        if none_did {
            self.started.notify_one();
        }
    }

    /// Answer `id` does not wait (any more).
    fn goes_on(&self, id: u64) {
        self.lock().since.remove(&id);
    }

    /// Completes once an answer has waited `idle` in a row for the client
    /// to let out the part the server holds.
    pub(crate) async fn stalled(&self, idle: Duration) {
        loop {
            let earliest = self.lock().since.values().min().copied();
            match earliest {
                // `notify_one` keeps its wake-up for a wait that starts
                // after it: none is lost between the look and the wait.
                None => self.started.notified().await,
                Some(since) if since.elapsed() >= idle => return,
                Some(since) => tokio::time::sleep_until(since + idle).await,
            }
        }
    }
}

/// An answer's body as HTTP/2 sends it: in parts of at most [`PART`]
/// bytes, the last byte of each of the inner body's chunks on its own, and
/// from each part handed on until the next is asked for, counted among its
/// connection's [`Answers`] as waiting.
///
/// hyper hands a part to HTTP/2 once the client's windows (the call's and
/// the connection's) have room beyond what is already handed on, and only
/// then asks for the next: so a part's wait is the client's, and what
/// HTTP/2 holds beyond its windows is at most one part. A lone last byte
/// makes the wait before an answer's trailers (which need no window) one
/// that ends only once the windows let out all its data.
pub(crate) struct WindowStall<B> {
    inner: Pin<Box<B>>,
    answers: Arc<Answers>,
    id: u64,
    /// What the inner body gave and is not handed on yet.
    rest: Bytes,
}

impl<B> WindowStall<B> {
    pub(crate) fn new(inner: B, answers: Arc<Answers>) -> Self {
        let id = answers.enter();
        Self {
            inner: Box::pin(inner),
            answers,
            id,
            rest: Bytes::new(),
        }
    }
}

impl<B> Drop for WindowStall<B> {
    fn drop(&mut self) {
        self.answers.goes_on(self.id);
    }
}

impl<B> Body for WindowStall<B>
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
        // Asked again: the part handed on last is out, or on its way.
        self.answers.goes_on(self.id);
        if self.rest.is_empty() {
            match ready!(self.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if !data.is_empty() => self.rest = data,
                    // Sent without waiting for any window.
                    Ok(empty) => return Poll::Ready(Some(Ok(Frame::data(empty)))),
                    Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                },
                Some(Err(error)) => return Poll::Ready(Some(Err(error.into()))),
                None => return Poll::Ready(None),
            }
        }
        let len = match self.rest.len() {
            1 => 1,
            len => PART.min(len - 1),
        };
        let part = self.rest.split_to(len);
        self.answers.waits(self.id);
        Poll::Ready(Some(Ok(Frame::data(part))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        let rest = u64::try_from(self.rest.len()).unwrap_or(u64::MAX);
        let mut hint = SizeHint::new();
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(rest));
        }
        hint.set_lower(inner.lower().saturating_add(rest));
        hint
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

    /// How long `answers` takes to see an answer stalled, at most `within`.
    async fn stalled_after(answers: &Answers, within: Duration) -> Option<Duration> {
        let started = Instant::now();
        let stalled = tokio::time::timeout(within, answers.stalled(Duration::from_secs(30)));
        stalled.await.ok().map(|()| started.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_goes_in_parts_each_waiting_until_the_next_is_asked_for() {
        let answers = Arc::new(Answers::default());
        let (tx, body) = channel_body();
        let mut body = WindowStall::new(body, Arc::clone(&answers));
        tx.send(Ok(Frame::data(Bytes::from(vec![7u8; 40_000]))))
            .await
            .unwrap();
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        tx.send(Ok(Frame::trailers(trailers))).await.unwrap();
        // Two whole parts, the rest but a byte, the last byte on its own.
        for expected in [16_384, 16_384, 7_231, 1] {
            let part = body.frame().await.unwrap().unwrap().into_data().unwrap();
            assert_eq!(part.len(), expected);
            // Asked for again within the idle time: no stall.
            tokio::time::advance(Duration::from_secs(20)).await;
            assert_eq!(
                stalled_after(&answers, Duration::ZERO).await,
                None,
                "20 s after a part of {expected} bytes"
            );
        }
        // Asked for again 20 s after the last byte: trailers, which wait
        // for no window; nothing waits then.
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.trailers_ref().unwrap()["grpc-status"], "0");
        drop(tx);
        assert!(body.frame().await.is_none());
        assert_eq!(
            stalled_after(&answers, Duration::from_secs(300)).await,
            None
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_part_not_taken_for_the_idle_time_is_a_stall_but_a_body_with_nothing_ready_is_not() {
        let answers = Arc::new(Answers::default());
        let (tx, body) = channel_body();
        let mut body = WindowStall::new(body, Arc::clone(&answers));
        // Nothing ready: the body waits for its own, not for the client.
        assert!(
            tokio::time::timeout(Duration::from_secs(60), body.frame())
                .await
                .is_err()
        );
        assert_eq!(
            stalled_after(&answers, Duration::from_secs(300)).await,
            None
        );
        // A part handed on and the next not asked for: a stall, 30 s after
        // the part, however long before that the watch began.
        tx.send(part("ab")).await.unwrap();
        assert_eq!(
            body.frame().await.unwrap().unwrap().into_data().unwrap(),
            "a"
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(
            stalled_after(&answers, Duration::from_secs(300)).await,
            Some(Duration::from_secs(20))
        );
        // A body dropped while it waits (its call reset) waits no more.
        drop(body);
        assert_eq!(
            stalled_after(&answers, Duration::from_secs(300)).await,
            None
        );
        // Another answer of the connection that starts waiting wakes a
        // watch with nothing to wait for.
        let (tx, body) = channel_body();
        let mut body = WindowStall::new(body, Arc::clone(&answers));
        let watch = tokio::spawn({
            let answers = Arc::clone(&answers);
            async move { stalled_after(&answers, Duration::from_secs(300)).await }
        });
        // The watch starts, and waits.
        tokio::task::yield_now().await;
        tokio::time::advance(Duration::from_secs(100)).await;
        tx.send(part("cd")).await.unwrap();
        assert_eq!(
            body.frame().await.unwrap().unwrap().into_data().unwrap(),
            "c"
        );
        assert_eq!(watch.await.unwrap(), Some(Duration::from_secs(130)));
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
