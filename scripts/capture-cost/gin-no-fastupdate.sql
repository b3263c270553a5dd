-- The changed_fields GIN index of every partition without its pending list (fastupdate = off):
-- entries go straight into the tree.
do $$
declare i regclass;
begin
  for i in select inhrelid::regclass from pg_inherits where inhparent = 'audit.audit_logs_changed_fields_idx'::regclass loop
    execute format('alter index %s set (fastupdate = off)', i);
  end loop;
end
$$;
