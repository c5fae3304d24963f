use thiserror::Error;

/// Errors raised while configuring or building a model.
#[derive(Debug, Error)]
pub enum ModelError {
    /// A configuration value is out of range or inconsistent with another.
    #[error("invalid model configuration: {0}")]
    InvalidConfig(String),
    /// The requested backend was not compiled into this build or has no usable device.
    #[error("{0}")]
    Backend(String),
    /// Named weights (e.g. from PyTorch) do not fit the model.
    #[error("weights do not fit the model: {0}")]
    Weights(String),
}
