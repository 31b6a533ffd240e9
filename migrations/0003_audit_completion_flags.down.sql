DROP TABLE public.feature_flags;

DROP TRIGGER payment_methods_completion ON public.payment_methods;
DROP TRIGGER traveler_profiles_completion ON public.traveler_profiles;

SELECT wallet.disable_audit('public.campaigns');
SELECT wallet.disable_audit('public.payment_methods');
SELECT wallet.disable_audit('public.wallet_customers');
SELECT wallet.disable_audit('public.traveler_profiles');

GRANT UPDATE, DELETE, TRUNCATE ON public.traveler_data_audit TO service_role;
DROP TRIGGER traveler_data_audit_no_truncate ON public.traveler_data_audit;
DROP TRIGGER traveler_data_audit_append_only ON public.traveler_data_audit;
DROP FUNCTION wallet_internal.refuse_audit_rewrite();
