-- What started a run and who (the daemon's API shows both), and the
-- `interrupted` status (a run left `running` by a process that stopped).
ALTER TABLE runs ADD COLUMN run_trigger TEXT;
ALTER TABLE runs ADD COLUMN started_by TEXT;
