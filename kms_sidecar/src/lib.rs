//! Parker Wallet's sidecar.
//!
//! The map, outside in:
//! - [`server`]: transport. Binds the Unix socket and speaks HTTP/1.1 (hyper).
//! - [`routes`]: one function per route; turns requests into domain calls.
//! - [`problem`]: the one error type of the HTTP boundary (RFC 9457).
//! - [`migrate`]: the operator's reversible schema migrations.
//! - [`config`], [`telemetry`]: start-up concerns.

pub mod config;
pub mod migrate;
pub mod problem;
pub mod routes;
pub mod server;
pub mod telemetry;
