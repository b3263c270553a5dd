-- audit-logs V2: capture of row changes.
--
-- audit.enable_tracking(table) generates one capture function per table and attaches it as
-- statement-level triggers with transition tables (AFTER INSERT, UPDATE, DELETE; BEFORE TRUNCATE).
-- Why this shape (measured, see README "How capture works"):
-- * statement-level: one INSERT ... SELECT per statement, so a bulk change costs about half of
--   what a per-row trigger costs, and the context is read once per statement;
-- * generated per table: the primary key expression, the column list and the excluded columns are
--   fixed at enable time; the UPDATE diff walks that column list in audit.row_diff, which is cheaper
--   than a jsonb_each join and, unlike a diff unrolled into the query, costs nothing to plan;
-- * columns are read through jsonb, never by name, so dropping a column cannot break a write;
--   columns added later are noticed per row and diffed generically until tracking is refreshed;
-- * security definer WITHOUT a set clause (the clause costs ~6% per statement): instead every
--   name in the generated code is schema-qualified and every operator is written as
--   operator(pg_catalog.x), so the caller's search_path cannot substitute anything.

-- Generic diff for rows of a table whose columns changed since tracking was enabled.
create function audit.jsonb_changed_keys(old_row jsonb, new_row jsonb)
returns text[]
language sql
immutable
parallel safe
set search_path = ''
as $$
  select coalesce(array_agg(o.key order by o.key), '{}')
  from jsonb_each(old_row) o
  where new_row -> o.key is distinct from o.value
$$;
comment on function audit.jsonb_changed_keys(jsonb, jsonb) is
  'The keys whose values differ between two rows of the same table (as jsonb), sorted.';

create function audit.jsonb_changed_values(old_row jsonb, new_row jsonb)
returns jsonb
language sql
immutable
parallel safe
set search_path = ''
as $$
  select coalesce(jsonb_object_agg(o.key, o.value), '{}')
  from jsonb_each(old_row) o
  where new_row -> o.key is distinct from o.value
$$;
comment on function audit.jsonb_changed_values(jsonb, jsonb) is
  'The old values of the keys whose values differ between two rows of the same table (as jsonb).';

-- The UPDATE diff of one row, over the columns known when tracking was enabled. Called per row
-- from the capture functions, so no set clause (it would cost more than the diff): every name is
-- schema-qualified and every operator is written out.
create function audit.row_diff(
  old_row jsonb,
  new_row jsonb,
  known_columns text[],
  excluded_columns text[],
  out changed_fields text[],
  out old_values jsonb
)
language plpgsql
immutable
parallel safe
as $$
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
comment on function audit.row_diff(jsonb, jsonb, text[], text[]) is
  'The changed columns (in table order; excluded ones named) and their old values (excluded ones never) of an updated row.';

-- The expression, over the jsonb row named row_var, that gives the primary key as text: the value
-- itself for a one-column key, a JSON array for a composite key.
create function audit.key_expression(row_var text, key_columns text[])
returns text
language sql
immutable
set search_path = ''
as $$
  select case
    when cardinality(key_columns) = 1 then
      format('%s operator(pg_catalog.->>) %L', row_var, key_columns[1])
    else
      format('pg_catalog.jsonb_build_array(%s)::pg_catalog.text',
             (select string_agg(format('%s operator(pg_catalog.->) %L', row_var, k), ', ' order by i)
              from unnest(key_columns) with ordinality as u(k, i)))
  end
$$;
comment on function audit.key_expression(text, text[]) is
  'SQL text of the target_id expression for a jsonb row variable (used by the capture generator).';

-- The source of the capture function for one table. Kept separate from enable_tracking so the
-- generated code can be read (select audit.capture_function_sql(...)) and tested.
create function audit.capture_function_sql(function_name text, options jsonb)
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
  skip_unchanged boolean := (options ->> 'skip_unchanged')::boolean;
  require_context boolean := coalesce((options ->> 'require_context')::boolean, false);
  missing_context text := '';
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
  if raw is null or raw operator(pg_catalog.=) '' then
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
  truncated pg_catalog.text;
begin
  if raw operator(pg_catalog.<>) '' then
    ctx := raw::pg_catalog.jsonb;
    c := pg_catalog.jsonb_populate_record(null::audit.context_columns, ctx);
    meta := (ctx operator(pg_catalog.-) %3$s)
            operator(pg_catalog.||) coalesce((ctx operator(pg_catalog.->) 'metadata'), '{}'::pg_catalog.jsonb);
    if meta operator(pg_catalog.=) '{}'::pg_catalog.jsonb then
      meta := null;
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
      from rows from (pg_catalog.unnest(array(select pg_catalog.to_jsonb(r) from old_rows r)),
                      pg_catalog.unnest(array(select pg_catalog.to_jsonb(r) from new_rows r))) as p(o, n)
      %11$s
      -- A fence, so that row_diff runs once per row rather than once per output column.
      offset 0
    ) as d;
  elsif tg_op operator(pg_catalog.=) 'INSERT' then
    insert into audit.audit_logs (action, target_type, target_id, new_values, %4$s)
    select 'INSERT', %2$L, (%10$s), (p.n%5$s), %8$s
    from (select pg_catalog.to_jsonb(r) as n from new_rows r) as p;
  elsif tg_op operator(pg_catalog.=) 'DELETE' then
    insert into audit.audit_logs (action, target_type, target_id, old_values, %4$s)
    select 'DELETE', %2$L, (%9$s), (p.o%5$s), %8$s
    from (select pg_catalog.to_jsonb(r) as o from old_rows r) as p;
  elsif tg_op operator(pg_catalog.=) 'TRUNCATE' then
    -- Record every row that is about to go. A partitioned table's own trigger covers only the
    -- partitions that lack one (created after tracking was enabled); the others record themselves.
    for truncated in
      select pg_catalog.format('%%I.%%I', n.nspname, cl.relname)
      from pg_catalog.pg_class cl
      join pg_catalog.pg_namespace n on n.oid operator(pg_catalog.=) cl.relnamespace
      where cl.oid operator(pg_catalog.=) tg_relid and cl.relkind operator(pg_catalog.=) 'r'
      union all
      select pg_catalog.format('%%I.%%I', n.nspname, cl.relname)
      from pg_catalog.pg_partition_tree(tg_relid) as pt
      join pg_catalog.pg_class cl on cl.oid operator(pg_catalog.=) pt.relid
      join pg_catalog.pg_namespace n on n.oid operator(pg_catalog.=) cl.relnamespace
      where pt.isleaf and cl.oid operator(pg_catalog.<>) tg_relid
        and not exists (select from pg_catalog.pg_trigger t
                        where t.tgrelid operator(pg_catalog.=) pt.relid
                          and t.tgname operator(pg_catalog.=) 'audit_capture_truncate')
    loop
      execute pg_catalog.format(
        'insert into audit.audit_logs (action, target_type, target_id, old_values, %4$s) '
        'select ''TRUNCATE'', $8, (%%s), (p.o%%s), $1, $2, $3, $4, $5, $6, $7 '
        'from (select pg_catalog.to_jsonb(r) as o from only %%s r) as p',
        %9$L, %5$L, truncated)
        using c.actor_id, c.actor_type, c.actor_email, c.ip_address, c.user_agent, c.request_id, meta, %2$L;
    end loop;
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
    audit.key_expression('p.o', key_columns),        -- 9
    audit.key_expression('p.n', key_columns),        -- 10
    where_changed,                                   -- 11
    missing_context);                                -- 12
end
$$;
comment on function audit.capture_function_sql(text, jsonb) is
  'The source of the capture function that audit.enable_tracking installs for a table with these options.';

-- A readable, unique function name per table: "capture public.users", hashed when too long, and
-- numbered when the name is taken by another table (say, one renamed after it was tracked).
create function audit.capture_function_name(target regclass, target_type text)
returns text
language plpgsql
stable
set search_path = ''
as $$
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
comment on function audit.capture_function_name(regclass, text) is
  'The name of the capture function of a table: "capture schema.table", hashed when long, numbered when taken.';

create function audit.disable_tracking(target regclass)
returns boolean
language plpgsql
set search_path = ''
as $$
declare
  rel regclass;
  capture_function regprocedure;
  was_tracked boolean := false;
begin
  if target is null then
    raise exception 'audit-logs: disable_tracking needs a table, got null' using errcode = '22004';
  end if;
  for rel, capture_function in
    select t.tgrelid::regclass, t.tgfoid::regprocedure
      from pg_trigger t
     where t.tgname = 'audit_capture_insert'
       and (t.tgrelid = target
            or t.tgrelid in (select relid from pg_partition_tree(target) where relid <> target))
  loop
    execute format('drop trigger if exists audit_capture_insert on %s', rel);
    execute format('drop trigger if exists audit_capture_update on %s', rel);
    execute format('drop trigger if exists audit_capture_delete on %s', rel);
    execute format('drop trigger if exists audit_capture_truncate on %s', rel);
    if not exists (select from pg_trigger where tgfoid = capture_function) then
      execute format('drop function if exists %s', capture_function);
    end if;
    was_tracked := true;
  end loop;
  return was_tracked;
end
$$;
comment on function audit.disable_tracking(regclass) is
  'Stops recording changes of a table (and its partitions). Idempotent: returns false when it was not tracked. '
  'Its history stays in audit.audit_logs.';

create function audit.enable_tracking(
  target regclass,
  exclude_columns text[] default '{}',
  skip_unchanged boolean default true,
  require_context boolean default false
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  rel record;
  target_type text;
  key_columns text[];
  all_columns text[];
  unknown_columns text[];
  options jsonb;
  function_name text;
  audit_owner name;
  leaf regclass;
begin
  if target is null then
    raise exception 'audit-logs: enable_tracking needs a table, got null' using errcode = '22004';
  end if;
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

  key_columns := array(
    select a.attname::text
      from pg_index i
      cross join unnest(i.indkey) with ordinality as k(attnum, position)
      join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
     where i.indrelid = target and i.indisprimary
     order by k.position);
  if cardinality(key_columns) = 0 then
    raise exception 'audit-logs: cannot track % because it has no primary key', target
      using errcode = 'AL001',
            hint = format('Add one (alter table %s add primary key (...)) and enable tracking again.', target);
  end if;

  all_columns := array(
    select attname::text from pg_attribute
     where attrelid = target and attnum > 0 and not attisdropped
     order by attnum);
  exclude_columns := array(select distinct unnest(coalesce(exclude_columns, '{}')) order by 1);
  unknown_columns := array(select unnest(exclude_columns) except select unnest(all_columns) order by 1);
  if cardinality(unknown_columns) > 0 then
    raise exception 'audit-logs: cannot exclude % from %: no such column', array_to_string(unknown_columns, ', '), target
      using errcode = 'AL003', hint = format('The columns of %s are: %s.', target, array_to_string(all_columns, ', '));
  end if;
  if exclude_columns && key_columns then
    raise exception 'audit-logs: cannot exclude % from %: it is part of the primary key, which identifies every entry',
      array_to_string(array(select unnest(exclude_columns) intersect select unnest(key_columns)), ', '), target
      using errcode = 'AL003';
  end if;

  -- The capture function runs as the owner of audit.audit_logs, whoever writes the table.
  select pg_get_userbyid(c.relowner) into audit_owner from pg_class c where c.oid = 'audit.audit_logs'::regclass;
  if not pg_has_role(current_user, audit_owner, 'member') then
    raise exception 'audit-logs: role % cannot enable tracking: only the owner of audit.audit_logs (%) or its members can',
      current_user, audit_owner
      using errcode = '42501', hint = 'Enable tracking as the role that ran the audit-logs migrations.';
  end if;

  target_type := format('%I.%I', rel.nspname, rel.relname);
  options := jsonb_build_object(
    'target_type', target_type,
    'primary_key', to_jsonb(key_columns),
    'columns', to_jsonb(all_columns),
    'exclude_columns', to_jsonb(exclude_columns),
    'skip_unchanged', coalesce(skip_unchanged, true),
    'require_context', coalesce(require_context, false));

  -- Enabling again refreshes: same name, new code, new trigger arguments.
  perform audit.disable_tracking(target);
  function_name := audit.capture_function_name(target, target_type);
  execute audit.capture_function_sql(function_name, options);
  execute format('alter function audit.%I() owner to %I', function_name, audit_owner);
  execute format('comment on function audit.%I() is %L', function_name,
                 format('Records changes of %s in audit.audit_logs (generated by audit.enable_tracking).', target_type));

  for leaf in
    select target
    union all
    select relid from pg_partition_tree(target) where relid <> target and isleaf
  loop
    execute format('create trigger audit_capture_insert after insert on %s referencing new table as new_rows '
                   'for each statement execute function audit.%I(%L)', leaf, function_name, options);
    execute format('create trigger audit_capture_update after update on %s referencing old table as old_rows '
                   'new table as new_rows for each statement execute function audit.%I(%L)', leaf, function_name, options);
    execute format('create trigger audit_capture_delete after delete on %s referencing old table as old_rows '
                   'for each statement execute function audit.%I(%L)', leaf, function_name, options);
    execute format('create trigger audit_capture_truncate before truncate on %s '
                   'for each statement execute function audit.%I(%L)', leaf, function_name, options);
  end loop;
  return options;
end
$$;
comment on function audit.enable_tracking(regclass, text[], boolean, boolean) is
  'Records every INSERT, UPDATE, DELETE and TRUNCATE of a table in audit.audit_logs. Options: exclude_columns '
  '(never stored, e.g. password_hash), skip_unchanged (default true: updates that change nothing are not '
  'recorded), require_context (default false: when true, a write with no audit context fails with AL006). '
  'Idempotent; run it again after altering the table to refresh. Errors: AL001 no primary key, '
  'AL002 not a table, AL003 bad excluded column, AL005 audit-logs'' own table.';

create view audit.tracked_tables as
select
  n.nspname::text as schema_name,
  c.relname::text as table_name,
  o.options ->> 'target_type' as target_type,
  array(select jsonb_array_elements_text(o.options -> 'primary_key')) as primary_key,
  array(select jsonb_array_elements_text(o.options -> 'exclude_columns')) as excluded_columns,
  (o.options ->> 'skip_unchanged')::boolean as skip_unchanged,
  coalesce((o.options ->> 'require_context')::boolean, false) as require_context,
  t.tgfoid::regprocedure::text as capture_function,
  array_remove(array[
    case when o.options ->> 'target_type' <> format('%I.%I', n.nspname, c.relname)
         then 'the table was renamed' end,
    case when o.options -> 'columns' <> coalesce((select jsonb_agg(a.attname order by a.attnum) from pg_attribute a
                                                  where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped), '[]')
         then 'its columns changed' end,
    case when o.options -> 'primary_key' <> coalesce((select jsonb_agg(a.attname order by k.position)
                                                      from pg_index i
                                                      cross join unnest(i.indkey) with ordinality as k(attnum, position)
                                                      join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
                                                      where i.indrelid = c.oid and i.indisprimary), '[]')
         then 'its primary key changed' end,
    case when exists (select from pg_partition_tree(c.oid) pt
                      where pt.isleaf and pt.relid <> c.oid
                        and not exists (select from pg_trigger lt where lt.tgrelid = pt.relid and lt.tgname = 'audit_capture_insert'))
         then 'some partitions are not tracked' end
  ], null) as needs_refresh
from pg_trigger t
join pg_class c on c.oid = t.tgrelid
join pg_namespace n on n.oid = c.relnamespace
cross join lateral (
  select convert_from(substring(t.tgargs from 1 for length(t.tgargs) - 1), 'UTF8')::jsonb as options
) as o
where t.tgname = 'audit_capture_insert' and not c.relispartition;

comment on view audit.tracked_tables is
  'The tracked tables, their options, and why tracking needs a refresh (run audit.enable_tracking again) if it does.';
comment on column audit.tracked_tables.schema_name is 'The schema of the tracked table.';
comment on column audit.tracked_tables.table_name is 'The tracked table.';
comment on column audit.tracked_tables.target_type is 'The name recorded in audit_logs.target_type.';
comment on column audit.tracked_tables.primary_key is 'The columns that make target_id.';
comment on column audit.tracked_tables.excluded_columns is 'Columns whose values are never stored.';
comment on column audit.tracked_tables.skip_unchanged is 'Whether updates that change nothing are skipped.';
comment on column audit.tracked_tables.require_context is 'Whether a write without an audit context fails (AL006).';
comment on column audit.tracked_tables.capture_function is 'The generated function the triggers call.';
comment on column audit.tracked_tables.needs_refresh is
  'Empty when tracking is current; otherwise what changed since it was enabled.';

grant select on audit.tracked_tables to public;
grant execute on function audit.jsonb_changed_keys(jsonb, jsonb), audit.jsonb_changed_values(jsonb, jsonb),
  audit.row_diff(jsonb, jsonb, text[], text[]) to public;
