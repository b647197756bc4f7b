//! go-judge's `/ws` WebSocket: `/run` requests as messages, any number at
//! once over one connection, each answered when it is done and each
//! cancellable by its id.
//!
//! A message is a JSON object: a request as `POST /run` takes it, whose
//! `requestId` is required and unused by the connection's other requests
//! under way; or `{"cancelRequestId": id}`, which cancels that request
//! (what of it runs is killed; a request still waiting for containers
//! leaves the queue and is answered with an error at once). Each request
//! is answered with one message, `{"requestId", "results", "error"?}`,
//! when its commands are done; a request that is refused is answered at
//! once with an `error` and no results. A client that goes away cancels
//! its requests. When the server shuts down, a connection is closed (with
//! a close frame, status 1001, going away) as soon as none of its requests
//! runs any more: at once when it is idle.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::response::Response;
use hutch_host::{Cancel, Verdict};
use tokio::sync::{mpsc, watch};

use crate::api::{self, Answer};
use crate::stream::{Running, upgrade_to};
use crate::{AppState, Closing, reached};

/// `GET /ws`: the WebSocket handshake; the session runs once it is done.
pub(crate) async fn upgrade(State(state): State<Arc<AppState>>, ws: WebSocketUpgrade) -> Response {
    upgrade_to(state, ws, session)
}

/// Why a cancelled request has no results, as go-judge says it.
const CANCELLED: &str = "request cancelled before execute";

async fn session(
    state: Arc<AppState>,
    mut socket: WebSocket,
    mut closing: watch::Receiver<Closing>,
    running: Running,
) {
    // Each answer with the time its request arrived.
    let (answers_tx, mut answers) = mpsc::unbounded_channel::<(Answer, Instant)>();
    let mut shutting_down = false;
    loop {
        if shutting_down && running.is_empty() {
            // Nothing more will come of this connection: new requests are
            // refused, and every one taken is answered.
            return going_away(socket).await;
        }
        let (answer, arrived) = tokio::select! {
            () = reached(&mut closing, Closing::Gracefully), if !shutting_down => {
                shutting_down = true;
                continue;
            }
            message = socket.recv() => {
                let arrived = Instant::now();
                let text = match message {
                    Some(Ok(Message::Text(text))) => text.as_bytes().to_vec(),
                    Some(Ok(Message::Binary(bytes))) => bytes.to_vec(),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                };
                match take(&state, &text, &running, &answers_tx, &closing, arrived) {
                    Some(refused) => (refused, arrived),
                    None => continue,
                }
            }
            Some((answer, arrived)) = answers.recv() => {
                running.remove(&answer.request_id);
                (answer, arrived)
            }
        };
        state
            .metrics
            .ws_answered(answer.error.is_some(), arrived.elapsed());
        let Ok(text) = serde_json::to_string(&answer) else {
            continue;
        };
        if socket.send(Message::Text(text.into())).await.is_err() {
            break;
        }
    }
    // The client is gone: its requests are of no use to anyone.
    running.cancel_all();
}

/// How long a connection closed by the server waits for the client's
/// close frame, the end of the WebSocket closing handshake.
const CLOSE_REPLY_WAIT: Duration = Duration::from_secs(1);

/// Closes the connection as the server shuts down: a close frame saying
/// the server is going away (1001), then the client's close frame, for
/// [`CLOSE_REPLY_WAIT`] at most.
async fn going_away(mut socket: WebSocket) {
    let frame = CloseFrame {
        code: close_code::AWAY,
        reason: "the server is shutting down".into(),
    };
    if socket.send(Message::Close(Some(frame))).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_REPLY_WAIT, async {
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// Takes one message: a cancel, or a request, which starts running. The
/// answer to send at once, if any.
fn take(
    state: &Arc<AppState>,
    message: &[u8],
    running: &Running,
    answers: &mpsc::UnboundedSender<(Answer, Instant)>,
    closing: &watch::Receiver<Closing>,
    arrived: Instant,
) -> Option<Answer> {
    // A cancel names the request by `cancelRequestId` (in any case, as Go
    // reads it).
    let value = match api::read_json(message, api::Trailing::Ignored) {
        Ok(value) => value,
        Err(error) => {
            return Some(Answer::refused(
                String::new(),
                format!("the message is not valid JSON: {error}"),
            ));
        }
    };
    let cancel_id = api::string_field(&value, "cancelRequestId").filter(|id| !id.is_empty());
    if let Some(id) = cancel_id {
        // A request that is over, or never was, needs no cancelling.
        running.cancel(id);
        return None;
    }
    let request = match api::run_request_from(&value) {
        Ok(request) => request,
        Err(error) => {
            let id = api::string_field(&value, "requestId").unwrap_or_default();
            return Some(Answer::refused(id.into(), error.message));
        }
    };
    let id = request.request_id.clone();
    if id.is_empty() {
        return Some(Answer::refused(
            id,
            "requestId is required over /ws, to tell the answers apart".into(),
        ));
    }
    if *closing.borrow() != Closing::No {
        return Some(Answer::refused(id, "the server is shutting down".into()));
    }
    let job = match crate::convert::to_job(
        &request,
        &state.defaults,
        state.parallelism,
        &state.store,
        &state.prefixes,
    ) {
        Ok(job) => job,
        Err(error) => return Some(Answer::refused(id, error.message)),
    };
    let cancel = Cancel::new();
    let Some(cancelled) = running.add(&id, cancel.clone()) else {
        return Some(Answer::refused(
            id.clone(),
            format!("requestId {id:?} is already running on this connection"),
        ));
    };
    let (state, answers) = (Arc::clone(state), answers.clone());
    tokio::spawn(async move {
        let answer = run(&state, id, job, cancel, &cancelled).await;
        let _ = answers.send((answer, arrived));
    });
    None
}

/// Waits for containers, runs the job, and answers.
async fn run(
    state: &Arc<AppState>,
    id: String,
    job: hutch_host::Job,
    cancel: Cancel,
    cancelled: &tokio::sync::Notify,
) -> Answer {
    // A request cancelled while it waits for containers is answered at
    // once, and gives back its place in the queue.
    let admitted = tokio::select! {
        admitted = crate::admit_job(state, job) => admitted,
        () = cancelled.notified() => return Answer::refused(id, CANCELLED.into()),
    };
    let admitted = match admitted {
        Ok(admitted) => admitted,
        Err(error) => return Answer::refused(id, error.message),
    };
    if cancel.is_cancelled() {
        return Answer::refused(id, CANCELLED.into());
    }
    let results = match crate::run_admitted_elsewhere(state, admitted, Some(cancel)).await {
        Ok(results) => results,
        Err(error) => return Answer::refused(id, error.message),
    };
    if results.iter().all(|r| r.verdict == Verdict::Cancelled) {
        return Answer::refused(id, CANCELLED.into());
    }
    tracing::info!(
        request_id = %id,
        commands = results.len(),
        statuses = ?crate::convert::status_names(&results),
        "ws run"
    );
    Answer {
        request_id: id,
        results: results.into_iter().map(crate::convert::to_result).collect(),
        error: None,
    }
}
