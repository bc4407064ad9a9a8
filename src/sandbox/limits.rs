//! Bling's request limits ([DOC] developer.bling.com.br/limites): per-account requests per
//! second and per day, the IP blocks (errors or requests in 10 s), and the token-endpoint
//! guard that blocks a client calling `/oauth/token` too often.

use crate::sandbox::config::IpBlockConfig;
use chrono::NaiveDate;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Why a call was refused. Bling's 429s carry no `Retry-After` ([VCR], [LC]); the body names
/// the limit and its period instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    PerSecond { limit: u64 },
    Daily { limit: u64 },
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

#[derive(Default)]
struct IpWindow {
    requests: VecDeque<Instant>,
    errors: VecDeque<Instant>,
    blocked_until: Option<Instant>,
}

/// Which IP rule started a block (for the blocked call's description).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IpRule {
    Errors,
    Requests,
}

pub(crate) struct Limits {
    per_sec: u32,
    daily: u64,
    token_calls: u32,
    token_block: Duration,
    ip: IpBlockConfig,
    accounts: HashMap<String, AccountWindow>,
    token_clients: HashMap<String, TokenClient>,
    ips: HashMap<IpAddr, (IpWindow, Option<IpRule>)>,
}

const SECOND: Duration = Duration::from_secs(1);
const TOKEN_WINDOW: Duration = Duration::from_secs(60);

fn prune(q: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
        q.pop_front();
    }
}

impl Limits {
    pub fn new(
        per_sec: u32,
        daily: u64,
        token_calls: u32,
        token_block: Duration,
        ip: IpBlockConfig,
    ) -> Limits {
        Limits {
            per_sec,
            daily,
            token_calls,
            token_block,
            ip,
            accounts: HashMap::new(),
            token_clients: HashMap::new(),
            ips: HashMap::new(),
        }
    }

    /// Admits a call of `account` or says why not. Refused calls do not count.
    /// `today` comes from Brasília time, where the sandbox assumes Bling's day turns.
    pub fn admit(&mut self, account: &str, now: Instant, today: NaiveDate) -> Result<(), Refusal> {
        let w = self.accounts.entry(account.to_string()).or_default();
        if w.day != Some(today) {
            w.day = Some(today);
            w.today = 0;
        }
        if self.daily > 0 && w.today >= self.daily {
            return Err(Refusal::Daily { limit: self.daily });
        }
        if self.per_sec > 0 {
            prune(&mut w.recent, now, SECOND);
            if w.recent.len() >= self.per_sec as usize {
                return Err(Refusal::PerSecond {
                    limit: u64::from(self.per_sec),
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

    /// Counts a call to `/oauth/token` by `client`; `false` while blocked. The call that
    /// exceeds the allowance starts the block, as Bling's IP block does.
    pub fn token_call(&mut self, client: &str, now: Instant) -> bool {
        if self.token_calls == 0 {
            return true;
        }
        let c = self.token_clients.entry(client.to_string()).or_default();
        if let Some(until) = c.blocked_until {
            if now < until {
                return false;
            }
            c.blocked_until = None;
            c.calls.clear();
        }
        prune(&mut c.calls, now, TOKEN_WINDOW);
        c.calls.push_back(now);
        if c.calls.len() > self.token_calls as usize {
            c.blocked_until = Some(now + self.token_block);
            return false;
        }
        true
    }

    /// A request from `ip` arrives: `Err(rule)` while the IP is blocked (blocked calls do not
    /// count). The request that exceeds the request allowance starts a block and is refused.
    pub fn ip_arrival(&mut self, ip: IpAddr, now: Instant) -> Result<(), IpRule> {
        if self.ip.is_off() {
            return Ok(());
        }
        let cfg = self.ip;
        let (w, rule) = self.ips.entry(ip).or_default();
        if let Some(until) = w.blocked_until {
            if now < until {
                return Err(rule.unwrap_or(IpRule::Requests));
            }
            *w = IpWindow::default();
            *rule = None;
        }
        if cfg.requests > 0 {
            prune(&mut w.requests, now, cfg.window);
            w.requests.push_back(now);
            if w.requests.len() > cfg.requests as usize {
                w.blocked_until = Some(now + cfg.block);
                *rule = Some(IpRule::Requests);
                return Err(IpRule::Requests);
            }
        }
        Ok(())
    }

    /// `ip` was answered an error (status >= 400, 429s included): the error that exceeds the
    /// allowance blocks the IP from the next call on.
    pub fn ip_error(&mut self, ip: IpAddr, now: Instant) {
        let cfg = self.ip;
        if cfg.errors == 0 {
            return;
        }
        let (w, rule) = self.ips.entry(ip).or_default();
        if w.blocked_until.is_some_and(|u| now < u) {
            return;
        }
        prune(&mut w.errors, now, cfg.window);
        w.errors.push_back(now);
        if w.errors.len() > cfg.errors as usize {
            w.blocked_until = Some(now + cfg.block);
            *rule = Some(IpRule::Errors);
        }
    }

    /// Forgets every count and block (the control plane's "reset counters").
    pub fn reset(&mut self) {
        self.accounts.clear();
        self.token_clients.clear();
        self.ips.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn sliding_second_and_token_block() {
        let mut l = Limits::new(3, 5, 2, Duration::from_secs(10), IpBlockConfig::off());
        let t0 = Instant::now();
        let day = NaiveDate::from_ymd_opt(2025, 1, 2).expect("date");
        for _ in 0..3 {
            assert!(l.admit("a", t0, day).is_ok());
        }
        assert_eq!(l.admit("a", t0, day), Err(Refusal::PerSecond { limit: 3 }));
        assert!(l.admit("b", t0, day).is_ok());
        let t1 = t0 + Duration::from_millis(1001);
        assert!(l.admit("a", t1, day).is_ok());
        assert!(l.admit("a", t1, day).is_ok());
        assert_eq!(l.admit("a", t1, day), Err(Refusal::Daily { limit: 5 }));
        assert!(l.token_call("c", t0));
        assert!(l.token_call("c", t0));
        assert!(!l.token_call("c", t0));
        assert!(l.token_call("c", t0 + Duration::from_secs(11)));
    }

    #[test]
    fn ip_blocks_on_requests_and_on_errors() {
        let cfg = IpBlockConfig {
            errors: 2,
            requests: 4,
            window: Duration::from_secs(10),
            block: Duration::from_secs(60),
        };
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let t0 = Instant::now();
        let mut l = Limits::new(0, 0, 0, Duration::ZERO, cfg);
        for _ in 0..4 {
            assert!(l.ip_arrival(ip, t0).is_ok());
        }
        assert_eq!(l.ip_arrival(ip, t0), Err(IpRule::Requests));
        assert_eq!(
            l.ip_arrival(ip, t0 + Duration::from_secs(59)),
            Err(IpRule::Requests)
        );
        assert!(l.ip_arrival(ip, t0 + Duration::from_secs(61)).is_ok());

        let mut l = Limits::new(0, 0, 0, Duration::ZERO, cfg);
        for _ in 0..2 {
            assert!(l.ip_arrival(ip, t0).is_ok());
            l.ip_error(ip, t0);
        }
        assert!(l.ip_arrival(ip, t0).is_ok());
        l.ip_error(ip, t0);
        assert_eq!(l.ip_arrival(ip, t0), Err(IpRule::Errors));
        // Errors older than the window are forgotten.
        let mut l = Limits::new(0, 0, 0, Duration::ZERO, cfg);
        l.ip_error(ip, t0);
        l.ip_error(ip, t0);
        l.ip_error(ip, t0 + Duration::from_secs(11));
        assert!(l.ip_arrival(ip, t0 + Duration::from_secs(11)).is_ok());
    }
}
