//! Errors: [`ServeError`] for starting and running the server, [`ApiError`] for one request
//! (answered as JSON in the OpenAI error shape).
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use lstm_lm_infer::InferError;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A run folder could not be loaded.
    #[error("--model {name}={run}: {source}")]
    Load {
        /// The model's name.
        name: String,
        /// The run folder.
        run: String,
        /// What went wrong.
        source: InferError,
    },
    /// The flags do not make sense together.
    #[error("{0}")]
    Config(String),
    /// Listening or serving failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A request's failure: an HTTP status and the OpenAI error object
/// `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong and what to do, in one sentence.
    pub message: String,
    /// OpenAI's error type (`invalid_request_error`, `authentication_error`, ...).
    pub kind: &'static str,
    /// The request field at fault, if one is.
    pub param: Option<&'static str>,
    /// A short machine-readable code.
    pub code: &'static str,
}

impl ApiError {
    /// 400: the request asks for something invalid.
    pub fn invalid(param: Option<&'static str>, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param,
            code: "invalid_value",
        }
    }

    /// 400 with a specific code.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }

    /// 404: no model of that name.
    pub fn unknown_model(name: &str, known: &[String]) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!(
                "the model '{name}' does not exist: use one of {}",
                known.join(", ")
            ),
            kind: "invalid_request_error",
            param: Some("model"),
            code: "model_not_found",
        }
    }

    /// 401: a token is needed and was missing or wrong.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: message.into(),
            kind: "authentication_error",
            param: None,
            code: "invalid_api_key",
        }
    }

    /// 413: the body is larger than the limit.
    pub fn too_large(limit: usize) -> Self {
        ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!("the request body is larger than the limit of {limit} bytes"),
            kind: "invalid_request_error",
            param: None,
            code: "body_too_large",
        }
    }

    /// 408: the body did not arrive in time.
    pub fn body_timeout(limit: std::time::Duration) -> Self {
        ApiError {
            status: StatusCode::REQUEST_TIMEOUT,
            message: format!(
                "the request body did not arrive within {} s: send it whole, at once",
                limit.as_secs_f64()
            ),
            kind: "invalid_request_error",
            param: None,
            code: "request_timeout",
        }
    }

    /// 429: too many streams at once.
    pub fn busy(limit: usize) -> Self {
        ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: format!(
                "the server is generating its limit of {limit} streams at once: retry shortly"
            ),
            kind: "rate_limit_error",
            param: None,
            code: "too_many_streams",
        }
    }

    /// 503: the server is shutting down.
    pub fn shutting_down() -> Self {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "the server is shutting down".into(),
            kind: "server_error",
            param: None,
            code: "shutting_down",
        }
    }

    /// 500: the model failed.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: "internal_error",
        }
    }

    /// A model error: bad input is the client's (400), anything else the server's (500).
    pub fn from_train(e: InferError, param: &'static str) -> Self {
        match e {
            InferError::Input(m) => ApiError::invalid(Some(param), m),
            e @ InferError::Text(_) => ApiError::invalid(Some(param), e.to_string()),
            other => ApiError::internal(other.to_string()),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
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
        (self.status, axum::Json(self.body())).into_response()
    }
}
