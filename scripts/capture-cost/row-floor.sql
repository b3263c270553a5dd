-- The floor of a per-row capture: a row trigger (security definer, owned by audit_writer)
-- inserting an audit row of the size this package writes, everything precomputed, into the log
-- as it is. What remains is the trigger's firing and the audit INSERT ... VALUES itself.
select audit.disable_tracking('public.accounts');
create function audit.bench_row_floor() returns trigger language plpgsql security definer as $$
begin
  insert into audit.audit_logs (action, target_type, target_id, old_values, new_values, changed_fields,
                                actor_id, actor_type, ip_address, request_id)
  values ('UPDATE', 'public.accounts', '123456', '{"abalance": -1234}',
          '{"id": 123456, "bid": 2, "filler": "                                                                                    ", "abalance": 4321}',
          '{abalance}', 'user-1234', 'user', '10.0.0.1', 'req-123456');
  return null;
end $$;
alter function audit.bench_row_floor() owner to audit_writer;
grant execute on function audit.bench_row_floor() to app;
create trigger floor_insert after insert on public.accounts for each row execute function audit.bench_row_floor();
create trigger floor_update after update on public.accounts for each row execute function audit.bench_row_floor();
