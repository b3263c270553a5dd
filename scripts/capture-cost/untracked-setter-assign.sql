-- setter-assign on an untracked table: what the setter alone saves every transaction.
select audit.disable_tracking('public.accounts');
\ir setter-assign.sql
