//! The end-to-end tests, one module per area, in one test binary: each former
//! binary linked the AWS SDK, async-stripe and sqlx again. They need the stack
//! `scripts/test.sh` starts (its `PW_*` variables).

// Test code: a failed unwrap is a failed test (or benchmark), with its message.
#![allow(clippy::unwrap_used)]

mod audit;
mod booking_saga;
mod bookings;
mod consents;
mod crypto;
mod database_crypto;
mod database_tls;
mod edge_functions;
mod erasure;
mod extension;
mod kill_switches;
mod kms;
mod least_privilege;
mod metrics;
mod migrations;
mod operations_files;
mod payment_intents;
mod phone;
mod preferences;
mod privacy;
mod readiness;
mod rls;
mod rotate;
mod scheduled_jobs;
mod secrets_rotation;
mod sidecar;
mod stack;
mod supabase_shape;
mod twilio;
mod wallet;
mod wallet_page;
mod webhooks;
