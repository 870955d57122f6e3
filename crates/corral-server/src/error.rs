//! JSON errors: every failure the API answers is `{"error": {"code", "message"}}`, and
//! extractor rejections (bad JSON, bad query strings, bad path segments) are 400s in
//! that shape instead of axum's plain-text defaults.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use corral_sandbox::SandboxError;
use corral_types::ErrorBody;
use futures_util::FutureExt;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// An error answered to an API caller.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_argument", message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub(crate) fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "permission_denied", message)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        let message = message.into();
        eprintln!("corral: internal error: {message}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "corral failed internally; the daemon's log has the cause",
        )
    }
}

impl From<SandboxError> for ApiError {
    fn from(e: SandboxError) -> Self {
        if let SandboxError::Internal(m) = &e {
            return ApiError::internal(m.clone());
        }
        let status =
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody::new(self.code, self.message);
        let mut resp = axum::Json(body).into_response();
        *resp.status_mut() = self.status;
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// Middleware: a handler that panics (a bug) answers a JSON 500 `internal` instead of
/// a dropped connection. The panic itself is reported once, on stderr, by the binary's
/// panic hook; the daemon and every other request go on (the release build unwinds,
/// see the root Cargo.toml).
pub(crate) async fn catch_panics(req: Request, next: Next) -> Response {
    // AssertUnwindSafe: the request's own future is dropped with the panic; shared
    // state it touched is behind locks that recover from poisoning.
    match std::panic::AssertUnwindSafe(next.run(req))
        .catch_unwind()
        .await
    {
        Ok(resp) => resp,
        Err(_) => ApiError::internal("a request handler panicked (reported above)").into_response(),
    }
}

/// A JSON body. Rejections become JSON errors: 413 for a body over the limit, 400 for
/// everything else (malformed JSON, unknown fields, wrong types, missing content type).
#[derive(Debug)]
pub(crate) struct Json<T>(pub(crate) T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

fn json_rejection(rejection: &JsonRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is over the 1 MiB limit of JSON requests",
        );
    }
    let message = match rejection {
        JsonRejection::MissingJsonContentType(_) => {
            "the request body must be JSON: send Content-Type: application/json".to_string()
        }
        other => format!("invalid request body: {}", other.body_text()),
    };
    ApiError::bad_request(message)
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// A query string; a rejection is a 400 JSON error.
#[derive(Debug)]
pub(crate) struct Query<T>(pub(crate) T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(rejection) => Err(query_rejection(&rejection)),
        }
    }
}

fn query_rejection(rejection: &QueryRejection) -> ApiError {
    ApiError::bad_request(format!("invalid query string: {}", rejection.body_text()))
}

/// Path parameters; a rejection is a 400 JSON error.
#[derive(Debug)]
pub(crate) struct Path<T>(pub(crate) T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(rejection) => Err(path_rejection(&rejection)),
        }
    }
}

fn path_rejection(rejection: &PathRejection) -> ApiError {
    ApiError::bad_request(format!("invalid path: {}", rejection.body_text()))
}

/// Unknown routes.
pub(crate) async fn not_found() -> ApiError {
    ApiError::not_found("no such route; the API is described at GET /v1/openapi.json")
}

/// A known route with another method.
pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method; see GET /v1/openapi.json",
    )
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    use super::*;

    async fn call(app: &Router, path: &str) -> (StatusCode, serde_json::Value) {
        let resp = app
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap_or_default())
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_a_json_500_and_the_next_request_is_served() {
        async fn boom() -> &'static str {
            panic!("a bug in a handler")
        }
        let app = Router::new()
            .route("/boom", get(boom))
            .route(
                "/fine",
                get(|| async { axum::Json(serde_json::json!({"ok": true})) }),
            )
            .layer(axum::middleware::from_fn(catch_panics));
        let (status, body) = call(&app, "/boom").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["error"]["code"], "internal");
        // The panic's own text stays in the daemon's log, not in the answer.
        assert!(!body.to_string().contains("a bug in a handler"), "{body}");
        assert_eq!(
            call(&app, "/fine").await,
            (StatusCode::OK, serde_json::json!({"ok": true}))
        );
    }
}
