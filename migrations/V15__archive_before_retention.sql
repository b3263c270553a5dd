-- audit-logs V15: retention archives a month before it drops it, when the policy names where.
--
-- A team that must keep seven years and wants only the last months in PostgreSQL saves an
-- archive destination in the policy (audit.configure(archive_to => 's3://bucket/prefix'), with
-- an optional S3 Object Lock). From then on a month past retention is never dropped unarchived:
-- audit.maintain() (SQL, from cron or pg_cron) leaves such months in place and names them
-- (monthsAwaitingArchive), since SQL cannot write Parquet to a bucket; maintain() of the
-- package (Node, CLI, Rust) then archives them, reads each archive back, verifies it, and drops
-- the month through audit.drop_archived_month (V13), as `archive --then-drop` does. Without a
-- destination, retention drops as before. The destination is a URL, never a credential: those
-- come from the environment of whoever runs maintain.

alter table audit.settings
  add column archive_to text
    check (archive_to ~ '^(file:///|s3://)[^[:space:]]+$' and octet_length(archive_to) <= 2048),
  add column archive_lock_mode text check (archive_lock_mode in ('compliance', 'governance')),
  add column archive_lock_days integer check (archive_lock_days between 1 and 36500),
  add constraint settings_archive_lock_check
    check ((archive_lock_mode is null) = (archive_lock_days is null)
           and (archive_lock_mode is null or archive_to like 's3://%'));
comment on column audit.settings.archive_to is
  'Where maintain() archives a month before retention drops it (file:///dir or s3://bucket/prefix); null: '
  'retention drops without archiving.';
comment on column audit.settings.archive_lock_mode is
  'S3 Object Lock mode of the archived objects (compliance or governance), with archive_lock_days; null: none.';
comment on column audit.settings.archive_lock_days is 'Days each archived object is locked from its archiving.';

-- As V4's, with the archive destination and its lock ('' turns them off; null leaves them).
drop function audit.configure(integer, integer, integer, text[]);
create function audit.configure(
  months_ahead integer default null,
  retention_months integer default null,
  anonymize_after_days integer default null,
  anonymize_fields text[] default null,
  archive_to text default null,
  archive_lock_mode text default null,
  archive_lock_days integer default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  before_settings audit.settings;
  result jsonb;
begin
  -- 0 turns retention or anonymization off; null leaves a setting as it is.
  if retention_months < 0 or anonymize_after_days < 0 or months_ahead < 0 or archive_lock_days < 0 then
    raise exception 'audit-logs: settings must not be negative (0 turns retention or anonymization off)'
      using errcode = 'AL010';
  end if;
  if anonymize_fields is not null and not anonymize_fields <@ '{ip_address,user_agent}'::text[] then
    raise exception 'audit-logs: cannot anonymize %: only ip_address and user_agent can be anonymized',
      array_to_string(array(select unnest(anonymize_fields) except select unnest('{ip_address,user_agent}'::text[])), ', ')
      using errcode = 'AL010', hint = 'Erase other personal data with audit.redact().';
  end if;
  if archive_to <> '' and (archive_to !~ '^(file:///|s3://)[^[:space:]]+$' or octet_length(archive_to) > 2048) then
    raise exception 'audit-logs: archive_to must be file:///absolute/dir or s3://bucket/prefix (at most 2048 bytes), got %',
      quote_literal(left(archive_to, 100))
      using errcode = 'AL010', hint = 'Credentials are never part of it: they come from the environment of maintain().';
  end if;
  if archive_lock_mode <> '' and archive_lock_mode not in ('compliance', 'governance') then
    raise exception 'audit-logs: archive_lock_mode must be compliance or governance, got %', quote_literal(left(archive_lock_mode, 100))
      using errcode = 'AL010';
  end if;
  select * into before_settings from audit.settings;
  begin
    update audit.settings s set
      months_ahead = coalesce(configure.months_ahead, s.months_ahead),
      retention_months = case when configure.retention_months is null then s.retention_months
                              else nullif(configure.retention_months, 0) end,
      anonymize_after_days = case when configure.anonymize_after_days is null then s.anonymize_after_days
                                  else nullif(configure.anonymize_after_days, 0) end,
      anonymize_fields = coalesce(configure.anonymize_fields, s.anonymize_fields),
      archive_to = case when configure.archive_to is null then s.archive_to
                        else nullif(configure.archive_to, '') end,
      -- Turning the archive off turns its lock off; a lock mode of '' clears both.
      archive_lock_mode = case when configure.archive_to = '' or configure.archive_lock_mode = '' then null
                               else coalesce(configure.archive_lock_mode, s.archive_lock_mode) end,
      archive_lock_days = case when configure.archive_to = '' or configure.archive_lock_mode = '' then null
                               else coalesce(nullif(configure.archive_lock_days, 0), s.archive_lock_days) end,
      updated_at = now()
    returning to_jsonb(s) - 'singleton' into result;
  exception when check_violation then
    raise exception 'audit-logs: settings out of range: months_ahead 0 to 120, retention_months 1 to 1200, '
                    'anonymize_after_days 1 to 36500, archive_lock_days 1 to 36500 with a lock mode (and only '
                    'with an s3:// archive_to)'
      using errcode = 'AL010';
  end;
  if (to_jsonb(before_settings) - 'singleton' - 'updated_at') is distinct from (result - 'updated_at') then
    perform audit.log_event('audit.settings_changed', 'audit.settings', null,
                            jsonb_build_object('before', to_jsonb(before_settings) - 'singleton' - 'updated_at',
                                               'after', result - 'updated_at'));
  end if;
  return result;
end
$$;
comment on function audit.configure(integer, integer, integer, text[], text, text, integer) is
  'Changes the retention policy of audit.settings (null leaves a setting as it is; 0, or '''' for the archive, '
  'turns it off) and records the change as an audit.settings_changed event. Returns the policy.';
revoke all on function audit.configure(integer, integer, integer, text[], text, text, integer) from public;

-- As V4's, except that with an archive destination the months past retention are left for
-- maintain() of the package to archive and drop, and named.
create or replace function audit.maintain(
  months_ahead integer default null,
  retention_months integer default null,
  anonymize_after_days integer default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  policy audit.settings;
  sealed record;
  created text[];
  moved bigint;
  dropped text[] := '{}';
  awaiting text[] := '{}';
  anonymized bigint := 0;
begin
  select * into policy from audit.settings;
  months_ahead := coalesce(months_ahead, policy.months_ahead);
  retention_months := coalesce(nullif(retention_months, 0), case when retention_months = 0 then null else policy.retention_months end);
  anonymize_after_days := coalesce(nullif(anonymize_after_days, 0), case when anonymize_after_days = 0 then null else policy.anonymize_after_days end);

  moved := audit.move_default_rows();
  created := array(select audit.create_partitions(months_ahead));
  if cardinality(created) > 0 then
    perform audit.log_event('audit.partitions_created', 'audit.audit_logs', null,
                            jsonb_build_object('partitions', to_jsonb(created)));
  end if;
  perform audit.protect_partitions();
  -- Seal before dropping, so that no row leaves unsealed.
  select * into sealed from audit.seal();
  if retention_months is not null and policy.archive_to is not null then
    -- The months drop_expired_partitions would drop: whole months that ended before the cutoff.
    awaiting := array(
      select c.relname::text
        from pg_partition_tree('audit.audit_logs') pt
        join pg_class c on c.oid = pt.relid
       where pt.isleaf and c.relname ~ '^audit_logs_p\d{4}_\d{2}$'
         and (to_date(substring(c.relname from 'audit_logs_p(\d{4}_\d{2})$'), 'YYYY_MM') + interval '1 month')::date
             <= (date_trunc('month', now() at time zone 'UTC') - make_interval(months => retention_months))::date
       order by 1);
  elsif retention_months is not null then
    dropped := audit.drop_expired_partitions(retention_months);
  end if;
  if anonymize_after_days is not null and cardinality(policy.anonymize_fields) > 0 then
    anonymized := audit.anonymize_due(anonymize_after_days, policy.anonymize_fields);
  end if;
  return jsonb_build_object(
    'partitionsCreated', to_jsonb(created),
    'rowsMoved', moved,
    'partitionsDropped', to_jsonb(dropped),
    'partitionsAwaitingArchive', to_jsonb(awaiting),
    'rowsAnonymized', anonymized,
    'sealedRows', coalesce(sealed.row_count, 0),
    'retentionMonths', retention_months,
    'anonymizeAfterDays', anonymize_after_days,
    'archiveTo', policy.archive_to,
    'archiveLockMode', policy.archive_lock_mode,
    'archiveLockDays', policy.archive_lock_days);
end
$$;
comment on function audit.maintain(integer, integer, integer) is
  'Runs the retention policy of audit.settings (arguments override it for this run; 0 turns a step off): moves '
  'default-partition rows into monthly partitions, creates the coming months'' partitions, seals, drops expired '
  'partitions (or, with an archive destination, names them for maintain() of the package to archive and drop) '
  'and anonymizes due rows. Every step is recorded as an audit event. Safe from cron or pg_cron.';

do $grants$
begin
  if exists (select from pg_catalog.pg_roles where rolname = 'audit_maintainer') then
    grant execute on function audit.configure(integer, integer, integer, text[], text, text, integer) to audit_maintainer;
  end if;
exception when insufficient_privilege then
  raise notice 'audit-logs: could not grant to audit_maintainer: %', sqlerrm;
end
$grants$;
