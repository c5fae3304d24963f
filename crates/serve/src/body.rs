//! JSON request bodies read under the size and time limits, every failure an OpenAI-shaped
//! error (axum's own extractors answer in plain text).
use axum::body::Body;
use serde::de::DeserializeOwned;

use crate::config::Limits;
use crate::error::ApiError;

/// Reads `body` (at most `limits.max_body_bytes`: 413 above; within `limits.request_timeout`: 408
/// after) and parses it as `T` (400 naming the problem otherwise).
pub async fn read_json<T: DeserializeOwned>(body: Body, limits: &Limits) -> Result<T, ApiError> {
    let limit = limits.max_body_bytes;
    let bytes = tokio::time::timeout(limits.request_timeout, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| ApiError::body_timeout(limits.request_timeout))?
        .map_err(|e| {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                ApiError::too_large(limit)
            } else {
                ApiError::invalid(None, format!("the request body could not be read: {e}"))
                    .with_code("unreadable_body")
            }
        })?;
    if bytes.is_empty() {
        return Err(ApiError::invalid(
            None,
            "the request body is empty: send a JSON object",
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::invalid(
            None,
            format!("the request body is not valid JSON for this endpoint: {e}"),
        )
        .with_code("invalid_json")
    })
}
