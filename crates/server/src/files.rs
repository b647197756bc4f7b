//! The file store's endpoints: `GET /file` (every id and name),
//! `POST /file` (a multipart form with a field `file`; answers the new id),
//! `GET /file/{id}` (the content), `DELETE /file/{id}`.

use std::sync::Arc;

use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::error::ApiError;

/// Runs store work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the file store failed: {e}"),
        )
    })?
}

pub(crate) fn store_error(error: hutch_host::StoreError) -> ApiError {
    match error {
        hutch_host::StoreError::NotFound { .. } => {
            ApiError::new(StatusCode::NOT_FOUND, error.to_string())
        }
        other => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            hutch_host::error_chain(&other),
        ),
    }
}

/// `GET /file`: `{id: name}` for every stored file.
pub async fn list(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let files = blocking(move || state.store.list().map_err(store_error)).await?;
    let map: serde_json::Map<String, serde_json::Value> = files
        .into_iter()
        .map(|(id, name)| (id, serde_json::Value::String(name)))
        .collect();
    Ok(crate::json_answer(map))
}

/// `POST /file`: stores the first file (a part with a filename) of the form
/// field `file` under its base name; answers its id as a JSON string.
pub async fn upload(
    State(state): State<Arc<AppState>>,
    form: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let mut form = form.map_err(|e| {
        ApiError::new(
            e.status(),
            format!(
                "the upload must be a multipart/form-data form: {}",
                e.body_text()
            ),
        )
    })?;
    let bad_form = |e: axum::extract::multipart::MultipartError| {
        if let Some(stalled) = crate::find_stalled(&e) {
            return ApiError::new(StatusCode::REQUEST_TIMEOUT, stalled.to_string());
        }
        ApiError::new(
            e.status(),
            format!(
                "the upload is not a readable multipart form: {}",
                e.body_text()
            ),
        )
    };
    while let Some(field) = form.next_field().await.map_err(bad_form)? {
        // A part without a filename is a form value, not a file, as Go's
        // multipart reader takes it.
        let name = match (field.name(), field.file_name()) {
            (Some("file"), Some(name)) if !name.is_empty() => base_name(name).to_owned(),
            _ => continue,
        };
        let bytes = field.bytes().await.map_err(bad_form)?;
        let id = blocking(move || {
            state
                .store
                .add(&name, &mut bytes.as_ref())
                .map_err(store_error)
        })
        .await?;
        return Ok(crate::json_answer(id));
    }
    Err(ApiError::bad(
        "the form has no file: a field named file with a filename",
    ))
}

/// The last element of an uploaded file's name, as Go's multipart reader
/// keeps it: `dir/x.txt` is `x.txt`, `dir/` is `dir`, `/` stays `/`.
fn base_name(name: &str) -> &str {
    let trimmed = name.trim_end_matches('/');
    if trimmed.is_empty() {
        return "/";
    }
    trimmed.rsplit('/').next().unwrap_or(trimmed)
}

/// `GET /file/{id}`: the file, as an attachment under its name.
pub async fn download(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (name, content) = blocking(move || read(&state.store, &id)).await?;
    let disposition = format!(
        "attachment; filename=\"{}\"",
        name.replace(['"', '\\', '\r', '\n'], "_")
    );
    Ok((
        [
            (header::CONTENT_TYPE, content_type(&name).to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        content,
    )
        .into_response())
}

/// `DELETE /file/{id}`.
pub async fn remove(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    blocking(move || delete(&state.store, &id)).await?;
    Ok(StatusCode::OK.into_response())
}

/// A stored file's name and content, as `GET /file/{id}` and gRPC's
/// `FileGet` give them.
pub(crate) fn read(store: &hutch_host::FileStore, id: &str) -> Result<(String, Vec<u8>), ApiError> {
    let (name, mut file) = store.get(id).map_err(store_error)?;
    let mut content = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut content).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot read {id}: {e}"),
        )
    })?;
    Ok((name, content))
}

/// Deletes a stored file, as `DELETE /file/{id}` and gRPC's `FileDelete`
/// do; `404` when there is none.
pub(crate) fn delete(store: &hutch_host::FileStore, id: &str) -> Result<(), ApiError> {
    if store.remove(id).map_err(store_error)? {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no stored file has the id {id:?}"),
        ))
    }
}

/// A content type from the name's extension, for what browsers and
/// clients show.
fn content_type(name: &str) -> &'static str {
    match name
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .as_deref()
    {
        Some(
            "txt" | "in" | "out" | "ans" | "log" | "c" | "cc" | "cpp" | "h" | "hpp" | "py" | "rs"
            | "java" | "go" | "js",
        ) => "text/plain; charset=utf-8",
        Some("json") => "application/json",
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("zip") => "application/zip",
        Some("gz") => "application/gzip",
        Some("pdf") => "application/pdf",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_store_names_the_os_error_in_the_answer() {
        // ENOSPC, as a store on a full disk fails.
        let full = std::io::Error::from_raw_os_error(28);
        let error = store_error(hutch_host::StoreError::File {
            what: "write",
            name: "r1".into(),
            source: full,
        });
        assert_eq!(error.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            error
                .message
                .starts_with("cannot write the stored file \"r1\": "),
            "{}",
            error.message
        );
        assert!(
            error.message.contains("No space left on device"),
            "{}",
            error.message
        );
    }

    #[test]
    fn an_uploaded_name_keeps_only_its_last_element() {
        assert_eq!(base_name("x.txt"), "x.txt");
        assert_eq!(base_name("dir/x.txt"), "x.txt");
        assert_eq!(base_name("/a/b/x.txt"), "x.txt");
        assert_eq!(base_name("dir/"), "dir");
        assert_eq!(base_name("/"), "/");
        assert_eq!(base_name("a\\b"), "a\\b");
    }

    #[test]
    fn an_unknown_id_is_not_found() {
        let error = store_error(hutch_host::StoreError::NotFound { id: "X".into() });
        assert_eq!(error.status, StatusCode::NOT_FOUND);
        assert_eq!(error.message, "no stored file has the id \"X\"");
    }
}
