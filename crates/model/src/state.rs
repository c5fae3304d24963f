use burn::tensor::{Device, Tensor};

use crate::CellKind;

/// The state of one recurrent layer.
///
/// `hidden` is `[batch, hidden_size]`; `cell` is present for LSTM layers only, same shape.
#[derive(Debug, Clone)]
pub struct LayerState {
    /// Hidden vector `h`, `[batch, hidden]`.
    pub hidden: Tensor<2>,
    /// Cell vector `c` (LSTM only), `[batch, hidden]`.
    pub cell: Option<Tensor<2>>,
}

/// The state of a whole stack, one [`LayerState`] per layer, bottom layer first.
///
/// The caller owns it and passes it back on the next call: this is how truncated
/// backpropagation through time and token-by-token generation carry context.
#[derive(Debug, Clone)]
pub struct RecurrentState {
    /// Per-layer states, bottom layer first.
    pub layers: Vec<LayerState>,
}

impl RecurrentState {
    /// All-zero state for `batch` sequences.
    pub fn zeros(
        cell: CellKind,
        num_layers: usize,
        hidden: usize,
        batch: usize,
        device: &Device,
    ) -> Self {
        let layers = (0..num_layers)
            .map(|_| LayerState {
                hidden: Tensor::zeros([batch, hidden], device),
                cell: cell
                    .has_cell()
                    .then(|| Tensor::zeros([batch, hidden], device)),
            })
            .collect();
        RecurrentState { layers }
    }

    /// Cuts the autodiff graph behind the state (truncated BPTT keeps values, drops history).
    pub fn detach(self) -> Self {
        RecurrentState {
            layers: self
                .layers
                .into_iter()
                .map(|l| LayerState {
                    hidden: l.hidden.detach(),
                    cell: l.cell.map(|c| c.detach()),
                })
                .collect(),
        }
    }

    /// Number of sequences the state holds.
    pub fn batch_size(&self) -> usize {
        self.layers.first().map(|l| l.hidden.dims()[0]).unwrap_or(0)
    }
}
