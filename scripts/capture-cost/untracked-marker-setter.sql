-- Untracked (its capture triggers dropped), with context-marker-setting's setter: what that
-- setter alone saves a transaction (compare with untracked).
drop trigger audit_capture_insert on public.accounts;
drop trigger audit_capture_update on public.accounts;
drop trigger audit_capture_delete on public.accounts;
drop trigger audit_capture_truncate on public.accounts;
\ir _marker-setter.sql
