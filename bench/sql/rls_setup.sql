-- 1M cards: 100k travelers with 10 each (fixtures only: no triggers, no FK checks).
SET session_replication_role = replica;
INSERT INTO wallet_customers (user_id, stripe_customer_id)
  SELECT bench_uid(u), 'cus_bench' || u FROM generate_series(1, 100000) AS u;
INSERT INTO payment_methods (user_id, stripe_customer_id, stripe_payment_method_id, encrypted_card_data,
                             brand, last4, exp_month, exp_year, is_default)
  SELECT bench_uid(u), 'cus_bench' || u, 'pm_bench' || u || '_' || c, '\x00'::bytea,
         'visa', lpad(c::text, 4, '0'), 12, 2030, c = 1
    FROM generate_series(1, 100000) AS u, generate_series(1, 10) AS c;
RESET session_replication_role;
ANALYZE wallet_customers, payment_methods;
