//! Replies: JSON bodies, and errors as `{"error":{"code","message"}}` with the micro
//! protocol's `Nats-Service-Error` and `Nats-Service-Error-Code` headers.

use async_nats::HeaderMap;
use async_nats::service::Request;
use bytes::Bytes;

/// A request that cannot be answered, in the contract's closed set of codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The request is malformed; the message says what to fix. (400)
    #[error("{0}")]
    BadRequest(String),
    /// What was asked for does not exist. (404)
    #[error("{0}")]
    NotFound(String),
    /// The service failed; the message says what failed, not how. (500)
    #[error("{0}")]
    Internal(String),
}

impl QueryError {
    /// The reply's `code` field.
    pub fn code(&self) -> &'static str {
        match self {
            QueryError::BadRequest(_) => "bad_request",
            QueryError::NotFound(_) => "not_found",
            QueryError::Internal(_) => "internal",
        }
    }

    /// The `Nats-Service-Error-Code` header.
    pub fn status(&self) -> u16 {
        match self {
            QueryError::BadRequest(_) => 400,
            QueryError::NotFound(_) => 404,
            QueryError::Internal(_) => 500,
        }
    }
}

impl From<butler_storage::StorageError> for QueryError {
    fn from(err: butler_storage::StorageError) -> Self {
        QueryError::Internal(format!("database error: {err}"))
    }
}

/// Parses a JSON request body into `T`, refusing malformed JSON and unknown fields
/// with a message that names the problem.
///
/// # Errors
/// [`QueryError::BadRequest`].
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, QueryError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|e| QueryError::BadRequest(format!("invalid request: {e}")))
}

/// Sends `result`, a JSON body or an error, as the reply to `request`.
pub async fn send(
    request: &Request,
    result: Result<Vec<u8>, QueryError>,
) -> Result<(), async_nats::PublishError> {
    match result {
        Ok(body) => request.respond(Ok(Bytes::from(body))).await,
        Err(err) => send_error(request, &err).await,
    }
}

/// Sends an error reply: a JSON body with the code and message, and the micro headers.
pub async fn send_error(
    request: &Request,
    err: &QueryError,
) -> Result<(), async_nats::PublishError> {
    let body = serde_json::json!({ "error": { "code": err.code(), "message": err.to_string() } });
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Service-Error", err.to_string().as_str());
    headers.insert("Nats-Service-Error-Code", err.status().to_string().as_str());
    request
        .respond_with_headers(Ok(Bytes::from(body.to_string())), headers)
        .await
}
