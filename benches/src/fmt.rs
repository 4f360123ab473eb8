//! How every report prints a figure: `keel-peers` here and all of `keel-perf` (which
//! re-exports these), so a number reads the same in every Markdown file and in
//! `BENCHMARKS.md`.

/// `1234567` as `1,234,567`: thousands separators for every figure in the reports.
pub fn group(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A figure of a summary table: grouped integer from 100 up, whole numbers below 100 as
/// they are, one decimal otherwise; "–" when not finite (nothing was measured).
pub fn fig(value: f64) -> String {
    if !value.is_finite() {
        "–".to_string()
    } else if value.abs() >= 100.0 {
        group(value.round() as u64)
    } else if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

/// `**median** (min–max)`, each shown with `unit`: how every report gives a figure
/// measured over several runs.
pub fn median_min_max<T>(median: T, min: T, max: T, unit: impl Fn(T) -> String) -> String {
    format!("**{}** ({}–{})", unit(median), unit(min), unit(max))
}

/// `**median** (min–max)` of figures ([`fig`]); "–" when the median is not finite.
pub fn spread(median: f64, min: f64, max: f64) -> String {
    if median.is_finite() {
        median_min_max(median, min, max, fig)
    } else {
        "–".to_string()
    }
}

/// `**median×** (min–max)` of ratios; "–" unless all three are finite.
pub fn ratio_spread(median: f64, min: f64, max: f64) -> String {
    if [median, min, max].iter().all(|v| v.is_finite()) {
        format!("**{median:.2}×** ({min:.2}–{max:.2})")
    } else {
        "–".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures() {
        assert_eq!(group(1_234_567), "1,234,567");
        assert_eq!(group(999), "999");
        assert_eq!(fig(1234.6), "1,235");
        assert_eq!(fig(67.0), "67");
        assert_eq!(fig(1.5), "1.5");
        assert_eq!(fig(f64::NAN), "–");
        assert_eq!(median_min_max(2.0, 1.0, 3.0, fig), "**2** (1–3)");
        assert_eq!(spread(f64::NAN, 1.0, 3.0), "–");
        assert_eq!(ratio_spread(1.5, 1.25, 2.0), "**1.50×** (1.25–2.00)");
    }
}
