//! The bound on generation streams admitted at once: a request reserves all its streams up
//! front or is refused (429); each stream gives its place back when it ends, however it ends.
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::error::ApiError;
use crate::metrics::Metrics;

/// One admitted stream's place; dropping it frees the place.
#[derive(Debug)]
pub struct StreamSlot {
    metrics: Arc<Metrics>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.metrics.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Reserves `n` places out of `limit`, or none and a 429 error.
pub fn admit(metrics: &Arc<Metrics>, n: usize, limit: usize) -> Result<Vec<StreamSlot>, ApiError> {
    let mut current = metrics.admitted.load(Ordering::Acquire);
    loop {
        if current + n > limit {
            return Err(ApiError::busy(limit));
        }
        match metrics.admitted.compare_exchange_weak(
            current,
            current + n,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => break,
            Err(seen) => current = seen,
        }
    }
    Ok((0..n)
        .map(|_| StreamSlot {
            metrics: Arc::clone(metrics),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_reserved_all_or_none_and_given_back_on_drop() {
        let m = Arc::new(Metrics::default());
        let a = admit(&m, 3, 4).unwrap();
        assert!(admit(&m, 2, 4).is_err());
        let b = admit(&m, 1, 4).unwrap();
        drop(a);
        assert_eq!(m.admitted.load(Ordering::Acquire), 1);
        drop(b);
        assert!(admit(&m, 4, 4).is_ok());
    }
}
