-- The UPDATE diff computed in the capture query (a lateral aggregate over the known columns)
-- instead of a PL/pgSQL call per row; audit.row_diff only for columns added since enable.
\ir _rewrite.sql
select pg_temp.rewrite_capture('\(d.diff\).old_values',
  'case when d.generic then (audit.row_diff(d.o, d.n, ''{id,bid,abalance,filler}''::pg_catalog.text[], ''{}''::pg_catalog.text[])).old_values else d.old_values end');
select pg_temp.rewrite_capture('\(d.diff\).changed_fields',
  'case when d.generic then (audit.row_diff(d.o, d.n, ''{id,bid,abalance,filler}''::pg_catalog.text[], ''{}''::pg_catalog.text[])).changed_fields else d.changed_fields end');
select pg_temp.rewrite_capture('select p.n, ', 'select p.o, p.n, ');
select pg_temp.rewrite_capture(',\s+audit.row_diff\([^\n]*\) as diff',
  $r$, (p.o operator(pg_catalog.-) '{id,bid,abalance,filler}'::pg_catalog.text[]) operator(pg_catalog.<>) '{}'::pg_catalog.jsonb as generic, x.changed_fields, x.old_values$r$);
select pg_temp.rewrite_capture('as p\(o, n\)\n',
  $r$as p(o, n)
      cross join lateral (
        select coalesce(pg_catalog.array_agg(k.col), '{}') as changed_fields,
               coalesce(pg_catalog.jsonb_object_agg(k.col, p.o operator(pg_catalog.->) k.col)
                                   filter (where k.col operator(pg_catalog.<>) all ('{}'::pg_catalog.text[])), '{}') as old_values
          from pg_catalog.unnest('{id,bid,abalance,filler}'::pg_catalog.text[]) as k(col)
         where (p.o operator(pg_catalog.->) k.col) is distinct from (p.n operator(pg_catalog.->) k.col)) as x
$r$);
