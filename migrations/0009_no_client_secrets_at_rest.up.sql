-- What rests in the database holds no Stripe client secret. From sidecar 0.3 on,
-- stored Stripe events and replayable answers are redacted when written; this
-- redacts what was written before: every JSON string holding `_secret_` (a
-- SetupIntent's or PaymentIntent's client secret) becomes "[redacted]".
UPDATE public.stripe_events
   SET payload = pg_catalog.regexp_replace(payload::text, '"(?:[^"\\]|\\.)*_secret_(?:[^"\\]|\\.)*"', '"[redacted]"', 'g')::jsonb
 WHERE payload::text LIKE '%\_secret\_%';
UPDATE public.idempotency_keys
   SET response_body = pg_catalog.regexp_replace(response_body::text, '"(?:[^"\\]|\\.)*_secret_(?:[^"\\]|\\.)*"', '"[redacted]"', 'g')::jsonb
 WHERE response_body::text LIKE '%\_secret\_%';

-- Records are sealed in format 3 (bound to their row) from sidecar 0.3 on.
ALTER TABLE public.payment_methods ALTER COLUMN encryption_version SET DEFAULT 3;
