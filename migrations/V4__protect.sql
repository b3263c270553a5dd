-- audit-logs V4: protect the log. Append-only, least privilege, tamper evidence (seals),
-- retention and partitions (maintain), GDPR erasure (redact).
--
-- Design notes (README "Compliance"):
-- * Append-only: UPDATE, DELETE and TRUNCATE of audit.audit_logs (every partition) and of the
--   protection tables fail with AL008 for every role, owner included. Only the maintenance
--   functions below may change rows. A change is let through when three things hold: the
--   transaction-local setting audit.maintenance is 'on', current_user is the owner of
--   audit.audit_logs (true inside these security definer functions, false for the application),
--   and the call stack contains one of the maintenance functions (PL/pgSQL prints them schema-
--   qualified because they run with search_path = ''). A set_config() by an application, even one
--   that logs in as the owner, therefore unlocks nothing: it would need a function in the audit
--   schema, which only the owner can create (DDL, like disabling the trigger: see verify).
-- * Seals: audit.seal() chains every committed, not yet sealed row. Its boundary is the oldest
--   transaction still running in this database (audit.seal_boundary, like a snapshot's xmin but
--   per database): every transaction below it has ended, so rows with txid < boundary are final,
--   and a row of a transaction still running has txid >= boundary and is sealed next time. Writers are
--   never blocked (a seal only reads the log); seals serialize among themselves (advisory lock).
-- * Chain order: seal by seal; within a seal by (txid, id). Rows are grouped in chunks of at most
--   10,000 consecutive rows of one month (UTC): a chunk stores its head (sha256 over its row
--   digests) and, to point at the first differing row, (txid, id, first 8 bytes of the digest)
--   of each row. A seal's head commits to the previous head, its range and every chunk head, so
--   a dropped month keeps its chunk heads and the chain still verifies across it.
-- * Row digest (canonical serialization v1, reproduced by the Rust verifier): see audit.row_digest.
--   Personal columns enter through one personal digest, so that a redaction or an anonymization
--   records (original digest, new digest) in audit.redactions and the chain still verifies, and
--   still catches any other change (of the other columns, or of the redacted values themselves).

-- ---------------------------------------------------------------------------------------------
-- Roles
-- ---------------------------------------------------------------------------------------------

do $roles$
declare
  role_name text;
begin
  foreach role_name in array array['audit_reader', 'audit_maintainer'] loop
    if not exists (select from pg_catalog.pg_roles where rolname = role_name) then
      begin
        execute format('create role %I nologin', role_name);
      exception
        when insufficient_privilege then
          raise notice 'audit-logs: role % not created: % may not create roles; create it and run grants from README "Compliance"',
            role_name, current_user;
        when duplicate_object or unique_violation then
          null; -- created concurrently by another database's migration
      end;
    end if;
  end loop;
end
$roles$;

-- ---------------------------------------------------------------------------------------------
-- Append-only
-- ---------------------------------------------------------------------------------------------

-- Whether the current statement runs inside one of the maintenance functions (see the header).
create function audit.in_maintenance()
returns boolean
language plpgsql
stable
set search_path = ''
as $$
declare
  stack text;
begin
  if coalesce(current_setting('audit.maintenance', true), '') <> 'on' then
    return false;
  end if;
  if current_user <> (select pg_get_userbyid(c.relowner) from pg_class c
                       where c.oid = 'audit.audit_logs'::regclass) then
    return false;
  end if;
  get diagnostics stack = pg_context;
  return stack ~ 'PL/pgSQL function audit\.(redact|anonymize_due|move_default_rows|drop_expired_partitions)\(';
end
$$;
comment on function audit.in_maintenance() is
  'True only inside audit-logs'' maintenance functions (setting audit.maintenance, the audit owner as current_user, '
  'and a maintenance function on the call stack): what lets them change rows of the append-only log.';

create function audit.refuse_change()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if audit.in_maintenance() then
    return case when tg_op = 'DELETE' then old else new end;
  end if;
  -- Named by the partitioned table, not the monthly partition the row happens to live in.
  raise exception 'audit-logs: % on % is refused: the audit log is append-only', tg_op,
    coalesce(pg_partition_root(tg_relid), tg_relid::regclass)
    using errcode = 'AL008',
          hint = 'Rows leave the log only through audit.maintain() (retention, anonymization) and audit.redact() (erasure).';
end
$$;
comment on function audit.refuse_change() is
  'Trigger: refuses UPDATE, DELETE and TRUNCATE of the append-only audit tables (AL008) outside the maintenance functions.';

-- Row triggers on the partitioned table are cloned to every partition, present and future.
create trigger audit_append_only before update or delete on audit.audit_logs
  for each row execute function audit.refuse_change();

-- TRUNCATE triggers are per table: the parent and each partition (audit.protect_partitions).
create function audit.protect_partitions()
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  rel regclass;
  added integer := 0;
begin
  for rel in
    select pt.relid from pg_partition_tree('audit.audit_logs') pt
     where not exists (select from pg_trigger t where t.tgrelid = pt.relid and t.tgname = 'audit_append_only_truncate')
  loop
    execute format('create trigger audit_append_only_truncate before truncate on %s '
                   'for each statement execute function audit.refuse_change()', rel);
    added := added + 1;
  end loop;
  return added;
end
$$;
comment on function audit.protect_partitions() is
  'Adds the append-only TRUNCATE trigger to every partition of audit.audit_logs that lacks it. Returns how many.';
revoke all on function audit.protect_partitions() from public;
select audit.protect_partitions();

-- Same as V1, plus the TRUNCATE guard on the partitions it creates.
create or replace function audit.create_partitions(months_ahead integer default 2)
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
  perform audit.protect_partitions();
end
$$;
comment on function audit.create_partitions(integer) is
  'Creates the monthly partitions of audit.audit_logs from this month to months_ahead months ahead (UTC).';
revoke all on function audit.create_partitions(integer) from public;

-- ---------------------------------------------------------------------------------------------
-- Canonical serialization (v1)
-- ---------------------------------------------------------------------------------------------
-- field(v)          = 0x00 when v is null, else 0x01 || int4 big-endian byte length || UTF-8 bytes of v
-- personal digest   = sha256(field(target_id) || field(old_target_id) || field(old_values::text) ||
--                            field(new_values::text) || field(actor_id) || field(actor_email) ||
--                            field(ip_address::text) || field(user_agent) || field(metadata::text))
-- row digest        = sha256('audit-logs:row:v1' || field(id::text) || field(created_at as
--                            YYYY-MM-DDTHH:MI:SS.USZ in UTC) || field(txid::text) || field(action) ||
--                            field(target_type) || field(changed_fields::text) || field(actor_type) ||
--                            field(request_id) || personal digest)
-- Texts are PostgreSQL's own output (jsonb::text, text[]::text, inet::text), so nothing is re-encoded.
-- These functions are called per row by seal(); they take no set clause (it would prevent
-- inlining) and run with the caller's rights, always from functions that pin search_path = ''.

create function audit.field(value text)
returns bytea
language sql
immutable
parallel safe
as $$
  select case when value is null then '\x00'::pg_catalog.bytea
              else '\x01'::pg_catalog.bytea operator(pg_catalog.||)
                   pg_catalog.int4send(pg_catalog.octet_length(pg_catalog.convert_to(value, 'UTF8')))
                   operator(pg_catalog.||) pg_catalog.convert_to(value, 'UTF8') end
$$;
comment on function audit.field(text) is
  'Canonical encoding of one value in a row digest: 0x00 for null, else 0x01, the byte length (int4) and the UTF-8 bytes.';

create function audit.personal_digest(l audit.audit_logs)
returns bytea
language sql
stable
parallel safe
as $$
  select pg_catalog.sha256(
    audit.field(l.target_id) operator(pg_catalog.||) audit.field(l.old_target_id)
    operator(pg_catalog.||) audit.field(l.old_values::pg_catalog.text)
    operator(pg_catalog.||) audit.field(l.new_values::pg_catalog.text)
    operator(pg_catalog.||) audit.field(l.actor_id) operator(pg_catalog.||) audit.field(l.actor_email)
    operator(pg_catalog.||) audit.field(l.ip_address::pg_catalog.text)
    operator(pg_catalog.||) audit.field(l.user_agent)
    operator(pg_catalog.||) audit.field(l.metadata::pg_catalog.text))
$$;
comment on function audit.personal_digest(audit.audit_logs) is
  'sha256 over the columns that may hold personal data (target ids, values, actor columns, metadata): '
  'what a redaction or anonymization replaces, recording the digest before and after in audit.redactions.';

create function audit.row_digest(l audit.audit_logs, personal bytea)
returns bytea
language sql
stable
parallel safe
as $$
  select pg_catalog.sha256(
    pg_catalog.convert_to('audit-logs:row:v1', 'UTF8')
    operator(pg_catalog.||) audit.field(l.id::pg_catalog.text)
    operator(pg_catalog.||) audit.field(pg_catalog.to_char(l.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
    operator(pg_catalog.||) audit.field(l.txid::pg_catalog.text)
    operator(pg_catalog.||) audit.field(l.action)
    operator(pg_catalog.||) audit.field(l.target_type)
    operator(pg_catalog.||) audit.field(l.changed_fields::pg_catalog.text)
    operator(pg_catalog.||) audit.field(l.actor_type)
    operator(pg_catalog.||) audit.field(l.request_id)
    operator(pg_catalog.||) coalesce(personal, audit.personal_digest(l)))
$$;
comment on function audit.row_digest(audit.audit_logs, bytea) is
  'The digest of an audit row (canonical serialization v1, see V4__protect.sql); personal, when given, '
  'stands for the personal digest (the original one of a redacted row).';

-- ---------------------------------------------------------------------------------------------
-- Seals
-- ---------------------------------------------------------------------------------------------

create table audit.seals (
  id bigint generated by default as identity primary key,
  sealed_at timestamptz not null default pg_catalog.now(),
  from_txid bigint not null,
  to_txid bigint not null,
  row_count bigint not null check (row_count > 0),
  chunk_count integer not null check (chunk_count > 0),
  previous_head bytea not null,
  head bytea not null check (octet_length(head) = 32),
  check (from_txid < to_txid),
  unique (from_txid)
);
comment on table audit.seals is
  'The hash chain over audit.audit_logs: each seal covers the rows with from_txid <= txid < to_txid, '
  'in (txid, id) order. Append-only; written by audit.seal().';
comment on column audit.seals.id is 'Seal number; the chain follows it.';
comment on column audit.seals.sealed_at is 'When the seal was made.';
comment on column audit.seals.from_txid is 'Lowest txid covered: the previous seal''s to_txid (0 for the first).';
comment on column audit.seals.to_txid is 'The xmin of the seal''s snapshot: every transaction below it had ended.';
comment on column audit.seals.row_count is 'Rows covered.';
comment on column audit.seals.chunk_count is 'Chunks (audit.seal_chunks) covered.';
comment on column audit.seals.previous_head is 'The head of the previous seal (empty for the first).';
comment on column audit.seals.head is
  'sha256(''audit-logs:seal:v1'' || previous_head || int8 id || int8 from_txid || int8 to_txid || int8 row_count '
  '|| for each chunk in order: int4 month || int8 row_count || chunk head). Export its hex to verify against later.';

create table audit.seal_chunks (
  seal_id bigint not null references audit.seals (id) deferrable initially deferred,
  chunk integer not null,
  month integer not null,
  row_count integer not null check (row_count between 1 and 10000),
  head bytea not null check (octet_length(head) = 32),
  entries bytea not null check (octet_length(entries) = 24 * row_count),
  primary key (seal_id, chunk)
);
comment on table audit.seal_chunks is
  'Consecutive rows of one seal and one month (at most 10,000): their head and per-row entries, so that '
  'verify names the first row that differs, and a dropped month still verifies through its heads.';
comment on column audit.seal_chunks.seal_id is 'The seal.';
comment on column audit.seal_chunks.chunk is 'Position in the seal, from 0.';
comment on column audit.seal_chunks.month is 'The month (UTC) of created_at of its rows, as YYYYMM.';
comment on column audit.seal_chunks.row_count is 'Rows in the chunk.';
comment on column audit.seal_chunks.head is 'sha256 over the concatenated row digests, in (txid, id) order.';
comment on column audit.seal_chunks.entries is
  'Per row, in order: int8 txid, int8 id, the first 8 bytes of the row digest (24 bytes each).';

create table audit.redactions (
  id bigint generated always as identity primary key,
  row_id bigint not null,
  row_txid bigint not null,
  kind text not null check (kind in ('redaction', 'anonymization')),
  event_id bigint,
  created_at timestamptz not null default pg_catalog.now(),
  original_digest bytea not null check (octet_length(original_digest) = 32),
  redacted_digest bytea not null check (octet_length(redacted_digest) = 32)
);
-- In chain order, as seal() and the verifier read them.
create index redactions_row_idx on audit.redactions (row_txid, row_id, id);
comment on table audit.redactions is
  'Personal values replaced in audit.audit_logs (erasure or anonymization): the personal digest before and after, '
  'so that the chain still verifies and the new values are checked too. Append-only.';
comment on column audit.redactions.id is 'Order of the redactions.';
comment on column audit.redactions.row_id is 'audit_logs.id of the changed row.';
comment on column audit.redactions.row_txid is 'audit_logs.txid of the changed row (the verifier merges in (txid, id) order).';
comment on column audit.redactions.kind is 'redaction (audit.redact) or anonymization (audit.maintain).';
comment on column audit.redactions.event_id is 'The audit event that records the redaction or the maintenance run.';
comment on column audit.redactions.created_at is 'When.';
comment on column audit.redactions.original_digest is 'Personal digest before the change.';
comment on column audit.redactions.redacted_digest is 'Personal digest after the change.';

create table audit.dropped_partitions (
  month integer primary key,
  partition_name text not null,
  row_count bigint not null,
  event_id bigint,
  dropped_at timestamptz not null default pg_catalog.now()
);
comment on table audit.dropped_partitions is
  'Monthly partitions dropped by retention: their sealed rows are acknowledged as expired by verify. Append-only.';
comment on column audit.dropped_partitions.month is 'The month (UTC) as YYYYMM.';
comment on column audit.dropped_partitions.partition_name is 'The partition that was dropped.';
comment on column audit.dropped_partitions.row_count is 'Rows it held.';
comment on column audit.dropped_partitions.event_id is 'The audit event that records the drop.';
comment on column audit.dropped_partitions.dropped_at is 'When.';

create trigger audit_append_only before update or delete on audit.seals
  for each row execute function audit.refuse_change();
create trigger audit_append_only before update or delete on audit.seal_chunks
  for each row execute function audit.refuse_change();
create trigger audit_append_only before update or delete on audit.redactions
  for each row execute function audit.refuse_change();
create trigger audit_append_only before update or delete on audit.dropped_partitions
  for each row execute function audit.refuse_change();
create trigger audit_append_only_truncate before truncate on audit.seals
  for each statement execute function audit.refuse_change();
create trigger audit_append_only_truncate before truncate on audit.seal_chunks
  for each statement execute function audit.refuse_change();
create trigger audit_append_only_truncate before truncate on audit.redactions
  for each statement execute function audit.refuse_change();
create trigger audit_append_only_truncate before truncate on audit.dropped_partitions
  for each statement execute function audit.refuse_change();

-- The txid below which every transaction that could write this database's log has ended.
-- pg_snapshot_xmin() would do, but it is cluster-wide: a long transaction in another database
-- would hold every seal back. So: the snapshot's xmax (every later transaction gets a larger
-- txid), lowered to the oldest transaction still running (or prepared) in this database, read
-- after the snapshot so that none can slip between the two.
create function audit.seal_boundary()
returns bigint
language plpgsql
volatile
set search_path = ''
as $$
declare
  xmax bigint := pg_snapshot_xmax(pg_current_snapshot())::text::bigint;
  oldest bigint;
begin
  -- 32-bit xids of running transactions widened to 64 bits: each is at most 2^31 below xmax;
  -- one that is not below it started after the snapshot and does not matter.
  select xmax - max(d.delta) into oldest
    from (select ((xmax % 4294967296) - x.xid::text::bigint + 4294967296) % 4294967296 as delta
            from (select a.backend_xid as xid from pg_stat_activity a
                   where a.datname = current_database() and a.backend_xid is not null
                  union all
                  select p.transaction from pg_prepared_xacts p where p.database = current_database()) x) d
   where d.delta > 0 and d.delta < 2147483648;
  return least(xmax, coalesce(oldest, xmax));
end
$$;
comment on function audit.seal_boundary() is
  'The txid below which every transaction of this database has ended: where audit.seal() stops.';
revoke all on function audit.seal_boundary() from public;

create function audit.seal(
  out seal_id bigint,
  out row_count bigint,
  out from_txid bigint,
  out to_txid bigint,
  out head text
)
language plpgsql
security definer
set search_path = ''
as $$
declare
  last_seal audit.seals;
  previous bytea;
  chunks integer;
  chunk_list bytea;
begin
  if current_setting('transaction_isolation') <> 'read committed' then
    raise exception 'audit-logs: seal() must run in a read committed transaction, not %', current_setting('transaction_isolation')
      using errcode = 'AL011', hint = 'Call it on its own (autocommit) or in a read committed transaction.';
  end if;
  -- One seal at a time ("audit:seal"); writers take no lock of ours.
  perform pg_advisory_xact_lock(6878582169062960236);
  -- Read after the lock, in a new snapshot: sees the seal that held it.
  select * into last_seal from audit.seals s order by s.id desc limit 1;
  from_txid := coalesce(last_seal.to_txid, 0);
  previous := coalesce(last_seal.head, ''::bytea);
  to_txid := audit.seal_boundary();
  if to_txid <= from_txid then
    row_count := 0;
    return;
  end if;
  seal_id := nextval(pg_get_serial_sequence('audit.seals', 'id'));

  if to_regclass('pg_temp.audit_seal_rows') is null then
    create temporary table audit_seal_rows (txid bigint, id bigint, month integer, digest bytea) on commit drop;
  end if;
  truncate pg_temp.audit_seal_rows;
  insert into pg_temp.audit_seal_rows
  select l.txid, l.id,
         (extract(year from l.created_at at time zone 'UTC') * 100 + extract(month from l.created_at at time zone 'UTC'))::integer,
         audit.row_digest(l, r.original_digest)
    from audit.audit_logs l
    -- A redacted row is chained with its original personal digest (the first redaction's).
    left join (select distinct on (x.row_id) x.row_id, x.original_digest
                 from audit.redactions x
                where x.row_txid >= seal.from_txid and x.row_txid < seal.to_txid
                order by x.row_id, x.id) r on r.row_id = l.id
   where l.txid >= seal.from_txid and l.txid < seal.to_txid;

  with ordered as (
    select r.*, row_number() over (order by r.txid, r.id) as rn,
           row_number() over (partition by r.month order by r.txid, r.id) as mrn
      from pg_temp.audit_seal_rows r
  ), grouped as (
    -- Runs of consecutive rows of one month, cut every 10,000 rows.
    select o.month, count(*)::integer as n, min(o.rn) as first_rn,
           sha256(string_agg(o.digest, ''::bytea order by o.rn)) as chunk_head,
           string_agg(int8send(o.txid) || int8send(o.id) || substring(o.digest from 1 for 8), ''::bytea order by o.rn) as entries
      from ordered o
     group by o.month, o.rn - o.mrn, (o.mrn - 1) / 10000
  ), inserted as (
    insert into audit.seal_chunks (seal_id, chunk, month, row_count, head, entries)
    select seal.seal_id, (row_number() over (order by g.first_rn) - 1)::integer, g.month, g.n, g.chunk_head, g.entries
      from grouped g
    returning chunk, month, seal_chunks.row_count, seal_chunks.head
  )
  select count(*), coalesce(sum(i.row_count), 0),
         string_agg(int4send(i.month) || int8send(i.row_count::bigint) || i.head, ''::bytea order by i.chunk)
    into chunks, row_count, chunk_list
    from inserted i;

  if row_count = 0 then
    -- Nothing committed since the last seal: no seal, and the next one starts at the same place.
    seal_id := null;
    to_txid := from_txid;
    return;
  end if;
  head := encode(sha256(convert_to('audit-logs:seal:v1', 'UTF8') || previous || int8send(seal_id)
                        || int8send(from_txid) || int8send(to_txid) || int8send(row_count) || chunk_list), 'hex');
  insert into audit.seals (id, from_txid, to_txid, row_count, chunk_count, previous_head, head)
  values (seal_id, from_txid, to_txid, row_count, chunks, previous, decode(head, 'hex'));
end
$$;
comment on function audit.seal() is
  'Chains every committed, not yet sealed row of audit.audit_logs into a new seal and returns it (seal_id null and '
  'row_count 0 when there was nothing to seal). Never blocks writers; rows of transactions still running are sealed '
  'next time. Run it often (pg_cron: every minute); verify with `audit-logs verify`.';

-- ---------------------------------------------------------------------------------------------
-- Settings and maintenance
-- ---------------------------------------------------------------------------------------------

create table audit.settings (
  singleton boolean primary key default true check (singleton),
  months_ahead integer not null default 2 check (months_ahead between 0 and 120),
  retention_months integer check (retention_months between 1 and 1200),
  anonymize_after_days integer default 90 check (anonymize_after_days between 1 and 36500),
  anonymize_fields text[] not null default '{ip_address,user_agent}'
    check (anonymize_fields <@ '{ip_address,user_agent}'::text[]),
  updated_at timestamptz not null default pg_catalog.now()
);
comment on table audit.settings is 'The retention policy that audit.maintain() applies (one row; change it with audit.configure).';
comment on column audit.settings.singleton is 'Always true: there is one row.';
comment on column audit.settings.months_ahead is 'Monthly partitions created ahead of the current month.';
comment on column audit.settings.retention_months is
  'Partitions whose month ended more than this many months ago are dropped; null keeps everything.';
comment on column audit.settings.anonymize_after_days is
  'Rows older than this have anonymize_fields anonymized (IP to its /24 or /48 network, other fields null); null never.';
comment on column audit.settings.anonymize_fields is 'Columns anonymized: ip_address and/or user_agent.';
comment on column audit.settings.updated_at is 'When the policy last changed.';
insert into audit.settings default values;

-- How far anonymization has got. Each run reads only the rows created since the last one, or
-- written by a transaction the last one could not see, through the BRIN index on
-- (created_at, txid): capture writes pay nothing for anonymization (a partial index on the rows
-- still holding personal data would cost every one of them).
create table audit.anonymization_watermark (
  singleton boolean primary key default true check (singleton),
  anonymized_before timestamptz not null default '-infinity',
  seen_before_txid bigint not null default 0,
  fields text[] not null default '{}'
);
comment on table audit.anonymization_watermark is
  'How far audit.anonymize_due() has got (one row).';
comment on column audit.anonymization_watermark.singleton is 'Always true: there is one row.';
comment on column audit.anonymization_watermark.anonymized_before is
  'Every row created before this by a transaction before seen_before_txid has had its fields anonymized.';
comment on column audit.anonymization_watermark.seen_before_txid is
  'audit.seal_boundary() at the last run: rows of later transactions (a backfill with an old created_at, '
  'a transaction open for days) are read again.';
comment on column audit.anonymization_watermark.fields is
  'The fields anonymized up to the watermark; asking for another reads every due row once.';
insert into audit.anonymization_watermark default values;

create function audit.configure(
  months_ahead integer default null,
  retention_months integer default null,
  anonymize_after_days integer default null,
  anonymize_fields text[] default null
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
  if retention_months < 0 or anonymize_after_days < 0 or months_ahead < 0 then
    raise exception 'audit-logs: settings must not be negative (0 turns retention or anonymization off)'
      using errcode = 'AL010';
  end if;
  if anonymize_fields is not null and not anonymize_fields <@ '{ip_address,user_agent}'::text[] then
    raise exception 'audit-logs: cannot anonymize %: only ip_address and user_agent can be anonymized',
      array_to_string(array(select unnest(anonymize_fields) except select unnest('{ip_address,user_agent}'::text[])), ', ')
      using errcode = 'AL010', hint = 'Erase other personal data with audit.redact().';
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
      updated_at = now()
    returning to_jsonb(s) - 'singleton' into result;
  exception when check_violation then
    raise exception 'audit-logs: settings out of range: months_ahead 0 to 120, retention_months 1 to 1200, anonymize_after_days 1 to 36500'
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
comment on function audit.configure(integer, integer, integer, text[]) is
  'Changes the retention policy (null leaves a setting unchanged; 0 turns retention or anonymization off) and '
  'records the change as an audit.settings_changed event. Errors: AL010.';

-- Moves the rows that landed in the default partition into monthly partitions (created for them).
create function audit.move_default_rows()
returns bigint
language plpgsql
security definer
set search_path = ''
as $$
declare
  month date;
  moved bigint;
  total bigint := 0;
  partition_name text;
begin
  perform set_config('audit.maintenance', 'on', true);
  for month in
    select distinct date_trunc('month', d.created_at at time zone 'UTC')::date from audit.audit_logs_default d order by 1
  loop
    partition_name := format('audit_logs_p%s', to_char(month, 'YYYY_MM'));
    if to_regclass('pg_temp.audit_moving') is null then
      create temporary table audit_moving (like audit.audit_logs) on commit drop;
    end if;
    truncate pg_temp.audit_moving;
    with gone as (
      delete from audit.audit_logs_default d
       where d.created_at >= month::timestamp at time zone 'UTC'
         and d.created_at < (month + interval '1 month')::timestamp at time zone 'UTC'
      returning d.*
    )
    insert into pg_temp.audit_moving select * from gone;
    get diagnostics moved = row_count;
    if to_regclass(format('audit.%I', partition_name)) is null then
      execute format('create table audit.%I partition of audit.audit_logs for values from (%L) to (%L)',
                     partition_name, month::timestamp at time zone 'UTC',
                     (month + interval '1 month')::timestamp at time zone 'UTC');
      execute format('comment on table audit.%I is %L', partition_name,
                     format('audit_logs for %s (UTC)', to_char(month, 'YYYY-MM')));
    end if;
    -- Same ids, txids and times: the rows' digests, and so the seals, are unchanged.
    insert into audit.audit_logs overriding system value select * from pg_temp.audit_moving;
    total := total + moved;
    perform audit.log_event('audit.rows_moved', 'audit.audit_logs', partition_name,
                            jsonb_build_object('partition', partition_name, 'rows', moved));
  end loop;
  perform set_config('audit.maintenance', '', true);
  perform audit.protect_partitions();
  return total;
end
$$;
comment on function audit.move_default_rows() is
  'Moves rows of audit.audit_logs_default into their monthly partitions, unchanged (ids, txids, digests). Returns how many.';

create function audit.drop_expired_partitions(retention_months integer)
returns text[]
language plpgsql
security definer
set search_path = ''
as $$
declare
  cutoff date := (date_trunc('month', now() at time zone 'UTC') - make_interval(months => retention_months))::date;
  part record;
  n bigint;
  event_id bigint;
  dropped text[] := '{}';
begin
  if retention_months is null or retention_months < 1 then
    raise exception 'audit-logs: retention_months must be at least 1, got %', retention_months using errcode = 'AL010';
  end if;
  perform set_config('audit.maintenance', 'on', true);
  for part in
    select c.relname::text as name,
           to_date(substring(c.relname from 'audit_logs_p(\d{4}_\d{2})$'), 'YYYY_MM') as month
      from pg_partition_tree('audit.audit_logs') pt
      join pg_class c on c.oid = pt.relid
     where pt.isleaf and c.relname ~ '^audit_logs_p\d{4}_\d{2}$'
     order by 2
  loop
    -- A partition goes when its whole month ended before the cutoff.
    continue when (part.month + interval '1 month')::date > cutoff;
    execute format('select count(*) from audit.%I', part.name) into n;
    select id into event_id from audit.log_event('audit.partition_dropped', 'audit.audit_logs', part.name,
                                jsonb_build_object('partition', part.name, 'month', to_char(part.month, 'YYYY-MM'),
                                                   'rows', n, 'retention_months', retention_months));
    insert into audit.dropped_partitions (month, partition_name, row_count, event_id)
    values ((to_char(part.month, 'YYYYMM'))::integer, part.name, n, event_id)
    on conflict (month) do nothing;
    execute format('drop table audit.%I', part.name);
    dropped := dropped || part.name;
  end loop;
  perform set_config('audit.maintenance', '', true);
  return dropped;
end
$$;
comment on function audit.drop_expired_partitions(integer) is
  'Drops the monthly partitions whose month ended more than retention_months months ago (whole partitions, '
  'no row-by-row delete), recording each in audit.dropped_partitions and as an audit.partition_dropped event.';

create function audit.anonymize_due(after_days integer, fields text[])
returns bigint
language plpgsql
security definer
set search_path = ''
as $$
declare
  cutoff timestamptz := now() - make_interval(days => after_days);
  since timestamptz;
  since_txid bigint;
  boundary bigint;
  do_ip boolean := 'ip_address' = any(fields);
  do_agent boolean := 'user_agent' = any(fields);
  event_id bigint;
  n bigint;
begin
  if after_days is null or after_days < 1 then
    raise exception 'audit-logs: anonymize_after_days must be at least 1, got %', after_days using errcode = 'AL010';
  end if;
  perform set_config('audit.maintenance', 'on', true);
  select id into event_id from audit.log_event('audit.anonymized', 'audit.audit_logs', null,
                              jsonb_build_object('older_than', cutoff, 'fields', to_jsonb(fields)));
  -- Rows behind the watermark are done, unless more fields are asked for than it covers. The
  -- row lock also serializes concurrent runs.
  select case when anonymize_due.fields <@ w.fields then w.anonymized_before else '-infinity' end,
         case when anonymize_due.fields <@ w.fields then w.seen_before_txid else 0 end
    into since, since_txid
    from audit.anonymization_watermark w for update;
  -- Every transaction below it has ended, so this run's statements see all of its rows.
  boundary := audit.seal_boundary();
  with due as (
    select l.id, l.txid, audit.personal_digest(l) as digest
      from audit.audit_logs l
     where (l.user_agent is not null
            or pg_catalog.masklen(l.ip_address) > (case when pg_catalog.family(l.ip_address) = 4 then 24 else 48 end))
       and l.created_at < cutoff
       and (l.created_at >= since or l.txid >= since_txid)
  ), changed as (
    update audit.audit_logs l set
      ip_address = case when do_ip and l.ip_address is not null
                        then network(set_masklen(l.ip_address, case when family(l.ip_address) = 4 then 24 else 48 end))::inet
                        else l.ip_address end,
      user_agent = case when do_agent then null else l.user_agent end
     where (l.user_agent is not null
            or pg_catalog.masklen(l.ip_address) > (case when pg_catalog.family(l.ip_address) = 4 then 24 else 48 end))
       and l.created_at < cutoff
       and (l.created_at >= since or l.txid >= since_txid)
       and l.id = any (array(select d.id from due d))
    returning l.id, audit.personal_digest(l) as digest
  )
  insert into audit.redactions (row_id, row_txid, kind, event_id, original_digest, redacted_digest)
  select d.id, d.txid, 'anonymization', event_id, d.digest, c.digest
    from due d join changed c on c.id = d.id
   where d.digest <> c.digest;
  get diagnostics n = row_count;
  -- A longer delay than last time leaves the watermark where it was: the rows between the two
  -- cutoffs that later transactions wrote are not due yet, and must be read again.
  update audit.anonymization_watermark
     set anonymized_before = greatest(cutoff, since),
         seen_before_txid = case when cutoff >= since then boundary else since_txid end,
         fields = anonymize_due.fields;
  perform set_config('audit.maintenance', '', true);
  return n;
end
$$;
comment on function audit.anonymize_due(integer, text[]) is
  'Anonymizes ip_address (to its /24 or /48 network) and/or user_agent (null) of rows older than after_days days, '
  'recording each in audit.redactions. Returns how many rows changed.';

create function audit.maintain(
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
  if retention_months is not null then
    dropped := audit.drop_expired_partitions(retention_months);
  end if;
  if anonymize_after_days is not null and cardinality(policy.anonymize_fields) > 0 then
    anonymized := audit.anonymize_due(anonymize_after_days, policy.anonymize_fields);
  end if;
  return jsonb_build_object(
    'partitionsCreated', to_jsonb(created),
    'rowsMoved', moved,
    'partitionsDropped', to_jsonb(dropped),
    'rowsAnonymized', anonymized,
    'sealedRows', coalesce(sealed.row_count, 0),
    'retentionMonths', retention_months,
    'anonymizeAfterDays', anonymize_after_days);
end
$$;
comment on function audit.maintain(integer, integer, integer) is
  'Runs the retention policy of audit.settings (arguments override it for this run; 0 turns a step off): moves '
  'default-partition rows into monthly partitions, creates the coming months'' partitions, seals, drops expired '
  'partitions and anonymizes due rows. Every step is recorded as an audit event. Safe from cron or pg_cron.';

-- ---------------------------------------------------------------------------------------------
-- Erasure
-- ---------------------------------------------------------------------------------------------

-- HMAC-SHA256 (RFC 2104) with the builtin sha256, for redact(): no extension needed.
create function audit.hmac_sha256(key bytea, message bytea)
returns bytea
language plpgsql
immutable
strict
set search_path = ''
as $$
declare
  k bytea := case when octet_length(key) > 64 then sha256(key) else key end;
  inner_pad bytea;
  outer_pad bytea;
  i integer;
begin
  k := k || decode(repeat('00', 64 - octet_length(k)), 'hex');
  inner_pad := k;
  outer_pad := k;
  for i in 0..63 loop
    inner_pad := set_byte(inner_pad, i, get_byte(k, i) # 54);
    outer_pad := set_byte(outer_pad, i, get_byte(k, i) # 92);
  end loop;
  return sha256(outer_pad || sha256(inner_pad || message));
end
$$;
comment on function audit.hmac_sha256(bytea, bytea) is 'HMAC-SHA256 of message under key (RFC 2104).';

create function audit.redact(
  key bytea,
  actor_id text default null,
  target_type text default null,
  target_id text default null,
  fields text[] default null,
  reason text default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  personal constant text[] := '{target_id,old_target_id,old_values,new_values,actor_id,actor_email,ip_address,user_agent,metadata}';
  by_actor boolean := redact.actor_id is not null;
  value_keys text[];
  metadata_keys text[];
  columns text[];
  unknown text[];
  subject text;
  event_id bigint;
  n bigint;
begin
  if key is null or octet_length(key) < 16 then
    raise exception 'audit-logs: the redaction key must be at least 16 bytes'
      using errcode = 'AL009', hint = 'Use a random secret kept outside the database; the same key gives the same pseudonyms.';
  end if;
  if by_actor = (redact.target_type is not null or redact.target_id is not null)
     or (not by_actor and (redact.target_type is null or redact.target_id is null)) then
    raise exception 'audit-logs: redact needs either actor_id, or target_type and target_id'
      using errcode = 'AL009';
  end if;
  fields := coalesce(fields, case when by_actor then '{actor_id,actor_email,ip_address,user_agent}'::text[]
                                  else '{old_values,new_values}'::text[] end);
  columns := array(select f from unnest(fields) f where f = any(personal));
  value_keys := array(select substring(f from 8) from unnest(fields) f where f like 'values.%');
  metadata_keys := array(select substring(f from 10) from unnest(fields) f where f like 'metadata.%');
  unknown := array(select f from unnest(fields) f
                    where not (f = any(personal) or f like 'values.%' or f like 'metadata.%'));
  if cardinality(unknown) > 0 or cardinality(fields) = 0 then
    raise exception 'audit-logs: cannot redact %: fields are %, values.KEY or metadata.KEY',
      coalesce(array_to_string(unknown, ', '), 'nothing'), array_to_string(personal, ', ')
      using errcode = 'AL009';
  end if;

  subject := encode(audit.hmac_sha256(key, convert_to(coalesce(redact.actor_id, redact.target_type || ' ' || redact.target_id), 'UTF8')), 'hex');
  select id into event_id from audit.log_event('audit.redaction', 'audit.audit_logs', null,
                              jsonb_strip_nulls(jsonb_build_object('subject', 'hmac:' || subject,
                                                 'by', case when by_actor then 'actor' else 'target' end,
                                                 'fields', to_jsonb(fields), 'reason', reason)));
  perform set_config('audit.maintenance', 'on', true);
  with matched as (
    select l.id, l.txid, audit.personal_digest(l) as digest
      from audit.audit_logs l
     where case when by_actor then l.actor_id = redact.actor_id
                else l.target_type = redact.target_type
                     and (l.target_id = redact.target_id or l.old_target_id = redact.target_id) end
       and l.id <> event_id
  ), changed as (
    update audit.audit_logs l set
      target_id = case when 'target_id' = any(columns) then audit.redacted_text(key, l.target_id) else l.target_id end,
      old_target_id = case when 'old_target_id' = any(columns) then audit.redacted_text(key, l.old_target_id) else l.old_target_id end,
      old_values = audit.redacted_json(key, l.old_values, 'old_values' = any(columns), value_keys),
      new_values = audit.redacted_json(key, l.new_values, 'new_values' = any(columns), value_keys),
      actor_id = case when 'actor_id' = any(columns) then audit.redacted_text(key, l.actor_id) else l.actor_id end,
      actor_email = case when 'actor_email' = any(columns) then audit.redacted_text(key, l.actor_email) else l.actor_email end,
      ip_address = case when 'ip_address' = any(columns) then null else l.ip_address end,
      user_agent = case when 'user_agent' = any(columns) then audit.redacted_text(key, l.user_agent) else l.user_agent end,
      metadata = audit.redacted_json(key, l.metadata, 'metadata' = any(columns), metadata_keys)
     where l.id = any (array(select m.id from matched m))
       and case when by_actor then l.actor_id = redact.actor_id
                else l.target_type = redact.target_type
                     and (l.target_id = redact.target_id or l.old_target_id = redact.target_id) end
    returning l.id, audit.personal_digest(l) as digest
  )
  insert into audit.redactions (row_id, row_txid, kind, event_id, original_digest, redacted_digest)
  select m.id, m.txid, 'redaction', event_id, m.digest, c.digest
    from matched m join changed c on c.id = m.id
   where m.digest <> c.digest;
  get diagnostics n = row_count;
  perform set_config('audit.maintenance', '', true);
  return jsonb_build_object('rowsRedacted', n, 'eventId', event_id, 'fields', to_jsonb(fields));
end
$$;
comment on function audit.redact(bytea, text, text, text, text[], text) is
  'GDPR erasure: replaces the personal values of one data subject (actor_id, or target_type and target_id) with '
  'keyed hashes ("hmac:" and HMAC-SHA256 hex under key, which is never stored; IP addresses become null). fields: '
  'columns (default: actor columns for an actor, old_values and new_values for a target), values.KEY, metadata.KEY. '
  'Records an audit.redaction event and the digests in audit.redactions; verify still passes. Errors: AL009.';

create function audit.redacted_text(key bytea, value text)
returns text
language sql
immutable
set search_path = ''
as $$
  select case when value is null or value like 'hmac:%' then value
              else 'hmac:' || encode(audit.hmac_sha256(key, convert_to(value, 'UTF8')), 'hex') end
$$;
comment on function audit.redacted_text(bytea, text) is 'The pseudonym of a value: "hmac:" and its HMAC-SHA256 hex (already redacted values are kept).';

-- Every top-level value (all, or only the keys given) replaced by the pseudonym of its JSON text.
create function audit.redacted_json(key bytea, value jsonb, whole boolean, keys text[])
returns jsonb
language sql
immutable
set search_path = ''
as $$
  -- Positional references: jsonb_each's columns are also named key and value.
  select case
    when $2 is null or jsonb_typeof($2) <> 'object' or (not $3 and cardinality($4) = 0) then $2
    else (select coalesce(jsonb_object_agg(e.key,
                   case when ($3 or e.key = any($4)) and e.value <> 'null'::jsonb
                        then to_jsonb(audit.redacted_text($1, case when jsonb_typeof(e.value) = 'string'
                                                                   then e.value #>> '{}' else e.value::text end))
                        else e.value end), '{}'::jsonb)
            from jsonb_each($2) e)
  end
$$;
comment on function audit.redacted_json(bytea, jsonb, boolean, text[]) is
  'A JSON object with its values (all when whole, else the keys given) replaced by their pseudonyms.';

-- ---------------------------------------------------------------------------------------------
-- Privileges
-- ---------------------------------------------------------------------------------------------

-- New functions are executable by PUBLIC by default: the maintenance ones are not.
revoke all on function audit.seal(), audit.configure(integer, integer, integer, text[]),
  audit.move_default_rows(), audit.drop_expired_partitions(integer), audit.anonymize_due(integer, text[]),
  audit.maintain(integer, integer, integer), audit.redact(bytea, text, text, text, text[], text)
  from public;

do $grants$
begin
  if exists (select from pg_catalog.pg_roles where rolname = 'audit_reader') then
    grant select on audit.audit_logs, audit.seals, audit.seal_chunks, audit.redactions, audit.dropped_partitions,
      audit.settings, audit.anonymization_watermark, audit.tracked_tables to audit_reader;
  end if;
  if exists (select from pg_catalog.pg_roles where rolname = 'audit_maintainer') then
    grant execute on function audit.seal(), audit.maintain(integer, integer, integer),
      audit.redact(bytea, text, text, text, text[], text), audit.configure(integer, integer, integer, text[])
      to audit_maintainer;
    if exists (select from pg_catalog.pg_roles where rolname = 'audit_reader')
       and not pg_has_role('audit_maintainer', 'audit_reader', 'member') then
      grant audit_reader to audit_maintainer;
    end if;
  end if;
exception when insufficient_privilege then
  raise notice 'audit-logs: could not grant to audit_reader / audit_maintainer: %', sqlerrm;
end
$grants$;
