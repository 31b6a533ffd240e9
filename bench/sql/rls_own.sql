-- A traveler lists their cards as PostgREST asks: role authenticated, their
-- claims, no WHERE clause: RLS picks their rows out of 1M.
\set n random(1, 100000)
BEGIN;
SELECT set_config('role', 'authenticated', true),
       set_config('request.jwt.claims', '{"sub":"' || bench_uid(:n) || '","role":"authenticated"}', true);
SELECT id, brand, last4, exp_month, exp_year, is_default FROM payment_methods;
COMMIT;
