//! Prometheus text metrics without a metrics framework: a few counters, one histogram and the
//! gauges read when `/metrics` is scraped are all this needs.
//!
//! Every family is documented in the README's *Operations* section.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use crate::bling::client::{CallEvent, CallObserver};

/// (method, route, status) → (requests, seconds spent).
type RequestTotals = BTreeMap<(String, String, u16), (u64, f64)>;

/// Upper bounds (seconds) of the Bling call latency histogram: Bling answers in tens to
/// hundreds of milliseconds; the client's timeout is 30 s.
pub const BLING_LATENCY_BUCKETS: [f64; 10] =
    [0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

pub const SYNC_JOBS: &str = "bling_ledger_sync_jobs_total";
pub const BLING_CALLS: &str = "bling_ledger_bling_calls_total";
pub const BLING_CALL_SECONDS: &str = "bling_ledger_bling_call_seconds";

/// HELP texts of the counters kept by name (see [`Metrics::add`]).
const COUNTER_HELP: [(&str, &str); 2] = [
    (
        SYNC_JOBS,
        "Sync job attempts by kind (contact, invoice) and outcome (done, retry, blocked, failed, parked, error).",
    ),
    (
        BLING_CALLS,
        "HTTP attempts to Bling by method, route template and status (or transport: no answer).",
    ),
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    /// Non-cumulative counts per bucket of [`BLING_LATENCY_BUCKETS`] (the last slot is +Inf).
    buckets: [u64; BLING_LATENCY_BUCKETS.len() + 1],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        let slot = BLING_LATENCY_BUCKETS
            .iter()
            .position(|le| seconds <= *le)
            .unwrap_or(BLING_LATENCY_BUCKETS.len());
        self.buckets[slot] += 1;
        self.count += 1;
        self.sum += seconds;
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    http: Mutex<RequestTotals>,
    counters: Mutex<BTreeMap<String, u64>>,
    /// (method, route template) → latency of Bling calls.
    bling_latency: Mutex<BTreeMap<(String, String), Histogram>>,
}

/// A value read when `/metrics` is scraped: a gauge, or a counter kept elsewhere.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: &'static str,
    pub help: &'static str,
    pub counter: bool,
    /// `{k="v",…}` or empty.
    pub labels: String,
    pub value: f64,
}

impl Sample {
    pub fn gauge(name: &'static str, help: &'static str, value: f64) -> Sample {
        Sample {
            name,
            help,
            counter: false,
            labels: String::new(),
            value,
        }
    }

    pub fn counter(name: &'static str, help: &'static str, value: f64) -> Sample {
        Sample {
            counter: true,
            ..Sample::gauge(name, help, value)
        }
    }

    /// Adds one label (values are ids and codes of ours; quotes and backslashes are escaped).
    pub fn label(mut self, key: &str, value: &str) -> Sample {
        let open = if self.labels.is_empty() {
            "{"
        } else {
            self.labels.pop();
            ","
        };
        let _ = write!(self.labels, "{open}{key}=\"{}\"}}", escape(value));
        self
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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

    /// One attempt of a sync job: `kind` is `contact` or `invoice`, `outcome` one of done,
    /// retry, blocked, failed, parked, error (the store failed).
    pub fn record_job(&self, kind: &str, outcome: &str) {
        self.add(
            &format!("{SYNC_JOBS}{{kind=\"{kind}\",outcome=\"{outcome}\"}}"),
            1,
        );
    }

    /// One HTTP attempt to Bling.
    pub fn record_bling_call(
        &self,
        method: &str,
        route: &str,
        status: Option<u16>,
        latency: Duration,
    ) {
        let status = status.map_or_else(|| "transport".to_string(), |s| s.to_string());
        let route = escape(route);
        self.add(
            &format!("{BLING_CALLS}{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}}"),
            1,
        );
        if let Ok(mut latency_by_route) = self.bling_latency.lock() {
            latency_by_route
                .entry((method.to_string(), route))
                .or_default()
                .observe(latency.as_secs_f64());
        }
    }

    /// Renders every metric, plus the samples read by the caller (samples of one family must
    /// be given together).
    pub fn render(&self, samples: &[Sample]) -> String {
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
        let mut typed = BTreeSet::new();
        for (name, value) in &counters {
            let base = name.split('{').next().unwrap_or(name);
            if typed.insert(base.to_string()) {
                if let Some((_, help)) = COUNTER_HELP.iter().find(|(n, _)| *n == base) {
                    let _ = writeln!(out, "# HELP {base} {help}");
                }
                let _ = writeln!(out, "# TYPE {base} counter");
            }
            let _ = writeln!(out, "{name} {value}");
        }
        self.render_latency(&mut out);
        let mut described = BTreeSet::new();
        for sample in samples {
            if described.insert(sample.name) {
                let kind = if sample.counter { "counter" } else { "gauge" };
                let _ = writeln!(out, "# HELP {} {}", sample.name, sample.help);
                let _ = writeln!(out, "# TYPE {} {kind}", sample.name);
            }
            let _ = writeln!(out, "{}{} {}", sample.name, sample.labels, sample.value);
        }
        out
    }

    fn render_latency(&self, out: &mut String) {
        let latency = self
            .bling_latency
            .lock()
            .map(|h| h.clone())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "# HELP {BLING_CALL_SECONDS} Latency of HTTP attempts to Bling by method and route template."
        );
        let _ = writeln!(out, "# TYPE {BLING_CALL_SECONDS} histogram");
        for ((method, route), h) in &latency {
            let labels = format!("method=\"{method}\",route=\"{route}\"");
            let mut cumulative = 0;
            for (le, n) in BLING_LATENCY_BUCKETS.iter().zip(h.buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "{BLING_CALL_SECONDS}_bucket{{{labels},le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "{BLING_CALL_SECONDS}_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "{BLING_CALL_SECONDS}_sum{{{labels}}} {:.6}", h.sum);
            let _ = writeln!(out, "{BLING_CALL_SECONDS}_count{{{labels}}} {}", h.count);
        }
    }
}

/// The Bling client reports each HTTP attempt here (it knows nothing of the ledger).
impl CallObserver for Metrics {
    fn on_call(&self, call: &CallEvent<'_>) {
        self.record_bling_call(call.method, call.route, call.status, call.latency);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_histogram_is_cumulative_and_counters_have_help() {
        let m = Metrics::default();
        m.record_bling_call("GET", "/contatos", Some(200), Duration::from_millis(30));
        m.record_bling_call("GET", "/contatos", None, Duration::from_secs(60));
        m.record_job("invoice", "done");
        let text = m.render(&[
            Sample::gauge("g", "a gauge", 1.0).label("state", "pending"),
            Sample::gauge("g", "a gauge", 2.0).label("state", "failed"),
        ]);
        assert!(text.contains(
            "bling_ledger_bling_call_seconds_bucket{method=\"GET\",route=\"/contatos\",le=\"0.025\"} 0"
        ));
        assert!(text.contains(
            "bling_ledger_bling_call_seconds_bucket{method=\"GET\",route=\"/contatos\",le=\"0.05\"} 1"
        ));
        assert!(text.contains(
            "bling_ledger_bling_call_seconds_bucket{method=\"GET\",route=\"/contatos\",le=\"30\"} 1"
        ));
        assert!(text.contains(
            "bling_ledger_bling_call_seconds_bucket{method=\"GET\",route=\"/contatos\",le=\"+Inf\"} 2"
        ));
        assert!(text.contains(
            "bling_ledger_bling_calls_total{method=\"GET\",route=\"/contatos\",status=\"transport\"} 1"
        ));
        assert!(text.contains("# HELP bling_ledger_sync_jobs_total "));
        assert!(text.contains("bling_ledger_sync_jobs_total{kind=\"invoice\",outcome=\"done\"} 1"));
        assert_eq!(text.matches("# TYPE g gauge").count(), 1);
        assert!(text.contains("g{state=\"failed\"} 2"));
        let two = Sample::gauge("g", "", 0.0)
            .label("a", "x")
            .label("b", "y\"z");
        assert_eq!(two.labels, "{a=\"x\",b=\"y\\\"z\"}");
    }
}
