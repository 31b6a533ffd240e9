//! TLS for the outbound clients (Stripe, Duffel, Postgres, KMS).

/// Two TLS stacks are linked (the AWS SDK's and Stripe's), so rustls cannot pick
/// a crypto provider by itself: name one for the process, once.
pub fn ensure_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
