-- Triggers fire, the capture function checks its table and parses the context, writes nothing.
\ir _rewrite.sql
select pg_temp.rewrite_capture('\n  if tg_op operator\(pg_catalog.=\) ''UPDATE'' then', E'\n  return null;\n  if tg_op operator(pg_catalog.=) ''UPDATE'' then');
