-- Capture seen from SQL: what each kind of statement records.
\set SHOW_CONTEXT never
create table users (id int primary key, email text, name text, password_hash text);
select audit.enable_tracking('users', '{password_hash}') ->> 'target_type' as target_type;
begin;
select audit.set_context('{"actor_id": "42", "actor_type": "user", "ip_address": "10.0.0.1", "reason": "signup"}') is not null as context_set;
insert into users values (1, 'a@x.io', 'Ann', 'h1'), (2, 'b@x.io', 'Bob', 'h2');
update users set name = 'Anne' where id = 1;
update users set password_hash = 'h3' where id = 2;
update users set name = name;
update users set id = id + 10;
delete from users where id = 12;
commit;
truncate users;
select id, action, target_id, old_target_id, old_values, new_values, changed_fields, actor_id, host(ip_address) as ip, metadata
  from audit.audit_logs order by id;
select table_name, primary_key, excluded_columns, skip_unchanged, needs_refresh from audit.tracked_tables;
select audit.disable_tracking('users') as was_tracked, audit.disable_tracking('users') as again;
