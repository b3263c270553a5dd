-- Included by context-marker-setting and untracked-marker-setter: the setter writing the marker
-- beside the context, which it no longer parses.
create or replace function audit.set_checked_context(context text)
returns text
language plpgsql
volatile
as $$
begin
  perform pg_catalog.set_config('audit.context_marker',
    pg_catalog.to_jsonb(pg_catalog.now())::pg_catalog.text operator(pg_catalog.||) coalesce(context, ''), true);
  return pg_catalog.set_config('audit.context', coalesce(context, ''), true);
end
$$;
