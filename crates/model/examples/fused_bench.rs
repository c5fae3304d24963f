//! Training-step timings of the composed LSTM against the fused one on `Device::flex().autodiff()`.
//!
//! ```sh
//! cargo run --release -p lstm-lm-model --example fused_bench [-- steps [config [composed|fused]]]
//! ```
//!
//! - `lm`: Embedding(10000, 256) → 2×LSTM(256) → Linear(256, 10000), batch 32, 35 steps;
//!   forward, cross-entropy over every position, backward.
//! - `lm-lstm`: the same two LSTM layers alone (input from a fixed embedding output), loss = sum.
//! - `seed`: one LSTM(128), input 100, batch 128, 20 steps, loss = sum of the outputs.
//!
//! Prints the median milliseconds per step over `steps` runs (default 10) after two warm-up
//! runs, and tokens (or sequences) per second.
#[allow(dead_code, unreachable_pub)]
#[path = "../src/fused/mod.rs"]
mod fused;

use std::time::Instant;

use lstm_lm_model::burn::tensor::activation::log_softmax;
use lstm_lm_model::burn::tensor::module::embedding;
use lstm_lm_model::burn::tensor::{Device, Distribution, Int, Tensor};
use lstm_lm_model::{CellKind, LanguageModel, LanguageModelConfig, LayerState, RecurrentLayer};

const VOCAB: usize = 10_000;

fn median_ms(steps: usize, mut step: impl FnMut() -> f32) -> (f64, f32) {
    let mut last = 0.0;
    for _ in 0..2 {
        last = step();
    }
    let mut times: Vec<f64> = (0..steps)
        .map(|_| {
            let start = Instant::now();
            last = step();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], last)
}

/// Layer forward through the composed `RecurrentLayer::forward` or the fused kernel.
fn run_layer(
    layer: &RecurrentLayer,
    x: Tensor<3>,
    h0: Tensor<2>,
    c0: Tensor<2>,
    use_fused: bool,
) -> (Tensor<3>, Tensor<2>, Tensor<2>) {
    if use_fused {
        fused::lstm(
            x,
            h0,
            Some(c0),
            layer.weight_ih.val(),
            layer.weight_hh.val(),
            layer.bias_ih.val(),
            layer.bias_hh.val(),
        )
    } else {
        let state = LayerState {
            hidden: h0,
            cell: Some(c0),
        };
        let (out, state) = layer.forward(x, state);
        (
            out,
            state.hidden,
            state.cell.expect("LSTM state has a cell"),
        )
    }
}

fn lm_loss(
    model: &LanguageModel,
    ids: &Tensor<2, Int>,
    targets: &Tensor<2, Int>,
    use_fused: bool,
) -> Tensor<1> {
    let [batch, time] = ids.dims();
    let device = ids.device();
    let logits = if use_fused {
        let mut x = embedding(model.embedding.val(), ids.clone());
        for layer in &model.layers {
            let h0 = Tensor::zeros([batch, layer.hidden_size], &device);
            let c0 = Tensor::zeros([batch, layer.hidden_size], &device);
            x = run_layer(layer, x, h0, c0, true).0;
        }
        let width = x.dims()[2];
        model.project(x.reshape([batch * time, width]))
    } else {
        let (logits, _) = model.forward(ids.clone(), None);
        logits.reshape([batch * time, VOCAB])
    };
    let logp = log_softmax(logits, 1);
    logp.gather(1, targets.clone().reshape([batch * time, 1]))
        .mean()
        .neg()
}

fn main() {
    // The library may dispatch `RecurrentLayer::forward` to its own copy of the fused kernel;
    // this switches that off so the composed runs are composed.
    // SAFETY: no other thread exists yet.
    unsafe { std::env::set_var("LSTM_LM_FUSED", "0") };
    let steps: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let only = std::env::args().nth(2);
    let mode = std::env::args().nth(3);
    let wanted = |name: &str| only.as_deref().is_none_or(|o| o == name || o == "all");
    let modes: Vec<bool> = [false, true]
        .into_iter()
        .filter(|&f| {
            mode.as_deref()
                .is_none_or(|m| m == if f { "fused" } else { "composed" })
        })
        .collect();
    let device = Device::flex().autodiff();
    device.seed(1);
    println!("median of {steps} steps, ms per training step (forward + backward) on flex autodiff");
    println!(
        "{:<8} {:>12} {:>12} {:>8} {:>14} {:>14}",
        "config", "composed", "fused", "speedup", "composed/s", "fused/s"
    );

    // lm
    let config = LanguageModelConfig::new(VOCAB)
        .with_embedding_size(256)
        .with_hidden_size(256)
        .with_num_layers(2)
        .with_cell(CellKind::Lstm);
    let model = config.init(&device).expect("valid config");
    let (batch, time) = (32, 35);
    let ids = Tensor::<2, Int>::random(
        [batch, time],
        Distribution::Uniform(0.0, VOCAB as f64),
        &device,
    );
    let targets = Tensor::<2, Int>::random(
        [batch, time],
        Distribution::Uniform(0.0, VOCAB as f64),
        &device,
    );
    let mut results = Vec::new();
    for &use_fused in &modes {
        if !wanted("lm") {
            break;
        }
        results.push(median_ms(steps, || {
            let loss = lm_loss(&model, &ids, &targets, use_fused);
            let value = loss.clone().into_scalar::<f32>();
            let _grads = loss.backward();
            value
        }));
    }
    report("lm", &results, (batch * time) as f64, "tokens");

    // lm-lstm: the recurrent stack of lm alone.
    let x = Tensor::<3>::random(
        [batch, time, 256],
        Distribution::Uniform(-0.1, 0.1),
        &device,
    );
    let mut results = Vec::new();
    for &use_fused in &modes {
        if !wanted("lm-lstm") {
            break;
        }
        results.push(median_ms(steps, || {
            let mut h = x.clone();
            for layer in &model.layers {
                let z = Tensor::zeros([batch, 256], &device);
                h = run_layer(layer, h, z.clone(), z, use_fused).0;
            }
            let loss = h.sum();
            let value = loss.clone().into_scalar::<f32>();
            let _grads = loss.backward();
            value
        }));
    }
    report("lm-lstm", &results, (batch * time) as f64, "tokens");

    // seed: one LSTM(128) layer.
    let (batch, time, input, hidden) = (128, 20, 100, 128);
    let layer = RecurrentLayer::new(CellKind::Lstm, input, hidden, &device);
    let x = Tensor::<3>::random(
        [batch, time, input],
        Distribution::Uniform(-1.0, 1.0),
        &device,
    );
    let mut results = Vec::new();
    for &use_fused in &modes {
        if !wanted("seed") {
            break;
        }
        results.push(median_ms(steps, || {
            let z = Tensor::zeros([batch, hidden], &device);
            let (out, _, _) = run_layer(&layer, x.clone(), z.clone(), z, use_fused);
            let loss = out.sum();
            let value = loss.clone().into_scalar::<f32>();
            let _grads = loss.backward();
            value
        }));
    }
    report("seed", &results, batch as f64, "sequences");
}

fn report(name: &str, results: &[(f64, f32)], items: f64, unit: &str) {
    let [(composed, loss_c), (fused, loss_f)] = results else {
        for (ms, loss) in results {
            println!(
                "{name:<8} {ms:>10.1}ms {:>10.0} {unit}   (loss {loss:.5})",
                items * 1e3 / ms
            );
        }
        return;
    };
    println!(
        "{name:<8} {composed:>10.1}ms {fused:>10.1}ms {:>7.2}x {:>10.0} {unit} {:>10.0} {unit}   (loss {loss_c:.5} vs {loss_f:.5})",
        composed / fused,
        items * 1e3 / composed,
        items * 1e3 / fused,
    );
}
