-- What started a run and who (the daemon's API shows both), and the
-- `interrupted` status (a run left `running` by a process that stopped).
ALTER TABLE runs ADD COLUMN run_trigger TEXT;
ALTER TABLE runs ADD COLUMN started_by TEXT;
-- The API's "filter by severity" (category sensitivity) page: without it
-- every such page scanned and counted the whole findings table.
CREATE INDEX findings_by_sensitivity ON findings (sensitivity, triage_status, resolved_at, finding_id);
