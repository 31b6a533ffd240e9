//! Parker Wallet's sidecar.
//!
//! The map, outside in:
//! - [`server`]: transport. Binds the Unix socket (and optional loopback TCP),
//!   learns each caller's class, speaks HTTP/1.1 (hyper).
//! - [`routes`]: one module per route group; one error type ([`routes::ApiError`])
//!   mapped once to RFC 9457 problems ([`problem`]).
//! - [`domain`]: validated values (`EncryptionContext`, `CallerClass`); [`auth`]:
//!   the verified traveler behind a request (Supabase JWT).
//! - [`database`]: the Postgres adapter (RLS-bound, claims set per transaction);
//!   [`payments`]: the Stripe port and its async-stripe implementation.
//! - [`crypto`]: envelope encryption — the v3 record format, the data-key cache,
//!   and the key providers (AWS KMS, local keyring) behind one trait.
//! - [`migrate`], [`rotate`]: operator commands.
//! - [`fairness`]: per-traveler concurrency cap, so one traveler cannot hold the pool.
//! - [`config`], [`secrets`], [`metrics`], [`telemetry`]: start-up and operations.

pub mod auth;
pub mod bookings;
pub mod config;
pub mod crypto;
pub mod database;
pub mod domain;
pub mod duffel;
pub mod fairness;
pub mod metrics;
pub mod migrate;
pub mod payments;
pub mod peer;
pub mod problem;
pub mod rotate;
pub mod routes;
pub mod secrets;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod webhooks;
