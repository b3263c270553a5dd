-- Refusals name the problem and the way out, and change nothing.
\set SHOW_CONTEXT never
\set VERBOSITY default
create table no_key (line text);
create table t (id int primary key, a text);
create view v as select * from t;
create table p (id int primary key) partition by range (id);
create table p1 partition of p for values from (0) to (10);
select audit.enable_tracking('no_key');
select audit.enable_tracking('v');
select audit.enable_tracking('p1');
select audit.enable_tracking('t', '{nope}');
select audit.enable_tracking('t', '{id}');
select audit.enable_tracking('audit.audit_logs');
select audit.enable_tracking(null);
select audit.set_context('[1, 2]');
select audit.set_context('{"ip_address": "999.1.1.1"}');
select audit.set_context('{"actor_id": 42}');
select audit.set_context('{"metadata": "not an object"}');
select audit.create_partitions(-1);
select count(*) as triggers from pg_trigger where tgname like 'audit\_capture\_%';
