//! Keras' `to_categorical`: class labels as one-hot rows.
//!
//! Training uses sparse labels (the ids themselves); this exists for one-hot losses and for
//! checking against Keras code.

use crate::error::{Result, TextPrepError};

/// One-hot encodes `labels` as a row-major `[labels.len(), num_classes]` matrix of 0.0 and 1.0.
///
/// # Errors
/// [`TextPrepError::LabelOutOfRange`] for the first label not below `num_classes`.
pub fn to_categorical(labels: &[u32], num_classes: usize) -> Result<Vec<f32>> {
    let mut out = vec![0.0; labels.len() * num_classes];
    for (position, &label) in labels.iter().enumerate() {
        if label as usize >= num_classes {
            return Err(TextPrepError::LabelOutOfRange {
                label,
                position,
                num_classes,
            });
        }
        out[position * num_classes + label as usize] = 1.0;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(labels: &[u32], num_classes: usize, expected: &[f32]) {
        assert_eq!(
            to_categorical(labels, num_classes).unwrap(),
            expected,
            "{labels:?}"
        );
    }

    #[test]
    fn one_hot_rows() {
        check(&[], 3, &[]);
        check(&[0], 1, &[1.0]);
        check(
            &[2, 0, 1],
            3,
            &[0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        );
        check(&[1, 1], 4, &[0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn out_of_range_labels_are_named() {
        let err = to_categorical(&[0, 4, 9], 4).unwrap_err();
        assert_eq!(
            err.to_string(),
            "label 4 at position 1 is out of range for 4 classes; pass a number of classes above the largest label"
        );
        assert!(to_categorical(&[0], 0).is_err());
    }
}
