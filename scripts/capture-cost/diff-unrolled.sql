-- The UPDATE diff unrolled into the capture query over the columns known at enable time (three
-- operators a column, no PL/pgSQL call); audit.row_diff only for columns added since.
\ir _rewrite.sql
select pg_temp.rewrite_capture('\(d.diff\).old_values', $r$case when d.generic then (audit.row_diff(d.o, d.n, '{id,bid,abalance,filler}'::pg_catalog.text[], '{}'::pg_catalog.text[])).old_values
                else d.o operator(pg_catalog.-) pg_catalog.array_remove(array[case when not d.x1 then 'id' end, case when not d.x2 then 'bid' end, case when not d.x3 then 'abalance' end, case when not d.x4 then 'filler' end]::pg_catalog.text[], null) end$r$);
select pg_temp.rewrite_capture('\(d.diff\).changed_fields', $r$case when d.generic then (audit.row_diff(d.o, d.n, '{id,bid,abalance,filler}'::pg_catalog.text[], '{}'::pg_catalog.text[])).changed_fields
                else pg_catalog.array_remove(array[case when d.x1 then 'id' end, case when d.x2 then 'bid' end, case when d.x3 then 'abalance' end, case when d.x4 then 'filler' end]::pg_catalog.text[], null) end$r$);
select pg_temp.rewrite_capture('select p.n, ', 'select p.o, p.n, ');
select pg_temp.rewrite_capture(',\s+audit.row_diff\([^\n]*\) as diff', $r$,
             (p.o operator(pg_catalog.-) '{id,bid,abalance,filler}'::pg_catalog.text[]) operator(pg_catalog.<>) '{}'::pg_catalog.jsonb as generic,
             (p.o operator(pg_catalog.->) 'id') is distinct from (p.n operator(pg_catalog.->) 'id') as x1,
             (p.o operator(pg_catalog.->) 'bid') is distinct from (p.n operator(pg_catalog.->) 'bid') as x2,
             (p.o operator(pg_catalog.->) 'abalance') is distinct from (p.n operator(pg_catalog.->) 'abalance') as x3,
             (p.o operator(pg_catalog.->) 'filler') is distinct from (p.n operator(pg_catalog.->) 'filler') as x4$r$);
