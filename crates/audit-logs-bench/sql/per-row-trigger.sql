-- The per-row trigger copied from a blog post: its table and trigger function, verbatim (its
-- indexes included). The bench's BlogTrigger setup and scripts/capture-cost/per-row-trigger.sql
-- both install this file.
CREATE TABLE audit_logs (
  id BIGSERIAL PRIMARY KEY,
  table_name VARCHAR(100) NOT NULL,
  record_id VARCHAR(100),
  action VARCHAR(20) NOT NULL,
  old_data JSONB,
  new_data JSONB,
  changed_fields TEXT[],
  user_id VARCHAR(100),
  user_email VARCHAR(255),
  ip_address INET,
  user_agent TEXT,
  created_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE INDEX idx_audit_table_name ON audit_logs(table_name);
CREATE INDEX idx_audit_user_id ON audit_logs(user_id);
CREATE INDEX idx_audit_created_at ON audit_logs(created_at);
CREATE INDEX idx_audit_record_id ON audit_logs(record_id);

CREATE OR REPLACE FUNCTION audit_trigger_function()
RETURNS TRIGGER AS $$
DECLARE
  old_data JSONB;
  new_data JSONB;
  changed_fields TEXT[];
  user_info JSONB;
BEGIN
  user_info := current_setting('app.current_user', true)::JSONB;

  IF TG_OP = 'DELETE' THEN
    old_data := to_jsonb(OLD);
    new_data := NULL;
  ELSIF TG_OP = 'INSERT' THEN
    old_data := NULL;
    new_data := to_jsonb(NEW);
  ELSIF TG_OP = 'UPDATE' THEN
    old_data := to_jsonb(OLD);
    new_data := to_jsonb(NEW);
    SELECT array_agg(key) INTO changed_fields
    FROM jsonb_each(to_jsonb(OLD)) AS o(key, value)
    WHERE to_jsonb(NEW) ->> key IS DISTINCT FROM value::text;
  END IF;

  INSERT INTO audit_logs (
    table_name, record_id, action, old_data, new_data, changed_fields, user_id, user_email, ip_address
  ) VALUES (
    TG_TABLE_NAME,
    COALESCE(NEW.id::TEXT, OLD.id::TEXT),
    TG_OP,
    old_data,
    new_data,
    changed_fields,
    user_info ->> 'user_id',
    user_info ->> 'email',
    (user_info ->> 'ip_address')::INET
  );

  RETURN COALESCE(NEW, OLD);
END;
$$ LANGUAGE plpgsql;
