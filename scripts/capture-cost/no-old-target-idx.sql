-- The log without its index audit_logs_old_target_idx (old keys (partial)): what that index costs a write.
drop index audit.audit_logs_old_target_idx;
