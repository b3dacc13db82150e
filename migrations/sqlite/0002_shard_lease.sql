-- (SQLite) Scale-out (issue 9): shard runs grouped into one nightly scan, the shard
-- that scanned each unit, and the lease / work-queue tables several
-- daemons share (src/store/lease.rs). Times are Unix epoch milliseconds.

ALTER TABLE runs ADD COLUMN run_group TEXT;  -- the N shard runs of one sharded scan
ALTER TABLE runs ADD COLUMN shard TEXT;      -- K/N
CREATE INDEX runs_group ON runs (run_group, id);
ALTER TABLE work_units ADD COLUMN shard TEXT;  -- K/N of the shard that scanned the unit

-- Named leases: one holder at a time; taken over when expired. `token`
-- rises with every change of holder (a fencing token).
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    token       INTEGER NOT NULL,
    acquired_ms INTEGER NOT NULL,
    expires_ms  INTEGER NOT NULL
) STRICT;

-- Work queue: units claimed with an expiring lease (FOR UPDATE SKIP LOCKED),
-- re-claimable when the claimer dies; done exactly once.
CREATE TABLE work_items (
    queue       TEXT NOT NULL,
    unit_id     TEXT NOT NULL,
    state       TEXT NOT NULL DEFAULT 'pending',  -- pending | claimed | done
    claimed_by  TEXT,
    claim_token INTEGER NOT NULL DEFAULT 0,        -- rises with every claim
    lease_ms    INTEGER,                           -- claim expires at
    attempts    INTEGER NOT NULL DEFAULT 0,
    done_ms     INTEGER,
    done_by     TEXT,
    result      TEXT,
    PRIMARY KEY (queue, unit_id)
) STRICT;
CREATE INDEX work_items_claimable ON work_items (queue, state, lease_ms);
