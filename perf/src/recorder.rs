//! A latency recorder for the load generator's hot path that turns into an HdrHistogram at
//! the end of a run.
//!
//! [`Histogram::saturating_record`] is cheap, but the generator records four to five values
//! per message (send lag; order → Accepted, its second, its inbound and outbound legs;
//! executed; canceled) and at hundreds of thousands of messages per second that adds up. The
//! [`Recorder`] keeps only the bucket counts, laid out exactly as the HdrHistogram it was
//! made from lays them out (log-linear: `2^⌈log₂(2·10^sigfig)⌉` sub-buckets per power of two,
//! unit 1), so recording is an index computation and an increment. [`Recorder::histogram`]
//! then records every bucket's count at the bucket's lowest value into that HdrHistogram:
//! every sample lands in the bucket it would have landed in had it been recorded directly,
//! so the counts, the total, the minimum and maximum (which HdrHistogram reports at bucket
//! resolution), the mean and every percentile are the same (see the tests).

use anyhow::bail;
use hdrhistogram::Histogram;

/// Bucket counts of one HdrHistogram, recorded cheaply.
#[derive(Clone, Debug)]
pub struct Recorder {
    /// An empty histogram of the configuration recorded for; filled by [`Recorder::histogram`].
    empty: Histogram<u64>,
    /// HdrHistogram's counts array, index for index.
    counts: Vec<u64>,
    /// `64 − log₂(sub-bucket count)`: bucket of a value = this − leading zeros.
    leading_zero_count_base: u32,
    /// `sub-bucket count − 1`.
    sub_bucket_mask: u64,
    /// `log₂(sub-bucket count / 2)`.
    sub_bucket_half_count_magnitude: u32,
    /// Values above this that fall beyond the last bucket are recorded as this.
    highest_trackable_value: u64,
}

impl Recorder {
    /// A recorder for `empty`: an empty histogram without auto-resize whose lowest
    /// discernible value is 1 (as every latency histogram of the generator is).
    pub fn new(empty: Histogram<u64>) -> anyhow::Result<Recorder> {
        if empty.low() != 1 || !empty.is_empty() || empty.is_auto_resize() {
            bail!("the recorder needs an empty, fixed-size histogram with unit 1");
        }
        // As `Histogram::new_with_bounds` derives them.
        let largest = 2 * 10_u32.pow(u32::from(empty.sigfig()));
        let sub_bucket_count_magnitude = f64::from(largest).log2().ceil() as u32;
        let recorder = Recorder {
            counts: vec![0; empty.distinct_values()],
            leading_zero_count_base: 64 - sub_bucket_count_magnitude,
            sub_bucket_mask: (1u64 << sub_bucket_count_magnitude) - 1,
            sub_bucket_half_count_magnitude: sub_bucket_count_magnitude - 1,
            highest_trackable_value: empty.high(),
            empty,
        };
        Ok(recorder)
    }

    /// HdrHistogram's counts index of `value`.
    #[inline]
    fn index(&self, value: u64) -> usize {
        let bucket = self.leading_zero_count_base - (value | self.sub_bucket_mask).leading_zeros();
        let sub_bucket = (value >> bucket) as usize;
        // Bucket b > 0 uses the upper half of its sub-buckets only; bucket 0 all of them.
        (((bucket as usize) + 1) << self.sub_bucket_half_count_magnitude) + sub_bucket
            - (1 << self.sub_bucket_half_count_magnitude)
    }

    /// The lowest value of counts index `index` (HdrHistogram's `value_for`).
    fn value_at(&self, index: usize) -> u64 {
        let half = 1usize << self.sub_bucket_half_count_magnitude;
        let bucket = (index >> self.sub_bucket_half_count_magnitude) as isize - 1;
        let sub_bucket = (index & (half - 1)) + half;
        if bucket < 0 {
            (sub_bucket - half) as u64
        } else {
            (sub_bucket as u64) << bucket
        }
    }

    /// Records `value` as [`Histogram::saturating_record`] would: values beyond the last
    /// bucket count as the highest trackable value.
    #[inline(always)]
    pub fn record(&mut self, value: u64) {
        let index = self.index(value);
        if let Some(count) = self.counts.get_mut(index) {
            *count = count.saturating_add(1);
        } else {
            let index = self.index(self.highest_trackable_value);
            if let Some(count) = self.counts.get_mut(index) {
                *count = count.saturating_add(1);
            }
        }
    }

    /// The HdrHistogram holding everything recorded.
    pub fn histogram(&self) -> Histogram<u64> {
        let mut histogram = self.empty.clone();
        for (index, &count) in self.counts.iter().enumerate() {
            if count != 0 {
                // In range by construction: the value's index is `index`.
                let _ = histogram.record_n(self.value_at(index), count);
            }
        }
        histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Rng;

    /// Whatever is recorded, the histogram equals the one recorded directly: counts, total,
    /// min, max (that is what `PartialEq` compares), and so mean and percentiles.
    #[test]
    fn same_histogram_as_recording_directly() {
        for sigfig in [2, 3] {
            let empty = Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, sigfig).unwrap();
            let mut direct = empty.clone();
            let mut recorder = Recorder::new(empty.clone()).unwrap();
            let mut rng = Rng::new(u64::from(sigfig));
            let mut values: Vec<u64> = vec![1, 2, 255, 256, 2047, 2048, 2049, 4095, 4096, 1 << 40];
            // Around and beyond the top: the last bucket reaches a little past `high`.
            let high = empty.high();
            values.extend([
                high - 1,
                high,
                high + 1,
                high + (1 << 30),
                u64::MAX / 2,
                u64::MAX,
            ]);
            for _ in 0..200_000 {
                // Log-uniform over the whole range.
                let bits = rng.below(64);
                values.push((rng.next_u64() >> bits).max(1));
            }
            for (n, &value) in values.iter().enumerate() {
                direct.saturating_record(value);
                recorder.record(value);
                if n % 50_000 == 0 || n < 20 {
                    assert_eq!(
                        recorder.histogram(),
                        direct,
                        "sigfig {sigfig}, after {value}"
                    );
                }
            }
            let converted = recorder.histogram();
            assert_eq!(converted, direct);
            assert_eq!(converted.len(), direct.len());
            assert_eq!(converted.min(), direct.min());
            assert_eq!(converted.max(), direct.max());
            assert_eq!(converted.mean().to_bits(), direct.mean().to_bits());
            for q in [0.0, 0.5, 0.9, 0.99, 0.999, 0.9999, 1.0] {
                assert_eq!(converted.value_at_quantile(q), direct.value_at_quantile(q));
            }
            let a: Vec<(u64, u64)> = converted
                .iter_quantiles(2)
                .map(|v| (v.value_iterated_to(), v.count_since_last_iteration()))
                .collect();
            let b: Vec<(u64, u64)> = direct
                .iter_quantiles(2)
                .map(|v| (v.value_iterated_to(), v.count_since_last_iteration()))
                .collect();
            assert_eq!(a, b);
        }
    }

    #[test]
    fn empty_stays_empty() {
        let empty = Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).unwrap();
        let recorder = Recorder::new(empty.clone()).unwrap();
        assert!(recorder.histogram().is_empty());
        assert_eq!(recorder.histogram(), empty);
    }
}
