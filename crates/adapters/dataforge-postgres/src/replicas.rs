//! Read replicas: which ones may serve reads, watched by a task of their own. A replica that does
//! not answer, is no longer in recovery, or is further behind the primary than
//! `replica_max_lag_ms` is skipped (reads go to the primary) until it recovers; each change is
//! logged and shows in `/health/ready`. A read that must see a client's writes (a consistency
//! token: the primary's WAL position after them) goes to a replica known to have replayed that
//! far, else to the primary.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use dataforge_domain::ports::ReplicaState;
use deadpool_postgres::Pool;

/// How often replicas are looked at.
const WATCH_EVERY: Duration = Duration::from_millis(250);
/// How long a replica may take to answer before it counts as down.
const ANSWER_WITHIN: Duration = Duration::from_secs(1);

/// The state of a replica not looked at yet.
const UNSEEN: &str = "unseen";

/// A WAL position (`X/Y` in hexadecimal, as PostgreSQL writes it) as one number.
pub(crate) fn parse_lsn(text: &str) -> Option<u64> {
    let (high, low) = text.trim().split_once('/')?;
    let high = u64::from_str_radix(high, 16).ok()?;
    let low = u64::from_str_radix(low, 16).ok()?;
    (high <= u32::MAX as u64 && low <= u32::MAX as u64).then_some((high << 32) | low)
}

/// What was last seen of a replica.
#[derive(Clone, Copy)]
struct Seen {
    state: &'static str,
    /// The WAL position it had replayed.
    replayed: u64,
}

pub(crate) struct Replica {
    /// Its URL without credentials.
    url: String,
    pool: Pool,
    seen: Mutex<Seen>,
}

/// Every configured replica.
pub(crate) struct Replicas {
    list: Vec<Replica>,
    max_lag_ms: u64,
    /// The watching task, once started.
    watching: OnceLock<tokio::task::AbortHandle>,
    /// Set by [`Replicas::close`]: no watching starts or goes on.
    closed: AtomicBool,
}

impl Replicas {
    pub(crate) fn new(replicas: Vec<(String, Pool)>, max_lag_ms: u64) -> Self {
        Replicas {
            list: replicas
                .into_iter()
                .map(|(url, pool)| Replica {
                    url,
                    pool,
                    // not used for reads until first seen (and then logged whatever its state)
                    seen: Mutex::new(Seen {
                        state: UNSEEN,
                        replayed: 0,
                    }),
                })
                .collect(),
            max_lag_ms,
            watching: OnceLock::new(),
            closed: AtomicBool::new(false),
        }
    }

    /// Stops the watching task and closes every replica's pool (the store is closing).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        if let Some(task) = self.watching.get() {
            task.abort();
        }
        for replica in &self.list {
            replica.pool.close();
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// A replica that may serve a read that must see everything up to `after`, if one may.
    pub(crate) fn pick(self: &Arc<Self>, primary: &Pool, after: Option<u64>) -> Option<Pool> {
        if self.list.is_empty() {
            return None;
        }
        self.watch(primary);
        self.list.iter().find_map(|replica| {
            let seen = *replica.seen.lock().ok()?;
            (seen.state == "ok" && after.is_none_or(|lsn| seen.replayed >= lsn))
                .then(|| replica.pool.clone())
        })
    }

    pub(crate) fn states(&self) -> Vec<ReplicaState> {
        self.list
            .iter()
            .map(|replica| ReplicaState {
                url: replica.url.clone(),
                state: match replica.seen.lock().map_or(UNSEEN, |seen| seen.state) {
                    UNSEEN => "down",
                    state => state,
                },
            })
            .collect()
    }

    /// Starts the watching task once (on the runtime of the first read); it ends when the
    /// replicas are closed.
    fn watch(self: &Arc<Self>, primary: &Pool) {
        self.watching.get_or_init(|| {
            let replicas = Arc::clone(self);
            let primary = primary.clone();
            tokio::spawn(async move {
                // a task started as the store closed ends here: close found none to stop
                while !replicas.closed.load(Ordering::SeqCst) {
                    replicas.look(&primary).await;
                    tokio::time::sleep(WATCH_EVERY).await;
                }
            })
            .abort_handle()
        });
    }

    async fn look(&self, primary: &Pool) {
        let position = match tokio::time::timeout(ANSWER_WITHIN, lsn_of(primary)).await {
            Ok(Some(lsn)) => lsn,
            _ => u64::MAX, // the primary is away: replicas can only be judged by their lag
        };
        for replica in &self.list {
            let seen = match tokio::time::timeout(ANSWER_WITHIN, replay_of(&replica.pool)).await {
                Ok(Some((replayed, lag_ms))) => Seen {
                    state: if replayed >= position || lag_ms <= self.max_lag_ms as f64 {
                        "ok"
                    } else {
                        "lagging"
                    },
                    replayed,
                },
                _ => Seen {
                    state: "down",
                    replayed: 0,
                },
            };
            if let Ok(mut last) = replica.seen.lock() {
                if last.state != seen.state {
                    match seen.state {
                        "ok" => tracing::info!(replica = %replica.url, "replica serves reads"),
                        state => {
                            tracing::warn!(replica = %replica.url, state, "replica skipped for reads")
                        }
                    }
                }
                *last = seen;
            }
        }
    }
}

/// The primary's current WAL position.
async fn lsn_of(pool: &Pool) -> Option<u64> {
    let client = pool.get().await.ok()?;
    let row = client
        .query_one("SELECT pg_current_wal_lsn()::TEXT", &[])
        .await
        .ok()?;
    parse_lsn(row.get(0))
}

/// A replica's replayed position and how far behind its last replayed transaction is, in ms;
/// `None` when it does not answer or is no replica (promoted: another primary, not ours).
async fn replay_of(pool: &Pool) -> Option<(u64, f64)> {
    let client = pool.get().await.ok()?;
    let row = client
        .query_one(
            "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::TEXT, \
             CAST(COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) * 1000, 0) AS DOUBLE PRECISION)",
            &[],
        )
        .await
        .ok()?;
    if !row.get::<_, bool>(0) {
        return None;
    }
    Some((parse_lsn(row.get::<_, Option<&str>>(1)?)?, row.get(2)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_read_as_postgresql_writes_them_and_order_as_numbers() {
        assert_eq!(parse_lsn("0/3000148"), Some(0x3000148));
        assert_eq!(parse_lsn("16/B374D848"), Some((0x16 << 32) | 0xB374D848));
        assert!(parse_lsn("0/3000148") < parse_lsn("1/0"));
        assert_eq!(parse_lsn("nonsense"), None);
        assert_eq!(parse_lsn("1/"), None);
    }
}
