-- :travelers travelers, each with a one-row audit chain of the second format,
-- hashed exactly as the trigger hashes (written directly: loading a million
-- rows through the trigger would only measure the trigger).
SET session_replication_role = replica; -- fixtures only: no triggers, no FK checks
INSERT INTO auth.users (id)
  SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid FROM generate_series(1, :travelers) AS n;
INSERT INTO traveler_data_audit
  (id, user_id, chain_seq, action, table_name, new_data, created_at, prev_hash, row_hash, hash_version, actor)
SELECT r.id, r.user_id, 1, 'INSERT', 'traveler_profiles', r.new_data, r.created_at, r.genesis,
       wallet.audit_row_hash_v2(r.genesis, r.id, r.user_id, 1, 'INSERT', 'traveler_profiles', NULL, r.actor,
                                (extract(epoch FROM r.created_at) * 1000000)::bigint,
                                wallet.audit_personal_digest(NULL, NULL, r.new_data::text, NULL, NULL)),
       2, r.actor
  FROM (SELECT gen_random_uuid() AS id, u.id AS user_id, '{"first_name": "Ada"}'::jsonb AS new_data,
               now() AS created_at, decode(repeat('00', 32), 'hex') AS genesis, 'user:' || u.id AS actor
          FROM auth.users u) AS r;
RESET session_replication_role;
ANALYZE;
