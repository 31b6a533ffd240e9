DROP TABLE public.campaigns;
DROP TABLE public.traveler_data_audit;
DROP TABLE public.profile_completion_tracking;
DROP TABLE public.payment_methods;
DROP TABLE public.wallet_customers;
DROP TABLE public.traveler_profiles;
DROP SCHEMA wallet_internal CASCADE;
