//! Cross-entropy on sparse targets, accuracy, and the one-hot form the Keras article uses.
use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};
use lstm_lm_model::LanguageModel;

/// Mean cross-entropy of `logits` against sparse `targets`, ignoring positions whose target is
/// `ignore` (padding).
///
/// On the CPU backends this is one fused operation ([`lstm_lm_model::fused::cross_entropy`]);
/// elsewhere [`cross_entropy_composed`].
///
/// # Shapes
/// - logits: `[n, vocab]`
/// - targets: `[n]`
/// - output: `[1]`
pub fn cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>, ignore: Option<u32>) -> Tensor<1> {
    cross_entropy_and_correct(logits, targets, ignore).0
}

/// [`cross_entropy`] and [`correct_count`] together: on the CPU backends one pass over the
/// logits computes both (and the gradient).
///
/// # Shapes
/// - logits: `[n, vocab]`, targets: `[n]`
/// - output: the loss `[1]` and the number of correct rows `[1]` (no gradient)
pub fn cross_entropy_and_correct(
    logits: Tensor<2>,
    targets: Tensor<1, Int>,
    ignore: Option<u32>,
) -> (Tensor<1>, Tensor<1>) {
    if lstm_lm_model::fused::cross_entropy_applies(&logits) {
        return lstm_lm_model::fused::cross_entropy(logits, targets, ignore);
    }
    let correct = correct_count(logits.clone().detach(), targets.clone(), ignore);
    (cross_entropy_composed(logits, targets, ignore), correct)
}

/// The model's output projection of `hidden` followed by [`cross_entropy_and_correct`]; on the
/// CPU backends one fused operation in which the `[n, vocab]` logits never become a tensor
/// ([`lstm_lm_model::fused::projected_cross_entropy`]).
///
/// # Shapes
/// - hidden: `[n, hidden]`, targets: `[n]`
/// - output: the loss `[1]` and the number of correct rows `[1]` (no gradient)
pub fn projected_cross_entropy(
    model: &LanguageModel,
    hidden: Tensor<2>,
    targets: Tensor<1, Int>,
    ignore: Option<u32>,
) -> (Tensor<1>, Tensor<1>) {
    if lstm_lm_model::fused::cross_entropy_applies(&hidden) {
        let (weight, bias) = model.output_projection();
        return lstm_lm_model::fused::projected_cross_entropy(
            hidden, weight, bias, targets, ignore,
        );
    }
    cross_entropy_and_correct(model.project(hidden), targets, ignore)
}

/// [`cross_entropy`] written with tensor operations (`log_softmax`, gather, mean): every backend.
pub fn cross_entropy_composed(
    logits: Tensor<2>,
    targets: Tensor<1, Int>,
    ignore: Option<u32>,
) -> Tensor<1> {
    let [n, _] = logits.dims();
    let nll = -log_softmax(logits, 1)
        .gather(1, targets.clone().reshape([n, 1]))
        .reshape([n]);
    match ignore {
        None => nll.mean(),
        Some(pad) => {
            let keep = targets.not_equal_elem(pad as i64).float();
            let count = keep.clone().sum().clamp_min(1.0);
            (nll * keep).sum() / count
        }
    }
}

/// Categorical cross-entropy against one-hot rows, as Keras' `categorical_crossentropy`
/// (mean over rows). Equal to [`cross_entropy`] on the arg-max targets.
///
/// # Shapes
/// - logits, one_hot: `[n, vocab]`
/// - output: `[1]`
pub fn categorical_cross_entropy(logits: Tensor<2>, one_hot: Tensor<2>) -> Tensor<1> {
    let [n, _] = logits.dims();
    (-(log_softmax(logits, 1) * one_hot)).sum() / (n as f64)
}

/// Number of rows whose arg-max equals the target (padding targets excluded).
///
/// # Shapes
/// - logits: `[n, vocab]`, targets: `[n]`, output: `[1]` (as float)
pub fn correct_count(logits: Tensor<2>, targets: Tensor<1, Int>, ignore: Option<u32>) -> Tensor<1> {
    let [n, _] = logits.dims();
    let predicted = logits.argmax(1).reshape([n]);
    let hit = predicted.equal(targets.clone()).float();
    match ignore {
        None => hit.sum(),
        Some(pad) => (hit * targets.not_equal_elem(pad as i64).float()).sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn logits(device: &Device) -> Tensor<2> {
        Tensor::from_data(
            TensorData::new(
                vec![
                    1.0f32, 2.0, 0.5, -1.0, 0.0, 3.0, 0.2, 0.1, 0.3, 2.0, -2.0, 1.0,
                ],
                [3, 4],
            ),
            device,
        )
    }

    #[test]
    fn matches_hand_computed_value() {
        let device = Device::flex();
        let t = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, 3, 0], [3]), &device);
        let loss: f32 = cross_entropy(logits(&device), t, None).into_scalar();
        // log-sum-exp per row minus the target logit, averaged.
        let rows = [
            [1.0f64, 2.0, 0.5, -1.0],
            [0.0, 3.0, 0.2, 0.1],
            [0.3, 2.0, -2.0, 1.0],
        ];
        let targets = [1usize, 3, 0];
        let mut expected = 0.0;
        for (r, &t) in rows.iter().zip(&targets) {
            let lse = r.iter().map(|x| x.exp()).sum::<f64>().ln();
            expected += lse - r[t];
        }
        expected /= 3.0;
        assert!(
            (loss as f64 - expected).abs() < 1e-5,
            "{loss} vs {expected}"
        );
    }

    #[test]
    fn ignored_positions_do_not_count() {
        let device = Device::flex();
        let all = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, 3, 0], [3]), &device);
        let l_all: f32 = cross_entropy(logits(&device), all, Some(0)).into_scalar();
        let first_two: f32 = cross_entropy(
            logits(&device).narrow(0, 0, 2),
            Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, 3], [2]), &device),
            None,
        )
        .into_scalar();
        assert!((l_all - first_two).abs() < 1e-6);
    }

    #[test]
    fn one_hot_categorical_equals_sparse_in_value_and_gradient() {
        let device = Device::flex().autodiff();
        let targets = vec![1i64, 3, 0];
        let a = logits(&device).require_grad();
        let sparse = cross_entropy(
            a.clone(),
            Tensor::<1, Int>::from_data(TensorData::new(targets.clone(), [3]), &device),
            None,
        );
        let mut one_hot = vec![0.0f32; 12];
        for (i, t) in targets.iter().enumerate() {
            one_hot[i * 4 + *t as usize] = 1.0;
        }
        let b = logits(&device).require_grad();
        let dense = categorical_cross_entropy(
            b.clone(),
            Tensor::from_data(TensorData::new(one_hot, [3, 4]), &device),
        );
        let ls: f32 = sparse.clone().into_scalar();
        let ld: f32 = dense.clone().into_scalar();
        assert!((ls - ld).abs() < 1e-6);
        let ga = a
            .grad(&sparse.backward())
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let gb = b
            .grad(&dense.backward())
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        for (x, y) in ga.iter().zip(&gb) {
            assert!((x - y).abs() < 1e-6);
        }
    }

    #[test]
    fn counts_correct_predictions() {
        let device = Device::flex();
        let t = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, 3, 0], [3]), &device);
        let c: f32 = correct_count(logits(&device), t, None).into_scalar();
        assert_eq!(c, 1.0);
    }
}
