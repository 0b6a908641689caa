//! Durations that come from outside (messages, flags, query strings) are bounded:
//! finite, not negative, at most [`MAX_DURATION`]. `Duration::from_secs_f64` panics
//! on anything else; these helpers return `None` (or clamp) instead.

use std::time::Duration;

/// The longest duration Keel accepts from any input: one year.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// `secs` as a duration if it is finite, not negative and at most a year.
pub fn duration_from_secs(secs: f64) -> Option<Duration> {
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    Duration::try_from_secs_f64(secs).ok().filter(|d| *d <= MAX_DURATION)
}

/// `secs` as a duration, clamped into `[0, MAX_DURATION]` (NaN is zero): for values
/// already validated where they entered, or where any bounded value will do.
pub fn clamp_secs(secs: f64) -> Duration {
    if secs.is_nan() || secs <= 0.0 {
        return Duration::ZERO;
    }
    duration_from_secs(secs).unwrap_or(MAX_DURATION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_values_are_refused_or_clamped_never_a_panic() {
        assert_eq!(duration_from_secs(1.5), Some(Duration::from_millis(1500)));
        assert_eq!(duration_from_secs(0.0), Some(Duration::ZERO));
        for bad in [f64::NAN, f64::INFINITY, -1.0, 1e23, f64::MAX, 365.0 * 24.0 * 3600.0 + 1.0] {
            assert_eq!(duration_from_secs(bad), None, "{bad}");
        }
        assert_eq!(clamp_secs(f64::NAN), Duration::ZERO);
        assert_eq!(clamp_secs(-5.0), Duration::ZERO);
        assert_eq!(clamp_secs(1e300), MAX_DURATION);
        assert_eq!(clamp_secs(f64::INFINITY), MAX_DURATION);
        assert_eq!(clamp_secs(2.0), Duration::from_secs(2));
    }
}
