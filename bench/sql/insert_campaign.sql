\set n random(1, :travelers)
INSERT INTO campaigns (user_id, name) VALUES (bench_uid(:n), 'Lisbon');
