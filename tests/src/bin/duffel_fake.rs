//! The Duffel fake as a process, for the local stack and the demo:
//! `duffel-fake --port N [--refuse-offer off_...]...`. Serves until killed.

// Test code: a failed unwrap is a failed test (or benchmark), with its message.
#![allow(clippy::unwrap_used)]

use harness::duffel_fake::FakeDuffel;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut port = 0_u16;
    let mut refused = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--port", Some(value)) => port = value.parse()?,
            ("--refuse-offer", Some(offer)) => refused.push(offer),
            _ => anyhow::bail!("usage: duffel-fake --port N [--refuse-offer OFFER_ID]..."),
        }
    }
    let duffel = FakeDuffel::start_on(port).await?;
    for offer in &refused {
        duffel.offer_gone(offer);
    }
    eprintln!("duffel-fake on {}", duffel.url);
    std::future::pending::<()>().await;
    Ok(())
}
