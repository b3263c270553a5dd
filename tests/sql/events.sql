-- Application events: recorded through functions only, never able to pose as row changes.
\set SHOW_CONTEXT never
begin;
select audit.set_context('{"actor_id": "17", "actor_type": "user", "ip_address": "192.0.2.1", "request_id": "req-9"}') is not null as context_set;
select id > 0 as logged, actor_id, request_id from audit.log_event('user.login', 'user', '17', '{"method": "password"}');
select count(*) as logged_many from audit.log_events('[
  {"action": "report.exported", "target_type": "report", "target_id": "r-1", "metadata": {"format": "csv"}},
  {"action": "permission.denied", "target_type": "project", "target_id": "p-2",
   "context": {"actor_id": "99", "actor_type": "api_key"}}
]');
commit;
select action, target_type, target_id, actor_id, actor_type, host(ip_address) as ip, request_id, metadata
  from audit.audit_logs order by id;
select audit.log_event('UPDATE', 'users', '1');
select audit.log_event('has space');
select audit.log_event(null);
select audit.log_event('ok.event', null, null, '[1]');
select audit.log_events('{"not": "an array"}');
select audit.log_events('[{"action": "fine"}, {"action": "delete"}]');
select count(*) as after_refusals from audit.audit_logs;
