//! Retries of transient failures: exponential backoff with full jitter, `Retry-After` honoured.
//!
//! # Which calls are replayed
//! Bling has no idempotency key, so replaying a create whose answer was lost would create a
//! second contato or order. The client therefore sorts every failed attempt by whether Bling
//! may have applied it:
//!
//! - idempotent calls (`GET`, `PUT` full replacement, `PATCH` to a given situação) are retried
//!   on every transient failure: 5xx, timeouts, connection errors, 429;
//! - non-idempotent calls (`POST` creates, `gerar-nfe`) are retried **only when Bling certainly
//!   did not apply them**: a 429 (refused before processing) or a connection that could not be
//!   established. A 5xx, a timeout or a dropped connection after the request was sent leaves
//!   the outcome unknown, so the error is returned after one attempt and the sync engine
//!   settles it by looking up (`numeroDocumento`, `numeroLoja`) before creating again
//!   (`docs/design.md`, "no duplicates in Bling, ever").
//!
//! There is deliberately no per-call `retry_writes` switch: the safe rule needs no caller
//! judgement, and the engine's look-up-before-create already covers the unknown outcomes.

use std::time::Duration;

use rand::Rng;

use crate::bling::error::BlingError;

/// How often and how patiently transient failures are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, including the first (1 = never retry). The one resend after a 401
    /// with a renewed token is not counted.
    pub max_attempts: u32,
    /// Backoff before retry `n` (from 1) is uniform in `[0, min(max_delay, base_delay × 2^(n−1))]`.
    pub base_delay: Duration,
    /// Cap of any backoff, and the longest `Retry-After` waited for: a longer one (e.g. the
    /// daily quota, which resets at midnight) is returned to the caller as
    /// [`BlingError::RateLimited`] instead of holding the worker.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
        }
    }
}

/// What the client knows about a failed attempt beyond its error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AttemptFacts {
    /// The call may be replayed whatever happened (GET, PUT, PATCH).
    pub idempotent: bool,
    /// Bling may have processed the request (it was sent and no refusal came back).
    pub may_have_applied: bool,
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn none() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The full-jitter backoff before retry number `retry` (1 for the first retry).
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = retry.saturating_sub(1).min(30);
        let ceiling = self
            .base_delay
            .saturating_mul(1u32 << exp)
            .min(self.max_delay);
        if ceiling.is_zero() {
            return Duration::ZERO;
        }
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::rng().random_range(0..=nanos))
    }

    /// How long to wait before attempt `attempts + 1`, or `None` to give up with `error`.
    /// `attempts` is the number of attempts made so far (from 1).
    pub(crate) fn next_delay(
        &self,
        attempts: u32,
        error: &BlingError,
        facts: AttemptFacts,
    ) -> Option<Duration> {
        if attempts >= self.max_attempts {
            return None;
        }
        match error {
            BlingError::RateLimited { retry_after, .. } => match retry_after {
                Some(wait) if *wait > self.max_delay => None,
                Some(wait) => Some(*wait),
                None => Some(self.backoff(attempts)),
            },
            BlingError::Unavailable { .. } if facts.idempotent || !facts.may_have_applied => {
                Some(self.backoff(attempts))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GET: AttemptFacts = AttemptFacts {
        idempotent: true,
        may_have_applied: true,
    };
    const POST_SENT: AttemptFacts = AttemptFacts {
        idempotent: false,
        may_have_applied: true,
    };
    const POST_NOT_SENT: AttemptFacts = AttemptFacts {
        idempotent: false,
        may_have_applied: false,
    };

    fn unavailable() -> BlingError {
        BlingError::Unavailable {
            status: Some(500),
            message: String::new(),
        }
    }

    #[test]
    fn backoff_is_capped_full_jitter() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(300),
        };
        for _ in 0..200 {
            assert!(p.backoff(1) <= Duration::from_millis(100));
            assert!(p.backoff(2) <= Duration::from_millis(200));
            assert!(p.backoff(9) <= Duration::from_millis(300));
            assert!(p.backoff(40) <= Duration::from_millis(300));
        }
    }

    #[test]
    fn only_transient_errors_within_attempts_are_retried() {
        let p = RetryPolicy::default();
        assert!(p.next_delay(1, &unavailable(), GET).is_some());
        assert!(p.next_delay(2, &unavailable(), GET).is_some());
        assert!(p.next_delay(3, &unavailable(), GET).is_none());
        let validation = BlingError::Validation {
            body: Default::default(),
        };
        assert!(p.next_delay(1, &validation, GET).is_none());
        assert!(p
            .next_delay(1, &BlingError::Revoked { evidence: None }, GET)
            .is_none());
        assert!(RetryPolicy::none()
            .next_delay(1, &unavailable(), GET)
            .is_none());
    }

    #[test]
    fn writes_are_replayed_only_when_certainly_not_applied() {
        let p = RetryPolicy::default();
        assert!(p.next_delay(1, &unavailable(), POST_SENT).is_none());
        assert!(p.next_delay(1, &unavailable(), POST_NOT_SENT).is_some());
        let limited = BlingError::RateLimited {
            retry_after: Some(Duration::from_secs(1)),
            daily: false,
        };
        assert_eq!(
            p.next_delay(1, &limited, POST_SENT),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn retry_after_beyond_the_cap_is_left_to_the_caller() {
        let p = RetryPolicy::default();
        let tomorrow = BlingError::RateLimited {
            retry_after: Some(Duration::from_secs(3600)),
            daily: true,
        };
        assert_eq!(p.next_delay(1, &tomorrow, GET), None);
    }
}
