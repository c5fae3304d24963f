//! The wgpu backend against the CPU reference (flex), on tiny shapes: forward parity for LSTM and
//! GRU, one training step's gradients, save/load across backends, and step-by-step generation.
//!
//! flex runs the fused CPU kernels (`src/fused`), wgpu the composed tensor operations, so these
//! tests also cross-check the two code paths.
//!
//! Without a wgpu adapter each test prints `SKIPPED: …` and passes, except in CI (`CI` set, or
//! `LSTM_LM_REQUIRE_WGPU=1`, which `.ci/run` sets after installing Mesa's lavapipe), where a
//! missing adapter fails the test.
use lstm_lm_model::burn::module::Module;
use lstm_lm_model::burn::optim::{AdamConfig, GradientsParams};
use lstm_lm_model::burn::store::ModuleRecord;
use lstm_lm_model::burn::tensor::activation::log_softmax;
use lstm_lm_model::burn::tensor::{Bytes, Device, Int, Tensor, TensorData};
use lstm_lm_model::testing::assert_close;
use lstm_lm_model::{
    BackendKind, CellKind, LanguageModel, LanguageModelConfig, LayerState, RecurrentState,
    device_for,
};

const FORWARD_TOLERANCE: f32 = 1e-4;
const GRADIENT_TOLERANCE: f32 = 1e-3;

/// The wgpu device, or `None` after printing why the test is skipped. Panics instead of skipping
/// where CI demands the backend.
fn wgpu_or_skip(test: &str) -> Option<Device> {
    match device_for(BackendKind::Wgpu, 0) {
        Ok(device) => Some(device),
        Err(e) => {
            let required = std::env::var_os("CI").is_some()
                || std::env::var("LSTM_LM_REQUIRE_WGPU").is_ok_and(|v| v == "1");
            if required {
                panic!(
                    "{test}: wgpu is required here (CI or LSTM_LM_REQUIRE_WGPU=1) but unavailable: {e}"
                );
            }
            eprintln!("SKIPPED {test}: no wgpu adapter (install mesa-vulkan-drivers): {e}");
            None
        }
    }
}

/// Vocabulary 13, embedding 6, 2 layers of 8. A wide initial range (0.5, not 0.1) so that a
/// change in any weight shows in the logits, not only in the recurrent state.
fn config(cell: CellKind) -> LanguageModelConfig {
    LanguageModelConfig::new(13)
        .with_embedding_size(6)
        .with_hidden_size(8)
        .with_num_layers(2)
        .with_cell(cell)
        .with_init_range(0.5)
}

/// A model with seeded weights on flex (the device RNG is shared by the tests running in
/// parallel, hence the lock).
fn fresh(cell: CellKind, seed: u64) -> LanguageModel {
    static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let device = Device::flex();
    device.seed(seed);
    config(cell).init(&device).unwrap()
}

/// The same weights on another device (through the PyTorch-named state dict).
fn copy_to(model: &LanguageModel, cell: CellKind, device: &Device) -> LanguageModel {
    config(cell)
        .init(device)
        .unwrap()
        .load_torch_state_dict(&model.torch_state_dict(), device)
        .unwrap()
}

/// `[batch, time]` ids, deterministic.
fn ids(batch: usize, time: usize, device: &Device) -> Tensor<2, Int> {
    let v: Vec<i64> = (0..batch * time)
        .map(|i| ((i * 7 + 3) % 13) as i64)
        .collect();
    Tensor::from_data(TensorData::new(v, [batch, time]), device)
}

/// A non-zero initial state, deterministic.
fn state(cell: CellKind, batch: usize, device: &Device) -> RecurrentState {
    let values = |seed: usize| -> Tensor<2> {
        let v: Vec<f32> = (0..batch * 8)
            .map(|i| (((i + seed) * 37 % 101) as f32 / 101.0 - 0.5) * 0.8)
            .collect();
        Tensor::from_data(TensorData::new(v, [batch, 8]), device)
    };
    RecurrentState {
        layers: (0..2)
            .map(|k| LayerState {
                hidden: values(k * 11),
                cell: cell.has_cell().then(|| values(k * 13 + 5)),
            })
            .collect(),
    }
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// Logits and final state of `model` on fixed input: `(logits, [h, c of every layer])`.
fn forward(model: &LanguageModel, cell: CellKind, device: &Device) -> (Vec<f32>, Vec<f32>) {
    let (logits, s) = model.forward(ids(3, 5, device), Some(state(cell, 3, device)));
    let mut finals = Vec::new();
    for l in s.layers {
        finals.extend(to_vec(l.hidden));
        if let Some(c) = l.cell {
            finals.extend(to_vec(c));
        }
    }
    (to_vec(logits), finals)
}

/// Forward parity of `flex_model` (on flex) and `wgpu_model` (on wgpu).
fn check_forward(cell: CellKind, flex_model: &LanguageModel, wgpu_model: &LanguageModel) {
    let (flex, wgpu) = (Device::flex(), wgpu_model.embedding.val().device());
    let (want_logits, want_state) = forward(flex_model, cell, &flex);
    let (got_logits, got_state) = forward(wgpu_model, cell, &wgpu);
    assert_close(
        &format!("{cell:?} logits"),
        &got_logits,
        &want_logits,
        FORWARD_TOLERANCE,
    );
    assert_close(
        &format!("{cell:?} final state"),
        &got_state,
        &want_state,
        FORWARD_TOLERANCE,
    );
}

#[test]
fn forward_matches_flex_for_lstm_and_gru() {
    let Some(wgpu) = wgpu_or_skip("forward_matches_flex_for_lstm_and_gru") else {
        return;
    };
    for cell in [CellKind::Lstm, CellKind::Gru] {
        let flex_model = fresh(cell, 1);
        let wgpu_model = copy_to(&flex_model, cell, &wgpu);
        check_forward(cell, &flex_model, &wgpu_model);
    }
}

/// The parity check is not vacuous: one recurrent weight (top layer, candidate gate) nudged by
/// 0.05 on the wgpu side fails it.
#[test]
fn a_perturbed_weight_breaks_forward_parity() {
    let Some(wgpu) = wgpu_or_skip("a_perturbed_weight_breaks_forward_parity") else {
        return;
    };
    for cell in [CellKind::Lstm, CellKind::Gru] {
        let flex_model = fresh(cell, 2);
        let mut dict = flex_model.torch_state_dict();
        let w = dict
            .iter_mut()
            .find(|t| t.name == "rnn.weight_hh_l1")
            .unwrap();
        // Row 2·hidden + 1 (the g / n gate of unit 1), column 0.
        w.data[(2 * 8 + 1) * 8] += 0.05;
        let wgpu_model = config(cell)
            .init(&wgpu)
            .unwrap()
            .load_torch_state_dict(&dict, &wgpu)
            .unwrap();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            check_forward(cell, &flex_model, &wgpu_model)
        }));
        assert!(
            result.is_err(),
            "{cell:?}: a perturbed weight still matched"
        );
    }
}

/// Summed (not mean) cross-entropy of next-token prediction on the fixed ids: gradients 15 times
/// those of the mean, so that the absolute tolerance is not loose.
fn loss(model: &LanguageModel, cell: CellKind, device: &Device) -> Tensor<1> {
    let (batch, time) = (3, 6);
    let all = ids(batch, time, device);
    let input = all.clone().narrow(1, 0, time - 1);
    let target = all.narrow(1, 1, time - 1).reshape([batch * (time - 1), 1]);
    let (logits, _) = model.forward(input, Some(state(cell, batch, device)));
    let logits = logits.reshape([batch * (time - 1), 13]);
    -log_softmax(logits, 1).gather(1, target).sum()
}

/// Every parameter's gradient under its PyTorch name, in state-dict order.
fn named_grads(model: &LanguageModel, grads: &GradientsParams) -> Vec<(String, Vec<f32>)> {
    let g2 = |name: &str, p: &lstm_lm_model::burn::module::Param<Tensor<2>>| {
        let g = grads
            .get::<2>(p.id)
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        (name.to_string(), to_vec(g))
    };
    let g1 = |name: &str, p: &lstm_lm_model::burn::module::Param<Tensor<1>>| {
        let g = grads
            .get::<1>(p.id)
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        (name.to_string(), to_vec(g))
    };
    let mut out = vec![g2("encoder.weight", &model.embedding)];
    for (k, l) in model.layers.iter().enumerate() {
        out.push(g2(&format!("rnn.weight_ih_l{k}"), &l.weight_ih));
        out.push(g2(&format!("rnn.weight_hh_l{k}"), &l.weight_hh));
        out.push(g1(&format!("rnn.bias_ih_l{k}"), &l.bias_ih));
        out.push(g1(&format!("rnn.bias_hh_l{k}"), &l.bias_hh));
    }
    if let Some(w) = &model.output_weight {
        out.push(g2("decoder.weight", w));
    }
    out.push(g1("decoder.bias", &model.output_bias));
    out
}

fn gradients(model: &LanguageModel, cell: CellKind, device: &Device) -> Vec<(String, Vec<f32>)> {
    let grads = GradientsParams::from_grads(loss(model, cell, device).backward(), model);
    named_grads(model, &grads)
}

#[test]
fn one_training_step_gradients_match_flex() {
    let Some(wgpu) = wgpu_or_skip("one_training_step_gradients_match_flex") else {
        return;
    };
    let (flex_ad, wgpu_ad) = (Device::flex().autodiff(), wgpu.autodiff());
    for cell in [CellKind::Lstm, CellKind::Gru] {
        let flex_model = copy_to(&fresh(cell, 3), cell, &flex_ad);
        let wgpu_model = copy_to(&flex_model, cell, &wgpu_ad);
        let want = gradients(&flex_model, cell, &flex_ad);
        let got = gradients(&wgpu_model, cell, &wgpu_ad);
        assert_eq!(want.len(), got.len());
        for ((name, w), (_, g)) in want.iter().zip(&got) {
            assert!(
                w.iter().any(|x| *x != 0.0),
                "{cell:?} {name}: zero gradient"
            );
            assert_close(&format!("{cell:?} grad {name}"), g, w, GRADIENT_TOLERANCE);
        }
    }
}

/// One Adam step (global clipping is the trainer's business; not needed here) on `device`.
fn trained(cell: CellKind, device: &Device) -> LanguageModel {
    let device = device.clone().autodiff();
    let model = copy_to(&fresh(cell, 4), cell, &device);
    let grads = GradientsParams::from_grads(loss(&model, cell, &device).backward(), &model);
    let mut optim = AdamConfig::new().init();
    optim.step(1e-2, model, grads).valid()
}

/// Saves with burnpack bytes, loads onto `device` as `lstm-lm` run folders do.
fn save_load(model: &LanguageModel, cell: CellKind, device: &Device) -> LanguageModel {
    let bytes = model.clone().into_record().into_bytes().unwrap();
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes.to_vec())).unwrap();
    config(cell)
        .init(device)
        .unwrap()
        .try_load_record(record)
        .unwrap()
}

fn log_probs(model: &LanguageModel, cell: CellKind, device: &Device) -> Vec<f32> {
    let (logits, _) = model.forward(ids(2, 7, device), Some(state(cell, 2, device)));
    to_vec(log_softmax(logits, 2))
}

#[test]
fn saved_on_one_backend_loads_on_the_other() {
    let Some(wgpu) = wgpu_or_skip("saved_on_one_backend_loads_on_the_other") else {
        return;
    };
    let flex = Device::flex();
    for cell in [CellKind::Lstm, CellKind::Gru] {
        // Trained and saved on flex, loaded on wgpu.
        let on_flex = trained(cell, &flex);
        let loaded = save_load(&on_flex, cell, &wgpu);
        assert_close(
            &format!("{cell:?} flex -> wgpu log-probs"),
            &log_probs(&loaded, cell, &wgpu),
            &log_probs(&on_flex, cell, &flex),
            FORWARD_TOLERANCE,
        );
        // Trained and saved on wgpu, loaded on flex.
        let on_wgpu = trained(cell, &wgpu);
        let loaded = save_load(&on_wgpu, cell, &flex);
        assert_close(
            &format!("{cell:?} wgpu -> flex log-probs"),
            &log_probs(&loaded, cell, &flex),
            &log_probs(&on_wgpu, cell, &wgpu),
            FORWARD_TOLERANCE,
        );
    }
}

/// Generation as `lstm-lm generate` runs it: the prompt in one call, then one token per call with
/// the state carried. Greedy picks on wgpu; flex replays the same tokens and its logits must agree
/// at every step.
#[test]
fn generation_runs_on_wgpu_and_matches_flex_step_by_step() {
    let Some(wgpu) = wgpu_or_skip("generation_runs_on_wgpu_and_matches_flex_step_by_step") else {
        return;
    };
    let flex = Device::flex();
    let cell = CellKind::Lstm;
    let flex_model = fresh(cell, 5);
    let wgpu_model = copy_to(&flex_model, cell, &wgpu);
    let prompt = [1u32, 5, 2, 9];
    let step =
        |model: &LanguageModel, tokens: &[u32], s: Option<RecurrentState>, device: &Device| {
            let v: Vec<i64> = tokens.iter().map(|&t| t as i64).collect();
            let input = Tensor::<2, Int>::from_data(TensorData::new(v, [1, tokens.len()]), device);
            let (logits, s) = model.forward_last(input, s);
            (to_vec(logits), s)
        };
    let (mut lw, mut sw) = step(&wgpu_model, &prompt, None, &wgpu);
    let (mut lf, mut sf) = step(&flex_model, &prompt, None, &flex);
    let mut generated = Vec::new();
    for i in 0..12 {
        assert_close(&format!("logits at step {i}"), &lw, &lf, FORWARD_TOLERANCE);
        let next = lw
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(k, _)| k as u32)
            .unwrap();
        generated.push(next);
        (lw, sw) = step(&wgpu_model, &[next], Some(sw), &wgpu);
        (lf, sf) = step(&flex_model, &[next], Some(sf), &flex);
    }
    let state = |s: RecurrentState| -> Vec<f32> {
        s.layers
            .into_iter()
            .flat_map(|l| {
                to_vec(l.hidden)
                    .into_iter()
                    .chain(l.cell.map(to_vec).unwrap_or_default())
            })
            .collect()
    };
    assert_close("final state", &state(sw), &state(sf), FORWARD_TOLERANCE);
    assert!(generated.iter().all(|&t| t < 13), "{generated:?}");
}

/// `--device N` past the last adapter is a clean error, not a panic.
#[test]
fn an_adapter_index_past_the_end_is_an_error() {
    let err = device_for(BackendKind::Wgpu, 999).unwrap_err().to_string();
    // A CPU-only build says how to get the GPU backend instead.
    let expected = if cfg!(feature = "wgpu") {
        "no wgpu adapter"
    } else {
        "rebuild it with `--features wgpu`"
    };
    assert!(err.contains(expected), "{err}");
    assert!(!err.contains('\n'), "not one line: {err}");
}
