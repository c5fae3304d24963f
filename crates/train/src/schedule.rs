//! Learning-rate schedules: constant, step, cosine and reduce-on-plateau.
use serde::{Deserialize, Serialize};

use crate::settings::{ScheduleKind, ScheduleSettings};

/// What a schedule remembers between epochs (saved in checkpoints).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleState {
    /// Plateau: the factor applied so far (1 until the first decay).
    pub plateau_scale: f64,
    /// Plateau: best validation loss seen.
    pub best: Option<f64>,
    /// Plateau: epochs since `best` improved.
    pub bad_epochs: usize,
}

impl Default for ScheduleState {
    fn default() -> Self {
        ScheduleState {
            plateau_scale: 1.0,
            best: None,
            bad_epochs: 0,
        }
    }
}

/// A schedule bound to its base learning rate.
#[derive(Debug, Clone)]
pub struct Schedule {
    settings: ScheduleSettings,
    base_lr: f64,
}

impl Schedule {
    /// A schedule starting from `base_lr`.
    pub fn new(settings: ScheduleSettings, base_lr: f64) -> Self {
        Schedule { settings, base_lr }
    }

    /// The rate for a step in `epoch` (1-based), `progress` being the fraction of all training
    /// steps already done (used by cosine).
    pub fn lr(&self, state: &ScheduleState, epoch: usize, progress: f64) -> f64 {
        let s = &self.settings;
        let lr = match s.kind {
            ScheduleKind::Constant => self.base_lr,
            ScheduleKind::Step => {
                let decays = epoch.saturating_sub(s.start_epoch + 1) / s.step_size
                    + usize::from(epoch > s.start_epoch);
                self.base_lr * s.gamma.powi(decays as i32)
            }
            ScheduleKind::Cosine => {
                let p = progress.clamp(0.0, 1.0);
                s.min_lr
                    + 0.5 * (self.base_lr - s.min_lr) * (1.0 + (std::f64::consts::PI * p).cos())
            }
            ScheduleKind::Plateau => self.base_lr * state.plateau_scale,
        };
        lr.max(s.min_lr)
    }

    /// Updates the plateau state after an epoch with validation loss `valid_loss`.
    pub fn end_epoch(&self, state: &mut ScheduleState, valid_loss: Option<f64>) {
        if self.settings.kind != ScheduleKind::Plateau {
            return;
        }
        let Some(loss) = valid_loss else { return };
        match state.best {
            Some(best) if loss >= best => {
                state.bad_epochs += 1;
                if state.bad_epochs > self.settings.patience {
                    state.plateau_scale *= self.settings.factor;
                    state.bad_epochs = 0;
                }
            }
            _ => {
                state.best = Some(loss);
                state.bad_epochs = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(kind: ScheduleKind) -> ScheduleSettings {
        ScheduleSettings {
            kind,
            ..ScheduleSettings::default()
        }
    }

    #[test]
    fn step_keeps_the_rate_until_start_epoch_then_decays_each_step_size() {
        let s = Schedule::new(
            ScheduleSettings {
                start_epoch: 4,
                gamma: 0.5,
                step_size: 1,
                ..settings(ScheduleKind::Step)
            },
            1.0,
        );
        let st = ScheduleState::default();
        let lrs: Vec<f64> = (1..=7).map(|e| s.lr(&st, e, 0.0)).collect();
        assert_eq!(lrs, vec![1.0, 1.0, 1.0, 1.0, 0.5, 0.25, 0.125]);
        let s2 = Schedule::new(
            ScheduleSettings {
                step_size: 2,
                gamma: 0.1,
                ..settings(ScheduleKind::Step)
            },
            1.0,
        );
        let lrs: Vec<f64> = (1..=4).map(|e| s2.lr(&st, e, 0.0)).collect();
        assert!((lrs[0] - 0.1).abs() < 1e-12 && (lrs[1] - 0.1).abs() < 1e-12);
        assert!((lrs[2] - 0.01).abs() < 1e-12 && (lrs[3] - 0.01).abs() < 1e-12);
    }

    #[test]
    fn cosine_goes_from_base_to_min() {
        let s = Schedule::new(
            ScheduleSettings {
                min_lr: 0.1,
                ..settings(ScheduleKind::Cosine)
            },
            1.0,
        );
        let st = ScheduleState::default();
        assert!((s.lr(&st, 1, 0.0) - 1.0).abs() < 1e-12);
        assert!((s.lr(&st, 1, 0.5) - 0.55).abs() < 1e-12);
        assert!((s.lr(&st, 1, 1.0) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn plateau_divides_like_word_language_model() {
        let s = Schedule::new(settings(ScheduleKind::Plateau), 20.0);
        let mut st = ScheduleState::default();
        let mut lrs = vec![];
        for loss in [5.0, 4.0, 4.5, 3.9, 3.9] {
            s.end_epoch(&mut st, Some(loss));
            lrs.push(s.lr(&st, 1, 0.0));
        }
        assert_eq!(lrs, vec![20.0, 20.0, 5.0, 5.0, 1.25]);
    }

    #[test]
    fn plateau_patience_waits() {
        let s = Schedule::new(
            ScheduleSettings {
                patience: 1,
                ..settings(ScheduleKind::Plateau)
            },
            1.0,
        );
        let mut st = ScheduleState::default();
        let mut lrs = vec![];
        for loss in [5.0, 6.0, 6.0, 6.0] {
            s.end_epoch(&mut st, Some(loss));
            lrs.push(s.lr(&st, 1, 0.0));
        }
        assert_eq!(lrs, vec![1.0, 1.0, 0.25, 0.25]);
    }
}
