-- audit-logs V5: capture runs with the least rights that can write an audit row, only for the
-- table it was generated for, and follows the schema changes of its table.
--
-- Design notes (README "Compliance: what is guaranteed against whom"):
-- * Before V5 the capture functions ran as the owner of audit.audit_logs (often a superuser), and
--   to_jsonb(row) calls any cast to json that the application defines on its own types: the
--   application's code ran with the owner's rights. Now each capture function is owned by
--   audit_writer, a NOLOGIN role whose only rights are INSERT on audit.audit_logs and SELECT on
--   the tracked tables (to record the rows a TRUNCATE removes, with row security off).
-- * Even audit_writer's rights must never reach application code, or a cast could append forged
--   entries or read a tracked table. to_jsonb runs code other than the server's own only for a
--   column whose type was created after initdb and is not a domain, array or composite of
--   server types (then it looks for a cast to json). Rows of a table with such a column are
--   serialized by audit.sandboxed_jsonb, owned by audit_sandbox, a NOLOGIN role with no rights at
--   all (~14k instructions a row). Other tables serialize with to_jsonb directly, and stay safe
--   because a change of their columns regenerates capture: the event trigger audit_capture_ddl
--   (where the migrating role may create one) runs on every ALTER TABLE and CREATE TABLE that
--   touches a tracked table. Without it, capture probes pg_cast once per statement for a cast
--   to json from such a type (an InitPlan, ~35k instructions a statement).
-- * The same event trigger keeps tracking correct through schema changes: columns added,
--   dropped or retyped, the primary key changed, a partition created, attached or detached.
-- * Capture functions are no longer executable by PUBLIC (CREATE TRIGGER needs EXECUTE, firing
--   does not), and each checks that it fires on its own table (or one of its partitions): an
--   application cannot attach another table's capture function to a table of its own to write
--   entries in that table's name. Triggers that did so before V5 are dropped here.
-- * Migrations that may not create roles still apply: capture then keeps running as the owner,
--   with a WARNING at migrate time, and audit.tracked_tables names the role capture runs as.
-- * A legal write is never refused for being tracked: json columns (whose "\u0000" jsonb cannot
--   hold) take the sandboxed path, which keeps such an escape as text; a key over 1024 bytes is
--   stored as its digest (audit.stored_key); context strings are capped at 1024 bytes, as in
--   the Node and Rust layers.
-- * A context counts only in the transaction that set it (set_context marks it): a session-level
--   SET or a hand-written set_config attributes nothing, and the entry says so.
-- * seal waits a bounded time for its advisory lock (any role can take it) and names the holder.

-- ---------------------------------------------------------------------------------------------
-- Roles
-- ---------------------------------------------------------------------------------------------

do $roles$
declare
  superuser boolean := (select rolsuper from pg_catalog.pg_roles where rolname = current_user);
  role_name text;
begin
  foreach role_name in array array['audit_writer', 'audit_sandbox'] loop
    if not exists (select from pg_catalog.pg_roles where rolname = role_name) then
      begin
        -- audit_writer reads tracked tables under row_security = off (TRUNCATE): with BYPASSRLS
        -- a table with row-level security is read whole instead of refusing the TRUNCATE.
        execute format('create role %I nologin%s', role_name,
                       case when superuser and role_name = 'audit_writer' then ' bypassrls' else '' end);
      exception
        when insufficient_privilege then
          raise warning using
            message = format('audit-logs: role %s not created: %s may not create roles, so capture keeps running as the owner of the audit log', role_name, current_user),
            hint = 'As a superuser: create role audit_writer nologin bypassrls; create role audit_sandbox nologin; '
                   || format('grant audit_writer, audit_sandbox to %I;', current_user)
                   || ' then run the migrations again and enable tracking again (README "Compliance").';
        when duplicate_object or unique_violation then
          null; -- created concurrently by another database's migration
      end;
    end if;
    -- Giving a function to a role takes membership in it (a superuser needs none).
    if not superuser and exists (select from pg_catalog.pg_roles where rolname = role_name)
       and not pg_catalog.pg_has_role(current_user, role_name, 'member') then
      begin
        execute format('grant %I to %I', role_name, current_user);
      exception when insufficient_privilege then
        raise warning using
          message = format('audit-logs: %s is not a member of %s, so it cannot hand capture to it', current_user, role_name),
          hint = format('As a superuser: grant %I to %I; then enable tracking again.', role_name, current_user);
      end;
    end if;
  end loop;
  if exists (select from pg_catalog.pg_roles where rolname = 'audit_writer') then
    grant insert on audit.audit_logs to audit_writer;
  end if;
end
$roles$;

-- Hands a function of the audit schema to one of the package's roles. The new owner must have
-- CREATE on the schema for that (unless a superuser does it): granted and revoked within this
-- transaction, so no other session ever sees it.
create function audit.give_function(fn regprocedure, new_owner text)
returns void
language plpgsql
set search_path = ''
as $$
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
comment on function audit.give_function(regprocedure, text) is
  'Makes a package role the owner of a function of the audit schema (CREATE on the schema granted only for the change).';
revoke all on function audit.give_function(regprocedure, text) from public;

-- ---------------------------------------------------------------------------------------------
-- Serialization without rights
-- ---------------------------------------------------------------------------------------------

-- to_jsonb of a row, run as audit_sandbox: a cast to json defined by the application runs with
-- no rights. A json column may hold the escape "\u0000", which json accepts and jsonb cannot:
-- to_jsonb then fails (22P05), and the row is read through its JSON text with each such escape
-- (one whose backslash is not itself escaped) turned into the six characters \u0000, so that
-- the write is never refused for being tracked. Called per row, so no set clause: every name is
-- qualified.
create function audit.sandboxed_jsonb(r record)
returns jsonb
language plpgsql
stable
security definer
as $$
begin
  return pg_catalog.to_jsonb(r);
exception when untranslatable_character then
  return pg_catalog.regexp_replace(pg_catalog.row_to_json(r)::pg_catalog.text,
                                   '(?<!\\)((?:\\\\)*)\\u0000', '\1\\\\u0000', 'g')::pg_catalog.jsonb;
end
$$;
comment on function audit.sandboxed_jsonb(record) is
  'to_jsonb(row) as audit_sandbox, a role with no rights (what capture uses for rows whose types could have a cast '
  'to json); an escaped NUL (\u0000) in a json value, which jsonb cannot hold, is kept as the six characters \u0000.';
revoke all on function audit.sandboxed_jsonb(record) from public;
do $sandbox$
begin
  if exists (select from pg_catalog.pg_roles where rolname = 'audit_sandbox')
     and ((select rolsuper from pg_catalog.pg_roles where rolname = current_user)
          or pg_catalog.pg_has_role(current_user, 'audit_sandbox', 'member')) then
    perform audit.give_function('audit.sandboxed_jsonb(record)', 'audit_sandbox');
  end if;
  if exists (select from pg_catalog.pg_roles where rolname = 'audit_writer') then
    grant execute on function audit.sandboxed_jsonb(record) to audit_writer;
  end if;
end
$sandbox$;

-- Whether to_jsonb of the table's rows runs only the server's own code and cannot fail: every
-- column's type, looked through domains, arrays and composites, was created by initdb (any other
-- type may get a cast to json, which to_jsonb would call), and none is json (whose "\u0000"
-- jsonb cannot hold).
create function audit.serializes_plainly(target regclass)
returns boolean
language sql
stable
set search_path = ''
as $$
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
comment on function audit.serializes_plainly(regclass) is
  'True when every column type of the table (through domains, arrays and composites) was created by initdb and is '
  'not json: to_jsonb of its rows then calls no user-defined cast and cannot fail.';

-- The SQL expression a capture function uses for the jsonb of a row variable, by serialization:
-- sandboxed (a column type could have a cast to json), plain (server types only, kept so by the
-- event trigger), gated (server types only, no event trigger: probe pg_cast once per statement).
create function audit.row_json_expression(row_var text, serialization text)
returns text
language sql
immutable
set search_path = ''
as $$
  select case serialization
    when 'plain' then format('pg_catalog.to_jsonb(%s)', row_var)
    when 'gated' then format('case when (select exists (select from pg_catalog.pg_cast j '
                             'where j.castsource operator(pg_catalog.>=) 16384::pg_catalog.oid '
                             'and j.casttarget operator(pg_catalog.=) 114::pg_catalog.oid)) '
                             'then audit.sandboxed_jsonb(%1$s) else pg_catalog.to_jsonb(%1$s) end', row_var)
    else format('audit.sandboxed_jsonb(%s)', row_var)
  end
$$;
comment on function audit.row_json_expression(text, text) is
  'SQL text of the jsonb of a row in capture, for a serialization: plain, gated or sandboxed.';

-- ---------------------------------------------------------------------------------------------
-- Keys of any length
-- ---------------------------------------------------------------------------------------------

-- target_id as stored: the key itself, or for a key over 1024 bytes (a table may accept one up
-- to its own limits, an index entry of the log holds about 2.7 kB) "sha256:" and the hex digest
-- of its text, so that the write is never refused and the entry is still found by its key
-- (queries apply the same function; stable, so a known key is computed once, for the index).
-- PL/pgSQL: measured, a call per row costs capture less than the same CASE inlined. No set
-- clause (it would cost more than the function): every name is qualified.
create function audit.stored_key(key text)
returns text
language plpgsql
stable
parallel safe
as $$
begin
  if pg_catalog.octet_length(key) operator(pg_catalog.<=) 1024 then
    return key;
  end if;
  return 'sha256:' operator(pg_catalog.||) pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(key, 'UTF8')), 'hex');
end
$$;
comment on function audit.stored_key(text) is
  'A record key as audit_logs.target_id stores it: itself, or "sha256:" and its hex digest when over 1024 bytes.';
grant execute on function audit.stored_key(text) to public;

-- Whether a table's primary key can be longer than 1024 bytes as text: only then does capture
-- pay for audit.stored_key (a call per row).
-- Keys of integers, uuids, dates and times, and short varchar, are bounded.
create function audit.key_may_be_long(target regclass)
returns boolean
language sql
stable
set search_path = ''
as $$
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
comment on function audit.key_may_be_long(regclass) is
  'Whether the primary key of the table can exceed 1024 bytes as target_id text (then capture stores it through audit.stored_key).';

-- ---------------------------------------------------------------------------------------------
-- Capture bound to its table
-- ---------------------------------------------------------------------------------------------

-- The slow half of the check every capture function makes: fired on a relation whose oid it does
-- not know (a partition created later, or a database restored from a dump, where oids change),
-- it records only if that relation is, by name, its table or a partition of it.
create function audit.check_capture_target(fired_on oid, target_type text)
returns void
language plpgsql
stable
set search_path = ''
as $$
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
comment on function audit.check_capture_target(oid, text) is
  'Raises AL013 unless the relation (or its partition root) is the table named target_type.';

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
  if raw operator(pg_catalog.<>) '' then
    ctx := raw::pg_catalog.jsonb;
    -- Set for this transaction by audit.set_context (or a client that checked it): a value
    -- left by a session-level SET, or set_config'd by hand, attributes nothing.
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
comment on function audit.capture_function_sql(text, jsonb) is
  'The source of the capture function that audit.enable_tracking installs for a table with these options.';

-- The package's capture triggers: named audit_capture_*, calling a capture function of the audit
-- schema (which only the audit owner can create). An application trigger that merely shares a
-- name is neither read nor dropped as one of them.
create view audit.capture_triggers as
select t.oid, t.tgrelid as relid, t.tgname::text as name, t.tgenabled as enabled, t.tgfoid as function_id,
       pg_catalog.convert_from(pg_catalog.substring(t.tgargs, 1, pg_catalog.length(t.tgargs) - 1), 'UTF8')::pg_catalog.jsonb
         as options
  from pg_catalog.pg_trigger t
  join pg_catalog.pg_proc p on p.oid = t.tgfoid
 where p.pronamespace = 'audit'::pg_catalog.regnamespace and p.proname::text like 'capture %'
   and t.tgname in ('audit_capture_insert', 'audit_capture_update', 'audit_capture_delete', 'audit_capture_truncate');
comment on view audit.capture_triggers is 'The capture triggers installed by audit.enable_tracking (on tables and partitions).';
comment on column audit.capture_triggers.oid is 'The trigger.';
comment on column audit.capture_triggers.relid is 'The table or partition it is on.';
comment on column audit.capture_triggers.name is 'audit_capture_insert, _update, _delete or _truncate.';
comment on column audit.capture_triggers.enabled is 'pg_trigger.tgenabled: O or A fire for the application, D and R do not.';
comment on column audit.capture_triggers.function_id is 'The capture function it calls.';
comment on column audit.capture_triggers.options is 'The tracking options (the trigger argument, read as JSON).';

create or replace function audit.disable_tracking(target regclass)
returns boolean
language plpgsql
set search_path = ''
as $$
declare
  capture_function regprocedure;
  trigger record;
  was_tracked boolean := false;
begin
  if target is null then
    raise exception 'audit-logs: disable_tracking needs a table, got null' using errcode = '22004';
  end if;
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
comment on function audit.disable_tracking(regclass) is
  'Stops recording changes of a table (and its partitions). Idempotent: returns false when it was not tracked. '
  'Its history stays in audit.audit_logs.';

-- The tracking options of a table as it is now: its columns and primary key, with the given
-- choices and the name its entries are recorded under.
create function audit.capture_options(
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
    'exclude_columns', to_jsonb(array(select distinct unnest(coalesce(exclude_columns, '{}')) order by 1)),
    'skip_unchanged', coalesce(skip_unchanged, true),
    'require_context', coalesce(require_context, false))
$$;
comment on function audit.capture_options(regclass, text, text[], boolean, boolean) is
  'The tracking options (trigger argument) of a table as it is now, with the given choices.';

-- The excluded columns recorded for a table that it still has: enabling again after dropping
-- one must neither fail nor forget the others.
create function audit.kept_exclusions(target regclass, recorded jsonb)
returns text[]
language sql
stable
set search_path = ''
as $$
  select array(select jsonb_array_elements_text(recorded -> 'exclude_columns')
               intersect
               select attname::text from pg_attribute where attrelid = target and attnum > 0 and not attisdropped
               order by 1)
$$;
comment on function audit.kept_exclusions(regclass, jsonb) is
  'The excluded columns of recorded tracking options that the table still has.';

-- How capture of a table serializes its rows now (see audit.row_json_expression).
create function audit.capture_serialization(target regclass)
returns text
language sql
stable
set search_path = ''
as $$
  select case when not audit.serializes_plainly(target) then 'sandboxed'
              when exists (select from pg_event_trigger where evtname = 'audit_capture_ddl' and evtenabled in ('O', 'A'))
                then 'plain'
              else 'gated' end
$$;
comment on function audit.capture_serialization(regclass) is
  'sandboxed, plain or gated: how capture of the table must serialize its rows (see V5__capture_rights.sql).';

-- Installs capture for a table with complete options (target_type included): what
-- enable_tracking does after its checks, and what the event trigger does after a schema change.
create function audit.install_capture(target regclass, options jsonb)
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
begin
  options := options || jsonb_build_object('serialization', audit.capture_serialization(target),
                                           'long_keys', audit.key_may_be_long(target));
  perform audit.disable_tracking(target);
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
end
$$;
comment on function audit.install_capture(regclass, jsonb) is
  'Generates the capture function of a table for these options (target_type included), owned by audit_writer, and attaches its triggers.';
revoke all on function audit.install_capture(regclass, jsonb) from public;

-- Options passed as null keep what the table has when it is tracked already (enabling again
-- after an ALTER TABLE must not start storing an excluded password hash), else the defaults.
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
  return options;
end
$$;
comment on function audit.enable_tracking(regclass, text[], boolean, boolean) is
  'Records every INSERT, UPDATE, DELETE and TRUNCATE of a table in audit.audit_logs. Options: exclude_columns '
  '(never stored, e.g. password_hash), skip_unchanged (default true: updates that change nothing are not '
  'recorded), require_context (default false: when true, a write with no audit context fails with AL006); an '
  'option passed as null keeps what the table has when it is tracked already. '
  'Idempotent; run it again after altering the table to refresh, or to repair its triggers. Errors: AL001 no '
  'primary key, AL002 not a table, AL003 bad excluded column, AL005 audit-logs'' own table, AL014 a trigger of '
  'the table''s own has a capture trigger''s name.';

-- ---------------------------------------------------------------------------------------------
-- Following schema changes
-- ---------------------------------------------------------------------------------------------

-- Regenerates capture of the tracked table that rel belongs to (itself, or as a partition), if
-- the table changed since capture was generated: its columns or primary key, its partitions (one
-- without capture, or capture left on one detached), or how its rows must be serialized. Keeps
-- the options and the name entries are recorded under. Returns whether it regenerated.
create function audit.refresh_capture(rel regclass)
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
    root, recorded ->> 'target_type', audit.kept_exclusions(root, recorded),
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
comment on function audit.refresh_capture(regclass) is
  'Regenerates capture of the tracked table rel is (or is a partition of) if the table changed since; returns whether it did.';
revoke all on function audit.refresh_capture(regclass) from public;

-- Runs after every ALTER TABLE and CREATE TABLE, as the owner of the audit log: only the
-- package's own functions, on catalog data (no application code). A failure is reported, never
-- raised: the application's DDL goes through.
create function audit.follow_schema_changes()
returns event_trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  rel regclass;
begin
  for rel in
    select distinct c.objid::regclass from pg_event_trigger_ddl_commands() c
     where c.classid = 'pg_class'::regclass and c.object_type in ('table', 'table column')
       and exists (select from pg_class r where r.oid = c.objid and r.relkind in ('r', 'p'))
  loop
    begin
      perform audit.refresh_capture(rel);
    exception when others then
      raise warning 'audit-logs: capture of % could not follow this change: %', rel, sqlerrm
        using hint = format('Enable tracking again: select audit.enable_tracking(%L);', coalesce(pg_partition_root(rel), rel)::text);
    end;
  end loop;
end
$$;
comment on function audit.follow_schema_changes() is
  'Event trigger (audit_capture_ddl): regenerates capture of tracked tables whose columns, key or partitions changed.';
revoke all on function audit.follow_schema_changes() from public;

do $event_trigger$
begin
  create event trigger audit_capture_ddl on ddl_command_end
    when tag in ('ALTER TABLE', 'CREATE TABLE')
    execute function audit.follow_schema_changes();
  comment on event trigger audit_capture_ddl is
    'audit-logs: regenerates capture of tracked tables after a change of their columns, key or partitions.';
exception when insufficient_privilege then
  raise warning 'audit-logs: event trigger audit_capture_ddl not created: % may not create event triggers', current_user
    using hint = 'Capture then probes pg_cast once per statement, and a table whose columns or partitions change '
                 'must be enabled again by hand (audit.tracked_tables.needs_refresh says when). To create it, as a '
                 'superuser: create event trigger audit_capture_ddl on ddl_command_end when tag in (''ALTER TABLE'', '
                 '''CREATE TABLE'') execute function audit.follow_schema_changes(); then enable tracking again.';
end
$event_trigger$;

-- ---------------------------------------------------------------------------------------------
-- What is tracked, and whether capture still fires
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
         then 'the table was renamed' end,
    case when t.options -> 'columns' <> coalesce((select jsonb_agg(a.attname order by a.attnum) from pg_attribute a
                                                  where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped), '[]')
         then 'its columns changed' end,
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
-- Capture that no longer fires for the application: a trigger dropped, disabled, or set to fire
-- only for replication, on the table or on a partition that has the others.
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
  -- Rows serialized with to_jsonb directly are safe only while the event trigger regenerates
  -- capture when a column changes type.
  || case when t.options ->> 'serialization' = 'plain'
               and not exists (select from pg_event_trigger where evtname = 'audit_capture_ddl' and evtenabled in ('O', 'A'))
          then array['the event trigger audit_capture_ddl is missing or disabled'] else '{}' end as list
) as problems
where not c.relispartition
  and t.oid = (select min(f.oid) from audit.capture_triggers f where f.relid = t.relid);

comment on column audit.tracked_tables.needs_refresh is
  'Empty when tracking is current; otherwise what changed since it was enabled (capture_problems included). '
  'Run audit.enable_tracking again.';
comment on column audit.tracked_tables.capture_role is
  'The role capture runs as: audit_writer, or the audit log''s owner where the migration could not create it.';
comment on column audit.tracked_tables.serialization is
  'How capture turns rows into jsonb: plain (to_jsonb), gated (to_jsonb unless a user type has a cast to json) or '
  'sandboxed (as audit_sandbox, a role with no rights). See V5__capture_rights.sql.';
comment on column audit.tracked_tables.capture_problems is
  'Capture triggers that are missing, disabled or replica-only (writes that go unrecorded), or a missing event '
  'trigger that capture relies on: fixed by enabling tracking again.';

-- ---------------------------------------------------------------------------------------------
-- Bounded waits
-- ---------------------------------------------------------------------------------------------

-- Who holds an advisory lock (bigint key): pid, role and application, for an error message.
create function audit.advisory_lock_holders(key bigint)
returns text
language sql
stable
set search_path = ''
as $$
  select coalesce(string_agg(format('pid %s (role %s%s)', a.pid, a.usename,
                                    case when a.application_name <> '' then ', application ' || a.application_name else '' end),
                             ', ' order by a.pid),
                  'a session that has since ended')
    from pg_locks l join pg_stat_activity a on a.pid = l.pid
   where l.locktype = 'advisory' and l.granted and l.database = (select oid from pg_database where datname = current_database())
     and l.classid = ((key >> 32) & 4294967295)::oid and l.objid = (key & 4294967295)::oid and l.objsubid = 1
$$;
comment on function audit.advisory_lock_holders(bigint) is
  'The sessions holding an advisory lock of this key, as "pid N (role R, application A)".';

-- Takes a transaction-level advisory lock, waiting at most max_wait, or what the setting
-- audit.lock_wait says (an interval), and leaves the session's lock_timeout as it was; else
-- raises AL011 naming the sessions that hold it.
create function audit.advisory_xact_lock(key bigint, purpose text, max_wait interval)
returns void
language plpgsql
set search_path = ''
as $$
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
comment on function audit.advisory_xact_lock(bigint, text, interval) is
  'pg_advisory_xact_lock with a bounded wait (max_wait, or the setting audit.lock_wait): AL011 names the holders.';
revoke all on function audit.advisory_xact_lock(bigint, text, interval), audit.advisory_lock_holders(bigint) from public;

create or replace function audit.seal(
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
comment on function audit.seal() is
  'Chains every committed, not yet sealed row of audit.audit_logs into a new seal and returns it (seal_id null and '
  'row_count 0 when there was nothing to seal). Never blocks writers; waits at most 60 s for another seal (AL011 '
  'names who holds its lock). Run it often (pg_cron: every minute); verify with `audit-logs verify`.';

-- ---------------------------------------------------------------------------------------------
-- What set_context accepts can be written
-- ---------------------------------------------------------------------------------------------

-- Same as V1, plus the per-field limit the Node and Rust layers have (1024 bytes): a longer
-- actor_id passed set_context and then failed the application's write on the actor index.
create or replace function audit.normalize_context(context jsonb)
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
comment on function audit.normalize_context(jsonb) is
  'Checks an audit context (an object of strings of at most 1024 bytes; ip_address an IP address; metadata an '
  'object; at most 8 KiB in all) and drops null keys.';

-- ---------------------------------------------------------------------------------------------
-- A context counts only in the transaction that set it
-- ---------------------------------------------------------------------------------------------

-- Set through audit.set_context (or audit.set_checked_context, for clients that checked it), a
-- context carries its transaction's start time ("@transaction": now()). Capture and events take
-- a context only when it is their transaction's: one left by a session-level SET (which would
-- attribute every later transaction of that session) or set_config'd by hand is recorded as
-- ignored, with nothing of it. One comparison per statement.
create or replace function audit.set_context(context jsonb)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  normalized jsonb := audit.normalize_context(context);
begin
  perform set_config('audit.context',
                     coalesce((normalized || jsonb_build_object('@transaction', now()))::text, ''), true);
  return normalized;
end
$$;
comment on function audit.set_context(jsonb) is
  'Attributes the rest of the current transaction: keys actor_id, actor_type, actor_email, ip_address, '
  'user_agent, request_id, reason, migration_name and metadata (an object). Transaction-local, so it is '
  'safe behind transaction-mode poolers. Example: select audit.set_context(''{"actor_type": "migration", '
  '"migration_name": "0042_backfill"}'');';

-- What the Node and Rust layers call, having checked the context themselves: one inlined
-- set_config, no function call. Not a way around the checks: a context only ever attributes
-- the application's own changes, and the application chooses it.
create function audit.set_checked_context(context text)
returns text
language sql
volatile
as $$
  select pg_catalog.set_config('audit.context',
    case when context is null or context operator(pg_catalog.=) '' then ''
         else (context::pg_catalog.jsonb
               operator(pg_catalog.||) pg_catalog.jsonb_build_object('@transaction', pg_catalog.now()))::pg_catalog.text end,
    true)
$$;
comment on function audit.set_checked_context(text) is
  'Sets the audit context of the current transaction from a context the caller checked (the Node and Rust '
  'layers), as JSON text; an empty text clears it. SQL users call audit.set_context, which checks it.';
grant execute on function audit.set_checked_context(text) to public;

create or replace function audit.current_context()
returns jsonb
language sql
stable
set search_path = ''
as $$
  select case when c -> '@transaction' = to_jsonb(now()) then c - '@transaction' end
    from (select nullif(current_setting('audit.context', true), '')::jsonb as c) as setting
$$;
comment on function audit.current_context() is
  'The audit context of the current transaction, or null (also when the setting was not made in this transaction).';

-- ---------------------------------------------------------------------------------------------
-- Bring every tracked table along
-- ---------------------------------------------------------------------------------------------

-- Every tracked table is enabled again with the options it had (excluded columns that no longer
-- exist left out; a renamed table takes its current name, as enabling it again always did), so
-- it gets a capture function of its own. Before V5 an application could attach a table's capture
-- function to a table of its own: such a table is enabled under its own name too (genuine
-- entries from now on) and the forged triggers go with the old function. A table that cannot be
-- enabled again (say, it lost its primary key) keeps its old capture, locked down: no longer
-- executable by PUBLIC, owned by audit_writer, and attached to it alone (or, if the function
-- was generated for another table, not at all).
do $regenerate$
declare
  tracked record;
  stray record;
  generated_for text;
  own boolean;
begin
  for tracked in
    select c.oid::regclass as rel, format('%I.%I', n.nspname, c.relname) as name,
           t.function_id::regprocedure as capture_function
      from audit.capture_triggers t
      join pg_class c on c.oid = t.relid
      join pg_namespace n on n.oid = c.relnamespace
     where t.name = 'audit_capture_insert' and not c.relispartition
  loop
    begin
      -- No options given: it keeps the ones it has.
      perform audit.enable_tracking(tracked.rel);
    exception when others then
      raise warning 'audit-logs: capture of % could not be regenerated (%): it keeps its old capture function, locked down',
        tracked.rel, sqlerrm
        using hint = format('Fix the table and enable tracking again: select audit.enable_tracking(%L);', tracked.rel::text);
      continue when not exists (select from pg_proc where oid = tracked.capture_function);
      generated_for := (select substring(p.prosrc from 'Generated by audit.enable_tracking for (.*?); run it again')
                          from pg_proc p where p.oid = tracked.capture_function);
      own := generated_for = tracked.name
             or not exists (select from audit.capture_triggers t
                             where t.function_id = tracked.capture_function and t.relid <> tracked.rel
                               and t.relid not in (select relid from pg_partition_tree(tracked.rel)));
      for stray in
        select t.tgname as name, t.tgrelid::regclass as on_rel
          from pg_trigger t
         where t.tgfoid = tracked.capture_function
           and (own = (t.tgrelid <> tracked.rel and t.tgrelid not in (select relid from pg_partition_tree(tracked.rel))))
      loop
        raise warning 'audit-logs: dropped trigger % on %: it called the capture function of %',
          stray.name, stray.on_rel, coalesce(generated_for, tracked.name);
        execute format('drop trigger %I on %s', stray.name, stray.on_rel);
      end loop;
      execute format('revoke all on function %s from public', tracked.capture_function);
      if exists (select from pg_roles where rolname = 'audit_writer') then
        perform audit.give_function(tracked.capture_function, 'audit_writer');
      end if;
    end;
  end loop;
end
$regenerate$;

-- Capture functions that no capture trigger calls any more (their table's triggers were dropped
-- by hand), and whatever else still calls them: executable by PUBLIC before V5, so forgeable.
do $orphans$
declare
  orphan regprocedure;
begin
  for orphan in
    select p.oid::regprocedure from pg_catalog.pg_proc p
     where p.pronamespace = 'audit'::regnamespace and p.proname::text like 'capture %'
       and not exists (select from audit.capture_triggers t where t.function_id = p.oid)
  loop
    execute format('drop function %s cascade', orphan);
  end loop;
end
$orphans$;

grant select on audit.capture_triggers to public;
do $grants$
begin
  if exists (select from pg_catalog.pg_roles where rolname = 'audit_reader') then
    grant select on audit.capture_triggers to audit_reader;
  end if;
end
$grants$;
