//! The model crate's integration tests, in one binary (linking the whole stack once instead
//! of once per file is minutes of a cold build): the fused CPU kernels against the composed
//! path, AWD-LSTM's regularisers, parity with PyTorch, and the wgpu backend against flex.
mod fused;
mod regularisation;
mod torch_parity;
mod wgpu_backend;
