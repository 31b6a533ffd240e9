//! A statement a trigger runs on every row: prepared once per backend, always
//! run with its one generic plan, planned without sequential scans, and with
//! no settings changed per call. Function-level `SET plan_cache_mode` and
//! `SET enable_seqscan` would save and restore two settings on every row
//! (about 15 % of an audited single-row INSERT, bench/run.sh); here the plan
//! is generic by its cursor option, and `enable_seqscan` is off only while
//! Postgres may be planning it.

use std::ffi::CString;
use std::ptr::NonNull;

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::PgOid;

use super::raise;

pub struct GenericPlan {
    plan: NonNull<pg_sys::_SPI_plan>,
    /// Whether it has run (and so been planned) at least once.
    planned: bool,
}

impl GenericPlan {
    /// Prepares `sql` with parameter types `types` and keeps it for the
    /// backend's life. Needs an SPI connection (inside `Spi::connect_mut`).
    pub fn prepare(sql: &str, types: &[PgOid]) -> Self {
        let Ok(sql) = CString::new(sql) else {
            raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, "parker_wallet: a statement holds a NUL byte")
        };
        let mut oids: Vec<pg_sys::Oid> = types.iter().map(|t| t.value()).collect();
        // SAFETY: an SPI connection is open (the caller's); the text and the
        // type array outlive the call; the plan is kept out of SPI's memory.
        let plan = unsafe {
            let plan = pg_sys::SPI_prepare_cursor(
                sql.as_ptr(),
                oids.len() as i32,
                oids.as_mut_ptr(),
                pg_sys::CURSOR_OPT_GENERIC_PLAN as i32,
            );
            if !plan.is_null() {
                pg_sys::SPI_keepplan(plan);
            }
            plan
        };
        match NonNull::new(plan) {
            Some(plan) => Self { plan, planned: false },
            None => raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, "parker_wallet: a trigger statement did not prepare"),
        }
    }

    /// Runs it with `args` (one per parameter). Needs an SPI connection.
    pub fn execute(&mut self, args: &[DatumWithOid<'_>]) {
        let (mut values, nulls): (Vec<pg_sys::Datum>, Vec<std::ffi::c_char>) = args
            .iter()
            .map(|arg| match arg.datum() {
                Some(datum) => (datum.sans_lifetime(), b' ' as std::ffi::c_char),
                None => (pg_sys::Datum::from(0usize), b'n' as std::ffi::c_char),
            })
            .unzip();
        // SAFETY: the plan is kept and valid; values and nulls hold one entry per
        // parameter (the plan's argument count is checked first) and outlive
        // the call. The setting is saved in its own nesting level and restored
        // at once; an error on the way unwinds it with the (sub)transaction.
        unsafe {
            if pg_sys::SPI_getargcount(self.plan.as_ptr()) != values.len() as i32 {
                raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, "parker_wallet: wrong number of statement arguments");
            }
            // Planned on its first run and again after an invalidation (DDL,
            // ANALYZE). A plan made while a table is still empty must not scan
            // it sequentially for the rest of the connection's life.
            let may_plan = !self.planned || !pg_sys::SPI_plan_is_valid(self.plan.as_ptr());
            let nest_level = may_plan.then(|| {
                let level = pg_sys::NewGUCNestLevel();
                pg_sys::set_config_option(
                    c"enable_seqscan".as_ptr(),
                    c"off".as_ptr(),
                    pg_sys::GucContext::PGC_USERSET,
                    pg_sys::GucSource::PGC_S_SESSION,
                    pg_sys::GucAction::GUC_ACTION_SAVE,
                    true,
                    0,
                    false,
                );
                level
            });
            let status = pg_sys::SPI_execute_plan(self.plan.as_ptr(), values.as_mut_ptr(), nulls.as_ptr(), false, 0);
            if let Some(level) = nest_level {
                pg_sys::AtEOXact_GUC(true, level);
            }
            if status < 0 {
                raise(
                    PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
                    format!("parker_wallet: SPI_execute_plan failed ({status})"),
                );
            }
        }
        self.planned = true;
    }
}

impl Drop for GenericPlan {
    fn drop(&mut self) {
        // SAFETY: the plan was kept by `prepare` and is freed once.
        unsafe {
            pg_sys::SPI_freeplan(self.plan.as_ptr());
        }
    }
}
