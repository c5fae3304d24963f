//! `lstm-lm serve`: trained runs behind an HTTP API in the OpenAI shapes (completions with
//! server-sent events, embeddings, models), plus `/v1/score`, `/health`, Prometheus
//! `/metrics` and a small page at `/`.
//!
//! Generation is continuously batched: one thread per model owns the model and runs one
//! recurrent step for every active stream at once ([`scheduler`]); streams join and leave
//! between steps. Scoring and embeddings run on tokio's blocking threads.
#![warn(missing_docs)]

pub mod admission;
pub mod api_types;
mod auth;
pub mod batch_step;
mod body;
mod completions;
pub mod config;
mod embeddings;
pub mod error;
pub mod events;
pub mod metrics;
pub mod scheduler;
mod score;
pub mod server;
pub mod state;

pub use config::{Limits, ModelSpec, ServeConfig};
pub use error::{ApiError, ServeError};
pub use server::{StopSignals, Stopped, load_models, router, serve};
