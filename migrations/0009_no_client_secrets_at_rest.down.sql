-- Redacted secrets cannot be restored (nor need to be: Stripe keeps them).
ALTER TABLE public.payment_methods ALTER COLUMN encryption_version SET DEFAULT 2;
