-- audit-logs V11: setting the context costs less.
--
-- audit.set_checked_context, which the Node and Rust layers call once in every attributed
-- transaction (tracked tables written or not), and audit.set_context, for SQL users, wrote their
-- two settings with PERFORM. PL/pgSQL runs a PERFORM as a query (SPI: a plan check, an executor
-- started and ended); an assignment of a simple expression is evaluated directly. As
-- assignments, the same calls cost 6.0k instructions less per transaction (an untracked one-row
-- INSERT transaction: 257.3k -> 251.3k; UNTIL=10 STATEMENTS=insert scripts/capture-cost.sh
-- untracked, then the same without UNTIL). What they write, and the rules capture applies to
-- it, are V9's.

-- As V9's, its two settings written by assignments.
create or replace function audit.set_context(context jsonb)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  normalized jsonb := audit.normalize_context(context);
  written text;
begin
  written := set_config('audit.context_marker',
                        coalesce(to_jsonb(now())::text || normalized::text, ''), true);
  written := set_config('audit.context', coalesce(normalized::text, ''), true);
  return normalized;
end
$$;

-- As V9's, its marker written by an assignment.
create or replace function audit.set_checked_context(context text)
returns text
language plpgsql
volatile
as $$
declare
  marker pg_catalog.text;
begin
  marker := pg_catalog.set_config('audit.context_marker',
    case when context operator(pg_catalog.<>) ''
         then pg_catalog.to_jsonb(pg_catalog.now())::pg_catalog.text operator(pg_catalog.||) context
         else '' end, true);
  return pg_catalog.set_config('audit.context', coalesce(context, ''), true);
end
$$;
