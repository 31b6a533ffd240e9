//! The Twilio Verify fake as a process, for the local stack and the demo:
//! `twilio-fake --port N`. Serves until killed; `GET /_fake/codes/{number}`
//! shows the codes "sent by SMS" to a number.

// Test code: a failed unwrap is a failed test (or demo), with its message.
#![allow(clippy::unwrap_used)]

use harness::twilio_fake::FakeTwilio;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let port = match (args.next().as_deref(), args.next()) {
        (Some("--port"), Some(port)) => port.parse()?,
        _ => anyhow::bail!("usage: twilio-fake --port N"),
    };
    let twilio = FakeTwilio::start_on(port).await?;
    eprintln!("twilio-fake on {}", twilio.url);
    std::future::pending::<()>().await;
    Ok(())
}
