//! The sidecar's counters, rendered in Prometheus' text format at /metrics.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Counts by one label's value. Values named up front are shown at 0 before
/// their first count, so a dashboard sees the series from the start.
#[derive(Debug, Default)]
pub struct LabelledCounter(Mutex<Vec<(&'static str, u64)>>);

impl LabelledCounter {
    pub fn with_values(values: &[&'static str]) -> Self {
        Self(Mutex::new(values.iter().map(|value| (*value, 0)).collect()))
    }

    pub fn add(&self, value: &'static str) {
        let mut counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match counts.iter_mut().find(|(known, _)| *known == value) {
            Some((_, count)) => *count += 1,
            None => counts.push((value, 1)),
        }
    }

    fn samples(&self, label: &str) -> Vec<(String, u64)> {
        let counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        counts.iter().map(|(value, count)| (format!("{{{label}=\"{value}\"}}"), *count)).collect()
    }
}

/// A metric family's `# HELP` and `# TYPE` lines.
fn write_header(out: &mut String, name: &str, help: &str, kind: &str) {
    out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
}

/// Latency buckets, in seconds: fine around the 200 ms objective, up to
/// Duffel's 30 s deadline.
pub const LATENCY_BUCKETS: [f64; 14] =
    [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5, 10.0, 30.0];

/// A Prometheus histogram over [`LATENCY_BUCKETS`], counts cumulative.
#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bucket, bound) in self.buckets.iter_mut().zip(LATENCY_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        for (count, bound) in self.buckets.iter().zip(LATENCY_BUCKETS) {
            out.push_str(&format!("{name}_bucket{{{labels},le=\"{bound}\"}} {count}\n"));
        }
        out.push_str(&format!("{name}_bucket{{{labels},le=\"+Inf\"}} {}\n", self.count));
        out.push_str(&format!("{name}_sum{{{labels}}} {}\n", self.sum));
        out.push_str(&format!("{name}_count{{{labels}}} {}\n", self.count));
    }
}

/// One route's requests: in flight, answered by status class, latency.
#[derive(Debug, Default, Clone)]
struct RouteSeries {
    in_flight: i64,
    /// 1xx to 5xx.
    answered: [u64; 5],
    latency: Histogram,
}

/// Requests by route (the route table's name, never the raw path) and method.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    routes: Mutex<BTreeMap<(&'static str, &'static str), RouteSeries>>,
    /// 403 answers, by the caller's class (`unknown` for a peer not in the map).
    pub forbidden: LabelledCounter,
    /// 429 answers, by route.
    pub rate_limited: LabelledCounter,
    /// Travelers' tokens and service tokens refused, by reason (never the token).
    pub tokens_refused: LabelledCounter,
    /// Stripe webhook signatures refused, by reason.
    pub signatures_refused: LabelledCounter,
}

/// A request being served: counted in flight until it is answered or dropped
/// (a client that hung up is not counted as answered).
pub struct InFlight<'m> {
    http: &'m HttpMetrics,
    route: (&'static str, &'static str),
    started: Instant,
}

impl HttpMetrics {
    /// Shows these (route, method) pairs at 0 before their first request.
    pub fn register(&self, routes: &[(&'static str, &'static str)]) {
        let mut series = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        for route in routes {
            series.entry(*route).or_default();
        }
    }

    pub fn start(&self, route: &'static str, method: &'static str) -> InFlight<'_> {
        let mut series = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        series.entry((route, method)).or_default().in_flight += 1;
        InFlight { http: self, route: (route, method), started: Instant::now() }
    }

    fn render(&self, out: &mut String) {
        let series = self.routes.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let labels = |(route, method): &(&str, &str)| format!("route=\"{route}\",method=\"{method}\"");
        write_header(
            out,
            "parker_wallet_http_requests_total",
            "Requests answered, by route, method and status class.",
            "counter",
        );
        for (key, route) in &series {
            for (class, count) in route.answered.iter().enumerate() {
                out.push_str(&format!(
                    "parker_wallet_http_requests_total{{{},status_class=\"{}xx\"}} {count}\n",
                    labels(key),
                    class + 1
                ));
            }
        }
        let name = "parker_wallet_http_request_duration_seconds";
        write_header(out, name, "Time to answer (the headers), by route and method.", "histogram");
        for (key, route) in &series {
            route.latency.render(out, name, &labels(key));
        }
        write_header(out, "parker_wallet_http_requests_in_flight", "Requests being served.", "gauge");
        for (key, route) in &series {
            out.push_str(&format!("parker_wallet_http_requests_in_flight{{{}}} {}\n", labels(key), route.in_flight));
        }
    }
}

impl InFlight<'_> {
    /// The request was answered with `status`.
    pub fn answered(self, status: u16) {
        let seconds = self.started.elapsed().as_secs_f64();
        let mut series = self.http.routes.lock().unwrap_or_else(PoisonError::into_inner);
        let route = series.entry(self.route).or_default();
        if let Some(count) = route.answered.get_mut(usize::from(status / 100).saturating_sub(1)) {
            *count += 1;
        }
        route.latency.observe(seconds);
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut series = self.http.routes.lock().unwrap_or_else(PoisonError::into_inner);
        series.entry(self.route).or_default().in_flight -= 1;
    }
}

/// A metric family read at scrape time (the database's figures, gauges).
#[derive(Debug, Clone)]
pub struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    /// (labels as `{a="b"}` or empty, value).
    samples: Vec<(String, f64)>,
}

impl Family {
    pub fn gauge(name: &'static str, help: &'static str, samples: Vec<(String, f64)>) -> Self {
        Self { name, help, kind: "gauge", samples }
    }

    pub fn counter(name: &'static str, help: &'static str, samples: Vec<(String, f64)>) -> Self {
        Self { name, help, kind: "counter", samples }
    }

    pub fn render(&self, out: &mut String) {
        let Self { name, help, kind, samples } = self;
        write_header(out, name, help, kind);
        for (labels, value) in samples {
            out.push_str(&format!("{name}{labels} {value}\n"));
        }
    }
}

/// How an outbound call ended: answered (`ok`), refused by the dependency (a
/// 4xx: a decline, a bad request), failed (5xx, transport), or no answer in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    Ok,
    Refused,
    Failed,
    Timeout,
}

impl CallOutcome {
    const NAMES: [&'static str; 4] = ["ok", "refused", "failed", "timeout"];

    fn index(self) -> usize {
        self as usize
    }

    /// An HTTP answer's outcome by its status.
    pub fn of_status(status: u16) -> Self {
        match status {
            200..=399 => Self::Ok,
            400..=499 => Self::Refused,
            _ => Self::Failed,
        }
    }
}

/// The dependencies, shown at 0 before their first call.
pub const DEPENDENCIES: [&str; 5] = ["kms", "stripe", "duffel", "twilio", "postgres_pool"];

#[derive(Debug, Default, Clone)]
struct DependencySeries {
    outcomes: [u64; 4],
    latency: Histogram,
}

/// Outbound calls by dependency: counts by outcome, latency.
#[derive(Debug)]
pub struct OutboundMetrics(Mutex<BTreeMap<&'static str, DependencySeries>>);

/// Process-wide, unlike [`Metrics`]: the adapters are built by the server, the
/// operator commands and the tests alike, and each call counts wherever it is
/// made, without a handle threaded through every adapter.
pub static OUTBOUND: OutboundMetrics = OutboundMetrics(Mutex::new(BTreeMap::new()));

impl OutboundMetrics {
    pub fn observe(&self, dependency: &'static str, outcome: CallOutcome, elapsed: Duration) {
        {
            let mut series = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            let dependency = series.entry(dependency).or_default();
            dependency.outcomes[outcome.index()] += 1;
            dependency.latency.observe(elapsed.as_secs_f64());
        }
        let _ = REQUEST_WAIT.try_with(|waited| waited.fetch_add(elapsed_micros(elapsed), Ordering::Relaxed));
    }

    fn render(&self, out: &mut String) {
        let mut series = self.0.lock().unwrap_or_else(PoisonError::into_inner).clone();
        for dependency in DEPENDENCIES {
            series.entry(dependency).or_default();
        }
        write_header(
            out,
            "parker_wallet_outbound_requests_total",
            "Calls to KMS, Stripe, Duffel, Twilio, and connections taken from the Postgres pool, by outcome.",
            "counter",
        );
        for (dependency, calls) in &series {
            for (count, outcome) in calls.outcomes.iter().zip(CallOutcome::NAMES) {
                out.push_str(&format!(
                    "parker_wallet_outbound_requests_total{{dependency=\"{dependency}\",outcome=\"{outcome}\"}} {count}\n"
                ));
            }
        }
        let name = "parker_wallet_outbound_request_duration_seconds";
        write_header(
            out,
            name,
            "Time to an outbound call's answer; for postgres_pool, the wait for a connection.",
            "histogram",
        );
        for (dependency, calls) in &series {
            calls.latency.render(out, name, &format!("dependency=\"{dependency}\""));
        }
    }
}

fn elapsed_micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
}

/// Times `call` as a call to `dependency`, its outcome read from its result.
pub async fn timed<T, E>(
    dependency: &'static str,
    call: impl Future<Output = Result<T, E>>,
    outcome_of: impl FnOnce(&Result<T, E>) -> CallOutcome,
) -> Result<T, E> {
    let started = Instant::now();
    let result = call.await;
    OUTBOUND.observe(dependency, outcome_of(&result), started.elapsed());
    result
}

tokio::task_local! {
    /// Microseconds the current request has waited on its dependencies.
    static REQUEST_WAIT: Arc<AtomicU64>;
}

/// The current request's wait counter, for work it hands to another task.
pub fn request_wait() -> Option<Arc<AtomicU64>> {
    REQUEST_WAIT.try_with(Arc::clone).ok()
}

/// Runs `work` counting its outbound waits into `wait` (a request's own, or
/// one handed over by [`request_wait`]).
pub async fn counting_waits<F: Future>(wait: Arc<AtomicU64>, work: F) -> F::Output {
    REQUEST_WAIT.scope(wait, work).await
}

#[derive(Debug, Default)]
pub struct Metrics {
    pub kms_generate_calls: AtomicU64,
    pub kms_decrypt_calls: AtomicU64,
    pub data_key_cache_hits: AtomicU64,
    pub data_key_cache_misses: AtomicU64,
    pub data_keys_evicted: AtomicU64,
    pub encryptions: AtomicU64,
    pub decryptions: AtomicU64,
    pub crypto_failures: AtomicU64,
    /// Records refused on their key reference or epoch, or on a wrapped key the
    /// provider refused lately, without a provider call.
    pub records_refused_before_kms: AtomicU64,
    pub http: HttpMetrics,
    /// Booking states entered, by state (the server names every state up front).
    pub bookings_entered: LabelledCounter,
    /// Phone verification outcomes (`phone::OUTCOMES`).
    pub phone_verifications: LabelledCounter,
}

impl Metrics {
    pub fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn booking_entered(&self, state: &'static str) {
        self.bookings_entered.add(state);
    }

    pub fn phone_verification(&self, outcome: &'static str) {
        self.phone_verifications.add(outcome);
    }

    pub fn kms_calls(&self) -> u64 {
        self.kms_generate_calls.load(Ordering::Relaxed) + self.kms_decrypt_calls.load(Ordering::Relaxed)
    }

    pub fn render(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, samples: &[(&str, u64)]| {
            write_header(&mut out, name, help, "counter");
            for (labels, value) in samples {
                out.push_str(&format!("{name}{labels} {value}\n"));
            }
        };
        counter(
            "parker_wallet_kms_calls_total",
            "Calls to the key provider.",
            &[
                ("{operation=\"generate_data_key\"}", get(&self.kms_generate_calls)),
                ("{operation=\"decrypt\"}", get(&self.kms_decrypt_calls)),
            ],
        );
        counter(
            "parker_wallet_data_key_cache_total",
            "Data-key cache lookups.",
            &[
                ("{result=\"hit\"}", get(&self.data_key_cache_hits)),
                ("{result=\"miss\"}", get(&self.data_key_cache_misses)),
            ],
        );
        counter(
            "parker_wallet_data_keys_evicted_total",
            "Data keys evicted and zeroized.",
            &[("", get(&self.data_keys_evicted))],
        );
        counter(
            "parker_wallet_crypto_operations_total",
            "Record encryptions and decryptions.",
            &[
                ("{operation=\"encrypt\"}", get(&self.encryptions)),
                ("{operation=\"decrypt\"}", get(&self.decryptions)),
                ("{operation=\"failed\"}", get(&self.crypto_failures)),
            ],
        );
        counter(
            "parker_wallet_records_refused_before_kms_total",
            "Records refused for their key reference, epoch or a wrapped key refused lately, without a key-provider call.",
            &[("", get(&self.records_refused_before_kms))],
        );
        for (name, help, label, values) in [
            (
                "parker_wallet_http_forbidden_total",
                "403 answers, by caller class.",
                "caller_class",
                &self.http.forbidden,
            ),
            ("parker_wallet_http_rate_limited_total", "429 answers, by route.", "route", &self.http.rate_limited),
            (
                "parker_wallet_tokens_refused_total",
                "Travelers' and service tokens refused, by reason.",
                "reason",
                &self.http.tokens_refused,
            ),
            (
                "parker_wallet_webhook_signatures_refused_total",
                "Stripe webhook signatures refused, by reason.",
                "reason",
                &self.http.signatures_refused,
            ),
        ] {
            let labelled = values.samples(label);
            let samples: Vec<(&str, u64)> = labelled.iter().map(|(labels, value)| (labels.as_str(), *value)).collect();
            counter(name, help, &samples);
        }
        let states = self.bookings_entered.samples("state");
        let samples: Vec<(&str, u64)> = states.iter().map(|(labels, value)| (labels.as_str(), *value)).collect();
        counter(
            "parker_wallet_booking_states_total",
            "Booking states entered (needs_reconciliation and a capture backlog deserve alerts).",
            &samples,
        );
        let outcomes = self.phone_verifications.samples("outcome");
        let samples: Vec<(&str, u64)> = outcomes.iter().map(|(labels, value)| (labels.as_str(), *value)).collect();
        counter(
            "parker_wallet_phone_verifications_total",
            "Phone verification outcomes: codes sent and approved, sends refused, wrong or expired codes.",
            &samples,
        );
        self.http.render(&mut out);
        OUTBOUND.render(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_in_flight_until_answered_and_lands_in_its_buckets() {
        let http = HttpMetrics::default();
        http.register(&[("/healthz", "GET")]);
        let served = http.start("/v1/wallet/payment-methods", "GET");
        let dropped = http.start("/v1/wallet/payment-methods", "GET");
        let mut out = String::new();
        http.render(&mut out);
        assert!(out.contains(
            "parker_wallet_http_requests_in_flight{route=\"/v1/wallet/payment-methods\",method=\"GET\"} 2\n"
        ));
        assert!(out
            .contains("parker_wallet_http_requests_total{route=\"/healthz\",method=\"GET\",status_class=\"2xx\"} 0\n"));
        served.answered(201);
        drop(dropped);
        let mut out = String::new();
        http.render(&mut out);
        let labels = "route=\"/v1/wallet/payment-methods\",method=\"GET\"";
        assert!(out.contains(&format!("parker_wallet_http_requests_in_flight{{{labels}}} 0\n")), "{out}");
        assert!(out.contains(&format!("parker_wallet_http_requests_total{{{labels},status_class=\"2xx\"}} 1\n")));
        assert!(out.contains(&format!("parker_wallet_http_request_duration_seconds_bucket{{{labels},le=\"0.2\"}} 1\n")));
        assert!(out.contains(&format!("parker_wallet_http_request_duration_seconds_count{{{labels}}} 1\n")));
    }

    #[test]
    fn buckets_are_cumulative() {
        let mut histogram = Histogram::default();
        histogram.observe(0.18);
        histogram.observe(0.6);
        let at = |bound: f64| LATENCY_BUCKETS.iter().position(|b| *b == bound).map(|i| histogram.buckets[i]);
        assert_eq!((at(0.15), at(0.2), at(0.5), at(1.0)), (Some(0), Some(1), Some(1), Some(2)));
        assert_eq!(histogram.count, 2);
    }
}
