DROP FUNCTION wallet_internal.account_age_days(date);
DROP FUNCTION wallet_internal.campaign_owner(uuid);
DROP FUNCTION wallet_internal.bookings_to_reconcile(interval);
DROP TABLE public.notification_outbox;
DROP TABLE public.booking_charge_events;
DROP TABLE public.booking_charges;
DROP FUNCTION wallet_internal.record_booking_event();
