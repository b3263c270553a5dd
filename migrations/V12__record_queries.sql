-- audit-logs V12: a record's history and states, planned once per connection.
--
-- The library sent these three queries as SQL text with bound values, so PostgreSQL planned them
-- on every call: one index scan per partition, per name the table had, per branch (its key, and
-- its old key after a key change). With a year of monthly partitions, planning cost more than
-- running: history of one record at 1M rows, 14.5 ms a call of which ~1 ms executing (pgbench -M
-- simple, this project's 2-core machine). Client-side prepared statements would plan once, but
-- they break behind PgBouncer in transaction mode (before 1.21), which the package supports: a
-- statement prepared on one server connection is executed on another, or runs someone else's
-- statement of the same name. PL/pgSQL functions keep their plans in the server session, so they
-- plan once per server connection whatever the pooler: the same call took 0.98 ms, and a state
-- at a time 0.38 ms instead of 5.3.
--
-- Each plan is generic (plan_cache_mode), so it is made once: a custom plan would prune the
-- months at planning time, and the generic one prunes them when it starts (the time is a
-- parameter), which is what makes the state at a time cheap. The queries are those the library
-- sent (history.rs and queries.rs before V12), with the caller's rights: reading the log still
-- takes what it took. search_path is pinned: every name here is qualified, and a hostile caller's
-- operators or functions are never resolved.

-- A record key as target_id stores it: a composite key (a JSON array) as its JSON text, any other
-- as its text; long keys as audit.stored_key stores them. No SET clause, so that it is inlined:
-- states_at computes it per point and per partition scan. Every name in it is qualified.
create function audit.record_key(id jsonb)
returns text
language sql
stable
parallel safe
as $$
  select audit.stored_key(case when pg_catalog.jsonb_typeof(id) operator(pg_catalog.=) 'array'
                               then id::pg_catalog.text
                               else id operator(pg_catalog.#>>) '{}' end)
$$;
comment on function audit.record_key(jsonb) is
  'A record key (a JSON value; an array for a composite key) as audit_logs.target_id stores it.';
grant execute on function audit.record_key(jsonb) to public;

-- The entries of one record, newest first (at most max_rows, ids below older_than): under each
-- name the table had (audit.target_names), the entries with its key and those with it as the old
-- key (the UPDATE that changed the key away from it); then events about the record, whose
-- target_type is one of other_types.
create function audit.record_history(of_type text, of_id jsonb, older_than bigint, max_rows bigint,
                                     other_types text[])
returns setof audit.audit_logs
language plpgsql
stable
set search_path = ''
set plan_cache_mode = force_generic_plan
as $$
declare
  key pg_catalog.text := audit.record_key(of_id);
begin
  return query
  select entries.* from (
    (select entries.* from audit.target_names(of_type) as n cross join lateral (
      (select l.* from audit.audit_logs as l
        where l.target_id operator(pg_catalog.=) key collate "C" and l.target_type operator(pg_catalog.=) n.name
          and l.id operator(pg_catalog.<) older_than
          and l.id operator(pg_catalog.>) n.after_id and l.id operator(pg_catalog.<) n.before_id
        order by l.id desc limit max_rows)
      union all
      (select l.* from audit.audit_logs as l
        where l.old_target_id operator(pg_catalog.=) key collate "C" and l.target_type operator(pg_catalog.=) n.name
          and l.id operator(pg_catalog.<) older_than
          and l.id operator(pg_catalog.>) n.after_id and l.id operator(pg_catalog.<) n.before_id
        order by l.id desc limit max_rows)
    ) as entries)
    union all
    (select l.* from audit.audit_logs as l
      where l.target_id operator(pg_catalog.=) key collate "C"
        and l.target_type operator(pg_catalog.=) any(other_types)
        and l.id operator(pg_catalog.<) older_than
      order by l.id desc limit max_rows)
  ) as entries
  order by entries.id desc
  limit max_rows;
end
$$;
comment on function audit.record_history(text, jsonb, bigint, bigint, text[]) is
  'The entries of one record, newest first: under every name its table had, with its key or (for the UPDATE '
  'that changed it) its old key, and events about it (target_type one of other_types). What history() reads.';
grant execute on function audit.record_history(text, jsonb, bigint, bigint, text[]) to public;


-- The state of a record (its key as stored) at a time: the row after its newest row change at or
-- before then (null if that left it deleted, or there is none), and that entry. A SQL function
-- with no SET clause, so that it is inlined into the two below and planned with them: by
-- state_at with the time a parameter (the months after it are pruned when the plan starts), by
-- states_at per point of a lateral join.
create function audit.state_of(of_type text, key text, at timestamptz)
returns table (state jsonb, entry_id bigint)
language sql
stable
as $$
  select case when e.action operator(pg_catalog.=) any('{INSERT,UPDATE}'::pg_catalog.text[])
                   and e.target_id operator(pg_catalog.=) key collate "C"
              then e.new_values end,
         e.id
    from audit.target_names(of_type) as n
    cross join lateral (
      (select l.action, l.target_id, l.new_values, l.id from audit.audit_logs as l
        where l.target_id operator(pg_catalog.=) key collate "C"
          and l.target_type operator(pg_catalog.=) n.name and l.created_at operator(pg_catalog.<=) at
          and l.id operator(pg_catalog.>) n.after_id and l.id operator(pg_catalog.<) n.before_id
          and l.action operator(pg_catalog.=) any('{INSERT,UPDATE,DELETE,TRUNCATE}'::pg_catalog.text[])
        order by l.id desc limit 1)
      union all
      (select l.action, l.target_id, l.new_values, l.id from audit.audit_logs as l
        where l.old_target_id operator(pg_catalog.=) key collate "C"
          and l.target_type operator(pg_catalog.=) n.name and l.created_at operator(pg_catalog.<=) at
          and l.id operator(pg_catalog.>) n.after_id and l.id operator(pg_catalog.<) n.before_id
        order by l.id desc limit 1)) as e
   order by e.id desc
   limit 1
$$;
comment on function audit.state_of(text, text, timestamptz) is
  'The state of a record (key as target_id stores it) at a time, and the entry it comes from; no row when there '
  'is no such entry. Inlined into audit.state_at and audit.states_at.';
grant execute on function audit.state_of(text, text, timestamptz) to public;

-- What stateAt() reads: the state of one record at one time (no row when nothing was recorded).
create function audit.state_at(of_type text, of_id jsonb, at timestamptz)
returns table (state jsonb, entry_id bigint)
language plpgsql
stable
set search_path = ''
set plan_cache_mode = force_generic_plan
as $$
#variable_conflict use_column
begin
  return query select s.state, s.entry_id from audit.state_of(of_type, audit.record_key(of_id), at) as s;
end
$$;
comment on function audit.state_at(text, jsonb, timestamptz) is
  'The state of one record at one time, and the entry it comes from: what stateAt() reads.';
grant execute on function audit.state_at(text, jsonb, timestamptz) to public;

-- What statesAt() reads: the state of each record at each time, in the order given, one row per
-- point (nulls when nothing was recorded). JIT is off: the estimated cost of a lateral plan per
-- point, per name, per partition passes jit_above_cost, and compiling took ~250 ms for a query
-- that runs in 10 (100 points, 1M rows).
create function audit.states_at(of_type text, ids jsonb[], times timestamptz[])
returns table (state jsonb, entry_id bigint)
language plpgsql
stable
set search_path = ''
set plan_cache_mode = force_generic_plan
set jit = off
as $$
#variable_conflict use_column
begin
  return query
  select s.state, s.entry_id
    from rows from (pg_catalog.unnest(ids), pg_catalog.unnest(times)) with ordinality as p(id, at, n)
    left join lateral audit.state_of(of_type, audit.record_key(p.id), p.at) as s on true
   order by p.n;
end
$$;
comment on function audit.states_at(text, jsonb[], timestamptz[]) is
  'The state of each record (ids) at each time (times), in order: the row after its newest row change at or '
  'before then, null if it did not exist then, and the entry it comes from. What statesAt() reads.';
grant execute on function audit.states_at(text, jsonb[], timestamptz[]) to public;
