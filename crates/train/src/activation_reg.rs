//! Activation regularisation (AR) and temporal activation regularisation (TAR), Merity et al.
//! 2017 section 4.6: L2 penalties on the top layer's outputs, added to the training loss.
//!
//! - AR: `ar · mean(h_dropped²)` over the top layer's outputs after the output dropout, which
//!   keeps activations small;
//! - TAR: `tar · mean((h_raw[t+1] − h_raw[t])²)` over the outputs before dropout, which keeps
//!   them from changing abruptly between consecutive steps.
//!
//! Means run over every element (batch, steps, units), as AWD-LSTM's `main.py` computes them.
//! The reported training loss is the cross-entropy alone; only the gradient sees the penalty.
use burn::tensor::Tensor;
use lstm_lm_model::TopOutputs;

/// The two coefficients (AWD-LSTM's `alpha` and `beta`); zero turns a term off.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ActivationPenalty {
    /// AR coefficient.
    pub ar: f64,
    /// TAR coefficient.
    pub tar: f64,
}

impl ActivationPenalty {
    /// The penalty a run's `[regularisation]` settings ask for.
    pub fn of(settings: &crate::settings::RegularisationSettings) -> Self {
        ActivationPenalty {
            ar: settings.ar,
            tar: settings.tar,
        }
    }

    /// Whether either term is on.
    pub fn is_on(&self) -> bool {
        self.ar != 0.0 || self.tar != 0.0
    }

    /// The penalty of one batch's top outputs (`[1]`, in the autodiff graph), `None` when both
    /// terms are off. TAR needs two steps and is 0 for windows of one step.
    pub fn penalty(&self, top: &TopOutputs) -> Option<Tensor<1>> {
        let mut total: Option<Tensor<1>> = None;
        let mut add = |term: Tensor<1>| {
            total = Some(match total.take() {
                Some(t) => t + term,
                None => term,
            });
        };
        if self.ar != 0.0 {
            add(top
                .dropped
                .clone()
                .powi_scalar(2)
                .mean()
                .mul_scalar(self.ar));
        }
        let [_, time, _] = top.raw.dims();
        if self.tar != 0.0 && time > 1 {
            let later = top.raw.clone().narrow(1, 1, time - 1);
            let earlier = top.raw.clone().narrow(1, 0, time - 1);
            add((later - earlier).powi_scalar(2).mean().mul_scalar(self.tar));
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Tensor, TensorData};

    use super::*;

    /// AR and TAR against the sums written out by hand for a 1×3×2 output.
    #[test]
    fn penalties_match_a_hand_computation() {
        let device = Device::flex();
        let dropped = Tensor::<3>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 0.0, -1.0, 3.0, 0.5], [1, 3, 2]),
            &device,
        );
        let raw = Tensor::<3>::from_data(
            TensorData::new(vec![0.5f32, 1.0, 0.0, -0.5, 1.5, 0.25], [1, 3, 2]),
            &device,
        );
        let top = TopOutputs { dropped, raw };
        let value = |p: ActivationPenalty| {
            p.penalty(&top)
                .unwrap()
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap()[0] as f64
        };
        // AR: (1 + 4 + 0 + 1 + 9 + 0.25) / 6 = 15.25 / 6.
        let ar = value(ActivationPenalty { ar: 2.0, tar: 0.0 });
        assert!((ar - 2.0 * 15.25 / 6.0).abs() < 1e-5, "{ar}");
        // TAR: differences (-0.5, -1.5) and (1.5, 0.75): (0.25 + 2.25 + 2.25 + 0.5625) / 4.
        let tar = value(ActivationPenalty { ar: 0.0, tar: 1.0 });
        assert!((tar - 5.3125 / 4.0).abs() < 1e-5, "{tar}");
        let both = value(ActivationPenalty { ar: 2.0, tar: 1.0 });
        assert!(both.is_finite() && (both - ar - tar).abs() < 1e-5, "{both}");
        assert!(ActivationPenalty::default().penalty(&top).is_none());
    }
}
