-- The context's marker as a second setting, bound to the context's text: the setter writes the
-- context as given (no JSON parse and print) and "<now() as JSON><context>" beside it; capture
-- compares the two before parsing the context. V9 ships it: measure it against V8
-- (UNTIL=8 STATEMENTS=insert scripts/capture-cost.sh untracked shipped context-marker-setting
-- untracked-marker-setter).
\ir _marker-setter.sql
\ir _rewrite.sql
select pg_temp.rewrite_capture(
  E'\n  ctx := case when raw operator\\(pg_catalog.~~\\) [^\n]*\n  if \\(ctx operator\\(pg_catalog.->\\) ''@transaction''\\) operator\\(pg_catalog.=\\) pg_catalog.to_jsonb\\(pg_catalog.now\\(\\)\\) then\n',
  E'\n  if pg_catalog.current_setting(''audit.context_marker'', true) operator(pg_catalog.=) (pg_catalog.to_jsonb(pg_catalog.now())::pg_catalog.text operator(pg_catalog.||) raw) then\n    ctx := raw::pg_catalog.jsonb;\n');
