//! Errors of `labflow serve`: [`ServeError`] for starting the server, [`ApiError`] for one
//! request, answered in OpenAI's `{"error": {"message", "type", "param", "code"}}` shape so
//! OpenAI clients raise their usual exceptions (`BadRequestError`, `AuthenticationError`, …).

use crate::teacher::TeacherError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address could not be resolved or bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// `host:port` as given.
        address: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("the server stopped: {0}")]
    Run(std::io::Error),
    /// The access log could not be opened.
    #[error("cannot open the access log {path}: {source}")]
    AccessLog {
        /// The file as given.
        path: String,
        /// The operating system's error.
        source: std::io::Error,
    },
}

/// One failed API request: an HTTP status and the fields of OpenAI's error object.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Human-readable message.
    pub message: String,
    /// OpenAI's `type`: `invalid_request_error`, `authentication_error`, `server_error`, …
    pub kind: &'static str,
    /// The request field at fault (`messages[0].content`, `temperature`), when there is one.
    pub param: Option<String>,
    /// A machine-readable code (`invalid_api_key`, `unsupported`), when there is one.
    pub code: Option<&'static str>,
}

impl ApiError {
    /// A 400 about `param`. The message is prefixed with the field's name unless it names it.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        let (param, message) = (param.into(), message.into());
        let message = if message.contains(&param) { message } else { format!("{param}: {message}") };
        ApiError { status: StatusCode::BAD_REQUEST, message, kind: "invalid_request_error", param: Some(param), code: None }
    }

    /// A 400 for a well-formed request this server does not support; `param` names the field.
    pub fn unsupported(param: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError { code: Some("unsupported"), ..ApiError::invalid(param, message) }
    }

    /// A 401 for a missing or wrong API key. The key itself never appears in the message.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: message.into(),
            kind: "authentication_error",
            param: None,
            code: Some("invalid_api_key"),
        }
    }

    /// A 404 for a path that is not an endpoint.
    pub fn not_found(path: &str) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("no endpoint at `{path}`; this server offers GET /v1/models, POST /v1/chat/completions, POST /v1/completions"),
            kind: "invalid_request_error",
            param: None,
            code: Some("unknown_url"),
        }
    }

    /// The teacher failed: 400 when the request was at fault, 502 when an upstream server
    /// failed or answered nonsense, 500 when the embedded model failed.
    pub fn teacher(error: &TeacherError) -> Self {
        let (status, kind, code) = match error {
            TeacherError::Spec { .. } => (StatusCode::BAD_REQUEST, "invalid_request_error", None),
            TeacherError::Unsupported(_) => (StatusCode::BAD_REQUEST, "invalid_request_error", Some("unsupported")),
            TeacherError::External { .. } | TeacherError::Data { .. } => (StatusCode::BAD_GATEWAY, "upstream_error", None),
            TeacherError::Backend { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "server_error", None),
        };
        ApiError { status, message: format!("teacher failed: {error}"), kind, param: None, code }
    }
}

impl ApiError {
    /// OpenAI's error object: `{"error": {"message", "type", "param", "code"}}`.
    pub fn body(&self) -> serde_json::Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}
