-- Replicas catch up on changes made elsewhere by reading the audit records that are not
-- decisions (identity, policy, token, ... changes) after the last one they applied. This
-- partial index serves that query without scanning the decisions in between.
CREATE INDEX audit_records_changes ON audit_records (seq) WHERE kind <> 'decision';
