-- audit-logs V14: a record's history reads the events about it under other names only when
-- there are some.
--
-- V12's audit.record_history had a third branch for events logged about the record under
-- another name of its table ('user', 'User' for public.users): entries with its key whose
-- target_type is one of those names. The index (target_id, target_type, id) cannot give them
-- newest first for several names at once, so PostgreSQL read every entry of the key in every
-- partition, each from the heap, and sorted them, for every record, most of which have no such
-- event: a record with 100,000 entries took 460 ms a page at 10M rows, linear in its entries.
--
-- Now a look at the key's first 256 index entries, index-only (the log is append-only, so its
-- pages are all-visible once vacuumed), says whether any is under one of those names; past 256
-- (a busy record), one probe per name does. Only then is the third branch run, one ordered scan
-- per name, each stopping at the page's size. The two queries are written out in full: one
-- query with the third branch behind a parameter (a one-time filter) cost 40% more a call, its
-- scans being set up even when skipped. Measured on the benchmark's synthetic log (15
-- partitions, 2,000 calls over as many records; README "Performance"): at 10M rows 226 -> 196
-- buffers and 0.88 -> 0.76 ms a call, the busy record 460 -> 1.1 ms; at 1M rows 0.46 -> 0.41 ms,
-- the busy record 42 -> 3 ms. The entries returned are the same.

create or replace function audit.record_history(of_type text, of_id jsonb, older_than bigint, max_rows bigint,
                                                other_types text[])
returns setof audit.audit_logs
language plpgsql
stable
set search_path = ''
set plan_cache_mode = force_generic_plan
as $$
declare
  key pg_catalog.text := audit.record_key(of_id);
  -- Entries of the key looked at (at most 256), and whether one is under other_types.
  seen pg_catalog.int8 := 0;
  aliased boolean := false;
begin
  if pg_catalog.cardinality(other_types) operator(pg_catalog.>) 0 then
    select pg_catalog.count(*),
           coalesce(pg_catalog.bool_or(s.target_type operator(pg_catalog.=) any(other_types)), false)
      into seen, aliased
      from (select l.target_type from audit.audit_logs as l
             where l.target_id operator(pg_catalog.=) key collate "C" limit 256) as s;
    if not aliased and seen operator(pg_catalog.=) 256 then
      aliased := exists (
        select from (select distinct t.name from pg_catalog.unnest(other_types) as t(name)) as t
        cross join lateral (select from audit.audit_logs as l
                             where l.target_id operator(pg_catalog.=) key collate "C"
                               and l.target_type operator(pg_catalog.=) t.name
                             limit 1) as found);
    end if;
  end if;

  if not aliased then
    return query
    select entries.* from audit.target_names(of_type) as n cross join lateral (
      (select l.* from audit.audit_logs as l
        where l.target_id operator(pg_catalog.=) key collate "C" and l.target_type operator(pg_catalog.=) n.name
          and l.id operator(pg_catalog.<) older_than
          and l.id operator(pg_catalog.>) n.after_id and l.id operator(pg_catalog.<) n.before_id
        order by l.id desc limit max_rows)
      union all
      (select l.* from audit.audit_logs as l
        where l.old_target_id operator(pg_catalog.=) key collate "C" and l.target_type operator(pg_catalog.=) n.name
          and l.id operator(pg_catalog.<) older_than
          and l.id operator(pg_catalog.>) n.after_id and l.id operator(pg_catalog.<) n.before_id
        order by l.id desc limit max_rows)
    ) as entries
    order by entries.id desc
    limit max_rows;
    return;
  end if;

  return query
  select entries.* from (
    (select entries.* from audit.target_names(of_type) as n cross join lateral (
      (select l.* from audit.audit_logs as l
        where l.target_id operator(pg_catalog.=) key collate "C" and l.target_type operator(pg_catalog.=) n.name
          and l.id operator(pg_catalog.<) older_than
          and l.id operator(pg_catalog.>) n.after_id and l.id operator(pg_catalog.<) n.before_id
        order by l.id desc limit max_rows)
      union all
      (select l.* from audit.audit_logs as l
        where l.old_target_id operator(pg_catalog.=) key collate "C" and l.target_type operator(pg_catalog.=) n.name
          and l.id operator(pg_catalog.<) older_than
          and l.id operator(pg_catalog.>) n.after_id and l.id operator(pg_catalog.<) n.before_id
        order by l.id desc limit max_rows)
    ) as entries)
    union all
    -- distinct: a name given twice must not return its events twice (any() did not).
    (select entries.* from (select distinct t.name from pg_catalog.unnest(other_types) as t(name)) as t
      cross join lateral (
        select l.* from audit.audit_logs as l
         where l.target_id operator(pg_catalog.=) key collate "C" and l.target_type operator(pg_catalog.=) t.name
           and l.id operator(pg_catalog.<) older_than
         order by l.id desc limit max_rows) as entries)
  ) as entries
  order by entries.id desc
  limit max_rows;
end
$$;
