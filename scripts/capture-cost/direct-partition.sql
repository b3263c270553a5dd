-- Entries inserted straight into this month's partition: no partition routing. A partition
-- does not inherit the log's identity (PostgreSQL 15), so the id is taken from its sequence.
\ir _rewrite.sql
select set_config('variant.partition', :'partition', false);
do $$
begin
  execute format('grant insert on audit.%I to audit_writer', current_setting('variant.partition'));
  execute format('grant usage on sequence %s to audit_writer', pg_get_serial_sequence('audit.audit_logs', 'id'));
end
$$;
select pg_temp.rewrite_capture('\n    insert into audit.audit_logs \(',
                               format(E'\n    insert into audit.%I (id, ', current_setting('variant.partition')));
select pg_temp.rewrite_capture('\n    select ''(UPDATE|INSERT|DELETE)'', ',
                               format(E'\n    select pg_catalog.nextval(%L::pg_catalog.regclass), ''\\1'', ',
                                      pg_get_serial_sequence('audit.audit_logs', 'id')));
