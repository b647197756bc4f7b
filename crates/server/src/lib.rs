//! An HTTP server that runs programs in hutch containers and speaks
//! go-judge's REST API, and on request its gRPC API, so that judges written
//! for go-judge (HydroOJ and HOJ over REST, JOJ3 over gRPC, and others) can
//! use hutch unchanged.
//!
//! ```no_run
//! let server = hutch_server::Server::start(hutch_server::Config::default())?;
//! println!("listening on {}", server.addr());
//! server.shutdown()?;
//! # Ok::<(), hutch_server::ServerError>(())
//! ```
//!
//! Endpoints: `POST /run`, `GET /file`, `POST /file`, `GET /file/{id}`,
//! `DELETE /file/{id}`, `GET /version`, `GET /config`, `GET /metrics`, the
//! `/stream` WebSocket (programs fed and read while they run), the `/ws`
//! WebSocket (many `/run` requests over one connection); with
//! [`Config::grpc_listen`], the gRPC service `pb.Executor` (`Exec`,
//! `ExecStream`, `FileList`, `FileGet`, `FileAdd`, `FileDelete`), whose messages are in
//! [`pb`]. The API, the mapping of hutch's verdicts onto go-judge's statuses, the
//! limits and the server's threat model are in `docs/server.md` of the
//! repository.
//!
//! Each command of a request runs in a container of a [`Pool`] of
//! [`Config::parallelism`] containers, through a [`hutch_host::Job`];
//! requests wait in a queue of at most [`Config::max_queue`] for enough
//! containers, and a request that finds the queue full is answered `503`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod api;
pub mod client;
mod convert;
mod error;
mod files;
mod grpc;
mod metrics;
#[cfg(test)]
mod mutation_tests;
pub mod pb;
mod runs;
mod stall;
mod stream;
mod ws;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hutch_host::protocol::CgroupVersion;
use hutch_host::{Cancel, ContainerBuilder, FileStore, Pool};
use serde::Serialize;
use tokio::sync::Semaphore;

pub use convert::{Defaults, MAX_MEMORY_BYTES};
pub use error::{ApiError, ServerError};

/// How the server runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen; `127.0.0.1:5050` by default, go-judge's port.
    pub listen: SocketAddr,
    /// Where to serve go-judge's gRPC API (`pb.Executor`) too, if anywhere;
    /// go-judge's port for it is 5051. None by default.
    pub grpc_listen: Option<SocketAddr>,
    /// How many commands run at once, each in a container the server keeps
    /// ready; the number of CPUs by default, and at least 2, so that an
    /// interactive pair runs in containers built ahead. A request with more
    /// commands (up to 16, or this many if more) runs alone, in containers
    /// built for it as well.
    pub parallelism: usize,
    /// The bearer token every request but `/version` and `/config` must
    /// bring; none by default. An empty one is refused at start.
    pub auth_token: Option<String>,
    /// The file store's directory; a private temporary one (removed at
    /// shutdown) by default.
    pub file_store: Option<PathBuf>,
    /// Host directories `src` files may come from; none by default, which
    /// refuses every `src`.
    pub src_prefixes: Vec<PathBuf>,
    /// Requests that may wait for containers before one is answered `503`.
    /// A request whose containers are free at once does not wait, and is
    /// not counted.
    pub max_queue: usize,
    /// The largest request body, in bytes (`413` beyond).
    pub max_body: usize,
    /// How long shutdown lets running commands finish before killing them.
    pub shutdown_grace: Duration,
    /// How long a connection may stay idle before the server closes it:
    /// over HTTP/1.1, waiting for a request's head (a new connection's
    /// first, or a kept-alive one's next); over gRPC, with no call open.
    /// A request body (or a unary gRPC call's message) of which no part
    /// comes for as long fails: `408`, or `DEADLINE_EXCEEDED`; a connection
    /// whose client takes none of what the server writes for as long is
    /// closed.
    /// [`DEFAULT_IDLE_TIMEOUT`] by default.
    pub idle_timeout: Duration,
    /// Limits applied where a request leaves them at 0.
    pub defaults: Defaults,
    /// The containers.
    pub builder: ContainerBuilder,
}

/// The default [`Config::parallelism`]: the number of CPUs this process
/// may use, and at least 2, so that an interactive pair runs in containers
/// built ahead.
pub fn default_parallelism() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .max(2)
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 5050)),
            grpc_listen: None,
            parallelism: default_parallelism(),
            auth_token: None,
            file_store: None,
            src_prefixes: Vec::new(),
            max_queue: 512,
            max_body: 64 << 20,
            shutdown_grace: Duration::from_secs(10),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            defaults: Defaults {
                clock_limit: Duration::from_secs(60),
                memory_limit: 1 << 30,
                proc_limit: 256,
                output_limit: 256 << 20,
                open_files: 256,
                copy_out_limit: hutch_host::DEFAULT_COPY_OUT_LIMIT,
                seccomp: hutch_host::SeccompPolicy::default_policy()
                    .compile()
                    .unwrap_or_default(),
            },
            builder: ContainerBuilder::new(),
        }
    }
}

/// What every handler shares.
struct AppState {
    pool: Pool,
    store: FileStore,
    prefixes: Vec<convert::SrcPrefix>,
    defaults: Defaults,
    auth_token: Option<String>,
    max_queue: u64,
    max_body: usize,
    /// One permit per container.
    permits: Arc<Semaphore>,
    parallelism: usize,
    metrics: metrics::Metrics,
    /// The jobs under way, cancelled when the grace period ends.
    runs: runs::Runs,
    cgroup: Option<CgroupVersion>,
    workdir: String,
    shutdown_grace: Duration,
    idle_timeout: Duration,
}

/// Where a started server listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listening {
    /// go-judge's REST API.
    pub http: SocketAddr,
    /// go-judge's gRPC API, when [`Config::grpc_listen`] asks for it.
    pub grpc: Option<SocketAddr>,
}

/// A running server; dropping it shuts it down.
#[derive(Debug)]
pub struct Server {
    listening: Listening,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), ServerError>>>,
}

impl Server {
    /// Starts a server on a thread of its own and returns once it listens:
    /// removes the cgroups a killed earlier server left, opens the file
    /// store, builds the containers, binds the address.
    pub fn start(config: Config) -> Result<Server, ServerError> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("hutch-server".into())
            .spawn(move || {
                let runtime = runtime()?;
                runtime.block_on(async move {
                    let (listeners, state) = match prepare(config).await {
                        Ok(prepared) => prepared,
                        Err(error) => {
                            let _ = ready_tx.send(Err(error));
                            return Ok(());
                        }
                    };
                    let _ = ready_tx.send(Ok(listeners.addresses()?));
                    let stop = async {
                        let _ = stop_rx.await;
                    };
                    serve(listeners, state, stop, std::future::pending()).await
                })
            })
            .map_err(ServerError::Runtime)?;
        match ready_rx.recv() {
            Ok(Ok(listening)) => Ok(Server {
                listening,
                stop: Some(stop_tx),
                thread: Some(thread),
            }),
            Ok(Err(error)) => {
                let _ = thread.join();
                Err(error)
            }
            Err(_) => match thread.join() {
                Ok(Err(error)) => Err(error),
                _ => Err(ServerError::Config(
                    "the server thread ended at start".into(),
                )),
            },
        }
    }

    /// The address the server answers go-judge's REST API on.
    pub fn addr(&self) -> SocketAddr {
        self.listening.http
    }

    /// Where the server listens.
    pub fn listening(&self) -> Listening {
        self.listening
    }

    /// Stops accepting, lets running commands finish (killing them after
    /// the grace period), destroys the containers and their cgroups.
    pub fn shutdown(mut self) -> Result<(), ServerError> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<(), ServerError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take().map(|thread| thread.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(ServerError::Config("the server thread panicked".into())),
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

/// Runs a server on this thread until `SIGTERM`, `SIGINT` or `SIGHUP`
/// (its terminal closed), then shuts it down as [`Server::shutdown`] does;
/// calls `on_ready` with its addresses once it listens. A second of these
/// signals during the shutdown ends its grace period at once: what still
/// runs is killed. A signal the process was started with ignored (`SIGHUP`
/// under `nohup`, `SIGINT` in a shell's background job) stays ignored.
pub fn serve_until_signal(
    config: Config,
    on_ready: impl FnOnce(Listening),
) -> Result<(), ServerError> {
    use tokio::signal::unix::SignalKind;
    let runtime = runtime()?;
    runtime.block_on(async move {
        let mut terminate = stop_signal(SignalKind::terminate())?;
        let mut interrupt = stop_signal(SignalKind::interrupt())?;
        let mut hangup = stop_signal(SignalKind::hangup())?;
        let (listeners, state) = prepare(config).await?;
        on_ready(listeners.addresses()?);
        // How many stop signals came.
        let (signals_tx, signals) = tokio::sync::watch::channel(0u32);
        tokio::spawn(async move {
            loop {
                let name = tokio::select! {
                    () = arrival(&mut terminate) => "SIGTERM",
                    () = arrival(&mut interrupt) => "SIGINT",
                    () = arrival(&mut hangup) => "SIGHUP",
                };
                let mut count = 0;
                signals_tx.send_modify(|signals| {
                    *signals += 1;
                    count = *signals;
                });
                if count == 1 {
                    tracing::info!("{name}: shutting down");
                } else {
                    tracing::warn!("{name} again: killing what still runs");
                }
            }
        });
        let signalled = |count: u32| {
            let mut signals = signals.clone();
            async move {
                let _ = signals.wait_for(|&signals| signals >= count).await;
            }
        };
        serve(listeners, state, signalled(1), signalled(2)).await
    })
}

/// The arrivals of signal `kind`; `None` when the process was started with
/// it ignored, which it then stays.
fn stop_signal(
    kind: tokio::signal::unix::SignalKind,
) -> Result<Option<tokio::signal::unix::Signal>, ServerError> {
    if hutch_host::signal_ignored(kind.as_raw_value()) {
        return Ok(None);
    }
    tokio::signal::unix::signal(kind)
        .map(Some)
        .map_err(ServerError::Runtime)
}

/// Returns when `signal` next arrives; never for one left ignored.
async fn arrival(signal: &mut Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, ServerError> {
    // Accepting and shutting down is all it does: each connection has a
    // runtime of its own (`serve_connection`).
    tokio::runtime::Builder::new_current_thread()
        .thread_name("hutch-http")
        .enable_all()
        .build()
        .map_err(ServerError::Runtime)
}

/// The sockets a server listens on.
struct Listeners {
    http: tokio::net::TcpListener,
    grpc: Option<tokio::net::TcpListener>,
}

impl Listeners {
    fn addresses(&self) -> Result<Listening, ServerError> {
        Ok(Listening {
            http: self.http.local_addr().map_err(ServerError::Serve)?,
            grpc: self
                .grpc
                .as_ref()
                .map(|grpc| grpc.local_addr().map_err(ServerError::Serve))
                .transpose()?,
        })
    }
}

async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, ServerError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Listen { addr, source })
}

/// Everything before the first request: stale cgroups and stores, store, prefixes,
/// containers, the listening sockets.
async fn prepare(config: Config) -> Result<(Listeners, Arc<AppState>), ServerError> {
    if config.parallelism == 0 {
        return Err(ServerError::Config(
            "the parallelism must be at least 1".into(),
        ));
    }
    if config.idle_timeout.is_zero() {
        return Err(ServerError::Config(
            "the idle timeout must be longer than 0".into(),
        ));
    }
    if config.auth_token.as_deref() == Some("") {
        return Err(ServerError::Config(
            "the auth token is empty: any request with `Authorization: Bearer ` would pass \
             (give none to serve without one)"
                .into(),
        ));
    }
    let blocking = tokio::task::spawn_blocking(move || -> Result<_, ServerError> {
        match config.builder.remove_stale_cgroups() {
            Ok(removed) => {
                if let Ok(placement) = config.builder.cgroup_placement() {
                    tracing::info!(?placement, "container cgroups go here");
                }
                if removed > 0 {
                    tracing::info!(removed, "removed cgroups a killed earlier process left");
                }
            }
            Err(error) => tracing::warn!(%error, "cannot look for cgroups an earlier process left"),
        }
        match FileStore::remove_abandoned() {
            Ok(removed) if !removed.is_empty() => tracing::info!(
                removed = removed.len(),
                "removed temporary file stores killed earlier processes left"
            ),
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "cannot look for file stores earlier processes left");
            }
        }
        let store = match &config.file_store {
            Some(dir) => FileStore::in_directory(dir),
            None => FileStore::temporary(),
        }
        .map_err(ServerError::FileStore)?;
        let prefixes = config
            .src_prefixes
            .iter()
            .map(|path| {
                convert::SrcPrefix::open(path).map_err(|source| ServerError::SrcPrefix {
                    path: path.clone(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let pool = Pool::new(config.builder.clone(), config.parallelism);
        pool.wait_ready().map_err(ServerError::Containers)?;
        let (cgroup, workdir) = {
            let probe = pool.checkout().map_err(ServerError::Containers)?;
            (probe.cgroup_version(), probe.workdir().to_owned())
        };
        Ok((config, store, prefixes, pool, cgroup, workdir))
    })
    .await
    .map_err(|e| ServerError::Config(format!("start-up failed: {e}")))?;
    let (config, store, prefixes, pool, cgroup, workdir) = blocking?;
    let listeners = Listeners {
        http: bind(config.listen).await?,
        grpc: match config.grpc_listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        },
    };
    let listening = listeners.addresses()?;
    tracing::info!(
        addr = %listening.http,
        grpc = ?listening.grpc,
        parallelism = config.parallelism,
        store = %store.dir().display(),
        cgroup = ?cgroup,
        "listening"
    );
    let state = Arc::new(AppState {
        pool,
        store,
        prefixes,
        defaults: config.defaults.clone(),
        auth_token: config.auth_token.clone(),
        max_queue: config.max_queue as u64,
        max_body: config.max_body,
        permits: Arc::new(Semaphore::new(config.parallelism)),
        parallelism: config.parallelism,
        metrics: metrics::Metrics::default(),
        runs: runs::Runs::default(),
        cgroup,
        workdir,
        shutdown_grace: config.shutdown_grace,
        idle_timeout: config.idle_timeout,
    });
    Ok((listeners, state))
}

/// The most connections served at once, REST and gRPC together; the next
/// waits to be accepted until one closes.
pub(crate) const MAX_CONNECTIONS: usize = 1024;

/// Serves until `stop` completes, then shuts down; `hurry` completing
/// during the shutdown ends its grace period at once.
///
/// Each connection is served on a thread of its own, by a single-threaded
/// runtime: a request's commands run right there, blocking only its own
/// connection (which HTTP/1.1 answers in order anyway), so the request
/// reaches its containers and its answer the client with no hand-over
/// between threads, each of which cost tens of microseconds here.
async fn serve(
    listeners: Listeners,
    state: Arc<AppState>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
    hurry: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let Listeners {
        http: listener,
        grpc,
    } = listeners;
    let app = router(Arc::clone(&state));
    let (closing_tx, closing_rx) = tokio::sync::watch::channel(Closing::No);
    // A connection holds one slot until it ends (a REST one on its thread,
    // a gRPC one in its task), and the gRPC server's accepting task one
    // until it stops: all of them back means no connection is open.
    let holders = MAX_CONNECTIONS + usize::from(grpc.is_some());
    let slots = Arc::new(Semaphore::new(holders));
    let all_closed = || slots.acquire_many(holders as u32);
    if let Some(grpc) = grpc {
        let slot = Arc::clone(&slots)
            .try_acquire_owned()
            .expect("no connection is open yet");
        let (state, closing) = (Arc::clone(&state), closing_rx.clone());
        let (slots, idle) = (Arc::clone(&slots), state.idle_timeout);
        tokio::spawn(async move {
            let _slot = slot;
            grpc::serve(grpc, state, slots, idle, closing).await;
        });
    }
    tokio::pin!(stop);
    loop {
        let slot = tokio::select! {
            () = &mut stop => break,
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("the slots are never closed"),
        };
        let Some(stream) = accept(&listener, &mut stop).await else {
            break;
        };
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%error, "cannot take over a connection");
                continue;
            }
        };
        let app = app.clone();
        let closing = closing_rx.clone();
        let idle = state.idle_timeout;
        let spawned = std::thread::Builder::new()
            .name("hutch-connection".into())
            .spawn(move || {
                let _slot = slot;
                serve_connection(stream, app, idle, closing);
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "cannot start a thread for a connection");
        }
    }
    drop(listener);
    // Requests still waiting for containers are answered 503; every
    // connection ends after the request it serves.
    state.permits.close();
    let _ = closing_tx.send(Closing::Gracefully);
    tokio::pin!(hurry);
    let why = tokio::select! {
        closed = tokio::time::timeout(state.shutdown_grace, all_closed()) => {
            closed.err().map(|_| "the grace period ended")
        }
        () = &mut hurry => Some("asked again to stop"),
    };
    if let Some(why) = why {
        // Each job under way, wherever it is: running, starting, or
        // waiting for containers.
        let requests = state.runs.cancel_all();
        tracing::warn!(requests, "{why}: running commands were killed");
        if tokio::time::timeout(ANSWERS_AFTER_KILL, all_closed())
            .await
            .is_err()
        {
            // A client still sending its request, or not reading its
            // answer.
            tracing::warn!("closing the connections still open");
            let _ = closing_tx.send(Closing::Now);
            let _ = all_closed().await;
        }
    }
    let pool = state.pool.clone();
    tokio::task::spawn_blocking(move || pool.shutdown())
        .await
        .map_err(|e| ServerError::Config(format!("shutdown failed: {e}")))?;
    tracing::info!("stopped: every container and its cgroup is gone");
    Ok(())
}

/// The next connection `listener` accepts, or None once `stop` completes.
/// A connection that cannot be accepted (the process is out of
/// descriptors, say) waits in the backlog and is tried again shortly.
pub(crate) async fn accept(
    listener: &tokio::net::TcpListener,
    stop: impl std::future::Future<Output = ()>,
) -> Option<tokio::net::TcpStream> {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return None,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => return Some(stream),
                Err(error) => {
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
}

/// How far the server has gone in closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Closing {
    /// Serving.
    No,
    /// No new connection or request; those under way are answered.
    Gracefully,
    /// Every connection is closed now, answered or not.
    Now,
}

/// Completes once the server's closing has reached `phase` (or the server
/// is gone).
pub(crate) async fn reached(closing: &mut tokio::sync::watch::Receiver<Closing>, phase: Closing) {
    let _ = closing.wait_for(|now| *now >= phase).await;
}

/// How long shutdown waits, once the grace period is over and what still
/// ran is killed, for the killed commands' answers before it closes the
/// connections still open.
const ANSWERS_AFTER_KILL: Duration = Duration::from_secs(1);

thread_local! {
    /// A copy of the socket of the connection this thread serves, which a
    /// `/run` watches while its programs run: the client's close cancels
    /// them.
    static CLIENT: RefCell<Option<Arc<OwnedFd>>> = const { RefCell::new(None) };
}

/// Serves one connection on this thread until it closes, or until the
/// server closes and its current request is answered.
fn serve_connection(
    stream: std::net::TcpStream,
    app: Router,
    idle: Duration,
    mut closing: tokio::sync::watch::Receiver<Closing>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::warn!(%error, "cannot start a connection's runtime");
            return;
        }
    };
    match stream.try_clone() {
        Ok(copy) => CLIENT.with(|client| *client.borrow_mut() = Some(Arc::new(copy.into()))),
        Err(error) => {
            tracing::warn!(%error, "cannot watch a connection for its client leaving");
        }
    }
    runtime.block_on(async move {
        let stream = match tokio::net::TcpStream::from_std(stream) {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%error, "cannot serve a connection");
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(app);
        // `/stream` sessions outlive the HTTP connection they upgrade; each
        // holds a clone of this, so that the thread serves until the last
        // one ends.
        let (sessions, mut sessions_over) = tokio::sync::mpsc::channel::<()>(1);
        // The timer bounds how long a request's head may take to arrive,
        // counted from the connection's start or the previous answer, so a
        // client that sends nothing does not hold its thread forever; and
        // one that stops reading its answer (or its WebSocket's messages)
        // loses its connection once it has taken nothing for as long.
        let stream = stall::WriteStall::new(stream, idle);
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(idle)
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
            .with_upgrades();
        // Handlers run on this thread, which serves this connection alone.
        stream::Sessions::set_for_this_thread(stream::Sessions {
            held: sessions,
            closing: closing.clone(),
        });
        tokio::pin!(connection);
        tokio::select! {
            _ = connection.as_mut() => {}
            () = reached(&mut closing, Closing::Gracefully) => {
                // An upgraded connection is its session's: this only stops
                // HTTP/1.1 from taking another request.
                connection.as_mut().graceful_shutdown();
                tokio::select! {
                    _ = connection.as_mut() => {}
                    () = reached(&mut closing, Closing::Now) => {}
                }
            }
        }
        stream::Sessions::clear_for_this_thread();
        // The sessions' own ends, which they reach on their own once the
        // server closes.
        let _ = sessions_over.recv().await;
    });
}

/// The default [`Config::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// `Keep-Alive: timeout=N` on every answer, N the idle timeout in whole
/// seconds: clients that read it (undici, the `fetch` of Node.js, among
/// them) stop reusing an idle connection before the server closes it, so
/// a request never races the close.
async fn keep_alive_hint(hint: State<header::HeaderValue>, mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::HeaderName::from_static("keep-alive"), hint.0);
    response
}

fn router(state: Arc<AppState>) -> Router {
    let max_body = state.max_body;
    let idle = state.idle_timeout;
    // Whole seconds, rounded down: the client lets go first.
    let hint = header::HeaderValue::try_from(format!("timeout={}", state.idle_timeout.as_secs()))
        .unwrap_or_else(|_| header::HeaderValue::from_static("timeout=0"));
    Router::new()
        .route("/run", post(run))
        .route("/file", get(files::list).post(files::upload))
        .route("/file/{id}", get(files::download).delete(files::remove))
        .route("/metrics", get(metrics_text))
        .route("/stream", get(stream::upgrade))
        .route("/ws", get(ws::upgrade))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            authorize,
        ))
        .route("/version", get(version))
        .route("/config", get(config_json))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::map_request_with_state(idle, stall_request_body))
        .layer(middleware::map_response_with_state(hint, keep_alive_hint))
        .with_state(state)
}

/// Fails a request's body once none of it has come for `idle`
/// (`Config::idle_timeout`), so that a client that stops sending holds its
/// connection no longer.
async fn stall_request_body(State(idle): State<Duration>, request: Request) -> Request {
    request.map(|body| Body::new(stall::StallTimeout::new(body, idle, stall::stalled)))
}

/// Lets a request through when the server has no token, or it brings it as
/// `Authorization: Bearer <token>`.
async fn authorize(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if let Some(token) = &state.auth_token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        if given != Some(token.as_str()) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this server needs an Authorization: Bearer token",
            )
            .into_response();
        }
    }
    next.run(request).await
}

async fn run(State(state): State<Arc<AppState>>, body: Body) -> Response {
    let arrived = Instant::now();
    let (response, code) = match run_request(&state, body).await {
        Ok(answered) => answered,
        Err(error) => {
            tracing::info!(status = error.status.as_u16(), error = %error.message, "run refused");
            let code = error.status;
            (error.into_response(), code)
        }
    };
    state.metrics.answered(code.as_u16(), arrived.elapsed());
    response
}

/// Client closed request: what the metrics count for a `/run` whose
/// client left while it ran (nginx's code for it), since no answer reaches
/// anyone.
const CLIENT_LEFT: StatusCode = match StatusCode::from_u16(499) {
    Ok(code) => code,
    Err(_) => panic!("499 is a status code"),
};

/// Runs one `/run` request: its answer, and the code the metrics count
/// for it (200, or [`CLIENT_LEFT`]).
async fn run_request(
    state: &Arc<AppState>,
    body: Body,
) -> Result<(Response, StatusCode), ApiError> {
    let body = axum::body::to_bytes(body, state.max_body)
        .await
        .map_err(|error| body_error(error, state.max_body))?;
    let request = api::parse_run_request(&body)?;
    drop(body);
    let admitted = admit(state, &request).await?;
    // The client leaving cancels the run, as go-judge cancels a request
    // whose client left: this thread serves the client's connection alone
    // and is blocked in the run, so the run itself watches the socket.
    let mut cancel = Cancel::new();
    if let Some(client) = CLIENT.with(|client| client.borrow().clone()) {
        cancel = cancel.on_peer_close(client);
    }
    // The run blocks this thread, which serves this connection alone
    // (`serve`).
    let (results, containers) = run_admitted(state, &admitted, &cancel);
    let client_left = cancel.is_cancelled() && !state.runs.all_cancelled();
    if client_left {
        tracing::info!(request_id = %request.request_id, "run cancelled: its client left");
    }
    // Back to the pool once the answer is out: the connection's runtime
    // runs this task when the connection waits for its next request, that
    // is after the answer is written, so init's reset (dropping a container
    // sends it) does not compete with the answer for a CPU. The permits go
    // after the containers, so a request that gets one finds a container.
    // Should the connection end first, dropping the task gives them back.
    tokio::task::spawn(async move {
        drop(containers);
        drop(admitted);
    });
    let results: Vec<api::RunResult> = results?.into_iter().map(convert::to_result).collect();
    tracing::info!(
        request_id = %request.request_id,
        commands = results.len(),
        statuses = ?results.iter().map(|r| r.status).collect::<Vec<_>>(),
        "run"
    );
    let code = if client_left {
        CLIENT_LEFT
    } else {
        StatusCode::OK
    };
    Ok((json_answer(results), code))
}

/// Why a request's body could not be read whole: larger than `max_body`
/// (`413`), or not sent whole (`400`; the client closed its connection
/// before the end, say).
fn body_error(error: axum::Error, max_body: usize) -> ApiError {
    let error = error.into_inner();
    if let Some(stalled) = find_stalled(&*error) {
        return ApiError::new(StatusCode::REQUEST_TIMEOUT, stalled.to_string());
    }
    if error
        .downcast_ref::<http_body_util::LengthLimitError>()
        .is_some()
    {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is larger than this server takes ({max_body} bytes, --max-body)"
            ),
        )
    } else {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "cannot read the request body: {}",
                hutch_host::error_chain(&*error)
            ),
        )
    }
}

/// The [`stall::Stalled`] an error is, or comes from.
fn find_stalled<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a stall::Stalled> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(stalled) = error.downcast_ref::<stall::Stalled>() {
            return Some(stalled);
        }
        next = error.source();
    }
    None
}

/// A request let through the queue: its job, and a permit for each of its
/// commands (all of them for one with more commands than the server runs at
/// once, which then runs alone), held until its containers are back in the
/// pool.
struct Admitted {
    job: hutch_host::Job,
    _permits: tokio::sync::OwnedSemaphorePermit,
}

/// Checks a request and turns it into a job, then waits for a container
/// per command: a place in the queue, or `503` at once when it is full or
/// the server is shutting down.
async fn admit(state: &AppState, request: &api::RunRequest) -> Result<Admitted, ApiError> {
    let job = convert::to_job(
        request,
        &state.defaults,
        state.parallelism,
        &state.store,
        &state.prefixes,
    )?;
    admit_job(state, job).await
}

/// Waits for a container per command of `job`, as [`admit`] does.
async fn admit_job(state: &AppState, job: hutch_host::Job) -> Result<Admitted, ApiError> {
    let wanted = job.commands().len().min(state.parallelism) as u32;
    let shutting_down = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down",
        )
    };
    // A request whose containers are free now does not wait, and takes no
    // place in the queue. (The semaphore hands released permits to those
    // queued first: this never overtakes a request that waits.)
    match Arc::clone(&state.permits).try_acquire_many_owned(wanted) {
        Ok(permits) => {
            return Ok(Admitted {
                job,
                _permits: permits,
            });
        }
        Err(tokio::sync::TryAcquireError::Closed) => return Err(shutting_down()),
        Err(tokio::sync::TryAcquireError::NoPermits) => {}
    }
    // A place in the queue, given back however the wait ends: with
    // containers, refused, or dropped because the client gave up.
    struct Place<'a>(&'a std::sync::atomic::AtomicU64);
    impl Drop for Place<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let waiting = state.metrics.waiting.fetch_add(1, Ordering::SeqCst);
    let place = Place(&state.metrics.waiting);
    if waiting >= state.max_queue {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the queue is full: {waiting} requests are waiting for containers (--max-queue)"
            ),
        ));
    }
    let permits = Arc::clone(&state.permits).acquire_many_owned(wanted).await;
    drop(place);
    let permits = permits.map_err(|_| shutting_down())?;
    Ok(Admitted {
        job,
        _permits: permits,
    })
}

/// Runs an admitted job in containers of the pool, blocking this thread;
/// returns the results and the containers, to give back once the answer
/// is sent.
fn run_admitted(
    state: &AppState,
    admitted: &Admitted,
    cancel: &Cancel,
) -> (
    Result<Vec<hutch_host::CommandResult>, ApiError>,
    Vec<hutch_host::Pooled>,
) {
    run_admitted_cancellable(state, admitted, Some(cancel))
}

/// Runs an admitted job on a blocking thread, for callers on an async
/// task that must go on serving (gRPC calls, WebSocket sessions); gives its
/// containers, then its permits and the job (and with it the job's own
/// copies of the descriptors it was given), back as soon as it is over.
async fn run_admitted_elsewhere(
    state: &Arc<AppState>,
    admitted: Admitted,
    cancel: Option<hutch_host::Cancel>,
) -> Result<Vec<hutch_host::CommandResult>, ApiError> {
    let state = Arc::clone(state);
    tokio::task::spawn_blocking(move || {
        let (results, containers) = run_admitted_cancellable(&state, &admitted, cancel.as_ref());
        // The containers go back before the permits.
        drop(containers);
        drop(admitted);
        results
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the run failed: {e}"),
        )
    })?
}

/// [`run_admitted`], stopped early by `cancel`.
fn run_admitted_cancellable(
    state: &AppState,
    admitted: &Admitted,
    cancel: Option<&hutch_host::Cancel>,
) -> (
    Result<Vec<hutch_host::CommandResult>, ApiError>,
    Vec<hutch_host::Pooled>,
) {
    state.metrics.running.fetch_add(1, Ordering::SeqCst);
    let (results, containers) = run_job(state, &admitted.job, cancel);
    state.metrics.running.fetch_sub(1, Ordering::SeqCst);
    if let Ok(results) = &results {
        for result in results {
            state.metrics.verdict(convert::status_name(result.verdict));
        }
    }
    (results, containers)
}

/// Runs `job` in containers of the pool; returns the results and the
/// containers. Until it returns, shutdown's kill cancels the job, as
/// `cancel` does.
fn run_job(
    state: &AppState,
    job: &hutch_host::Job,
    cancel: Option<&hutch_host::Cancel>,
) -> (
    Result<Vec<hutch_host::CommandResult>, ApiError>,
    Vec<hutch_host::Pooled>,
) {
    let own;
    let cancel = match cancel {
        Some(cancel) => cancel,
        None => {
            own = Cancel::new();
            &own
        }
    };
    let _under_way = state.runs.enter(cancel);
    let mut pooled = match state.pool.checkout_many(job.commands().len()) {
        Ok(pooled) => pooled,
        Err(error) => {
            return (
                Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("no container: {}", hutch_host::error_chain(&error)),
                )),
                Vec::new(),
            );
        }
    };
    let results = {
        let mut containers: Vec<&mut hutch_host::Container> =
            pooled.iter_mut().map(|c| &mut **c).collect();
        job.run_in_cancellable(&mut containers, Some(cancel))
    };
    let results = results.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            hutch_host::error_chain(&e),
        )
    });
    (results, pooled)
}

/// The type of every JSON answer, as go-judge (gin) sends it.
const JSON_TYPE: &str = "application/json; charset=utf-8";

/// `value` as a JSON answer, typed as go-judge types them.
pub(crate) fn json_answer(value: impl Serialize) -> Response {
    let mut response = Json(value).into_response();
    // What failed to serialise is a plain-text `500`, and stays one.
    let typed = response.headers().get(header::CONTENT_TYPE)
        == Some(&header::HeaderValue::from_static("application/json"));
    if typed {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static(JSON_TYPE),
        );
    }
    response
}

/// What a client checks before it relies on a feature, as go-judge tells
/// it.
fn features() -> serde_json::Map<String, serde_json::Value> {
    let mut map = serde_json::Map::new();
    for (name, on) in [
        ("copyOutOptional", true),
        ("pipeProxy", true),
        ("symlink", true),
        ("addressSpaceLimit", true),
        ("stream", true),
        ("procPeak", true),
        ("copyOutTruncate", true),
        ("pipeProxyZeroCopy", false),
        ("fixSymlinkEscape", true),
    ] {
        map.insert(name.into(), serde_json::Value::Bool(on));
    }
    map
}

async fn version() -> Response {
    let mut map = features();
    map.insert(
        "buildVersion".into(),
        format!("v{}", env!("CARGO_PKG_VERSION")).into(),
    );
    map.insert("hutchVersion".into(), env!("CARGO_PKG_VERSION").into());
    map.insert(
        "platform".into(),
        match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        }
        .into(),
    );
    map.insert("os".into(), std::env::consts::OS.into());
    json_answer(map)
}

async fn config_json(State(state): State<Arc<AppState>>) -> Response {
    let mut map = features();
    map.insert(
        "fileStorePath".into(),
        state.store.dir().display().to_string().into(),
    );
    let (cgroup_type, controllers) = match state.cgroup {
        None => (0, Vec::new()),
        Some(CgroupVersion::V1) => (1, vec!["cpuacct", "memory", "pids"]),
        Some(CgroupVersion::V2) => (2, vec!["cpu", "memory", "pids"]),
    };
    map.insert(
        "runnerConfig".into(),
        serde_json::json!({
            "cgroupType": cgroup_type,
            "cgroupControllers": controllers,
            "workDir": state.workdir,
            "parallelism": state.parallelism,
            "seccomp": !state.defaults.seccomp.is_empty(),
        }),
    );
    json_answer(map)
}

async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    let text = state.metrics.render(state.pool.idle(), state.pool.size());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
