-- audit-logs V8: what audit_reader may read includes which migrations ran.
--
-- `status` reads refinery's history table (audit.refinery_schema_history), which refinery creates
-- for the migrating role before V1 runs, with no grant: an application role holding audit_reader
-- could read the whole log but not `status`. New tables are not granted by default, so say it.

do $grants$
begin
  if exists (select from pg_catalog.pg_roles where rolname = 'audit_reader') then
    grant select on audit.refinery_schema_history to audit_reader;
  end if;
exception when insufficient_privilege then
  raise notice 'audit-logs: could not grant to audit_reader: %', sqlerrm;
end
$grants$;
