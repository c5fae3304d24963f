//! Data-parallel training step: one batch split across several devices.
//!
//! burn 0.22's own distributed execution (`burn::tensor::distributed`, parameters marked with
//! `Tensor::set_distributed` and gradients all-reduced during `backward`) only runs on backends
//! with collective operations: CUDA (through cubecl) and burn's remote backend. On flex, ndarray
//! and wgpu it panics ("Distributed operations are not supported for device …", or cubecl's
//! `NoDeviceTransport`). This module does the same work by hand, on every backend:
//!
//! 1. the rows of the batch are split into one contiguous shard per device (as even as possible);
//! 2. each device gets a replica of the model (`Module::fork`: same parameter ids, fresh autodiff
//!    leaves, so the replicas' graphs are independent) and runs the forward pass on its shard,
//!    in device order, so dropout draws from burn's process-wide generator in a fixed order;
//! 3. the backward passes run in parallel, one task of the thread pool per device;
//! 4. each device's gradients are weighted by its share of the (non-padding) target tokens and
//!    summed on the main device: the result is the gradient of the whole batch's mean loss,
//!    exactly what one device would compute on the whole batch (up to float rounding);
//! 5. the caller clips and steps the optimizer once, on the main device; the next step forks
//!    the updated weights again (the broadcast).
use rayon::prelude::*;
use std::ops::Range;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use lstm_lm_model::{LanguageModel, LayerState, RecurrentState};

use crate::data::Batch;
use crate::settings::Recipe;

/// Row ranges of `rows` split into at most `parts` contiguous, non-empty shards whose sizes
/// differ by at most one (the first shards take the extra rows).
pub(crate) fn split_rows(rows: usize, parts: usize) -> Vec<Range<usize>> {
    let parts = parts.max(1).min(rows.max(1));
    let base = rows / parts;
    let extra = rows % parts;
    let mut start = 0;
    (0..parts)
        .map(|k| {
            let len = base + usize::from(k < extra);
            let r = start..start + len;
            start += len;
            r
        })
        .filter(|r| !r.is_empty())
        .collect()
}

/// The rows `rows` of `batch`.
fn sub_batch(batch: &Batch, rows: Range<usize>) -> Batch {
    let targets_per_row = batch.targets.len() / batch.batch.max(1);
    Batch {
        inputs: batch.inputs[rows.start * batch.width..rows.end * batch.width].to_vec(),
        targets: batch.targets[rows.start * targets_per_row..rows.end * targets_per_row].to_vec(),
        batch: rows.len(),
        width: batch.width,
        positions: if batch.positions.is_empty() {
            Vec::new()
        } else {
            batch.positions[rows.clone()].to_vec()
        },
    }
}

fn slice_state(state: &RecurrentState, rows: &Range<usize>, device: &Device) -> RecurrentState {
    let cut = |t: &Tensor<2>| {
        t.clone()
            .narrow(0, rows.start, rows.len())
            .to_device(device)
    };
    RecurrentState {
        layers: state
            .layers
            .iter()
            .map(|l| LayerState {
                hidden: cut(&l.hidden),
                cell: l.cell.as_ref().map(cut),
            })
            .collect(),
    }
}

fn join_states(parts: Vec<RecurrentState>, device: &Device) -> RecurrentState {
    let layers = parts.first().map(|p| p.layers.len()).unwrap_or(0);
    let mut columns: Vec<Vec<LayerState>> = (0..layers).map(|_| Vec::new()).collect();
    for part in parts {
        for (k, l) in part.detach().layers.into_iter().enumerate() {
            columns[k].push(l);
        }
    }
    let gather =
        |ts: Vec<Tensor<2>>| Tensor::cat(ts.into_iter().map(|t| t.to_device(device)).collect(), 0);
    RecurrentState {
        layers: columns
            .into_iter()
            .map(|ls| {
                let has_cell = ls.iter().all(|l| l.cell.is_some());
                let (hidden, cells): (Vec<_>, Vec<_>) =
                    ls.into_iter().map(|l| (l.hidden, l.cell)).unzip();
                LayerState {
                    hidden: gather(hidden),
                    cell: has_cell.then(|| gather(cells.into_iter().flatten().collect())),
                }
            })
            .collect(),
    }
}

/// Adds `weight * shard[p]` into `sum[p]` for every parameter `p`, on `device`.
struct WeightedSum<'a> {
    sum: &'a mut GradientsParams,
    shard: GradientsParams,
    weight: f64,
    device: &'a Device,
}

impl ModuleVisitor for WeightedSum<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some(grad) = self.shard.remove::<D>(param.id) else {
            return;
        };
        let grad = grad.mul_scalar(self.weight).to_device(self.device);
        let total = match self.sum.remove::<D>(param.id) {
            Some(acc) => acc.add(grad),
            None => grad,
        };
        self.sum.register::<D>(param.id, total);
    }
}

struct ShardOutput {
    /// Loss value and correct count.
    figures: (f64, f64),
    grads: GradientsParams,
    tokens: usize,
}

/// Forward and backward of one batch split across `devices` (autodiff devices, the main one
/// first; `devices[0]` must be the device `model` lives on). Gradients are returned on
/// `grads_device` (the main device without autodiff, where the optimizer works).
///
/// Returns the batch's loss (mean over its non-padding targets), its number of correct
/// predictions, the next state (stream recipe; detached, on `devices[0]`) and the gradients.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward_backward_parallel(
    model: &LanguageModel,
    batch: &Batch,
    recipe: Recipe,
    state: Option<RecurrentState>,
    pad: Option<u32>,
    devices: &[Device],
    grads_device: &Device,
    forward: impl Fn(
        &LanguageModel,
        &Batch,
        Option<RecurrentState>,
        &Device,
    ) -> (Tensor<1>, Tensor<1>, Option<RecurrentState>),
) -> (f64, f64, Option<RecurrentState>, GradientsParams) {
    let shards = split_rows(batch.batch, devices.len());
    // Forward passes in device order: dropout masks come from one process-wide generator per
    // backend, so a fixed order keeps runs reproducible. On a GPU the launches are asynchronous,
    // so the devices still compute their forward passes at the same time.
    let mut pending = Vec::with_capacity(shards.len());
    let mut next_states = Vec::new();
    for (k, (rows, device)) in shards.iter().zip(devices).enumerate() {
        // The main shard uses the model itself; the others get forks, whose fresh autodiff
        // leaves keep the graphs apart even when two "devices" are the same CPU.
        let replica = if k == 0 {
            model.clone()
        } else {
            model.clone().fork(device)
        };
        let sub = sub_batch(batch, rows.clone());
        let tokens = match pad {
            Some(p) => sub.targets.iter().filter(|&&t| t != p).count(),
            None => sub.targets.len(),
        };
        let shard_state = state.as_ref().map(|s| slice_state(s, rows, device));
        let (loss, figures, next) = forward(&replica, &sub, shard_state, device);
        if let Some(n) = next {
            next_states.push(n);
        }
        pending.push((replica, loss, figures, tokens));
    }
    let total_tokens: usize = pending.iter().map(|p| p.3).sum();
    let total = total_tokens.max(1) as f64;

    // Backward passes in parallel, as tasks of the thread pool: training runs on a pool thread
    // (`on_pool`), which must go on taking work while it waits for the shards, or a pool of one
    // thread would wait forever for the kernels the shards hand to it.
    let outputs: Vec<ShardOutput> = pending
        .into_par_iter()
        .map(|(replica, loss, figures, tokens)| {
            let figures = crate::trainer::loss_figures(figures);
            let grads = GradientsParams::from_grads(loss.backward(), &replica);
            ShardOutput {
                figures,
                grads,
                tokens,
            }
        })
        .collect();

    let mut grads = GradientsParams::new();
    let mut loss = 0.0;
    let mut correct = 0.0;
    for out in outputs {
        let weight = out.tokens as f64 / total;
        loss += out.figures.0 * weight;
        correct += out.figures.1;
        model.visit(&mut WeightedSum {
            sum: &mut grads,
            shard: out.grads,
            weight,
            device: grads_device,
        });
    }
    let next = (recipe == Recipe::Stream && !next_states.is_empty())
        .then(|| join_states(next_states, &devices[0]));
    (loss, correct, next, grads)
}

#[cfg(test)]
mod tests {
    use super::split_rows;

    #[test]
    fn rows_split_evenly_first_shards_take_the_rest() {
        assert_eq!(split_rows(5, 2), vec![0..3, 3..5]);
        assert_eq!(split_rows(6, 3), vec![0..2, 2..4, 4..6]);
        assert_eq!(split_rows(2, 4), vec![0..1, 1..2]);
        assert_eq!(split_rows(7, 1), vec![0..7]);
    }
}
