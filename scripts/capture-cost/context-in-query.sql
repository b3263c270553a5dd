-- The context parsed by the capture query itself (a one-row subquery joined to the rows) rather
-- than by PL/pgSQL statements before it.
\ir _rewrite.sql
-- The PL/pgSQL context block goes (the TRUNCATE branch is not exercised here).
select pg_temp.rewrite_capture('\n  ctx := case when raw operator\(pg_catalog.~~\).*?\n  end if;\n', E'\n');
select pg_temp.rewrite_capture('c.actor_id, c.actor_type, c.actor_email, c.ip_address, c.user_agent, c.request_id, meta\n',
  E'(k.c).actor_id, (k.c).actor_type, (k.c).actor_email, (k.c).ip_address, (k.c).user_agent, (k.c).request_id, k.meta\n');
select pg_temp.rewrite_capture('\) as d;', $r$) as d
    cross join (
      select case when s.marked then pg_catalog.jsonb_populate_record(null::audit.context_columns, s.j) end as c,
             case when s.marked
                  then nullif((s.j operator(pg_catalog.-) '{actor_id,actor_type,actor_email,ip_address,user_agent,request_id,metadata,@transaction}'::pg_catalog.text[])
                              operator(pg_catalog.||) coalesce(s.j operator(pg_catalog.->) 'metadata', '{}'::pg_catalog.jsonb), '{}'::pg_catalog.jsonb)
                  when raw operator(pg_catalog.<>) '' then '{"audit_context_ignored": "not set for this transaction by audit.set_context"}'::pg_catalog.jsonb end as meta
        from (select t.j, (t.j operator(pg_catalog.->) '@transaction') operator(pg_catalog.=) pg_catalog.to_jsonb(pg_catalog.now()) as marked
                from (select case when raw operator(pg_catalog.~~) '{%"@transaction": "%' then raw::pg_catalog.jsonb end as j offset 0) t offset 0) s
      offset 0) k;$r$);
select pg_temp.rewrite_capture('as p;\n  elsif tg_op operator\(pg_catalog.=\) ''DELETE''', $r$as p
    cross join (
      select case when s.marked then pg_catalog.jsonb_populate_record(null::audit.context_columns, s.j) end as c,
             case when s.marked
                  then nullif((s.j operator(pg_catalog.-) '{actor_id,actor_type,actor_email,ip_address,user_agent,request_id,metadata,@transaction}'::pg_catalog.text[])
                              operator(pg_catalog.||) coalesce(s.j operator(pg_catalog.->) 'metadata', '{}'::pg_catalog.jsonb), '{}'::pg_catalog.jsonb)
                  when raw operator(pg_catalog.<>) '' then '{"audit_context_ignored": "not set for this transaction by audit.set_context"}'::pg_catalog.jsonb end as meta
        from (select t.j, (t.j operator(pg_catalog.->) '@transaction') operator(pg_catalog.=) pg_catalog.to_jsonb(pg_catalog.now()) as marked
                from (select case when raw operator(pg_catalog.~~) '{%"@transaction": "%' then raw::pg_catalog.jsonb end as j offset 0) t offset 0) s
      offset 0) k;
  elsif tg_op operator(pg_catalog.=) 'DELETE'$r$);
