//! The business formulas of CONTRACT §3 and §4, each once: the roll-ups, the dashboard,
//! the report and the time-series combinations all compute their figures here, so a
//! figure means the same wherever it is read.

/// How many ratings of each value 1 to 5: enough to give the mean rating and the NPS
/// of any set of `satisfaction.rating_received` events, and to combine sets by adding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ratings(pub [i64; 5]);

impl Ratings {
    /// Counts one rating; a value that is not a whole number from 1 to 5 (validation
    /// refuses those) is not counted.
    pub fn add(&mut self, value: f64) {
        if let Some(slot) = Ratings::slot(value) {
            self.0[slot] += 1;
        }
    }

    /// The index of `value`'s count: 0 for a 1, …, 4 for a 5.
    pub fn slot(value: f64) -> Option<usize> {
        (1..=5)
            .find(|v| f64::from(*v) == value)
            .map(|v| v as usize - 1)
    }

    /// Adds another set's counts.
    pub fn merge(&mut self, other: Ratings) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine += theirs;
        }
    }

    /// How many ratings.
    pub fn responses(&self) -> i64 {
        self.0.iter().sum()
    }

    /// The mean rating; `None` over no ratings.
    pub fn mean(&self) -> Option<f64> {
        let weighted: i64 = self.0.iter().zip(1..).map(|(n, v)| n * v).sum();
        ratio(weighted as f64, self.responses())
    }

    /// The net promoter score: 100 · (count of 5 − count of 1, 2 or 3) / responses;
    /// `None` over no ratings.
    pub fn nps(&self) -> Option<f64> {
        let [one, two, three, _, five] = self.0;
        let responses = self.responses();
        (responses > 0).then(|| 100.0 * (five - one - two - three) as f64 / responses as f64)
    }
}

/// `sum / count`; `None` when `count` is 0.
pub fn ratio(sum: f64, count: i64) -> Option<f64> {
    (count > 0).then(|| sum / count as f64)
}

/// The mean of some values; `None` over none.
pub fn mean(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values
        .into_iter()
        .fold((0.0, 0i64), |(s, n), v| (s + v, n + 1));
    ratio(sum, n)
}

/// Rounds half away from zero, as the INTEGER columns hold averages and percentiles.
pub fn round(x: f64) -> i64 {
    x.round() as i64
}

/// Milliseconds as minutes (ms / 60000).
pub fn minutes(ms: f64) -> f64 {
    ms / 60_000.0
}

/// Nearest-rank percentile of an ascending slice: the value at 1-based rank
/// `ceil(p/100 · n)`.
pub fn nearest_rank<V: Copy>(sorted: &[V], p: usize) -> Option<V> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

/// The fraction of the distinct conversations resolved in a period that had no
/// escalation in it: `not_escalated` of `resolved`; `None` when none was resolved.
pub fn ai_resolution_rate(resolved: i64, not_escalated: i64) -> Option<f64> {
    ratio(not_escalated as f64, resolved)
}

/// Conversations escalated ÷ started; 0 when none started (the dashboard's rule).
pub fn escalation_rate(escalated: i64, started: i64) -> f64 {
    ratio(escalated as f64, started).unwrap_or(0.0)
}

/// `100 · (now − before) / before`; 0 where `before` is 0 (the dashboard's comparison).
pub fn percent_change(now: f64, before: f64) -> f64 {
    if before == 0.0 {
        0.0
    } else {
        100.0 * (now - before) / before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nps_counts_fives_against_ones_twos_and_threes() {
        let mut r = Ratings::default();
        for v in [5.0, 5.0, 4.0, 3.0, 1.0] {
            r.add(v);
        }
        assert_eq!(r.0, [1, 0, 1, 1, 2]);
        assert_eq!(r.responses(), 5);
        assert_eq!(r.nps(), Some(0.0));
        assert_eq!(r.mean(), Some(18.0 / 5.0));
        r.add(4.5);
        r.add(0.0);
        assert_eq!(r.responses(), 5, "not ratings");
        assert_eq!(Ratings::default().nps(), None);
        assert_eq!(Ratings::default().mean(), None);
        assert_eq!(Ratings([0, 0, 0, 0, 3]).nps(), Some(100.0));
        assert_eq!(Ratings([1, 1, 1, 0, 0]).nps(), Some(-100.0));
    }

    #[test]
    fn the_mean_of_rating_counts_is_the_mean_of_the_values() {
        let values = [1.0, 2.0, 2.0, 5.0, 4.0, 4.0, 3.0];
        let mut r = Ratings::default();
        values.iter().for_each(|v| r.add(*v));
        assert_eq!(r.mean(), mean(values));
    }

    #[test]
    fn rates_and_changes_follow_the_dashboard_rules() {
        assert_eq!(escalation_rate(1, 4), 0.25);
        assert_eq!(escalation_rate(3, 0), 0.0);
        assert_eq!(percent_change(15.0, 10.0), 50.0);
        assert_eq!(percent_change(15.0, 0.0), 0.0);
        assert_eq!(ai_resolution_rate(4, 3), Some(0.75));
        assert_eq!(ai_resolution_rate(0, 0), None);
    }

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let v = [10, 20, 30, 40];
        assert_eq!(nearest_rank(&v, 50), Some(20), "rank 2");
        assert_eq!(nearest_rank(&v, 95), Some(40), "rank ceil(3.8) = 4");
        assert_eq!(nearest_rank(&v, 1), Some(10));
        let hundred: Vec<i64> = (1..=100).collect();
        assert_eq!(nearest_rank(&hundred, 95), Some(95));
        let v: Vec<i64> = (1..=20).collect();
        assert_eq!(nearest_rank(&v, 50), Some(10));
        assert_eq!(nearest_rank(&v, 95), Some(19));
        assert_eq!(nearest_rank(&v, 99), Some(20));
        assert_eq!(nearest_rank(&[7], 1), Some(7));
        assert_eq!(nearest_rank::<i64>(&[], 50), None);
        assert_eq!(round(2.5), 3);
        assert_eq!(round(-2.5), -3);
    }
}
