//! `POST /v1/completions`: prompts checked and turned into generation streams for the model's
//! scheduler; the answer is collected into one JSON body, or streamed as server-sent events.
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use lstm_lm_infer::SamplingConfig;
use lstm_lm_infer::decoding::MAX_STOP_STRINGS;

use crate::admission::admit;
use crate::api_types::{CompletionChoice, CompletionRequest, CompletionResponse, Logprobs, Usage};
use crate::body::read_json;
use crate::error::ApiError;
use crate::events::{EventReceiver, event_channel};
use crate::scheduler::{GenerationJob, MAX_TOP_LOGPROBS, StreamEvent, TokenDetail};
use crate::state::{AppState, ServedModel, unix_now};

/// `max_tokens` when a request gives none (OpenAI's default).
const DEFAULT_MAX_TOKENS: usize = 16;

/// A checked request: what each stream needs.
struct Plan {
    /// Per prompt: the ids fed (start context + prompt) and the prompt's own ids.
    prompts: Vec<(Vec<u32>, Vec<u32>)>,
    n: usize,
    max_tokens: usize,
    sampling: SamplingConfig,
    seed: u64,
    stop: Vec<String>,
}

fn check(
    req: &CompletionRequest,
    model: &ServedModel,
    limits: &crate::Limits,
) -> Result<Plan, ApiError> {
    if req.echo {
        return Err(ApiError::invalid(
            Some("echo"),
            "echo is not supported: leave it false",
        ));
    }
    if req.best_of.is_some_and(|b| b > 1) {
        return Err(ApiError::invalid(
            Some("best_of"),
            "best_of is not supported: use n",
        ));
    }
    if req.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::invalid(
            Some("suffix"),
            "suffix is not supported by a left-to-right model",
        ));
    }
    let max_tokens = req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
    if max_tokens == 0 || max_tokens > limits.max_tokens {
        return Err(ApiError::invalid(
            Some("max_tokens"),
            format!(
                "max_tokens {max_tokens} must be between 1 and this server's limit of {}",
                limits.max_tokens
            ),
        ));
    }
    let n = req.n.unwrap_or(1);
    if n == 0 || n > limits.max_n {
        return Err(ApiError::invalid(
            Some("n"),
            format!(
                "n {n} must be between 1 and this server's limit of {}",
                limits.max_n
            ),
        ));
    }
    if req.logprobs.is_some_and(|l| l > MAX_TOP_LOGPROBS) {
        return Err(ApiError::invalid(
            Some("logprobs"),
            format!("logprobs must be between 0 and {MAX_TOP_LOGPROBS}"),
        ));
    }
    let temperature = req.temperature.unwrap_or(1.0);
    if !(temperature >= 0.0 && temperature.is_finite()) {
        return Err(ApiError::invalid(
            Some("temperature"),
            format!(
                "temperature {temperature} must be a number ≥ 0 (0 picks the most likely token)"
            ),
        ));
    }
    if let Some(p) = req.top_p
        && !(p > 0.0 && p <= 1.0)
    {
        return Err(ApiError::invalid(
            Some("top_p"),
            format!("top_p {p} must be in (0, 1]"),
        ));
    }
    if req.top_k == Some(0) {
        return Err(ApiError::invalid(Some("top_k"), "top_k must be at least 1"));
    }
    let stop = req.stop.clone().map(|s| s.into_vec()).unwrap_or_default();
    if stop.len() > MAX_STOP_STRINGS || stop.iter().any(String::is_empty) {
        return Err(ApiError::invalid(
            Some("stop"),
            format!("stop takes up to {MAX_STOP_STRINGS} non-empty strings"),
        ));
    }
    if req.stop_at_eos && model.run.tokenizer.eos_id().is_none() {
        return Err(ApiError::invalid(
            Some("stop_at_eos"),
            "this model's tokenizer has no end-of-text token: use stop strings instead",
        ));
    }
    let texts = req.prompt.clone().into_vec();
    if texts.is_empty() || texts.len() > limits.max_inputs {
        return Err(ApiError::invalid(
            Some("prompt"),
            format!("give between 1 and {} prompts", limits.max_inputs),
        ));
    }
    let context = model.run.start_context();
    let mut prompts = Vec::with_capacity(texts.len());
    for text in &texts {
        let ids = model
            .run
            .prompt_ids(text)
            .map_err(|e| ApiError::from_train(e, "prompt"))?;
        if ids.len() > limits.max_prompt_tokens {
            return Err(ApiError::invalid(
                Some("prompt"),
                format!(
                    "the prompt has {} tokens, more than this server's limit of {}",
                    ids.len(),
                    limits.max_prompt_tokens
                ),
            )
            .with_code("context_length_exceeded"));
        }
        let feed: Vec<u32> = context.iter().chain(&ids).copied().collect();
        if feed.is_empty() {
            return Err(ApiError::invalid(
                Some("prompt"),
                "this model continues a prompt (its recipe has no start-of-text token): give at least one known word",
            ));
        }
        prompts.push((feed, ids));
    }
    let sampling = SamplingConfig {
        temperature: if temperature > 0.0 { temperature } else { 1.0 },
        top_k: req.top_k,
        top_p: req.top_p,
        greedy: temperature == 0.0,
    };
    Ok(Plan {
        prompts,
        n,
        max_tokens,
        sampling,
        seed: req.seed.unwrap_or_else(rand::random),
        stop,
    })
}

/// The handler.
pub async fn completions(
    State(state): State<Arc<AppState>>,
    body: Body,
) -> Result<Response, ApiError> {
    let req: CompletionRequest = read_json(body, &state.limits).await?;
    let model = state.model(req.model.as_deref())?;
    let plan = check(&req, model, &state.limits)?;
    let total = plan.prompts.len() * plan.n;
    let mut slots = admit(&state.metrics, total, state.limits.max_streams)?;
    let (tx, rx) = event_channel();
    let prompt_tokens: usize = plan.prompts.iter().map(|(_, p)| p.len() * plan.n).sum();
    for (p, (feed, prompt)) in plan.prompts.iter().enumerate() {
        for c in 0..plan.n {
            let job = GenerationJob {
                index: p * plan.n + c,
                feed: feed.clone(),
                prompt: prompt.clone(),
                max_tokens: plan.max_tokens,
                sampling: plan.sampling.clone(),
                seed: plan.seed.wrapping_add(c as u64),
                stop: plan.stop.clone(),
                stop_at_eos: req.stop_at_eos,
                logprobs: req.logprobs,
                events: tx.clone(),
                slot: slots.pop().expect("one slot per stream"),
                admitted: Instant::now(),
            };
            if !model.scheduler.submit(job) {
                return Err(ApiError::shutting_down());
            }
        }
    }
    drop(tx);
    let head = Head {
        id: format!("cmpl-{:016x}", rand::random::<u64>()),
        created: unix_now(),
        model: model.name.clone(),
    };
    if req.stream {
        let stream = SseStream {
            rx,
            head,
            remaining: total,
            ended: false,
        };
        return Ok((
            [
                (header::CONTENT_TYPE, "text/event-stream"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            Body::from_stream(stream),
        )
            .into_response());
    }
    collect(rx, head, total, prompt_tokens, req.logprobs.is_some()).await
}

/// What every chunk and the response repeat.
struct Head {
    id: String,
    created: u64,
    model: String,
}

impl Head {
    fn response(&self, choices: Vec<CompletionChoice>, usage: Option<Usage>) -> CompletionResponse {
        CompletionResponse {
            id: self.id.clone(),
            object: "text_completion",
            created: self.created,
            model: self.model.clone(),
            choices,
            usage,
        }
    }
}

/// Adds a token's details to a `logprobs` object; `offset` is where its text starts.
fn push_detail(lp: &mut Logprobs, d: &TokenDetail, offset: usize) {
    lp.tokens.push(d.token.clone());
    lp.token_logprobs.push(d.logprob);
    lp.top_logprobs.push(
        d.top
            .iter()
            .map(|(t, v)| (t.clone(), serde_json::json!(v)))
            .collect(),
    );
    lp.text_offset.push(offset);
}

/// Waits for every stream and answers with one body.
async fn collect(
    mut rx: EventReceiver,
    head: Head,
    total: usize,
    prompt_tokens: usize,
    logprobs: bool,
) -> Result<Response, ApiError> {
    let mut choices: Vec<CompletionChoice> = (0..total)
        .map(|index| CompletionChoice {
            text: String::new(),
            index,
            logprobs: logprobs.then(Logprobs::default),
            finish_reason: None,
        })
        .collect();
    let mut completion_tokens = 0;
    let mut done = 0;
    while done < total {
        match rx.recv().await {
            Some(StreamEvent::Piece {
                index,
                text,
                detail,
            }) => {
                let c = &mut choices[index];
                if let (Some(lp), Some(d)) = (&mut c.logprobs, &detail) {
                    push_detail(lp, d, c.text.chars().count());
                }
                c.text.push_str(&text);
            }
            Some(StreamEvent::Done {
                index,
                finish_reason,
                tokens,
            }) => {
                choices[index].finish_reason = Some(finish_reason);
                completion_tokens += tokens;
                done += 1;
            }
            Some(StreamEvent::Failed { message, .. }) => return Err(ApiError::internal(message)),
            None => return Err(ApiError::shutting_down()),
        }
    }
    let usage = Usage {
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens + completion_tokens,
    };
    Ok(axum::Json(head.response(choices, Some(usage))).into_response())
}

/// The events of a streamed completion as server-sent events, ending with `data: [DONE]`.
/// Dropped when the client goes away, which closes the channel and so ends the streams.
struct SseStream {
    rx: EventReceiver,
    head: Head,
    remaining: usize,
    ended: bool,
}

fn sse(value: &impl serde::Serialize) -> Bytes {
    let json = serde_json::to_string(value).unwrap_or_else(|_| "{}".into());
    Bytes::from(format!("data: {json}\n\n"))
}

impl futures_core::Stream for SseStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if self.remaining == 0 {
            self.ended = true;
            return Poll::Ready(Some(Ok(Bytes::from_static(b"data: [DONE]\n\n"))));
        }
        let event = match self.rx.poll_recv(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(e) => e,
        };
        let chunk = match event {
            Some(StreamEvent::Piece {
                index,
                text,
                detail,
            }) => {
                let logprobs = detail.map(|d| {
                    let mut lp = Logprobs::default();
                    push_detail(&mut lp, &d, 0);
                    lp
                });
                let choice = CompletionChoice {
                    text,
                    index,
                    logprobs,
                    finish_reason: None,
                };
                sse(&self.head.response(vec![choice], None))
            }
            Some(StreamEvent::Done {
                index,
                finish_reason,
                ..
            }) => {
                self.remaining -= 1;
                let choice = CompletionChoice {
                    text: String::new(),
                    index,
                    logprobs: None,
                    finish_reason: Some(finish_reason),
                };
                sse(&self.head.response(vec![choice], None))
            }
            Some(StreamEvent::Failed { message, .. }) => {
                self.remaining = 0;
                sse(&ApiError::internal(message).body())
            }
            None => {
                self.remaining = 0;
                sse(&ApiError::shutting_down().body())
            }
        };
        Poll::Ready(Some(Ok(chunk)))
    }
}
