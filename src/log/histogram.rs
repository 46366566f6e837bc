//! Turning a list of values into TensorBoard's `HistogramProto`.
//!
//! We use simple linear buckets: [`DEFAULT_BUCKETS`] equal-width buckets
//! from the smallest to the largest value, the count `tf.summary.histogram`
//! uses by default in TensorFlow 2. TensorFlow 1's exponential default
//! (limits ±1e-12·1.1^k up to 1e20, ~1500 buckets) suits values spanning many
//! orders of magnitude, but eigen-spectra read better on a linear axis and
//! the records stay small.
//!
//! Bucket `i` counts values in `(bucket_limit[i-1], bucket_limit[i]]`, the
//! first bucket from `-DBL_MAX` (`histogram.proto`); the last limit is the
//! maximum itself, which is how TensorBoard closes the last bar
//! (`data_compat._migrate_histogram_value` uses `min` and `max` as the outer
//! edges).

use super::event::HistogramProto;

/// Number of buckets `add_histogram` uses (TensorFlow 2's default).
pub const DEFAULT_BUCKETS: usize = 30;

/// A histogram of the finite entries of `values` in `buckets` linear buckets.
///
/// NaN and infinite values are left out (they have no place on the axis); if
/// nothing finite remains, the histogram is empty (`num == 0`, no buckets).
/// When all values are equal there is a single bucket. `buckets == 0` is
/// treated as 1.
pub fn linear_histogram(values: &[f64], buckets: usize) -> HistogramProto {
    let finite = || values.iter().copied().filter(|v| v.is_finite());
    let Some((min, max)) = finite().fold(None, |acc: Option<(f64, f64)>, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    }) else {
        return HistogramProto::default();
    };

    let buckets = if min == max { 1 } else { buckets.max(1) };
    let width = (max - min) / buckets as f64;
    let mut bucket_limit: Vec<f64> = (1..=buckets).map(|i| min + width * i as f64).collect();
    // Rounding could leave the last limit a hair below max; pin it.
    if let Some(last) = bucket_limit.last_mut() {
        *last = max;
    }
    let mut bucket = vec![0.0; buckets];
    let (mut num, mut sum, mut sum_squares) = (0.0, 0.0, 0.0);
    for v in finite() {
        // The first limit >= v: bucket i holds (limit[i-1], limit[i]].
        let i = bucket_limit.partition_point(|&limit| limit < v);
        bucket[i.min(buckets - 1)] += 1.0;
        num += 1.0;
        sum += v;
        sum_squares += v * v;
    }
    HistogramProto {
        min,
        max,
        num,
        sum,
        sum_squares,
        bucket_limit,
        bucket,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_buckets_count_every_value_once() {
        let values: Vec<f64> = (0..100).map(|i| i as f64 / 10.0).collect();
        let h = linear_histogram(&values, 10);
        assert_eq!((h.min, h.max, h.num), (0.0, 9.9, 100.0));
        assert_eq!(h.bucket_limit.len(), 10);
        assert_eq!(h.bucket.len(), 10);
        assert_eq!(*h.bucket_limit.last().unwrap(), 9.9);
        assert_eq!(h.bucket.iter().sum::<f64>(), 100.0);
        assert!(h.bucket_limit.windows(2).all(|w| w[0] < w[1]));
        assert!((h.sum - 495.0).abs() < 1e-9);
        let sq: f64 = values.iter().map(|v| v * v).sum();
        assert!((h.sum_squares - sq).abs() < 1e-9);
    }

    #[test]
    fn values_on_a_limit_go_to_the_bucket_it_closes() {
        // Limits 1, 2, 3, 4 for values 0..=4: 0 and 1 in bucket 0.
        let h = linear_histogram(&[0.0, 1.0, 2.0, 3.0, 4.0], 4);
        assert_eq!(h.bucket_limit, vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(h.bucket, vec![2.0, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn degenerate_inputs_do_not_panic() {
        let empty = linear_histogram(&[], 30);
        assert_eq!(empty.num, 0.0);
        assert!(empty.bucket.is_empty());

        let junk = linear_histogram(&[f64::NAN, f64::INFINITY], 30);
        assert_eq!(junk.num, 0.0);

        let same = linear_histogram(&[2.5; 7], 30);
        assert_eq!(
            (same.bucket_limit.clone(), same.bucket.clone()),
            (vec![2.5], vec![7.0])
        );

        let mixed = linear_histogram(&[1.0, f64::NAN, 3.0], 0);
        assert_eq!((mixed.num, mixed.bucket.len()), (2.0, 1));
    }
}
