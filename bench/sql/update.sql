\set n random(1, 1000000)
UPDATE traveler_profiles SET first_name = 'Ada ' || :client_id || '-' || random() WHERE user_id = bench_uid(:n);
