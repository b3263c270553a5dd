-- Statement triggers with transition tables as shipped, but a single row is read into PL/pgSQL
-- (one array query) and written with INSERT ... VALUES; many rows would take the set path.
create function audit."capture one public.accounts"() returns trigger language plpgsql security definer as $$
declare
  raw pg_catalog.text := pg_catalog.current_setting('audit.context', true);
  c audit.context_columns;
  meta pg_catalog.jsonb;
  ctx pg_catalog.jsonb;
  o pg_catalog.jsonb;
  n pg_catalog.jsonb;
  d record;
  os pg_catalog.jsonb[];
  ns pg_catalog.jsonb[];
begin
  if tg_relid operator(pg_catalog.<>) all (array['public.accounts'::pg_catalog.regclass::pg_catalog.oid]) then
    perform audit.check_capture_target(tg_relid, 'public.accounts');
  end if;
  if raw operator(pg_catalog.~~) '{%"@transaction": "%' then
    ctx := raw::pg_catalog.jsonb;
    if (ctx operator(pg_catalog.->) '@transaction') operator(pg_catalog.=) pg_catalog.to_jsonb(pg_catalog.now()) then
      c := pg_catalog.jsonb_populate_record(null::audit.context_columns, ctx);
      meta := nullif((ctx operator(pg_catalog.-) '{actor_id,actor_type,actor_email,ip_address,user_agent,request_id,metadata,@transaction}'::pg_catalog.text[])
              operator(pg_catalog.||) coalesce((ctx operator(pg_catalog.->) 'metadata'), '{}'::pg_catalog.jsonb), '{}'::pg_catalog.jsonb);
    else
      meta := '{"audit_context_ignored": "not set for this transaction by audit.set_context"}';
    end if;
  elsif raw operator(pg_catalog.<>) '' then
    meta := '{"audit_context_ignored": "not set for this transaction by audit.set_context"}';
  end if;
  if tg_op operator(pg_catalog.=) 'UPDATE' then
    select array(select pg_catalog.to_jsonb(r) from old_rows r), array(select pg_catalog.to_jsonb(r) from new_rows r) into os, ns;
    if pg_catalog.cardinality(ns) operator(pg_catalog.=) 1 then
      o := os[1];
      n := ns[1];
      if o operator(pg_catalog.=) n then
        return null;
      end if;
      d := audit.row_diff(o, n, '{id,bid,abalance,filler}'::pg_catalog.text[], '{}'::pg_catalog.text[]);
      insert into audit.audit_logs (action, target_type, target_id, old_target_id, old_values, new_values,
                                    changed_fields, actor_id, actor_type, actor_email, ip_address, user_agent, request_id, metadata)
      values ('UPDATE', 'public.accounts', n operator(pg_catalog.->>) 'id',
              case when (o operator(pg_catalog.->>) 'id') operator(pg_catalog.<>) (n operator(pg_catalog.->>) 'id') then o operator(pg_catalog.->>) 'id' end,
              d.old_values, n, d.changed_fields, c.actor_id, c.actor_type, c.actor_email, c.ip_address, c.user_agent, c.request_id, meta);
    else
      raise exception 'bulk not in this variant';
    end if;
  else
    ns := array(select pg_catalog.to_jsonb(r) from new_rows r);
    if pg_catalog.cardinality(ns) operator(pg_catalog.=) 1 then
      n := ns[1];
      insert into audit.audit_logs (action, target_type, target_id, new_values, actor_id, actor_type, actor_email, ip_address, user_agent, request_id, metadata)
      values ('INSERT', 'public.accounts', n operator(pg_catalog.->>) 'id', n, c.actor_id, c.actor_type, c.actor_email, c.ip_address, c.user_agent, c.request_id, meta);
    else
      raise exception 'bulk not in this variant';
    end if;
  end if;
  return null;
end
$$;
alter function audit."capture one public.accounts"() owner to audit_writer;
drop trigger audit_capture_insert on public.accounts;
drop trigger audit_capture_update on public.accounts;
create trigger audit_capture_insert after insert on public.accounts referencing new table as new_rows
  for each statement execute function audit."capture one public.accounts"();
create trigger audit_capture_update after update on public.accounts referencing old table as old_rows new table as new_rows
  for each statement execute function audit."capture one public.accounts"();
