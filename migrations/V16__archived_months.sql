-- audit-logs V16: where each dropped month's archive is, for history to read it.
--
-- history({ includeArchive: true }) reads the months that left the live log from their
-- archives. Until now the destination of a month was only in the metadata of its
-- audit.partition_archived event, which is itself archived and dropped with its own month in
-- time. audit.archived_months keeps it beside audit.dropped_partitions, append-only, with the
-- digest of the manifest that was verified before the drop: a reader then knows the archive it
-- reads is the one that was checked.

create table audit.archived_months (
  month integer primary key,
  archive text not null,
  manifest_sha256 text not null,
  row_count bigint not null,
  first_id bigint,
  last_id bigint,
  archived_at timestamptz not null default pg_catalog.now()
);
comment on table audit.archived_months is
  'Months dropped from the live log after their archive was verified: where the archive is. Append-only.';
comment on column audit.archived_months.month is 'The month (UTC) as YYYYMM.';
comment on column audit.archived_months.archive is 'The destination it was archived to (file:///dir or s3://bucket/prefix).';
comment on column audit.archived_months.manifest_sha256 is 'The sha256 of its manifest.json, as verified before the drop.';
comment on column audit.archived_months.row_count is 'Rows it held.';
comment on column audit.archived_months.archived_at is 'When it was dropped, its archive verified.';
comment on column audit.archived_months.first_id is 'Its lowest entry id (null for a month dropped before V16: see its manifest).';
comment on column audit.archived_months.last_id is 'Its highest entry id (null for a month dropped before V16: see its manifest).';

create trigger audit_append_only before update or delete on audit.archived_months
  for each row execute function audit.refuse_change();
create trigger audit_append_only_truncate before truncate on audit.archived_months
  for each statement execute function audit.refuse_change();

-- Months archived and dropped before this migration, from their events still in the log.
insert into audit.archived_months (month, archive, manifest_sha256, row_count, archived_at)
select d.month, l.metadata operator(pg_catalog.->>) 'archive', l.metadata operator(pg_catalog.->>) 'manifest_sha256',
       d.row_count, d.dropped_at
  from audit.dropped_partitions as d
  join audit.audit_logs as l on l.id = d.event_id and l.action = 'audit.partition_archived'
 where l.metadata operator(pg_catalog.?) 'archive' and l.metadata operator(pg_catalog.?) 'manifest_sha256';

-- As V13's, also recording the month in audit.archived_months.
create or replace function audit.drop_archived_month(month integer, expected_rows bigint, archive text,
                                                     manifest_sha256 text)
returns bigint
language plpgsql
security definer
set search_path = ''
as $$
declare
  part_name text;
  first_day date;
  n bigint;
  sealed bigint;
  event_id bigint;
  first_id bigint;
  last_id bigint;
begin
  if month is null or month % 100 not between 1 and 12 or month / 100 < 1970 then
    raise exception 'audit-logs: % is not a month (YYYYMM)', month using errcode = 'AL016';
  end if;
  first_day := make_date(month / 100, month % 100, 1);
  if first_day + interval '1 month' > date_trunc('month', now() at time zone 'UTC') then
    raise exception 'audit-logs: % has not ended: only whole months are archived', to_char(first_day, 'YYYY-MM')
      using errcode = 'AL016';
  end if;
  part_name := format('audit_logs_p%s', to_char(first_day, 'YYYY_MM'));
  if not exists (select from pg_catalog.pg_partition_tree('audit.audit_logs') pt
                   join pg_catalog.pg_class c on c.oid = pt.relid
                  where pt.isleaf and c.relname = part_name) then
    raise exception 'audit-logs: audit.% is not a partition of audit.audit_logs', part_name
      using errcode = 'AL016';
  end if;
  -- Writers of the month finish first, and none come after: what is counted is what goes.
  execute format('lock table audit.%I in access exclusive mode', part_name);
  execute format('select count(*), min(id), max(id) from audit.%I', part_name) into n, first_id, last_id;
  select coalesce(sum(c.row_count), 0) into sealed from audit.seal_chunks c where c.month = drop_archived_month.month;
  if n <> expected_rows or n <> sealed then
    raise exception 'audit-logs: audit.% holds % rows, % sealed, but its archive holds %', part_name, n, sealed, expected_rows
      using errcode = 'AL016',
            hint = 'Rows were written to the month since it was archived: archive it again, then drop it.';
  end if;
  select l.id into event_id from audit.log_event('audit.partition_archived', 'audit.audit_logs', part_name,
                              pg_catalog.jsonb_build_object('partition', part_name, 'month', to_char(first_day, 'YYYY-MM'),
                                                            'rows', n, 'archive', archive,
                                                            'manifest_sha256', manifest_sha256)) l;
  insert into audit.dropped_partitions (month, partition_name, row_count, event_id)
  values (drop_archived_month.month, part_name, n, event_id)
  on conflict on constraint dropped_partitions_pkey do nothing;
  insert into audit.archived_months (month, archive, manifest_sha256, row_count, first_id, last_id)
  values (drop_archived_month.month, archive, manifest_sha256, n, first_id, last_id)
  on conflict on constraint archived_months_pkey do nothing;
  execute format('drop table audit.%I', part_name);
  return n;
end
$$;

do $grants$
begin
  if exists (select from pg_catalog.pg_roles where rolname = 'audit_reader') then
    grant select on audit.archived_months to audit_reader;
  end if;
exception when insufficient_privilege then
  raise notice 'audit-logs: could not grant to audit_reader: %', sqlerrm;
end
$grants$;
