-- parker_wallet 0.5.0 -> 0.6.0: a cheaper audit trigger.
--
-- * wallet.audit_trigger() keeps only its search_path. The library now runs
--   the trigger's statement with one generic plan, made without sequential
--   scans, by itself (pg/generic_plan.rs); the function-level plan_cache_mode
--   and enable_seqscan settings cost every audited row a save and a restore.
-- * In the library: the redaction is a constant of the trigger's statement,
--   and the request's claims and headers are parsed once per request rather
--   than once per row.
\echo Use "ALTER EXTENSION parker_wallet UPDATE TO '0.6.0'" to load this file. \quit

ALTER FUNCTION wallet.audit_trigger() RESET plan_cache_mode;
ALTER FUNCTION wallet.audit_trigger() RESET enable_seqscan;
