-- The UPDATE entry without its diff (audit.row_diff not called; old_values and changed_fields null).
\ir _rewrite.sql
select pg_temp.rewrite_capture('\(d.diff\).old_values', 'null::pg_catalog.jsonb');
select pg_temp.rewrite_capture('\(d.diff\).changed_fields', 'null::pg_catalog.text[]');
select pg_temp.rewrite_capture(',\s+audit.row_diff\([^\n]*\) as diff', '');
