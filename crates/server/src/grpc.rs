//! go-judge's gRPC service, `pb.Executor`, over HTTP/2 on a port of its
//! own (`Config::grpc_listen`): what JOJ3 and other clients of go-judge's
//! gRPC API call.
//!
//! `Exec` takes the same commands as `POST /run` and runs them the same
//! way: checked into the same model (`api`), turned into the same job,
//! queued for the same containers. `FileList`, `FileGet`, `FileAdd` and
//! `FileDelete` work on the same store as `/file`. `ExecStream` is the
//! `/stream` WebSocket's session (`stream.rs`) with protobuf messages:
//! programs fed and read while they run (terminals are not offered).
//!
//! Errors are gRPC statuses: a request hutch refuses is
//! `INVALID_ARGUMENT`, with the same message `/run` would give; a missing
//! token `UNAUTHENTICATED` (checked before the message is read); a missing
//! file `NOT_FOUND`; a full queue or a server shutting down `UNAVAILABLE`; a
//! message over `Config::max_body` `OUT_OF_RANGE`; one that does not decode,
//! or a failure of hutch's own, `INTERNAL`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{self, StatusCode};
use hutch_host::{CommandResult, FileErrorKind};
use tokio::sync::Semaphore;
use tonic::Status;
use tonic::body::Body;

use crate::api::{self, CmdFile, CopyOutFile};
use crate::error::ApiError;
use crate::files::{self, blocking, store_error};
use crate::pb;
use crate::pb::request::file::File as FileKind;
use crate::pb::response::file_error::ErrorType;
use crate::pb::stream_request::Request as StreamKind;
use crate::stall::{Answers, StallTimeout, WindowStall};
use crate::stream::{self, FromClient, Outcome};
use crate::{AppState, Closing, accept, reached};

/// Accepts connections to `pb.Executor` on `listener` until the server
/// closes. Each connection, a task of this runtime, holds one of the
/// server's connection `slots` (shared with the REST API) until it closes;
/// it is closed once it has had no call open for `idle`, and when the
/// server closes, after its calls under way are answered; and at once, with
/// the calls it has open, once one of its answers has waited `idle` for the
/// client to take any of it. Runs run on the runtime's blocking threads,
/// so this needs no thread of its own.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    slots: Arc<Semaphore>,
    idle: Duration,
    mut closing: tokio::sync::watch::Receiver<Closing>,
) {
    // What all connections together may have being read or run; a call
    // beyond waits, its message unread but for what HTTP/2's flow-control
    // window lets in (64 KiB).
    let calls = Arc::new(Semaphore::new(crate::MAX_CONNECTIONS));
    let executor = Executor::new(state, closing.clone());
    loop {
        let slot = tokio::select! {
            () = reached(&mut closing, Closing::Gracefully) => break,
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let Some(stream) = accept(&listener, reached(&mut closing, Closing::Gracefully)).await
        else {
            break;
        };
        let (open_tx, open_rx) = tokio::sync::watch::channel(0);
        let service = ConnectionService {
            executor: executor.clone(),
            calls: Arc::clone(&calls),
            open: Arc::new(open_tx),
            answers: Arc::default(),
        };
        let closing = closing.clone();
        tokio::spawn(async move {
            let _slot = slot;
            serve_connection(stream, service, open_rx, idle, closing).await;
        });
    }
}

/// Serves one HTTP/2 connection until the client closes it, it has been
/// idle for `idle`, the server closes, or an answer has waited `idle` for
/// the client to take any of it; the second and third let its open calls
/// finish first, the last does not.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    service: ConnectionService,
    open: tokio::sync::watch::Receiver<usize>,
    idle: Duration,
    mut closing: tokio::sync::watch::Receiver<Closing>,
) {
    let _ = stream.set_nodelay(true);
    // A client that stops reading stops granting HTTP/2 window, so the
    // server's writes do not wait: its answers do. Dropping the connection
    // ends its calls, and their runs, and frees what they hold.
    let answers = Arc::clone(&service.answers);
    let stalled = answers.stalled(idle);
    tokio::pin!(stalled);
    let connection = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .timer(hyper_util::rt::TokioTimer::new())
        .max_concurrent_streams(STREAMS_PER_CONNECTION)
        .serve_connection(
            // A client that stops reading loses its connection once it has
            // taken nothing for the idle time.
            hyper_util::rt::TokioIo::new(crate::stall::WriteStall::new(stream, idle)),
            service,
        );
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        () = reached(&mut closing, Closing::Gracefully) => {}
        () = idle_for(open, idle) => tracing::debug!("closing an idle gRPC connection"),
        () = stalled.as_mut() => return closing_stalled(idle),
    }
    // GOAWAY: calls under way finish, a client's next call goes to a new
    // connection.
    connection.as_mut().graceful_shutdown();
    tokio::select! {
        _ = connection.as_mut() => {}
        () = reached(&mut closing, Closing::Now) => {}
        () = stalled.as_mut() => closing_stalled(idle),
    }
}

/// Says why a connection is closed whose client took none of an answer
/// for `idle`.
fn closing_stalled(idle: Duration) {
    tracing::info!(
        "closing a gRPC connection: the client took none of an answer for {} s (--idle-timeout)",
        idle.as_secs_f64()
    );
}

/// Completes once the connection whose open calls `open` counts has had
/// none for `idle` in a row.
async fn idle_for(mut open: tokio::sync::watch::Receiver<usize>, idle: Duration) {
    loop {
        if open.wait_for(|open| *open == 0).await.is_err() {
            // The connection is gone, and with it its calls.
            return std::future::pending().await;
        }
        let busy = tokio::time::timeout(idle, open.wait_for(|open| *open > 0)).await;
        if busy.is_err() {
            return;
        }
    }
}

/// The most calls one HTTP/2 connection may have open at once.
const STREAMS_PER_CONNECTION: u32 = 16;

/// [`Executor`] as one connection serves it: each call counts among the
/// connection's open calls while it lasts, and waits for a place among all
/// connections' calls before its message is read; its answer is timed
/// among the connection's `answers`.
#[derive(Clone)]
struct ConnectionService {
    executor: Executor,
    calls: Arc<Semaphore>,
    open: Arc<tokio::sync::watch::Sender<usize>>,
    answers: Arc<Answers>,
}

impl hyper::service::Service<http::Request<hyper::body::Incoming>> for ConnectionService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn call(&self, request: http::Request<hyper::body::Incoming>) -> Self::Future {
        let open = OpenCall::new(Arc::clone(&self.open));
        let calls = Arc::clone(&self.calls);
        let executor = self.executor.clone();
        let answers = Arc::clone(&self.answers);
        let request = request.map(Body::new);
        Box::pin(async move {
            let _open = open;
            let answer = match calls.acquire_owned().await {
                Ok(place) => executor.call(request, place).await,
                Err(_) => Status::unavailable("the server is shutting down").into_http(),
            };
            Ok(answer.map(|body| Body::new(WindowStall::new(body, answers))))
        })
    }
}

/// One open call of a connection, counted from its start to its answer.
struct OpenCall(Arc<tokio::sync::watch::Sender<usize>>);

impl OpenCall {
    fn new(open: Arc<tokio::sync::watch::Sender<usize>>) -> Self {
        open.send_modify(|open| *open += 1);
        Self(open)
    }
}

impl Drop for OpenCall {
    fn drop(&mut self) {
        self.0.send_modify(|open| *open -= 1);
    }
}

/// The service's name, as paths and clients spell it.
const SERVICE: &str = "pb.Executor";

/// `pb.Executor`, served from the state every front end shares.
#[derive(Clone)]
pub(crate) struct Executor {
    state: Arc<AppState>,
    /// How far the server has gone in closing, for `ExecStream` sessions.
    closing: tokio::sync::watch::Receiver<Closing>,
}

impl Executor {
    pub(crate) fn new(
        state: Arc<AppState>,
        closing: tokio::sync::watch::Receiver<Closing>,
    ) -> Self {
        Self { state, closing }
    }
}

type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

impl Executor {
    /// Answers one call, which holds `place` among the calls being read or
    /// run until it is answered, or an `ExecStream` session until it ends:
    /// the token is checked from its headers before its message is read.
    async fn call(
        &self,
        request: http::Request<Body>,
        place: tokio::sync::OwnedSemaphorePermit,
    ) -> http::Response<Body> {
        let state = Arc::clone(&self.state);
        let path = request.uri().path();
        let Some(method) = path
            .strip_prefix('/')
            .and_then(|path| path.strip_prefix(SERVICE))
            .and_then(|path| path.strip_prefix('/'))
            .map(str::to_owned)
        else {
            return Status::unimplemented(format!(
                "this server has only the gRPC service {SERVICE}, not {path:?}"
            ))
            .into_http();
        };
        // Before the message is read: a caller without the token costs no
        // more than its headers.
        if let Err(status) = authorize(&state, request.headers()) {
            return status.into_http();
        }
        match method.as_str() {
            "Exec" => unary(state, request, exec).await,
            "FileList" => unary(state, request, file_list).await,
            "FileGet" => unary(state, request, file_get).await,
            "FileAdd" => unary(state, request, file_add).await,
            "FileDelete" => unary(state, request, file_delete).await,
            "ExecStream" => exec_stream(state, self.closing.clone(), request, place).await,
            other => {
                Status::unimplemented(format!("{SERVICE} has no method {other:?}")).into_http()
            }
        }
    }
}

/// `ExecStream`: a stream session (`stream.rs`) whose messages are
/// `StreamRequest`s and `StreamResponse`s. It runs as a task of its own,
/// which holds the call's `place` until the session ends; the call answers
/// at once, and its messages follow.
async fn exec_stream(
    state: Arc<AppState>,
    closing: tokio::sync::watch::Receiver<Closing>,
    request: http::Request<Body>,
    place: tokio::sync::OwnedSemaphorePermit,
) -> http::Response<Body> {
    // Taken by the one session the call starts.
    let mut place = Some(place);
    let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::<
        pb::StreamResponse,
        pb::StreamRequest,
    >::default())
    .max_decoding_message_size(state.max_body)
    .max_encoding_message_size(usize::MAX);
    let service = tower::service_fn(
        move |request: tonic::Request<tonic::Streaming<pb::StreamRequest>>| {
            let (state, mut closing) = (Arc::clone(&state), closing.clone());
            let place = place.take();
            async move {
                let (outgoing, responses) = tokio::sync::mpsc::channel(16);
                let client = StreamClient {
                    incoming: request.into_inner(),
                    outgoing,
                };
                let cancel = hutch_host::Cancel::new();
                tokio::spawn(async move {
                    let _place = place;
                    tokio::select! {
                        () = stream::run_session(state, client, closing.clone(), cancel.clone()) => {}
                        () = reached(&mut closing, Closing::Now) => cancel.cancel(),
                    }
                });
                Ok::<_, Status>(tonic::Response::new(
                    tokio_stream::wrappers::ReceiverStream::new(responses),
                ))
            }
        },
    );
    grpc.streaming(service, request).await
}

/// An `ExecStream` call's client.
struct StreamClient {
    incoming: tonic::Streaming<pb::StreamRequest>,
    outgoing: tokio::sync::mpsc::Sender<Result<pb::StreamResponse, Status>>,
}

impl stream::Client for StreamClient {
    const API: &'static str = "ExecStream";
    async fn request(&mut self) -> Result<api::RunRequest, ApiError> {
        match self.incoming.message().await {
            Ok(Some(pb::StreamRequest {
                request: Some(StreamKind::ExecRequest(request)),
            })) => to_run_request(request),
            Ok(Some(_)) => Err(ApiError::bad("the first message must be an execRequest")),
            Ok(None) => Err(ApiError::bad("the client sent no request")),
            Err(status) => Err(ApiError::bad(format!(
                "cannot read the request: {}",
                status.message()
            ))),
        }
    }

    async fn recv(&mut self) -> FromClient {
        let message = match self.incoming.message().await {
            Ok(Some(message)) => message,
            Ok(None) => return FromClient::Done,
            Err(_) => return FromClient::Gone,
        };
        match message.request {
            Some(StreamKind::ExecInput(input)) => FromClient::Input {
                index: usize::try_from(input.index).unwrap_or(usize::MAX),
                fd: usize::try_from(input.fd).unwrap_or(usize::MAX),
                content: input.content.into(),
            },
            Some(StreamKind::ExecCancel(())) => FromClient::Cancel,
            Some(StreamKind::ExecResize(_)) => FromClient::Mistake(stream::NO_TERMINAL.into()),
            Some(StreamKind::ExecRequest(_)) => {
                FromClient::Mistake("a stream takes one request".into())
            }
            None => FromClient::Mistake("a StreamRequest with nothing in it".into()),
        }
    }

    async fn output(&mut self, index: usize, fd: usize, content: bytes::Bytes) -> Result<(), ()> {
        let output = pb::stream_response::Output {
            index: u32::try_from(index).unwrap_or(u32::MAX),
            fd: u32::try_from(fd).unwrap_or(u32::MAX),
            content: content.to_vec(),
        };
        let message = pb::StreamResponse {
            response: Some(pb::stream_response::Response::ExecOutput(output)),
        };
        self.outgoing.send(Ok(message)).await.map_err(|_| ())
    }

    async fn finish(self, request_id: &str, outcome: Outcome) {
        let last = match outcome {
            Outcome::Refused(error) => Err(status(error)),
            Outcome::Ran { results, error } => Ok(pb::StreamResponse {
                response: Some(pb::stream_response::Response::ExecResponse(pb::Response {
                    request_id: request_id.into(),
                    results: results.into_iter().map(to_pb_result).collect(),
                    error: error.unwrap_or_default(),
                })),
            }),
        };
        let _ = self.outgoing.send(last).await;
    }
}

/// Decodes one request message, runs `handler` and encodes its answer.
/// Messages may be as large as the largest request body
/// (`Config::max_body`); answers have no limit but the client's.
async fn unary<Req, Resp, F, Fut>(
    state: Arc<AppState>,
    request: http::Request<Body>,
    handler: F,
) -> http::Response<Body>
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Send + 'static,
    F: FnOnce(Arc<AppState>, Req) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<Resp, Status>> + Send + 'static,
{
    // A call whose message stops coming fails, and frees its slot.
    let idle = state.idle_timeout;
    let request = request.map(|body| Body::new(StallTimeout::new(body, idle, stalled_call)));
    let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::<Resp, Req>::default())
        .max_decoding_message_size(state.max_body)
        .max_encoding_message_size(usize::MAX);
    let service = tower::service_fn(move |request: tonic::Request<Req>| {
        let state = Arc::clone(&state);
        let handler = handler.clone();
        async move {
            handler(state, request.into_inner())
                .await
                .map(tonic::Response::new)
        }
    });
    grpc.unary(service, request).await
}

/// The status of a unary call whose message stopped coming:
/// `DEADLINE_EXCEEDED`, the server's deadline.
fn stalled_call(after: Duration) -> crate::stall::BoxError {
    Box::new(Status::deadline_exceeded(
        crate::stall::Stalled { after }.to_string(),
    ))
}

/// Lets a call through when the server has no token, or it brings it as
/// `authorization: Bearer <token>` (the scheme in any case, as go-judge's
/// gRPC server reads it).
fn authorize(state: &AppState, headers: &http::HeaderMap) -> Result<(), Status> {
    let Some(token) = &state.auth_token else {
        return Ok(());
    };
    let given = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, given)| given);
    if given == Some(token.as_str()) {
        Ok(())
    } else {
        Err(Status::unauthenticated(
            "this server needs the metadata authorization: Bearer <token>",
        ))
    }
}

/// The gRPC status of an error the REST API answers with `error.status`.
fn status(error: ApiError) -> Status {
    let message = error.message;
    match error.status {
        StatusCode::BAD_REQUEST => Status::invalid_argument(message),
        StatusCode::UNAUTHORIZED => Status::unauthenticated(message),
        StatusCode::NOT_FOUND => Status::not_found(message),
        StatusCode::PAYLOAD_TOO_LARGE => Status::resource_exhausted(message),
        StatusCode::SERVICE_UNAVAILABLE => Status::unavailable(message),
        _ => Status::internal(message),
    }
}

async fn exec(state: Arc<AppState>, request: pb::Request) -> Result<pb::Response, Status> {
    let arrived = Instant::now();
    let outcome = exec_inner(&state, request).await;
    state.metrics.exec_answered(
        match &outcome {
            Ok(_) => tonic::Code::Ok,
            Err(status) => status.code(),
        },
        arrived.elapsed(),
    );
    outcome
}

async fn exec_inner(state: &Arc<AppState>, request: pb::Request) -> Result<pb::Response, Status> {
    let request_id = request.request_id.clone();
    let request = to_run_request(request).map_err(status)?;
    let admitted = crate::admit(state, &request).await.map_err(status)?;
    // A call its client cancels (or whose connection goes) is dropped
    // here, and its run with it, as go-judge cancels it; the run itself
    // goes on a blocking thread, which only the cancel stops.
    let cancel = hutch_host::Cancel::new();
    let _on_drop = CancelOnDrop(cancel.clone());
    let results = crate::run_admitted_elsewhere(state, admitted, Some(cancel))
        .await
        .map_err(status)?;
    tracing::info!(
        request_id = %request_id,
        commands = results.len(),
        statuses = ?crate::convert::status_names(&results),
        "exec"
    );
    Ok(pb::Response {
        request_id,
        results: results.into_iter().map(to_pb_result).collect(),
        error: String::new(),
    })
}

/// Cancels its job when dropped: at the end of a call it answered (when
/// the job has ended, and the cancel does nothing), or when the call is
/// dropped before.
struct CancelOnDrop(hutch_host::Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

async fn file_list(state: Arc<AppState>, _: ()) -> Result<pb::FileListType, Status> {
    let files = blocking(move || state.store.list().map_err(store_error))
        .await
        .map_err(status)?;
    Ok(pb::FileListType {
        file_ids: files.into_iter().collect(),
    })
}

async fn file_get(state: Arc<AppState>, id: pb::FileId) -> Result<pb::FileContent, Status> {
    let (name, content) = blocking(move || files::read(&state.store, &id.file_id))
        .await
        .map_err(status)?;
    Ok(pb::FileContent { name, content })
}

async fn file_add(state: Arc<AppState>, file: pb::FileContent) -> Result<pb::FileId, Status> {
    let name = match file.name.as_str() {
        "" => "file".to_owned(),
        name => name.to_owned(),
    };
    let file_id = blocking(move || {
        state
            .store
            .add(&name, &mut file.content.as_slice())
            .map_err(store_error)
    })
    .await
    .map_err(status)?;
    Ok(pb::FileId { file_id })
}

async fn file_delete(state: Arc<AppState>, id: pb::FileId) -> Result<(), Status> {
    blocking(move || files::delete(&state.store, &id.file_id))
        .await
        .map_err(status)
}

/// A gRPC request in the model `/run` requests are read into; what only
/// JSON can get wrong cannot happen here, the rest (negative numbers where
/// go-judge's model has unsigned ones, a path both copied in and linked)
/// is refused naming the field.
pub(crate) fn to_run_request(request: pb::Request) -> Result<api::RunRequest, ApiError> {
    let cmd = request
        .cmd
        .into_iter()
        .enumerate()
        .map(|(i, cmd)| to_cmd(i, cmd))
        .collect::<Result<Vec<_>, _>>()?;
    let pipe_mapping = request
        .pipe_mapping
        .into_iter()
        .enumerate()
        .map(|(k, pipe)| {
            let end = |end: Option<pb::request::pipe_map::PipeIndex>, side: &str| {
                let end = end
                    .ok_or_else(|| ApiError::bad(format!("pipeMapping[{k}].{side} is missing")))?;
                let number = |value: i32, what: &str| {
                    u64::try_from(value).map_err(|_| {
                        ApiError::bad(format!(
                            "pipeMapping[{k}].{side}.{what} is {value}, which is negative"
                        ))
                    })
                };
                Ok::<_, ApiError>(api::PipeIndex {
                    index: number(end.index, "index")?,
                    fd: number(end.fd, "fd")?,
                })
            };
            Ok(api::PipeMap {
                input: end(pipe.r#in, "in")?,
                output: end(pipe.out, "out")?,
                name: pipe.name,
                max: pipe.max,
                proxy: pipe.proxy,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(api::RunRequest {
        request_id: request.request_id,
        cmd,
        pipe_mapping,
    })
}

fn to_cmd(i: usize, cmd: pb::request::CmdType) -> Result<api::Cmd, ApiError> {
    let files = cmd
        .files
        .into_iter()
        .enumerate()
        .map(|(j, file)| to_file(&format!("cmd[{i}].files[{j}]"), file))
        .collect::<Result<Vec<_>, _>>()?;
    let mut copy_in = BTreeMap::new();
    for (path, file) in cmd.copy_in {
        let field = format!("cmd[{i}].copyIn[{path:?}]");
        match to_file(&field, file)? {
            Some(file) => copy_in.insert(path, file),
            None => return Err(ApiError::bad(format!("{field} is no file: it sets none"))),
        };
    }
    for (path, target) in cmd.symlinks {
        if copy_in.contains_key(&path) {
            return Err(ApiError::bad(format!(
                "cmd[{i}].symlinks[{path:?}]: copyIn already has a file at that path"
            )));
        }
        copy_in.insert(path, CmdFile::Symlink(target));
    }
    let copy_outs = |list: Vec<pb::request::CmdCopyOutFile>| {
        list.into_iter()
            .map(|file| CopyOutFile {
                name: file.name,
                optional: file.optional,
            })
            .collect()
    };
    Ok(api::Cmd {
        args: cmd.args,
        env: cmd.env,
        files,
        tty: cmd.tty,
        cpu_limit: cmd.cpu_time_limit,
        real_cpu_limit: 0,
        clock_limit: cmd.clock_time_limit,
        memory_limit: cmd.memory_limit,
        stack_limit: cmd.stack_limit,
        proc_limit: cmd.proc_limit,
        cpu_set_limit: cmd.cpu_set_limit,
        strict_memory_limit: false,
        data_segment_limit: cmd.data_segment_limit,
        address_space_limit: cmd.address_space_limit,
        copy_in,
        copy_out: copy_outs(cmd.copy_out),
        copy_out_cached: copy_outs(cmd.copy_out_cached),
        copy_out_max: cmd.copy_out_max,
        copy_out_truncate: cmd.copy_out_truncate,
    })
}

/// A file of the request; `None` for one that sets no kind (a slot for a
/// pipe).
fn to_file(field: &str, file: pb::request::File) -> Result<Option<CmdFile>, ApiError> {
    Ok(match file.file {
        None => None,
        Some(FileKind::Local(local)) => Some(CmdFile::Src(local.src)),
        Some(FileKind::Memory(memory)) => Some(CmdFile::Content(memory.content)),
        Some(FileKind::Cached(cached)) => Some(CmdFile::FileId(cached.file_id)),
        Some(FileKind::Pipe(collector)) => Some(CmdFile::Collector {
            max: u64::try_from(collector.max).map_err(|_| {
                ApiError::bad(format!(
                    "{field}.pipe.max is {}, which is negative",
                    collector.max
                ))
            })?,
            name: collector.name,
            pipe: collector.pipe,
        }),
        Some(FileKind::StreamIn(())) => Some(CmdFile::StreamIn),
        Some(FileKind::StreamOut(())) => Some(CmdFile::StreamOut),
    })
}

/// A command's result as go-judge's gRPC API gives it: as `/run` gives it,
/// but files as bytes, the status by number.
pub(crate) fn to_pb_result(result: CommandResult) -> pb::response::Result {
    pb::response::Result {
        status: crate::convert::status_of(result.verdict) as i32,
        exit_status: result.exit_status(),
        time: result.cpu_time_ns(),
        run_time: result.wall_time_ns(),
        proc_peak: result.processes_peak().map_or(0, u64::from),
        memory: result.memory_bytes(),
        error: crate::convert::error_of(&result),
        files: result.files,
        file_ids: result.stored,
        file_error: result
            .file_errors
            .into_iter()
            .map(|error| pb::response::FileError {
                name: error.name,
                r#type: error_type(error.kind) as i32,
                message: error.message,
            })
            .collect(),
    }
}

fn error_type(kind: FileErrorKind) -> ErrorType {
    match kind {
        FileErrorKind::CopyInOpenFile => ErrorType::CopyInOpenFile,
        FileErrorKind::CopyInCreateFile => ErrorType::CopyInCreateFile,
        FileErrorKind::CopyInCopyContent => ErrorType::CopyInCopyContent,
        FileErrorKind::CopyOutOpen => ErrorType::CopyOutOpen,
        FileErrorKind::CopyOutNotRegularFile => ErrorType::CopyOutNotRegularFile,
        FileErrorKind::CopyOutSizeExceeded => ErrorType::CopyOutSizeExceeded,
        FileErrorKind::CopyOutCreateFile => ErrorType::CopyOutCreateFile,
        FileErrorKind::CopyOutCopyContent => ErrorType::CopyOutCopyContent,
        FileErrorKind::CollectSizeExceeded => ErrorType::CollectSizeExceeded,
        FileErrorKind::Symlink => ErrorType::Symlink,
        // A kind this server does not know yet: go-judge's catch-all.
        _ => ErrorType::CopyInOpenFile,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::request::{CmdCopyOutFile, CmdType, MemoryFile, PipeCollector, PipeMap};

    fn file(kind: FileKind) -> pb::request::File {
        pb::request::File { file: Some(kind) }
    }

    #[test]
    fn a_grpc_request_reads_into_the_model_json_requests_read_into() {
        let request = pb::Request {
            request_id: "r".into(),
            cmd: vec![CmdType {
                args: vec!["cat".into()],
                files: vec![
                    pb::request::File::default(),
                    file(FileKind::Pipe(PipeCollector {
                        name: "stdout".into(),
                        max: 10,
                        pipe: true,
                    })),
                ],
                cpu_time_limit: 1,
                clock_time_limit: 2,
                copy_in: [(
                    "in".to_owned(),
                    file(FileKind::Memory(MemoryFile {
                        content: vec![0, 0xff],
                    })),
                )]
                .into(),
                symlinks: [("link".to_owned(), "in".to_owned())].into(),
                copy_out: vec![CmdCopyOutFile {
                    name: "what?".into(),
                    optional: false,
                }],
                copy_out_cached: vec![CmdCopyOutFile {
                    name: "bin".into(),
                    optional: true,
                }],
                ..CmdType::default()
            }],
            pipe_mapping: vec![PipeMap {
                r#in: Some(pb::request::pipe_map::PipeIndex { index: 0, fd: 3 }),
                out: Some(pb::request::pipe_map::PipeIndex { index: 0, fd: 0 }),
                proxy: true,
                name: "p".into(),
                max: 7,
                disable_zero_copy: true,
            }],
        };
        let model = to_run_request(request).unwrap();
        assert_eq!(model.request_id, "r");
        let cmd = &model.cmd[0];
        assert_eq!(cmd.files[0], None, "a file of no kind is a slot");
        assert_eq!(
            cmd.files[1],
            Some(CmdFile::Collector {
                name: "stdout".into(),
                max: 10,
                pipe: true
            })
        );
        assert_eq!(
            (cmd.cpu_limit, cmd.clock_limit, cmd.real_cpu_limit),
            (1, 2, 0)
        );
        assert_eq!(cmd.copy_in["in"], CmdFile::Content(vec![0, 0xff]));
        assert_eq!(cmd.copy_in["link"], CmdFile::Symlink("in".into()));
        // A gRPC name is taken as it is: a `?` in it is part of the name.
        assert_eq!(
            cmd.copy_out,
            [CopyOutFile {
                name: "what?".into(),
                optional: false
            }]
        );
        assert!(cmd.copy_out_cached[0].optional);
        assert_eq!(
            model.pipe_mapping,
            [api::PipeMap {
                input: api::PipeIndex { index: 0, fd: 3 },
                output: api::PipeIndex { index: 0, fd: 0 },
                name: "p".into(),
                max: 7,
                proxy: true,
            }]
        );
    }

    #[test]
    fn refusals_keep_their_meaning_as_grpc_statuses() {
        for (code, expected) in [
            (StatusCode::BAD_REQUEST, tonic::Code::InvalidArgument),
            (StatusCode::UNAUTHORIZED, tonic::Code::Unauthenticated),
            (StatusCode::NOT_FOUND, tonic::Code::NotFound),
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                tonic::Code::ResourceExhausted,
            ),
            (StatusCode::SERVICE_UNAVAILABLE, tonic::Code::Unavailable),
            (StatusCode::INTERNAL_SERVER_ERROR, tonic::Code::Internal),
        ] {
            let status = status(ApiError::new(code, "why"));
            assert_eq!((status.code(), status.message()), (expected, "why"));
        }
    }

    #[test]
    fn every_verdict_has_go_judges_number_and_every_file_error_its_type() {
        use hutch_host::Verdict;
        use pb::response::result::StatusType;
        for (verdict, number) in [
            (Verdict::Ok, StatusType::Accepted),
            (Verdict::TimeLimit, StatusType::TimeLimitExceeded),
            (Verdict::WallTimeLimit, StatusType::TimeLimitExceeded),
            (Verdict::MemoryLimit, StatusType::MemoryLimitExceeded),
            (Verdict::OutputLimit, StatusType::OutputLimitExceeded),
            (Verdict::FileError, StatusType::FileError),
            (Verdict::NonzeroExit, StatusType::NonZeroExitStatus),
            (Verdict::Signalled, StatusType::Signalled),
            (Verdict::DisallowedSyscall, StatusType::DangerousSyscall),
            (Verdict::RunnerError, StatusType::InternalError),
        ] {
            assert_eq!(crate::convert::status_of(verdict), number, "{verdict:?}");
        }
        for kind in [
            FileErrorKind::CopyInOpenFile,
            FileErrorKind::CopyInCreateFile,
            FileErrorKind::CopyInCopyContent,
            FileErrorKind::CopyOutOpen,
            FileErrorKind::CopyOutNotRegularFile,
            FileErrorKind::CopyOutSizeExceeded,
            FileErrorKind::CopyOutCreateFile,
            FileErrorKind::CopyOutCopyContent,
            FileErrorKind::CollectSizeExceeded,
            FileErrorKind::Symlink,
        ] {
            // The numbers go-judge gives the names it shares with hutch.
            assert_eq!(format!("{:?}", error_type(kind)), kind.as_str());
        }
    }
}
