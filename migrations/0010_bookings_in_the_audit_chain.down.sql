SELECT wallet.disable_audit('public.booking_charges');
