//! The sidecar's counters, rendered in Prometheus' text format at /metrics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Counts by one label's value. Values named up front are shown at 0 before
/// their first count, so a dashboard sees the series from the start.
#[derive(Debug, Default)]
pub struct LabelledCounter(Mutex<Vec<(&'static str, u64)>>);

impl LabelledCounter {
    pub fn with_values(values: &[&'static str]) -> Self {
        Self(Mutex::new(values.iter().map(|value| (*value, 0)).collect()))
    }

    pub fn add(&self, value: &'static str) {
        let mut counts = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match counts.iter_mut().find(|(known, _)| *known == value) {
            Some((_, count)) => *count += 1,
            None => counts.push((value, 1)),
        }
    }

    fn samples(&self, label: &str) -> Vec<(String, u64)> {
        let counts = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        counts.iter().map(|(value, count)| (format!("{{{label}=\"{value}\"}}"), *count)).collect()
    }
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
    pub requests_refused: AtomicU64,
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
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
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
        counter(
            "parker_wallet_requests_refused_total",
            "Requests refused for their caller class.",
            &[("", get(&self.requests_refused))],
        );
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
        out
    }
}
