-- Rejected for V9 (README "Performance"): the context's columns derived once per transaction by
-- the setters (audit.set_context, audit.set_checked_context) into a second setting,
-- audit.context_row (a composite's text), which capture reads with one cast instead of parsing
-- the JSON, checking its marker, populating a record and computing metadata in each statement.
-- Taken only when written in this transaction for the context the transaction holds (its text,
-- compared); otherwise the context is parsed as before. Measured: capture 26.5k instructions
-- less per statement, the setter 67k more per transaction (the untracked variant does not
-- include it: compare "shipped" and this variant's whole transactions). Built on V8's context
-- rules: run with UNTIL=8.

-- ---------------------------------------------------------------------------------------------
-- The context's columns, derived once per transaction
-- ---------------------------------------------------------------------------------------------

create type audit.context_row as (
  at double precision,
  actor_id text,
  actor_type text,
  actor_email text,
  ip_address inet,
  user_agent text,
  request_id text,
  metadata jsonb,
  source text
);
comment on type audit.context_row is
  'What capture writes of a context: at (the epoch of the transaction that set it), the columns, the rest as '
  'metadata (null when empty), and source (the audit.context text it was derived from).';

-- The columns of a context whose marker is this transaction's. PL/pgSQL, planned once per
-- session (a SQL function that is not inlined is planned at each call); no set clause (it runs
-- per transaction): every name is qualified.
create function audit.context_row(ctx jsonb, source text)
returns audit.context_row
language plpgsql
stable
as $$
declare
  rest pg_catalog.jsonb :=
    (ctx operator(pg_catalog.-) '{actor_id,actor_type,actor_email,ip_address,user_agent,request_id,metadata,@transaction}'::pg_catalog.text[])
    operator(pg_catalog.||) coalesce(ctx operator(pg_catalog.->) 'metadata', '{}'::pg_catalog.jsonb);
begin
  return row(pg_catalog.date_part('epoch', pg_catalog.now()),
    ctx operator(pg_catalog.->>) 'actor_id', ctx operator(pg_catalog.->>) 'actor_type',
    ctx operator(pg_catalog.->>) 'actor_email', (ctx operator(pg_catalog.->>) 'ip_address')::pg_catalog.inet,
    ctx operator(pg_catalog.->>) 'user_agent', ctx operator(pg_catalog.->>) 'request_id',
    case when rest operator(pg_catalog.<>) '{}'::pg_catalog.jsonb then rest end, source)::audit.context_row;
end
$$;
comment on function audit.context_row(jsonb, text) is
  'The audit.context_row of a context (as audit.context holds it, marker included) and its text.';
grant execute on function audit.context_row(jsonb, text) to public;

-- ---------------------------------------------------------------------------------------------
-- The setters write both
-- ---------------------------------------------------------------------------------------------

create or replace function audit.set_context(context jsonb)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  normalized jsonb := audit.normalize_context(context);
  marked jsonb := normalized || jsonb_build_object('@transaction', now());
begin
  perform set_config('audit.context_row', coalesce(audit.context_row(marked, marked::text)::text, ''), true);
  perform set_config('audit.context', coalesce(marked::text, ''), true);
  return normalized;
end
$$;

-- Planned once per session (PL/pgSQL); every name is qualified (it runs with the caller's
-- search_path and rights).
create or replace function audit.set_checked_context(context text)
returns text
language plpgsql
volatile
as $$
declare
  marked pg_catalog.jsonb := case when context operator(pg_catalog.<>) '' then
    context::pg_catalog.jsonb operator(pg_catalog.||) pg_catalog.jsonb_build_object('@transaction', pg_catalog.now()) end;
  marked_text pg_catalog.text := coalesce(marked::pg_catalog.text, '');
  rest pg_catalog.jsonb :=
    (marked operator(pg_catalog.-) '{actor_id,actor_type,actor_email,ip_address,user_agent,request_id,metadata,@transaction}'::pg_catalog.text[])
    operator(pg_catalog.||) coalesce(marked operator(pg_catalog.->) 'metadata', '{}'::pg_catalog.jsonb);
begin
  perform pg_catalog.set_config('audit.context_row', coalesce(row(pg_catalog.date_part('epoch', pg_catalog.now()),
    marked operator(pg_catalog.->>) 'actor_id', marked operator(pg_catalog.->>) 'actor_type',
    marked operator(pg_catalog.->>) 'actor_email', (marked operator(pg_catalog.->>) 'ip_address')::pg_catalog.inet,
    marked operator(pg_catalog.->>) 'user_agent', marked operator(pg_catalog.->>) 'request_id',
    case when rest operator(pg_catalog.<>) '{}'::pg_catalog.jsonb then rest end, marked_text)::audit.context_row::pg_catalog.text, ''), true);
  return pg_catalog.set_config('audit.context', marked_text, true);
end
$$;

-- ---------------------------------------------------------------------------------------------
-- The capture template
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
    'c.actor_id, c.actor_type, c.actor_email, c.ip_address, c.user_agent, c.request_id, c.metadata';
begin
  if cardinality(excluded) > 0 then
    minus_excluded := format(' operator(pg_catalog.-) %L::pg_catalog.text[]', excluded);
  end if;
  if skip_unchanged then
    where_changed := 'where p.o operator(pg_catalog.<>) p.n';
  end if;
  if require_context then
    missing_context := format($check$
  if (c.at operator(pg_catalog.=) pg_catalog.date_part('epoch', pg_catalog.now())) is not true then
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
  -- What the setter derived from this context, read in one cast (see audit.context_row); a
  -- setting that is not a row (empty, or never set) is none.
  row_text pg_catalog.text := pg_catalog.current_setting('audit.context_row', true);
  c audit.context_row := case when row_text operator(pg_catalog.~~) '(%%' then row_text::audit.context_row end;
  ctx pg_catalog.jsonb;
  truncated pg_catalog.text;
  saved_row_security pg_catalog.text;
begin
  -- Only ever for its own table: the oids known when it was generated, else by name.
  if tg_relid operator(pg_catalog.<>) all (%13$L::pg_catalog.oid[]) then
    perform audit.check_capture_target(tg_relid, %2$L);
  end if;
  -- Set for this transaction by audit.set_context or audit.set_checked_context, which wrote the
  -- marker and, beside the context, its columns: taken when they are this transaction's and
  -- derived from this very context. Otherwise (a client that set the context itself) it is
  -- parsed here, gated by the marker: a value left by a session-level SET, or set_config'd by
  -- hand, attributes nothing. A value without the marker's key is not even parsed, so one that
  -- is not JSON fails no write (only one crafted with the key and broken JSON does).
  if (c.at operator(pg_catalog.=) pg_catalog.date_part('epoch', pg_catalog.now())
      and c.source operator(pg_catalog.=) raw) is not true then
    ctx := case when raw operator(pg_catalog.~~) '{%%"@transaction": "%%' then raw::pg_catalog.jsonb end;
    c := case when (ctx operator(pg_catalog.->) '@transaction') operator(pg_catalog.=) pg_catalog.to_jsonb(pg_catalog.now())
              then audit.context_row(ctx, raw)
              when raw operator(pg_catalog.<>) ''
              then row(null, null, null, null, null, null, null,
                     '{"audit_context_ignored": "not set for this transaction by audit.set_context"}', null)::audit.context_row
         end;
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
        using c.actor_id, c.actor_type, c.actor_email, c.ip_address, c.user_agent, c.request_id, c.metadata, %2$L;
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

-- Every capture function is generated again from its triggers' options, in place (create or
-- replace keeps its owner, rights and comment): the triggers are left as they are, so the
-- upgrade takes no lock on the application's tables. Its relations are those its triggers are
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

