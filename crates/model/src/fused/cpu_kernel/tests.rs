//! Unit tests of the kernels: parts against the whole, skipped steps, projections.
use super::*;

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        })
        .collect()
}

fn assert_close(what: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{what}: length");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-5 * (1.0 + x.abs().max(y.abs())),
            "{what}[{i}]: {x} vs {y}"
        );
    }
}

/// The inputs and weights of one LSTM layer, deterministic from a seed.
struct Layer {
    d: SeqDims,
    x: Vec<f32>,
    h0: Vec<f32>,
    c0: Vec<f32>,
    w_ih: Vec<f32>,
    w_hh: Vec<f32>,
    b_ih: Vec<f32>,
    b_hh: Vec<f32>,
}

impl Layer {
    fn new(d: SeqDims, seed: u64) -> Self {
        let g4 = d.gates();
        Layer {
            d,
            x: values(d.rows() * d.input, seed),
            h0: values(d.batch * d.hidden, seed + 1),
            c0: values(d.batch * d.hidden, seed + 2),
            w_ih: values(g4 * d.input, seed + 3),
            w_hh: values(g4 * d.hidden, seed + 4),
            b_ih: values(g4, seed + 5),
            b_hh: values(g4, seed + 6),
        }
    }

    /// Forward, then backward of `grad` with every gradient wanted, in `parts` parts.
    fn run(&self, grad: &[f32], parts: usize) -> (Vec<f32>, LstmGrads) {
        let p = LstmParams {
            w_ih: &self.w_ih,
            w_hh: &self.w_hh,
            b_ih: &self.b_ih,
            b_hh: &self.b_hh,
        };
        let wanted = LstmWanted::ALL;
        let (d, x, h0, c0) = (self.d, &self.x, &self.h0, &self.c0);
        let f = lstm_forward_in_parts(d, x, h0, c0, p, parts);
        let packed = f.packed.clone();
        let g = lstm_backward_in_parts(
            d, x, h0, c0, &self.w_ih, &self.w_hh, &packed, f.saved, grad, wanted, parts,
        );
        (packed, g)
    }
}

/// A named pair of optional gradients.
type Pair<'a> = (&'a str, &'a Option<Vec<f32>>, &'a Option<Vec<f32>>);

/// Each named pair of gradients, both present, agrees.
fn assert_each_close<const N: usize>(pairs: [Pair<'_>; N]) {
    for (what, a, b) in pairs {
        assert_close(what, a.as_ref().unwrap(), b.as_ref().unwrap());
    }
}

fn assert_grads_close(got: &LstmGrads, want: &LstmGrads) {
    assert_each_close([
        ("x", &got.x, &want.x),
        ("h0", &got.h0, &want.h0),
        ("c0", &got.c0, &want.c0),
        ("w_ih", &got.w_ih, &want.w_ih),
        ("w_hh", &got.w_hh, &want.w_hh),
        ("bias", &got.bias, &want.bias),
    ]);
}

/// Cutting the batch into parts (here 1, 2 and 3, the last one shorter) gives what one part
/// gives, forward and backward.
#[test]
fn parts_of_a_batch_agree_with_the_whole() {
    let d = SeqDims {
        batch: 7,
        time: 5,
        input: 6,
        hidden: 4,
    };
    let layer = Layer::new(d, 1);
    let grad = values(d.packed_len(), 8);
    let (packed_1, g_1) = layer.run(&grad, 1);
    for parts in [2, 3] {
        let (packed, g) = layer.run(&grad, parts);
        assert_close("packed", &packed, &packed_1);
        assert_grads_close(&g, &g_1);
    }
}

/// Steps after a sequence's last gradient are skipped: the result equals the one where
/// those gradients are tiny but not zero (so nothing is skipped), for every way of cutting
/// the batch, with a sequence whose only gradient is at step 0, one with none at all and
/// one with a gradient on its final cell.
#[test]
fn steps_after_the_last_gradient_are_skipped_exactly() {
    let d = SeqDims {
        batch: 5,
        time: 6,
        input: 3,
        hidden: 4,
    };
    let (h, slots) = (d.hidden, d.time + 1);
    let layer = Layer::new(d, 11);
    // Last step with a gradient per sequence (`None`: no gradient; `Some(time)`: the
    // final cell's).
    let last = [Some(2), Some(0), None, Some(5), Some(6)];
    let full = values(d.packed_len(), 18);
    let with_tail = |tail: f32| -> Vec<f32> {
        let mut g = full.clone();
        for (b, l) in last.iter().enumerate() {
            let from = l.map_or(0, |l| l + 1);
            for slot in from..slots {
                g[(b * slots + slot) * h..(b * slots + slot + 1) * h].fill(tail);
            }
        }
        g
    };
    let (_, want) = layer.run(&with_tail(1e-30), 1);
    for parts in [1, 2, 3] {
        let (_, got) = layer.run(&with_tail(0.0), parts);
        assert_grads_close(&got, &want);
    }
}

/// The GRU cut into parts gives what one part gives, forward and backward.
#[test]
fn gru_parts_agree_with_the_whole() {
    let d = SeqDims {
        batch: 7,
        time: 5,
        input: 6,
        hidden: 4,
    };
    let g3 = 3 * d.hidden;
    let x = values(d.rows() * d.input, 21);
    let h0 = values(d.batch * d.hidden, 22);
    let (w_ih, w_hh) = (values(g3 * d.input, 23), values(g3 * d.hidden, 24));
    let (b_ih, b_hh) = (values(g3, 25), values(g3, 26));
    let grad = values(d.rows() * d.hidden, 27);
    let p = LstmParams {
        w_ih: &w_ih,
        w_hh: &w_hh,
        b_ih: &b_ih,
        b_hh: &b_hh,
    };
    let wanted = GruWanted {
        x: true,
        h0: true,
        w_ih: true,
        w_hh: true,
        b_ih: true,
        b_hh: true,
    };
    let run = |parts: usize| {
        let f = gru_forward_in_parts(d, &x, &h0, p, parts);
        let out = f.output.clone();
        let g = gru_backward_in_parts(
            d, &x, &h0, &w_ih, &w_hh, &out, f.saved, &grad, wanted, parts,
        );
        (out, g)
    };
    let (out_1, g_1) = run(1);
    for parts in [2, 3] {
        let (out, g) = run(parts);
        assert_close("output", &out, &out_1);
        assert_each_close([
            ("x", &g.x, &g_1.x),
            ("h0", &g.h0, &g_1.h0),
            ("w_ih", &g.w_ih, &g_1.w_ih),
            ("w_hh", &g.w_hh, &g_1.w_hh),
            ("b_ih", &g.b_ih, &g_1.b_ih),
            ("b_hh", &g.b_hh, &g_1.b_hh),
        ]);
    }
}

#[test]
fn column_sums_by_blocks_match_the_plain_sum() {
    let (rows, width) = (300, 1000);
    let m = values(rows * width, 9);
    let got = column_sums(&m, width);
    for (c, sum) in got.iter().enumerate() {
        let want: f32 = (0..rows).map(|r| m[r * width + c]).sum();
        assert_eq!(*sum, want, "column {c}");
    }
}

#[test]
fn small_batches_stay_whole() {
    assert_eq!(batch_parts(1), 1);
    assert_eq!(batch_parts(MIN_PART_BATCH - 1), 1);
    assert!(batch_parts(1024) <= rayon::current_num_threads());
}
