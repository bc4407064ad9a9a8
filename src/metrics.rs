//! Prometheus text metrics without a metrics framework: a few counters are all this needs.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// (method, route, status) → (requests, seconds spent).
type RequestTotals = BTreeMap<(String, String, u16), (u64, f64)>;

#[derive(Default)]
pub struct Metrics {
    http: Mutex<RequestTotals>,
    counters: Mutex<BTreeMap<String, u64>>,
}

impl Metrics {
    pub fn record_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        if let Ok(mut http) = self.http.lock() {
            let entry = http
                .entry((method.to_string(), route.to_string(), status))
                .or_default();
            entry.0 += 1;
            entry.1 += elapsed.as_secs_f64();
        }
    }

    /// Adds to a named counter (`name{labels}` form is allowed).
    pub fn add(&self, name: &str, by: u64) {
        if let Ok(mut counters) = self.counters.lock() {
            *counters.entry(name.to_string()).or_default() += by;
        }
    }

    /// Renders every metric, plus the gauges given by the caller.
    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP bling_ledger_http_requests_total HTTP requests served."
        );
        let _ = writeln!(out, "# TYPE bling_ledger_http_requests_total counter");
        let http = self.http.lock().map(|h| h.clone()).unwrap_or_default();
        for ((method, route, status), (count, _)) in &http {
            let _ = writeln!(
                out,
                "bling_ledger_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP bling_ledger_http_request_seconds_sum Time spent serving requests."
        );
        let _ = writeln!(out, "# TYPE bling_ledger_http_request_seconds_sum counter");
        for ((method, route, status), (_, seconds)) in &http {
            let _ = writeln!(
                out,
                "bling_ledger_http_request_seconds_sum{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {seconds:.6}"
            );
        }
        let counters = self.counters.lock().map(|c| c.clone()).unwrap_or_default();
        let mut typed = std::collections::BTreeSet::new();
        for (name, value) in &counters {
            let base = name.split('{').next().unwrap_or(name);
            if typed.insert(base.to_string()) {
                let _ = writeln!(out, "# TYPE {base} counter");
            }
            let _ = writeln!(out, "{name} {value}");
        }
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            let _ = writeln!(out, "{name} {value}");
        }
        out
    }
}
