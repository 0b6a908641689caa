//! Why a v1 API request is refused: each variant is one HTTP status with a plain
//! text reason, as Mesos answers.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// A refused v1 request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum V1Error {
    /// Malformed JSON, a missing or invalid field, an unknown framework, a missing
    /// or wrong `Mesos-Stream-Id` (400).
    #[error("{0}")]
    BadRequest(String),
    /// The framework or executor is not subscribed (403).
    #[error("{0}")]
    Forbidden(String),
    /// What the call names does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// Not a POST (405).
    #[error("expecting a POST request, not {0}")]
    MethodNotAllowed(String),
    /// The `Accept` header names no encoding Keel writes (406).
    #[error("{0}")]
    NotAcceptable(String),
    /// It conflicts with the current state (409).
    #[error("{0}")]
    Conflict(String),
    /// The body is larger than the endpoint takes (413).
    #[error("the request body is larger than {limit} bytes")]
    TooLarge {
        /// The endpoint's limit.
        limit: usize,
    },
    /// The `Content-Type` is not JSON (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Not the leading master: go there (307, `Location`).
    #[error("not the leading master; the leader is at {0}")]
    Redirect(String),
    /// No leader is known, or the master cannot serve now (503).
    #[error("{0}")]
    Unavailable(String),
}

impl V1Error {
    /// A 400 with this reason.
    pub fn bad(reason: impl Into<String>) -> V1Error {
        V1Error::BadRequest(reason.into())
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            V1Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            V1Error::Forbidden(_) => StatusCode::FORBIDDEN,
            V1Error::NotFound(_) => StatusCode::NOT_FOUND,
            V1Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            V1Error::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            V1Error::Conflict(_) => StatusCode::CONFLICT,
            V1Error::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            V1Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            V1Error::Redirect(_) => StatusCode::TEMPORARY_REDIRECT,
            V1Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for V1Error {
    fn into_response(self) -> Response {
        let mut response = (self.status(), self.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        match &self {
            V1Error::MethodNotAllowed(_) => {
                headers.insert(header::ALLOW, HeaderValue::from_static("POST"));
            }
            V1Error::Redirect(location) => {
                if let Ok(value) = HeaderValue::from_str(location) {
                    headers.insert(header::LOCATION, value);
                }
            }
            _ => {}
        }
        response
    }
}
