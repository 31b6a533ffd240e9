//! A statement a trigger runs on every row: prepared once per backend, always
//! run with one generic plan, planned without sequential scans, and with no
//! settings changed per call. Function-level `SET plan_cache_mode` and
//! `SET enable_seqscan` would save and restore two settings on every row
//! (about 15 % of an audited single-row INSERT, bench/run.sh); here the plan
//! is generic by its cursor option, and the settings change only around the
//! runs where Postgres may plan it.

use std::ffi::CString;
use std::ptr::NonNull;

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::{PgList, PgOid};

use super::raise;

pub struct GenericPlan {
    sql: CString,
    types: Vec<pg_sys::Oid>,
    plan: NonNull<pg_sys::_SPI_plan>,
    /// Whether it has run (and so been planned) at least once.
    planned: bool,
    /// Set when Postgres planned it again during a run without the settings
    /// (an invalidation it had not yet absorbed): that plan is not kept, the
    /// next run prepares the statement afresh.
    stale: bool,
}

/// Prepares `sql` and keeps the plan out of SPI's memory. Needs an SPI connection.
fn keep_prepared(sql: &CString, types: &[pg_sys::Oid]) -> NonNull<pg_sys::_SPI_plan> {
    let mut types = types.to_vec();
    // SAFETY: an SPI connection is open (the caller's); the text and the type
    // array outlive the call.
    let plan = unsafe {
        let plan = pg_sys::SPI_prepare_cursor(
            sql.as_ptr(),
            types.len() as i32,
            types.as_mut_ptr(),
            pg_sys::CURSOR_OPT_GENERIC_PLAN as i32,
        );
        if !plan.is_null() {
            pg_sys::SPI_keepplan(plan);
        }
        plan
    };
    match NonNull::new(plan) {
        Some(plan) => plan,
        None => raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, "parker_wallet: a trigger statement did not prepare"),
    }
}

impl GenericPlan {
    /// Prepares `sql` with parameter types `types` and keeps it for the
    /// backend's life. Needs an SPI connection (inside `Spi::connect_mut`).
    pub fn prepare(sql: &str, types: &[PgOid]) -> Self {
        let Ok(sql) = CString::new(sql) else {
            raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, "parker_wallet: a statement holds a NUL byte")
        };
        let types: Vec<pg_sys::Oid> = types.iter().map(|t| t.value()).collect();
        let plan = keep_prepared(&sql, &types);
        Self { sql, types, plan, planned: false, stale: false }
    }

    /// How many plans Postgres has made for it so far.
    fn generation(&self) -> i64 {
        // SAFETY: the plan is kept and valid; its plan sources live as long as it.
        unsafe {
            let sources =
                PgList::<pg_sys::CachedPlanSource>::from_pg(pg_sys::SPI_plan_get_plan_sources(self.plan.as_ptr()));
            sources.iter_ptr().map(|source| i64::from((*source).generation)).sum()
        }
    }

    /// Runs it with `args`, one per parameter and of its type. Needs an SPI
    /// connection.
    pub fn execute(&mut self, args: &[DatumWithOid<'_>]) {
        if self.stale {
            // The new plan first: if preparing raises, the old one is still
            // ours to free (once, when this value is dropped).
            let fresh = keep_prepared(&self.sql, &self.types);
            let stale = std::mem::replace(&mut self.plan, fresh);
            // SAFETY: the stale plan was kept by `keep_prepared` and nothing refers to it now.
            unsafe { pg_sys::SPI_freeplan(stale.as_ptr()) };
            (self.planned, self.stale) = (false, false);
        }
        let arguments_fit = args.len() == self.types.len()
            && args.iter().zip(&self.types).all(|(arg, oid)| arg.oid() == *oid || arg.datum().is_none());
        if !arguments_fit {
            raise(
                PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
                "parker_wallet: statement arguments of the wrong number or type",
            );
        }
        let (mut values, nulls): (Vec<pg_sys::Datum>, Vec<std::ffi::c_char>) = args
            .iter()
            .map(|arg| match arg.datum() {
                Some(datum) => (datum.sans_lifetime(), b' ' as std::ffi::c_char),
                None => (pg_sys::Datum::from(0usize), b'n' as std::ffi::c_char),
            })
            .unzip();
        // SAFETY: the plan is kept and valid; values and nulls hold one entry
        // per parameter, each of its type (checked above), and outlive the
        // call. The settings are saved in their own nesting level and restored
        // at once; an error on the way unwinds them with the (sub)transaction,
        // as a function's SET clauses are.
        unsafe {
            // A session that forces custom plans would re-plan it on every
            // row: override that, as the function-level setting did.
            let custom_forced =
                pg_sys::plan_cache_mode == pg_sys::PlanCacheMode::PLAN_CACHE_MODE_FORCE_CUSTOM_PLAN as i32;
            // Planned on its first run and after an invalidation (DDL,
            // ANALYZE). A plan made while a table is still empty must not scan
            // it sequentially for the rest of the connection's life.
            let may_plan = !self.planned || custom_forced || !pg_sys::SPI_plan_is_valid(self.plan.as_ptr());
            let generation = self.generation();
            let nest_level = may_plan.then(|| {
                let level = pg_sys::NewGUCNestLevel();
                let mut settings = vec![(c"enable_seqscan", c"off")];
                if custom_forced {
                    settings.push((c"plan_cache_mode", c"force_generic_plan"));
                }
                for (name, value) in settings {
                    pg_sys::set_config_option(
                        name.as_ptr(),
                        value.as_ptr(),
                        pg_sys::GucContext::PGC_USERSET,
                        pg_sys::GucSource::PGC_S_SESSION,
                        pg_sys::GucAction::GUC_ACTION_SAVE,
                        true,
                        0,
                        false,
                    );
                }
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
            // Re-planned by an invalidation that arrived during this run: the
            // new plan was made without the settings.
            if nest_level.is_none() && self.generation() != generation {
                self.stale = true;
            }
        }
        self.planned = true;
    }
}

impl Drop for GenericPlan {
    fn drop(&mut self) {
        // SAFETY: the plan was kept by `keep_prepared` and is freed once.
        unsafe {
            pg_sys::SPI_freeplan(self.plan.as_ptr());
        }
    }
}
