-- The least a per-row capture with V9's context rules can do: the marker checked, the context's
-- columns read with ->> (no jsonb_populate_record, no metadata merge), the row serialized once,
-- no diff (the whole old row), one INSERT ... VALUES. A lower bound, not a candidate as is.
select audit.disable_tracking('public.accounts');
create function audit."capture row public.accounts"() returns trigger language plpgsql security definer as $$
declare
  raw pg_catalog.text := pg_catalog.current_setting('audit.context', true);
  ctx pg_catalog.jsonb;
  n pg_catalog.jsonb := pg_catalog.to_jsonb(new);
begin
  if pg_catalog.current_setting('audit.context_marker', true) operator(pg_catalog.=)
       (pg_catalog.to_jsonb(pg_catalog.now())::pg_catalog.text operator(pg_catalog.||) raw) then
    ctx := raw::pg_catalog.jsonb;
  end if;
  insert into audit.audit_logs (action, target_type, target_id, old_values, new_values,
                                actor_id, actor_type, ip_address, request_id)
  values (tg_op, 'public.accounts', n operator(pg_catalog.->>) 'id',
          case when tg_op operator(pg_catalog.=) 'UPDATE' then pg_catalog.to_jsonb(old) end, n,
          ctx operator(pg_catalog.->>) 'actor_id', ctx operator(pg_catalog.->>) 'actor_type',
          (ctx operator(pg_catalog.->>) 'ip_address')::pg_catalog.inet, ctx operator(pg_catalog.->>) 'request_id');
  return null;
end
$$;
alter function audit."capture row public.accounts"() owner to audit_writer;
create trigger row_insert after insert on public.accounts for each row execute function audit."capture row public.accounts"();
create trigger row_update after update on public.accounts for each row execute function audit."capture row public.accounts"();
