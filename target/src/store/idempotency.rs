//! Idempotency-Keys: a create sent again with the same key replays the stored
//! response instead of creating twice, across instances and until the key expires.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::query::{bind_all, on_pool, AnyRow, Bind};
use super::{Store, StoreError};

/// The response stored with an Idempotency-Key and replayed on a retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
}

/// Who sent a keyed request, to which route, with what body: a key is scoped
/// to (principal, route) and bound to the request body's fingerprint.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    pub principal: String,
    pub route: &'static str,
    pub key: String,
    pub fingerprint: String,
}

/// A create either made a new row (and the response to send) or found the
/// stored response of an earlier request with the same Idempotency-Key.
#[derive(Debug)]
pub enum Created<T> {
    New(T, StoredResponse),
    Replay(StoredResponse),
}

impl Store {
    /// Runs an `INSERT ... RETURNING` and, when a key is given, records the
    /// response under it in the same transaction: the key row is claimed first
    /// (so a concurrent retry on another instance waits on it, then replays),
    /// and a create that fails leaves no key behind.
    pub(crate) async fn insert_returning<T: AnyRow>(
        &self,
        sql: &str,
        binds: Vec<Bind>,
        idem: Option<&IdempotencyKey>,
        render: impl FnOnce(&T) -> StoredResponse + Send,
    ) -> Result<Created<T>, StoreError> {
        // An expired key is taken over in place (as if it had been pruned),
        // atomically: of two concurrent retries only one sees it expired.
        const CLAIM: &str = "INSERT INTO idempotency_keys \
            (principal, route, key, fingerprint, status, body, created_at) \
            VALUES ($1, $2, $3, $4, 0, '', $5) \
            ON CONFLICT (principal, route, key) DO UPDATE SET \
            fingerprint = excluded.fingerprint, status = 0, body = '', \
            created_at = excluded.created_at \
            WHERE idempotency_keys.created_at < $6";
        const COMPLETE: &str = "UPDATE idempotency_keys SET status = $1, body = $2 \
            WHERE principal = $3 AND route = $4 AND key = $5";
        let now = self.clock.now();
        let expired_before = self.idempotency_cutoff(now);
        let outcome = self
            .within(async {
                on_pool!(self, p => {
                    let mut tx = p.begin().await?;
                    if let Some(k) = idem {
                        let claimed = sqlx::query(CLAIM)
                            .bind(&k.principal)
                            .bind(k.route)
                            .bind(&k.key)
                            .bind(&k.fingerprint)
                            .bind(now)
                            .bind(expired_before)
                            .execute(&mut *tx)
                            .await?
                            .rows_affected();
                        if claimed == 0 {
                            tx.rollback().await?;
                            return Ok(None);
                        }
                    }
                    let value = bind_all!(sqlx::query_as::<_, T>(sql), binds)
                        .fetch_one(&mut *tx)
                        .await?;
                    let response = render(&value);
                    if let Some(k) = idem {
                        sqlx::query(COMPLETE)
                            .bind(i64::from(response.status))
                            .bind(&response.body)
                            .bind(&k.principal)
                            .bind(k.route)
                            .bind(&k.key)
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                    Ok(Some((value, response)))
                })
            })
            .await;
        match outcome? {
            Some((value, response)) => Ok(Created::New(value, response)),
            None => self.replay(idem.expect("a replay needs a key")).await,
        }
    }

    /// Keys created before this are expired at `now`.
    fn idempotency_cutoff(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        TimeDelta::from_std(self.idempotency_ttl)
            .ok()
            .and_then(|ttl| now.checked_sub_signed(ttl))
            // A TTL too long to represent never expires anything.
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
    }

    /// Deletes the Idempotency-Keys past their TTL; returns how many. The API
    /// runs this periodically; a claim never depends on it having run.
    pub async fn prune_idempotency_keys(&self) -> Result<u64, StoreError> {
        // In batches, each its own statement: one DELETE of a large backlog
        // would hold SQLite's write lock (or PostgreSQL row locks) for as long
        // as it runs, stalling the creates being measured meanwhile.
        const BATCH: i64 = 1000;
        const DELETE: &str = "DELETE FROM idempotency_keys \
            WHERE (principal, route, key) IN (SELECT principal, route, key \
            FROM idempotency_keys WHERE created_at < $1 LIMIT $2)";
        let cutoff = self.idempotency_cutoff(self.clock.now());
        let mut deleted = 0;
        loop {
            let n = self
                .execute(DELETE, vec![Bind::Time(cutoff), Bind::I64(BATCH)])
                .await?;
            deleted += n;
            if n < BATCH as u64 {
                return Ok(deleted);
            }
        }
    }

    /// How long Idempotency-Keys are kept.
    pub fn idempotency_ttl(&self) -> Duration {
        self.idempotency_ttl
    }

    async fn replay<T>(&self, k: &IdempotencyKey) -> Result<Created<T>, StoreError> {
        let row: Option<(String, i64, String)> = self
            .within(async {
                on_pool!(self, p => sqlx::query_as(
                    "SELECT fingerprint, status, body FROM idempotency_keys \
                     WHERE principal = $1 AND route = $2 AND key = $3",
                )
                .bind(&k.principal)
                .bind(k.route)
                .bind(&k.key)
                .fetch_optional(p)
                .await)
            })
            .await?;
        match row {
            Some((fingerprint, status, body)) if fingerprint == k.fingerprint => {
                Ok(Created::Replay(StoredResponse {
                    status: u16::try_from(status).unwrap_or(200),
                    body,
                }))
            }
            Some(_) => Err(StoreError::IdempotencyMismatch),
            // Claimed and then rolled back between our attempt and this read.
            None => Err(StoreError::Unavailable(
                "idempotent request in flight elsewhere".into(),
            )),
        }
    }
}
