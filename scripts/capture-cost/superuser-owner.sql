-- Capture owned by the migrating superuser, as before V5: what running as audit_writer costs
-- (privilege checks a superuser skips).
do $$
begin
  execute format('alter function %s owner to postgres',
                 (select function_id::regprocedure from audit.capture_triggers
                   where relid = 'public.accounts'::regclass limit 1));
end
$$;
