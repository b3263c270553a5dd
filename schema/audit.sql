-- audit-logs: the `audit` schema after every migration in migrations/ (those are the
-- history and are never edited once released; this is the present). GENERATED, do not edit:
-- `npm run schema` rewrites it, and npm test fails when it is not current.
--
-- pg_dump --schema-only --schema=audit --no-owner of a freshly migrated database (PostgreSQL
-- 15), without the monthly partitions that audit.create_partitions makes, pg_dump's
-- session settings and version header; event triggers, which no schema holds, are at the end.
-- Order is pg_dump's: types, functions, tables and views, defaults, constraints, indexes,
-- triggers, comments next to their object, grants.

-- SCHEMA audit

CREATE SCHEMA audit;

-- COMMENT SCHEMA audit

COMMENT ON SCHEMA audit IS 'audit-logs: the audit trail (audit.audit_logs), its capture triggers and maintenance functions.';

-- TYPE context_columns

CREATE TYPE audit.context_columns AS (
	actor_id text,
	actor_type text,
	actor_email text,
	ip_address inet,
	user_agent text,
	request_id text
);

-- COMMENT TYPE context_columns

COMMENT ON TYPE audit.context_columns IS 'The keys of audit.context that have columns of their own in audit.audit_logs; every other key goes to metadata.';

-- FUNCTION advisory_lock_holders(bigint)

CREATE FUNCTION audit.advisory_lock_holders(key bigint) RETURNS text
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
  select coalesce(string_agg(format('pid %s (role %s%s)', a.pid, a.usename,
                                    case when a.application_name <> '' then ', application ' || a.application_name else '' end),
                             ', ' order by a.pid),
                  'a session that has since ended')
    from pg_locks l join pg_stat_activity a on a.pid = l.pid
   where l.locktype = 'advisory' and l.granted and l.database = (select oid from pg_database where datname = current_database())
     and l.classid = ((key >> 32) & 4294967295)::oid and l.objid = (key & 4294967295)::oid and l.objsubid = 1
$$;

-- COMMENT FUNCTION advisory_lock_holders(key bigint)

COMMENT ON FUNCTION audit.advisory_lock_holders(key bigint) IS 'The sessions holding an advisory lock of this key, as "pid N (role R, application A)".';

-- FUNCTION advisory_xact_lock(bigint, text, interval)

CREATE FUNCTION audit.advisory_xact_lock(key bigint, purpose text, max_wait interval) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  saved_timeout text := current_setting('lock_timeout');
begin
  max_wait := coalesce(nullif(current_setting('audit.lock_wait', true), '')::interval, max_wait);
  perform set_config('lock_timeout', greatest((extract(epoch from max_wait) * 1000)::bigint, 1)::text, true);
  begin
    perform pg_advisory_xact_lock(key);
  exception when lock_not_available then
    perform set_config('lock_timeout', saved_timeout, true);
    raise exception 'audit-logs: % waited % for its lock, held by %', purpose, max_wait, audit.advisory_lock_holders(key)
      using errcode = 'AL011',
            hint = 'Another ' || purpose || ' may still be running; otherwise end that session (select pg_terminate_backend(pid)).';
  end;
  perform set_config('lock_timeout', saved_timeout, true);
end
$$;

-- COMMENT FUNCTION advisory_xact_lock(key bigint, purpose text, max_wait interval)

COMMENT ON FUNCTION audit.advisory_xact_lock(key bigint, purpose text, max_wait interval) IS 'pg_advisory_xact_lock with a bounded wait (max_wait, or the setting audit.lock_wait): AL011 names the holders.';

-- FUNCTION anonymize_due(integer, text[])

CREATE FUNCTION audit.anonymize_due(after_days integer, fields text[]) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

-- COMMENT FUNCTION anonymize_due(after_days integer, fields text[])

COMMENT ON FUNCTION audit.anonymize_due(after_days integer, fields text[]) IS 'Anonymizes ip_address (to its /24 or /48 network) and/or user_agent (null) of rows older than after_days days, recording each in audit.redactions. Returns how many rows changed.';

-- FUNCTION capture_function_name(regclass, text)

CREATE FUNCTION audit.capture_function_name(target regclass, target_type text) RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
declare
  base text := 'capture ' || target_type;
  candidate text;
  suffix integer := 1;
begin
  if octet_length(base) > 50 then
    base := left(base, 30) || ' ' || left(md5(base), 12);
  end if;
  candidate := base;
  -- Free, or already this table's: use it. Held by another table's triggers: try the next number.
  while exists (select from pg_proc p join pg_trigger t on t.tgfoid = p.oid
                 where p.pronamespace = 'audit'::regnamespace and p.proname = candidate
                   and t.tgrelid <> target
                   and t.tgrelid not in (select relid from pg_partition_tree(target))) loop
    suffix := suffix + 1;
    candidate := base || ' #' || suffix;
  end loop;
  return candidate;
end
$$;

-- COMMENT FUNCTION capture_function_name(target regclass, target_type text)

COMMENT ON FUNCTION audit.capture_function_name(target regclass, target_type text) IS 'The name of the capture function of a table: "capture schema.table", hashed when long, numbered when taken.';

-- FUNCTION capture_function_sql(text, jsonb)

CREATE FUNCTION audit.capture_function_sql(function_name text, options jsonb) RETURNS text
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO ''
    AS $_$
declare
  target_type text := options ->> 'target_type';
  key_columns text[] := array(select jsonb_array_elements_text(options -> 'primary_key'));
  all_columns text[] := array(select jsonb_array_elements_text(options -> 'columns'));
  excluded text[] := array(select jsonb_array_elements_text(options -> 'exclude_columns'));
  relation_ids oid[] := array(select jsonb_array_elements_text(coalesce(options -> 'relation_ids', '[]'))::oid);
  skip_unchanged boolean := (options ->> 'skip_unchanged')::boolean;
  require_context boolean := coalesce((options ->> 'require_context')::boolean, false);
  missing_context text := '';
  key_wrapper text := case when coalesce((options ->> 'long_keys')::boolean, true) then 'audit.stored_key(%s)' else '%s' end;
  minus_excluded text := '';
  where_changed text := '';
  context_keys constant text :=
    '''{actor_id,actor_type,actor_email,ip_address,user_agent,request_id,metadata}''::pg_catalog.text[]';
  columns_written constant text :=
    'actor_id, actor_type, actor_email, ip_address, user_agent, request_id, metadata';
  context_values constant text :=
    'c.actor_id, c.actor_type, c.actor_email, c.ip_address, c.user_agent, c.request_id, meta';
begin
  if cardinality(excluded) > 0 then
    minus_excluded := format(' operator(pg_catalog.-) %L::pg_catalog.text[]', excluded);
  end if;
  if skip_unchanged then
    where_changed := 'where p.o operator(pg_catalog.<>) p.n';
  end if;
  if require_context then
    missing_context := format($check$
  if ctx is null then
    raise exception 'audit-logs: %% on %% needs an audit context: the table requires one', tg_op, %L
      using errcode = 'AL006',
            hint = 'Make the change in withAuditContext(), or after select audit.set_context(...).';
  end if;
$check$, target_type);
  end if;

  return format($template$
create or replace function audit.%1$I()
returns trigger
language plpgsql
security definer
as $capture$
-- Generated by audit.enable_tracking for %2$s; run it again rather than editing this.
declare
  raw pg_catalog.text := pg_catalog.current_setting('audit.context', true);
  ctx pg_catalog.jsonb;
  c audit.context_columns;
  meta pg_catalog.jsonb;
  truncated pg_catalog.text;
  saved_row_security pg_catalog.text;
begin
  -- Only ever for its own table: the oids known when it was generated, else by name.
  if tg_relid operator(pg_catalog.<>) all (%13$L::pg_catalog.oid[]) then
    perform audit.check_capture_target(tg_relid, %2$L);
  end if;
  -- Set for this transaction by audit.set_context or audit.set_checked_context, which wrote
  -- beside it the marker (this transaction's start, and the context's text), checked here
  -- before parsing: a value left by a session-level SET, or set_config'd by hand, attributes
  -- nothing, and one that is not JSON fails no write.
  -- As few statements as the rules allow: each costs every transaction an initialization and
  -- each function in it an EXECUTE check, capture not running as a superuser.
  if pg_catalog.current_setting('audit.context_marker', true) operator(pg_catalog.=)
       (pg_catalog.to_jsonb(pg_catalog.now())::pg_catalog.text operator(pg_catalog.||) raw) then
    ctx := raw::pg_catalog.jsonb;
    c := pg_catalog.jsonb_populate_record(null::audit.context_columns, ctx);
    meta := (ctx operator(pg_catalog.-) %3$s)
            operator(pg_catalog.||) coalesce((ctx operator(pg_catalog.->) 'metadata'), '{}'::pg_catalog.jsonb);
    -- Not nullif: it would look up = on the caller's search_path.
    if meta operator(pg_catalog.=) '{}'::pg_catalog.jsonb then
      meta := null;
    end if;
  elsif raw operator(pg_catalog.<>) '' then
    meta := '{"audit_context_ignored": "not set for this transaction by audit.set_context"}';
  end if;
%12$s
  if tg_op operator(pg_catalog.=) 'UPDATE' then
    insert into audit.audit_logs (action, target_type, target_id, old_target_id, old_values, new_values,
                                  changed_fields, %4$s)
    select 'UPDATE', %2$L, d.id,
           case when d.old_id operator(pg_catalog.<>) d.id then d.old_id end,
           (d.diff).old_values, (d.n%5$s), (d.diff).changed_fields, %8$s
    from (
      select p.n, (%9$s) as old_id, (%10$s) as id,
             audit.row_diff(p.o, p.n, %7$L::pg_catalog.text[], %6$L::pg_catalog.text[]) as diff
      -- Old and new transition rows come in the same order: zip them (pairing by key fails when
      -- the key changes; a join planned for one row goes quadratic for many).
      from rows from (pg_catalog.unnest(array(select %14$s from old_rows r)),
                      pg_catalog.unnest(array(select %14$s from new_rows r))) as p(o, n)
      %11$s
      -- A fence, so that row_diff runs once per row rather than once per output column.
      offset 0
    ) as d;
  elsif tg_op operator(pg_catalog.=) 'INSERT' then
    -- offset 0 (here, for DELETE and for TRUNCATE): a subquery pulled up would serialize each
    -- row twice, once for target_id and once for the values.
    insert into audit.audit_logs (action, target_type, target_id, new_values, %4$s)
    select 'INSERT', %2$L, (%10$s), (p.n%5$s), %8$s
    from (select %14$s as n from new_rows r offset 0) as p;
  elsif tg_op operator(pg_catalog.=) 'DELETE' then
    insert into audit.audit_logs (action, target_type, target_id, old_values, %4$s)
    select 'DELETE', %2$L, (%9$s), (p.o%5$s), %8$s
    from (select %14$s as o from old_rows r offset 0) as p;
  elsif tg_op operator(pg_catalog.=) 'TRUNCATE' then
    -- Record every row that is about to go, read with row security off: a policy is application
    -- code, and must neither run here nor hide rows (without BYPASSRLS this fails instead).
    -- A partitioned table's own trigger covers only the partitions that lack one (created after
    -- tracking was enabled), read through the table itself, whose SELECT grant covers them.
    saved_row_security := pg_catalog.current_setting('row_security');
    perform pg_catalog.set_config('row_security', 'off', true);
    for truncated in
      select pg_catalog.format('only %%I.%%I r', n.nspname, cl.relname)
      from pg_catalog.pg_class cl
      join pg_catalog.pg_namespace n on n.oid operator(pg_catalog.=) cl.relnamespace
      where cl.oid operator(pg_catalog.=) tg_relid and cl.relkind operator(pg_catalog.=) 'r'
      union all
      select pg_catalog.format('%%I.%%I r where r.tableoid operator(pg_catalog.=) %%s::pg_catalog.oid',
                               n.nspname, cl.relname, pt.relid::pg_catalog.oid)
      from pg_catalog.pg_partition_tree(tg_relid) as pt
      join pg_catalog.pg_class cl on cl.oid operator(pg_catalog.=) tg_relid
      join pg_catalog.pg_namespace n on n.oid operator(pg_catalog.=) cl.relnamespace
      where pt.isleaf and pt.relid operator(pg_catalog.<>) tg_relid
        and not exists (select from pg_catalog.pg_trigger t
                        where t.tgrelid operator(pg_catalog.=) pt.relid
                          and t.tgname operator(pg_catalog.=) 'audit_capture_truncate')
    loop
      execute pg_catalog.format(
        'insert into audit.audit_logs (action, target_type, target_id, old_values, %4$s) '
        'select ''TRUNCATE'', $8, (%%s), (p.o%%s), $1, $2, $3, $4, $5, $6, $7 '
        'from (select %%s as o from %%s offset 0) as p',
        %9$L, %5$L, %14$L, truncated)
        using c.actor_id, c.actor_type, c.actor_email, c.ip_address, c.user_agent, c.request_id, meta, %2$L;
    end loop;
    perform pg_catalog.set_config('row_security', saved_row_security, true);
  end if;
  return null;
end
$capture$
$template$,
    function_name,                                   -- 1
    target_type,                                     -- 2
    context_keys,                                    -- 3
    columns_written,                                 -- 4
    minus_excluded,                                  -- 5
    excluded,                                        -- 6
    all_columns,                                     -- 7
    context_values,                                  -- 8
    format(key_wrapper, audit.key_expression('p.o', key_columns)), -- 9
    format(key_wrapper, audit.key_expression('p.n', key_columns)), -- 10
    where_changed,                                   -- 11
    missing_context,                                 -- 12
    relation_ids,                                    -- 13
    audit.row_json_expression('r', options ->> 'serialization')); -- 14
end
$_$;

-- COMMENT FUNCTION capture_function_sql(function_name text, options jsonb)

COMMENT ON FUNCTION audit.capture_function_sql(function_name text, options jsonb) IS 'The source of the capture function that audit.enable_tracking installs for a table with these options.';

-- FUNCTION capture_options(regclass, text, text[], boolean, boolean)

CREATE FUNCTION audit.capture_options(target regclass, target_type text, exclude_columns text[], skip_unchanged boolean, require_context boolean) RETURNS jsonb
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
  select jsonb_build_object(
    'target_type', target_type,
    'primary_key', to_jsonb(array(
      select a.attname::text
        from pg_index i
        cross join unnest(i.indkey) with ordinality as k(attnum, position)
        join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
       where i.indrelid = target and i.indisprimary
       order by k.position)),
    'columns', to_jsonb(array(
      select attname::text from pg_attribute
       where attrelid = target and attnum > 0 and not attisdropped
       order by attnum)),
    'column_types', audit.column_types(target),
    'exclude_columns', to_jsonb(array(select distinct unnest(coalesce(exclude_columns, '{}')) order by 1)),
    'skip_unchanged', coalesce(skip_unchanged, true),
    'require_context', coalesce(require_context, false))
$$;

-- COMMENT FUNCTION capture_options(target regclass, target_type text, exclude_columns text[], skip_unchanged boolean, require_context boolean)

COMMENT ON FUNCTION audit.capture_options(target regclass, target_type text, exclude_columns text[], skip_unchanged boolean, require_context boolean) IS 'The tracking options (trigger argument) of a table as it is now, with the given choices.';

-- FUNCTION capture_serialization(regclass)

CREATE FUNCTION audit.capture_serialization(target regclass) RETURNS text
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
  select case when not audit.serializes_plainly(target) then 'sandboxed'
              when exists (select from pg_event_trigger where evtname = 'audit_capture_ddl' and evtenabled in ('O', 'A'))
                then 'plain'
              else 'gated' end
$$;

-- COMMENT FUNCTION capture_serialization(target regclass)

COMMENT ON FUNCTION audit.capture_serialization(target regclass) IS 'sandboxed, plain or gated: how capture of the table must serialize its rows (see V5__capture_rights.sql).';

-- FUNCTION check_capture_target(oid, text)

CREATE FUNCTION audit.check_capture_target(fired_on oid, target_type text) RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
declare
  fired_on_name text := (select format('%I.%I', n.nspname, c.relname)
                           from pg_class c join pg_namespace n on n.oid = c.relnamespace
                          where c.oid = coalesce(pg_partition_root(fired_on), fired_on));
begin
  if fired_on_name is distinct from target_type then
    raise exception 'audit-logs: the capture function of % fired on %: refused', target_type, fired_on::regclass
      using errcode = 'AL013',
            hint = 'A capture function records only the table it was generated for; track this table with audit.enable_tracking.';
  end if;
end
$$;

-- COMMENT FUNCTION check_capture_target(fired_on oid, target_type text)

COMMENT ON FUNCTION audit.check_capture_target(fired_on oid, target_type text) IS 'Raises AL013 unless the relation (or its partition root) is the table named target_type.';

-- FUNCTION check_event(text, text, text, jsonb)

CREATE FUNCTION audit.check_event(action text, target_type text, target_id text, metadata jsonb) RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO ''
    AS $_$
begin
  if action is null or action !~ '^[A-Za-z][A-Za-z0-9_.:-]{0,99}$' then
    raise exception 'audit-logs: event action % is not valid: use 1 to 100 letters, digits, "_", ".", ":" or "-", starting with a letter (e.g. user.login)',
      coalesce(quote_literal(action), 'null')
      using errcode = 'AL007';
  end if;
  if upper(action) in ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE') then
    raise exception 'audit-logs: event action % is reserved for row changes, which the triggers record', action
      using errcode = 'AL007', hint = 'Name events by what happened, e.g. user.login or report.exported.';
  end if;
  if lower(action) like 'ddl.%' then
    raise exception 'audit-logs: event action % is reserved: ddl.* entries record schema changes of tracked tables', action
      using errcode = 'AL007', hint = 'Name events by what happened in the application, e.g. schema.migrated.';
  end if;
  if octet_length(target_type) > 200 or octet_length(target_id) > 1024 then
    raise exception 'audit-logs: event target_type (at most 200 bytes) or target_id (at most 1024 bytes) is too long'
      using errcode = 'AL007';
  end if;
  if metadata is not null and jsonb_typeof(metadata) <> 'object' then
    raise exception 'audit-logs: event metadata must be a JSON object, got %', jsonb_typeof(metadata)
      using errcode = 'AL007';
  end if;
  if octet_length(metadata::text) > 65536 then
    raise exception 'audit-logs: event metadata is % bytes; the limit is 65536', octet_length(metadata::text)
      using errcode = 'AL007';
  end if;
end
$_$;

-- COMMENT FUNCTION check_event(action text, target_type text, target_id text, metadata jsonb)

COMMENT ON FUNCTION audit.check_event(action text, target_type text, target_id text, metadata jsonb) IS 'Raises AL007 unless the action, target and metadata make a valid application event.';

-- FUNCTION column_types(regclass)

CREATE FUNCTION audit.column_types(target regclass) RETURNS jsonb
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
  select to_jsonb(array(
    select format_type(atttypid, atttypmod) from pg_attribute
     where attrelid = target and attnum > 0 and not attisdropped
     order by attnum))
$$;

-- COMMENT FUNCTION column_types(target regclass)

COMMENT ON FUNCTION audit.column_types(target regclass) IS 'The types of a table''s columns, in order (tracking options).';

-- FUNCTION configure(integer, integer, integer, text[], text, text, integer)

CREATE FUNCTION audit.configure(months_ahead integer DEFAULT NULL::integer, retention_months integer DEFAULT NULL::integer, anonymize_after_days integer DEFAULT NULL::integer, anonymize_fields text[] DEFAULT NULL::text[], archive_to text DEFAULT NULL::text, archive_lock_mode text DEFAULT NULL::text, archive_lock_days integer DEFAULT NULL::integer) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $_$
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
$_$;

-- COMMENT FUNCTION configure(months_ahead integer, retention_months integer, anonymize_after_days integer, anonymize_fields text[], archive_to text, archive_lock_mode text, archive_lock_days integer)

COMMENT ON FUNCTION audit.configure(months_ahead integer, retention_months integer, anonymize_after_days integer, anonymize_fields text[], archive_to text, archive_lock_mode text, archive_lock_days integer) IS 'Changes the retention policy of audit.settings (null leaves a setting as it is; 0, or '''' for the archive, turns it off) and records the change as an audit.settings_changed event. Returns the policy.';

-- FUNCTION create_partitions(integer)

CREATE FUNCTION audit.create_partitions(months_ahead integer DEFAULT 2) RETURNS SETOF text
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

-- COMMENT FUNCTION create_partitions(months_ahead integer)

COMMENT ON FUNCTION audit.create_partitions(months_ahead integer) IS 'Creates the monthly partitions of audit.audit_logs from this month to months_ahead months ahead (UTC).';

-- FUNCTION current_context()

CREATE FUNCTION audit.current_context() RETURNS jsonb
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
  select case when s <> '' and current_setting('audit.context_marker', true) = to_jsonb(now())::text || s
              then s::jsonb end
    from (select current_setting('audit.context', true) as s) as setting
$$;

-- COMMENT FUNCTION current_context()

COMMENT ON FUNCTION audit.current_context() IS 'The audit context of the current transaction, or null (also when the setting was not made in this transaction).';

-- FUNCTION disable_tracking(regclass)

CREATE FUNCTION audit.disable_tracking(target regclass) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  recorded jsonb;
begin
  if target is null then
    raise exception 'audit-logs: disable_tracking needs a table, got null' using errcode = '22004';
  end if;
  recorded := (select t.options from audit.capture_triggers t where t.relid = target
                order by t.name = 'audit_capture_insert' desc limit 1);
  if not audit.drop_capture(target) then
    return false;
  end if;
  perform audit.record_schema_change('ddl.tracking_disabled', coalesce(recorded ->> 'target_type', target::text),
                                     jsonb_build_object('options', recorded));
  return true;
end
$$;

-- COMMENT FUNCTION disable_tracking(target regclass)

COMMENT ON FUNCTION audit.disable_tracking(target regclass) IS 'Stops recording changes of a table (and its partitions). Idempotent: returns false when it was not tracked. Its history stays in audit.audit_logs.';

-- FUNCTION drop_archived_month(integer, bigint, text, text)

CREATE FUNCTION audit.drop_archived_month(month integer, expected_rows bigint, archive text, manifest_sha256 text) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

-- COMMENT FUNCTION drop_archived_month(month integer, expected_rows bigint, archive text, manifest_sha256 text)

COMMENT ON FUNCTION audit.drop_archived_month(month integer, expected_rows bigint, archive text, manifest_sha256 text) IS 'Drops the partition of a month whose archive was verified (by the caller: audit-logs archive --then-drop), if it still holds exactly the archived rows, all sealed; records it in audit.dropped_partitions and as an audit.partition_archived event.';

-- FUNCTION drop_capture(regclass)

CREATE FUNCTION audit.drop_capture(target regclass) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  capture_function regprocedure;
  trigger record;
  was_tracked boolean := false;
begin
  for capture_function in
    select distinct t.function_id::regprocedure from audit.capture_triggers t
     where t.relid = target or t.relid in (select relid from pg_partition_tree(target))
  loop
    -- Its triggers wherever they are: on a partition since detached, they must stop recording
    -- under this table.
    for trigger in
      select t.name, t.relid::regclass as rel,
             t.relid = target or t.relid in (select relid from pg_partition_tree(target)) as own
        from audit.capture_triggers t where t.function_id = capture_function
    loop
      if not trigger.own then
        raise notice 'audit-logs: dropped trigger % on %, no longer part of %', trigger.name, trigger.rel, target;
      end if;
      execute format('drop trigger %I on %s', trigger.name, trigger.rel);
    end loop;
    -- Whatever else calls it (a trigger under another name) is not the package's.
    execute format('drop function %s cascade', capture_function);
    was_tracked := true;
  end loop;
  return was_tracked;
end
$$;

-- COMMENT FUNCTION drop_capture(target regclass)

COMMENT ON FUNCTION audit.drop_capture(target regclass) IS 'Drops the capture triggers and function of a table (and its partitions), recording nothing.';

-- FUNCTION drop_expired_partitions(integer)

CREATE FUNCTION audit.drop_expired_partitions(retention_months integer) RETURNS text[]
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $_$
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
$_$;

-- COMMENT FUNCTION drop_expired_partitions(retention_months integer)

COMMENT ON FUNCTION audit.drop_expired_partitions(retention_months integer) IS 'Drops the monthly partitions whose month ended more than retention_months months ago (whole partitions, no row-by-row delete), recording each in audit.dropped_partitions and as an audit.partition_dropped event.';

-- FUNCTION enable_tracking(regclass, text[], boolean, boolean)

CREATE FUNCTION audit.enable_tracking(target regclass, exclude_columns text[] DEFAULT NULL::text[], skip_unchanged boolean DEFAULT NULL::boolean, require_context boolean DEFAULT NULL::boolean) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  rel record;
  all_columns text[];
  unknown_columns text[];
  options jsonb;
  audit_owner name;
  recorded jsonb := (select t.options from audit.capture_triggers t
                      where t.relid = target and t.name = 'audit_capture_insert');
  choices constant text[] := array['exclude_columns', 'skip_unchanged', 'require_context'];
begin
  if target is null then
    raise exception 'audit-logs: enable_tracking needs a table, got null' using errcode = '22004';
  end if;
  exclude_columns := coalesce(exclude_columns, audit.kept_exclusions(target, recorded));
  skip_unchanged := coalesce(skip_unchanged, (recorded ->> 'skip_unchanged')::boolean, true);
  require_context := coalesce(require_context, (recorded ->> 'require_context')::boolean, false);
  select c.relkind, c.relispartition, n.nspname, c.relname into rel
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
   where c.oid = target;
  if rel.relkind not in ('r', 'p') then
    raise exception 'audit-logs: cannot track % because it is a %; only tables can be tracked', target,
      case rel.relkind when 'v' then 'view' when 'm' then 'materialized view' when 'f' then 'foreign table'
                       when 'S' then 'sequence' when 'i' then 'index' else 'relation of kind ' || rel.relkind::text end
      using errcode = 'AL002', hint = 'Track the table the view reads from.';
  end if;
  if rel.relispartition then
    raise exception 'audit-logs: cannot track % because it is a partition of %', target, pg_partition_root(target)
      using errcode = 'AL002', hint = format('Track the partitioned table: select audit.enable_tracking(%L);', pg_partition_root(target)::text);
  end if;
  if rel.nspname = 'audit' or rel.nspname like 'pg\_%' or rel.nspname = 'information_schema' then
    raise exception 'audit-logs: cannot track % because it belongs to the % schema', target, rel.nspname
      using errcode = 'AL005';
  end if;

  options := audit.capture_options(target, format('%I.%I', rel.nspname, rel.relname), exclude_columns,
                                   skip_unchanged, require_context);
  if options -> 'primary_key' = '[]' then
    raise exception 'audit-logs: cannot track % because it has no primary key', target
      using errcode = 'AL001',
            hint = format('Add one (alter table %s add primary key (...)) and enable tracking again.', target);
  end if;
  all_columns := array(select jsonb_array_elements_text(options -> 'columns'));
  unknown_columns := array(select jsonb_array_elements_text(options -> 'exclude_columns') except select unnest(all_columns) order by 1);
  if cardinality(unknown_columns) > 0 then
    raise exception 'audit-logs: cannot exclude % from %: no such column', array_to_string(unknown_columns, ', '), target
      using errcode = 'AL003', hint = format('The columns of %s are: %s.', target, array_to_string(all_columns, ', '));
  end if;
  if (options -> 'exclude_columns') ?| array(select jsonb_array_elements_text(options -> 'primary_key')) then
    raise exception 'audit-logs: cannot exclude % from %: it is part of the primary key, which identifies every entry',
      array_to_string(array(select jsonb_array_elements_text(options -> 'exclude_columns')
                            intersect select jsonb_array_elements_text(options -> 'primary_key')), ', '), target
      using errcode = 'AL003';
  end if;

  -- Only the audit log's owner (the role that migrated) and its members install capture.
  select pg_get_userbyid(c.relowner) into audit_owner from pg_class c where c.oid = 'audit.audit_logs'::regclass;
  if not pg_has_role(current_user, audit_owner, 'member') then
    raise exception 'audit-logs: role % cannot enable tracking: only the owner of audit.audit_logs (%) or its members can',
      current_user, audit_owner
      using errcode = '42501', hint = 'Enable tracking as the role that ran the audit-logs migrations.';
  end if;

  -- Enabling again refreshes: same name, new code, new trigger arguments.
  perform audit.install_capture(target, options);
  if recorded is not null and exists (select from unnest(choices) k where options -> k is distinct from recorded -> k) then
    perform audit.record_schema_change('ddl.tracking_changed', options ->> 'target_type',
      jsonb_build_object('before', (select jsonb_object_agg(k, recorded -> k) from unnest(choices) k),
                         'after', (select jsonb_object_agg(k, options -> k) from unnest(choices) k)));
  end if;
  return options;
end
$$;

-- COMMENT FUNCTION enable_tracking(target regclass, exclude_columns text[], skip_unchanged boolean, require_context boolean)

COMMENT ON FUNCTION audit.enable_tracking(target regclass, exclude_columns text[], skip_unchanged boolean, require_context boolean) IS 'Records every INSERT, UPDATE, DELETE and TRUNCATE of a table in audit.audit_logs. Options: exclude_columns (never stored, e.g. password_hash), skip_unchanged (default true: updates that change nothing are not recorded), require_context (default false: when true, a write with no audit context fails with AL006); an option passed as null keeps what the table has when it is tracked already. Idempotent; run it again after altering the table to refresh, or to repair its triggers. Errors: AL001 no primary key, AL002 not a table, AL003 bad excluded column, AL005 audit-logs'' own table, AL014 a trigger of the table''s own has a capture trigger''s name.';

-- FUNCTION event_context(jsonb)

CREATE FUNCTION audit.event_context(given jsonb) RETURNS jsonb
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
  select nullif(jsonb_strip_nulls(
           coalesce(base, '{}') || coalesce(own, '{}')
           || jsonb_build_object('metadata', nullif(coalesce(base -> 'metadata', '{}') || coalesce(own -> 'metadata', '{}'), '{}'))),
         '{}')
    from (select audit.current_context() as base, audit.normalize_context(given) as own) as contexts
$$;

-- COMMENT FUNCTION event_context(given jsonb)

COMMENT ON FUNCTION audit.event_context(given jsonb) IS 'The context an event is recorded with: the given context''s keys over the transaction''s audit.context.';

-- FUNCTION field(text)

CREATE FUNCTION audit.field(value text) RETURNS bytea
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
  select case when value is null then '\x00'::pg_catalog.bytea
              else '\x01'::pg_catalog.bytea operator(pg_catalog.||)
                   pg_catalog.int4send(pg_catalog.octet_length(pg_catalog.convert_to(value, 'UTF8')))
                   operator(pg_catalog.||) pg_catalog.convert_to(value, 'UTF8') end
$$;

-- COMMENT FUNCTION field(value text)

COMMENT ON FUNCTION audit.field(value text) IS 'Canonical encoding of one value in a row digest: 0x00 for null, else 0x01, the byte length (int4) and the UTF-8 bytes.';

-- FUNCTION follow_schema_changes()

CREATE FUNCTION audit.follow_schema_changes() RETURNS event_trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  changed record;
  recorded jsonb;
  tracked_name text;
  now_name text;
  now_columns jsonb;
  now_types jsonb;
  parent record;
  regenerated boolean;
  problems text[];
  attached jsonb;
  detached jsonb;
begin
  if audit.in_package_ddl() then
    return;
  end if;
  for changed in
    select s.root, min(s.command_tag) as command_tag,
           array_agg(distinct s.rel::text) filter (where s.rel <> s.root) as relations,
           bool_or(s.command_tag = 'CREATE TABLE' and s.rel <> s.root) as created_partition,
           bool_or(s.relkind = 'p') as partitioned
      from (select c.rel, coalesce(pg_partition_root(c.rel), c.rel) as root, c.command_tag, r.relkind
              from (select case when d.classid = 'pg_trigger'::regclass
                                then (select tgrelid from pg_trigger where oid = d.objid)
                                else d.objid end::regclass as rel,
                           d.command_tag
                      from pg_event_trigger_ddl_commands() d
                     where d.classid in ('pg_class'::regclass, 'pg_trigger'::regclass)
                       and d.object_type in ('table', 'table column', 'trigger')) as c
              join pg_class r on r.oid = c.rel
             where r.relkind in ('r', 'p')) as s
     group by s.root
     order by bool_or(s.relkind = 'p') desc, s.root
  loop
    begin
      select t.options into recorded from audit.capture_triggers t where t.relid = changed.root
       order by t.name = 'audit_capture_insert' desc limit 1;

      if recorded is null then
        -- Not tracked: a table that now inherits from a tracked one is worth an entry there.
        for parent in
          select t.options ->> 'target_type' as target_type
            from pg_inherits i
            join pg_class ch on ch.oid = i.inhrelid
            join audit.capture_triggers t on t.relid = i.inhparent and t.name = 'audit_capture_insert'
           where i.inhrelid = changed.root and not ch.relispartition
             and not exists (select from audit.audit_logs e
                              where e.target_id is null and e.target_type = t.options ->> 'target_type'
                                and e.action = 'ddl.child_table' and e.metadata ->> 'child' = changed.root::text)
        loop
          perform audit.record_schema_change('ddl.child_table', parent.target_type,
            jsonb_build_object('command', changed.command_tag, 'child', changed.root::text,
                               'hint', 'Its rows are not recorded: track it too (select audit.enable_tracking(...)).'));
        end loop;
        continue;
      end if;

      now_name := (select format('%I.%I', n.nspname, c.relname) from pg_class c
                     join pg_namespace n on n.oid = c.relnamespace where c.oid = changed.root);
      now_columns := (select to_jsonb(array(select attname::text from pg_attribute
                                             where attrelid = changed.root and attnum > 0 and not attisdropped
                                             order by attnum)));
      now_types := audit.column_types(changed.root);
      attached := to_jsonb(array(
        select pt.relid::regclass::text from pg_partition_tree(changed.root) pt
         where pt.isleaf and pt.relid <> changed.root
           and not exists (select from audit.capture_triggers t where t.relid = pt.relid)));
      detached := to_jsonb(array(
        select distinct t.relid::regclass::text from audit.capture_triggers t
         where t.function_id = (select f.function_id from audit.capture_triggers f where f.relid = changed.root limit 1)
           and t.relid <> changed.root and t.relid not in (select relid from pg_partition_tree(changed.root))));
      regenerated := audit.refresh_capture(changed.root);
      tracked_name := (select t.options ->> 'target_type' from audit.capture_triggers t
                        where t.relid = changed.root limit 1);
      problems := (select t.capture_problems from audit.tracked_tables t where t.target_type = tracked_name);
      -- A rename alone is recorded by install_capture (ddl.rename).
      continue when recorded ->> 'target_type' <> now_name and recorded -> 'columns' = now_columns
                    and recorded -> 'column_types' = now_types and changed.relations is null
                    and coalesce(cardinality(problems), 0) = 0;
      perform audit.record_schema_change(
        case when changed.created_partition then 'ddl.create_partition' else 'ddl.alter_table' end,
        coalesce(tracked_name, recorded ->> 'target_type'),
        jsonb_build_object(
          'command', changed.command_tag,
          'relations', to_jsonb(changed.relations),
          'columns_added', nullif(to_jsonb(array(select jsonb_array_elements_text(now_columns)
                                                 except select jsonb_array_elements_text(recorded -> 'columns'))), '[]'),
          'columns_removed', nullif(to_jsonb(array(select jsonb_array_elements_text(recorded -> 'columns')
                                                   except select jsonb_array_elements_text(now_columns))), '[]'),
          'column_types', case when recorded -> 'column_types' <> now_types and recorded -> 'columns' = now_columns
                               then jsonb_build_object('before', recorded -> 'column_types', 'after', now_types) end,
          'partitions_attached', nullif(attached, '[]'),
          'partitions_detached', nullif(detached, '[]'),
          'capture_regenerated', regenerated,
          'capture_problems', nullif(to_jsonb(problems), '[]')));
    exception when others then
      raise warning 'audit-logs: capture of % could not follow this change: %', changed.root, sqlerrm
        using hint = format('Enable tracking again: select audit.enable_tracking(%L);', changed.root::text);
    end;
  end loop;
end
$$;

-- COMMENT FUNCTION follow_schema_changes()

COMMENT ON FUNCTION audit.follow_schema_changes() IS 'Event trigger (audit_capture_ddl): regenerates capture of tracked tables whose columns, key or partitions changed.';

-- FUNCTION give_function(regprocedure, text)

CREATE FUNCTION audit.give_function(fn regprocedure, new_owner text) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
begin
  if (select rolsuper from pg_roles where rolname = current_user) then
    execute format('alter function %s owner to %I', fn, new_owner);
  else
    execute format('grant create on schema audit to %I', new_owner);
    execute format('alter function %s owner to %I', fn, new_owner);
    execute format('revoke create on schema audit from %I', new_owner);
  end if;
end
$$;

-- COMMENT FUNCTION give_function(fn regprocedure, new_owner text)

COMMENT ON FUNCTION audit.give_function(fn regprocedure, new_owner text) IS 'Makes a package role the owner of a function of the audit schema (CREATE on the schema granted only for the change).';

-- FUNCTION hmac_sha256(bytea, bytea)

CREATE FUNCTION audit.hmac_sha256(key bytea, message bytea) RETURNS bytea
    LANGUAGE plpgsql IMMUTABLE STRICT
    SET search_path TO ''
    AS $$
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

-- COMMENT FUNCTION hmac_sha256(key bytea, message bytea)

COMMENT ON FUNCTION audit.hmac_sha256(key bytea, message bytea) IS 'HMAC-SHA256 of message under key (RFC 2104).';

-- FUNCTION in_maintenance()

CREATE FUNCTION audit.in_maintenance() RETURNS boolean
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
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
  return stack ~ 'PL/pgSQL function audit\.(redact|redact_subject|anonymize_due|move_default_rows|drop_expired_partitions)\(';
end
$$;

-- COMMENT FUNCTION in_maintenance()

COMMENT ON FUNCTION audit.in_maintenance() IS 'True only inside audit-logs'' maintenance functions (setting audit.maintenance, the audit owner as current_user, and a maintenance function on the call stack): what lets them change rows of the append-only log.';

-- FUNCTION in_package_ddl()

CREATE FUNCTION audit.in_package_ddl() RETURNS boolean
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
declare
  stack text;
begin
  get diagnostics stack = pg_context;
  return stack ~ '(^|\n)PL/pgSQL function audit\.(drop_capture|install_capture)\(';
end
$$;

-- FUNCTION install_capture(regclass, jsonb)

CREATE FUNCTION audit.install_capture(target regclass, options jsonb) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  function_name text;
  capture_function regprocedure;
  rel regclass;
  -- Usable when this role may give functions to it (a superuser, or a member); else capture
  -- runs as this role, said loudly below and in audit.tracked_tables.
  writer boolean := exists (select from pg_roles where rolname = 'audit_writer')
                    and ((select rolsuper from pg_roles where rolname = current_user)
                         or pg_has_role(current_user, 'audit_writer', 'member'));
  event text;
  recorded_name text := (select t.options ->> 'target_type' from audit.capture_triggers t
                          where t.relid = target order by t.name = 'audit_capture_insert' desc limit 1);
begin
  options := options || jsonb_build_object('serialization', audit.capture_serialization(target),
                                           'long_keys', audit.key_may_be_long(target));
  perform audit.drop_capture(target);
  function_name := audit.capture_function_name(target, options ->> 'target_type');
  execute audit.capture_function_sql(function_name,
    options || jsonb_build_object('relation_ids',
                 (select jsonb_agg(r.relid::bigint)
                    from (select target::oid as relid
                          union select relid from pg_partition_tree(target) where isleaf) r)));
  capture_function := format('audit.%I()', function_name)::regprocedure;
  execute format('revoke all on function %s from public', capture_function);
  execute format('comment on function %s is %L', capture_function,
                 format('Records changes of %s in audit.audit_logs (generated by audit.enable_tracking).', options ->> 'target_type'));

  for rel in
    select target
    union all
    select relid from pg_partition_tree(target) where relid <> target and isleaf
  loop
    foreach event in array array['insert', 'update', 'delete', 'truncate'] loop
      if exists (select from pg_trigger where tgrelid = rel and tgname = 'audit_capture_' || event) then
        raise exception 'audit-logs: cannot track %: it already has a trigger named audit_capture_% of its own', rel, event
          using errcode = 'AL014', hint = format('Rename it: alter trigger audit_capture_%s on %s rename to ...;', event, rel);
      end if;
    end loop;
    execute format('create trigger audit_capture_insert after insert on %s referencing new table as new_rows '
                   'for each statement execute function audit.%I(%L)', rel, function_name, options);
    execute format('create trigger audit_capture_update after update on %s referencing old table as old_rows '
                   'new table as new_rows for each statement execute function audit.%I(%L)', rel, function_name, options);
    execute format('create trigger audit_capture_delete after delete on %s referencing old table as old_rows '
                   'for each statement execute function audit.%I(%L)', rel, function_name, options);
    execute format('create trigger audit_capture_truncate before truncate on %s '
                   'for each statement execute function audit.%I(%L)', rel, function_name, options);
    if writer then
      -- What capture reads: the rows a TRUNCATE removes.
      begin
        execute format('grant select on %s to audit_writer', rel);
      exception when insufficient_privilege then
        raise exception 'audit-logs: cannot track %: % may not grant SELECT on it to audit_writer, which records the rows a TRUNCATE removes',
          rel, current_user
          using errcode = '42501', hint = format('Enable tracking as the owner of %s or a superuser, or first: grant select on %s to audit_writer;', rel, rel);
      end;
    end if;
  end loop;

  if writer then
    perform audit.give_function(capture_function, 'audit_writer');
  else
    raise warning 'audit-logs: capture of % runs as %, not as audit_writer (no such role, or % is not a member of it)',
      options ->> 'target_type', current_user, current_user
      using hint = format('As a superuser: create role audit_writer nologin bypassrls; create role audit_sandbox nologin; '
                          'grant audit_writer, audit_sandbox to %I; then enable tracking again.', current_user);
  end if;

  -- Renamed (or moved to another schema) since capture was generated: entries so far are under
  -- the old name, from now on under the new one; the rename entry links them.
  if recorded_name is distinct from options ->> 'target_type' and recorded_name is not null then
    perform audit.record_schema_change('ddl.rename', options ->> 'target_type',
                                       jsonb_build_object('renamed_from', recorded_name));
  end if;
end
$$;

-- COMMENT FUNCTION install_capture(target regclass, options jsonb)

COMMENT ON FUNCTION audit.install_capture(target regclass, options jsonb) IS 'Generates the capture function of a table for these options (target_type included), owned by audit_writer, and attaches its triggers.';

-- FUNCTION json_mentions(text, jsonb, text[])

CREATE FUNCTION audit.json_mentions(name text, value jsonb, terms text[]) RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path TO ''
    AS $_$
  with recursive walk(path, value) as (
    select name, value where value is not null
    union all
    select w.path || s.step, s.value
      from walk w
     cross join lateral (
       select case when e.key ~ '^[A-Za-z_][A-Za-z0-9_]*$' then '.' || e.key
                   else '[' || to_jsonb(e.key)::text || ']' end, e.value
         from jsonb_each(case when jsonb_typeof(w.value) = 'object' then w.value else '{}' end) e
       union all
       select '[' || (a.n - 1) || ']', a.value
         from jsonb_array_elements(case when jsonb_typeof(w.value) = 'array' then w.value else '[]' end)
              with ordinality as a(value, n)
     ) as s(step, value)
  )
  select array(select path from walk where audit.mentions(value, terms) order by path)
$_$;

-- COMMENT FUNCTION json_mentions(name text, value jsonb, terms text[])

COMMENT ON FUNCTION audit.json_mentions(name text, value jsonb, terms text[]) IS 'The paths (name.key[0]...) of the strings and numbers of a JSON value that mention the terms.';

-- FUNCTION jsonb_changed_keys(jsonb, jsonb)

CREATE FUNCTION audit.jsonb_changed_keys(old_row jsonb, new_row jsonb) RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path TO ''
    AS $$
  select coalesce(array_agg(o.key order by o.key), '{}')
  from jsonb_each(old_row) o
  where new_row -> o.key is distinct from o.value
$$;

-- COMMENT FUNCTION jsonb_changed_keys(old_row jsonb, new_row jsonb)

COMMENT ON FUNCTION audit.jsonb_changed_keys(old_row jsonb, new_row jsonb) IS 'The keys whose values differ between two rows of the same table (as jsonb), sorted.';

-- FUNCTION jsonb_changed_values(jsonb, jsonb)

CREATE FUNCTION audit.jsonb_changed_values(old_row jsonb, new_row jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path TO ''
    AS $$
  select coalesce(jsonb_object_agg(o.key, o.value), '{}')
  from jsonb_each(old_row) o
  where new_row -> o.key is distinct from o.value
$$;

-- COMMENT FUNCTION jsonb_changed_values(old_row jsonb, new_row jsonb)

COMMENT ON FUNCTION audit.jsonb_changed_values(old_row jsonb, new_row jsonb) IS 'The old values of the keys whose values differ between two rows of the same table (as jsonb).';

-- FUNCTION kept_exclusions(regclass, jsonb)

CREATE FUNCTION audit.kept_exclusions(target regclass, recorded jsonb) RETURNS text[]
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
  select array(select jsonb_array_elements_text(recorded -> 'exclude_columns')
               intersect
               select attname::text from pg_attribute where attrelid = target and attnum > 0 and not attisdropped
               order by 1)
$$;

-- COMMENT FUNCTION kept_exclusions(target regclass, recorded jsonb)

COMMENT ON FUNCTION audit.kept_exclusions(target regclass, recorded jsonb) IS 'The excluded columns of recorded tracking options that the table still has.';

-- FUNCTION key_expression(text, text[])

CREATE FUNCTION audit.key_expression(row_var text, key_columns text[]) RETURNS text
    LANGUAGE sql IMMUTABLE
    SET search_path TO ''
    AS $$
  select case
    when cardinality(key_columns) = 1 then
      format('%s operator(pg_catalog.->>) %L', row_var, key_columns[1])
    else
      format('pg_catalog.jsonb_build_array(%s)::pg_catalog.text',
             (select string_agg(format('%s operator(pg_catalog.->) %L', row_var, k), ', ' order by i)
              from unnest(key_columns) with ordinality as u(k, i)))
  end
$$;

-- COMMENT FUNCTION key_expression(row_var text, key_columns text[])

COMMENT ON FUNCTION audit.key_expression(row_var text, key_columns text[]) IS 'SQL text of the target_id expression for a jsonb row variable (used by the capture generator).';

-- FUNCTION key_may_be_long(regclass)

CREATE FUNCTION audit.key_may_be_long(target regclass) RETURNS boolean
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
  select coalesce(sum(case when a.atttypid in ('int2'::regtype, 'int4'::regtype, 'int8'::regtype, 'uuid'::regtype,
                                                'date'::regtype, 'timestamp'::regtype, 'timestamptz'::regtype,
                                                'bool'::regtype, 'oid'::regtype, 'inet'::regtype,
                                                'time'::regtype, 'timetz'::regtype) then 50
                           when a.atttypid in ('varchar'::regtype, 'bpchar'::regtype) and a.atttypmod > 4
                             then (a.atttypmod - 4) * 6 + 2
                           else 100000 end), 0) + 2 > 1024
    from pg_index i
    cross join unnest(i.indkey) as k(attnum)
    join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
   where i.indrelid = target and i.indisprimary
$$;

-- COMMENT FUNCTION key_may_be_long(target regclass)

COMMENT ON FUNCTION audit.key_may_be_long(target regclass) IS 'Whether the primary key of the table can exceed 1024 bytes as target_id text (then capture stores it through audit.stored_key).';

-- TABLE audit_logs

CREATE TABLE audit.audit_logs (
    id bigint NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    txid bigint DEFAULT txid_current() NOT NULL,
    action text NOT NULL,
    target_type text COLLATE pg_catalog."C",
    target_id text COLLATE pg_catalog."C",
    old_target_id text COLLATE pg_catalog."C",
    old_values jsonb,
    new_values jsonb,
    changed_fields text[],
    actor_id text COLLATE pg_catalog."C",
    actor_type text,
    actor_email text,
    ip_address inet,
    user_agent text,
    request_id text,
    metadata jsonb
)
PARTITION BY RANGE (created_at);

-- COMMENT TABLE audit_logs

COMMENT ON TABLE audit.audit_logs IS 'Every recorded change: row changes captured by triggers (action INSERT, UPDATE, DELETE, TRUNCATE) and application events (dotted actions such as user.login). Partitioned by month on created_at.';

-- COMMENT COLUMN audit_logs.id

COMMENT ON COLUMN audit.audit_logs.id IS 'Identity, increasing in insertion order; the tie-breaker for entries of one transaction.';

-- COMMENT COLUMN audit_logs.created_at

COMMENT ON COLUMN audit.audit_logs.created_at IS 'Transaction time (now()): every entry of one transaction has the same created_at.';

-- COMMENT COLUMN audit_logs.txid

COMMENT ON COLUMN audit.audit_logs.txid IS 'The writing transaction (txid_current()); groups the entries of one transaction.';

-- COMMENT COLUMN audit_logs.action

COMMENT ON COLUMN audit.audit_logs.action IS 'INSERT, UPDATE, DELETE or TRUNCATE for row changes; a dotted name such as user.login for events.';

-- COMMENT COLUMN audit_logs.target_type

COMMENT ON COLUMN audit.audit_logs.target_type IS 'For row changes the table as schema.table (quoted as in SQL where needed); for events any type name.';

-- COMMENT COLUMN audit_logs.target_id

COMMENT ON COLUMN audit.audit_logs.target_id IS 'The primary key as text; a composite key as a JSON array such as [1, "a"].';

-- COMMENT COLUMN audit_logs.old_target_id

COMMENT ON COLUMN audit.audit_logs.old_target_id IS 'Set only when an UPDATE changed the primary key: the key the row had before.';

-- COMMENT COLUMN audit_logs.old_values

COMMENT ON COLUMN audit.audit_logs.old_values IS 'UPDATE: old values of the changed columns only. DELETE and TRUNCATE: the whole row.';

-- COMMENT COLUMN audit_logs.new_values

COMMENT ON COLUMN audit.audit_logs.new_values IS 'INSERT and UPDATE: the whole new row (excluded columns are never stored).';

-- COMMENT COLUMN audit_logs.changed_fields

COMMENT ON COLUMN audit.audit_logs.changed_fields IS 'UPDATE: the columns whose value changed, in table order (excluded columns are named, never valued).';

-- COMMENT COLUMN audit_logs.actor_id

COMMENT ON COLUMN audit.audit_logs.actor_id IS 'Who made the change: the actor_id of the transaction''s audit.context.';

-- COMMENT COLUMN audit_logs.actor_type

COMMENT ON COLUMN audit.audit_logs.actor_type IS 'The kind of actor: user, system, api_key, moderator, migration or any other string.';

-- COMMENT COLUMN audit_logs.actor_email

COMMENT ON COLUMN audit.audit_logs.actor_email IS 'The actor''s e-mail address, if given.';

-- COMMENT COLUMN audit_logs.ip_address

COMMENT ON COLUMN audit.audit_logs.ip_address IS 'The client address the change came from, if given.';

-- COMMENT COLUMN audit_logs.user_agent

COMMENT ON COLUMN audit.audit_logs.user_agent IS 'The client''s user agent, if given.';

-- COMMENT COLUMN audit_logs.request_id

COMMENT ON COLUMN audit.audit_logs.request_id IS 'The request that made the change, if given.';

-- COMMENT COLUMN audit_logs.metadata

COMMENT ON COLUMN audit.audit_logs.metadata IS 'The rest of the context (reason, migration_name, free-form metadata) or event details.';

-- FUNCTION log_event(text, text, text, jsonb, jsonb)

CREATE FUNCTION audit.log_event(action text, target_type text DEFAULT NULL::text, target_id text DEFAULT NULL::text, metadata jsonb DEFAULT NULL::jsonb, context jsonb DEFAULT NULL::jsonb) RETURNS audit.audit_logs
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  ctx jsonb := audit.event_context(context);
  c audit.context_columns := jsonb_populate_record(null::audit.context_columns, ctx);
  merged jsonb;
  entry audit.audit_logs;
begin
  perform audit.check_event(action, target_type, target_id, metadata);
  merged := coalesce(ctx - '{actor_id,actor_type,actor_email,ip_address,user_agent,request_id,metadata}'::text[], '{}')
            || coalesce(ctx -> 'metadata', '{}') || coalesce(metadata, '{}');
  insert into audit.audit_logs (action, target_type, target_id, metadata,
                                actor_id, actor_type, actor_email, ip_address, user_agent, request_id)
  values (action, target_type, target_id, nullif(merged, '{}'),
          c.actor_id, c.actor_type, c.actor_email, c.ip_address, c.user_agent, c.request_id)
  returning * into entry;
  return entry;
end
$$;

-- COMMENT FUNCTION log_event(action text, target_type text, target_id text, metadata jsonb, context jsonb)

COMMENT ON FUNCTION audit.log_event(action text, target_type text, target_id text, metadata jsonb, context jsonb) IS 'Records an application event (action such as user.login) about a target, attributed to context (an audit context object) over the transaction''s audit.context. Returns the entry. Use it in FROM (select * from audit.log_event(...)) so it runs once. Errors: AL007 bad event, AL004 bad context.';

-- FUNCTION log_events(jsonb)

CREATE FUNCTION audit.log_events(events jsonb) RETURNS SETOF audit.audit_logs
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  event jsonb;
begin
  if events is null or jsonb_typeof(events) <> 'array' then
    raise exception 'audit-logs: log_events needs a JSON array of events' using errcode = 'AL007';
  end if;
  if jsonb_array_length(events) > 10000 then
    raise exception 'audit-logs: % events in one call; the limit is 10000', jsonb_array_length(events)
      using errcode = 'AL007', hint = 'Record them in batches of at most 10000.';
  end if;
  for event in select value from jsonb_array_elements(events) loop
    if jsonb_typeof(event) <> 'object' then
      raise exception 'audit-logs: each event must be an object, got %', jsonb_typeof(event) using errcode = 'AL007';
    end if;
    perform audit.check_event(event ->> 'action', event ->> 'target_type', event ->> 'target_id', event -> 'metadata');
  end loop;
  -- One statement for all of them; ids (and so the returned order) follow the order given.
  return query
  with given as (
    select e.ordinality,
           e.value as event,
           audit.event_context(e.value -> 'context') as ctx
      from jsonb_array_elements(events) with ordinality as e
  ),
  inserted as (
    insert into audit.audit_logs (action, target_type, target_id, metadata,
                                  actor_id, actor_type, actor_email, ip_address, user_agent, request_id)
    select g.event ->> 'action', g.event ->> 'target_type', g.event ->> 'target_id',
           nullif(coalesce(g.ctx - '{actor_id,actor_type,actor_email,ip_address,user_agent,request_id,metadata}'::text[], '{}')
                  || coalesce(g.ctx -> 'metadata', '{}') || coalesce(g.event -> 'metadata', '{}'), '{}'),
           c.actor_id, c.actor_type, c.actor_email, c.ip_address, c.user_agent, c.request_id
      from given g
      cross join lateral jsonb_populate_record(null::audit.context_columns, g.ctx) as c
     order by g.ordinality
    returning *
  )
  select * from inserted order by id;
end
$$;

-- COMMENT FUNCTION log_events(events jsonb)

COMMENT ON FUNCTION audit.log_events(events jsonb) IS 'Records many application events in one statement: a JSON array of {action, target_type, target_id, metadata, context}. Returns the entries in the order given. All or none: one bad event fails the call (AL007).';

-- FUNCTION maintain(integer, integer, integer)

CREATE FUNCTION audit.maintain(months_ahead integer DEFAULT NULL::integer, retention_months integer DEFAULT NULL::integer, anonymize_after_days integer DEFAULT NULL::integer) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $_$
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
$_$;

-- COMMENT FUNCTION maintain(months_ahead integer, retention_months integer, anonymize_after_days integer)

COMMENT ON FUNCTION audit.maintain(months_ahead integer, retention_months integer, anonymize_after_days integer) IS 'Runs the retention policy of audit.settings (arguments override it for this run; 0 turns a step off): moves default-partition rows into monthly partitions, creates the coming months'' partitions, seals, drops expired partitions (or, with an archive destination, names them for maintain() of the package to archive and drop) and anonymizes due rows. Every step is recorded as an audit event. Safe from cron or pg_cron.';

-- FUNCTION may_mention(audit.audit_logs, text, text[])

CREATE FUNCTION audit.may_mention(l audit.audit_logs, actor_id text, patterns text[]) RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
  select l.actor_id operator(pg_catalog.=) may_mention.actor_id
      or pg_catalog.lower(pg_catalog.concat_ws(' ', l.actor_email, pg_catalog.host(l.ip_address), l.user_agent,
                                               l.target_id, l.old_target_id, l.old_values, l.new_values, l.metadata)
                          collate pg_catalog."default")
         operator(pg_catalog.~~) any (may_mention.patterns)
$$;

-- COMMENT FUNCTION may_mention(l audit.audit_logs, actor_id text, patterns text[])

COMMENT ON FUNCTION audit.may_mention(l audit.audit_logs, actor_id text, patterns text[]) IS 'The first pass before V17 (lower-casing in the database''s collation), kept for libraries of before V17; audit.may_mention(l, actor_id, ascii_patterns, patterns) supersedes it.';

-- FUNCTION may_mention(audit.audit_logs, text, text[], text[])

CREATE FUNCTION audit.may_mention(l audit.audit_logs, actor_id text, ascii_patterns text[], patterns text[]) RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
  select l.actor_id operator(pg_catalog.=) may_mention.actor_id
      or case when may_mention.ascii_patterns is not null
              then pg_catalog.lower(pg_catalog.concat_ws(' ', l.actor_email, pg_catalog.host(l.ip_address), l.user_agent,
                                                         l.target_id, l.old_target_id, l.old_values, l.new_values, l.metadata)
                                    collate pg_catalog."C")
                   operator(pg_catalog.~~) any (may_mention.ascii_patterns)
              else pg_catalog.lower(pg_catalog.concat_ws(' ', l.actor_email, pg_catalog.host(l.ip_address), l.user_agent,
                                                         l.target_id, l.old_target_id, l.old_values, l.new_values, l.metadata)
                                    collate pg_catalog."default")
                   operator(pg_catalog.~~) any (may_mention.patterns) end
$$;

-- COMMENT FUNCTION may_mention(l audit.audit_logs, actor_id text, ascii_patterns text[], patterns text[])

COMMENT ON FUNCTION audit.may_mention(l audit.audit_logs, actor_id text, ascii_patterns text[], patterns text[]) IS 'True for every entry that may mention the subject (its actor id, or a term within its personal columns): with audit.subject_ascii_patterns when they are not null, on the text lower-cased in ASCII, else with audit.subject_patterns on the text lower-cased in the database''s collation; audit.subject_paths says which entries do, and where.';

-- FUNCTION mentions(jsonb, text[])

CREATE FUNCTION audit.mentions(value jsonb, terms text[]) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path TO ''
    AS $$
  select case jsonb_typeof(value)
           when 'string' then audit.mentions(value #>> '{}', terms)
           when 'number' then value::text = any(terms)
           else false end
$$;

-- COMMENT FUNCTION mentions(value jsonb, terms text[])

COMMENT ON FUNCTION audit.mentions(value jsonb, terms text[]) IS 'True when a JSON string mentions one of the terms, or a JSON number equals one.';

-- FUNCTION mentions(text, text[])

CREATE FUNCTION audit.mentions(value text, terms text[]) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path TO ''
    AS $$
  -- Compared in the database's collation, as the terms were lower-cased (target ids are "C").
  select value is not null and value not like 'hmac:%'
         and exists (select from unnest(terms) t
                      where strpos(lower(value collate "default"), t) > 0
                        and lower(value collate "default") ~ audit.term_pattern(t))
$$;

-- COMMENT FUNCTION mentions(value text, terms text[])

COMMENT ON FUNCTION audit.mentions(value text, terms text[]) IS 'True when a text (not a pseudonym) holds one of the terms (lower-cased) as a whole word, ignoring case.';

-- FUNCTION move_default_rows()

CREATE FUNCTION audit.move_default_rows() RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

-- COMMENT FUNCTION move_default_rows()

COMMENT ON FUNCTION audit.move_default_rows() IS 'Moves rows of audit.audit_logs_default into their monthly partitions, unchanged (ids, txids, digests). Returns how many.';

-- FUNCTION normalize_context(jsonb)

CREATE FUNCTION audit.normalize_context(context jsonb) RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO ''
    AS $$
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
    if octet_length(context ->> key) > 1024 then
      raise exception 'audit-logs: audit context key "%" is % bytes; the limit is 1024', key, octet_length(context ->> key)
        using errcode = 'AL004', hint = 'Keep identifiers short; record long details as metadata or with an event.';
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

-- COMMENT FUNCTION normalize_context(context jsonb)

COMMENT ON FUNCTION audit.normalize_context(context jsonb) IS 'Checks an audit context (an object of strings of at most 1024 bytes; ip_address an IP address; metadata an object; at most 8 KiB in all) and drops null keys.';

-- FUNCTION personal_digest(audit.audit_logs)

CREATE FUNCTION audit.personal_digest(l audit.audit_logs) RETURNS bytea
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
  select pg_catalog.sha256(
    audit.field(l.target_id) operator(pg_catalog.||) audit.field(l.old_target_id)
    operator(pg_catalog.||) audit.field(l.old_values::pg_catalog.text)
    operator(pg_catalog.||) audit.field(l.new_values::pg_catalog.text)
    operator(pg_catalog.||) audit.field(l.actor_id) operator(pg_catalog.||) audit.field(l.actor_email)
    operator(pg_catalog.||) audit.field(l.ip_address::pg_catalog.text)
    operator(pg_catalog.||) audit.field(l.user_agent)
    operator(pg_catalog.||) audit.field(l.metadata::pg_catalog.text))
$$;

-- COMMENT FUNCTION personal_digest(l audit.audit_logs)

COMMENT ON FUNCTION audit.personal_digest(l audit.audit_logs) IS 'sha256 over the columns that may hold personal data (target ids, values, actor columns, metadata): what a redaction or anonymization replaces, recording the digest before and after in audit.redactions.';

-- FUNCTION protect_partitions()

CREATE FUNCTION audit.protect_partitions() RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

-- COMMENT FUNCTION protect_partitions()

COMMENT ON FUNCTION audit.protect_partitions() IS 'Adds the append-only TRUNCATE trigger to every partition of audit.audit_logs that lacks it. Returns how many.';

-- FUNCTION record_drops()

CREATE FUNCTION audit.record_drops() RETURNS event_trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  dropped record;
  target_type text;
begin
  if audit.in_package_ddl() then
    return;
  end if;
  for dropped in
    select o.object_type, o.address_names[1] as schema_name, o.address_names[2] as table_name,
           o.address_names[3] as trigger_name, o.original
      from pg_event_trigger_dropped_objects() o
     where o.object_type = 'trigger'
       and o.address_names[3] in ('audit_capture_insert', 'audit_capture_update', 'audit_capture_delete',
                                  'audit_capture_truncate')
  loop
    begin
      if not exists (select from pg_event_trigger_dropped_objects() t
                      where t.object_type = 'table' and t.address_names[1] = dropped.schema_name
                        and t.address_names[2] = dropped.table_name) then
        -- Only the trigger: the table is still there (a partition's capture is its root's).
        target_type := coalesce(
          (select t.options ->> 'target_type' from audit.capture_triggers t
            where t.relid = coalesce(pg_partition_root(to_regclass(format('%I.%I', dropped.schema_name, dropped.table_name))),
                                     to_regclass(format('%I.%I', dropped.schema_name, dropped.table_name)))
            limit 1),
          format('%I.%I', dropped.schema_name, dropped.table_name));
        perform audit.record_schema_change('ddl.drop_trigger', target_type,
          jsonb_build_object('command', tg_tag, 'trigger', dropped.trigger_name,
                             'relation', format('%I.%I', dropped.schema_name, dropped.table_name)));
      elsif dropped.trigger_name = 'audit_capture_insert' then
        perform audit.record_schema_change('ddl.drop_table', format('%I.%I', dropped.schema_name, dropped.table_name),
          jsonb_build_object('command', tg_tag, 'relation', format('%I.%I', dropped.schema_name, dropped.table_name)));
      end if;
    exception when others then
      raise warning 'audit-logs: could not record the drop of % on %.%: %', dropped.trigger_name,
        dropped.schema_name, dropped.table_name, sqlerrm;
    end;
  end loop;
end
$$;

-- COMMENT FUNCTION record_drops()

COMMENT ON FUNCTION audit.record_drops() IS 'Event trigger (audit_capture_drop): records capture triggers and tracked tables dropped (ddl.drop_trigger, ddl.drop_table).';

-- FUNCTION record_history(text, jsonb, bigint, bigint, text[])

CREATE FUNCTION audit.record_history(of_type text, of_id jsonb, older_than bigint, max_rows bigint, other_types text[]) RETURNS SETOF audit.audit_logs
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    SET plan_cache_mode TO 'force_generic_plan'
    AS $$
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

-- COMMENT FUNCTION record_history(of_type text, of_id jsonb, older_than bigint, max_rows bigint, other_types text[])

COMMENT ON FUNCTION audit.record_history(of_type text, of_id jsonb, older_than bigint, max_rows bigint, other_types text[]) IS 'The entries of one record, newest first: under every name its table had, with its key or (for the UPDATE that changed it) its old key, and events about it (target_type one of other_types). What history() reads.';

-- FUNCTION record_key(jsonb)

CREATE FUNCTION audit.record_key(id jsonb) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
  select audit.stored_key(case when pg_catalog.jsonb_typeof(id) operator(pg_catalog.=) 'array'
                               then id::pg_catalog.text
                               else id operator(pg_catalog.#>>) '{}' end)
$$;

-- COMMENT FUNCTION record_key(id jsonb)

COMMENT ON FUNCTION audit.record_key(id jsonb) IS 'A record key (a JSON value; an array for a composite key) as audit_logs.target_id stores it.';

-- FUNCTION record_rewrite()

CREATE FUNCTION audit.record_rewrite() RETURNS event_trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  rel regclass := pg_event_trigger_table_rewrite_oid();
  reason integer := pg_event_trigger_table_rewrite_reason();
  target_type text;
begin
  target_type := (select t.options ->> 'target_type' from audit.capture_triggers t
                   where t.relid = coalesce(pg_partition_root(rel), rel) limit 1);
  if target_type is null then
    return;
  end if;
  perform audit.record_schema_change('ddl.rewrite', target_type, jsonb_build_object(
    'command', tg_tag,
    'relation', case when rel <> coalesce(pg_partition_root(rel), rel) then rel::text end,
    'reasons', to_jsonb(array_remove(array[
      case when reason & 1 <> 0 then 'persistence changed' end,
      case when reason & 2 <> 0 then 'a default computed for every row' end,
      case when reason & 4 <> 0 then 'a column rewritten (type changed)' end,
      case when reason & 8 <> 0 then 'access method changed' end], null)),
    'hint', 'Rows were rewritten without row entries: values recorded before this entry may differ from the rows after it.'));
exception when others then
  raise warning 'audit-logs: could not record the rewrite of %: %', rel, sqlerrm;
end
$$;

-- COMMENT FUNCTION record_rewrite()

COMMENT ON FUNCTION audit.record_rewrite() IS 'Event trigger (audit_capture_rewrite): records a tracked table rewritten in place (ddl.rewrite).';

-- FUNCTION record_schema_change(text, text, jsonb)

CREATE FUNCTION audit.record_schema_change(action text, target_type text, details jsonb) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  ctx jsonb := audit.current_context();
  c audit.context_columns := jsonb_populate_record(null::audit.context_columns, ctx);
  entry_id bigint;
begin
  insert into audit.audit_logs (action, target_type, metadata,
                                actor_id, actor_type, actor_email, ip_address, user_agent, request_id)
  values (action, target_type,
          coalesce(ctx - '{actor_id,actor_type,actor_email,ip_address,user_agent,request_id,metadata}'::text[], '{}')
          || coalesce(ctx -> 'metadata', '{}') || jsonb_strip_nulls(details)
          || jsonb_build_object('db_role', session_user::text),
          c.actor_id, c.actor_type, c.actor_email, c.ip_address, c.user_agent, c.request_id)
  returning id into entry_id;
  if action = 'ddl.rename' then
    insert into audit.table_renames values (entry_id, details ->> 'renamed_from', target_type);
  end if;
  return entry_id;
end
$$;

-- COMMENT FUNCTION record_schema_change(action text, target_type text, details jsonb)

COMMENT ON FUNCTION audit.record_schema_change(action text, target_type text, details jsonb) IS 'Records a ddl.* entry about a tracked table (the event triggers and enable/disable_tracking call it).';

-- FUNCTION redact(bytea, text, text, text, text[], text)

CREATE FUNCTION audit.redact(key bytea, actor_id text DEFAULT NULL::text, target_type text DEFAULT NULL::text, target_id text DEFAULT NULL::text, fields text[] DEFAULT NULL::text[], reason text DEFAULT NULL::text) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

-- COMMENT FUNCTION redact(key bytea, actor_id text, target_type text, target_id text, fields text[], reason text)

COMMENT ON FUNCTION audit.redact(key bytea, actor_id text, target_type text, target_id text, fields text[], reason text) IS 'GDPR erasure: replaces the personal values of one data subject (actor_id, or target_type and target_id) with keyed hashes ("hmac:" and HMAC-SHA256 hex under key, which is never stored; IP addresses become null). fields: columns (default: actor columns for an actor, old_values and new_values for a target), values.KEY, metadata.KEY. Records an audit.redaction event and the digests in audit.redactions; verify still passes. Errors: AL009.';

-- FUNCTION redact_subject(bytea, text, text, text, text[], text)

CREATE FUNCTION audit.redact_subject(key bytea, actor_id text DEFAULT NULL::text, email text DEFAULT NULL::text, ip_address text DEFAULT NULL::text, "values" text[] DEFAULT NULL::text[], reason text DEFAULT NULL::text) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  terms text[];
  ascii_patterns text[];
  patterns text[];
  event_id bigint;
  n bigint;
  found jsonb;
begin
  if key is null or octet_length(key) < 16 then
    raise exception 'audit-logs: the redaction key must be at least 16 bytes'
      using errcode = 'AL009', hint = 'Use a random secret kept outside the database; the same key gives the same pseudonyms.';
  end if;
  terms := audit.subject_terms(redact_subject.actor_id, email, ip_address, "values");
  ascii_patterns := audit.subject_ascii_patterns(terms);
  patterns := audit.subject_patterns(terms);

  -- The event names the subject by a pseudonym of its description only.
  select l.id into event_id from audit.log_event('audit.redaction', 'audit.audit_logs', null,
    jsonb_strip_nulls(jsonb_build_object(
      'subject', audit.redacted_text(key, concat_ws(' ', redact_subject.actor_id, array_to_string(terms, ' '))),
      'by', 'subject', 'reason', reason))) l;
  perform set_config('audit.maintenance', 'on', true);
  with matched as (
    select l.id, l.txid, l.created_at, l.action, l.target_type, l.target_id,
           audit.personal_digest(l) as digest, m.paths
      from audit.audit_logs l
     cross join lateral (select audit.subject_paths(l, redact_subject.actor_id, terms) as paths) m
     where audit.may_mention(l, redact_subject.actor_id, ascii_patterns, patterns)
       and cardinality(m.paths) > 0
       and l.id <> event_id
  ), changed as (
    update audit.audit_logs l set
      target_id = case when 'target_id' = any(m.paths) then audit.redacted_text(key, l.target_id) else l.target_id end,
      old_target_id = case when 'old_target_id' = any(m.paths) then audit.redacted_text(key, l.old_target_id) else l.old_target_id end,
      old_values = audit.redacted_mentions(key, l.old_values, terms),
      new_values = audit.redacted_mentions(key, l.new_values, terms),
      actor_id = case when 'actor_id' = any(m.paths) then audit.redacted_text(key, l.actor_id) else l.actor_id end,
      actor_email = case when 'actor_email' = any(m.paths) then audit.redacted_text(key, l.actor_email) else l.actor_email end,
      ip_address = case when 'ip_address' = any(m.paths) then null else l.ip_address end,
      user_agent = case when 'user_agent' = any(m.paths) then audit.redacted_text(key, l.user_agent) else l.user_agent end,
      metadata = audit.redacted_mentions(key, l.metadata, terms)
      from matched m
     where l.id = m.id and l.created_at = m.created_at
    returning l.id, audit.personal_digest(l) as digest
  ), recorded as (
    insert into audit.redactions (row_id, row_txid, kind, event_id, original_digest, redacted_digest)
    select m.id, m.txid, 'redaction', event_id, m.digest, c.digest
      from matched m join changed c on c.id = m.id
     where m.digest <> c.digest
    returning row_id
  )
  select count(*), coalesce(jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
           'id', m.id, 'createdAt', m.created_at, 'action', m.action, 'targetType', m.target_type,
           'targetId', m.target_id, 'paths', to_jsonb(m.paths))) order by m.id), '[]')
    into n, found
    from matched m join recorded r on r.row_id = m.id;
  perform set_config('audit.maintenance', '', true);
  return jsonb_build_object('rowsRedacted', n, 'eventId', event_id,
    'fields', to_jsonb(array(select distinct substring(p from '^[a-z_]+')
                               from jsonb_array_elements(found) e, jsonb_array_elements_text(e.value -> 'paths') p
                              order by 1)),
    'entries', found);
end
$$;

-- COMMENT FUNCTION redact_subject(key bytea, actor_id text, email text, ip_address text, "values" text[], reason text)

COMMENT ON FUNCTION audit.redact_subject(key bytea, actor_id text, email text, ip_address text, "values" text[], reason text) IS 'GDPR erasure of a data subject wherever the log mentions them (audit.subject_paths: actor columns, IP, user agent, target ids, values and metadata at any depth): each mentioning value becomes its keyed hash ("hmac:" and HMAC-SHA256 hex under key, never stored; an IP address becomes null). Records an audit.redaction event and the digests in audit.redactions; verify still passes. Returns the entries changed with their paths. Errors: AL009 (key), AL015 (subject).';

-- FUNCTION redacted_json(bytea, jsonb, boolean, text[])

CREATE FUNCTION audit.redacted_json(key bytea, value jsonb, whole boolean, keys text[]) RETURNS jsonb
    LANGUAGE sql IMMUTABLE
    SET search_path TO ''
    AS $_$
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
$_$;

-- COMMENT FUNCTION redacted_json(key bytea, value jsonb, whole boolean, keys text[])

COMMENT ON FUNCTION audit.redacted_json(key bytea, value jsonb, whole boolean, keys text[]) IS 'A JSON object with its values (all when whole, else the keys given) replaced by their pseudonyms.';

-- FUNCTION redacted_mentions(bytea, jsonb, text[])

CREATE FUNCTION audit.redacted_mentions(secret bytea, doc jsonb, terms text[]) RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO ''
    AS $$
begin
  case jsonb_typeof(doc)
    when 'object' then
      return (select coalesce(jsonb_object_agg(e.key, audit.redacted_mentions(secret, e.value, terms)), '{}')
                from jsonb_each(doc) e);
    when 'array' then
      return (select coalesce(jsonb_agg(audit.redacted_mentions(secret, a.value, terms) order by a.n), '[]')
                from jsonb_array_elements(doc) with ordinality as a(value, n));
    else
      if audit.mentions(doc, terms) then
        return to_jsonb(audit.redacted_text(secret, doc #>> '{}'));
      end if;
      return doc;
  end case;
end
$$;

-- COMMENT FUNCTION redacted_mentions(secret bytea, doc jsonb, terms text[])

COMMENT ON FUNCTION audit.redacted_mentions(secret bytea, doc jsonb, terms text[]) IS 'A JSON value with every string and number that mentions the terms (audit.mentions) replaced by its pseudonym; the rest as it was.';

-- FUNCTION redacted_text(bytea, text)

CREATE FUNCTION audit.redacted_text(key bytea, value text) RETURNS text
    LANGUAGE sql IMMUTABLE
    SET search_path TO ''
    AS $$
  select case when value is null or value like 'hmac:%' then value
              else 'hmac:' || encode(audit.hmac_sha256(key, convert_to(value, 'UTF8')), 'hex') end
$$;

-- COMMENT FUNCTION redacted_text(key bytea, value text)

COMMENT ON FUNCTION audit.redacted_text(key bytea, value text) IS 'The pseudonym of a value: "hmac:" and its HMAC-SHA256 hex (already redacted values are kept).';

-- FUNCTION refresh_capture(regclass)

CREATE FUNCTION audit.refresh_capture(rel regclass) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  root regclass := coalesce(pg_partition_root(rel), rel);
  recorded jsonb;
  capture_function oid;
  current_options jsonb;
begin
  select t.options, t.function_id
    into recorded, capture_function
    from audit.capture_triggers t where t.relid = root
   order by t.name = 'audit_capture_insert' desc limit 1;
  if recorded is null then
    return false;
  end if;
  current_options := audit.capture_options(
    root, (select format('%I.%I', n.nspname, c.relname) from pg_class c join pg_namespace n on n.oid = c.relnamespace
            where c.oid = root),
    audit.kept_exclusions(root, recorded),
    (recorded ->> 'skip_unchanged')::boolean, (recorded ->> 'require_context')::boolean);
  if current_options -> 'primary_key' = '[]' then
    raise warning 'audit-logs: % has no primary key any more: its capture was left as it was', root
      using hint = format('Add one and enable tracking again: select audit.enable_tracking(%L);', root::text);
    return false;
  end if;
  if current_options = recorded - 'serialization' - 'long_keys'
     and recorded ->> 'serialization' = audit.capture_serialization(root)
     and (recorded ->> 'long_keys')::boolean = audit.key_may_be_long(root)
     and not exists (select from pg_partition_tree(root) pt
                      where pt.isleaf and pt.relid <> root
                        and not exists (select from audit.capture_triggers t where t.relid = pt.relid))
     and not exists (select from audit.capture_triggers t
                      where t.function_id = capture_function
                        and t.relid <> root and t.relid not in (select relid from pg_partition_tree(root))) then
    return false;
  end if;
  perform audit.install_capture(root, current_options);
  return true;
end
$$;

-- COMMENT FUNCTION refresh_capture(rel regclass)

COMMENT ON FUNCTION audit.refresh_capture(rel regclass) IS 'Regenerates capture of the tracked table rel is (or is a partition of) if the table changed since; returns whether it did.';

-- FUNCTION refuse_change()

CREATE FUNCTION audit.refuse_change() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
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

-- COMMENT FUNCTION refuse_change()

COMMENT ON FUNCTION audit.refuse_change() IS 'Trigger: refuses UPDATE, DELETE and TRUNCATE of the append-only audit tables (AL008) outside the maintenance functions.';

-- FUNCTION row_diff(jsonb, jsonb, text[], text[])

CREATE FUNCTION audit.row_diff(old_row jsonb, new_row jsonb, known_columns text[], excluded_columns text[], OUT changed_fields text[], OUT old_values jsonb) RETURNS record
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    AS $$
declare
  col pg_catalog.text;
  unchanged pg_catalog.text[] := excluded_columns;
begin
  if (old_row operator(pg_catalog.-) known_columns) operator(pg_catalog.<>) '{}'::pg_catalog.jsonb then
    -- Columns were added after tracking was enabled: diff everything, generically.
    changed_fields := audit.jsonb_changed_keys(old_row, new_row);
    old_values := audit.jsonb_changed_values(old_row operator(pg_catalog.-) excluded_columns,
                                             new_row operator(pg_catalog.-) excluded_columns);
    return;
  end if;
  changed_fields := '{}';
  foreach col in array known_columns loop
    -- Both rows have the same columns, so a missing key (a dropped column) is missing in both.
    if coalesce((old_row operator(pg_catalog.->) col) operator(pg_catalog.=) (new_row operator(pg_catalog.->) col), true) then
      unchanged := unchanged operator(pg_catalog.||) col;
    else
      changed_fields := changed_fields operator(pg_catalog.||) col;
    end if;
  end loop;
  old_values := old_row operator(pg_catalog.-) unchanged;
end
$$;

-- COMMENT FUNCTION row_diff(old_row jsonb, new_row jsonb, known_columns text[], excluded_columns text[], OUT changed_fields text[], OUT old_values jsonb)

COMMENT ON FUNCTION audit.row_diff(old_row jsonb, new_row jsonb, known_columns text[], excluded_columns text[], OUT changed_fields text[], OUT old_values jsonb) IS 'The changed columns (in table order; excluded ones named) and their old values (excluded ones never) of an updated row.';

-- FUNCTION row_digest(audit.audit_logs, bytea)

CREATE FUNCTION audit.row_digest(l audit.audit_logs, personal bytea) RETURNS bytea
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
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

-- COMMENT FUNCTION row_digest(l audit.audit_logs, personal bytea)

COMMENT ON FUNCTION audit.row_digest(l audit.audit_logs, personal bytea) IS 'The digest of an audit row (canonical serialization v1, see V4__protect.sql); personal, when given, stands for the personal digest (the original one of a redacted row).';

-- FUNCTION row_json_expression(text, text)

CREATE FUNCTION audit.row_json_expression(row_var text, serialization text) RETURNS text
    LANGUAGE sql IMMUTABLE
    SET search_path TO ''
    AS $_$
  select case serialization
    when 'plain' then format('pg_catalog.to_jsonb(%s)', row_var)
    when 'gated' then format('case when (select exists (select from pg_catalog.pg_cast j '
                             'where j.castsource operator(pg_catalog.>=) 16384::pg_catalog.oid '
                             'and j.casttarget operator(pg_catalog.=) 114::pg_catalog.oid)) '
                             'then audit.sandboxed_jsonb(%1$s) else pg_catalog.to_jsonb(%1$s) end', row_var)
    else format('audit.sandboxed_jsonb(%s)', row_var)
  end
$_$;

-- COMMENT FUNCTION row_json_expression(row_var text, serialization text)

COMMENT ON FUNCTION audit.row_json_expression(row_var text, serialization text) IS 'SQL text of the jsonb of a row in capture, for a serialization: plain, gated or sandboxed.';

-- FUNCTION sandboxed_jsonb(record)

CREATE FUNCTION audit.sandboxed_jsonb(r record) RETURNS jsonb
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    AS $$
begin
  return pg_catalog.to_jsonb(r);
exception when untranslatable_character then
  return pg_catalog.regexp_replace(pg_catalog.row_to_json(r)::pg_catalog.text,
                                   '(?<!\\)((?:\\\\)*)\\u0000', '\1\\\\u0000', 'g')::pg_catalog.jsonb;
end
$$;

-- COMMENT FUNCTION sandboxed_jsonb(r record)

COMMENT ON FUNCTION audit.sandboxed_jsonb(r record) IS 'to_jsonb(row) as audit_sandbox, a role with no rights (what capture uses for rows whose types could have a cast to json); an escaped NUL (\u0000) in a json value, which jsonb cannot hold, is kept as the six characters \u0000.';

-- FUNCTION seal()

CREATE FUNCTION audit.seal(OUT seal_id bigint, OUT row_count bigint, OUT from_txid bigint, OUT to_txid bigint, OUT head text) RETURNS record
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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
  -- One seal at a time ("audit:seal"); writers take no lock of ours. Any role can take the same
  -- advisory lock: the wait is bounded, and the error names who holds it.
  perform audit.advisory_xact_lock(6878582169062960236, 'seal', interval '60 seconds');
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

-- COMMENT FUNCTION seal(OUT seal_id bigint, OUT row_count bigint, OUT from_txid bigint, OUT to_txid bigint, OUT head text)

COMMENT ON FUNCTION audit.seal(OUT seal_id bigint, OUT row_count bigint, OUT from_txid bigint, OUT to_txid bigint, OUT head text) IS 'Chains every committed, not yet sealed row of audit.audit_logs into a new seal and returns it (seal_id null and row_count 0 when there was nothing to seal). Never blocks writers; waits at most 60 s for another seal (AL011 names who holds its lock). Run it often (pg_cron: every minute); verify with `audit-logs verify`.';

-- FUNCTION seal_boundary()

CREATE FUNCTION audit.seal_boundary() RETURNS bigint
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
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

-- COMMENT FUNCTION seal_boundary()

COMMENT ON FUNCTION audit.seal_boundary() IS 'The txid below which every transaction of this database has ended: where audit.seal() stops.';

-- FUNCTION serializes_plainly(regclass)

CREATE FUNCTION audit.serializes_plainly(target regclass) RETURNS boolean
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
  with recursive reached(type_id, depth) as (
    select a.atttypid, 0 from pg_attribute a where a.attrelid = target and a.attnum > 0 and not a.attisdropped
    union
    select case when t.typtype = 'd' then t.typbasetype
                when t.typcategory = 'A' and t.typelem <> 0 then t.typelem
                else a.atttypid end,
           r.depth + 1
      from reached r
      join pg_type t on t.oid = r.type_id
      left join pg_attribute a on t.typtype = 'c' and a.attrelid = t.typrelid and a.attnum > 0 and not a.attisdropped
     where r.depth < 32
       and (t.typtype = 'd' or (t.typcategory = 'A' and t.typelem <> 0) or t.typtype = 'c')
  )
  select not exists (
    select from reached r join pg_type t on t.oid = r.type_id
     where t.typtype not in ('d', 'c') and not (t.typcategory = 'A' and t.typelem <> 0)
       and (r.type_id >= 16384 or r.type_id = 'json'::regtype))
$$;

-- COMMENT FUNCTION serializes_plainly(target regclass)

COMMENT ON FUNCTION audit.serializes_plainly(target regclass) IS 'True when every column type of the table (through domains, arrays and composites) was created by initdb and is not json: to_jsonb of its rows then calls no user-defined cast and cannot fail.';

-- FUNCTION set_checked_context(text)

CREATE FUNCTION audit.set_checked_context(context text) RETURNS text
    LANGUAGE plpgsql
    AS $$
declare
  marker pg_catalog.text;
begin
  marker := pg_catalog.set_config('audit.context_marker',
    case when context operator(pg_catalog.<>) ''
         then pg_catalog.to_jsonb(pg_catalog.now())::pg_catalog.text operator(pg_catalog.||) context
         else '' end, true);
  return pg_catalog.set_config('audit.context', coalesce(context, ''), true);
end
$$;

-- COMMENT FUNCTION set_checked_context(context text)

COMMENT ON FUNCTION audit.set_checked_context(context text) IS 'Sets the audit context of the current transaction from a context the caller checked (the Node and Rust layers), as JSON text; an empty text clears it. SQL users call audit.set_context, which checks it.';

-- FUNCTION set_context(jsonb)

CREATE FUNCTION audit.set_context(context jsonb) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  normalized jsonb := audit.normalize_context(context);
  written text;
begin
  written := set_config('audit.context_marker',
                        coalesce(to_jsonb(now())::text || normalized::text, ''), true);
  written := set_config('audit.context', coalesce(normalized::text, ''), true);
  return normalized;
end
$$;

-- COMMENT FUNCTION set_context(context jsonb)

COMMENT ON FUNCTION audit.set_context(context jsonb) IS 'Attributes the rest of the current transaction: keys actor_id, actor_type, actor_email, ip_address, user_agent, request_id, reason, migration_name and metadata (an object). Transaction-local, so it is safe behind transaction-mode poolers. Example: select audit.set_context(''{"actor_type": "migration", "migration_name": "0042_backfill"}'');';

-- FUNCTION state_at(text, jsonb, timestamp with time zone)

CREATE FUNCTION audit.state_at(of_type text, of_id jsonb, at timestamp with time zone) RETURNS TABLE(state jsonb, entry_id bigint)
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    SET plan_cache_mode TO 'force_generic_plan'
    AS $$
#variable_conflict use_column
begin
  return query select s.state, s.entry_id from audit.state_of(of_type, audit.record_key(of_id), at) as s;
end
$$;

-- COMMENT FUNCTION state_at(of_type text, of_id jsonb, at timestamp with time zone)

COMMENT ON FUNCTION audit.state_at(of_type text, of_id jsonb, at timestamp with time zone) IS 'The state of one record at one time, and the entry it comes from: what stateAt() reads.';

-- FUNCTION state_of(text, text, timestamp with time zone)

CREATE FUNCTION audit.state_of(of_type text, key text, at timestamp with time zone) RETURNS TABLE(state jsonb, entry_id bigint)
    LANGUAGE sql STABLE
    AS $$
  select case when e.action operator(pg_catalog.=) any('{INSERT,UPDATE}'::pg_catalog.text[])
                   and e.target_id operator(pg_catalog.=) key collate "C"
              then e.new_values end,
         e.id
    from audit.target_names(of_type) as n
    cross join lateral (
      (select l.action, l.target_id, l.new_values, l.id from audit.audit_logs as l
        where l.target_id operator(pg_catalog.=) key collate "C"
          and l.target_type operator(pg_catalog.=) n.name and l.created_at operator(pg_catalog.<=) at
          and l.id operator(pg_catalog.>) n.after_id and l.id operator(pg_catalog.<) n.before_id
          and l.action operator(pg_catalog.=) any('{INSERT,UPDATE,DELETE,TRUNCATE}'::pg_catalog.text[])
        order by l.id desc limit 1)
      union all
      (select l.action, l.target_id, l.new_values, l.id from audit.audit_logs as l
        where l.old_target_id operator(pg_catalog.=) key collate "C"
          and l.target_type operator(pg_catalog.=) n.name and l.created_at operator(pg_catalog.<=) at
          and l.id operator(pg_catalog.>) n.after_id and l.id operator(pg_catalog.<) n.before_id
        order by l.id desc limit 1)) as e
   order by e.id desc
   limit 1
$$;

-- COMMENT FUNCTION state_of(of_type text, key text, at timestamp with time zone)

COMMENT ON FUNCTION audit.state_of(of_type text, key text, at timestamp with time zone) IS 'The state of a record (key as target_id stores it) at a time, and the entry it comes from; no row when there is no such entry. Inlined into audit.state_at and audit.states_at.';

-- FUNCTION states_at(text, jsonb[], timestamp with time zone[])

CREATE FUNCTION audit.states_at(of_type text, ids jsonb[], times timestamp with time zone[]) RETURNS TABLE(state jsonb, entry_id bigint)
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    SET plan_cache_mode TO 'force_generic_plan'
    SET jit TO 'off'
    AS $$
#variable_conflict use_column
begin
  return query
  select s.state, s.entry_id
    from rows from (pg_catalog.unnest(ids), pg_catalog.unnest(times)) with ordinality as p(id, at, n)
    left join lateral audit.state_of(of_type, audit.record_key(p.id), p.at) as s on true
   order by p.n;
end
$$;

-- COMMENT FUNCTION states_at(of_type text, ids jsonb[], times timestamp with time zone[])

COMMENT ON FUNCTION audit.states_at(of_type text, ids jsonb[], times timestamp with time zone[]) IS 'The state of each record (ids) at each time (times), in order: the row after its newest row change at or before then, null if it did not exist then, and the entry it comes from. What statesAt() reads.';

-- FUNCTION stored_key(text)

CREATE FUNCTION audit.stored_key(key text) RETURNS text
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    AS $$
begin
  if pg_catalog.octet_length(key) operator(pg_catalog.<=) 1024 then
    return key;
  end if;
  return 'sha256:' operator(pg_catalog.||) pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(key, 'UTF8')), 'hex');
end
$$;

-- COMMENT FUNCTION stored_key(key text)

COMMENT ON FUNCTION audit.stored_key(key text) IS 'A record key as audit_logs.target_id stores it: itself, or "sha256:" and its hex digest when over 1024 bytes.';

-- FUNCTION subject_ascii_patterns(text[])

CREATE FUNCTION audit.subject_ascii_patterns(terms text[]) RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path TO ''
    AS $$
  select case when count(*) = 0 then '{}'::text[]
              when bool_and(p.kept >= 4) then array_agg(distinct p.pattern) end
    from (
      select '%' || string_agg(case when ascii(s.c) >= 128 or s.c in ('i', 'k') then '_'
                                    when s.c in ('\', '%', '_') then '\' || s.c
                                    else s.c end, '' order by s.n) || '%' as pattern,
             count(*) filter (where ascii(s.c) < 128 and s.c not in ('i', 'k')) as kept
        from unnest(terms) as t(term)
       cross join lateral (values (1, t.term),
                                  (2, substr(to_jsonb(t.term)::text, 2, length(to_jsonb(t.term)::text) - 2))) as f(kind, form)
       cross join lateral regexp_split_to_table(f.form, '') with ordinality as s(c, n)
       group by t.term, f.kind) as p
$$;

-- COMMENT FUNCTION subject_ascii_patterns(terms text[])

COMMENT ON FUNCTION audit.subject_ascii_patterns(terms text[]) IS 'The LIKE patterns of audit.may_mention''s ASCII pass for some terms (as given and as JSON prints them; any character ASCII lower-casing may fold otherwise than the database''s, `_`), or null when a term keeps fewer than four characters (then audit.subject_patterns serve).';

-- FUNCTION subject_paths(audit.audit_logs, text, text[])

CREATE FUNCTION audit.subject_paths(l audit.audit_logs, actor_id text, terms text[]) RETURNS text[]
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path TO ''
    AS $$
  select array_remove(array[
           case when theirs then 'actor_id' end,
           case when l.actor_email is not null and (theirs or audit.mentions(l.actor_email, terms)) then 'actor_email' end,
           case when l.ip_address is not null and (theirs or host(l.ip_address) = any(terms)) then 'ip_address' end,
           case when l.user_agent is not null and (theirs or audit.mentions(l.user_agent, terms)) then 'user_agent' end,
           case when audit.mentions(l.target_id, terms) then 'target_id' end,
           case when audit.mentions(l.old_target_id, terms) then 'old_target_id' end], null)
         || audit.json_mentions('old_values', l.old_values, terms)
         || audit.json_mentions('new_values', l.new_values, terms)
         || audit.json_mentions('metadata', l.metadata, terms)
    from (select l.actor_id = subject_paths.actor_id or audit.mentions(l.actor_email, terms) as theirs) as own
$$;

-- COMMENT FUNCTION subject_paths(l audit.audit_logs, actor_id text, terms text[])

COMMENT ON FUNCTION audit.subject_paths(l audit.audit_logs, actor_id text, terms text[]) IS 'Where an entry mentions a data subject (its actor id, and terms from audit.subject_terms): actor_id, actor_email, ip_address, user_agent, target_id, old_target_id and the paths within old_values, new_values and metadata; empty when it does not. Keep rows with audit.may_mention first: it is the fast pass.';

-- FUNCTION subject_patterns(text[])

CREATE FUNCTION audit.subject_patterns(terms text[]) RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path TO ''
    AS $$
  select array(
    select distinct '%' || replace(replace(replace(form, '\', '\\'), '%', '\%'), '_', '\_') || '%'
      from unnest(terms) as t(term)
     cross join lateral (values (t.term),
                                (substr(to_jsonb(t.term)::text, 2, length(to_jsonb(t.term)::text) - 2))) as f(form))
$$;

-- COMMENT FUNCTION subject_patterns(terms text[])

COMMENT ON FUNCTION audit.subject_patterns(terms text[]) IS 'The LIKE patterns of audit.may_mention for some terms (as given, and as JSON prints them).';

-- FUNCTION subject_terms(text, text, text, text[])

CREATE FUNCTION audit.subject_terms(actor_id text, email text, ip_address text, "values" text[]) RETURNS text[]
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO ''
    AS $$
declare
  terms text[] := '{}';
  address inet;
  term text;
begin
  if actor_id is null and email is null and ip_address is null and coalesce(cardinality("values"), 0) = 0 then
    raise exception 'audit-logs: a data subject needs at least one of an actor id, an e-mail, an IP address or values'
      using errcode = 'AL015';
  end if;
  if actor_id is not null and (actor_id = '' or octet_length(actor_id) > 1024) then
    raise exception 'audit-logs: the subject''s actor id must be 1 to 1024 bytes'
      using errcode = 'AL015';
  end if;
  if ip_address is not null then
    begin
      address := ip_address::inet;
    exception when invalid_text_representation then
      raise exception 'audit-logs: the subject''s IP address % is not an IPv4 or IPv6 address', quote_literal(ip_address)
        using errcode = 'AL015';
    end;
    if address <> host(address)::inet then
      raise exception 'audit-logs: the subject''s IP address % is a network; give one address', quote_literal(ip_address)
        using errcode = 'AL015';
    end if;
    terms := terms || lower(host(address));
  end if;
  if cardinality("values") > 100 then
    raise exception 'audit-logs: a data subject has at most 100 values, got %', cardinality("values")
      using errcode = 'AL015';
  end if;
  foreach term in array array_prepend(email, coalesce("values", '{}')) loop
    continue when term is null;
    -- At least two characters that are not spaces: a single letter is a word of every text.
    if length(btrim(term)) < 2 or octet_length(term) > 1024 then
      raise exception 'audit-logs: the subject''s value % must be 2 to 1024 bytes, not only spaces', quote_literal(term)
        using errcode = 'AL015';
    end if;
    if lower(term) like 'hmac:%' then
      raise exception 'audit-logs: % is a pseudonym, which mentions nobody', quote_literal(term)
        using errcode = 'AL015';
    end if;
    terms := terms || lower(term);
  end loop;
  return array(select distinct t from unnest(terms) t order by t);
end
$$;

-- COMMENT FUNCTION subject_terms(actor_id text, email text, ip_address text, "values" text[])

COMMENT ON FUNCTION audit.subject_terms(actor_id text, email text, ip_address text, "values" text[]) IS 'The terms searched for a data subject (the e-mail, the IP address and the values, lower-cased), after checking them. Errors: AL015.';

-- FUNCTION target_names(text)

CREATE FUNCTION audit.target_names(target_type text) RETURNS TABLE(name text, after_id bigint, before_id bigint)
    LANGUAGE sql STABLE ROWS 2
    AS $$
  with recursive lineage(name, after_id, before_id, previous) as (
    select target_type collate "C", coalesce(r.entry_id, 0), 9223372036854775807::bigint, r.previous
      from (select) as start
      left join lateral (
        select t.entry_id, case when t.renamed_to = target_type then t.renamed_from end as previous
          from audit.table_renames t
         where t.renamed_to = target_type or t.renamed_from = target_type
         order by t.entry_id desc limit 1) as r on true
    union all
    select l.previous, coalesce(r.entry_id, 0), l.after_id, r.previous
      from lineage l
      left join lateral (
        select t.entry_id, case when t.renamed_to = l.previous then t.renamed_from end as previous
          from audit.table_renames t
         where (t.renamed_to = l.previous or t.renamed_from = l.previous) and t.entry_id < l.after_id
         order by t.entry_id desc limit 1) as r on true
     where l.previous is not null
  )
  select name, after_id, before_id from lineage
$$;

-- COMMENT FUNCTION target_names(target_type text)

COMMENT ON FUNCTION audit.target_names(target_type text) IS 'Every name a tracked table (now called target_type) was recorded under, with the entry ids each covers (after_id < id < before_id): what history follows across renames.';

-- FUNCTION term_pattern(text)

CREATE FUNCTION audit.term_pattern(term text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path TO ''
    AS $_$
  select case when term ~ '^[[:alnum:]_]' then '(^|[^[:alnum:]_])' else '' end
         || regexp_replace(term, '([^[:alnum:][:space:]])', '\\\1', 'g')
         || case when term ~ '[[:alnum:]_]$' then '($|[^[:alnum:]_])' else '' end
$_$;

-- COMMENT FUNCTION term_pattern(term text)

COMMENT ON FUNCTION audit.term_pattern(term text) IS 'The regular expression of a term: itself as a whole word (audit.mentions).';

-- TABLE anonymization_watermark

CREATE TABLE audit.anonymization_watermark (
    singleton boolean DEFAULT true NOT NULL,
    anonymized_before timestamp with time zone DEFAULT '-infinity'::timestamp with time zone NOT NULL,
    seen_before_txid bigint DEFAULT 0 NOT NULL,
    fields text[] DEFAULT '{}'::text[] NOT NULL,
    CONSTRAINT anonymization_watermark_singleton_check CHECK (singleton)
);

-- COMMENT TABLE anonymization_watermark

COMMENT ON TABLE audit.anonymization_watermark IS 'How far audit.anonymize_due() has got (one row).';

-- COMMENT COLUMN anonymization_watermark.singleton

COMMENT ON COLUMN audit.anonymization_watermark.singleton IS 'Always true: there is one row.';

-- COMMENT COLUMN anonymization_watermark.anonymized_before

COMMENT ON COLUMN audit.anonymization_watermark.anonymized_before IS 'Every row created before this by a transaction before seen_before_txid has had its fields anonymized.';

-- COMMENT COLUMN anonymization_watermark.seen_before_txid

COMMENT ON COLUMN audit.anonymization_watermark.seen_before_txid IS 'audit.seal_boundary() at the last run: rows of later transactions (a backfill with an old created_at, a transaction open for days) are read again.';

-- COMMENT COLUMN anonymization_watermark.fields

COMMENT ON COLUMN audit.anonymization_watermark.fields IS 'The fields anonymized up to the watermark; asking for another reads every due row once.';

-- TABLE archived_months

CREATE TABLE audit.archived_months (
    month integer NOT NULL,
    archive text NOT NULL,
    manifest_sha256 text NOT NULL,
    row_count bigint NOT NULL,
    first_id bigint,
    last_id bigint,
    archived_at timestamp with time zone DEFAULT now() NOT NULL
);

-- COMMENT TABLE archived_months

COMMENT ON TABLE audit.archived_months IS 'Months dropped from the live log after their archive was verified: where the archive is. Append-only.';

-- COMMENT COLUMN archived_months.month

COMMENT ON COLUMN audit.archived_months.month IS 'The month (UTC) as YYYYMM.';

-- COMMENT COLUMN archived_months.archive

COMMENT ON COLUMN audit.archived_months.archive IS 'The destination it was archived to (file:///dir or s3://bucket/prefix).';

-- COMMENT COLUMN archived_months.manifest_sha256

COMMENT ON COLUMN audit.archived_months.manifest_sha256 IS 'The sha256 of its manifest.json, as verified before the drop.';

-- COMMENT COLUMN archived_months.row_count

COMMENT ON COLUMN audit.archived_months.row_count IS 'Rows it held.';

-- COMMENT COLUMN archived_months.first_id

COMMENT ON COLUMN audit.archived_months.first_id IS 'Its lowest entry id (null for a month dropped before V16: see its manifest).';

-- COMMENT COLUMN archived_months.last_id

COMMENT ON COLUMN audit.archived_months.last_id IS 'Its highest entry id (null for a month dropped before V16: see its manifest).';

-- COMMENT COLUMN archived_months.archived_at

COMMENT ON COLUMN audit.archived_months.archived_at IS 'When it was dropped, its archive verified.';

-- TABLE audit_logs_default

CREATE TABLE audit.audit_logs_default (
    id bigint NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    txid bigint DEFAULT txid_current() NOT NULL,
    action text NOT NULL,
    target_type text COLLATE pg_catalog."C",
    target_id text COLLATE pg_catalog."C",
    old_target_id text COLLATE pg_catalog."C",
    old_values jsonb,
    new_values jsonb,
    changed_fields text[],
    actor_id text COLLATE pg_catalog."C",
    actor_type text,
    actor_email text,
    ip_address inet,
    user_agent text,
    request_id text,
    metadata jsonb
);

-- COMMENT TABLE audit_logs_default

COMMENT ON TABLE audit.audit_logs_default IS 'Catches rows outside every monthly partition so that no insert can fail; maintenance moves them out.';

-- SEQUENCE audit_logs_id_seq

ALTER TABLE audit.audit_logs ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME audit.audit_logs_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

-- VIEW capture_triggers

CREATE VIEW audit.capture_triggers AS
 SELECT t.oid,
    t.tgrelid AS relid,
    (t.tgname)::text AS name,
    t.tgenabled AS enabled,
    t.tgfoid AS function_id,
    (convert_from("substring"(t.tgargs, 1, (length(t.tgargs) - 1)), 'UTF8'::name))::jsonb AS options
   FROM (pg_trigger t
     JOIN pg_proc p ON ((p.oid = t.tgfoid)))
  WHERE ((p.pronamespace = ('audit'::regnamespace)::oid) AND ((p.proname)::text ~~ 'capture %'::text) AND (t.tgname = ANY (ARRAY['audit_capture_insert'::name, 'audit_capture_update'::name, 'audit_capture_delete'::name, 'audit_capture_truncate'::name])));

-- COMMENT VIEW capture_triggers

COMMENT ON VIEW audit.capture_triggers IS 'The capture triggers installed by audit.enable_tracking (on tables and partitions).';

-- COMMENT COLUMN capture_triggers.oid

COMMENT ON COLUMN audit.capture_triggers.oid IS 'The trigger.';

-- COMMENT COLUMN capture_triggers.relid

COMMENT ON COLUMN audit.capture_triggers.relid IS 'The table or partition it is on.';

-- COMMENT COLUMN capture_triggers.name

COMMENT ON COLUMN audit.capture_triggers.name IS 'audit_capture_insert, _update, _delete or _truncate.';

-- COMMENT COLUMN capture_triggers.enabled

COMMENT ON COLUMN audit.capture_triggers.enabled IS 'pg_trigger.tgenabled: O or A fire for the application, D and R do not.';

-- COMMENT COLUMN capture_triggers.function_id

COMMENT ON COLUMN audit.capture_triggers.function_id IS 'The capture function it calls.';

-- COMMENT COLUMN capture_triggers.options

COMMENT ON COLUMN audit.capture_triggers.options IS 'The tracking options (the trigger argument, read as JSON).';

-- TABLE dropped_partitions

CREATE TABLE audit.dropped_partitions (
    month integer NOT NULL,
    partition_name text NOT NULL,
    row_count bigint NOT NULL,
    event_id bigint,
    dropped_at timestamp with time zone DEFAULT now() NOT NULL
);

-- COMMENT TABLE dropped_partitions

COMMENT ON TABLE audit.dropped_partitions IS 'Monthly partitions dropped by retention: their sealed rows are acknowledged as expired by verify. Append-only.';

-- COMMENT COLUMN dropped_partitions.month

COMMENT ON COLUMN audit.dropped_partitions.month IS 'The month (UTC) as YYYYMM.';

-- COMMENT COLUMN dropped_partitions.partition_name

COMMENT ON COLUMN audit.dropped_partitions.partition_name IS 'The partition that was dropped.';

-- COMMENT COLUMN dropped_partitions.row_count

COMMENT ON COLUMN audit.dropped_partitions.row_count IS 'Rows it held.';

-- COMMENT COLUMN dropped_partitions.event_id

COMMENT ON COLUMN audit.dropped_partitions.event_id IS 'The audit event that records the drop.';

-- COMMENT COLUMN dropped_partitions.dropped_at

COMMENT ON COLUMN audit.dropped_partitions.dropped_at IS 'When.';

-- TABLE redactions

CREATE TABLE audit.redactions (
    id bigint NOT NULL,
    row_id bigint NOT NULL,
    row_txid bigint NOT NULL,
    kind text NOT NULL,
    event_id bigint,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    original_digest bytea NOT NULL,
    redacted_digest bytea NOT NULL,
    CONSTRAINT redactions_kind_check CHECK ((kind = ANY (ARRAY['redaction'::text, 'anonymization'::text]))),
    CONSTRAINT redactions_original_digest_check CHECK ((octet_length(original_digest) = 32)),
    CONSTRAINT redactions_redacted_digest_check CHECK ((octet_length(redacted_digest) = 32))
);

-- COMMENT TABLE redactions

COMMENT ON TABLE audit.redactions IS 'Personal values replaced in audit.audit_logs (erasure or anonymization): the personal digest before and after, so that the chain still verifies and the new values are checked too. Append-only.';

-- COMMENT COLUMN redactions.id

COMMENT ON COLUMN audit.redactions.id IS 'Order of the redactions.';

-- COMMENT COLUMN redactions.row_id

COMMENT ON COLUMN audit.redactions.row_id IS 'audit_logs.id of the changed row.';

-- COMMENT COLUMN redactions.row_txid

COMMENT ON COLUMN audit.redactions.row_txid IS 'audit_logs.txid of the changed row (the verifier merges in (txid, id) order).';

-- COMMENT COLUMN redactions.kind

COMMENT ON COLUMN audit.redactions.kind IS 'redaction (audit.redact) or anonymization (audit.maintain).';

-- COMMENT COLUMN redactions.event_id

COMMENT ON COLUMN audit.redactions.event_id IS 'The audit event that records the redaction or the maintenance run.';

-- COMMENT COLUMN redactions.created_at

COMMENT ON COLUMN audit.redactions.created_at IS 'When.';

-- COMMENT COLUMN redactions.original_digest

COMMENT ON COLUMN audit.redactions.original_digest IS 'Personal digest before the change.';

-- COMMENT COLUMN redactions.redacted_digest

COMMENT ON COLUMN audit.redactions.redacted_digest IS 'Personal digest after the change.';

-- SEQUENCE redactions_id_seq

ALTER TABLE audit.redactions ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME audit.redactions_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

-- TABLE refinery_schema_history

CREATE TABLE audit.refinery_schema_history (
    version integer NOT NULL,
    name character varying(255),
    applied_on character varying(255),
    checksum character varying(255)
);

-- TABLE seal_chunks

CREATE TABLE audit.seal_chunks (
    seal_id bigint NOT NULL,
    chunk integer NOT NULL,
    month integer NOT NULL,
    row_count integer NOT NULL,
    head bytea NOT NULL,
    entries bytea NOT NULL,
    CONSTRAINT seal_chunks_check CHECK ((octet_length(entries) = (24 * row_count))),
    CONSTRAINT seal_chunks_head_check CHECK ((octet_length(head) = 32)),
    CONSTRAINT seal_chunks_row_count_check CHECK (((row_count >= 1) AND (row_count <= 10000)))
);

-- COMMENT TABLE seal_chunks

COMMENT ON TABLE audit.seal_chunks IS 'Consecutive rows of one seal and one month (at most 10,000): their head and per-row entries, so that verify names the first row that differs, and a dropped month still verifies through its heads.';

-- COMMENT COLUMN seal_chunks.seal_id

COMMENT ON COLUMN audit.seal_chunks.seal_id IS 'The seal.';

-- COMMENT COLUMN seal_chunks.chunk

COMMENT ON COLUMN audit.seal_chunks.chunk IS 'Position in the seal, from 0.';

-- COMMENT COLUMN seal_chunks.month

COMMENT ON COLUMN audit.seal_chunks.month IS 'The month (UTC) of created_at of its rows, as YYYYMM.';

-- COMMENT COLUMN seal_chunks.row_count

COMMENT ON COLUMN audit.seal_chunks.row_count IS 'Rows in the chunk.';

-- COMMENT COLUMN seal_chunks.head

COMMENT ON COLUMN audit.seal_chunks.head IS 'sha256 over the concatenated row digests, in (txid, id) order.';

-- COMMENT COLUMN seal_chunks.entries

COMMENT ON COLUMN audit.seal_chunks.entries IS 'Per row, in order: int8 txid, int8 id, the first 8 bytes of the row digest (24 bytes each).';

-- TABLE seals

CREATE TABLE audit.seals (
    id bigint NOT NULL,
    sealed_at timestamp with time zone DEFAULT now() NOT NULL,
    from_txid bigint NOT NULL,
    to_txid bigint NOT NULL,
    row_count bigint NOT NULL,
    chunk_count integer NOT NULL,
    previous_head bytea NOT NULL,
    head bytea NOT NULL,
    CONSTRAINT seals_check CHECK ((from_txid < to_txid)),
    CONSTRAINT seals_chunk_count_check CHECK ((chunk_count > 0)),
    CONSTRAINT seals_head_check CHECK ((octet_length(head) = 32)),
    CONSTRAINT seals_row_count_check CHECK ((row_count > 0))
);

-- COMMENT TABLE seals

COMMENT ON TABLE audit.seals IS 'The hash chain over audit.audit_logs: each seal covers the rows with from_txid <= txid < to_txid, in (txid, id) order. Append-only; written by audit.seal().';

-- COMMENT COLUMN seals.id

COMMENT ON COLUMN audit.seals.id IS 'Seal number; the chain follows it.';

-- COMMENT COLUMN seals.sealed_at

COMMENT ON COLUMN audit.seals.sealed_at IS 'When the seal was made.';

-- COMMENT COLUMN seals.from_txid

COMMENT ON COLUMN audit.seals.from_txid IS 'Lowest txid covered: the previous seal''s to_txid (0 for the first).';

-- COMMENT COLUMN seals.to_txid

COMMENT ON COLUMN audit.seals.to_txid IS 'The xmin of the seal''s snapshot: every transaction below it had ended.';

-- COMMENT COLUMN seals.row_count

COMMENT ON COLUMN audit.seals.row_count IS 'Rows covered.';

-- COMMENT COLUMN seals.chunk_count

COMMENT ON COLUMN audit.seals.chunk_count IS 'Chunks (audit.seal_chunks) covered.';

-- COMMENT COLUMN seals.previous_head

COMMENT ON COLUMN audit.seals.previous_head IS 'The head of the previous seal (empty for the first).';

-- COMMENT COLUMN seals.head

COMMENT ON COLUMN audit.seals.head IS 'sha256(''audit-logs:seal:v1'' || previous_head || int8 id || int8 from_txid || int8 to_txid || int8 row_count || for each chunk in order: int4 month || int8 row_count || chunk head). Export its hex to verify against later.';

-- SEQUENCE seals_id_seq

ALTER TABLE audit.seals ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (
    SEQUENCE NAME audit.seals_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

-- TABLE settings

CREATE TABLE audit.settings (
    singleton boolean DEFAULT true NOT NULL,
    months_ahead integer DEFAULT 2 NOT NULL,
    retention_months integer,
    anonymize_after_days integer DEFAULT 90,
    anonymize_fields text[] DEFAULT '{ip_address,user_agent}'::text[] NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    archive_to text,
    archive_lock_mode text,
    archive_lock_days integer,
    CONSTRAINT settings_anonymize_after_days_check CHECK (((anonymize_after_days >= 1) AND (anonymize_after_days <= 36500))),
    CONSTRAINT settings_anonymize_fields_check CHECK ((anonymize_fields <@ '{ip_address,user_agent}'::text[])),
    CONSTRAINT settings_archive_lock_check CHECK ((((archive_lock_mode IS NULL) = (archive_lock_days IS NULL)) AND ((archive_lock_mode IS NULL) OR (archive_to ~~ 's3://%'::text)))),
    CONSTRAINT settings_archive_lock_days_check CHECK (((archive_lock_days >= 1) AND (archive_lock_days <= 36500))),
    CONSTRAINT settings_archive_lock_mode_check CHECK ((archive_lock_mode = ANY (ARRAY['compliance'::text, 'governance'::text]))),
    CONSTRAINT settings_archive_to_check CHECK (((archive_to ~ '^(file:///|s3://)[^[:space:]]+$'::text) AND (octet_length(archive_to) <= 2048))),
    CONSTRAINT settings_months_ahead_check CHECK (((months_ahead >= 0) AND (months_ahead <= 120))),
    CONSTRAINT settings_retention_months_check CHECK (((retention_months >= 1) AND (retention_months <= 1200))),
    CONSTRAINT settings_singleton_check CHECK (singleton)
);

-- COMMENT TABLE settings

COMMENT ON TABLE audit.settings IS 'The retention policy that audit.maintain() applies (one row; change it with audit.configure).';

-- COMMENT COLUMN settings.singleton

COMMENT ON COLUMN audit.settings.singleton IS 'Always true: there is one row.';

-- COMMENT COLUMN settings.months_ahead

COMMENT ON COLUMN audit.settings.months_ahead IS 'Monthly partitions created ahead of the current month.';

-- COMMENT COLUMN settings.retention_months

COMMENT ON COLUMN audit.settings.retention_months IS 'Partitions whose month ended more than this many months ago are dropped; null keeps everything.';

-- COMMENT COLUMN settings.anonymize_after_days

COMMENT ON COLUMN audit.settings.anonymize_after_days IS 'Rows older than this have anonymize_fields anonymized (IP to its /24 or /48 network, other fields null); null never.';

-- COMMENT COLUMN settings.anonymize_fields

COMMENT ON COLUMN audit.settings.anonymize_fields IS 'Columns anonymized: ip_address and/or user_agent.';

-- COMMENT COLUMN settings.updated_at

COMMENT ON COLUMN audit.settings.updated_at IS 'When the policy last changed.';

-- COMMENT COLUMN settings.archive_to

COMMENT ON COLUMN audit.settings.archive_to IS 'Where maintain() archives a month before retention drops it (file:///dir or s3://bucket/prefix); null: retention drops without archiving.';

-- COMMENT COLUMN settings.archive_lock_mode

COMMENT ON COLUMN audit.settings.archive_lock_mode IS 'S3 Object Lock mode of the archived objects (compliance or governance), with archive_lock_days; null: none.';

-- COMMENT COLUMN settings.archive_lock_days

COMMENT ON COLUMN audit.settings.archive_lock_days IS 'Days each archived object is locked from its archiving.';

-- TABLE table_renames

CREATE TABLE audit.table_renames (
    entry_id bigint NOT NULL,
    renamed_from text NOT NULL COLLATE pg_catalog."C",
    renamed_to text NOT NULL COLLATE pg_catalog."C"
);

-- COMMENT TABLE table_renames

COMMENT ON TABLE audit.table_renames IS 'Renames of tracked tables (each is also a ddl.rename entry of audit.audit_logs, entry_id): read by audit.target_names.';

-- COMMENT COLUMN table_renames.entry_id

COMMENT ON COLUMN audit.table_renames.entry_id IS 'The ddl.rename entry of audit.audit_logs.';

-- COMMENT COLUMN table_renames.renamed_from

COMMENT ON COLUMN audit.table_renames.renamed_from IS 'The name (target_type) before.';

-- COMMENT COLUMN table_renames.renamed_to

COMMENT ON COLUMN audit.table_renames.renamed_to IS 'The name (target_type) after.';

-- VIEW tracked_tables

CREATE VIEW audit.tracked_tables AS
 SELECT (n.nspname)::text AS schema_name,
    (c.relname)::text AS table_name,
    (t.options ->> 'target_type'::text) AS target_type,
    ARRAY( SELECT jsonb_array_elements_text((t.options -> 'primary_key'::text)) AS jsonb_array_elements_text) AS primary_key,
    ARRAY( SELECT jsonb_array_elements_text((t.options -> 'exclude_columns'::text)) AS jsonb_array_elements_text) AS excluded_columns,
    ((t.options ->> 'skip_unchanged'::text))::boolean AS skip_unchanged,
    COALESCE(((t.options ->> 'require_context'::text))::boolean, false) AS require_context,
    ((t.function_id)::regprocedure)::text AS capture_function,
    (array_remove((ARRAY[
        CASE
            WHEN ((t.options ->> 'target_type'::text) <> format('%I.%I'::text, n.nspname, c.relname)) THEN
            CASE
                WHEN (EXISTS ( SELECT
                   FROM audit.capture_triggers o
                  WHERE ((o.function_id = t.function_id) AND (o.relid <> c.oid) AND (o.relid = (to_regclass((t.options ->> 'target_type'::text)))::oid)))) THEN format('it was detached from %s, and its writes are still recorded as %s''s'::text, (t.options ->> 'target_type'::text), (t.options ->> 'target_type'::text))
                ELSE 'the table was renamed'::text
            END
            ELSE NULL::text
        END,
        CASE
            WHEN ((t.options -> 'columns'::text) <> COALESCE(( SELECT jsonb_agg(a.attname ORDER BY a.attnum) AS jsonb_agg
               FROM pg_attribute a
              WHERE ((a.attrelid = c.oid) AND (a.attnum > 0) AND (NOT a.attisdropped))), '[]'::jsonb)) THEN 'its columns changed'::text
            ELSE NULL::text
        END,
        CASE
            WHEN ((t.options ? 'column_types'::text) AND ((t.options -> 'column_types'::text) <> audit.column_types((c.oid)::regclass)) AND ((t.options -> 'columns'::text) = COALESCE(( SELECT jsonb_agg(a.attname ORDER BY a.attnum) AS jsonb_agg
               FROM pg_attribute a
              WHERE ((a.attrelid = c.oid) AND (a.attnum > 0) AND (NOT a.attisdropped))), '[]'::jsonb))) THEN 'a column changed type'::text
            ELSE NULL::text
        END,
        CASE
            WHEN ((t.options -> 'primary_key'::text) <> COALESCE(( SELECT jsonb_agg(a.attname ORDER BY k."position") AS jsonb_agg
               FROM ((pg_index i
                 CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(attnum, "position"))
                 JOIN pg_attribute a ON (((a.attrelid = i.indrelid) AND (a.attnum = k.attnum))))
              WHERE ((i.indrelid = c.oid) AND i.indisprimary)), '[]'::jsonb)) THEN 'its primary key changed'::text
            ELSE NULL::text
        END,
        CASE
            WHEN (EXISTS ( SELECT
               FROM pg_partition_tree((c.oid)::regclass) pt(relid, parentrelid, isleaf, level)
              WHERE (pt.isleaf AND ((pt.relid)::oid <> c.oid) AND (NOT (EXISTS ( SELECT
                       FROM audit.capture_triggers lt
                      WHERE (lt.relid = (pt.relid)::oid))))))) THEN 'some partitions are not tracked'::text
            ELSE NULL::text
        END,
        CASE
            WHEN ((pg_get_userbyid(p.proowner) <> 'audit_writer'::name) AND (EXISTS ( SELECT
               FROM pg_roles
              WHERE (pg_roles.rolname = 'audit_writer'::name)))) THEN format('capture runs as %s, not audit_writer'::text, pg_get_userbyid(p.proowner))
            ELSE NULL::text
        END] || problems.list), NULL::text) COLLATE "default") AS needs_refresh,
    (pg_get_userbyid(p.proowner))::text AS capture_role,
    problems.list AS capture_problems,
    (t.options ->> 'serialization'::text) AS serialization
   FROM ((((audit.capture_triggers t
     JOIN pg_class c ON ((c.oid = t.relid)))
     JOIN pg_namespace n ON ((n.oid = c.relnamespace)))
     JOIN pg_proc p ON ((p.oid = t.function_id)))
     CROSS JOIN LATERAL ( SELECT ((((ARRAY( SELECT (format('%s on %s is %s'::text, e.name, (r.relid)::regclass,
                        CASE
                            WHEN (x.oid IS NULL) THEN 'missing'::text
                            WHEN (x.enabled = 'D'::"char") THEN 'disabled'::text
                            ELSE 'enabled only for replication'::text
                        END) COLLATE "default") AS format
                   FROM ((( SELECT c.oid AS relid
                        UNION ALL
                         SELECT pt.relid
                           FROM pg_partition_tree((c.oid)::regclass) pt(relid, parentrelid, isleaf, level)
                          WHERE (pt.isleaf AND ((pt.relid)::oid <> c.oid) AND (EXISTS ( SELECT
                                   FROM audit.capture_triggers lt
                                  WHERE (lt.relid = (pt.relid)::oid))))) r
                     CROSS JOIN unnest(ARRAY['audit_capture_insert'::text, 'audit_capture_update'::text, 'audit_capture_delete'::text, 'audit_capture_truncate'::text]) WITH ORDINALITY e(name, "position"))
                     LEFT JOIN audit.capture_triggers x ON (((x.relid = r.relid) AND (x.name = e.name) AND (x.function_id = t.function_id))))
                  WHERE ((x.oid IS NULL) OR (x.enabled <> ALL (ARRAY['O'::"char", 'A'::"char"])))
                  ORDER BY r.relid, e."position") || ARRAY( SELECT (format('%s inherits from it and is not tracked: its rows are not recorded'::text, (i.inhrelid)::regclass) COLLATE "default") AS format
                   FROM (pg_inherits i
                     JOIN pg_class ch ON ((ch.oid = i.inhrelid)))
                  WHERE ((i.inhparent = c.oid) AND (NOT ch.relispartition) AND (NOT (EXISTS ( SELECT
                           FROM audit.capture_triggers lt
                          WHERE (lt.relid = i.inhrelid)))))
                  ORDER BY (format('%s inherits from it and is not tracked: its rows are not recorded'::text, (i.inhrelid)::regclass) COLLATE "default"))) ||
                CASE
                    WHEN (NOT has_table_privilege(p.proowner, c.oid, 'SELECT'::text)) THEN ARRAY[(format('%s cannot read %s: a TRUNCATE of it would fail'::text, pg_get_userbyid(p.proowner), (c.oid)::regclass) COLLATE "default")]
                    ELSE '{}'::text[]
                END) ||
                CASE
                    WHEN (NOT has_table_privilege(p.proowner, 'audit.audit_logs'::text, 'INSERT'::text)) THEN ARRAY[(format('%s cannot write audit.audit_logs: every write to the table would fail'::text, pg_get_userbyid(p.proowner)) COLLATE "default")]
                    ELSE '{}'::text[]
                END) ||
                CASE
                    WHEN (((t.options ->> 'serialization'::text) = 'plain'::text) AND (NOT (EXISTS ( SELECT
                       FROM pg_event_trigger
                      WHERE ((pg_event_trigger.evtname = 'audit_capture_ddl'::name) AND (pg_event_trigger.evtenabled = ANY (ARRAY['O'::"char", 'A'::"char"]))))))) THEN ARRAY['the event trigger audit_capture_ddl is missing or disabled'::text]
                    ELSE '{}'::text[]
                END) AS list) problems)
  WHERE ((NOT c.relispartition) AND (t.oid = ( SELECT min(f.oid) AS min
           FROM audit.capture_triggers f
          WHERE (f.relid = t.relid))));

-- COMMENT VIEW tracked_tables

COMMENT ON VIEW audit.tracked_tables IS 'The tracked tables, their options, and why tracking needs a refresh (run audit.enable_tracking again) if it does.';

-- COMMENT COLUMN tracked_tables.schema_name

COMMENT ON COLUMN audit.tracked_tables.schema_name IS 'The schema of the tracked table.';

-- COMMENT COLUMN tracked_tables.table_name

COMMENT ON COLUMN audit.tracked_tables.table_name IS 'The tracked table.';

-- COMMENT COLUMN tracked_tables.target_type

COMMENT ON COLUMN audit.tracked_tables.target_type IS 'The name recorded in audit_logs.target_type.';

-- COMMENT COLUMN tracked_tables.primary_key

COMMENT ON COLUMN audit.tracked_tables.primary_key IS 'The columns that make target_id.';

-- COMMENT COLUMN tracked_tables.excluded_columns

COMMENT ON COLUMN audit.tracked_tables.excluded_columns IS 'Columns whose values are never stored.';

-- COMMENT COLUMN tracked_tables.skip_unchanged

COMMENT ON COLUMN audit.tracked_tables.skip_unchanged IS 'Whether updates that change nothing are skipped.';

-- COMMENT COLUMN tracked_tables.require_context

COMMENT ON COLUMN audit.tracked_tables.require_context IS 'Whether a write without an audit context fails (AL006).';

-- COMMENT COLUMN tracked_tables.capture_function

COMMENT ON COLUMN audit.tracked_tables.capture_function IS 'The generated function the triggers call.';

-- COMMENT COLUMN tracked_tables.needs_refresh

COMMENT ON COLUMN audit.tracked_tables.needs_refresh IS 'Empty when tracking is current; otherwise what changed since it was enabled (capture_problems included). Run audit.enable_tracking again.';

-- COMMENT COLUMN tracked_tables.capture_role

COMMENT ON COLUMN audit.tracked_tables.capture_role IS 'The role capture runs as: audit_writer, or the audit log''s owner where the migration could not create it.';

-- COMMENT COLUMN tracked_tables.capture_problems

COMMENT ON COLUMN audit.tracked_tables.capture_problems IS 'Capture triggers that are missing, disabled or replica-only (writes that go unrecorded), or a missing event trigger that capture relies on: fixed by enabling tracking again.';

-- COMMENT COLUMN tracked_tables.serialization

COMMENT ON COLUMN audit.tracked_tables.serialization IS 'How capture turns rows into jsonb: plain (to_jsonb), gated (to_jsonb unless a user type has a cast to json) or sandboxed (as audit_sandbox, a role with no rights). See V5__capture_rights.sql.';

-- TABLE ATTACH audit_logs_default

ALTER TABLE ONLY audit.audit_logs ATTACH PARTITION audit.audit_logs_default DEFAULT;

-- CONSTRAINT anonymization_watermark anonymization_watermark_pkey

ALTER TABLE ONLY audit.anonymization_watermark
    ADD CONSTRAINT anonymization_watermark_pkey PRIMARY KEY (singleton);

-- CONSTRAINT archived_months archived_months_pkey

ALTER TABLE ONLY audit.archived_months
    ADD CONSTRAINT archived_months_pkey PRIMARY KEY (month);

-- CONSTRAINT dropped_partitions dropped_partitions_pkey

ALTER TABLE ONLY audit.dropped_partitions
    ADD CONSTRAINT dropped_partitions_pkey PRIMARY KEY (month);

-- CONSTRAINT redactions redactions_pkey

ALTER TABLE ONLY audit.redactions
    ADD CONSTRAINT redactions_pkey PRIMARY KEY (id);

-- CONSTRAINT refinery_schema_history refinery_schema_history_pkey

ALTER TABLE ONLY audit.refinery_schema_history
    ADD CONSTRAINT refinery_schema_history_pkey PRIMARY KEY (version);

-- CONSTRAINT seal_chunks seal_chunks_pkey

ALTER TABLE ONLY audit.seal_chunks
    ADD CONSTRAINT seal_chunks_pkey PRIMARY KEY (seal_id, chunk);

-- CONSTRAINT seals seals_from_txid_key

ALTER TABLE ONLY audit.seals
    ADD CONSTRAINT seals_from_txid_key UNIQUE (from_txid);

-- CONSTRAINT seals seals_pkey

ALTER TABLE ONLY audit.seals
    ADD CONSTRAINT seals_pkey PRIMARY KEY (id);

-- CONSTRAINT settings settings_pkey

ALTER TABLE ONLY audit.settings
    ADD CONSTRAINT settings_pkey PRIMARY KEY (singleton);

-- CONSTRAINT table_renames table_renames_pkey

ALTER TABLE ONLY audit.table_renames
    ADD CONSTRAINT table_renames_pkey PRIMARY KEY (entry_id);

-- INDEX audit_logs_actor_idx

CREATE INDEX audit_logs_actor_idx ON ONLY audit.audit_logs USING btree (actor_id, id);

-- INDEX audit_logs_changed_fields_idx

CREATE INDEX audit_logs_changed_fields_idx ON ONLY audit.audit_logs USING gin (changed_fields) WHERE (changed_fields IS NOT NULL);

-- INDEX audit_logs_default_actor_id_id_idx

CREATE INDEX audit_logs_default_actor_id_id_idx ON audit.audit_logs_default USING btree (actor_id, id);

-- INDEX audit_logs_default_changed_fields_idx

CREATE INDEX audit_logs_default_changed_fields_idx ON audit.audit_logs_default USING gin (changed_fields) WHERE (changed_fields IS NOT NULL);

-- INDEX audit_logs_time_idx

CREATE INDEX audit_logs_time_idx ON ONLY audit.audit_logs USING brin (created_at, txid) WITH (pages_per_range='32', autosummarize='on');

-- INDEX audit_logs_default_created_at_txid_idx

CREATE INDEX audit_logs_default_created_at_txid_idx ON audit.audit_logs_default USING brin (created_at, txid) WITH (pages_per_range='32', autosummarize='on');

-- INDEX audit_logs_target_idx

CREATE INDEX audit_logs_target_idx ON ONLY audit.audit_logs USING btree (target_id, target_type, id);

-- INDEX audit_logs_default_target_id_target_type_id_idx

CREATE INDEX audit_logs_default_target_id_target_type_id_idx ON audit.audit_logs_default USING btree (target_id, target_type, id);

-- INDEX audit_logs_old_target_idx

CREATE INDEX audit_logs_old_target_idx ON ONLY audit.audit_logs USING btree (target_type, old_target_id, id) WHERE (old_target_id IS NOT NULL);

-- INDEX audit_logs_default_target_type_old_target_id_id_idx

CREATE INDEX audit_logs_default_target_type_old_target_id_id_idx ON audit.audit_logs_default USING btree (target_type, old_target_id, id) WHERE (old_target_id IS NOT NULL);

-- INDEX redactions_row_idx

CREATE INDEX redactions_row_idx ON audit.redactions USING btree (row_txid, row_id, id);

-- INDEX table_renames_from_idx

CREATE INDEX table_renames_from_idx ON audit.table_renames USING btree (renamed_from, entry_id);

-- INDEX table_renames_to_idx

CREATE INDEX table_renames_to_idx ON audit.table_renames USING btree (renamed_to, entry_id);

-- INDEX ATTACH audit_logs_default_actor_id_id_idx

ALTER INDEX audit.audit_logs_actor_idx ATTACH PARTITION audit.audit_logs_default_actor_id_id_idx;

-- INDEX ATTACH audit_logs_default_changed_fields_idx

ALTER INDEX audit.audit_logs_changed_fields_idx ATTACH PARTITION audit.audit_logs_default_changed_fields_idx;

-- INDEX ATTACH audit_logs_default_created_at_txid_idx

ALTER INDEX audit.audit_logs_time_idx ATTACH PARTITION audit.audit_logs_default_created_at_txid_idx;

-- INDEX ATTACH audit_logs_default_target_id_target_type_id_idx

ALTER INDEX audit.audit_logs_target_idx ATTACH PARTITION audit.audit_logs_default_target_id_target_type_id_idx;

-- INDEX ATTACH audit_logs_default_target_type_old_target_id_id_idx

ALTER INDEX audit.audit_logs_old_target_idx ATTACH PARTITION audit.audit_logs_default_target_type_old_target_id_id_idx;

-- TRIGGER archived_months audit_append_only

CREATE TRIGGER audit_append_only BEFORE DELETE OR UPDATE ON audit.archived_months FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();

-- TRIGGER audit_logs audit_append_only

CREATE TRIGGER audit_append_only BEFORE DELETE OR UPDATE ON audit.audit_logs FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();

-- TRIGGER dropped_partitions audit_append_only

CREATE TRIGGER audit_append_only BEFORE DELETE OR UPDATE ON audit.dropped_partitions FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();

-- TRIGGER redactions audit_append_only

CREATE TRIGGER audit_append_only BEFORE DELETE OR UPDATE ON audit.redactions FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();

-- TRIGGER seal_chunks audit_append_only

CREATE TRIGGER audit_append_only BEFORE DELETE OR UPDATE ON audit.seal_chunks FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();

-- TRIGGER seals audit_append_only

CREATE TRIGGER audit_append_only BEFORE DELETE OR UPDATE ON audit.seals FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();

-- TRIGGER archived_months audit_append_only_truncate

CREATE TRIGGER audit_append_only_truncate BEFORE TRUNCATE ON audit.archived_months FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();

-- TRIGGER audit_logs audit_append_only_truncate

CREATE TRIGGER audit_append_only_truncate BEFORE TRUNCATE ON audit.audit_logs FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();

-- TRIGGER audit_logs_default audit_append_only_truncate

CREATE TRIGGER audit_append_only_truncate BEFORE TRUNCATE ON audit.audit_logs_default FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();

-- TRIGGER dropped_partitions audit_append_only_truncate

CREATE TRIGGER audit_append_only_truncate BEFORE TRUNCATE ON audit.dropped_partitions FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();

-- TRIGGER redactions audit_append_only_truncate

CREATE TRIGGER audit_append_only_truncate BEFORE TRUNCATE ON audit.redactions FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();

-- TRIGGER seal_chunks audit_append_only_truncate

CREATE TRIGGER audit_append_only_truncate BEFORE TRUNCATE ON audit.seal_chunks FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();

-- TRIGGER seals audit_append_only_truncate

CREATE TRIGGER audit_append_only_truncate BEFORE TRUNCATE ON audit.seals FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();

-- FK CONSTRAINT seal_chunks seal_chunks_seal_id_fkey

ALTER TABLE ONLY audit.seal_chunks
    ADD CONSTRAINT seal_chunks_seal_id_fkey FOREIGN KEY (seal_id) REFERENCES audit.seals(id) DEFERRABLE INITIALLY DEFERRED;

-- ACL SCHEMA audit

GRANT USAGE ON SCHEMA audit TO PUBLIC;

-- ACL FUNCTION advisory_lock_holders(key bigint)

REVOKE ALL ON FUNCTION audit.advisory_lock_holders(key bigint) FROM PUBLIC;

-- ACL FUNCTION advisory_xact_lock(key bigint, purpose text, max_wait interval)

REVOKE ALL ON FUNCTION audit.advisory_xact_lock(key bigint, purpose text, max_wait interval) FROM PUBLIC;

-- ACL FUNCTION anonymize_due(after_days integer, fields text[])

REVOKE ALL ON FUNCTION audit.anonymize_due(after_days integer, fields text[]) FROM PUBLIC;

-- ACL FUNCTION configure(months_ahead integer, retention_months integer, anonymize_after_days integer, anonymize_fields text[], archive_to text, archive_lock_mode text, archive_lock_days integer)

REVOKE ALL ON FUNCTION audit.configure(months_ahead integer, retention_months integer, anonymize_after_days integer, anonymize_fields text[], archive_to text, archive_lock_mode text, archive_lock_days integer) FROM PUBLIC;
GRANT ALL ON FUNCTION audit.configure(months_ahead integer, retention_months integer, anonymize_after_days integer, anonymize_fields text[], archive_to text, archive_lock_mode text, archive_lock_days integer) TO audit_maintainer;

-- ACL FUNCTION create_partitions(months_ahead integer)

REVOKE ALL ON FUNCTION audit.create_partitions(months_ahead integer) FROM PUBLIC;

-- ACL FUNCTION drop_archived_month(month integer, expected_rows bigint, archive text, manifest_sha256 text)

REVOKE ALL ON FUNCTION audit.drop_archived_month(month integer, expected_rows bigint, archive text, manifest_sha256 text) FROM PUBLIC;
GRANT ALL ON FUNCTION audit.drop_archived_month(month integer, expected_rows bigint, archive text, manifest_sha256 text) TO audit_maintainer;

-- ACL FUNCTION drop_capture(target regclass)

REVOKE ALL ON FUNCTION audit.drop_capture(target regclass) FROM PUBLIC;

-- ACL FUNCTION drop_expired_partitions(retention_months integer)

REVOKE ALL ON FUNCTION audit.drop_expired_partitions(retention_months integer) FROM PUBLIC;

-- ACL FUNCTION follow_schema_changes()

REVOKE ALL ON FUNCTION audit.follow_schema_changes() FROM PUBLIC;

-- ACL FUNCTION give_function(fn regprocedure, new_owner text)

REVOKE ALL ON FUNCTION audit.give_function(fn regprocedure, new_owner text) FROM PUBLIC;

-- ACL FUNCTION in_package_ddl()

REVOKE ALL ON FUNCTION audit.in_package_ddl() FROM PUBLIC;

-- ACL FUNCTION install_capture(target regclass, options jsonb)

REVOKE ALL ON FUNCTION audit.install_capture(target regclass, options jsonb) FROM PUBLIC;

-- ACL TABLE audit_logs

GRANT SELECT ON TABLE audit.audit_logs TO audit_reader;
GRANT INSERT ON TABLE audit.audit_logs TO audit_writer;

-- ACL FUNCTION maintain(months_ahead integer, retention_months integer, anonymize_after_days integer)

REVOKE ALL ON FUNCTION audit.maintain(months_ahead integer, retention_months integer, anonymize_after_days integer) FROM PUBLIC;
GRANT ALL ON FUNCTION audit.maintain(months_ahead integer, retention_months integer, anonymize_after_days integer) TO audit_maintainer;

-- ACL FUNCTION move_default_rows()

REVOKE ALL ON FUNCTION audit.move_default_rows() FROM PUBLIC;

-- ACL FUNCTION protect_partitions()

REVOKE ALL ON FUNCTION audit.protect_partitions() FROM PUBLIC;

-- ACL FUNCTION record_drops()

REVOKE ALL ON FUNCTION audit.record_drops() FROM PUBLIC;

-- ACL FUNCTION record_rewrite()

REVOKE ALL ON FUNCTION audit.record_rewrite() FROM PUBLIC;

-- ACL FUNCTION record_schema_change(action text, target_type text, details jsonb)

REVOKE ALL ON FUNCTION audit.record_schema_change(action text, target_type text, details jsonb) FROM PUBLIC;

-- ACL FUNCTION redact(key bytea, actor_id text, target_type text, target_id text, fields text[], reason text)

REVOKE ALL ON FUNCTION audit.redact(key bytea, actor_id text, target_type text, target_id text, fields text[], reason text) FROM PUBLIC;
GRANT ALL ON FUNCTION audit.redact(key bytea, actor_id text, target_type text, target_id text, fields text[], reason text) TO audit_maintainer;

-- ACL FUNCTION redact_subject(key bytea, actor_id text, email text, ip_address text, "values" text[], reason text)

REVOKE ALL ON FUNCTION audit.redact_subject(key bytea, actor_id text, email text, ip_address text, "values" text[], reason text) FROM PUBLIC;
GRANT ALL ON FUNCTION audit.redact_subject(key bytea, actor_id text, email text, ip_address text, "values" text[], reason text) TO audit_maintainer;

-- ACL FUNCTION refresh_capture(rel regclass)

REVOKE ALL ON FUNCTION audit.refresh_capture(rel regclass) FROM PUBLIC;

-- ACL FUNCTION sandboxed_jsonb(r record)

REVOKE ALL ON FUNCTION audit.sandboxed_jsonb(r record) FROM PUBLIC;
GRANT ALL ON FUNCTION audit.sandboxed_jsonb(r record) TO audit_writer;

-- ACL FUNCTION seal(OUT seal_id bigint, OUT row_count bigint, OUT from_txid bigint, OUT to_txid bigint, OUT head text)

REVOKE ALL ON FUNCTION audit.seal(OUT seal_id bigint, OUT row_count bigint, OUT from_txid bigint, OUT to_txid bigint, OUT head text) FROM PUBLIC;
GRANT ALL ON FUNCTION audit.seal(OUT seal_id bigint, OUT row_count bigint, OUT from_txid bigint, OUT to_txid bigint, OUT head text) TO audit_maintainer;

-- ACL FUNCTION seal_boundary()

REVOKE ALL ON FUNCTION audit.seal_boundary() FROM PUBLIC;

-- ACL TABLE anonymization_watermark

GRANT SELECT ON TABLE audit.anonymization_watermark TO audit_reader;

-- ACL TABLE archived_months

GRANT SELECT ON TABLE audit.archived_months TO audit_reader;

-- ACL TABLE capture_triggers

GRANT SELECT ON TABLE audit.capture_triggers TO PUBLIC;
GRANT SELECT ON TABLE audit.capture_triggers TO audit_reader;

-- ACL TABLE dropped_partitions

GRANT SELECT ON TABLE audit.dropped_partitions TO audit_reader;

-- ACL TABLE redactions

GRANT SELECT ON TABLE audit.redactions TO audit_reader;

-- ACL TABLE refinery_schema_history

GRANT SELECT ON TABLE audit.refinery_schema_history TO audit_reader;

-- ACL TABLE seal_chunks

GRANT SELECT ON TABLE audit.seal_chunks TO audit_reader;

-- ACL TABLE seals

GRANT SELECT ON TABLE audit.seals TO audit_reader;

-- ACL TABLE settings

GRANT SELECT ON TABLE audit.settings TO audit_reader;

-- ACL TABLE table_renames

GRANT SELECT ON TABLE audit.table_renames TO PUBLIC;

-- ACL TABLE tracked_tables

GRANT SELECT ON TABLE audit.tracked_tables TO PUBLIC;
GRANT SELECT ON TABLE audit.tracked_tables TO audit_reader;

-- EVENT TRIGGER audit_capture_ddl

create event trigger audit_capture_ddl on ddl_command_end
  when tag in ('ALTER TABLE', 'CREATE TABLE', 'ALTER TRIGGER')
  execute function audit.follow_schema_changes();

comment on event trigger audit_capture_ddl is 'audit-logs: regenerates capture of tracked tables after a change of their columns, key, name or partitions, and records it (ddl.*).';

-- EVENT TRIGGER audit_capture_drop

create event trigger audit_capture_drop on sql_drop
  when tag in ('DROP TRIGGER', 'DROP TABLE', 'DROP SCHEMA', 'DROP OWNED')
  execute function audit.record_drops();

comment on event trigger audit_capture_drop is 'audit-logs: records capture triggers and tracked tables dropped (ddl.*).';

-- EVENT TRIGGER audit_capture_rewrite

create event trigger audit_capture_rewrite on table_rewrite
  execute function audit.record_rewrite();

comment on event trigger audit_capture_rewrite is 'audit-logs: records tracked tables rewritten in place (ddl.rewrite).';
