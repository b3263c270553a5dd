-- audit.row_diff with fewer PL/pgSQL evaluations: one test a column (<> is null, so unchanged,
-- when the key is missing), old values added only for changed columns.
create or replace function audit.row_diff(
  old_row jsonb, new_row jsonb, known_columns text[], excluded_columns text[],
  out changed_fields text[], out old_values jsonb)
language plpgsql immutable parallel safe as $$
declare
  col pg_catalog.text;
begin
  if (old_row operator(pg_catalog.-) known_columns) operator(pg_catalog.<>) '{}'::pg_catalog.jsonb then
    changed_fields := audit.jsonb_changed_keys(old_row, new_row);
    old_values := audit.jsonb_changed_values(old_row operator(pg_catalog.-) excluded_columns,
                                             new_row operator(pg_catalog.-) excluded_columns);
    return;
  end if;
  changed_fields := '{}';
  old_values := '{}';
  foreach col in array known_columns loop
    if (old_row operator(pg_catalog.->) col) operator(pg_catalog.<>) (new_row operator(pg_catalog.->) col) then
      changed_fields := changed_fields operator(pg_catalog.||) col;
      old_values := old_values operator(pg_catalog.||) pg_catalog.jsonb_build_object(col, old_row operator(pg_catalog.->) col);
    end if;
  end loop;
  old_values := old_values operator(pg_catalog.-) excluded_columns;
end
$$;
