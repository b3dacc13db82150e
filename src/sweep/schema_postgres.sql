-- childguard sweep tables (PostgreSQL). Idempotent; the integrator folds these into the store's migrations.
CREATE TABLE IF NOT EXISTS sweep_plans (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    as_of       TEXT NOT NULL,
    subject_fp  TEXT,
    body        TEXT NOT NULL,
    status      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sweep_approvals (
    plan_id     TEXT NOT NULL,
    approved_by TEXT NOT NULL,
    comment     TEXT,
    approved_at TEXT NOT NULL,
    PRIMARY KEY (plan_id, approved_by)
);
CREATE TABLE IF NOT EXISTS sweep_journal (
    plan_id  TEXT NOT NULL,
    item     BIGINT NOT NULL,
    unit     TEXT NOT NULL,
    seq      BIGINT NOT NULL,
    phase    TEXT NOT NULL,
    affected BIGINT NOT NULL DEFAULT 0,
    detail   TEXT NOT NULL,
    at       TEXT NOT NULL,
    PRIMARY KEY (plan_id, item, unit, seq, phase)
);
CREATE TABLE IF NOT EXISTS sweep_events (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    plan_id TEXT,
    at      TEXT NOT NULL,
    event   TEXT NOT NULL,
    actor   TEXT,
    detail  TEXT NOT NULL
);
