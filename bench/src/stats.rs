//! Small statistics over samples: median, percentiles, Jain's fairness index.

/// The median of `xs` (NaN when empty). Sorts `xs`.
pub fn median(xs: &mut [f64]) -> f64 {
    percentile(xs, 50.0)
}

/// The `p`th percentile (nearest rank) of `xs` (NaN when empty). Sorts `xs`.
pub fn percentile(xs: &mut [f64], p: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * xs.len() as f64).ceil() as usize;
    xs[rank.clamp(1, xs.len()) - 1]
}

/// The median of one field over several runs.
pub fn median_by<T>(runs: &[T], field: impl Fn(&T) -> f64) -> f64 {
    let mut xs: Vec<f64> = runs.iter().map(field).filter(|x| !x.is_nan()).collect();
    median(&mut xs)
}

/// Jain's fairness index of per-contender shares: 1 when all are equal, 1/n when one
/// contender got everything.
pub fn jain(shares: &[f64]) -> f64 {
    let sum: f64 = shares.iter().sum();
    let squares: f64 = shares.iter().map(|x| x * x).sum();
    if squares == 0.0 {
        return f64::NAN;
    }
    sum * sum / (shares.len() as f64 * squares)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_percentiles() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(percentile(&mut [5.0, 1.0, 4.0, 2.0, 3.0], 100.0), 5.0);
        assert_eq!(percentile(&mut [5.0, 1.0, 4.0, 2.0, 3.0], 0.0), 1.0);
        assert!(median(&mut []).is_nan());
    }

    #[test]
    fn jain_index() {
        assert_eq!(jain(&[2.0, 2.0]), 1.0);
        assert_eq!(jain(&[4.0, 0.0, 0.0, 0.0]), 0.25);
    }
}
