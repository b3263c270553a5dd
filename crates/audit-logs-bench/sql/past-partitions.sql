-- A year of monthly partitions of the log before this month's, as a database that has been
-- running that long has (MONTHS = 12 in the benchmarks that load it: the Rust benchmark and
-- scripts/bench-viewer.mjs).
do $$
declare m date;
begin
  for m in select generate_series(date_trunc('month', now() at time zone 'UTC')::date - interval '12 months',
                                  date_trunc('month', now() at time zone 'UTC')::date - interval '1 month',
                                  interval '1 month')::date loop
    if to_regclass(format('audit.audit_logs_p%s', to_char(m, 'YYYY_MM'))) is null then
      execute format('create table audit.%I partition of audit.audit_logs for values from (%L) to (%L)',
                     format('audit_logs_p%s', to_char(m, 'YYYY_MM')),
                     m::timestamp at time zone 'UTC', (m + interval '1 month')::timestamp at time zone 'UTC');
    end if;
  end loop;
end $$;
-- Guarded as the package's own partitions are (verify names a partition without it).
select audit.protect_partitions();
