//! `POST /v1/score`: per-token log-probabilities, their total and the perplexity of one or
//! more texts, each from a fresh state (batched by length on a blocking thread).
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use crate::api_types::{ScoreRequest, ScoredToken, TextScoreBody};
use crate::body::read_json;
use crate::error::ApiError;
use crate::state::AppState;

/// Checks the count and length of `texts` against the limits.
pub fn check_inputs(
    texts: &[String],
    run: &lstm_lm_infer::LoadedRun,
    limits: &crate::Limits,
) -> Result<(), ApiError> {
    if texts.is_empty() || texts.len() > limits.max_inputs {
        return Err(ApiError::invalid(
            Some("input"),
            format!("give between 1 and {} texts", limits.max_inputs),
        ));
    }
    for (i, t) in texts.iter().enumerate() {
        let n = run
            .text_ids(t)
            .map_err(|e| ApiError::from_train(e, "input"))?
            .len();
        if n > limits.max_prompt_tokens {
            return Err(ApiError::invalid(
                Some("input"),
                format!(
                    "text {i} has {n} tokens, more than this server's limit of {}",
                    limits.max_prompt_tokens
                ),
            )
            .with_code("context_length_exceeded"));
        }
    }
    Ok(())
}

/// The handler.
pub async fn score(State(state): State<Arc<AppState>>, body: Body) -> Result<Response, ApiError> {
    let req: ScoreRequest = read_json(body, &state.limits).await?;
    let model = state.model(req.model.as_deref())?;
    let texts = req.input.into_vec();
    check_inputs(&texts, &model.run, &state.limits)?;
    let run = Arc::clone(&model.run);
    let scores = tokio::task::spawn_blocking(move || run.score_many(&texts))
        .await
        .map_err(|e| ApiError::internal(format!("scoring stopped: {e}")))?;
    let mut data = Vec::with_capacity(scores.len());
    for (index, s) in scores.into_iter().enumerate() {
        let s = s.map_err(|e| {
            let mut err = ApiError::from_train(e, "input");
            err.message = format!("text {index}: {}", err.message);
            err
        })?;
        data.push(TextScoreBody {
            index,
            tokens: s
                .tokens
                .into_iter()
                .map(|(token, logprob)| ScoredToken { token, logprob })
                .collect(),
            total_logprob: s.total_logprob,
            perplexity: s.ppl,
        });
    }
    Ok(axum::Json(serde_json::json!({
        "object": "list",
        "model": model.name,
        "data": data,
    }))
    .into_response())
}
