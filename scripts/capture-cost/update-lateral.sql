-- The UPDATE diff as a lateral function call rather than a column of a fenced subquery.
\ir _rewrite.sql
select pg_temp.rewrite_capture('\(d.diff\).old_values', 'd.old_values');
select pg_temp.rewrite_capture('\(d.diff\).changed_fields', 'd.changed_fields');
select pg_temp.rewrite_capture(',\s+(audit.row_diff\([^\n]*\)) as diff', ', x.changed_fields, x.old_values');
select pg_temp.rewrite_capture('as p\(o, n\)\n',
  $r$as p(o, n)
      cross join lateral audit.row_diff(p.o, p.n, '{id,bid,abalance,filler}'::pg_catalog.text[], '{}'::pg_catalog.text[]) as x
$r$);
select pg_temp.rewrite_capture('\n\s*-- A fence[^\n]*\n\s*offset 0\n', E'\n');
