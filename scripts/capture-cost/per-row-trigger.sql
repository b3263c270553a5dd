-- The per-row trigger copied from a blog post (its audit_trigger_function, verbatim, its table and
-- indexes included) instead of this package's capture: the target single-row capture is held
-- to. It runs as the application role, which owns its table, as a user would install it.
select audit.disable_tracking('public.accounts');
grant create on schema public to app;
set role app;
\ir ../../crates/audit-logs-bench/sql/per-row-trigger.sql
create trigger per_row_audit after insert or update or delete on accounts
  for each row execute function audit_trigger_function();
reset role;
