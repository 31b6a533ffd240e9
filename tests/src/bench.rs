//! What the benchmark binaries share: run an operation from N concurrent
//! clients for a while, and print throughput and latency percentiles.

use std::time::{Duration, Instant};

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

fn figures(mut latencies: Vec<Duration>, elapsed: Duration) -> Figures {
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Figures { ops_per_sec: latencies.len() as f64 / elapsed.as_secs_f64(), p50: at(0.50), p99: at(0.99) }
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
