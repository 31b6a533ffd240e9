//! The harness's emulators are up and speak their APIs.

use harness::{send, Emulators};

async fn tcp(url: &str) -> anyhow::Result<tokio::net::TcpStream> {
    let address = url.trim_start_matches("http://");
    Ok(tokio::net::TcpStream::connect(address).await?)
}

#[tokio::test]
async fn localstripe_answers_the_stripe_api() -> anyhow::Result<()> {
    let emulators = Emulators::from_env()?;
    let response = send(tcp(&emulators.localstripe_url).await?, "GET", "/v1/customers", None).await?;
    // localstripe, like Stripe, wants an API key: without one it is 401.
    assert_eq!(response.status.as_u16(), 401, "{response:?}");
    Ok(())
}

#[tokio::test]
async fn moto_answers_the_kms_api() -> anyhow::Result<()> {
    let emulators = Emulators::from_env()?;
    let response = send(tcp(&emulators.moto_url).await?, "GET", "/moto-api/data.json", None).await?;
    assert!(response.status.is_success(), "{response:?}");
    assert!(response.json.is_object());
    Ok(())
}
