INSERT INTO traveler_profiles (user_id, first_name, last_name)
VALUES (bench_uid(nextval('bench_insert_seq')), 'Grace', 'Hopper');
