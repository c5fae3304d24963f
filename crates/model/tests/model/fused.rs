//! The fused LSTM and GRU (`src/fused/`) against the composed tensor version: outputs, final states and
//! the gradients of every input, initial state and parameter must agree to 1e-4; the host kernel's
//! gradients must agree with central finite differences.
//!
//! The reference is written here with tensor operations, so it does not depend on how
//! `RecurrentLayer::forward` dispatches.
// NdArray is deprecated upstream but still a selectable backend of this crate.
#![allow(deprecated)]
use lstm_lm_model::burn::tensor::activation::{sigmoid, tanh};
use lstm_lm_model::burn::tensor::{Device, Distribution, Tensor};
use lstm_lm_model::fused;
use lstm_lm_model::fused::cpu_kernel::{
    GruWanted, LstmParams, LstmWanted, SeqDims, gru_backward, gru_forward, lstm_backward,
    lstm_forward,
};
use lstm_lm_model::testing::assert_close;
use lstm_lm_model::{CellKind, LayerState, RecurrentLayer};

const TOLERANCE: f32 = 1e-4;

/// The LSTM written with tensor operations, step by step (the reference).
fn composed(
    x: Tensor<3>,
    h0: Tensor<2>,
    c0: Tensor<2>,
    layer: &RecurrentLayer,
) -> (Tensor<3>, Tensor<2>, Tensor<2>) {
    let [batch, time, _] = x.dims();
    let hidden = layer.hidden_size;
    let w_ih = layer.weight_ih.val().transpose();
    let w_hh = layer.weight_hh.val().transpose();
    let bias = (layer.bias_ih.val() + layer.bias_hh.val()).unsqueeze::<2>();
    let (mut h, mut c) = (h0, c0);
    let mut outs = Vec::new();
    for t in 0..time {
        let x_t = x.clone().narrow(1, t, 1).reshape([batch, x.dims()[2]]);
        let z = x_t.matmul(w_ih.clone()) + h.clone().matmul(w_hh.clone()) + bias.clone();
        let gate = |k: usize| z.clone().narrow(1, k * hidden, hidden);
        let (i, f, g, o) = (
            sigmoid(gate(0)),
            sigmoid(gate(1)),
            tanh(gate(2)),
            sigmoid(gate(3)),
        );
        c = f * c + i * g;
        h = o * tanh(c.clone());
        outs.push(h.clone().unsqueeze_dim::<3>(1));
    }
    (Tensor::cat(outs, 1), h, c)
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec_as::<f32>().unwrap()
}

struct Case {
    batch: usize,
    time: usize,
    input: usize,
    hidden: usize,
}

/// Which leaves require a gradient: input, h0, c0 (the parameters always do).
struct Tracked {
    x: bool,
    h0: bool,
    c0: bool,
}

fn compare(device: &Device, case: Case, tracked: Tracked, zero_cell: bool) {
    let Case {
        batch,
        time,
        input,
        hidden,
    } = case;
    device.seed(7);
    let layer = RecurrentLayer::new(CellKind::Lstm, input, hidden, device);
    let normal = Distribution::Normal(0.0, 1.0);
    let leaf = |t: Tensor<2>, on: bool| if on { t.require_grad() } else { t };
    let x = Tensor::<3>::random([batch, time, input], normal, device);
    let x = if tracked.x { x.require_grad() } else { x };
    let h0 = leaf(Tensor::random([batch, hidden], normal, device), tracked.h0);
    let c0 = if zero_cell {
        Tensor::zeros([batch, hidden], device)
    } else {
        leaf(Tensor::random([batch, hidden], normal, device), tracked.c0)
    };
    // Random weights on every output, so that every output's gradient path is exercised.
    let r_out = Tensor::<3>::random([batch, time, hidden], normal, device);
    let r_h = Tensor::<2>::random([batch, hidden], normal, device);
    let r_c = Tensor::<2>::random([batch, hidden], normal, device);
    let loss = |out: Tensor<3>, h: Tensor<2>, c: Tensor<2>| {
        (out * r_out.clone()).sum() + (h * r_h.clone()).sum() + (c * r_c.clone()).sum()
    };

    let (want_out, want_h, want_c) = composed(x.clone(), h0.clone(), c0.clone(), &layer);
    let (got_out, got_h, got_c) = fused::lstm(
        x.clone(),
        h0.clone(),
        (!zero_cell).then(|| c0.clone()),
        layer.weight_ih.val(),
        layer.weight_hh.val(),
        layer.bias_ih.val(),
        layer.bias_hh.val(),
    );
    assert_eq!(got_out.dims(), [batch, time, hidden]);
    assert_close(
        "output",
        &values(got_out.clone()),
        &values(want_out.clone()),
        TOLERANCE,
    );
    assert_close(
        "final hidden",
        &values(got_h.clone()),
        &values(want_h.clone()),
        TOLERANCE,
    );
    assert_close(
        "final cell",
        &values(got_c.clone()),
        &values(want_c.clone()),
        TOLERANCE,
    );

    // The layer's own forward must agree too (composed today, fused once it dispatches here).
    let (layer_out, layer_state) = layer.forward(
        x.clone(),
        LayerState {
            hidden: h0.clone(),
            cell: Some(c0.clone()),
        },
    );
    assert_close(
        "layer output",
        &values(layer_out),
        &values(want_out.clone()),
        TOLERANCE,
    );
    assert_close(
        "layer cell",
        &values(layer_state.cell.unwrap()),
        &values(want_c.clone()),
        TOLERANCE,
    );

    if !device.is_autodiff() {
        return;
    }
    let want = loss(want_out, want_h, want_c).backward();
    let got = loss(got_out, got_h, got_c).backward();
    let grad2 = |t: &Tensor<2>, g| t.grad(g).map(values);
    let params = [
        ("weight_ih", layer.weight_ih.val()),
        ("weight_hh", layer.weight_hh.val()),
    ];
    for (name, p) in params {
        let (g, w) = (grad2(&p, &got), grad2(&p, &want));
        assert_close(
            name,
            &g.expect("fused grad"),
            &w.expect("composed grad"),
            TOLERANCE,
        );
    }
    for (name, p) in [
        ("bias_ih", layer.bias_ih.val()),
        ("bias_hh", layer.bias_hh.val()),
    ] {
        let g = p.grad(&got).map(values).expect("fused grad");
        let w = p.grad(&want).map(values).expect("composed grad");
        assert_close(name, &g, &w, TOLERANCE);
    }
    let gx = x.grad(&got).map(values);
    assert_eq!(gx.is_some(), tracked.x, "input gradient presence");
    if let Some(gx) = gx {
        assert_close("input", &gx, &values(x.grad(&want).unwrap()), TOLERANCE);
    }
    for (name, t, on) in [
        ("h0", &h0, tracked.h0),
        ("c0", &c0, tracked.c0 && !zero_cell),
    ] {
        let g = grad2(t, &got);
        assert_eq!(g.is_some(), on, "{name} gradient presence");
        if let Some(g) = g {
            assert_close(name, &g, &grad2(t, &want).unwrap(), TOLERANCE);
        }
    }
}

const ALL: Tracked = Tracked {
    x: true,
    h0: true,
    c0: true,
};

const NONE: Tracked = Tracked {
    x: false,
    h0: false,
    c0: false,
};

#[test]
fn flex_autodiff_matches_composed() {
    let device = Device::flex().autodiff();
    let case = Case {
        batch: 3,
        time: 5,
        input: 4,
        hidden: 6,
    };
    compare(&device, case, ALL, false);
}

#[test]
fn flex_autodiff_matches_composed_single_step_and_zero_cell() {
    let device = Device::flex().autodiff();
    let case = Case {
        batch: 2,
        time: 1,
        input: 3,
        hidden: 5,
    };
    compare(&device, case, ALL, true);
}

#[test]
fn flex_autodiff_untracked_inputs_get_no_gradient() {
    let device = Device::flex().autodiff();
    let case = Case {
        batch: 4,
        time: 7,
        input: 5,
        hidden: 8,
    };
    let tracked = Tracked {
        x: false,
        h0: false,
        c0: true,
    };
    compare(&device, case, tracked, false);
}

#[test]
fn flex_autodiff_matches_composed_wide() {
    // Big enough for the multi-threaded GEMM path and the vectorised gate loops' tails.
    let device = Device::flex().autodiff();
    let case = Case {
        batch: 9,
        time: 6,
        input: 37,
        hidden: 67,
    };
    compare(&device, case, ALL, false);
}

#[test]
fn flex_gradient_checkpointing_matches_composed() {
    // The fused node is compute bound: under checkpointing it keeps its output and buffers.
    let device = Device::flex().autodiff().gradient_checkpointing();
    let case = Case {
        batch: 3,
        time: 5,
        input: 4,
        hidden: 6,
    };
    compare(&device, case, ALL, false);
    let case = Case {
        batch: 2,
        time: 3,
        input: 4,
        hidden: 5,
    };
    compare_gru(&device, case, true);
}

#[test]
fn ndarray_autodiff_matches_composed() {
    let device = Device::ndarray().autodiff();
    let case = Case {
        batch: 3,
        time: 4,
        input: 5,
        hidden: 6,
    };
    compare(&device, case, ALL, false);
}

#[test]
fn inference_devices_match_composed() {
    for device in [Device::flex(), Device::ndarray()] {
        let case = Case {
            batch: 2,
            time: 3,
            input: 4,
            hidden: 5,
        };
        compare(&device, case, NONE, false);
    }
}

#[test]
fn fused_path_applies_to_cpu_backends_only() {
    let x = |device: &Device| Tensor::<3>::zeros([1, 2, 3], device);
    assert!(fused::supports(&Device::flex()));
    assert!(fused::supports(&Device::flex().autodiff()));
    assert!(fused::supports(&Device::ndarray().autodiff()));
    assert!(fused::applies(&x(&Device::flex())));
    assert!(!fused::applies(&Tensor::<3>::zeros(
        [1, 0, 3],
        &Device::flex()
    )));
}

/// The GRU written with tensor operations, step by step (the reference).
fn composed_gru(x: Tensor<3>, h0: Tensor<2>, layer: &RecurrentLayer) -> (Tensor<3>, Tensor<2>) {
    let [batch, time, width] = x.dims();
    let hidden = layer.hidden_size;
    let w_ih = layer.weight_ih.val().transpose();
    let w_hh = layer.weight_hh.val().transpose();
    let (b_ih, b_hh) = (
        layer.bias_ih.val().unsqueeze::<2>(),
        layer.bias_hh.val().unsqueeze::<2>(),
    );
    let mut h = h0;
    let mut outs = Vec::new();
    for t in 0..time {
        let x_t = x.clone().narrow(1, t, 1).reshape([batch, width]);
        let gx = x_t.matmul(w_ih.clone()) + b_ih.clone();
        let gh = h.clone().matmul(w_hh.clone()) + b_hh.clone();
        let part = |m: &Tensor<2>, k: usize| m.clone().narrow(1, k * hidden, hidden);
        let r = sigmoid(part(&gx, 0) + part(&gh, 0));
        let z = sigmoid(part(&gx, 1) + part(&gh, 1));
        let n = tanh(part(&gx, 2) + r * part(&gh, 2));
        h = (z.ones_like() - z.clone()) * n + z * h;
        outs.push(h.clone().unsqueeze_dim::<3>(1));
    }
    (Tensor::cat(outs, 1), h)
}

fn compare_gru(device: &Device, case: Case, track_inputs: bool) {
    let Case {
        batch,
        time,
        input,
        hidden,
    } = case;
    device.seed(11);
    let layer = RecurrentLayer::new(CellKind::Gru, input, hidden, device);
    let normal = Distribution::Normal(0.0, 1.0);
    let x = Tensor::<3>::random([batch, time, input], normal, device);
    let h0 = Tensor::<2>::random([batch, hidden], normal, device);
    let (x, h0) = if track_inputs {
        (x.require_grad(), h0.require_grad())
    } else {
        (x, h0)
    };
    let r_out = Tensor::<3>::random([batch, time, hidden], normal, device);
    let r_h = Tensor::<2>::random([batch, hidden], normal, device);
    let loss = |out: Tensor<3>, h: Tensor<2>| (out * r_out.clone()).sum() + (h * r_h.clone()).sum();

    let (want_out, want_h) = composed_gru(x.clone(), h0.clone(), &layer);
    let (got_out, got_h) = fused::gru(
        x.clone(),
        h0.clone(),
        layer.weight_ih.val(),
        layer.weight_hh.val(),
        layer.bias_ih.val(),
        layer.bias_hh.val(),
    );
    assert_close(
        "gru output",
        &values(got_out.clone()),
        &values(want_out.clone()),
        TOLERANCE,
    );
    assert_close(
        "gru final hidden",
        &values(got_h.clone()),
        &values(want_h.clone()),
        TOLERANCE,
    );
    let (layer_out, layer_state) = layer.forward(
        x.clone(),
        LayerState {
            hidden: h0.clone(),
            cell: None,
        },
    );
    assert_close(
        "gru layer output",
        &values(layer_out),
        &values(want_out.clone()),
        TOLERANCE,
    );
    assert_close(
        "gru layer hidden",
        &values(layer_state.hidden),
        &values(want_h.clone()),
        TOLERANCE,
    );

    if !device.is_autodiff() {
        return;
    }
    let want = loss(want_out, want_h).backward();
    let got = loss(got_out, got_h).backward();
    for (name, p) in [
        ("gru weight_ih", layer.weight_ih.val()),
        ("gru weight_hh", layer.weight_hh.val()),
    ] {
        let g = p.grad(&got).map(values).expect("fused grad");
        let w = p.grad(&want).map(values).expect("composed grad");
        assert_close(name, &g, &w, TOLERANCE);
    }
    for (name, p) in [
        ("gru bias_ih", layer.bias_ih.val()),
        ("gru bias_hh", layer.bias_hh.val()),
    ] {
        let g = p.grad(&got).map(values).expect("fused grad");
        let w = p.grad(&want).map(values).expect("composed grad");
        assert_close(name, &g, &w, TOLERANCE);
    }
    let gx = x.grad(&got).map(values);
    let gh = h0.grad(&got).map(values);
    assert_eq!(gx.is_some(), track_inputs, "gru input gradient presence");
    assert_eq!(gh.is_some(), track_inputs, "gru h0 gradient presence");
    if track_inputs {
        assert_close(
            "gru input",
            &gx.unwrap(),
            &values(x.grad(&want).unwrap()),
            TOLERANCE,
        );
        assert_close(
            "gru h0",
            &gh.unwrap(),
            &values(h0.grad(&want).unwrap()),
            TOLERANCE,
        );
    }
}

#[test]
fn gru_flex_autodiff_matches_composed() {
    let device = Device::flex().autodiff();
    let case = Case {
        batch: 3,
        time: 5,
        input: 4,
        hidden: 6,
    };
    compare_gru(&device, case, true);
    let case = Case {
        batch: 9,
        time: 6,
        input: 37,
        hidden: 67,
    };
    compare_gru(&device, case, false);
    let case = Case {
        batch: 2,
        time: 1,
        input: 3,
        hidden: 4,
    };
    compare_gru(&device, case, true);
}

#[test]
fn gru_ndarray_and_inference_match_composed() {
    let case = || Case {
        batch: 2,
        time: 4,
        input: 3,
        hidden: 5,
    };
    compare_gru(&Device::ndarray().autodiff(), case(), true);
    compare_gru(&Device::flex(), case(), false);
    compare_gru(&Device::ndarray(), case(), false);
}

/// A small deterministic generator so the finite-difference check needs no tensors.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * scale).collect()
    }
}

#[test]
fn host_kernel_gradients_match_finite_differences() {
    let d = SeqDims {
        batch: 2,
        time: 4,
        input: 3,
        hidden: 5,
    };
    let g4 = 4 * d.hidden;
    let mut rng = Lcg(42);
    // inputs: x, h0, c0, w_ih, w_hh, b_ih, b_hh
    let mut leaves = [
        rng.vec(d.batch * d.time * d.input, 1.0),
        rng.vec(d.batch * d.hidden, 1.0),
        rng.vec(d.batch * d.hidden, 1.0),
        rng.vec(g4 * d.input, 0.5),
        rng.vec(g4 * d.hidden, 0.5),
        rng.vec(g4, 0.5),
        rng.vec(g4, 0.5),
    ];
    let weights = rng.vec(d.packed_len(), 1.0);
    let loss = |l: &[Vec<f32>; 7]| -> f64 {
        let p = LstmParams {
            w_ih: &l[3],
            w_hh: &l[4],
            b_ih: &l[5],
            b_hh: &l[6],
        };
        let out = lstm_forward(d, &l[0], &l[1], &l[2], p);
        out.packed
            .iter()
            .zip(&weights)
            .map(|(a, b)| f64::from(*a) * f64::from(*b))
            .sum()
    };

    let params = LstmParams {
        w_ih: &leaves[3],
        w_hh: &leaves[4],
        b_ih: &leaves[5],
        b_hh: &leaves[6],
    };
    let fwd = lstm_forward(d, &leaves[0], &leaves[1], &leaves[2], params);
    let all = LstmWanted::ALL;
    let grads = lstm_backward(
        d,
        &leaves[0],
        &leaves[1],
        &leaves[2],
        &leaves[3],
        &leaves[4],
        &fwd.packed,
        fwd.saved,
        &weights,
        all,
    );
    let bias = grads.bias.unwrap();
    let analytic = [
        grads.x.unwrap(),
        grads.h0.unwrap(),
        grads.c0.unwrap(),
        grads.w_ih.unwrap(),
        grads.w_hh.unwrap(),
        bias.clone(),
        bias,
    ];

    let eps = 1e-2f32;
    let mut worst = 0.0f64;
    for leaf in 0..7 {
        for k in 0..leaves[leaf].len() {
            let orig = leaves[leaf][k];
            leaves[leaf][k] = orig + eps;
            let up = loss(&leaves);
            leaves[leaf][k] = orig - eps;
            let down = loss(&leaves);
            leaves[leaf][k] = orig;
            let numeric = (up - down) / (2.0 * f64::from(eps));
            let exact = f64::from(analytic[leaf][k]);
            let err = (numeric - exact).abs() / (1.0 + exact.abs());
            worst = worst.max(err);
            assert!(
                err < 2e-3,
                "leaf {leaf} element {k}: finite difference {numeric}, backward {exact}"
            );
        }
    }
    eprintln!("worst relative finite-difference error: {worst:.2e}");
}

#[test]
fn gru_host_kernel_gradients_match_finite_differences() {
    let d = SeqDims {
        batch: 2,
        time: 4,
        input: 3,
        hidden: 5,
    };
    let g3 = 3 * d.hidden;
    let mut rng = Lcg(7);
    // inputs: x, h0, w_ih, w_hh, b_ih, b_hh
    let mut leaves = [
        rng.vec(d.batch * d.time * d.input, 1.0),
        rng.vec(d.batch * d.hidden, 1.0),
        rng.vec(g3 * d.input, 0.5),
        rng.vec(g3 * d.hidden, 0.5),
        rng.vec(g3, 0.5),
        rng.vec(g3, 0.5),
    ];
    let weights = rng.vec(d.batch * d.time * d.hidden, 1.0);
    let params = |l: &[Vec<f32>; 6]| -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
        (l[2].clone(), l[3].clone(), l[4].clone(), l[5].clone())
    };
    let run = |l: &[Vec<f32>; 6]| {
        let (w_ih, w_hh, b_ih, b_hh) = params(l);
        let p = LstmParams {
            w_ih: &w_ih,
            w_hh: &w_hh,
            b_ih: &b_ih,
            b_hh: &b_hh,
        };
        gru_forward(d, &l[0], &l[1], p)
    };
    let loss = |l: &[Vec<f32>; 6]| -> f64 {
        run(l)
            .output
            .iter()
            .zip(&weights)
            .map(|(a, b)| f64::from(*a) * f64::from(*b))
            .sum()
    };
    let fwd = run(&leaves);
    let all = GruWanted {
        x: true,
        h0: true,
        w_ih: true,
        w_hh: true,
        b_ih: true,
        b_hh: true,
    };
    let grads = gru_backward(
        d,
        &leaves[0],
        &leaves[1],
        &leaves[2],
        &leaves[3],
        &fwd.output,
        fwd.saved,
        &weights,
        all,
    );
    let analytic = [
        grads.x.unwrap(),
        grads.h0.unwrap(),
        grads.w_ih.unwrap(),
        grads.w_hh.unwrap(),
        grads.b_ih.unwrap(),
        grads.b_hh.unwrap(),
    ];
    let eps = 1e-2f32;
    for leaf in 0..6 {
        for k in 0..leaves[leaf].len() {
            let orig = leaves[leaf][k];
            leaves[leaf][k] = orig + eps;
            let up = loss(&leaves);
            leaves[leaf][k] = orig - eps;
            let down = loss(&leaves);
            leaves[leaf][k] = orig;
            let numeric = (up - down) / (2.0 * f64::from(eps));
            let exact = f64::from(analytic[leaf][k]);
            let err = (numeric - exact).abs() / (1.0 + exact.abs());
            assert!(
                err < 2e-3,
                "leaf {leaf} element {k}: finite difference {numeric}, backward {exact}"
            );
        }
    }
}

/// The composed reference: `-log_softmax(logits).gather(targets)`, weighted mean over the rows
/// whose target is not `ignore`.
fn composed_cross_entropy(logits: Tensor<2>, targets: &[i64], ignore: Option<i64>) -> Tensor<1> {
    use lstm_lm_model::burn::tensor::activation::log_softmax;
    use lstm_lm_model::burn::tensor::{Int, TensorData};
    let [n, _] = logits.dims();
    let device = logits.device();
    let t = Tensor::<2, Int>::from_data(TensorData::new(targets.to_vec(), [n, 1]), &device);
    let nll = -log_softmax(logits, 1).gather(1, t).reshape([n]);
    let keep: Vec<f32> = targets
        .iter()
        .map(|&t| if Some(t) == ignore { 0.0 } else { 1.0 })
        .collect();
    let count = keep.iter().sum::<f32>().max(1.0);
    (nll * Tensor::<1>::from_data(TensorData::new(keep, [n]), &device)).sum() / count as f64
}

#[test]
fn fused_cross_entropy_matches_log_softmax_in_value_gradient_and_accuracy() {
    use lstm_lm_model::burn::tensor::{Int, TensorData};
    let device = Device::flex().autodiff();
    device.seed(11);
    // 37 is not a multiple of the kernel's 16 lanes; 1003 exercises long rows.
    for (n, vocab) in [(5usize, 37usize), (9, 1003)] {
        let base = Tensor::<2>::random([n, vocab], Distribution::Normal(0.0, 3.0), &device);
        let rows = values(base.clone().inner());
        let arg_max = |r: usize| {
            let row = &rows[r * vocab..(r + 1) * vocab];
            let max = row.iter().copied().max_by(f32::total_cmp).unwrap();
            row.iter().position(|&v| v == max).unwrap() as i64
        };
        // Even rows predict their target, odd rows (almost surely) do not.
        let targets: Vec<i64> = (0..n)
            .map(|r| {
                if r % 2 == 0 {
                    arg_max(r)
                } else {
                    ((r * 7 + 3) % vocab) as i64
                }
            })
            .collect();
        for ignore in [None, Some(targets[1])] {
            let a = base.clone().detach().require_grad();
            let b = base.clone().detach().require_grad();
            let t = Tensor::<1, Int>::from_data(TensorData::new(targets.clone(), [n]), &device);
            assert!(fused::cross_entropy_applies(&a));
            let (loss, correct) = fused::cross_entropy(a.clone(), t, ignore.map(|p| p as u32));
            let reference = composed_cross_entropy(b.clone(), &targets, ignore);
            // An upstream factor other than 1 must scale the gradient.
            let ga = (loss.clone() * 3.0).backward();
            let gb = (reference.clone() * 3.0).backward();
            assert_close(
                "loss",
                &values(loss.inner()),
                &values(reference.inner()),
                TOLERANCE,
            );
            assert_close(
                "gradient",
                &values(a.grad(&ga).unwrap()),
                &values(b.grad(&gb).unwrap()),
                TOLERANCE,
            );
            // Accuracy: rows whose arg-max is the target, ignored rows left out.
            let want = (0..n)
                .filter(|&r| Some(targets[r]) != ignore && targets[r] == arg_max(r))
                .count() as f32;
            assert!(want >= 2.0, "the case must have correct rows");
            assert_eq!(values(correct.inner()), vec![want]);
        }
    }
}

/// The host inference path used for generation gives the tensor model's logits, step by step,
/// for every cell kind and with tied weights, and for an LSTM large enough that each step is
/// split across threads by hidden units.
#[test]
fn host_language_model_matches_the_tensor_model_step_by_step() {
    use lstm_lm_model::LanguageModelConfig;
    use lstm_lm_model::burn::tensor::{Int, TensorData};
    use lstm_lm_model::fused::HostLanguageModel;
    let device = Device::flex();
    device.seed(5);
    let vocab = 1100; // more than two row blocks of the parallel matrix-vector product
    let ids: Vec<u32> = vec![3, 17, 1099, 0, 42, 42, 7];
    for (cell, tied, hidden) in [
        (CellKind::Lstm, false, 24),
        (CellKind::Gru, false, 24),
        (CellKind::Rnn, false, 24),
        (CellKind::Lstm, true, 24),
        (CellKind::Lstm, false, 256),
    ] {
        let config = LanguageModelConfig::new(vocab)
            .with_embedding_size(if tied { hidden } else { 40 })
            .with_hidden_size(hidden)
            .with_num_layers(2)
            .with_cell(cell)
            .with_tie_weights(tied);
        let model = config.init(&device).unwrap();
        let host = HostLanguageModel::new(&model);
        let mut state = host.zero_state();
        let input = Tensor::<2, Int>::from_data(
            TensorData::new(ids.iter().map(|&i| i as i64).collect(), [1, ids.len()]),
            &device,
        );
        let (logits, _) = model.forward(input, None);
        let want = values(logits);
        for (t, &id) in ids.iter().enumerate() {
            host.step(id, &mut state);
            let what = format!("{cell:?} tied={tied} hidden={hidden} step {t}");
            assert_close(
                &what,
                state.logits(),
                &want[t * vocab..(t + 1) * vocab],
                TOLERANCE,
            );
            // The 8-bit proposal stays within its bound of every exact logit, and one exact
            // logit computed alone is the projection's own, to the bit.
            assert!(host.propose(&mut state), "{what}: no proposal");
            let widest = host.max_proposal_error(&state);
            let mut closest_to_bound = 0.0f32;
            for (i, (&exact, &approx)) in state.logits().iter().zip(state.proposal()).enumerate() {
                let bound = host.proposal_error(&state, i);
                assert!(bound <= widest, "{what}: row {i}");
                assert!(
                    (exact - approx).abs() <= bound,
                    "{what}: row {i}: {exact} vs {approx}, bound {bound}"
                );
                closest_to_bound = closest_to_bound.max((exact - approx).abs() / bound);
                assert_eq!(
                    host.exact_logit(&state, i).to_bits(),
                    exact.to_bits(),
                    "{what}: row {i}"
                );
            }
            // A bound far looser than the error would make the sampler reject needlessly.
            assert!(closest_to_bound > 0.02, "{what}: {closest_to_bound}");
        }
    }
}

/// The fused projection + cross-entropy against `hidden·Wᵀ + b` then log-softmax: loss and the
/// gradients of the hidden vectors, the weight and the bias, with padding ignored and with the
/// weight also used elsewhere in the graph (as a tied embedding is).
#[test]
fn fused_projected_cross_entropy_matches_projection_then_log_softmax() {
    use lstm_lm_model::burn::tensor::{Int, TensorData};
    let device = Device::flex().autodiff();
    device.seed(12);
    let (n, width, vocab) = (13, 8, 301);
    let h0 = Tensor::<2>::random([n, width], Distribution::Normal(0.0, 1.0), &device);
    let w0 = Tensor::<2>::random([vocab, width], Distribution::Normal(0.0, 0.5), &device);
    let b0 = Tensor::<1>::random([vocab], Distribution::Normal(0.0, 0.5), &device);
    let targets: Vec<i64> = (0..n).map(|r| ((r * 37 + 5) % vocab) as i64).collect();
    for ignore in [None, Some(targets[2])] {
        let leaves = || {
            (
                h0.clone().detach().require_grad(),
                w0.clone().detach().require_grad(),
                b0.clone().detach().require_grad(),
            )
        };
        let (h, w, b) = leaves();
        let (hr, wr, br) = leaves();
        let t = Tensor::<1, Int>::from_data(TensorData::new(targets.clone(), [n]), &device);
        let (loss, _) = fused::projected_cross_entropy(
            h.clone(),
            w.clone(),
            b.clone(),
            t,
            ignore.map(|p| p as u32),
        );
        let logits = hr.clone().matmul(wr.clone().transpose()) + br.clone().unsqueeze::<2>();
        let reference = composed_cross_entropy(logits, &targets, ignore);
        // The weight also feeds another term, as a tied embedding does.
        let other = |w: &Tensor<2>| w.clone().narrow(0, 0, 3).sum() * 0.5;
        let ga = (loss.clone() * 2.0 + other(&w)).backward();
        let gb = (reference.clone() * 2.0 + other(&wr)).backward();
        assert_close(
            "loss",
            &values(loss.inner()),
            &values(reference.inner()),
            TOLERANCE,
        );
        for (name, got, want) in [
            (
                "hidden",
                values(h.grad(&ga).unwrap()),
                values(hr.grad(&gb).unwrap()),
            ),
            (
                "weight",
                values(w.grad(&ga).unwrap()),
                values(wr.grad(&gb).unwrap()),
            ),
        ] {
            assert_close(name, &got, &want, TOLERANCE);
        }
        assert_close(
            "bias",
            &values(b.grad(&ga).unwrap()),
            &values(br.grad(&gb).unwrap()),
            TOLERANCE,
        );
    }
}
