-- The log without its index audit_logs_target_idx (history of a record): what that index costs a write.
drop index audit.audit_logs_target_idx;
