-- Append-only and sealing at the SQL level: refusals name the rule, for the owner and for an
-- application role; maintenance functions are the only way to change rows; seals chain.
\set SHOW_CONTEXT never
\set VERBOSITY terse
create table orders (id int primary key, total int);
select audit.enable_tracking('orders') is not null as tracked;
grant select, insert, update on orders to :"app";
insert into orders values (1, 10), (2, 20);
-- The owner is refused, loudly, on the table and on a partition.
update audit.audit_logs set actor_id = 'x';
delete from audit.audit_logs;
truncate audit.audit_logs;
truncate audit.audit_logs_default;
-- Setting the maintenance flag by hand unlocks nothing.
select set_config('audit.maintenance', 'on', false) is not null as flag_set;
delete from audit.audit_logs;
reset audit.maintenance;
-- A seal covers the committed rows once; the next one has nothing to do.
select seal_id, row_count from audit.seal();
select seal_id, row_count from audit.seal();
select count(*) as chunks, sum(row_count) as sealed_rows from audit.seal_chunks;
delete from audit.seals;
-- An application role is recorded, and can neither change the log nor maintain it.
set role :"app";
update orders set total = 11 where id = 1;
delete from audit.audit_logs;
select audit.seal();
select audit.maintain();
select audit.redact('a secret of at least sixteen bytes'::bytea, actor_id => 'x');
reset role;
select action, target_id, changed_fields from audit.audit_logs order by id;
-- The digest of a row can be reproduced in SQL.
select octet_length(audit.row_digest(l, null)) as digest_bytes from audit.audit_logs l order by id limit 1;
revoke all on orders from :"app";
