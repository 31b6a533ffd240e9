SELECT length(record) FROM bench_record;
