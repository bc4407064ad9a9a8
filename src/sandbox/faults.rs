//! Fault injection: latency, 500s, dropped connections and "apply the write, drop the answer",
//! drawn from seeded generators so a failing run can be replayed exactly.

use crate::sandbox::error::SandboxError;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;

/// Which calls a rule applies to and what it does to them. Rates are shares in `0.0..=1.0`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultRule {
    /// HTTP method to match ("POST"); `None` matches every method.
    pub method: Option<String>,
    /// Path below `/Api/v3` to match ("/pedidos/vendas"); `None` matches every path. Matches
    /// whole segments: "/pedidos/vendas" matches "/pedidos/vendas/12" but not "/pedidos/vendasX".
    pub path_prefix: Option<String>,
    /// Match the path exactly instead of as a prefix (e.g. only the create, not `/{id}/gerar-nfe`).
    pub exact: bool,
    /// Added latency, drawn uniformly from `latency_min_ms..=latency_max_ms`.
    pub latency_min_ms: u64,
    pub latency_max_ms: u64,
    /// Share of calls answered `500 SERVER_ERROR` without being processed.
    pub error_rate: f64,
    /// Share of calls whose connection is closed without an answer, before processing.
    pub drop_rate: f64,
    /// Share of calls processed (the write is stored) whose connection is then closed without
    /// an answer.
    pub apply_then_drop_rate: f64,
}

impl FaultRule {
    /// A rule for every call.
    pub fn any() -> FaultRule {
        FaultRule::default()
    }

    /// A rule for one method and path prefix below `/Api/v3`, e.g. `("POST", "/pedidos/vendas")`.
    pub fn route(method: &str, path_prefix: &str) -> FaultRule {
        FaultRule {
            method: Some(method.to_ascii_uppercase()),
            path_prefix: Some(path_prefix.to_string()),
            ..FaultRule::default()
        }
    }

    pub fn exact(mut self) -> Self {
        self.exact = true;
        self
    }

    pub fn latency(mut self, min: Duration, max: Duration) -> Self {
        self.latency_min_ms = u64::try_from(min.as_millis()).unwrap_or(u64::MAX);
        self.latency_max_ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
        self
    }

    pub fn error_rate(mut self, rate: f64) -> Self {
        self.error_rate = rate;
        self
    }

    pub fn drop_rate(mut self, rate: f64) -> Self {
        self.drop_rate = rate;
        self
    }

    pub fn apply_then_drop_rate(mut self, rate: f64) -> Self {
        self.apply_then_drop_rate = rate;
        self
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        if let Some(m) = &self.method {
            if !m.eq_ignore_ascii_case(method) {
                return false;
            }
        }
        match &self.path_prefix {
            None => true,
            Some(prefix) => {
                let prefix = prefix.trim_end_matches('/');
                if self.exact {
                    path.trim_end_matches('/') == prefix
                } else {
                    path == prefix
                        || (path.starts_with(prefix) && path[prefix.len()..].starts_with('/'))
                }
            }
        }
    }
}

/// An ordered list of rules; the first rule matching a call decides its faults.
/// The default has no rules: no faults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultConfig {
    pub rules: Vec<FaultRule>,
}

impl FaultConfig {
    pub fn none() -> FaultConfig {
        FaultConfig::default()
    }

    pub fn with_rule(mut self, rule: FaultRule) -> FaultConfig {
        self.rules.push(rule);
        self
    }

    pub(crate) fn validate(&self) -> Result<(), SandboxError> {
        for r in &self.rules {
            for (name, rate) in [
                ("error_rate", r.error_rate),
                ("drop_rate", r.drop_rate),
                ("apply_then_drop_rate", r.apply_then_drop_rate),
            ] {
                if !(0.0..=1.0).contains(&rate) {
                    return Err(SandboxError::InvalidConfig(format!(
                        "fault {name} {rate} is outside 0..=1"
                    )));
                }
            }
            if r.latency_min_ms > r.latency_max_ms {
                return Err(SandboxError::InvalidConfig(
                    "fault latency_min_ms exceeds latency_max_ms".into(),
                ));
            }
        }
        Ok(())
    }
}

/// What was injected into one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Answered 500 without processing.
    ServerError,
    /// Connection closed before processing.
    Drop,
    /// Processed, then the connection closed without an answer.
    ApplyThenDrop,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Decision {
    pub latency: Duration,
    pub kind: Option<FaultKind>,
}

/// The live fault settings plus one generator per account, so concurrent accounts do not
/// perturb each other's sequences.
pub(crate) struct FaultEngine {
    seed: u64,
    global: FaultConfig,
    per_account: HashMap<String, FaultConfig>,
    rngs: HashMap<String, StdRng>,
}

/// FNV-1a: a hash that is stable across Rust versions, unlike `DefaultHasher`.
fn stable_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

impl FaultEngine {
    pub fn new(seed: u64, global: FaultConfig) -> FaultEngine {
        FaultEngine {
            seed,
            global,
            per_account: HashMap::new(),
            rngs: HashMap::new(),
        }
    }

    /// Replaces the faults of one account (or the global ones) and restarts the affected
    /// generators, so "set faults, run calls" is reproducible however many calls came before.
    /// (Global changes also restart the OAuth generator, which only global rules drive.)
    pub fn set(&mut self, account: Option<&str>, faults: Option<FaultConfig>) {
        match account {
            Some(a) => {
                match faults {
                    Some(f) => self.per_account.insert(a.to_string(), f),
                    None => self.per_account.remove(a),
                };
                self.rngs.remove(a);
            }
            None => {
                self.global = faults.unwrap_or_default();
                self.rngs.clear();
            }
        }
    }

    pub fn get(&self, account: Option<&str>) -> Option<FaultConfig> {
        match account {
            Some(a) => self.per_account.get(a).cloned(),
            None => Some(self.global.clone()),
        }
    }

    pub fn decide(&mut self, account: &str, method: &str, path: &str) -> Decision {
        let config = self.per_account.get(account).unwrap_or(&self.global);
        let rule = config
            .rules
            .iter()
            .find(|r| r.matches(method, path))
            .cloned();
        self.draw(account, rule)
    }

    /// Faults for the OAuth endpoints: only global rules whose `path_prefix` names an
    /// `/oauth/…` path apply, so a catch-all rule meant for the API leaves logins alone.
    pub fn decide_oauth(&mut self, method: &str, path: &str) -> Decision {
        let rule = self
            .global
            .rules
            .iter()
            .find(|r| {
                r.path_prefix
                    .as_deref()
                    .is_some_and(|p| p.starts_with("/oauth"))
                    && r.matches(method, path)
            })
            .cloned();
        // Account names cannot contain '<', so this generator never collides with an account's.
        self.draw("<oauth>", rule)
    }

    fn draw(&mut self, scope: &str, rule: Option<FaultRule>) -> Decision {
        let Some(rule) = rule else {
            return Decision::default();
        };
        let seed = self.seed ^ stable_hash(scope);
        let rng = self
            .rngs
            .entry(scope.to_string())
            .or_insert_with(|| StdRng::seed_from_u64(seed));
        // Always draw the same four values so one rule's rates do not shift the sequence.
        let (u_drop, u_err, u_atd): (f64, f64, f64) = (rng.random(), rng.random(), rng.random());
        let latency_ms = if rule.latency_max_ms > 0 {
            rng.random_range(rule.latency_min_ms..=rule.latency_max_ms)
        } else {
            let _: u64 = rng.random();
            0
        };
        let kind = if u_drop < rule.drop_rate {
            Some(FaultKind::Drop)
        } else if u_err < rule.error_rate {
            Some(FaultKind::ServerError)
        } else if u_atd < rule.apply_then_drop_rate {
            Some(FaultKind::ApplyThenDrop)
        } else {
            None
        };
        Decision {
            latency: Duration::from_millis(latency_ms),
            kind,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_matching() {
        let r = FaultRule::route("post", "/pedidos/vendas");
        assert!(r.matches("POST", "/pedidos/vendas"));
        assert!(r.matches("POST", "/pedidos/vendas/1/gerar-nfe"));
        assert!(!r.matches("GET", "/pedidos/vendas"));
        assert!(!r.matches("POST", "/pedidos/vendasX"));
        assert!(!r
            .clone()
            .exact()
            .matches("POST", "/pedidos/vendas/1/gerar-nfe"));
    }
}
