-- audit-logs V13: archived months leave the live log.
--
-- `audit-logs archive --then-drop` writes a whole, sealed month to Parquet, reads it back and
-- verifies it, then calls audit.drop_archived_month, which drops the month's partition and
-- records it as retention records its drops (audit.dropped_partitions and an audit event), so
-- that verify of the live log acknowledges the month's sealed rows as gone, not missing.

create function audit.drop_archived_month(month integer, expected_rows bigint, archive text,
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
  execute format('select count(*) from audit.%I', part_name) into n;
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
  execute format('drop table audit.%I', part_name);
  return n;
end
$$;

comment on function audit.drop_archived_month(integer, bigint, text, text) is
  'Drops the partition of a month whose archive was verified (by the caller: audit-logs archive --then-drop), if it still holds exactly the archived rows, all sealed; records it in audit.dropped_partitions and as an audit.partition_archived event.';

revoke all on function audit.drop_archived_month(integer, bigint, text, text) from public;

do $grants$
begin
  if exists (select from pg_catalog.pg_roles where rolname = 'audit_maintainer') then
    grant execute on function audit.drop_archived_month(integer, bigint, text, text) to audit_maintainer;
  end if;
exception when insufficient_privilege then
  raise notice 'audit-logs: could not grant to audit_maintainer: %', sqlerrm;
end
$grants$;
