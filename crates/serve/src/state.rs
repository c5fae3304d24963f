//! What every handler shares: the models with their schedulers, the limits, the counters.
use std::sync::Arc;

use lstm_lm_infer::LoadedRun;

use crate::config::Limits;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::scheduler::Scheduler;

/// A model the server offers.
pub struct ServedModel {
    /// Its name.
    pub name: String,
    /// The loaded run (scoring and embeddings read it directly; generation goes through the
    /// scheduler).
    pub run: Arc<LoadedRun>,
    /// Its batching scheduler.
    pub scheduler: Scheduler,
    /// When it was loaded (Unix seconds), for `/v1/models`.
    pub created: u64,
}

/// The handlers' shared state.
pub struct AppState {
    /// The models, the default first.
    pub models: Vec<ServedModel>,
    /// Request limits.
    pub limits: Limits,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The bearer token, when one is required.
    pub token: Option<String>,
}

impl AppState {
    /// The model a request names, or the first one when it names none.
    pub fn model(&self, name: Option<&str>) -> Result<&ServedModel, ApiError> {
        match name {
            None | Some("") => self
                .models
                .first()
                .ok_or_else(|| ApiError::internal("no model is loaded")),
            Some(n) => self.models.iter().find(|m| m.name == n).ok_or_else(|| {
                let names: Vec<String> = self.models.iter().map(|m| m.name.clone()).collect();
                ApiError::unknown_model(n, &names)
            }),
        }
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
