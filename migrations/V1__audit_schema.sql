-- audit-logs V1: the audit schema, the audit_logs table, its partitions and indexes, and the
-- transaction-local context that attributes every change.
--
-- Design notes (measured, see README "How capture works"):
-- * one table for row changes and application events, so an entity's timeline is one query;
-- * partitioned by month on created_at, with a default partition so an insert never fails;
-- * no primary key: ids come from an identity, and every index is paid on every write;
-- * identifiers that are indexed use collate "C": byte comparison is about twice as cheap as a
--   linguistic collation in the btree, and nobody needs ids in dictionary order.

create schema if not exists audit;
comment on schema audit is
  'audit-logs: the audit trail (audit.audit_logs), its capture triggers and maintenance functions.';

create table audit.audit_logs (
  id bigint generated always as identity,
  created_at timestamptz not null default pg_catalog.now(),
  txid bigint not null default pg_catalog.txid_current(),
  action text not null,
  target_type text collate "C",
  target_id text collate "C",
  old_target_id text collate "C",
  old_values jsonb,
  new_values jsonb,
  changed_fields text[],
  actor_id text collate "C",
  actor_type text,
  actor_email text,
  ip_address inet,
  user_agent text,
  request_id text,
  metadata jsonb
) partition by range (created_at);

comment on table audit.audit_logs is
  'Every recorded change: row changes captured by triggers (action INSERT, UPDATE, DELETE, TRUNCATE) '
  'and application events (dotted actions such as user.login). Partitioned by month on created_at.';
comment on column audit.audit_logs.id is
  'Identity, increasing in insertion order; the tie-breaker for entries of one transaction.';
comment on column audit.audit_logs.created_at is
  'Transaction time (now()): every entry of one transaction has the same created_at.';
comment on column audit.audit_logs.txid is
  'The writing transaction (txid_current()); groups the entries of one transaction.';
comment on column audit.audit_logs.action is
  'INSERT, UPDATE, DELETE or TRUNCATE for row changes; a dotted name such as user.login for events.';
comment on column audit.audit_logs.target_type is
  'For row changes the table as schema.table (quoted as in SQL where needed); for events any type name.';
comment on column audit.audit_logs.target_id is
  'The primary key as text; a composite key as a JSON array such as [1, "a"].';
comment on column audit.audit_logs.old_target_id is
  'Set only when an UPDATE changed the primary key: the key the row had before.';
comment on column audit.audit_logs.old_values is
  'UPDATE: old values of the changed columns only. DELETE and TRUNCATE: the whole row.';
comment on column audit.audit_logs.new_values is
  'INSERT and UPDATE: the whole new row (excluded columns are never stored).';
comment on column audit.audit_logs.changed_fields is
  'UPDATE: the columns whose value changed, in table order (excluded columns are named, never valued).';
comment on column audit.audit_logs.actor_id is
  'Who made the change: the actor_id of the transaction''s audit.context.';
comment on column audit.audit_logs.actor_type is
  'The kind of actor: user, system, api_key, moderator, migration or any other string.';
comment on column audit.audit_logs.actor_email is 'The actor''s e-mail address, if given.';
comment on column audit.audit_logs.ip_address is 'The client address the change came from, if given.';
comment on column audit.audit_logs.user_agent is 'The client''s user agent, if given.';
comment on column audit.audit_logs.request_id is 'The request that made the change, if given.';
comment on column audit.audit_logs.metadata is
  'The rest of the context (reason, migration_name, free-form metadata) or event details.';

-- History of one record, newest first, without a sort at any table age. target_id first: it
-- tells keys apart sooner than the long, shared target_type (12% fewer instructions per insert).
create index audit_logs_target_idx on audit.audit_logs (target_id, target_type, id);
-- The few UPDATEs that changed a primary key, so the old key's history finds them.
create index audit_logs_old_target_idx on audit.audit_logs (target_type, old_target_id, id)
  where old_target_id is not null;
-- What one actor did, newest first. Not partial: the predicate would cost more than the NULL entries.
create index audit_logs_actor_idx on audit.audit_logs (actor_id, id);
-- Time ranges and transactions: both grow with insertion order, so a BRIN index serves them
-- at almost no write cost.
create index audit_logs_time_idx on audit.audit_logs using brin (created_at, txid)
  with (pages_per_range = 32, autosummarize = on);
-- Changes of one column.
create index audit_logs_changed_fields_idx on audit.audit_logs using gin (changed_fields)
  where changed_fields is not null;

create table audit.audit_logs_default partition of audit.audit_logs default;
comment on table audit.audit_logs_default is
  'Catches rows outside every monthly partition so that no insert can fail; maintenance moves them out.';

-- Monthly partitions, bounded in UTC so that the session time zone of whoever runs this does not
-- matter. Returns the partitions it created. A month whose rows already sit in the default
-- partition is skipped (and reported) rather than failing.
create function audit.create_partitions(months_ahead integer default 2)
returns setof text
language plpgsql
security definer
set search_path = ''
as $$
declare
  first_month date := date_trunc('month', now() at time zone 'UTC')::date;
  month date;
  partition_name text;
  lower_bound timestamptz;
  upper_bound timestamptz;
begin
  if months_ahead is null or months_ahead < 0 or months_ahead > 120 then
    raise exception 'audit-logs: months_ahead must be between 0 and 120, got %', months_ahead
      using errcode = '22023';
  end if;
  for month in
    select generate_series(first_month, first_month + make_interval(months => months_ahead), interval '1 month')::date
  loop
    partition_name := format('audit_logs_p%s', to_char(month, 'YYYY_MM'));
    continue when to_regclass(format('audit.%I', partition_name)) is not null;
    lower_bound := month::timestamp at time zone 'UTC';
    upper_bound := (month + interval '1 month')::timestamp at time zone 'UTC';
    if exists (select from audit.audit_logs_default
               where created_at >= lower_bound and created_at < upper_bound) then
      raise notice 'audit-logs: skipped partition %: rows for that month are in the default partition', partition_name;
      continue;
    end if;
    execute format('create table audit.%I partition of audit.audit_logs for values from (%L) to (%L)',
                   partition_name, lower_bound, upper_bound);
    execute format('comment on table audit.%I is %L', partition_name,
                   format('audit_logs for %s (UTC)', to_char(month, 'YYYY-MM')));
    return next partition_name;
  end loop;
end
$$;
comment on function audit.create_partitions(integer) is
  'Creates the monthly partitions of audit.audit_logs from this month to months_ahead months ahead (UTC).';
revoke all on function audit.create_partitions(integer) from public;

select audit.create_partitions(2);

-- The attribution of a transaction: set once with audit.set_context() (or set_config('audit.context',
-- json, true)); the capture triggers read it once per statement.
create type audit.context_columns as (
  actor_id text,
  actor_type text,
  actor_email text,
  ip_address inet,
  user_agent text,
  request_id text
);
comment on type audit.context_columns is
  'The keys of audit.context that have columns of their own in audit.audit_logs; every other key goes to metadata.';

-- Validates and normalises a context, so a bad one fails when it is set, not at the first write.
create function audit.normalize_context(context jsonb)
returns jsonb
language plpgsql
immutable
set search_path = ''
as $$
declare
  key text;
  normalized jsonb;
begin
  if context is null or context = 'null'::jsonb then
    return null;
  end if;
  if jsonb_typeof(context) <> 'object' then
    raise exception 'audit-logs: the audit context must be a JSON object, got %', jsonb_typeof(context)
      using errcode = 'AL004', hint = 'Pass an object such as {"actor_id": "42", "actor_type": "user"}.';
  end if;
  if octet_length(context::text) > 8192 then
    raise exception 'audit-logs: the audit context is % bytes; the limit is 8192', octet_length(context::text)
      using errcode = 'AL004', hint = 'Keep large details out of the context; record them with an event instead.';
  end if;
  foreach key in array array['actor_id', 'actor_type', 'actor_email', 'ip_address', 'user_agent',
                             'request_id', 'reason', 'migration_name'] loop
    if context ? key and jsonb_typeof(context -> key) not in ('string', 'null') then
      raise exception 'audit-logs: audit context key "%" must be a string, got %', key, jsonb_typeof(context -> key)
        using errcode = 'AL004';
    end if;
  end loop;
  if context ? 'metadata' and jsonb_typeof(context -> 'metadata') not in ('object', 'null') then
    raise exception 'audit-logs: audit context key "metadata" must be an object, got %', jsonb_typeof(context -> 'metadata')
      using errcode = 'AL004';
  end if;
  if context ->> 'ip_address' is not null then
    begin
      perform (context ->> 'ip_address')::inet;
    exception when invalid_text_representation then
      raise exception 'audit-logs: audit context ip_address "%" is not an IPv4 or IPv6 address', context ->> 'ip_address'
        using errcode = 'AL004';
    end;
  end if;
  normalized := jsonb_strip_nulls(context);
  return case when normalized = '{}'::jsonb then null else normalized end;
end
$$;
comment on function audit.normalize_context(jsonb) is
  'Checks an audit context (an object of strings; ip_address an IP address; metadata an object; at most 8 KiB) and drops null keys.';

create function audit.set_context(context jsonb)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  normalized jsonb := audit.normalize_context(context);
begin
  perform set_config('audit.context', coalesce(normalized::text, ''), true);
  return normalized;
end
$$;
comment on function audit.set_context(jsonb) is
  'Attributes the rest of the current transaction: keys actor_id, actor_type, actor_email, ip_address, '
  'user_agent, request_id, reason, migration_name and metadata (an object). Transaction-local, so it is '
  'safe behind transaction-mode poolers. Example: select audit.set_context(''{"actor_type": "migration", '
  '"migration_name": "0042_backfill"}'');';

create function audit.current_context()
returns jsonb
language sql
stable
set search_path = ''
as $$
  select nullif(current_setting('audit.context', true), '')::jsonb
$$;
comment on function audit.current_context() is 'The audit context of the current transaction, or null.';

grant usage on schema audit to public;
revoke all on all functions in schema audit from public;
grant execute on function audit.normalize_context(jsonb), audit.set_context(jsonb), audit.current_context() to public;
