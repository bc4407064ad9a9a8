//! When to try a delivery again: a fixed schedule with jitter, and the receiver's own
//! `Retry-After` when it answers 429 or 503 with one.

use std::time::Duration;

/// The delays before each attempt: the first is the first attempt's (immediately), and after
/// the last one fails the message is given up for that endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule {
    pub delays: Vec<Duration>,
    /// Each delay is stretched or shrunk by up to this fraction, at random (0.2 = ±20 %), so
    /// that receivers that were down together are not hit together when they come back.
    pub jitter: f64,
    /// The longest `Retry-After` honoured.
    pub max_retry_after: Duration,
}

impl Default for RetrySchedule {
    /// Immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h, each ±20 %.
    fn default() -> Self {
        let s = Duration::from_secs;
        Self {
            delays: vec![
                s(0),
                s(5),
                s(5 * 60),
                s(30 * 60),
                s(2 * 3600),
                s(5 * 3600),
                s(10 * 3600),
                s(10 * 3600),
            ],
            jitter: 0.2,
            max_retry_after: s(10 * 3600),
        }
    }
}

impl RetrySchedule {
    /// After attempt `attempt` (1-based) failed: how long until the next, or `None` when it was
    /// the last. `retry_after` is the receiver's own wish, honoured up to `max_retry_after`.
    pub fn next_delay(&self, attempt: usize, retry_after: Option<Duration>) -> Option<Duration> {
        let planned = *self.delays.get(attempt)?;
        if let Some(wish) = retry_after {
            return Some(wish.min(self.max_retry_after));
        }
        let spread = self.jitter.clamp(0.0, 1.0);
        let factor = 1.0 + spread * (rand::random::<f64>() * 2.0 - 1.0);
        Some(planned.mul_f64(factor))
    }
}

/// The seconds of a `Retry-After` header (delta-seconds or an HTTP date).
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let secs = (at.with_timezone(&chrono::Utc) - now)
        .num_milliseconds()
        .max(0);
    Some(Duration::from_millis(secs as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_stays_within_twenty_percent() {
        let s = RetrySchedule::default();
        assert_eq!(s.delays.len(), 8);
        for (attempt, planned) in s.delays.iter().enumerate().skip(1) {
            for _ in 0..50 {
                let d = s.next_delay(attempt, None).unwrap();
                assert!(
                    d >= planned.mul_f64(0.8) && d <= planned.mul_f64(1.2),
                    "{d:?}"
                );
            }
        }
        assert_eq!(s.next_delay(8, None), None, "eight attempts, then give up");
    }

    #[test]
    fn retry_after_is_honoured_up_to_its_cap() {
        let s = RetrySchedule::default();
        assert_eq!(
            s.next_delay(1, Some(Duration::from_secs(42))),
            Some(Duration::from_secs(42))
        );
        assert_eq!(
            s.next_delay(1, Some(Duration::from_secs(999_999))),
            Some(s.max_retry_after)
        );
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-03T10:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Thu, 03 Dec 2026 10:01:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
