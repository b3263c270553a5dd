-- audit-logs V6: schema changes of tracked tables are recorded in the log itself, and tracking
-- follows them, renames included.
--
-- Design notes (README "Compliance: what is guaranteed against whom"):
-- * Where the migrating role may create event triggers, every schema change that touches a
--   tracked table is an entry of the log, action ddl.*, target_type the table, metadata what
--   changed and the database role (session_user) that did it, attributed to the transaction's
--   audit context like any entry:
--     ddl.alter_table   ALTER TABLE of the table or a partition (columns added/removed/retyped,
--                       partitions attached/detached, triggers disabled: capture_problems says
--                       what no longer fires), ALTER TRIGGER of a capture trigger;
--     ddl.rewrite       every row rewritten in place (ALTER COLUMN TYPE ... USING, SET LOGGED...):
--                       values change with no row entry, and this entry says when;
--     ddl.rename        the table renamed or moved to another schema (metadata.renamed_from);
--     ddl.drop_trigger  a capture trigger dropped by hand; ddl.drop_table the table dropped;
--     ddl.child_table   a table created to inherit from it (its rows are not recorded unless it
--                       is tracked too, which audit.tracked_tables reports);
--     ddl.tracking_changed / ddl.tracking_disabled  enable_tracking changing the options of a
--                       tracked table (before and after), disable_tracking.
--   The package's own DDL (installing capture) is not reported twice. Applications cannot log
--   ddl.* events themselves (check_event reserves the prefix), so these entries are never forged.
-- * A rename is followed at once: capture records under the new name, and audit.target_names
--   gives every name a table had (with the range of entry ids each name covers), which history,
--   stateAt and statesAt read: a record's history does not stop at a rename, and a table that
--   later takes the old name does not inherit it.
-- * Without event triggers, audit.tracked_tables names each drift instead: renamed, columns or
--   their types changed, key changed, partitions untracked, inheritance children untracked,
--   capture triggers disabled or dropped, audit_writer unable to read the table.
-- * A context written by hand that is not even JSON no longer fails the application's write:
--   capture parses the setting only when it carries this transaction's marker, which only
--   set_context and set_checked_context (which parse it) write.

-- ---------------------------------------------------------------------------------------------
-- ddl.* is the package's
-- ---------------------------------------------------------------------------------------------

create or replace function audit.check_event(action text, target_type text, target_id text, metadata jsonb)
returns void
language plpgsql
immutable
set search_path = ''
as $$
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
$$;

-- ---------------------------------------------------------------------------------------------
-- A context that is not JSON attributes nothing and fails nothing
-- ---------------------------------------------------------------------------------------------

-- As V5, but the setting is parsed only if it has the marker's key (the same test as capture's):
-- one set by hand that is not JSON is no context, not an error.
create or replace function audit.current_context()
returns jsonb
language sql
stable
set search_path = ''
as $$
  select case when c -> '@transaction' = to_jsonb(now()) then c - '@transaction' end
    from (select case when s like '{%"@transaction": "%' then s::jsonb end as c
            from (select current_setting('audit.context', true) as s) as raw) as setting
$$;

-- ---------------------------------------------------------------------------------------------
-- Names a table had
-- ---------------------------------------------------------------------------------------------

-- One row per ddl.rename entry: a lookup for audit.target_names (the entry is the record).
create table audit.table_renames (
  entry_id bigint primary key,
  renamed_from text collate "C" not null,
  renamed_to text collate "C" not null
);
create index table_renames_to_idx on audit.table_renames (renamed_to, entry_id);
create index table_renames_from_idx on audit.table_renames (renamed_from, entry_id);
comment on table audit.table_renames is
  'Renames of tracked tables (each is also a ddl.rename entry of audit.audit_logs, entry_id): read by audit.target_names.';
comment on column audit.table_renames.entry_id is 'The ddl.rename entry of audit.audit_logs.';
comment on column audit.table_renames.renamed_from is 'The name (target_type) before.';
comment on column audit.table_renames.renamed_to is 'The name (target_type) after.';
revoke all on audit.table_renames from public;
grant select on audit.table_renames to public;

-- Every name the table now called target_type had, newest first, each with the entry ids it
-- covers (after_id < id < before_id): walking back, a name's range starts at the latest rename
-- into it (then the name before it is followed) or out of it (then an older table had it).
-- Runs with the caller's rights and no SET clause, so that it is inlined into the history
-- query: as a security definer with a pinned search_path it cost ~1 ms a call (measured at 1M
-- rows), replanned every time. Table names are no secret: table_renames is readable by all.
create function audit.target_names(target_type text)
returns table (name text, after_id bigint, before_id bigint)
language sql
stable
rows 2
as $$
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
comment on function audit.target_names(text) is
  'Every name a tracked table (now called target_type) was recorded under, with the entry ids each covers '
  '(after_id < id < before_id): what history follows across renames.';
grant execute on function audit.target_names(text) to public;

-- ---------------------------------------------------------------------------------------------
-- Recording a schema change
-- ---------------------------------------------------------------------------------------------

-- Called only by the package's functions (as the audit owner). The transaction's context
-- attributes it, as it attributes row changes; db_role says which login did it.
create function audit.record_schema_change(action text, target_type text, details jsonb)
returns bigint
language plpgsql
set search_path = ''
as $$
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
comment on function audit.record_schema_change(text, text, jsonb) is
  'Records a ddl.* entry about a tracked table (the event triggers and enable/disable_tracking call it).';
revoke all on function audit.record_schema_change(text, text, jsonb) from public;

-- ---------------------------------------------------------------------------------------------
-- Capture: parses the context only when it is this transaction's
-- ---------------------------------------------------------------------------------------------

create or replace function audit.capture_function_sql(function_name text, options jsonb)
returns text
language plpgsql
immutable
set search_path = ''
as $$
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
    '''{actor_id,actor_type,actor_email,ip_address,user_agent,request_id,metadata,@transaction}''::pg_catalog.text[]';
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
  if not attributed then
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
  c audit.context_columns;
  meta pg_catalog.jsonb;
  ctx pg_catalog.jsonb;
  attributed pg_catalog.bool := false;
  truncated pg_catalog.text;
  saved_row_security pg_catalog.text;
begin
  -- Only ever for its own table: the oids known when it was generated, else by name.
  if tg_relid operator(pg_catalog.<>) all (%13$L::pg_catalog.oid[]) then
    perform audit.check_capture_target(tg_relid, %2$L);
  end if;
  -- Set for this transaction by audit.set_context (or a client that checked it), which wrote
  -- the marker, checked here once parsed: a value left by a session-level SET, or set_config'd
  -- by hand, attributes nothing. A value without the marker's key is not even parsed, so one
  -- that is not JSON fails no write (only one crafted with the key and broken JSON does). This
  -- test replaces raw <> '': each function in an expression costs every transaction an
  -- EXECUTE check, capture not running as a superuser.
  if raw operator(pg_catalog.~~) '{%%"@transaction": "%%' then
    ctx := raw::pg_catalog.jsonb;
    if (ctx operator(pg_catalog.->) '@transaction') operator(pg_catalog.=) pg_catalog.to_jsonb(pg_catalog.now()) then
      attributed := true;
      c := pg_catalog.jsonb_populate_record(null::audit.context_columns, ctx);
      meta := (ctx operator(pg_catalog.-) %3$s)
              operator(pg_catalog.||) coalesce((ctx operator(pg_catalog.->) 'metadata'), '{}'::pg_catalog.jsonb);
      if meta operator(pg_catalog.=) '{}'::pg_catalog.jsonb then
        meta := null;
      end if;
    else
      meta := '{"audit_context_ignored": "not set for this transaction by audit.set_context"}';
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
    insert into audit.audit_logs (action, target_type, target_id, new_values, %4$s)
    select 'INSERT', %2$L, (%10$s), (p.n%5$s), %8$s
    from (select %14$s as n from new_rows r) as p;
  elsif tg_op operator(pg_catalog.=) 'DELETE' then
    insert into audit.audit_logs (action, target_type, target_id, old_values, %4$s)
    select 'DELETE', %2$L, (%9$s), (p.o%5$s), %8$s
    from (select %14$s as o from old_rows r) as p;
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
        'from (select %%s as o from %%s) as p',
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
$$;

-- ---------------------------------------------------------------------------------------------
-- Tracking options: column types too
-- ---------------------------------------------------------------------------------------------

create function audit.column_types(target regclass)
returns jsonb
language sql
stable
set search_path = ''
as $$
  select to_jsonb(array(
    select format_type(atttypid, atttypmod) from pg_attribute
     where attrelid = target and attnum > 0 and not attisdropped
     order by attnum))
$$;
comment on function audit.column_types(regclass) is 'The types of a table''s columns, in order (tracking options).';

-- As V5, plus each column's type: a column retyped in place (which rewrites every row, with no
-- row entry) is then a drift audit.tracked_tables names even without the event trigger.
create or replace function audit.capture_options(
  target regclass,
  target_type text,
  exclude_columns text[],
  skip_unchanged boolean,
  require_context boolean
)
returns jsonb
language sql
stable
set search_path = ''
as $$
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


-- ---------------------------------------------------------------------------------------------
-- Installing capture: follows renames, and says what changed
-- ---------------------------------------------------------------------------------------------

-- What disable_tracking did in V5: drops the triggers and the capture function, records nothing
-- (installing capture again calls it; disable_tracking records the change).
create function audit.drop_capture(target regclass)
returns boolean
language plpgsql
set search_path = ''
as $$
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
comment on function audit.drop_capture(regclass) is
  'Drops the capture triggers and function of a table (and its partitions), recording nothing.';
revoke all on function audit.drop_capture(regclass) from public;

create or replace function audit.disable_tracking(target regclass)
returns boolean
language plpgsql
set search_path = ''
as $$
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

-- Whether the package's own functions are running the current DDL (installing or dropping
-- capture): the event triggers then record nothing more. Read from the call stack, which names
-- functions of the audit schema qualified, as only the audit owner can create them.
create function audit.in_package_ddl()
returns boolean
language plpgsql
stable
set search_path = ''
as $$
declare
  stack text;
begin
  get diagnostics stack = pg_context;
  return stack ~ '(^|\n)PL/pgSQL function audit\.(drop_capture|install_capture)\(';
end
$$;
revoke all on function audit.in_package_ddl() from public;

create or replace function audit.install_capture(target regclass, options jsonb)
returns void
language plpgsql
set search_path = ''
as $$
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

-- As V5, recording options changed on a tracked table (ddl.tracking_changed): which columns
-- are excluded is itself part of the trail.
create or replace function audit.enable_tracking(
  target regclass,
  exclude_columns text[] default null,
  skip_unchanged boolean default null,
  require_context boolean default null
)
returns jsonb
language plpgsql
set search_path = ''
as $$
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

-- As V5, but a renamed table takes its new name (recorded by install_capture as ddl.rename),
-- and a column retyped counts as a change.
create or replace function audit.refresh_capture(rel regclass)
returns boolean
language plpgsql
set search_path = ''
as $$
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

-- ---------------------------------------------------------------------------------------------
-- The event triggers
-- ---------------------------------------------------------------------------------------------

-- After ALTER TABLE, CREATE TABLE and ALTER TRIGGER: regenerates capture of the tracked tables
-- concerned (as V5), then records what happened to each. Partitioned tables go first, so that a
-- partition they just detached has lost its capture before it is looked at. Runs as the audit
-- owner, on catalog data only; a failure is reported, never raised: the application's DDL goes
-- through.
create or replace function audit.follow_schema_changes()
returns event_trigger
language plpgsql
security definer
set search_path = ''
as $$
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

-- After DROP TRIGGER, DROP TABLE (and the drops that cascade to tables): a capture trigger
-- dropped by hand, or a tracked table (or partition) dropped with its rows, which no DELETE
-- entry records.
create function audit.record_drops()
returns event_trigger
language plpgsql
security definer
set search_path = ''
as $$
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
comment on function audit.record_drops() is
  'Event trigger (audit_capture_drop): records capture triggers and tracked tables dropped (ddl.drop_trigger, ddl.drop_table).';
revoke all on function audit.record_drops() from public;

-- Before a table is rewritten in place (ALTER COLUMN TYPE ... USING, a volatile default, SET
-- LOGGED...): every row may change, with no row entry; this entry says when.
create function audit.record_rewrite()
returns event_trigger
language plpgsql
security definer
set search_path = ''
as $$
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
comment on function audit.record_rewrite() is
  'Event trigger (audit_capture_rewrite): records a tracked table rewritten in place (ddl.rewrite).';
revoke all on function audit.record_rewrite() from public;

do $event_triggers$
begin
  if exists (select from pg_event_trigger where evtname = 'audit_capture_ddl') then
    drop event trigger audit_capture_ddl;
  end if;
  create event trigger audit_capture_ddl on ddl_command_end
    when tag in ('ALTER TABLE', 'CREATE TABLE', 'ALTER TRIGGER')
    execute function audit.follow_schema_changes();
  comment on event trigger audit_capture_ddl is
    'audit-logs: regenerates capture of tracked tables after a change of their columns, key, name or partitions, and records it (ddl.*).';
  create event trigger audit_capture_drop on sql_drop
    when tag in ('DROP TRIGGER', 'DROP TABLE', 'DROP SCHEMA', 'DROP OWNED')
    execute function audit.record_drops();
  comment on event trigger audit_capture_drop is 'audit-logs: records capture triggers and tracked tables dropped (ddl.*).';
  create event trigger audit_capture_rewrite on table_rewrite
    execute function audit.record_rewrite();
  comment on event trigger audit_capture_rewrite is 'audit-logs: records tracked tables rewritten in place (ddl.rewrite).';
exception when insufficient_privilege then
  raise warning 'audit-logs: event triggers not created: % may not create event triggers', current_user
    using hint = 'Schema changes of tracked tables are then not recorded in the log, and capture does not follow them: '
                 'audit.tracked_tables.needs_refresh names each drift, and enabling the table again repairs it. '
                 'As a superuser, run the migrations again to create them (README "Compliance").';
end
$event_triggers$;

-- ---------------------------------------------------------------------------------------------
-- What is tracked, and every drift
-- ---------------------------------------------------------------------------------------------

create or replace view audit.tracked_tables as
select
  n.nspname::text as schema_name,
  c.relname::text as table_name,
  t.options ->> 'target_type' as target_type,
  array(select jsonb_array_elements_text(t.options -> 'primary_key')) as primary_key,
  array(select jsonb_array_elements_text(t.options -> 'exclude_columns')) as excluded_columns,
  (t.options ->> 'skip_unchanged')::boolean as skip_unchanged,
  coalesce((t.options ->> 'require_context')::boolean, false) as require_context,
  t.function_id::regprocedure::text as capture_function,
  array_remove(array[
    case when t.options ->> 'target_type' <> format('%I.%I', n.nspname, c.relname)
         then case when exists (select from audit.capture_triggers o
                                 where o.function_id = t.function_id and o.relid <> c.oid
                                   and o.relid = to_regclass(t.options ->> 'target_type'))
                   then format('it was detached from %s, and its writes are still recorded as %s''s',
                               t.options ->> 'target_type', t.options ->> 'target_type')
                   else 'the table was renamed' end end,
    case when t.options -> 'columns' <> coalesce((select jsonb_agg(a.attname order by a.attnum) from pg_attribute a
                                                  where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped), '[]')
         then 'its columns changed' end,
    case when t.options ? 'column_types' and t.options -> 'column_types' <> audit.column_types(c.oid)
              and t.options -> 'columns' = coalesce((select jsonb_agg(a.attname order by a.attnum) from pg_attribute a
                                                     where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped), '[]')
         then 'a column changed type' end,
    case when t.options -> 'primary_key' <> coalesce((select jsonb_agg(a.attname order by k.position)
                                                      from pg_index i
                                                      cross join unnest(i.indkey) with ordinality as k(attnum, position)
                                                      join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
                                                      where i.indrelid = c.oid and i.indisprimary), '[]')
         then 'its primary key changed' end,
    case when exists (select from pg_partition_tree(c.oid) pt
                      where pt.isleaf and pt.relid <> c.oid
                        and not exists (select from audit.capture_triggers lt where lt.relid = pt.relid))
         then 'some partitions are not tracked' end,
    case when pg_get_userbyid(p.proowner) <> 'audit_writer' and exists (select from pg_roles where rolname = 'audit_writer')
         then format('capture runs as %s, not audit_writer', pg_get_userbyid(p.proowner)) end
  ] || problems.list, null) collate "default" as needs_refresh,
  pg_get_userbyid(p.proowner)::text as capture_role,
  problems.list as capture_problems,
  t.options ->> 'serialization' as serialization
from audit.capture_triggers t
join pg_class c on c.oid = t.relid
join pg_namespace n on n.oid = c.relnamespace
join pg_proc p on p.oid = t.function_id
-- Writes that go unrecorded, or cannot be: a capture trigger dropped, disabled or replica-only
-- (on the table or a partition that has the others), a table inheriting from it that is not
-- tracked, capture unable to read the table (TRUNCATE would fail) or write the log.
cross join lateral (
  select array(
    select format('%s on %s is %s', e.name, r.relid::regclass,
                  case when x.oid is null then 'missing' when x.enabled = 'D' then 'disabled'
                       else 'enabled only for replication' end) collate "default"
      from (select c.oid as relid
            union all
            select pt.relid from pg_partition_tree(c.oid) pt
             where pt.isleaf and pt.relid <> c.oid
               and exists (select from audit.capture_triggers lt where lt.relid = pt.relid)) r
      cross join unnest(array['audit_capture_insert', 'audit_capture_update', 'audit_capture_delete',
                              'audit_capture_truncate']) with ordinality as e(name, position)
      left join audit.capture_triggers x on x.relid = r.relid and x.name = e.name and x.function_id = t.function_id
     where x.oid is null or x.enabled not in ('O', 'A')
     order by r.relid, e.position)
  || array(
    select format('%s inherits from it and is not tracked: its rows are not recorded', i.inhrelid::regclass) collate "default"
      from pg_inherits i join pg_class ch on ch.oid = i.inhrelid
     where i.inhparent = c.oid and not ch.relispartition
       and not exists (select from audit.capture_triggers lt where lt.relid = i.inhrelid)
     order by 1)
  || case when not has_table_privilege(p.proowner, c.oid, 'SELECT')
          then array[format('%s cannot read %s: a TRUNCATE of it would fail', pg_get_userbyid(p.proowner), c.oid::regclass) collate "default"]
          else '{}' end
  || case when not has_table_privilege(p.proowner, 'audit.audit_logs', 'INSERT')
          then array[format('%s cannot write audit.audit_logs: every write to the table would fail', pg_get_userbyid(p.proowner)) collate "default"]
          else '{}' end
  -- Rows serialized with to_jsonb directly are safe only while the event trigger regenerates
  -- capture when a column changes type.
  || case when t.options ->> 'serialization' = 'plain'
               and not exists (select from pg_event_trigger where evtname = 'audit_capture_ddl' and evtenabled in ('O', 'A'))
          then array['the event trigger audit_capture_ddl is missing or disabled'] else '{}' end as list
) as problems
where not c.relispartition
  and t.oid = (select min(f.oid) from audit.capture_triggers f where f.relid = t.relid);

-- ---------------------------------------------------------------------------------------------
-- Bring every tracked table along
-- ---------------------------------------------------------------------------------------------

-- Every tracked table is enabled again with its options: new capture (the context check),
-- column types in its options, and a table renamed since it was enabled takes its new name
-- (a ddl.rename entry links the two).
do $regenerate$
declare
  tracked regclass;
begin
  for tracked in
    select t.relid::regclass from audit.capture_triggers t join pg_class c on c.oid = t.relid
     where t.name = 'audit_capture_insert' and not c.relispartition
  loop
    begin
      perform audit.enable_tracking(tracked);
    exception when others then
      raise warning 'audit-logs: capture of % could not be regenerated (%): it keeps its capture', tracked, sqlerrm
        using hint = format('Fix the table and enable tracking again: select audit.enable_tracking(%L);', tracked::text);
    end;
  end loop;
end
$regenerate$;

do $grants$
begin
  if exists (select from pg_catalog.pg_roles where rolname = 'audit_reader') then
    grant select on audit.tracked_tables to audit_reader;
  end if;
end
$grants$;
