//! Closeness checks for tests across the workspace (not part of the model's API).
//!
//! Folding differences from 0.0 with `f32::max` drops NaN (`f32::max` returns the other operand), so
//! an output of NaN everywhere would pass such a check; these fail on any non-finite value in
//! either slice and on slices of different lengths.

use std::fmt;

/// Why two slices cannot be compared: a value that is not finite, or different lengths.
#[derive(Debug, Clone, PartialEq)]
pub enum NotComparable {
    /// The slices have different lengths.
    Lengths {
        /// Length of the values under test.
        got: usize,
        /// Length of the reference values.
        want: usize,
    },
    /// A value is NaN or infinite.
    NotFinite {
        /// `"got"` or `"want"`: which slice holds it.
        side: &'static str,
        /// Its index.
        index: usize,
        /// The value itself.
        value: f64,
    },
}

impl fmt::Display for NotComparable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotComparable::Lengths { got, want } => {
                write!(f, "lengths differ: got {got} values, want {want}")
            }
            NotComparable::NotFinite { side, index, value } => {
                write!(f, "{side}[{index}] = {value} is not finite")
            }
        }
    }
}

impl std::error::Error for NotComparable {}

/// The largest `|got[i] − want[i]|`, computed in f64; an error when the lengths differ or any
/// value of either slice is NaN or infinite.
pub fn max_abs_diff<T: Copy + Into<f64>>(got: &[T], want: &[T]) -> Result<f64, NotComparable> {
    if got.len() != want.len() {
        return Err(NotComparable::Lengths {
            got: got.len(),
            want: want.len(),
        });
    }
    let mut worst = 0.0f64;
    for (index, (&a, &b)) in got.iter().zip(want).enumerate() {
        let (a, b): (f64, f64) = (a.into(), b.into());
        for (side, value) in [("got", a), ("want", b)] {
            if !value.is_finite() {
                return Err(NotComparable::NotFinite { side, index, value });
            }
        }
        worst = worst.max((a - b).abs());
    }
    Ok(worst)
}

/// Panics, naming `what`, unless `got` and `want` have the same length, hold only finite values,
/// and differ by at most `tolerance` everywhere.
#[track_caller]
pub fn assert_close<T: Copy + Into<f64>>(
    what: &str,
    got: &[T],
    want: &[T],
    tolerance: impl Into<f64>,
) {
    let tolerance = tolerance.into();
    match max_abs_diff(got, want) {
        Ok(worst) => assert!(
            worst <= tolerance,
            "{what}: max abs difference {worst} > {tolerance}"
        ),
        Err(e) => panic!("{what}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_difference_is_found() {
        assert_eq!(max_abs_diff(&[1.0f32, 2.0, 3.0], &[1.0, 2.5, 2.0]), Ok(1.0));
        assert_eq!(max_abs_diff::<f64>(&[], &[]), Ok(0.0));
        assert_close("near", &[1.0f32, 2.0], &[1.0, 2.00001], 1e-4f32);
    }

    #[test]
    fn nan_and_infinity_never_pass() {
        let nan = [f32::NAN; 3];
        let zeros = [0.0f32; 3];
        for (got, want) in [(&nan, &zeros), (&zeros, &nan), (&nan, &nan)] {
            assert!(
                matches!(
                    max_abs_diff(got, want),
                    Err(NotComparable::NotFinite { index: 0, .. })
                ),
                "{got:?} vs {want:?}"
            );
        }
        let inf = [0.0, f64::INFINITY];
        assert!(matches!(
            max_abs_diff(&inf, &inf),
            Err(NotComparable::NotFinite {
                side: "got",
                index: 1,
                ..
            })
        ));
        let minus_inf = [f32::NEG_INFINITY];
        assert!(max_abs_diff(&[0.0f32], &minus_inf).is_err());
        // The check the helper replaces lets all-NaN output through.
        let dropped = nan
            .iter()
            .zip(&zeros)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, |a, b| a.max(b));
        assert_eq!(dropped, 0.0);
    }

    #[test]
    fn different_lengths_never_pass() {
        assert_eq!(
            max_abs_diff(&[1.0f32], &[1.0, 1.0]),
            Err(NotComparable::Lengths { got: 1, want: 2 })
        );
    }

    #[test]
    #[should_panic(expected = "all-nan: got[0] = NaN is not finite")]
    fn assert_close_panics_on_nan() {
        assert_close("all-nan", &[f32::NAN, f32::NAN], &[0.0, 0.0], 1.0f32);
    }

    #[test]
    #[should_panic(expected = "inf: want[1] = inf is not finite")]
    fn assert_close_panics_on_infinity() {
        assert_close("inf", &[0.0f32, 0.0], &[0.0, f32::INFINITY], 1.0f32);
    }

    #[test]
    #[should_panic(expected = "far: max abs difference")]
    fn assert_close_panics_beyond_the_tolerance() {
        assert_close("far", &[0.0f32], &[0.5], 0.25f32);
    }
}
