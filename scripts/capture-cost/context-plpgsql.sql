-- set_checked_context as PL/pgSQL: its expression planned once per session, not inlined and
-- re-planned in every statement that calls it.
create or replace function audit.set_checked_context(context text)
returns text
language plpgsql
volatile
as $$
begin
  return pg_catalog.set_config('audit.context',
    case when context is null or context operator(pg_catalog.=) '' then ''
         else (context::pg_catalog.jsonb
               operator(pg_catalog.||) pg_catalog.jsonb_build_object('@transaction', pg_catalog.now()))::pg_catalog.text end,
    true);
end
$$;
