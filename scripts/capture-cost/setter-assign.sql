-- audit.set_checked_context with its two set_config calls as assignments instead of PERFORM:
-- PERFORM runs its expression as a query through SPI (executor start and end), where an
-- assignment of a simple expression is evaluated directly.
create or replace function audit.set_checked_context(context text)
returns text
language plpgsql
volatile
as $$
declare
  marker pg_catalog.text;
begin
  marker := pg_catalog.set_config('audit.context_marker',
    case when context operator(pg_catalog.<>) ''
         then pg_catalog.to_jsonb(pg_catalog.now())::pg_catalog.text operator(pg_catalog.||) context
         else '' end, true);
  return pg_catalog.set_config('audit.context', coalesce(context, ''), true);
end
$$;
