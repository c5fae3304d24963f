//! Random BPTT lengths (Merity et al. 2017, section 4.1): each window's length is drawn
//! around `bptt` so that over the epochs every token starts a window at varied positions.
//!
//! With probability 0.95 the mean is `bptt`, otherwise `bptt / 2`; the length is drawn from a
//! normal distribution with that mean and standard deviation 5, rounded down, and at least 5
//! (AWD-LSTM's `main.py`). The trainer scales the learning rate of each step by
//! `length / bptt`, since the loss is a mean over the window's tokens.
//!
//! The lengths of an epoch are a function of (seed, epoch) alone, drawn before the epoch
//! starts, so a resumed run cuts the stream exactly where the uninterrupted run did; nothing
//! of this generator needs to be saved in a checkpoint.
use lstm_lm_text_prep::TbpttBatcher;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::TrainError;
use crate::data::{Batch, Split};

/// Probability that a window's mean length is `bptt` (otherwise `bptt / 2`).
pub const FULL_LENGTH_PROBABILITY: f64 = 0.95;
/// Standard deviation of a window's length around its mean.
pub const LENGTH_SD: f64 = 5.0;
/// Shortest window drawn.
pub const MIN_LENGTH: usize = 5;

/// One window length around `bptt`.
pub fn draw_length(rng: &mut impl Rng, bptt: usize) -> usize {
    let mean = if rng.random::<f64>() < FULL_LENGTH_PROBABILITY {
        bptt as f64
    } else {
        bptt as f64 / 2.0
    };
    // Box-Muller: one standard normal draw from two uniform ones.
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    let length = (mean + LENGTH_SD * z).floor();
    if length.is_finite() && length > MIN_LENGTH as f64 {
        length as usize
    } else {
        MIN_LENGTH
    }
}

/// The window lengths of one epoch over a stream whose columns hold `steps` targets each:
/// drawn until they cover the steps (the last one cut to what remains).
pub fn window_lengths(seed: u64, epoch: usize, steps: usize, bptt: usize) -> Vec<usize> {
    // A stream of its own, apart from the step seeds of dropout and the n-gram shuffle.
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xB877_0000_0000_0000 ^ epoch as u64);
    let mut lengths = Vec::new();
    let mut covered = 0;
    while covered < steps {
        let length = draw_length(&mut rng, bptt).min(steps - covered);
        lengths.push(length);
        covered += length;
    }
    lengths
}

/// Targets per column of a stream split with `batch_size` columns (0 when it is too short).
pub fn steps_per_column(split: &Split, batch_size: usize) -> usize {
    match split {
        Split::Stream { ids } => (ids.len() / batch_size.max(1)).saturating_sub(1),
        Split::Ngram { .. } => 0,
    }
}

/// The stream's windows with the given lengths, in order.
///
/// # Errors
/// The n-gram recipe (random lengths apply to streams only), or a stream too short for two
/// rows of `batch_size`.
pub fn batches<'a>(
    split: &'a Split,
    batch_size: usize,
    lengths: &'a [usize],
) -> Result<Box<dyn Iterator<Item = Batch> + 'a>, TrainError> {
    let Split::Stream { ids } = split else {
        return Err(TrainError::Settings(
            "data.random_bptt applies to the stream recipe only".into(),
        ));
    };
    let batcher = TbpttBatcher::new(ids.as_slice(), batch_size, 1)?;
    let mut start = 0;
    Ok(Box::new(lengths.iter().enumerate().map_while(
        move |(k, &len)| {
            let w = batcher.window_at(k, start, len)?;
            start += len;
            Some(Batch {
                inputs: w.inputs,
                targets: w.targets,
                batch: w.batch,
                width: w.seq_len,
                positions: Vec::new(),
            })
        },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With a fixed seed: the share of half-length windows, the mean and spread of full ones,
    /// the floor of 5, and the same lengths for the same (seed, epoch).
    #[test]
    fn lengths_follow_awd_lstm_distribution() {
        let bptt = 70;
        let lengths = window_lengths(141, 1, 2_000_000, bptt);
        let n = lengths.len() - 1; // the last one is cut to the stream's end
        let body = &lengths[..n];
        let (short, long): (Vec<f64>, Vec<f64>) =
            body.iter().map(|&l| l as f64).partition(|&l| l < 52.5);
        let share_short = short.len() as f64 / n as f64;
        assert!((share_short - 0.05).abs() < 0.01, "{share_short}");
        let mean = long.iter().sum::<f64>() / long.len() as f64;
        let sd = (long.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / long.len() as f64).sqrt();
        // floor() lowers the mean by about one half.
        assert!((mean - 69.5).abs() < 0.2, "mean {mean}");
        assert!((sd - 5.0).abs() < 0.2, "sd {sd}");
        let short_mean = short.iter().sum::<f64>() / short.len() as f64;
        assert!((short_mean - 34.5).abs() < 0.5, "{short_mean}");
        assert_eq!(lengths.iter().sum::<usize>(), 2_000_000);
        assert!(lengths[..n].iter().all(|&l| l >= MIN_LENGTH));
        assert_eq!(
            window_lengths(141, 1, 5000, bptt),
            window_lengths(141, 1, 5000, bptt)
        );
        assert_ne!(
            window_lengths(141, 2, 5000, bptt),
            window_lengths(141, 1, 5000, bptt)
        );
        // Tiny bptt: never below the floor.
        assert!(
            window_lengths(1, 1, 1000, 2)
                .iter()
                .rev()
                .skip(1)
                .all(|&l| l >= 5)
        );
    }

    #[test]
    fn windows_cover_the_stream_in_order() {
        let ids: Vec<u32> = (0..202).collect();
        let split = Split::Stream { ids };
        // Two columns of 101 tokens: 100 targets each.
        assert_eq!(steps_per_column(&split, 2), 100);
        let lengths = window_lengths(3, 1, 100, 12);
        let windows: Vec<Batch> = batches(&split, 2, &lengths).unwrap().collect();
        assert_eq!(windows.len(), lengths.len());
        let mut next = 0u32;
        for (w, &len) in windows.iter().zip(&lengths) {
            assert_eq!(w.width, len);
            // Column 0 continues where the last window stopped; targets are the next tokens.
            assert_eq!(w.inputs[0], next);
            assert_eq!(w.targets[0], next + 1);
            assert_eq!(w.inputs[len], 101 + next);
            next += len as u32;
        }
        assert_eq!(next, 100);
    }
}
