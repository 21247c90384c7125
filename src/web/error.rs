//! HTTP errors: one enum, rendered as `{"error": {"code", "message"}}` with the right status.
//! Internal causes are logged with their whole chain and never sent to the client.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::model::ParseError;
use crate::store::StoreError;

/// An error answered over HTTP.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or a value is invalid.
    #[error("{0}")]
    BadRequest(String),
    /// No or unknown credentials.
    #[error("missing or invalid credentials")]
    Unauthorized,
    /// Valid credentials, not allowed to do this.
    #[error("{0}")]
    Forbidden(String),
    /// The thing does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// The body is not of a type this route takes.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The body is well-formed but cannot be used.
    #[error("{0}")]
    Unprocessable(String),
    /// The body is larger than allowed.
    #[error("request body too large (limit {0} bytes)")]
    PayloadTooLarge(usize),
    /// Too many attempts; retry after this many seconds.
    #[error("too many requests, retry in {0} s")]
    TooManyRequests(u64),
    /// A dependency is down; the client should retry.
    #[error("temporarily unavailable, retry later")]
    Unavailable(#[source] anyhow::Error),
    /// A bug or an unexpected failure.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Unprocessable(_) => "unprocessable",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::TooManyRequests(_) => "too_many_requests",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ApiError::Unavailable(e) => {
                tracing::warn!(error = %crate::telemetry::error_chain(e.as_ref()), "answering 503")
            }
            ApiError::Internal(e) => {
                tracing::error!(error = %crate::telemetry::error_chain(e.as_ref()), "answering 500")
            }
            _ => {}
        }
        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, ApiError::Unauthorized) {
            response.insert_header(("WWW-Authenticate", "Bearer"));
        }
        if matches!(self, ApiError::Unavailable(_)) {
            response.insert_header(("Retry-After", "5"));
        }
        if let ApiError::TooManyRequests(secs) = self {
            response.insert_header(("Retry-After", secs.max(&1).to_string()));
        }
        response.json(serde_json::json!({
            "error": { "code": self.code(), "message": self.to_string() }
        }))
    }
}

impl From<ParseError> for ApiError {
    fn from(e: ParseError) -> Self {
        ApiError::BadRequest(e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::NotFound(what),
            StoreError::Conflict(why) => ApiError::Conflict(why),
            StoreError::IllegalTransition(t) => ApiError::Conflict(t.to_string()),
            StoreError::NotYours => ApiError::Forbidden(e.to_string()),
            StoreError::StaleRouting => ApiError::Conflict(e.to_string()),
            StoreError::Unavailable(_) => ApiError::Unavailable(e.into()),
            other => ApiError::Internal(other.into()),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::Internal(e)
    }
}

impl From<crate::handoff::router::RouterError> for ApiError {
    fn from(e: crate::handoff::router::RouterError) -> Self {
        StoreError::from(e).into()
    }
}
