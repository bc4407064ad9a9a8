//! Bling's request limits: per-account requests per second and per day, and the token-endpoint
//! guard that blocks a client calling `/oauth/token` too often.

use chrono::NaiveDate;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Why a call was refused, and when it may be retried (the `Retry-After` value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    PerSecond { retry_after_secs: u64 },
    Daily { retry_after_secs: u64 },
}

#[derive(Default)]
struct AccountWindow {
    /// Arrival times of admitted calls in the last second (a sliding window: no burst at a
    /// boundary can exceed the limit, unlike fixed windows).
    recent: VecDeque<Instant>,
    day: Option<NaiveDate>,
    today: u64,
}

#[derive(Default)]
struct TokenClient {
    calls: VecDeque<Instant>,
    blocked_until: Option<Instant>,
}

pub(crate) struct Limits {
    per_sec: u32,
    daily: u64,
    token_calls: u32,
    token_block: Duration,
    accounts: HashMap<String, AccountWindow>,
    token_clients: HashMap<String, TokenClient>,
}

const SECOND: Duration = Duration::from_secs(1);
const TOKEN_WINDOW: Duration = Duration::from_secs(60);

fn ceil_secs(d: Duration) -> u64 {
    let s = d.as_secs();
    if d.subsec_nanos() > 0 { s + 1 } else { s }.max(1)
}

impl Limits {
    pub fn new(per_sec: u32, daily: u64, token_calls: u32, token_block: Duration) -> Limits {
        Limits {
            per_sec,
            daily,
            token_calls,
            token_block,
            accounts: HashMap::new(),
            token_clients: HashMap::new(),
        }
    }

    /// Admits a call of `account` or says why not. Refused calls do not count.
    /// `today` and `secs_to_midnight` come from Brasília time, where Bling's day turns.
    pub fn admit(
        &mut self,
        account: &str,
        now: Instant,
        today: NaiveDate,
        secs_to_midnight: u64,
    ) -> Result<(), Refusal> {
        let w = self.accounts.entry(account.to_string()).or_default();
        if w.day != Some(today) {
            w.day = Some(today);
            w.today = 0;
        }
        if self.daily > 0 && w.today >= self.daily {
            return Err(Refusal::Daily {
                retry_after_secs: secs_to_midnight.max(1),
            });
        }
        if self.per_sec > 0 {
            while w
                .recent
                .front()
                .is_some_and(|t| now.duration_since(*t) >= SECOND)
            {
                w.recent.pop_front();
            }
            if w.recent.len() >= self.per_sec as usize {
                let oldest = w.recent.front().copied().unwrap_or(now);
                let wait = SECOND.saturating_sub(now.duration_since(oldest));
                return Err(Refusal::PerSecond {
                    retry_after_secs: ceil_secs(wait),
                });
            }
            w.recent.push_back(now);
        }
        w.today += 1;
        Ok(())
    }

    pub fn used_today(&self, account: &str) -> u64 {
        self.accounts.get(account).map_or(0, |w| w.today)
    }

    /// Counts a call to `/oauth/token` by `client`; `Err(retry_after_secs)` while blocked.
    /// The call that exceeds the allowance starts the block, as Bling's IP block does.
    pub fn token_call(&mut self, client: &str, now: Instant) -> Result<(), u64> {
        if self.token_calls == 0 {
            return Ok(());
        }
        let c = self.token_clients.entry(client.to_string()).or_default();
        if let Some(until) = c.blocked_until {
            if now < until {
                return Err(ceil_secs(until - now));
            }
            c.blocked_until = None;
            c.calls.clear();
        }
        while c
            .calls
            .front()
            .is_some_and(|t| now.duration_since(*t) >= TOKEN_WINDOW)
        {
            c.calls.pop_front();
        }
        c.calls.push_back(now);
        if c.calls.len() > self.token_calls as usize {
            c.blocked_until = Some(now + self.token_block);
            return Err(ceil_secs(self.token_block));
        }
        Ok(())
    }

    /// Forgets every count and block (the control plane's "reset counters").
    pub fn reset(&mut self) {
        self.accounts.clear();
        self.token_clients.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_second_and_token_block() {
        let mut l = Limits::new(3, 5, 2, Duration::from_secs(10));
        let t0 = Instant::now();
        let day = NaiveDate::from_ymd_opt(2025, 1, 2).expect("date");
        for _ in 0..3 {
            assert!(l.admit("a", t0, day, 100).is_ok());
        }
        assert!(matches!(
            l.admit("a", t0, day, 100),
            Err(Refusal::PerSecond { .. })
        ));
        assert!(l.admit("b", t0, day, 100).is_ok());
        let t1 = t0 + Duration::from_millis(1001);
        assert!(l.admit("a", t1, day, 100).is_ok());
        assert!(l.admit("a", t1, day, 100).is_ok());
        assert_eq!(
            l.admit("a", t1, day, 100),
            Err(Refusal::Daily {
                retry_after_secs: 100
            })
        );
        assert!(l.token_call("c", t0).is_ok());
        assert!(l.token_call("c", t0).is_ok());
        assert_eq!(l.token_call("c", t0), Err(10));
        assert!(l.token_call("c", t0 + Duration::from_secs(11)).is_ok());
    }
}
