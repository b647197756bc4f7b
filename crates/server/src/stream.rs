//! go-judge's `/stream` WebSocket: one request whose programs' streamed
//! descriptors (`{"streamIn": true}`, `{"streamOut": true}` in `files`)
//! the client feeds and reads while they run.
//!
//! Every message is binary; its first byte says what it is.
//!
//! | from | byte | then |
//! |---|---|---|
//! | client | 1 | the request, as `/run`'s JSON; the first message, and the only one of its kind |
//! | client | 3 | one byte `index << 4 \| fd`, then bytes for that `streamIn` (none: its end of file, which go-judge has no way to send) |
//! | client | 4 | nothing: cancel, killing what runs |
//! | client | 2 | a terminal size, which needs a terminal (`tty`): refused |
//! | server | 2 | one byte `index << 4 \| fd`, then bytes a `streamOut` gave |
//! | server | 1 | `{"requestId", "results", "error"?}`: the last message, then the server closes |
//!
//! The programs run as `/run`'s do: the same checks, queue and containers.
//! A mistake in the request, or a client message that makes no sense,
//! ends the session with an `error` (after the runs, cancelled, when they
//! had started); a client that goes away cancels the runs.

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hutch_host::Cancel;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use crate::api::{self, Answer};
use crate::error::ApiError;
use crate::metrics::StreamEnd;
use crate::{AppState, Closing, convert, reached};

/// What a connection's thread lends the `/stream` sessions it upgrades to.
#[derive(Clone)]
pub(crate) struct Sessions {
    /// Held by each session; the thread serves until every clone is gone.
    pub(crate) held: mpsc::Sender<()>,
    /// How far the server has gone in closing.
    pub(crate) closing: watch::Receiver<Closing>,
}

thread_local! {
    /// The sessions of the connection this thread serves.
    static SESSIONS: RefCell<Option<Sessions>> = const { RefCell::new(None) };
}

impl Sessions {
    /// Lends `sessions` to the handlers this thread runs.
    pub(crate) fn set_for_this_thread(sessions: Sessions) {
        SESSIONS.with(|current| *current.borrow_mut() = Some(sessions));
    }

    /// Takes back what [`set_for_this_thread`](Self::set_for_this_thread)
    /// lent.
    pub(crate) fn clear_for_this_thread() {
        SESSIONS.with(|current| current.borrow_mut().take());
    }

    fn current() -> Option<Sessions> {
        SESSIONS.with(|current| current.borrow().clone())
    }
}

/// `GET /stream`: the WebSocket handshake; the session runs once it is
/// done.
pub(crate) async fn upgrade(State(state): State<Arc<AppState>>, ws: WebSocketUpgrade) -> Response {
    upgrade_to(state, ws, |state, socket, closing, running| async move {
        let cancel = Cancel::new();
        running.add("", cancel.clone());
        run_session(state, WebSocketClient(socket), closing, cancel).await;
    })
}

/// The jobs a WebSocket session runs, by names of the session's; all are
/// cancelled when the server closes every connection.
#[derive(Clone, Default)]
pub(crate) struct Running(Arc<std::sync::Mutex<HashMap<String, Job>>>);

/// A job of a session: its cancel, and a wake-up for whoever waits for it
/// to start.
struct Job {
    cancel: Cancel,
    cancelled: Arc<tokio::sync::Notify>,
}

impl Job {
    fn cancel(&self) {
        self.cancel.cancel();
        // Kept for a waiter that comes later.
        self.cancelled.notify_one();
    }
}

impl Running {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Job>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a job under `name`: what wakes when it is cancelled, or None
    /// when the name is taken.
    pub(crate) fn add(&self, name: &str, cancel: Cancel) -> Option<Arc<tokio::sync::Notify>> {
        let mut running = self.lock();
        if running.contains_key(name) {
            return None;
        }
        let cancelled = Arc::new(tokio::sync::Notify::new());
        running.insert(
            name.to_owned(),
            Job {
                cancel,
                cancelled: Arc::clone(&cancelled),
            },
        );
        Some(cancelled)
    }

    /// Cancels the job named `name`; false when there is none.
    pub(crate) fn cancel(&self, name: &str) -> bool {
        match self.lock().get(name) {
            Some(job) => {
                job.cancel();
                true
            }
            None => false,
        }
    }

    /// Whether no job is under way.
    pub(crate) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Forgets the job named `name`, which has ended.
    pub(crate) fn remove(&self, name: &str) {
        self.lock().remove(name);
    }

    /// Cancels every job.
    pub(crate) fn cancel_all(&self) {
        for job in self.lock().values() {
            job.cancel();
        }
    }
}

/// Completes a WebSocket handshake; then `session` runs on this
/// connection's thread. However it waits (on a client that does not read,
/// say), it ends, its jobs cancelled, when the server closes every
/// connection.
pub(crate) fn upgrade_to<F, Fut>(state: Arc<AppState>, ws: WebSocketUpgrade, session: F) -> Response
where
    F: FnOnce(Arc<AppState>, WebSocket, watch::Receiver<Closing>, Running) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(sessions) = Sessions::current() else {
        return ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "this connection cannot hold a WebSocket",
        )
        .into_response();
    };
    // A request comes in one message: as large as a body may be.
    let most = state.max_body.saturating_add(1);
    ws.max_message_size(most)
        .max_frame_size(most)
        .on_upgrade(move |socket| async move {
            let Sessions { held, mut closing } = sessions;
            let running = Running::default();
            tokio::select! {
                () = session(state, socket, closing.clone(), running.clone()) => {}
                () = reached(&mut closing, Closing::Now) => running.cancel_all(),
            }
            drop(held);
        })
}

/// Message types, go-judge's numbers.
const REQUEST: u8 = 1;
const RESIZE: u8 = 2;
const OUTPUT: u8 = 2;
const INPUT: u8 = 3;
const CANCEL: u8 = 4;
const RESPONSE: u8 = 1;

/// The most bytes read from a `streamOut` into one message.
const OUTPUT_CHUNK: usize = 32 << 10;

/// What a stream's client said, once its request was taken.
pub(crate) enum FromClient {
    /// Bytes for the `streamIn` `fd` of command `index`; none at all is its
    /// end of file.
    Input {
        index: usize,
        fd: usize,
        content: Bytes,
    },
    /// Stop the runs.
    Cancel,
    /// Something that makes no sense here: the runs are cancelled, and the
    /// last message says this.
    Mistake(String),
    /// The client sends nothing more, but still reads.
    Done,
    /// The client is gone.
    Gone,
}

/// How a stream session ended, for its last message.
pub(crate) enum Outcome {
    /// The request was refused; nothing ran.
    Refused(ApiError),
    /// The programs ran: their results, and a mistake of the client's if
    /// it made one.
    Ran {
        results: Vec<hutch_host::CommandResult>,
        error: Option<String>,
    },
}

/// A stream's client, over the WebSocket or gRPC's `ExecStream`. `recv`
/// must be cancel-safe: the session waits on it beside other things.
pub(crate) trait Client: Send {
    /// The API's name in the metrics: `/stream` or `ExecStream`.
    const API: &'static str;
    /// The request: the first message.
    fn request(&mut self) -> impl Future<Output = Result<api::RunRequest, ApiError>> + Send;
    /// What the client says next.
    fn recv(&mut self) -> impl Future<Output = FromClient> + Send;
    /// Sends bytes the `streamOut` `fd` of command `index` gave; an error
    /// when the client is gone.
    fn output(
        &mut self,
        index: usize,
        fd: usize,
        content: Bytes,
    ) -> impl Future<Output = Result<(), ()>> + Send;
    /// Sends the last message and ends the stream.
    fn finish(self, request_id: &str, outcome: Outcome) -> impl Future<Output = ()> + Send;
}

/// Runs one stream session with `client` until its last message is sent,
/// or the client is gone. `cancel` cancels its runs.
pub(crate) async fn run_session<C: Client>(
    state: Arc<AppState>,
    mut client: C,
    mut closing: watch::Receiver<Closing>,
    cancel: Cancel,
) {
    let request = tokio::select! {
        request = tokio::time::timeout(state.idle_timeout, client.request()) => request,
        () = reached(&mut closing, Closing::Gracefully) => Ok(Err(unavailable())),
    };
    let request = match request {
        Ok(Ok(request)) => request,
        Ok(Err(error)) => return finish(&state, client, "", Outcome::Refused(error)).await,
        Err(_) => {
            let error = ApiError::bad(format!(
                "no request came within {} s of the connection",
                state.idle_timeout.as_secs_f64()
            ));
            return finish(&state, client, "", Outcome::Refused(error)).await;
        }
    };
    let id = request.request_id.clone();
    let admitted = match convert::to_stream_job(
        &request,
        &state.defaults,
        state.parallelism,
        &state.store,
        &state.prefixes,
    ) {
        Ok((job, ends)) => {
            tokio::select! {
                admitted = crate::admit_job(&state, job) => admitted.map(|admitted| (admitted, ends)),
                () = reached(&mut closing, Closing::Gracefully) => Err(unavailable()),
            }
        }
        Err(error) => Err(error),
    };
    let (admitted, ends) = match admitted {
        Ok(admitted) => admitted,
        Err(error) => {
            tracing::info!(request_id = %id, error = %error.message, "stream refused");
            return finish(&state, client, &id, Outcome::Refused(error)).await;
        }
    };

    // Outputs: a task per streamOut reads it until its end of file, which
    // comes once the run is over and the job's own copies are closed.
    let (output_tx, mut outputs) = mpsc::channel::<(usize, usize, Bytes)>(16);
    for (index, fd, read) in ends.outputs {
        tokio::spawn(read_output(read, index, fd, output_tx.clone()));
    }
    drop(output_tx);
    // Inputs: a task per streamIn writes what comes for it, in order,
    // without holding up the messages that come after.
    let waiting = Arc::new(AtomicUsize::new(0));
    let mut inputs = HashMap::new();
    for (index, fd, write) in ends.inputs {
        let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
        tokio::spawn(write_input(write, rx, Arc::clone(&waiting)));
        inputs.insert((index, fd), Input::Open(tx));
    }

    // The job's copies of the streams' ends go with it once it is over:
    // the outputs reach their end of file.
    let run = crate::run_admitted_elsewhere(&state, admitted, Some(cancel.clone()));
    tokio::pin!(run);

    let mut error: Option<String> = None;
    let mut reading = true;
    let mut client_gone = false;
    let mut outputs_open = true;
    let mut results = None;
    while results.is_none() || outputs_open {
        tokio::select! {
            said = client.recv(), if reading => match said {
                FromClient::Input { index, fd, content } => {
                    let taken = take_input(&mut inputs, index, fd, content, &waiting, state.max_body);
                    if let Err(mistake) = taken {
                        error = Some(mistake);
                        reading = false;
                        cancel.cancel();
                    }
                }
                FromClient::Cancel => cancel.cancel(),
                FromClient::Mistake(mistake) => {
                    error = Some(mistake);
                    reading = false;
                    cancel.cancel();
                }
                FromClient::Done => reading = false,
                FromClient::Gone => {
                    reading = false;
                    client_gone = true;
                    cancel.cancel();
                }
            },
            output = outputs.recv(), if outputs_open => match output {
                Some((index, fd, content)) if !client_gone => {
                    if client.output(index, fd, content).await.is_err() {
                        client_gone = true;
                        reading = false;
                        cancel.cancel();
                    }
                }
                Some(_) => {}
                None => outputs_open = false,
            },
            done = &mut run, if results.is_none() => {
                results = Some(done);
                // No program reads its inputs any more.
                for input in inputs.values_mut() {
                    *input = Input::Over;
                }
            },
        }
    }
    if client_gone {
        state.metrics.stream_ended(C::API, StreamEnd::ClientGone);
        return;
    }
    let outcome = match results.expect("the loop ends with the results") {
        Ok(results) => {
            tracing::info!(
                request_id = %id,
                commands = results.len(),
                statuses = ?convert::status_names(&results),
                cancelled = cancel.is_cancelled(),
                "stream"
            );
            Outcome::Ran { results, error }
        }
        Err(failed) => Outcome::Refused(failed),
    };
    finish(&state, client, &id, outcome).await;
}

/// Sends `client` the last message, and counts the session.
async fn finish<C: Client>(state: &AppState, client: C, request_id: &str, outcome: Outcome) {
    let end = match outcome {
        Outcome::Refused(_) => StreamEnd::Refused,
        Outcome::Ran { .. } => StreamEnd::Ran,
    };
    state.metrics.stream_ended(C::API, end);
    client.finish(request_id, outcome).await;
}

fn unavailable() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "the server is shutting down",
    )
}

/// A `streamIn`, as the client may still use it.
enum Input {
    /// Its writer takes what comes.
    Open(mpsc::UnboundedSender<Bytes>),
    /// The client sent its end of file.
    Closed,
    /// The programs are over.
    Over,
}

/// Hands input for `(index, fd)` to its writer.
fn take_input(
    inputs: &mut HashMap<(usize, usize), Input>,
    index: usize,
    fd: usize,
    content: Bytes,
    waiting: &AtomicUsize,
    most_waiting: usize,
) -> Result<(), String> {
    let input = match inputs.get_mut(&(index, fd)) {
        None => {
            return Err(format!(
                "input for cmd[{index}] fd {fd}, which is no streamIn"
            ));
        }
        Some(Input::Closed) => {
            return Err(format!(
                "input for cmd[{index}] fd {fd} after its end of file"
            ));
        }
        // The programs are over: what comes is dropped, as a closed pipe
        // would drop it.
        Some(Input::Over) => return Ok(()),
        Some(Input::Open(input)) => input,
    };
    let waited = waiting.fetch_add(content.len(), Ordering::SeqCst) + content.len();
    if waited > most_waiting {
        return Err(format!(
            "more than {most_waiting} bytes of input wait for programs that do not read them \
             (--max-body)"
        ));
    }
    let end = content.is_empty();
    // An input whose writer is gone takes nothing more.
    let _ = input.send(content);
    if end {
        inputs.insert((index, fd), Input::Closed);
    }
    Ok(())
}

/// Reads one `streamOut` to its end, in chunks, into `to`.
async fn read_output(
    read: OwnedFd,
    index: usize,
    fd: usize,
    to: mpsc::Sender<(usize, usize, Bytes)>,
) {
    let Ok(mut pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd(read) else {
        return;
    };
    let mut buffer = vec![0; OUTPUT_CHUNK];
    loop {
        match pipe.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let chunk = Bytes::copy_from_slice(&buffer[..n]);
                if to.send((index, fd, chunk)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Writes what comes for one `streamIn`, in order, until an empty message
/// (its end of file), its channel closes, or the program's end does.
async fn write_input(
    write: OwnedFd,
    mut from: mpsc::UnboundedReceiver<Bytes>,
    waiting: Arc<AtomicUsize>,
) {
    let mut pipe = tokio::net::unix::pipe::Sender::from_owned_fd(write).ok();
    while let Some(content) = from.recv().await {
        let written = match (&mut pipe, content.is_empty()) {
            (_, true) => {
                pipe = None;
                Ok(())
            }
            (Some(pipe), false) => pipe.write_all(&content).await,
            (None, false) => Ok(()),
        };
        waiting.fetch_sub(content.len(), Ordering::SeqCst);
        if written.is_err() {
            // Nobody reads it any more: drop the rest.
            pipe = None;
        }
    }
}

/// The WebSocket's client: go-judge's binary messages.
struct WebSocketClient(WebSocket);

const BINARY_ONLY: &str = "stream messages are binary, their first byte their type";

impl Client for WebSocketClient {
    const API: &'static str = "/stream";
    async fn request(&mut self) -> Result<api::RunRequest, ApiError> {
        loop {
            return match self.0.recv().await {
                Some(Ok(Message::Binary(bytes))) => match bytes.split_first() {
                    Some((&REQUEST, body)) => api::parse_whole_run_request(body),
                    Some((kind, _)) => Err(ApiError::bad(format!(
                        "the first message must be the request (type {REQUEST}), not type {kind}"
                    ))),
                    None => Err(ApiError::bad(
                        "an empty message: the first must be the request",
                    )),
                },
                Some(Ok(Message::Text(_))) => Err(ApiError::bad(BINARY_ONLY)),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(_)) | Err(_)) | None => {
                    Err(ApiError::bad("the client left before its request"))
                }
            };
        }
    }

    async fn recv(&mut self) -> FromClient {
        loop {
            let bytes = match self.0.recv().await {
                Some(Ok(Message::Binary(bytes))) => bytes,
                Some(Ok(Message::Text(_))) => return FromClient::Mistake(BINARY_ONLY.into()),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(_)) | Err(_)) | None => return FromClient::Gone,
            };
            return match bytes.first() {
                Some(&INPUT) if bytes.len() >= 2 => FromClient::Input {
                    index: usize::from(bytes[1] >> 4),
                    fd: usize::from(bytes[1] & 0x0f),
                    content: bytes.slice(2..),
                },
                Some(&INPUT) => FromClient::Mistake(
                    "an input message without the byte that names its stream".into(),
                ),
                Some(&CANCEL) => FromClient::Cancel,
                Some(&RESIZE) => FromClient::Mistake(NO_TERMINAL.into()),
                Some(&REQUEST) => FromClient::Mistake("a stream takes one request".into()),
                Some(kind) => {
                    FromClient::Mistake(format!("message type {kind} is none of go-judge's"))
                }
                None => FromClient::Mistake("an empty message".into()),
            };
        }
    }

    async fn output(&mut self, index: usize, fd: usize, content: Bytes) -> Result<(), ()> {
        let mut message = Vec::with_capacity(content.len() + 2);
        message.extend_from_slice(&[OUTPUT, header(index, fd)]);
        message.extend_from_slice(&content);
        self.0
            .send(Message::Binary(message.into()))
            .await
            .map_err(|_| ())
    }

    async fn finish(mut self, request_id: &str, outcome: Outcome) {
        let last = match outcome {
            Outcome::Refused(error) => Answer::refused(request_id.into(), error.message),
            Outcome::Ran { results, error } => Answer {
                request_id: request_id.into(),
                results: results.into_iter().map(convert::to_result).collect(),
                error,
            },
        };
        let mut message = vec![RESPONSE];
        if serde_json::to_writer(&mut message, &last).is_ok() {
            let _ = self.0.send(Message::Binary(message.into())).await;
        }
        let _ = self.0.send(Message::Close(None)).await;
    }
}

/// Why a terminal size is refused.
pub(crate) const NO_TERMINAL: &str =
    "a terminal size needs a terminal (tty), which hutch does not offer";

/// `index << 4 | fd`, as the WebSocket's messages carry a stream's place.
fn header(index: usize, fd: usize) -> u8 {
    debug_assert!(index <= convert::MAX_STREAM_FIELD && fd <= convert::MAX_STREAM_FIELD);
    ((index as u8) << 4) | (fd as u8 & 0x0f)
}
