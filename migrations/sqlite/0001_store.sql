-- childguard store schema (SQLite). Same tables as migrations/postgres.
-- Timestamps are ISO-8601 UTC text; booleans are 0/1 integers; JSON is text.

CREATE TABLE runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    targets     TEXT NOT NULL,               -- JSON array of targets (credentials removed)
    status      TEXT NOT NULL,               -- running | completed | completed_with_errors | failed
    stats       TEXT NOT NULL DEFAULT '{}',  -- JSON RunStats
    summary     TEXT NOT NULL DEFAULT '{}'   -- JSON, written by the classifier
) STRICT;

CREATE TABLE work_units (
    run_id    INTEGER NOT NULL REFERENCES runs(id),
    target    TEXT NOT NULL,
    unit_id   TEXT NOT NULL,
    bytes     INTEGER NOT NULL DEFAULT 0,
    rows_read INTEGER NOT NULL DEFAULT 0,
    error     TEXT,
    skipped   TEXT,
    PRIMARY KEY (run_id, target, unit_id)
) STRICT;

CREATE TABLE findings (
    finding_id     TEXT PRIMARY KEY,
    target         TEXT NOT NULL,
    unit_id        TEXT NOT NULL,
    path           TEXT,
    table_name     TEXT,
    column_name    TEXT,
    field          TEXT,
    line           INTEGER,
    byte_offset    INTEGER,
    category       TEXT NOT NULL,
    rule           TEXT NOT NULL,
    child          INTEGER,
    confidence     REAL NOT NULL,
    masked         TEXT NOT NULL,
    fingerprint    TEXT NOT NULL,
    sensitivity    TEXT NOT NULL,
    rows_scanned   INTEGER,
    match_count    INTEGER,
    child_count    INTEGER,
    dataset        TEXT,
    first_seen     TEXT NOT NULL,
    last_seen      TEXT NOT NULL,
    first_run      INTEGER NOT NULL,
    last_run       INTEGER NOT NULL,
    resolved_at    TEXT,
    triage_status  TEXT NOT NULL DEFAULT 'open',
    triage_comment TEXT,
    triage_by      TEXT,
    triage_at      TEXT
) STRICT;
CREATE INDEX findings_unit ON findings (target, unit_id);
CREATE INDEX findings_last_run ON findings (last_run, finding_id);
CREATE INDEX findings_dataset ON findings (dataset, finding_id);
CREATE INDEX findings_category ON findings (category, finding_id);
CREATE INDEX findings_status ON findings (triage_status, finding_id);
CREATE INDEX findings_child ON findings (child, finding_id);
CREATE INDEX findings_fingerprint ON findings (fingerprint);

CREATE TABLE violations (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id       INTEGER NOT NULL REFERENCES runs(id),
    kind         TEXT NOT NULL,
    severity     TEXT NOT NULL,
    dataset      TEXT,
    owner        TEXT,
    article      TEXT NOT NULL,
    category     TEXT,
    target       TEXT,
    unit_id      TEXT,
    column_name  TEXT,
    finding_id   TEXT,
    record_count INTEGER,
    message      TEXT NOT NULL
) STRICT;
CREATE INDEX violations_run ON violations (run_id, kind);

-- Hash-chained audit log (CAC Order No. 4 Art. 15, MIIT Order No. 24 Art. 13(6)).
CREATE TABLE audit_log (
    id        INTEGER PRIMARY KEY,
    at        TEXT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    object    TEXT NOT NULL,
    details   TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
) STRICT;
