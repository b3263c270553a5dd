-- The INSERT's row serialized once: the subquery fenced (offset 0) so that the planner does not
-- pull it up and evaluate to_jsonb(r) once for target_id and again for new_values. V9 ships it:
-- measure it against V8 (UNTIL=8 STATEMENTS=insert scripts/capture-cost.sh untracked shipped insert-fenced).
\ir _rewrite.sql
select pg_temp.rewrite_capture('as n from new_rows r\) as p;', 'as n from new_rows r offset 0) as p;');
