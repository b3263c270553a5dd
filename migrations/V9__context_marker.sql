-- audit-logs V9: setting the context and capturing a row cost less.
--
-- Design notes (README "Performance"; instructions counted with scripts/capture-cost.sh, one-row
-- statements, over untracked):
-- * The context's marker is a second setting, audit.context_marker: this transaction's start
--   (as JSON) followed by the context's text, written by audit.set_context and
--   audit.set_checked_context beside audit.context, which now holds the context as given. The
--   setter no longer parses and prints the JSON to add the marker into it (the Node and Rust
--   layers call it once per transaction), and capture and audit.current_context compare the
--   two settings before parsing: as before, a value left by a session-level SET or set_config'd
--   by hand attributes nothing (and one that is not JSON fails nothing). The setter costs 11.2k
--   instructions less per transaction, tracked or not (an untracked one-row INSERT transaction:
--   268.2k -> 257.0k), and capture's gate about 6k less per statement.
-- * The INSERT and DELETE capture queries read the transition rows through a subquery that the
--   planner pulled up, so to_jsonb(row) ran twice per row: once for target_id, once for the
--   values. Fenced with offset 0, it runs once: 12.4k fewer instructions for a one-row INSERT,
--   and a serialization less per row in bulk INSERT, DELETE and TRUNCATE. UPDATE already
--   serialized each row once (its rows go through arrays).
-- * Together, capture over untracked: a one-row INSERT 251.9k -> 233.6k, a one-row UPDATE
--   399.8k -> 393.6k; whole transactions (context, statement, capture) 520.2k -> 490.7k and
--   722.3k -> 705.0k.
-- * Measured and not kept: the context's columns derived once per transaction by the setters
--   into a third setting (a composite's text) that capture reads with one cast: capture -26.5k
--   a statement, the setter +67k a transaction (each PL/pgSQL expression is initialized again in
--   every transaction, with its functions' EXECUTE checks).
-- * The entries are the same, with the same context rules and rights. A transaction that set
--   its context before this migration committed and writes after it records that context as
--   ignored (its marker is the old one).

-- ---------------------------------------------------------------------------------------------
-- The context's marker, beside it
-- ---------------------------------------------------------------------------------------------

-- As V5's, with the marker beside the context instead of inside it.
create or replace function audit.set_context(context jsonb)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  normalized jsonb := audit.normalize_context(context);
begin
  perform set_config('audit.context_marker',
                     coalesce(to_jsonb(now())::text || normalized::text, ''), true);
  perform set_config('audit.context', coalesce(normalized::text, ''), true);
  return normalized;
end
$$;

-- As V7's, without parsing the context: the Node and Rust layers serialize it from their own
-- types and checked it. Text that is not JSON set through it makes the transaction's tracked
-- writes fail instead of this call, as a context crafted with V5's marker key did; checking it
-- here (context::json) would cost 8.2k of the 11.2k instructions saved per transaction.
-- PL/pgSQL, planned once per session; every name is qualified (it runs with the caller's
-- search_path and rights).
create or replace function audit.set_checked_context(context text)
returns text
language plpgsql
volatile
as $$
begin
  perform pg_catalog.set_config('audit.context_marker',
    case when context operator(pg_catalog.<>) ''
         then pg_catalog.to_jsonb(pg_catalog.now())::pg_catalog.text operator(pg_catalog.||) context
         else '' end, true);
  return pg_catalog.set_config('audit.context', coalesce(context, ''), true);
end
$$;

create or replace function audit.current_context()
returns jsonb
language sql
stable
set search_path = ''
as $$
  select case when s <> '' and current_setting('audit.context_marker', true) = to_jsonb(now())::text || s
              then s::jsonb end
    from (select current_setting('audit.context', true) as s) as setting
$$;

-- ---------------------------------------------------------------------------------------------
-- The capture template
-- ---------------------------------------------------------------------------------------------

-- As V7, with the marker read beside the context, and the INSERT, DELETE and TRUNCATE rows
-- serialized once.
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
$$;

-- ---------------------------------------------------------------------------------------------
-- Bring every tracked table along
-- ---------------------------------------------------------------------------------------------

-- As V7 did: every capture function is generated again from its triggers' options, in place
-- (create or replace keeps its owner, rights and comment): the triggers are left as they are, so
-- the upgrade takes no lock on the application's tables. Its relations are those its triggers are
-- on and their partitions, as when it was installed; a table whose capture drifted (renamed,
-- columns changed without the event trigger) keeps its drift, which audit.tracked_tables names.
do $regenerate$
declare
  capture record;
begin
  for capture in
    select t.function_id::regprocedure as fn, p.proname::text as name,
           (array_agg(t.options order by t.name <> 'audit_capture_insert', t.relid))[1] as options,
           (select jsonb_agg(distinct r.relid::bigint)
              from audit.capture_triggers o
              cross join lateral (select o.relid union select pt.relid from pg_partition_tree(o.relid) pt where pt.isleaf) r
             where o.function_id = t.function_id) as relation_ids
      from audit.capture_triggers t join pg_proc p on p.oid = t.function_id
     group by t.function_id, p.proname
  loop
    begin
      execute audit.capture_function_sql(capture.name,
                                         capture.options || jsonb_build_object('relation_ids', capture.relation_ids));
    exception when others then
      raise warning 'audit-logs: capture function % could not be regenerated (%): it keeps its code', capture.fn, sqlerrm
        using hint = 'Enable tracking of its table again: select audit.enable_tracking(...);';
    end;
  end loop;
end
$regenerate$;
