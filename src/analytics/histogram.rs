//! Duration histograms for the report's percentiles.
//!
//! Exact percentiles need every value, so a report over weeks would merge millions of them per
//! render. Instead each duration is counted in a logarithmic bucket: bucket `i` (1 and up)
//! holds the milliseconds in `(γ^(i-2), γ^(i-1)]`, γ = 1.02, and bucket 0 holds 0. A bucket's
//! value is `2γ^(i-1) / (1 + γ)`, rounded to the millisecond: within 1% of every duration in
//! it, and exactly the duration for durations under 50 ms (each has a bucket of its own). The
//! same duration falls in the same bucket in ClickHouse (the `bucket` expression of the
//! report queries, see `handoff_metrics.sql`) and here ([`bucket_of`]).
//!
//! A percentile is taken as `quantileExact` takes it: the value at index `floor(level * n)` of
//! the sorted values; the histogram gives that value's bucket, so the figure is the exact
//! percentile to within 1%. Counts of a few thousand buckets merge in microseconds, whichever
//! way they are split (per hour, per day, per combination of attributes).
//!
//! Keys: ClickHouse sends one `UInt16` per duration, `kind * 2048 + bucket`, [`Kind`] saying
//! which duration it is.

/// The bucket of the duration `{v}` (milliseconds) in ClickHouse: the text every report query
/// uses (a unit test checks it), the same as [`bucket_of`] (a test against a real server
/// checks it).
pub const BUCKET_SQL: &str =
    "toUInt16(if({v} < 1, 0, least(2047, ceil(log({v}) / log(1.02)) + 1)))";

/// γ: the ratio between the bounds of consecutive buckets.
const GAMMA: f64 = 1.02;
/// Buckets per kind of duration (keys are `kind * BUCKETS + bucket`).
pub const BUCKETS: u16 = 2048;

/// Which duration a histogram key counts (the order of `h_hist` in `handoff_metrics.sql`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Request to first assignment.
    AssignWait = 0,
    /// Request to the first agent reply.
    ReplyWait = 1,
    /// Offer to acceptance.
    Accept = 2,
    /// Assignment to resolved/released.
    Handle = 3,
}

impl Kind {
    /// Every kind, in key order.
    pub const ALL: [Kind; 4] = [
        Kind::AssignWait,
        Kind::ReplyWait,
        Kind::Accept,
        Kind::Handle,
    ];

    /// The kind of a key, and the bucket.
    pub fn split(key: u16) -> Option<(Kind, u16)> {
        let kind = *Kind::ALL.get(usize::from(key / BUCKETS))?;
        Some((kind, key % BUCKETS))
    }
}

/// The bucket of a duration in milliseconds (the same as the SQL expression
/// `if(v < 1, 0, least(2047, ceil(log(v) / log(1.02)) + 1))`).
pub fn bucket_of(ms: u64) -> u16 {
    if ms < 1 {
        return 0;
    }
    let i = ((ms as f64).ln() / GAMMA.ln()).ceil() + 1.0;
    i.min(f64::from(BUCKETS - 1)) as u16
}

/// The value a bucket stands for, in milliseconds: within 1% of every duration in it.
pub fn bucket_value(bucket: u16) -> u64 {
    if bucket == 0 {
        return 0;
    }
    (2.0 * GAMMA.powi(i32::from(bucket) - 1) / (1.0 + GAMMA)).round() as u64
}

/// The figure the report gives for a duration: its bucket's value.
pub fn round(ms: u64) -> u64 {
    bucket_value(bucket_of(ms))
}

/// Counts per bucket of one kind of duration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    counts: Vec<u64>,
}

impl Histogram {
    /// Counts one duration in `bucket`.
    pub fn add(&mut self, bucket: u16) {
        self.add_count(bucket, 1);
    }

    /// Counts `count` durations in `bucket`.
    pub fn add_count(&mut self, bucket: u16, count: u64) {
        let i = usize::from(bucket.min(BUCKETS - 1));
        if self.counts.len() <= i {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] += count;
    }

    /// Adds counts per bucket, from bucket 0 on.
    pub fn add_dense(&mut self, counts: &[u64]) {
        let n = counts.len().min(usize::from(BUCKETS));
        if self.counts.len() < n {
            self.counts.resize(n, 0);
        }
        for (c, add) in self.counts.iter_mut().zip(&counts[..n]) {
            *c += add;
        }
    }

    /// Adds another histogram's counts.
    pub fn add_histogram(&mut self, other: &Histogram) {
        self.add_dense(&other.counts);
    }

    /// How many durations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The values at index `floor(level * n)` of the sorted durations, one per level, as
    /// their buckets' values; empty when there are none.
    pub fn percentiles(&self, levels: &[f64]) -> Vec<u64> {
        let n = self.count();
        if n == 0 {
            return Vec::new();
        }
        levels
            .iter()
            .map(|level| {
                let rank = ((level * n as f64).floor() as u64).min(n - 1);
                let mut seen = 0;
                let bucket = self
                    .counts
                    .iter()
                    .position(|c| {
                        seen += c;
                        seen > rank
                    })
                    .unwrap_or(self.counts.len() - 1);
                bucket_value(bucket as u16)
            })
            .collect()
    }
}

/// One histogram per kind of duration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Durations {
    kinds: [Histogram; 4],
}

impl Durations {
    /// Counts keys as ClickHouse sends them (`kind * 2048 + bucket`); unknown kinds are left
    /// out.
    pub fn add_keys(&mut self, keys: &[u16]) {
        for &k in keys {
            if let Some((kind, bucket)) = Kind::split(k) {
                self.kinds[kind as usize].add(bucket);
            }
        }
    }

    /// The histogram of one kind.
    pub fn kind(&self, kind: Kind) -> &Histogram {
        &self.kinds[kind as usize]
    }

    /// The histogram of one kind, to add to.
    pub fn kind_mut(&mut self, kind: Kind) -> &mut Histogram {
        &mut self.kinds[kind as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_duration_is_within_one_percent_of_its_bucket_value() {
        let mut ms = 1u64;
        while ms < 40 * 86_400_000 {
            let v = round(ms) as f64;
            let err = (v - ms as f64).abs() / ms as f64;
            assert!(err <= 0.01 + 0.5 / ms as f64, "{ms} -> {v}");
            ms = ms + 1 + ms / 997;
        }
        assert_eq!(round(0), 0);
    }

    #[test]
    fn short_durations_keep_their_exact_value() {
        for ms in 0..50 {
            assert_eq!(round(ms), ms);
        }
    }

    #[test]
    fn buckets_grow_with_the_duration() {
        let mut last = 0;
        for ms in 0..200_000 {
            let b = bucket_of(ms);
            assert!(b >= last, "{ms}");
            last = b;
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn percentiles_take_the_value_at_index_floor_level_times_n() {
        // 2, 8, 15, 50, 205 s: index floor(0.5 * 5) = 2 -> 15 s; floor(0.9 * 5) = 4 -> 205 s.
        let mut h = Histogram::default();
        for s in [50u64, 2, 205, 15, 8] {
            h.add(bucket_of(s * 1000));
        }
        assert_eq!(
            h.percentiles(&[0.5, 0.9, 0.99]),
            vec![round(15_000), round(205_000), round(205_000)]
        );
        // An even count: the upper middle value, as quantileExact.
        let mut h = Histogram::default();
        for ms in [10u64, 20] {
            h.add(bucket_of(ms));
        }
        assert_eq!(h.percentiles(&[0.5]), vec![20]);
        assert!(Histogram::default().percentiles(&[0.5]).is_empty());
    }

    #[test]
    fn percentiles_are_within_one_percent_of_the_exact_ones() {
        // A skewed spread of durations, like queue waits.
        let mut values: Vec<u64> = (0..20_000u64)
            .map(|i| (i * 7919 % 20_000).pow(3) / 13_000_000)
            .collect();
        let mut h = Histogram::default();
        for &v in &values {
            h.add(bucket_of(v));
        }
        values.sort_unstable();
        let levels = [0.5, 0.9, 0.99];
        for (level, got) in levels.iter().zip(h.percentiles(&levels)) {
            let exact = values[(level * values.len() as f64) as usize];
            assert_eq!(got, round(exact), "p{level}");
        }
    }

    #[test]
    fn dense_and_sparse_counts_merge_alike() {
        let mut a = Histogram::default();
        a.add_dense(&[1, 0, 3]);
        a.add_count(5, 2);
        let mut b = Histogram::default();
        for bucket in [0, 2, 2, 2, 5, 5] {
            b.add(bucket);
        }
        assert_eq!(a, b);
        let mut d = Durations::default();
        d.add_keys(&[3, BUCKETS + 4, 3 * BUCKETS + 1, 4 * BUCKETS]);
        assert_eq!(d.kind(Kind::AssignWait).count(), 1);
        assert_eq!(d.kind(Kind::ReplyWait).count(), 1);
        assert_eq!(d.kind(Kind::Handle).count(), 1);
    }
}
