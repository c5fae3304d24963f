//! `POST /v1/embeddings` in the OpenAI shape: one sentence vector per text (the recurrent
//! states pooled, as `lstm-lm embed` makes them), as floats or base64 little-endian float32.
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use lstm_lm_infer::{EmbedOptions, LayerChoice, Pooling};

use crate::api_types::EmbeddingRequest;
use crate::body::read_json;
use crate::error::ApiError;
use crate::score::check_inputs;
use crate::state::AppState;

/// The handler.
pub async fn embeddings(
    State(state): State<Arc<AppState>>,
    body: Body,
) -> Result<Response, ApiError> {
    let req: EmbeddingRequest = read_json(body, &state.limits).await?;
    let model = state.model(req.model.as_deref())?;
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                Some("encoding_format"),
                format!("encoding_format {other:?}: use float or base64"),
            ));
        }
    };
    let pooling: Pooling = req
        .pooling
        .as_deref()
        .unwrap_or("last")
        .parse()
        .map_err(|_| ApiError::invalid(Some("pooling"), "pooling: use last, mean or max"))?;
    let texts = req.input.into_vec();
    check_inputs(&texts, &model.run, &state.limits)?;
    let tokens: usize = texts
        .iter()
        .map(|t| model.run.text_ids(t).map(|i| i.len()).unwrap_or(0))
        .sum();
    let run = Arc::clone(&model.run);
    let opts = EmbedOptions {
        pooling,
        layers: LayerChoice::Top,
    };
    let vectors = tokio::task::spawn_blocking(move || run.embed_many(&texts, &opts))
        .await
        .map_err(|e| ApiError::internal(format!("embedding stopped: {e}")))?;
    let mut data = Vec::with_capacity(vectors.len());
    for (index, v) in vectors.into_iter().enumerate() {
        let v = v.map_err(|e| {
            let mut err = ApiError::from_train(e, "input");
            err.message = format!("text {index}: {}", err.message);
            err
        })?;
        let embedding = if base64 {
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            serde_json::json!(base64::engine::general_purpose::STANDARD.encode(bytes))
        } else {
            serde_json::json!(v)
        };
        data.push(serde_json::json!({
            "object": "embedding",
            "index": index,
            "embedding": embedding,
        }));
    }
    Ok(axum::Json(serde_json::json!({
        "object": "list",
        "model": model.name,
        "data": data,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
    .into_response())
}
