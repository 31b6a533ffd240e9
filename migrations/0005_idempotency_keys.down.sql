DROP FUNCTION wallet_internal.purge_expired_idempotency_keys();
DROP TABLE public.idempotency_keys;
