-- The log without its index audit_logs_actor_idx (what an actor did): what that index costs a write.
drop index audit.audit_logs_actor_idx;
