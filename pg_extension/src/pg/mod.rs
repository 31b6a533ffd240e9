//! The SQL surface: thin wrappers that read Postgres state and call plain Rust.

pub mod audit;
pub mod completion;
pub mod crypto;
pub mod flags;
mod generic_plan;
pub mod identity;
pub mod preferences;
pub mod rls;
pub mod security;
pub mod settings;

#[cfg(any(test, feature = "pg_test"))]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod test_support;

use pgrx::prelude::*;

/// Raises a Postgres ERROR with an explicit SQLSTATE; never returns.
#[allow(unreachable_code)] // ereport!(ERROR) longjmps, but its type does not say so
pub(crate) fn raise(code: PgSqlErrorCode, message: impl Into<String>) -> ! {
    let message: String = message.into();
    ereport!(ERROR, code, message);
    unreachable!("ereport(ERROR) does not return")
}

/// An SPI failure is a bug or a broken installation, never the caller's input.
pub(crate) fn spi_failed(error: pgrx::spi::Error) -> ! {
    raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("parker_wallet: {error}"))
}
