-- audit-logs V3: application events, the entries that are not row changes (user.login,
-- export.created, permission.denied, read...), in the same table so that an entity's timeline is
-- one query. Written through these functions only: the application role has no privilege on
-- the table, and an event can never pose as a row change.

create function audit.check_event(action text, target_type text, target_id text, metadata jsonb)
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
comment on function audit.check_event(text, text, text, jsonb) is
  'Raises AL007 unless the action, target and metadata make a valid application event.';

-- An event's context over the transaction's: keys given with the event win, the others (IP,
-- request id... set once per request) are kept; metadata objects are merged the same way.
create function audit.event_context(given jsonb)
returns jsonb
language sql
stable
set search_path = ''
as $$
  select nullif(jsonb_strip_nulls(
           coalesce(base, '{}') || coalesce(own, '{}')
           || jsonb_build_object('metadata', nullif(coalesce(base -> 'metadata', '{}') || coalesce(own -> 'metadata', '{}'), '{}'))),
         '{}')
    from (select audit.current_context() as base, audit.normalize_context(given) as own) as contexts
$$;
comment on function audit.event_context(jsonb) is
  'The context an event is recorded with: the given context''s keys over the transaction''s audit.context.';

create function audit.log_event(
  action text,
  target_type text default null,
  target_id text default null,
  metadata jsonb default null,
  context jsonb default null
)
returns audit.audit_logs
language plpgsql
security definer
set search_path = ''
as $$
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
comment on function audit.log_event(text, text, text, jsonb, jsonb) is
  'Records an application event (action such as user.login) about a target, attributed to context '
  '(an audit context object) over the transaction''s audit.context. Returns the entry. Use it in FROM '
  '(select * from audit.log_event(...)) so it runs once. Errors: AL007 bad event, AL004 bad context.';

create function audit.log_events(events jsonb)
returns setof audit.audit_logs
language plpgsql
security definer
set search_path = ''
as $$
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
comment on function audit.log_events(jsonb) is
  'Records many application events in one statement: a JSON array of {action, target_type, target_id, '
  'metadata, context}. Returns the entries in the order given. All or none: one bad event fails the call (AL007).';

grant execute on function audit.log_event(text, text, text, jsonb, jsonb), audit.log_events(jsonb),
  audit.check_event(text, text, text, jsonb), audit.event_context(jsonb) to public;
