//! Many short texts through the model at once: sorted by length so that a batch holds texts of
//! about the same length, right-padded (each text starts from a zero state and only its own
//! positions are read, so what pads it cannot change its results), in batches bounded by rows
//! and by cells.

/// One batch: which texts (indices into the input) and the longest one's length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LengthBatch {
    /// Indices of the texts, shortest first.
    pub rows: Vec<usize>,
    /// Length of the longest text of the batch (the padded width).
    pub width: usize,
}

/// Groups texts of `lengths` into batches of at most `max_rows` texts whose padded size
/// (rows × width) stays within `max_cells` (a text longer than that gets a batch of its own).
/// Every index appears once; empty texts (length 0) are left out.
pub(crate) fn length_batches(
    lengths: &[usize],
    max_rows: usize,
    max_cells: usize,
) -> Vec<LengthBatch> {
    let mut order: Vec<usize> = (0..lengths.len()).filter(|&i| lengths[i] > 0).collect();
    order.sort_by_key(|&i| lengths[i]);
    let mut out: Vec<LengthBatch> = Vec::new();
    let mut current = LengthBatch {
        rows: Vec::new(),
        width: 0,
    };
    for i in order {
        let width = lengths[i].max(current.width);
        let fits =
            current.rows.len() < max_rows.max(1) && (current.rows.len() + 1) * width <= max_cells;
        if !current.rows.is_empty() && !fits {
            out.push(std::mem::replace(
                &mut current,
                LengthBatch {
                    rows: Vec::new(),
                    width: 0,
                },
            ));
        }
        current.width = current.width.max(lengths[i]);
        current.rows.push(i);
    }
    if !current.rows.is_empty() {
        out.push(current);
    }
    out
}

/// The ids of `rows` of `texts`, each right-padded with `pad` to `width`, row after row.
pub(crate) fn padded_ids(texts: &[Vec<u32>], rows: &[usize], width: usize, pad: u32) -> Vec<u32> {
    let mut ids = Vec::with_capacity(rows.len() * width);
    for &r in rows {
        ids.extend_from_slice(&texts[r]);
        ids.resize(ids.len() + width - texts[r].len(), pad);
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_text_lands_in_one_batch_within_the_bounds() {
        let lengths = [5, 0, 3, 9, 3, 1, 40, 7];
        let batches = length_batches(&lengths, 3, 20);
        let mut seen: Vec<usize> = batches.iter().flat_map(|b| b.rows.clone()).collect();
        seen.sort();
        assert_eq!(seen, vec![0, 2, 3, 4, 5, 6, 7]);
        for b in &batches {
            assert!(b.rows.len() <= 3);
            assert_eq!(b.width, b.rows.iter().map(|&r| lengths[r]).max().unwrap());
            assert!(b.rows.len() * b.width <= 20 || b.rows.len() == 1, "{b:?}");
        }
        assert!(batches.iter().any(|b| b.rows == vec![6]));
        assert_eq!(
            padded_ids(&[vec![1, 2], vec![3]], &[1, 0], 2, 0),
            vec![3, 0, 1, 2]
        );
    }
}
