SELECT length(wallet.decrypt(record, '{"user_id":"a11ce000-0000-4000-8000-000000000001","table":"payment_methods","column":"encrypted_card_data"}'::jsonb)) FROM bench_record;
