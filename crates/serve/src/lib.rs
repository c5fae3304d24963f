//! `lstm-lm serve`: trained runs behind an HTTP API in the OpenAI shapes (completions with
//! server-sent events, embeddings, models), plus `/v1/score`, `/health`, Prometheus
//! `/metrics` and a small page at `/`.
//!
//! Generation is continuously batched: one thread per model owns the model and runs one
//! recurrent step for every active stream at once ([`scheduler`]); streams join and leave
//! between steps. Scoring and embeddings run on tokio's blocking threads.
//!
//! Serve a run folder (here an untrained one, written in a few lines) and ask it for a
//! completion:
//!
//! ```
//! use std::io::{Read, Write};
//! use lstm_lm_model::burn::tensor::Device;
//! use lstm_lm_serve::{ModelSpec, ServeConfig, Stopped, load_models, serve};
//! # use lstm_lm_infer::{DataFiles, RUN_FORMAT, RUN_FORMAT_VERSION, RunConfig, RunDir, TrainSettings, data, model_bytes, write_atomic};
//! # let dir = std::env::temp_dir().join(format!("lstm-lm-serve-doc-{}", std::process::id()));
//! # let settings = TrainSettings::preset("seed").unwrap().set("model.hidden_size=16").unwrap();
//! # let tokenizer = data::fit_tokenizer(&settings.data, "the keeper lit the lamp\n").unwrap();
//! # let model_config = settings.model.model_config(tokenizer.vocab_size());
//! # let run = RunDir::new(&dir);
//! # run.create().unwrap();
//! # run.save_tokenizer(&tokenizer).unwrap();
//! # let model = model_config.init(&Device::flex()).unwrap();
//! # write_atomic(&run.model_path(), &model_bytes(&model).unwrap()).unwrap();
//! # run.save_config(&RunConfig {
//! #     format: RUN_FORMAT.into(), version: RUN_FORMAT_VERSION, settings, model: model_config,
//! #     ngram_width: None, data: DataFiles::default(), data_digests: Vec::new(), backend: "flex".into(),
//! # }).unwrap();
//!
//! let spec = ModelSpec::parse(&format!("tiny={}", dir.display())).unwrap();
//! let config = ServeConfig::new(vec![spec]);
//! let runs = load_models(&config, &Device::flex()).unwrap();
//! let runtime = tokio::runtime::Runtime::new().unwrap();
//! let listener = runtime
//!     .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
//!     .unwrap();
//! let addr = listener.local_addr().unwrap();
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = runtime.spawn(async move {
//!     serve(listener, &config, runs, async {
//!         let _ = stopped.await;
//!     })
//!     .await
//! });
//!
//! // Any HTTP client will do (the OpenAI ones too); here, one request by hand.
//! let body = r#"{"model": "tiny", "prompt": "the keeper", "max_tokens": 5}"#;
//! let mut conn = std::net::TcpStream::connect(addr).unwrap();
//! write!(
//!     conn,
//!     "POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
//!      Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
//!     body.len()
//! )
//! .unwrap();
//! let mut answer = String::new();
//! conn.read_to_string(&mut answer).unwrap();
//! assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
//! assert!(answer.contains(r#""object":"text_completion""#), "{answer}");
//!
//! stop.send(()).unwrap();
//! assert_eq!(runtime.block_on(server).unwrap().unwrap(), Stopped::Drained);
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```
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
