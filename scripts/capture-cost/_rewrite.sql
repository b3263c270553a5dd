-- Included by variants: audit.rewrite_capture(from, to) replaces text in the capture function of
-- public.accounts (same owner, same rights) and fails if the text is not there.
create function pg_temp.rewrite_capture(pattern text, replacement text) returns void language plpgsql as $$
declare
  f regprocedure := (select function_id::regprocedure from audit.capture_triggers
                      where relid = 'public.accounts'::regclass limit 1);
  source text := pg_get_functiondef(f);
begin
  if source !~ pattern then
    raise exception 'variant: % not found in %', pattern, f;
  end if;
  execute regexp_replace(source, pattern, replacement, 'g');
end
$$;
