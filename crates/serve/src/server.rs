//! The router, and a server's life: load the models, start a scheduler per model, answer
//! until the shutdown signal, then drain the requests in flight and stop.
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use burn::tensor::Device;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use lstm_lm_infer::LoadedRun;

use crate::config::ServeConfig;
use crate::error::{ApiError, ServeError};
use crate::metrics::Metrics;
use crate::scheduler::Scheduler;
use crate::state::{AppState, ServedModel, unix_now};
use crate::{completions, embeddings, score};

/// The page, served at `/`.
const PAGE: &str = include_str!("page/index.html");

/// How long to wait before accepting again after `accept` failed (too many open files, say).
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

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
    let in_progress = InProgress::new(&state.metrics.in_progress);
    let response = next.run(req).await;
    drop(in_progress);
    state
        .metrics
        .request(route, response.status().as_u16(), start.elapsed());
    response
}

/// One request in the in-progress gauge, for as long as this lives (so a request whose client
/// went away, its handler dropped mid-way, leaves the gauge too).
struct InProgress<'a>(&'a AtomicUsize);

impl<'a> InProgress<'a> {
    fn new(gauge: &'a AtomicUsize) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        InProgress(gauge)
    }
}

impl Drop for InProgress<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
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
        let (scheduler, handle) = Scheduler::start(
            Arc::clone(&run),
            config.max_batch,
            config.limits.stall_timeout,
            Arc::clone(&metrics),
        )
        .map_err(|source| ServeError::Io {
            context: "cannot start a scheduler thread".into(),
            source,
        })?;
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

/// How [`serve`] ended after its shutdown signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Every request in flight finished, and the schedulers stopped.
    Drained,
    /// Requests were still in flight when [`ServeConfig::drain_timeout`] ran out; the server
    /// stopped without them (their connections close when the runtime shuts down).
    DrainTimedOut,
}

/// Answers on `listener` until `shutdown` completes, then stops accepting, lets the requests
/// in flight (streams included) finish for at most `config.drain_timeout`, and stops the
/// schedulers.
///
/// Connections are served by hyper's HTTP/1 server directly (not `axum::serve`) so that it
/// has a timer: a request head must arrive within `limits.request_timeout`, which also closes
/// connections left idle.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: &ServeConfig,
    runs: Vec<(String, LoadedRun)>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Stopped, ServeError> {
    let (state, schedulers) = start(config, runs)?;
    let app = router(state);
    let connections = GracefulShutdown::new();
    let places = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // At the connection limit nothing is accepted: new clients wait in the listen backlog
        // until a connection closes.
        let place = tokio::select! {
            place = Arc::clone(&places).acquire_owned() => match place {
                Ok(place) => place,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let conn = http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(config.limits.request_timeout)
                        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
                    let conn = connections.watch(conn);
                    tokio::spawn(async move {
                        // A connection's error (a reset, a timed-out head) is its own business.
                        let _ = conn.await;
                        drop(place);
                    });
                }
                // Out of file descriptors and the like: wait a moment instead of spinning.
                Err(_) => tokio::time::sleep(ACCEPT_RETRY).await,
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    // The connections hold the last router clones, and with them the scheduler handles: once
    // they have all finished the scheduler threads end after their current step.
    drop(app);
    let drained = tokio::time::timeout(config.drain_timeout, async move {
        connections.shutdown().await;
        tokio::task::spawn_blocking(move || schedulers.join())
            .await
            .ok();
    })
    .await;
    Ok(if drained.is_ok() {
        Stopped::Drained
    } else {
        Stopped::DrainTimedOut
    })
}

/// Ctrl-C and (on Unix) SIGTERM as one sequence of stop requests. It listens from the moment
/// it is made, so a second signal sent right after the first is not missed between two waits
/// (a listener made after a signal arrived would never see it).
pub struct StopSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Starts listening; call inside the tokio runtime.
    pub fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(StopSignals {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(StopSignals {})
    }

    /// Completes at the next Ctrl-C or SIGTERM.
    pub async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {},
            _ = self.terminate.recv() => {},
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
