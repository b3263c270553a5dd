-- The log without its index audit_logs_time_idx (time and txid (BRIN)): what that index costs a write.
drop index audit.audit_logs_time_idx;
