-- The log without any index: what all of them cost a write.
drop index audit.audit_logs_target_idx, audit.audit_logs_old_target_idx, audit.audit_logs_actor_idx,
  audit.audit_logs_time_idx, audit.audit_logs_changed_fields_idx;
