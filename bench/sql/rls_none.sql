-- Baseline for rls_own.sql: the same transaction as the table's owner (no RLS),
-- the traveler's rows picked by an explicit WHERE.
\set n random(1, 100000)
BEGIN;
SELECT set_config('role', 'postgres', true),
       set_config('request.jwt.claims', '{"sub":"' || bench_uid(:n) || '","role":"authenticated"}', true);
SELECT id, brand, last4, exp_month, exp_year, is_default FROM payment_methods WHERE user_id = bench_uid(:n);
COMMIT;
