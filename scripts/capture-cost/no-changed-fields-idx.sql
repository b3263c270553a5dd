-- The log without its index audit_logs_changed_fields_idx (changes of a column (GIN, partial)): what that index costs a write.
drop index audit.audit_logs_changed_fields_idx;
