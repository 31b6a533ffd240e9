-- Idempotency for the sidecar's POST and DELETE routes: the first request with a
-- key stores its answer; the same key with the same request replays it, with
-- another request is refused (422), while the first is still running is 409.
-- Keys live 24 hours; wallet_internal.purge_expired_idempotency_keys() removes
-- expired ones (schedule it, e.g. hourly with pg_cron on Supabase).
CREATE TABLE public.idempotency_keys (
  user_id             uuid NOT NULL,
  key                 text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
  route               text NOT NULL,
  request_fingerprint bytea NOT NULL,
  state               text NOT NULL CHECK (state IN ('in_progress', 'completed')),
  response_status     smallint,
  response_body       jsonb,
  created_at          timestamptz NOT NULL DEFAULT now(),
  expires_at          timestamptz NOT NULL DEFAULT now() + interval '24 hours',
  PRIMARY KEY (user_id, key)
);
CREATE INDEX idempotency_keys_expiry ON public.idempotency_keys (expires_at);

-- Only the sidecar, acting for the traveler, reads and writes these.
SELECT wallet.enable_owner_rls('public.idempotency_keys', 'user_id', '{parker_wallet_sidecar}');
REVOKE ALL ON public.idempotency_keys FROM PUBLIC, anon, authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.idempotency_keys TO parker_wallet_sidecar;

CREATE FUNCTION wallet_internal.purge_expired_idempotency_keys() RETURNS bigint
LANGUAGE sql SET search_path = pg_catalog AS $$
  WITH purged AS (DELETE FROM public.idempotency_keys WHERE expires_at < now() RETURNING 1)
  SELECT count(*) FROM purged
$$;
