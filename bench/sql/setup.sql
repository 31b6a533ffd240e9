-- Benchmark fixtures, on a database migrated like production.
-- bench_uid(n): the n-th benchmark traveler's id, deterministic.
CREATE FUNCTION bench_uid(n bigint) RETURNS uuid LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid $$;

CREATE SEQUENCE bench_insert_seq START 1000001;

-- 1..1000000 have a profile (UPDATE targets, the 1M refresh); the rest are free for INSERTs.
SET session_replication_role = replica; -- fixtures only: no triggers, no FK checks
INSERT INTO auth.users (id) SELECT bench_uid(n) FROM generate_series(1, 2000000) AS n;
INSERT INTO traveler_profiles (user_id, first_name, last_name)
  SELECT bench_uid(n), 'Ada', 'Lovelace' FROM generate_series(1, 1000000) AS n;
RESET session_replication_role;
ANALYZE;

-- (c): what a careful PL/pgSQL author would write for the same trail: same
-- columns, redaction overlay, header parsing that never aborts the write, the
-- same per-traveler lock, link and SHA-256.
CREATE FUNCTION bench_plpgsql_audit() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
  headers jsonb := nullif(current_setting('request.headers', true), '')::jsonb;
  ip inet;
  agent text := left(headers ->> 'user-agent', 512);
  old_row jsonb;
  new_row jsonb;
  redact jsonb := coalesce(TG_ARGV[0], '{}')::jsonb;
  owner uuid;
  last_seq bigint;
  last_hash bytea;
  row_id uuid := gen_random_uuid();
  at timestamptz := now();
BEGIN
  IF TG_OP <> 'DELETE' THEN new_row := to_jsonb(NEW); END IF;
  IF TG_OP <> 'INSERT' THEN old_row := to_jsonb(OLD); END IF;
  IF TG_OP = 'UPDATE' AND old_row = new_row THEN RETURN NULL; END IF;
  IF headers ? 'x-forwarded-for' OR headers ? 'x-real-ip' THEN
    BEGIN
      ip := trim(coalesce(split_part(headers ->> 'x-forwarded-for', ',', 1), headers ->> 'x-real-ip'))::inet;
    EXCEPTION WHEN others THEN
      ip := NULL;
    END;
  ELSE
    ip := inet_client_addr();
  END IF;
  owner := coalesce((new_row ->> 'user_id')::uuid, (old_row ->> 'user_id')::uuid, wallet.uid(),
                    '00000000-0000-0000-0000-000000000000');
  PERFORM pg_advisory_xact_lock(1347895637, hashtext(owner::text));
  SELECT chain_seq, row_hash INTO last_seq, last_hash FROM traveler_data_audit
   WHERE user_id = owner ORDER BY chain_seq DESC LIMIT 1;
  last_seq := coalesce(last_seq, 0) + 1;
  last_hash := coalesce(last_hash, decode(repeat('00', 32), 'hex'));
  INSERT INTO traveler_data_audit (id, user_id, chain_seq, action, table_name, record_id, old_data,
                                   new_data, ip_address, user_agent, created_at, prev_hash, row_hash)
  VALUES (row_id, owner, last_seq, TG_OP, TG_TABLE_NAME,
          coalesce((new_row ->> 'id')::uuid, (old_row ->> 'id')::uuid),
          old_row || redact, new_row || redact, ip, agent, at, last_hash,
          sha256(last_hash || convert_to(concat_ws('|', row_id, owner, last_seq, TG_OP, TG_TABLE_NAME,
                 (old_row || redact)::text, (new_row || redact)::text, ip::text, agent,
                 (extract(epoch FROM at) * 1000000)::bigint), 'UTF8')));
  RETURN NULL;
END
$$;
CREATE TRIGGER bench_plpgsql_audit AFTER INSERT OR UPDATE OR DELETE ON traveler_profiles
  FOR EACH ROW EXECUTE FUNCTION bench_plpgsql_audit();
ALTER TABLE traveler_profiles DISABLE TRIGGER bench_plpgsql_audit;
-- Campaigns: many rows per traveler, for the concurrent INSERTs.
CREATE TRIGGER bench_plpgsql_audit AFTER INSERT OR UPDATE OR DELETE ON campaigns
  FOR EACH ROW EXECUTE FUNCTION bench_plpgsql_audit();
ALTER TABLE campaigns DISABLE TRIGGER bench_plpgsql_audit;

-- The completion baseline as first written: one set-based statement that
-- stores the same scores, but empty lists of missing fields and
-- recommendations (less to write than the backfill does).
CREATE FUNCTION bench_sql_refresh_scores() RETURNS void LANGUAGE sql AS $$
INSERT INTO profile_completion_tracking (user_id, completeness_score, missing_fields, recommendations, last_calculated)
SELECT u.id,
       (CASE WHEN nullif(trim(p.first_name), '') IS NOT NULL THEN 10 ELSE 0 END
      + CASE WHEN nullif(trim(p.last_name), '') IS NOT NULL THEN 10 ELSE 0 END
      + CASE WHEN p.date_of_birth BETWEEN current_date - interval '130 years' AND current_date THEN 15 ELSE 0 END
      + CASE WHEN nullif(trim(p.phone_number), '') IS NOT NULL THEN 15 ELSE 0 END
      + CASE WHEN nullif(trim(p.phone_number), '') IS NOT NULL AND p.phone_verified THEN 15 ELSE 0 END
      + CASE WHEN EXISTS (SELECT FROM payment_methods pm WHERE pm.user_id = u.id
                            AND (pm.exp_year, pm.exp_month) >= (extract(year FROM current_date)::int,
                                                                extract(month FROM current_date)::int))
             THEN 25 ELSE 0 END
      + CASE WHEN p.notification_preferences <> '{}' THEN 10 ELSE 0 END),
       ARRAY[]::text[], ARRAY[]::text[], now()
  FROM auth.users u LEFT JOIN traveler_profiles p ON p.user_id = u.id
ON CONFLICT (user_id) DO UPDATE SET completeness_score = EXCLUDED.completeness_score,
  last_calculated = EXCLUDED.last_calculated
$$;

-- The completion baseline: the same rows as the backfill (score, missing
-- fields and recommendations in the library's texts), stored by one
-- set-based SQL statement.
CREATE FUNCTION bench_sql_refresh_all() RETURNS void LANGUAGE sql AS $$
INSERT INTO profile_completion_tracking (user_id, completeness_score, missing_fields, recommendations, last_calculated)
SELECT f.id,
       10 * f.first_name::int + 10 * f.last_name::int + 15 * f.date_of_birth::int + 15 * f.phone_number::int
     + 15 * f.phone_verified::int + 25 * f.payment_method::int + 10 * f.notification_preferences::int,
       array_remove(ARRAY[CASE WHEN NOT f.first_name THEN 'first_name' END,
                          CASE WHEN NOT f.last_name THEN 'last_name' END,
                          CASE WHEN NOT f.date_of_birth THEN 'date_of_birth' END,
                          CASE WHEN NOT f.phone_number THEN 'phone_number' END,
                          CASE WHEN NOT f.phone_verified THEN 'phone_verified' END,
                          CASE WHEN NOT f.payment_method THEN 'payment_method' END,
                          CASE WHEN NOT f.notification_preferences THEN 'notification_preferences' END], NULL),
       array_remove(ARRAY[
         CASE WHEN NOT f.first_name THEN 'Add your first name exactly as it appears on your passport.' END,
         CASE WHEN NOT f.last_name THEN 'Add your last name exactly as it appears on your passport.' END,
         CASE WHEN NOT f.date_of_birth THEN 'Add your date of birth: airlines require it to issue a ticket.' END,
         CASE WHEN NOT f.phone_number THEN 'Add a mobile number so we can reach you about your bookings.' END,
         CASE WHEN NOT f.phone_verified THEN 'Verify your phone number to get booking alerts by SMS.' END,
         CASE WHEN NOT f.payment_method THEN 'Add a valid card so we can book flights for you automatically.' END,
         CASE WHEN NOT f.notification_preferences
              THEN 'Choose how you want to be notified about price drops and bookings.' END], NULL),
       now()
  FROM (SELECT u.id,
               coalesce(nullif(trim(p.first_name), '') IS NOT NULL, false) AS first_name,
               coalesce(nullif(trim(p.last_name), '') IS NOT NULL, false) AS last_name,
               coalesce(p.date_of_birth BETWEEN current_date - interval '130 years' AND current_date, false)
                 AS date_of_birth,
               coalesce(nullif(trim(p.phone_number), '') IS NOT NULL, false) AS phone_number,
               coalesce(nullif(trim(p.phone_number), '') IS NOT NULL AND p.phone_verified, false) AS phone_verified,
               EXISTS (SELECT FROM payment_methods pm WHERE pm.user_id = u.id
                          AND (pm.exp_year, pm.exp_month) >= (extract(year FROM current_date)::int,
                                                              extract(month FROM current_date)::int))
                 AS payment_method,
               coalesce(p.notification_preferences <> '{}', false) AS notification_preferences
          FROM auth.users u LEFT JOIN traveler_profiles p ON p.user_id = u.id) AS f
ON CONFLICT (user_id) DO UPDATE SET completeness_score = EXCLUDED.completeness_score,
  missing_fields = EXCLUDED.missing_fields, recommendations = EXCLUDED.recommendations,
  last_calculated = EXCLUDED.last_calculated
$$;
