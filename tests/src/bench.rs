//! What the benchmark binaries share: run an operation from N concurrent
//! clients for a while, and print throughput and latency percentiles; split a
//! sidecar call's time into the sidecar's own and its outbound waits.

use std::time::{Duration, Instant};

use crate::Response;

/// One client's operation, called back to back.
pub type Operation =
    Box<dyn FnMut() -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send>> + Send>;

pub struct Figures {
    pub ops_per_sec: f64,
    pub p50: Duration,
    pub p99: Duration,
}

pub fn print_row(label: &str, result: &Figures) {
    println!("{label:<52} {:>10.0} {:>10} {:>10}", result.ops_per_sec, result.p50.as_micros(), result.p99.as_micros());
}

/// The `q` quantile (0..1) of `samples`, which it sorts.
pub fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort_unstable();
    samples.get(((samples.len() as f64 * q) as usize).min(samples.len().saturating_sub(1))).copied().unwrap_or_default()
}

fn figures(mut latencies: Vec<Duration>, elapsed: Duration) -> Figures {
    Figures {
        ops_per_sec: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: quantile(&mut latencies, 0.50),
        p99: quantile(&mut latencies, 0.99),
    }
}

/// The outbound wait a sidecar answer reports (`Server-Timing: outbound;dur=<ms>`,
/// the sidecar's `server_timing` setting): Stripe, Duffel, KMS and the wait for a
/// pooled connection.
pub fn outbound(response: &Response) -> Duration {
    let header = response.headers.get("server-timing").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let ms = header.split("dur=").nth(1).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    Duration::from_secs_f64(ms / 1000.0)
}

/// Whole and own times of one route's calls: own = whole less the outbound wait.
#[derive(Debug, Default, Clone)]
pub struct OwnTimes {
    pub whole: Vec<Duration>,
    pub own: Vec<Duration>,
}

impl OwnTimes {
    /// Records a call that took `whole`, as `response` reports its waits.
    pub fn add(&mut self, whole: Duration, response: &Response) {
        self.whole.push(whole);
        self.own.push(whole.saturating_sub(outbound(response)));
    }

    /// Times `call` (it starts when awaited), records it and answers it; a
    /// refusal is an error.
    pub async fn measure(
        &mut self,
        call: impl std::future::Future<Output = anyhow::Result<Response>>,
    ) -> anyhow::Result<Response> {
        let begun = Instant::now();
        let response = call.await?;
        anyhow::ensure!(response.status.is_success(), "{}", response.text);
        self.add(begun.elapsed(), &response);
        Ok(response)
    }

    /// Own time's p50 and p95.
    pub fn own_p50_p95(&mut self) -> (Duration, Duration) {
        (quantile(&mut self.own, 0.50), quantile(&mut self.own, 0.95))
    }

    /// One row: calls, own p50 and p95, whole p95 (µs), own p95 against `floor`'s.
    pub fn print(&mut self, label: &str, floor: Duration) {
        let (own50, own95) = self.own_p50_p95();
        let whole95 = quantile(&mut self.whole, 0.95);
        println!(
            "{label:<44} {:>6} {:>10} {:>10} {:>10} {:>9.1}x",
            self.own.len(),
            own50.as_micros(),
            own95.as_micros(),
            whole95.as_micros(),
            own95.as_secs_f64() / floor.as_secs_f64().max(1e-9)
        );
    }

    /// The header of [`OwnTimes::print`]'s rows.
    pub fn print_header(title: &str) {
        println!(
            "{title:<44} {:>6} {:>10} {:>10} {:>10} {:>10}",
            "calls", "own p50 µs", "own p95 µs", "all p95 µs", "own/floor"
        );
    }
}

/// `clients` tasks, each running `operation` back to back for `duration`.
pub async fn run<F, Fut>(clients: usize, duration: Duration, make: F) -> anyhow::Result<Figures>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Operation>>,
{
    let mut tasks = Vec::new();
    let started = Instant::now();
    let deadline = started + duration;
    for _ in 0..clients {
        let mut operation = make().await?;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let begun = Instant::now();
                operation().await?;
                latencies.push(begun.elapsed());
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    Ok(figures(all, started.elapsed()))
}

/// The transport's floor: `GET /healthz` on `sidecar`'s socket, back to back
/// for `duration`, printed as the first row; its own-time p95.
pub async fn healthz_floor(sidecar: &crate::Sidecar, duration: Duration) -> anyhow::Result<Duration> {
    let mut floor = OwnTimes::default();
    let until = Instant::now() + duration;
    while Instant::now() < until {
        floor.measure(sidecar.request("GET", "/healthz", None)).await?;
    }
    let floor_p95 = quantile(&mut floor.own, 0.95);
    floor.print("baseline: GET /healthz (the socket's floor)", floor_p95);
    Ok(floor_p95)
}

/// One row of the summary `bench/all.sh` prints (what, measured, ratio to its
/// baseline, target), appended to the file `BENCH_SUMMARY` names; nothing
/// when it is unset.
pub fn summary(what: &str, measured: &str, ratio: &str, target: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let Some(path) = std::env::var_os("BENCH_SUMMARY") else { return Ok(()) };
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    writeln!(file, "{what}|{measured}|{ratio}|{target}")?;
    Ok(())
}
