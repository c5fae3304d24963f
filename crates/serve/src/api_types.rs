//! Request and response bodies in the OpenAI shapes (completions, embeddings, models, errors),
//! plus `/v1/score`'s own. Unknown request fields are ignored, as OpenAI-compatible servers do,
//! so that clients sending newer fields still work.
use serde::{Deserialize, Serialize};

/// A string or a list of strings (`prompt`, `input`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One text.
    One(String),
    /// Several texts.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The texts, in order.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// `POST /v1/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    /// The model's name (optional when the server has one model).
    #[serde(default)]
    pub model: Option<String>,
    /// The prompt(s) to continue.
    pub prompt: OneOrMany,
    /// Tokens to generate at most per choice. Default 16 (OpenAI's).
    #[serde(default)]
    pub max_tokens: Option<usize>,
    /// Sampling temperature; 0 picks the most likely token. Default 1.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Nucleus sampling mass in (0, 1]. Default 1.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Keep only the k most likely tokens (an extension, as vLLM has it). Default none.
    #[serde(default)]
    pub top_k: Option<usize>,
    /// Choices per prompt. Default 1.
    #[serde(default)]
    pub n: Option<usize>,
    /// Seed of the sampler (choice `i` uses `seed + i`). Default: a random one.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Stop strings (not included in the text).
    #[serde(default)]
    pub stop: Option<OneOrMany>,
    /// Stream the tokens as server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// Return the log-probability of each token and of the `logprobs` most likely ones (0-5).
    #[serde(default)]
    pub logprobs: Option<usize>,
    /// Stop at the tokenizer's end-of-text token (an extension). Default false.
    #[serde(default)]
    pub stop_at_eos: bool,
    /// Not supported (must be false).
    #[serde(default)]
    pub echo: bool,
    /// Not supported (must be absent or 1).
    #[serde(default)]
    pub best_of: Option<usize>,
    /// Not supported (must be absent or empty).
    #[serde(default)]
    pub suffix: Option<String>,
}

/// OpenAI's `logprobs` object of a completion choice.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Logprobs {
    /// Each token as its vocabulary entry.
    pub tokens: Vec<String>,
    /// Each token's natural-log probability.
    pub token_logprobs: Vec<f64>,
    /// The most likely tokens at each position, with their log-probabilities.
    pub top_logprobs: Vec<serde_json::Map<String, serde_json::Value>>,
    /// Where each token's text starts in the choice's text, in characters.
    pub text_offset: Vec<usize>,
}

/// One choice of a completion (or of a streamed chunk).
#[derive(Debug, Clone, Serialize)]
pub struct CompletionChoice {
    /// The text (the new piece, in a chunk).
    pub text: String,
    /// The choice's index: prompt × n + choice.
    pub index: usize,
    /// Token log-probabilities, when asked for.
    pub logprobs: Option<Logprobs>,
    /// `length` or `stop`; null in chunks before the last.
    pub finish_reason: Option<&'static str>,
}

/// Token counts of a completion.
#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct Usage {
    /// Tokens in the prompts (each once per choice).
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
    /// Their sum.
    pub total_tokens: usize,
}

/// A completion response, or one streamed chunk of one.
#[derive(Debug, Clone, Serialize)]
pub struct CompletionResponse {
    /// `cmpl-…`.
    pub id: String,
    /// `text_completion`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// The model's name.
    pub model: String,
    /// The choices.
    pub choices: Vec<CompletionChoice>,
    /// Token counts (absent in chunks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// `POST /v1/embeddings`.
#[derive(Debug, Clone, Deserialize)]
pub struct EmbeddingRequest {
    /// The model's name (optional when the server has one model).
    #[serde(default)]
    pub model: Option<String>,
    /// The text(s) to embed.
    pub input: OneOrMany,
    /// `float` (default) or `base64` (little-endian float32, as the OpenAI client asks).
    #[serde(default)]
    pub encoding_format: Option<String>,
    /// Pooling over positions: `last` (default), `mean` or `max` (an extension).
    #[serde(default)]
    pub pooling: Option<String>,
}

/// `POST /v1/score`.
#[derive(Debug, Clone, Deserialize)]
pub struct ScoreRequest {
    /// The model's name (optional when the server has one model).
    #[serde(default)]
    pub model: Option<String>,
    /// The text(s) to score.
    pub input: OneOrMany,
}

/// One scored token.
#[derive(Debug, Clone, Serialize)]
pub struct ScoredToken {
    /// The token's vocabulary entry.
    pub token: String,
    /// Its natural-log probability given the text before it.
    pub logprob: f64,
}

/// The score of one text.
#[derive(Debug, Clone, Serialize)]
pub struct TextScoreBody {
    /// The text's index in the request.
    pub index: usize,
    /// Every scored token.
    pub tokens: Vec<ScoredToken>,
    /// Sum of the log-probabilities.
    pub total_logprob: f64,
    /// exp(−mean log-probability).
    pub perplexity: f64,
}
