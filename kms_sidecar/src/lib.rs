//! Parker Wallet's sidecar (`kms-sidecar`): the one process that holds the KMS
//! credentials and the Stripe and Duffel keys. On a local Unix socket it
//! serves envelope encryption to the database and to Edge Functions, the
//! traveler's wallet (saved cards, Stripe webhooks) and the booking saga
//! (authorize, order, capture); it also runs the operator commands (migrate,
//! rotate-keys, reconcile, the audit checkpoints). The binary keeps its first name, `kms-sidecar`.
//!
//! Imports point one way: transport → domain → adapters. No domain or adapter
//! module uses a route's types; domain errors are mapped to HTTP once, in
//! `routes::error`.

// Transport: sockets, HTTP, the routes.
/// The peer's uid on the Unix socket (SO_PEERCRED), which names its caller class.
pub mod peer;
/// RFC 9457 problem+json: the body of every error answer.
pub mod problem;
/// The route table, one module per route group, the views (response bodies) and `ApiError`.
pub mod routes;
/// Binds the Unix socket (and optional loopback TCP), learns each caller's class, serves HTTP/1.1.
pub mod server;
/// What every handler can reach, built once at start; the domain's views of it.
pub mod state;

// Domain: validated values and the rules.
/// The audit trail provable to KMS alone: signed checkpoints, their log, verification, signed redactions.
pub mod audit;
/// Supabase access tokens verified (HS256, or RS256/ES256 against a JWKS).
pub mod auth;
/// Booking charges: the saga's rules, steps, holds, 3-D Secure and the reconciler.
pub mod bookings;
/// Envelope encryption: the record format, the data-key cache, the key providers (AWS KMS, local).
pub mod crypto;
/// Validated values: encryption context, caller class, subject, money, actor, sealed columns.
pub mod domain;
/// Per-traveler concurrency cap, so one traveler cannot hold the pool.
pub mod fairness;
/// What makes two requests the same request for an `Idempotency-Key`.
pub mod idempotency;
/// Phone verification: codes sent and checked through Twilio Verify, within the wallet's own limits.
pub mod phone;
/// The traveler's rights over their data (GDPR): the export and the erasure.
pub mod privacy;
/// The traveler's wallet: Stripe customer, SetupIntents, saved cards, Stripe events.
pub mod wallet;

// Adapters: what the sidecar talks to.
/// Postgres: RLS-bound transactions acting for a traveler, and leases.
pub mod db;
/// Duffel: the port and its HTTP client.
pub mod duffel;
/// The HTTPS client the adapters share (hyper, rustls), each call under a deadline.
pub mod outbound;
/// Stripe: the port, its async-stripe client, webhook signatures.
pub mod stripe;
/// The process's TLS crypto provider (rustls), chosen once for every client.
pub mod tls;
/// Twilio Verify v2 (phone verification by SMS): the port and its HTTP client.
pub mod twilio;

// Operations.
/// Settings (TOML, `PW__` variables, flags), validated at start.
pub mod config;
/// Features an operator turns off without a restart (`kill_switch.*` flags).
pub mod kill_switches;
/// Counters, gauges and latency histograms (outbound calls too), in Prometheus' text format at `/metrics`.
pub mod metrics;
/// `kms-sidecar migrate`: the SQL migrations under `migrations/`.
pub mod migrate;
/// The scheduled jobs' recorded runs and the money figures, read from the database at scrape time.
pub mod operations;
/// Whether the key provider, the database and Stripe answer (`/readyz`, `/metrics`), checked at most every few seconds.
pub mod readiness;
/// `kms-sidecar rotate-keys`: every sealed column re-wrapped under the current key and epoch.
pub mod rotate;
/// Secrets from the environment or files, never from the settings file; redacted in `Debug`.
pub mod secrets;
/// Logging (`tracing`), JSON or text.
pub mod telemetry;

#[cfg(test)]
mod layers;
