//! The router, and a server's life: load the models, start a scheduler per model, answer
//! until the shutdown signal, then drain the requests in flight and stop.
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use burn::tensor::Device;
use lstm_lm_infer::LoadedRun;

use crate::config::ServeConfig;
use crate::error::{ApiError, ServeError};
use crate::metrics::Metrics;
use crate::scheduler::Scheduler;
use crate::state::{AppState, ServedModel, unix_now};
use crate::{completions, embeddings, score};

/// The page, served at `/`.
const PAGE: &str = include_str!("page/index.html");

/// Routes counted by name in the metrics (anything else is `other`).
const ROUTES: [&str; 8] = [
    "/",
    "/health",
    "/metrics",
    "/v1/models",
    "/v1/completions",
    "/v1/score",
    "/v1/embeddings",
    "/favicon.ico",
];

/// Loads every model of `config` onto `device`, naming the model in an error.
pub fn load_models(
    config: &ServeConfig,
    device: &Device,
) -> Result<Vec<(String, LoadedRun)>, ServeError> {
    if config.models.is_empty() {
        return Err(ServeError::Config(
            "give at least one --model RUN (or NAME=RUN)".into(),
        ));
    }
    let mut out: Vec<(String, LoadedRun)> = Vec::new();
    for spec in &config.models {
        if out.iter().any(|(n, _)| *n == spec.name) {
            return Err(ServeError::Config(format!(
                "--model: the name '{}' is given twice; name them NAME=RUN",
                spec.name
            )));
        }
        let run =
            LoadedRun::load(&spec.run, device.clone()).map_err(|source| ServeError::Load {
                name: spec.name.clone(),
                run: spec.run.display().to_string(),
                source,
            })?;
        out.push((spec.name.clone(), run));
    }
    Ok(out)
}

/// The router over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/health", get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }))
        .route("/metrics", get(metrics))
        .route("/v1/models", get(models))
        .route("/v1/completions", post(completions::completions))
        .route("/v1/score", post(score::score))
        .route("/v1/embeddings", post(embeddings::embeddings))
        .fallback(|| async {
            ApiError {
                status: axum::http::StatusCode::NOT_FOUND,
                message: "no such route: see /v1/models, /v1/completions, /v1/score, /v1/embeddings, /health, /metrics".into(),
                kind: "invalid_request_error",
                param: None,
                code: "not_found",
            }
        })
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            crate::auth::require_token,
        ))
        .layer(middleware::from_fn_with_state(Arc::clone(&state), count))
        .with_state(state)
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

async fn models(State(state): State<Arc<AppState>>) -> Response {
    let data: Vec<serde_json::Value> = state
        .models
        .iter()
        .map(|m| {
            serde_json::json!({
                "id": m.name,
                "object": "model",
                "created": m.created,
                "owned_by": "lstm-lm",
                "vocab_size": m.run.model.vocab_size(),
                "tokenizer": m.run.tokenizer_kind().name(),
            })
        })
        .collect();
    axum::Json(serde_json::json!({"object": "list", "data": data})).into_response()
}

/// Counts every request by route and status, with its time to the response head.
async fn count(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let route = ROUTES
        .iter()
        .find(|r| **r == path)
        .copied()
        .unwrap_or("other");
    let start = Instant::now();
    let response = next.run(req).await;
    state
        .metrics
        .request(route, response.status().as_u16(), start.elapsed());
    response
}

/// A running server's schedulers, stopped and joined by [`Schedulers::join`].
pub struct Schedulers {
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl Schedulers {
    /// Waits for every scheduler thread (they end once the state holding their handles is
    /// dropped).
    pub fn join(self) {
        for h in self.handles {
            let _ = h.join();
        }
    }
}

/// Starts a scheduler per model and builds the shared state.
pub fn start(
    config: &ServeConfig,
    runs: Vec<(String, LoadedRun)>,
) -> Result<(Arc<AppState>, Schedulers), ServeError> {
    let metrics = Arc::new(Metrics::default());
    let mut models = Vec::new();
    let mut handles = Vec::new();
    for (name, run) in runs {
        let run = Arc::new(run);
        let (scheduler, handle) =
            Scheduler::start(Arc::clone(&run), config.max_batch, Arc::clone(&metrics)).map_err(
                |source| ServeError::Io {
                    context: "cannot start a scheduler thread".into(),
                    source,
                },
            )?;
        handles.push(handle);
        models.push(ServedModel {
            name,
            run,
            scheduler,
            created: unix_now(),
        });
    }
    let state = AppState {
        models,
        limits: config.limits.clone(),
        metrics,
        token: config.token.clone(),
    };
    Ok((Arc::new(state), Schedulers { handles }))
}

/// Answers on `listener` until `shutdown` completes, then stops accepting, lets the requests
/// in flight (streams included) finish, and stops the schedulers.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: &ServeConfig,
    runs: Vec<(String, LoadedRun)>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (state, schedulers) = start(config, runs)?;
    let app = router(state);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| ServeError::Io {
            context: "serving stopped".into(),
            source,
        });
    // The router (and with it every scheduler handle) is gone: the threads end.
    tokio::task::spawn_blocking(move || schedulers.join())
        .await
        .ok();
    result
}

/// Completes on Ctrl-C or (on Unix) SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
