//! Coordination primitives for several daemons (or shard workers) on one
//! store: named leases and a work queue with expiring claims.
//!
//! - **Lease** ([`Coordinator::try_acquire`], [`renew`](Coordinator::renew),
//!   [`release`](Coordinator::release)): one holder per name at a time; a
//!   lease not renewed before it expires is taken over by the next
//!   `try_acquire`. Every change of holder raises the lease's `token`
//!   (a fencing token: writes made under a lease can carry it, and a deposed
//!   holder's writes are recognisable).
//! - **Work queue** ([`enqueue`](Coordinator::enqueue),
//!   [`claim`](Coordinator::claim), [`heartbeat`](Coordinator::heartbeat),
//!   [`complete`](Coordinator::complete)): units are claimed with
//!   `SELECT … FOR UPDATE SKIP LOCKED` on PostgreSQL (concurrent claimers
//!   never block on or double-claim a row) together with an expiring claim
//!   lease. A claimer that dies stops heartbeating; once its lease expires
//!   the unit is claimable again. Completion is recorded exactly once: it
//!   needs the claim's token, so a deposed claimer that wakes up late cannot
//!   complete a unit someone else re-claimed, and a unit that is done is
//!   never claimed again.
//!
//! PostgreSQL serves several machines; SQLite serves a single node (its
//! writes are serialized, so the same statements are atomic there too).
//! Times are epoch milliseconds from the caller's clock: hosts sharing a
//! store need synchronized clocks (NTP) and TTLs well above their skew.
//! Tables: `leases`, `work_items` (migration `0002_shard_lease.sql`).

use super::{Result, StoreError};
use std::time::Duration;

/// A held lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub name: String,
    pub holder: String,
    /// Fencing token: rises with every change of holder.
    pub token: i64,
    /// When it expires unless renewed (epoch ms).
    pub expires_ms: i64,
}

/// A claimed work unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub queue: String,
    pub unit_id: String,
    pub worker: String,
    /// Rises with every claim of the unit; completion must present it.
    pub token: i64,
    /// Claims of this unit so far, this one included.
    pub attempts: i64,
}

/// Counts of a queue's units by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    pub pending: u64,
    /// Claimed with a live lease.
    pub claimed: u64,
    /// Claimed but the lease expired (the claimer is presumed dead).
    pub expired: u64,
    pub done: u64,
}

/// A completed unit as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub unit_id: String,
    pub done_by: String,
    pub attempts: i64,
    pub result: Option<String>,
}

#[derive(Clone)]
enum Pool {
    Pg(sqlx::PgPool),
    Lite(sqlx::SqlitePool),
}

/// Leases and the work queue over the store's database.
#[derive(Clone)]
pub struct Coordinator {
    pool: Pool,
}

/// Epoch milliseconds now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Db { op, source }
}

const ACQUIRE_SQL: &str = "INSERT INTO leases (name, holder, token, acquired_ms, expires_ms) VALUES ($1, $2, 1, $3, $4) \
     ON CONFLICT (name) DO UPDATE SET \
       token = CASE WHEN leases.holder = excluded.holder THEN leases.token ELSE leases.token + 1 END, \
       acquired_ms = CASE WHEN leases.holder = excluded.holder THEN leases.acquired_ms ELSE excluded.acquired_ms END, \
       holder = excluded.holder, expires_ms = excluded.expires_ms \
     WHERE leases.holder = excluded.holder OR leases.expires_ms <= $3 \
     RETURNING token";
const RENEW_SQL: &str = "UPDATE leases SET expires_ms = $4 WHERE name = $1 AND holder = $2 AND token = $3 AND expires_ms > $5";
const RELEASE_SQL: &str =
    "UPDATE leases SET expires_ms = 0 WHERE name = $1 AND holder = $2 AND token = $3";
const ENQUEUE_SQL: &str =
    "INSERT INTO work_items (queue, unit_id) VALUES ($1, $2) ON CONFLICT (queue, unit_id) DO NOTHING";
/// Claimable: pending, or claimed with an expired lease.
const CLAIMABLE: &str =
    "queue = $1 AND (state = 'pending' OR (state = 'claimed' AND lease_ms <= $3))";
const HEARTBEAT_SQL: &str = "UPDATE work_items SET lease_ms = $5 WHERE queue = $1 AND unit_id = $2 AND claimed_by = $3 AND claim_token = $4 AND state = 'claimed'";
const COMPLETE_SQL: &str = "UPDATE work_items SET state = 'done', done_ms = $5, done_by = claimed_by, result = $6, lease_ms = NULL \
     WHERE queue = $1 AND unit_id = $2 AND claimed_by = $3 AND claim_token = $4 AND state = 'claimed'";
const RELEASE_CLAIM_SQL: &str = "UPDATE work_items SET state = 'pending', lease_ms = NULL WHERE queue = $1 AND unit_id = $2 AND claimed_by = $3 AND claim_token = $4 AND state = 'claimed'";

macro_rules! on_pool {
    ($self:expr, |$p:ident| $body:expr) => {
        match &$self.pool {
            Pool::Pg($p) => $body,
            Pool::Lite($p) => $body,
        }
    };
}

impl Coordinator {
    /// Over a PostgreSQL store (migrated by [`super::PgStore::connect`]).
    pub fn postgres(store: &super::PgStore) -> Coordinator {
        Coordinator {
            pool: Pool::Pg(store.pool().clone()),
        }
    }

    /// Over the embedded SQLite store (single node).
    pub fn sqlite(store: &super::SqliteStore) -> Coordinator {
        Coordinator {
            pool: Pool::Lite(store.pool().clone()),
        }
    }

    /// The store a config points to (`state_url`, else SQLite under the state dir), migrated.
    pub async fn open(config: &crate::config::Config) -> Result<Coordinator> {
        Ok(match &config.state_url {
            Some(url) => Coordinator::postgres(&super::PgStore::connect(url).await?),
            None => Coordinator::sqlite(
                &super::SqliteStore::open(&config.state_dir().join(super::DB_FILE)).await?,
            ),
        })
    }

    /// Take the lease `name` for `holder` for `ttl`: free, expired, or already
    /// held by `holder` (then it is extended). None when someone else holds it.
    pub async fn try_acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
        let now = now_ms();
        let expires = now.saturating_add(ms(ttl));
        let token: Option<i64> = on_pool!(self, |p| sqlx::query_scalar(ACQUIRE_SQL)
            .bind(name)
            .bind(holder)
            .bind(now)
            .bind(expires)
            .fetch_optional(p)
            .await
            .map_err(db("acquire lease"))?);
        Ok(token.map(|token| Lease {
            name: name.into(),
            holder: holder.into(),
            token,
            expires_ms: expires,
        }))
    }

    /// Extend a held lease by `ttl` from now. False when it was lost (expired
    /// and possibly taken over): the holder must stop acting under it.
    pub async fn renew(&self, lease: &mut Lease, ttl: Duration) -> Result<bool> {
        let now = now_ms();
        let expires = now.saturating_add(ms(ttl));
        let n = on_pool!(self, |p| sqlx::query(RENEW_SQL)
            .bind(&lease.name)
            .bind(&lease.holder)
            .bind(lease.token)
            .bind(expires)
            .bind(now)
            .execute(p)
            .await
            .map_err(db("renew lease"))?
            .rows_affected());
        if n == 1 {
            lease.expires_ms = expires;
        }
        Ok(n == 1)
    }

    /// Give a lease up (it expires now; the token is kept so it keeps rising).
    pub async fn release(&self, lease: &Lease) -> Result<bool> {
        let n = on_pool!(self, |p| sqlx::query(RELEASE_SQL)
            .bind(&lease.name)
            .bind(&lease.holder)
            .bind(lease.token)
            .execute(p)
            .await
            .map_err(db("release lease"))?
            .rows_affected());
        Ok(n == 1)
    }

    /// The current holder of `name` and its token, when held and not expired.
    pub async fn holder(&self, name: &str) -> Result<Option<(String, i64)>> {
        let sql = "SELECT holder, token FROM leases WHERE name = $1 AND expires_ms > $2";
        let r: Option<(String, i64)> = on_pool!(self, |p| sqlx::query_as(sql)
            .bind(name)
            .bind(now_ms())
            .fetch_optional(p)
            .await
            .map_err(db("read lease"))?);
        Ok(r)
    }

    /// Add units to `queue` (units already there, done or not, are left alone).
    pub async fn enqueue(&self, queue: &str, unit_ids: &[String]) -> Result<u64> {
        let mut added = 0;
        on_pool!(self, |p| {
            let mut tx = p.begin().await.map_err(db("begin enqueue"))?;
            for u in unit_ids {
                added += sqlx::query(ENQUEUE_SQL)
                    .bind(queue)
                    .bind(u)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("enqueue"))?
                    .rows_affected();
            }
            tx.commit().await.map_err(db("commit enqueue"))?;
        });
        Ok(added)
    }

    /// Claim up to `max` claimable units of `queue` for `worker` for `ttl`
    /// (pending ones, and ones whose claimer's lease expired), in unit order.
    pub async fn claim(
        &self,
        queue: &str,
        worker: &str,
        ttl: Duration,
        max: u64,
    ) -> Result<Vec<Claim>> {
        let now = now_ms();
        let until = now.saturating_add(ms(ttl));
        let set = "state = 'claimed', claimed_by = $2, claim_token = claim_token + 1, lease_ms = $4, attempts = attempts + 1";
        let rows: Vec<(String, i64, i64)> = match &self.pool {
            Pool::Pg(p) => {
                // SKIP LOCKED: rows another claimer is taking are passed over, not waited for.
                let sql = format!(
                    "UPDATE work_items w SET {set} FROM (SELECT queue, unit_id FROM work_items WHERE {CLAIMABLE} \
                     ORDER BY unit_id LIMIT $5 FOR UPDATE SKIP LOCKED) c \
                     WHERE w.queue = c.queue AND w.unit_id = c.unit_id RETURNING w.unit_id, w.claim_token, w.attempts"
                );
                sqlx::query_as(&sql)
                    .bind(queue)
                    .bind(worker)
                    .bind(now)
                    .bind(until)
                    .bind(max.min(i64::MAX as u64) as i64)
                    .fetch_all(p)
                    .await
                    .map_err(db("claim work"))?
            }
            Pool::Lite(p) => {
                // One statement: SQLite runs it under its single write lock.
                let sql = format!(
                    "UPDATE work_items SET {set} WHERE queue = $1 AND unit_id IN \
                     (SELECT unit_id FROM work_items WHERE {CLAIMABLE} ORDER BY unit_id LIMIT $5) \
                     RETURNING unit_id, claim_token, attempts"
                );
                sqlx::query_as(&sql)
                    .bind(queue)
                    .bind(worker)
                    .bind(now)
                    .bind(until)
                    .bind(max.min(i64::MAX as u64) as i64)
                    .fetch_all(p)
                    .await
                    .map_err(db("claim work"))?
            }
        };
        let mut out: Vec<Claim> = rows
            .into_iter()
            .map(|(unit_id, token, attempts)| Claim {
                queue: queue.into(),
                unit_id,
                worker: worker.into(),
                token,
                attempts,
            })
            .collect();
        out.sort_by(|a, b| a.unit_id.cmp(&b.unit_id));
        Ok(out)
    }

    /// Extend a claim's lease by `ttl` from now; false when it was lost.
    pub async fn heartbeat(&self, claim: &Claim, ttl: Duration) -> Result<bool> {
        let until = now_ms().saturating_add(ms(ttl));
        let n = on_pool!(self, |p| sqlx::query(HEARTBEAT_SQL)
            .bind(&claim.queue)
            .bind(&claim.unit_id)
            .bind(&claim.worker)
            .bind(claim.token)
            .bind(until)
            .execute(p)
            .await
            .map_err(db("heartbeat claim"))?
            .rows_affected());
        Ok(n == 1)
    }

    /// Record the unit done. True exactly once per unit: false when the claim
    /// was superseded (re-claimed after its lease expired) or already completed.
    pub async fn complete(&self, claim: &Claim, result: Option<&str>) -> Result<bool> {
        let n = on_pool!(self, |p| sqlx::query(COMPLETE_SQL)
            .bind(&claim.queue)
            .bind(&claim.unit_id)
            .bind(&claim.worker)
            .bind(claim.token)
            .bind(now_ms())
            .bind(result)
            .execute(p)
            .await
            .map_err(db("complete claim"))?
            .rows_affected());
        Ok(n == 1)
    }

    /// Hand a claimed unit back (e.g. on shutdown) so another worker takes it at once.
    pub async fn give_back(&self, claim: &Claim) -> Result<bool> {
        let n = on_pool!(self, |p| sqlx::query(RELEASE_CLAIM_SQL)
            .bind(&claim.queue)
            .bind(&claim.unit_id)
            .bind(&claim.worker)
            .bind(claim.token)
            .execute(p)
            .await
            .map_err(db("give back claim"))?
            .rows_affected());
        Ok(n == 1)
    }

    /// Units of `queue` by state.
    pub async fn counts(&self, queue: &str) -> Result<QueueCounts> {
        let sql = "SELECT \
             CAST(COALESCE(SUM(CASE WHEN state = 'pending' THEN 1 ELSE 0 END), 0) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN state = 'claimed' AND lease_ms > $2 THEN 1 ELSE 0 END), 0) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN state = 'claimed' AND lease_ms <= $2 THEN 1 ELSE 0 END), 0) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN state = 'done' THEN 1 ELSE 0 END), 0) AS BIGINT) \
             FROM work_items WHERE queue = $1";
        let (a, b, c, d): (i64, i64, i64, i64) = on_pool!(self, |p| sqlx::query_as(sql)
            .bind(queue)
            .bind(now_ms())
            .fetch_one(p)
            .await
            .map_err(db("count queue"))?);
        let u = |x: i64| x.max(0) as u64;
        Ok(QueueCounts {
            pending: u(a),
            claimed: u(b),
            expired: u(c),
            done: u(d),
        })
    }

    /// The completed units of `queue`, in unit order.
    pub async fn done(&self, queue: &str) -> Result<Vec<Done>> {
        let sql = "SELECT unit_id, done_by, attempts, result FROM work_items WHERE queue = $1 AND state = 'done' ORDER BY unit_id";
        let rows: Vec<(String, Option<String>, i64, Option<String>)> =
            on_pool!(self, |p| sqlx::query_as(sql)
                .bind(queue)
                .fetch_all(p)
                .await
                .map_err(db("list done"))?);
        Ok(rows
            .into_iter()
            .map(|(unit_id, done_by, attempts, result)| Done {
                unit_id,
                done_by: done_by.unwrap_or_default(),
                attempts,
                result,
            })
            .collect())
    }
}
