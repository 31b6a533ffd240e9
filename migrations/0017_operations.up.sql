-- Operations (issue 16): the scheduled jobs' last runs, and the figures
-- /metrics shows about money and jobs, read from the tables at scrape time so
-- that every process's work adds up: the sidecar's routes, the reconcile
-- command, another replica. Both functions belong to parker_wallet_operations
-- (NOLOGIN, nobody's member), which reads the booking tables and keeps
-- job_runs, and nothing else.
DO $role$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'parker_wallet_operations') THEN
    CREATE ROLE parker_wallet_operations NOLOGIN NOINHERIT;
  ELSIF EXISTS (SELECT FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid OR r.oid = m.member
                 WHERE r.rolname = 'parker_wallet_operations')
        OR EXISTS (SELECT FROM pg_roles WHERE rolname = 'parker_wallet_operations'
                    AND (rolsuper OR rolcreatedb OR rolcreaterole OR rolcanlogin OR rolreplication
                         OR rolbypassrls OR rolinherit)) THEN
    RAISE EXCEPTION 'role parker_wallet_operations exists with powers, members or memberships: it was not made by this migration'
      USING HINT = 'Drop the role (or make it NOLOGIN NOINHERIT with no members), then migrate again.';
  END IF;
END
$role$;

-- One row per scheduled job (deploy/systemd): how its last run ended. Exit
-- codes as the commands': 0 clean, 2 findings for a person, 1 failed to run.
-- Outside `public`: no API role sees it.
CREATE TABLE wallet_internal.job_runs (
  job              text PRIMARY KEY CHECK (job IN ('reconcile', 'purge_idempotency_keys', 'audit_checkpoint',
                                                   'audit_verify', 'rotate_keys', 'erase_pending')),
  last_started_at  timestamptz,
  last_finished_at timestamptz,
  last_exit_code   smallint CHECK (last_exit_code IN (0, 1, 2)),
  last_success_at  timestamptz,
  runs             bigint NOT NULL DEFAULT 0,
  failures         bigint NOT NULL DEFAULT 0
);
INSERT INTO wallet_internal.job_runs (job)
SELECT unnest(ARRAY['reconcile', 'purge_idempotency_keys', 'audit_checkpoint', 'audit_verify', 'rotate_keys',
                    'erase_pending']);
REVOKE ALL ON wallet_internal.job_runs FROM PUBLIC, anon, authenticated, service_role;
GRANT USAGE ON SCHEMA wallet_internal, public TO parker_wallet_operations;
GRANT SELECT, UPDATE ON wallet_internal.job_runs TO parker_wallet_operations;
ALTER TABLE wallet_internal.job_runs ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY job_runs_parker_wallet_operations ON wallet_internal.job_runs
  FOR ALL TO parker_wallet_operations USING (true) WITH CHECK (true);

-- A finished run, recorded by the job itself (kms-sidecar's job commands, on
-- the operator's connection). A success is a run that ended 0 or 2: it ran to
-- its end.
CREATE FUNCTION wallet_internal.record_job_run(job_name text, started_at timestamptz, exit_code integer)
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  UPDATE wallet_internal.job_runs
     SET last_started_at = started_at, last_finished_at = now(), last_exit_code = exit_code,
         last_success_at = CASE WHEN exit_code IN (0, 2) THEN now() ELSE last_success_at END,
         runs = runs + 1, failures = failures + (exit_code = 1)::int
   WHERE job = job_name
$$;

-- Read by the definer below, every row: figures, never a traveler's details.
GRANT SELECT (id, state, card_attempt, authorized_at, failure_code) ON public.booking_charges TO parker_wallet_operations;
GRANT SELECT (booking_id, state) ON public.booking_charge_events TO parker_wallet_operations;
CREATE POLICY booking_charges_parker_wallet_operations ON public.booking_charges
  FOR SELECT TO parker_wallet_operations USING (true);
CREATE POLICY booking_charge_events_parker_wallet_operations ON public.booking_charge_events
  FOR SELECT TO parker_wallet_operations USING (true);

-- The figures: (metric, label, value). Bookings by state now; money movements
-- as the number of bookings that ever made each (bookings and their history
-- are kept, erasure included, so these only grow); declines by failure code
-- (the sidecar groups the codes into classes); the jobs' last runs.
CREATE FUNCTION wallet_internal.operations_figures(capture_window_hours integer, alert_before_hours integer)
RETURNS TABLE (metric text, label text, value double precision)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  WITH history AS (
    SELECT booking_id,
           bool_or(state = 'requires_authentication') AS authentication_requested,
           bool_or(state = 'captured') AS captured,
           bool_or(state = 'voided') AS voided,
           bool_or(state = 'refunded') AS refunded
      FROM public.booking_charge_events GROUP BY booking_id
  )
  SELECT 'bookings', s.state, count(b.id)::float8
    FROM unnest(ARRAY['authorizing', 'requires_authentication', 'ordering', 'capturing', 'voiding', 'refunding',
                      'needs_reconciliation', 'captured', 'voided', 'refunded', 'declined']) AS s(state)
    LEFT JOIN public.booking_charges b ON b.state = s.state
   GROUP BY s.state
  UNION ALL
  SELECT 'bookings_near_capture_deadline', '', count(*)::float8
    FROM public.booking_charges
   WHERE state NOT IN ('captured', 'voided', 'refunded', 'declined') AND authorized_at IS NOT NULL
     AND authorized_at + make_interval(hours => capture_window_hours)
         < now() + make_interval(hours => alert_before_hours)
  UNION ALL
  SELECT 'payments', e.event, e.bookings::float8
    FROM (SELECT count(*) FILTER (WHERE b.authorized_at IS NOT NULL) AS authorized,
                 count(*) FILTER (WHERE h.captured) AS captured,
                 count(*) FILTER (WHERE h.voided) AS voided,
                 count(*) FILTER (WHERE h.refunded) AS refunded,
                 count(*) FILTER (WHERE b.card_attempt = 2) AS backup_card_used,
                 count(*) FILTER (WHERE h.authentication_requested) AS three_ds_requested,
                 count(*) FILTER (WHERE h.authentication_requested AND b.authorized_at IS NOT NULL) AS three_ds_completed,
                 count(*) FILTER (WHERE b.state = 'declined' AND b.failure_code = 'authentication_expired') AS three_ds_expired
            FROM public.booking_charges b LEFT JOIN history h ON h.booking_id = b.id) AS f,
         LATERAL (VALUES ('authorized', f.authorized), ('captured', f.captured), ('voided', f.voided),
                         ('refunded', f.refunded), ('backup_card_used', f.backup_card_used),
                         ('three_ds_requested', f.three_ds_requested), ('three_ds_completed', f.three_ds_completed),
                         ('three_ds_expired', f.three_ds_expired)) AS e(event, bookings)
  UNION ALL
  SELECT 'declines', coalesce(failure_code, ''), count(*)::float8
    FROM public.booking_charges WHERE state = 'declined' GROUP BY failure_code
  UNION ALL
  SELECT m.metric, j.job, m.value
    FROM wallet_internal.job_runs j,
         LATERAL (VALUES ('job_last_success_timestamp', coalesce(floor(extract(epoch FROM j.last_success_at)), 0)::float8),
                         ('job_last_run_timestamp', coalesce(floor(extract(epoch FROM j.last_finished_at)), 0)::float8),
                         ('job_last_exit_code', j.last_exit_code::float8)) AS m(metric, value)
   WHERE m.value IS NOT NULL
$$;

-- Privileges first: once the functions change hands, grants are the new
-- owner's and the migration's role could no longer revoke them. The job runs
-- are recorded through the operator's connection (the jobs' DATABASE_URL,
-- the migrations' role), never the serving sidecar's: a process the socket
-- reaches cannot rewrite what the alerts read.
REVOKE ALL ON FUNCTION wallet_internal.record_job_run(text, timestamptz, integer),
  wallet_internal.operations_figures(integer, integer) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION wallet_internal.operations_figures(integer, integer) TO parker_wallet_sidecar;

-- Handing the functions to their role takes membership in it and its CREATE on
-- the schema, held only for the moment (as in migration 0008).
DO $member$
BEGIN
  EXECUTE format('GRANT parker_wallet_operations TO %I', current_user);
END
$member$;
GRANT CREATE ON SCHEMA wallet_internal TO parker_wallet_operations;
ALTER FUNCTION wallet_internal.record_job_run(text, timestamptz, integer) OWNER TO parker_wallet_operations;
ALTER FUNCTION wallet_internal.operations_figures(integer, integer) OWNER TO parker_wallet_operations;
REVOKE CREATE ON SCHEMA wallet_internal FROM parker_wallet_operations;
-- The operator records runs. Granted by the new owner (while the migration's
-- role is its member): a grant made before the change of hands would have
-- gone with the old owner's privileges.
DO $operator$
BEGIN
  EXECUTE format('GRANT EXECUTE ON FUNCTION wallet_internal.record_job_run(text, timestamptz, integer) TO %I',
                 current_user);
  EXECUTE format('REVOKE parker_wallet_operations FROM %I', current_user);
END
$operator$;
