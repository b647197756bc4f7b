//! Errors: those a request gets as an HTTP answer ([`ApiError`]), and those
//! that keep the server from starting or stopping cleanly
//! ([`ServerError`]).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// A request's failure: an HTTP status and a message, sent as a JSON
/// string, as go-judge sends its errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What was wrong, naming the field.
    pub message: String,
}

impl ApiError {
    /// A `400 Bad Request`.
    pub fn bad(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// An error with another status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, crate::json_answer(self.message)).into_response()
    }
}

/// Why the server could not start, or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The listening address cannot be bound.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file store cannot be opened.
    #[error("cannot open the file store")]
    FileStore(#[source] hutch_host::StoreError),
    /// A `--src-prefix` directory cannot be opened.
    #[error("cannot open the source prefix {}", path.display())]
    SrcPrefix {
        /// The directory.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Containers cannot be built.
    #[error("cannot start the containers")]
    Containers(#[source] hutch_host::PoolError),
    /// The async runtime could not be made.
    #[error("cannot start the server's runtime")]
    Runtime(#[source] std::io::Error),
    /// Serving failed.
    #[error("the server failed")]
    Serve(#[source] std::io::Error),
    /// The configuration is not usable.
    #[error("invalid server configuration: {0}")]
    Config(String),
}
