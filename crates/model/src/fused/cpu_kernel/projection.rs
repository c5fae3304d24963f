//! The output projection `hidden · weightᵀ + bias` and its backward pass on host buffers.
use super::*;

/// The output projection `logits = hidden · weightᵀ (+ bias)` as one GEMM.
///
/// Without `bias` the caller adds it where it passes over the rows anyway (the fused
/// cross-entropy does), which saves a pass over the `[n, vocab]` logits.
///
/// # Shapes
/// `hidden` `[n, width]`, `weight` `[vocab, width]`, `bias` `[vocab]`; returns `[n, vocab]`.
pub fn project(
    n: usize,
    width: usize,
    hidden: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let vocab = weight.len() / width.max(1);
    assert_eq!(hidden.len(), n * width, "hidden size");
    assert_eq!(weight.len(), vocab * width, "weight size");
    // SAFETY: logits [n, vocab] row-major; hidden [n, width]; weightᵀ read as [width, vocab]
    // through strides (row stride 1, column stride width); all in bounds by the asserts above.
    // The GEMM writes every element.
    let mut logits = unsafe {
        written_by(n * vocab, |out| {
            gemm_acc(
                n,
                vocab,
                width,
                Out::new(out, vocab as isize, 1),
                In::new(hidden.as_ptr(), width as isize, 1),
                In::new(weight.as_ptr(), 1, width as isize),
                false,
                Threads::Auto,
            );
        })
    };
    if let Some(bias) = bias {
        assert_eq!(bias.len(), vocab, "bias size");
        if vocab > 0 {
            logits
                .par_chunks_mut(vocab)
                .for_each(|row| add_into(row, bias));
        }
    }
    logits
}

/// `row += bias`, element by element.
pub(crate) fn add_into(row: &mut [f32], bias: &[f32]) {
    for (v, b) in row.iter_mut().zip(bias) {
        *v += b;
    }
}

/// Gradients of [`project`] given the gradient of the logits `d_logits` `[n, vocab]`: of the
/// hidden vectors `[n, width]`, of the weight `[vocab, width]` and of the bias `[vocab]`, each
/// only when wanted.
pub fn project_backward(
    n: usize,
    width: usize,
    hidden: &[f32],
    weight: &[f32],
    d_logits: &[f32],
    wanted: [bool; 3],
) -> ProjectGrads {
    let vocab = weight.len() / width.max(1);
    assert_eq!(d_logits.len(), n * vocab, "d_logits size");
    assert_eq!(hidden.len(), n * width, "hidden size");
    // The two products are independent and each too narrow to keep every thread of the pool
    // busy on its own (the one for the hidden vectors is only `[n, width]`), so each gets half
    // of the pool.
    let pool = rayon::current_num_threads();
    let both = wanted[0] && wanted[1] && pool > 1;
    let threads = if both {
        Threads::Share(pool / 2)
    } else {
        Threads::Auto
    };
    let hidden_grad = || {
        wanted[0].then(|| {
            // SAFETY: d [n, width] = d_logits [n, vocab] · weight [vocab, width], all row-major;
            // the GEMM writes every element.
            unsafe {
                written_by(n * width, |out| {
                    gemm_acc(
                        n,
                        width,
                        vocab,
                        Out::new(out, width as isize, 1),
                        In::new(d_logits.as_ptr(), vocab as isize, 1),
                        In::new(weight.as_ptr(), width as isize, 1),
                        false,
                        threads,
                    )
                })
            }
        })
    };
    let weight_grad =
        || wanted[1].then(|| weight_gradient(d_logits, vocab, hidden, width, threads));
    let bias_grad = || wanted[2].then(|| column_sums(d_logits, vocab));
    let ((d_hidden, d_bias), d_weight) = if both {
        rayon::join(|| (hidden_grad(), bias_grad()), weight_grad)
    } else {
        ((hidden_grad(), bias_grad()), weight_grad())
    };
    ProjectGrads {
        hidden: d_hidden,
        weight: d_weight,
        bias: d_bias,
    }
}

/// Gradients of [`project`]: `None` where not wanted.
pub struct ProjectGrads {
    /// Of the hidden vectors, `[n, width]`.
    pub hidden: Option<Vec<f32>>,
    /// Of the weight, `[vocab, width]`.
    pub weight: Option<Vec<f32>>,
    /// Of the bias, `[vocab]`.
    pub bias: Option<Vec<f32>>,
}
