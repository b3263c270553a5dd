-- The log is written only through the capture functions: an application role with no
-- privilege on the audit schema is recorded, and cannot write the log itself.
\set SHOW_CONTEXT never
\set VERBOSITY terse
create table orders (id int primary key, total int);
select audit.enable_tracking('orders') is not null as tracked;
grant select, insert, update, delete on orders to :"app";
set role :"app";
insert into orders values (1, 10);
update orders set total = 11;
insert into audit.audit_logs (action) values ('forged.event');
update audit.audit_logs set actor_id = 'x';
delete from audit.audit_logs;
select count(*) from audit.audit_logs;
select audit.enable_tracking('orders');
reset role;
select action, target_id, changed_fields from audit.audit_logs order by id;
revoke all on orders from :"app";
