-- Every payment action joins the traveler's audit chain: each booking state
-- change (authorize, order, capture, void, refund, 3-D Secure requested,
-- completed or expired, the backup card used) is audited like any other write,
-- with the request's actor, ip and user agent (the reconciler's claims name it).
-- booking_charge_events stays: it serves the API's history. Neither the sealed
-- passengers nor the request fingerprint are copied into the trail.
SELECT wallet.enable_audit('public.booking_charges', ARRAY['passengers_sealed', 'request_fingerprint']);
