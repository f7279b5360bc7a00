//! Group commit of small writes, as on DuckDB: writes to a dataset that arrive while one of its
//! groups commits wait in its queue, and the next group takes them (`policy.rs`) into one
//! transaction, their statements and its `COMMIT` sent together (`pipeline.rs`): one round trip
//! and one WAL flush for all. Should a write fail (its keys conflict, PostgreSQL refuses a
//! record), that transaction ends rolled back, and the group runs again with a savepoint per
//! write: the one that fails is rolled back to its savepoint and answered alone, the others
//! commit. Key checks stay the primary key's, so several nodes on one database stay correct; a
//! write that deadlocks with another node's transaction runs again after the commit that
//! releases it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use arrow_array::RecordBatch;
use dataforge_domain::ports::StoreError;
use dataforge_domain::write::{ConflictMode, WriteOutcome};
use deadpool_postgres::{Object, Pool};
use postgres_types::ToSql;
use tokio::sync::oneshot;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Row, Statement};

use super::pipeline::{Step, in_order};
use super::session::Session;
use super::statements::Inserts;
use super::{Writing, policy};
use crate::connection;
use crate::errors::statement_error as failed;
use crate::values::Param;

/// What a write is answered.
type Answer = Result<WriteOutcome, StoreError>;

/// The queues of small writes, one per dataset.
pub(crate) struct Groups {
    pool: Pool,
    queues: Mutex<HashMap<String, Arc<Queue>>>,
}

/// A small write waiting for its group.
struct Queued {
    writing: Writing,
    batches: Vec<RecordBatch>,
    mode: ConflictMode,
    reply: oneshot::Sender<Answer>,
}

/// A dataset's waiting writes, and whether a task is committing them.
#[derive(Default)]
struct Queue {
    waiting: Mutex<Waiting>,
}

#[derive(Default)]
struct Waiting {
    writes: VecDeque<Queued>,
    draining: bool,
}

impl Groups {
    pub(crate) fn new(pool: Pool) -> Self {
        Groups {
            pool,
            queues: Mutex::new(HashMap::new()),
        }
    }

    /// Queues a small write and waits for its group's answer; starts the dataset's committing
    /// task when none runs.
    pub(super) async fn commit(
        &self,
        writing: Writing,
        batches: Vec<RecordBatch>,
        mode: ConflictMode,
    ) -> Answer {
        let queue = self.queue(&writing.schema.name);
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut waiting = lock(&queue.waiting);
            waiting.writes.push_back(Queued {
                writing,
                batches,
                mode,
                reply,
            });
            !std::mem::replace(&mut waiting.draining, true)
        };
        if start {
            tokio::spawn(drain(queue, self.pool.clone()));
        }
        answer.await.unwrap_or_else(|_| {
            Err(StoreError::Internal(
                "a write's group ended without answering it".into(),
            ))
        })
    }

    fn queue(&self, dataset: &str) -> Arc<Queue> {
        let mut queues = lock(&self.queues);
        Arc::clone(queues.entry(dataset.to_owned()).or_default())
    }
}

/// A lock, also after a panic elsewhere (what it guards stays consistent: a queue).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Queue {
    /// The writes of the next group, in arrival order; none (and the queue idle) when none wait.
    fn next_group(&self) -> Vec<Queued> {
        let mut waiting = lock(&self.waiting);
        let size = policy::group_size(
            waiting
                .writes
                .iter()
                .map(|w| w.writing.rows.max(0) as usize),
        );
        if size == 0 {
            waiting.draining = false;
        }
        waiting.writes.drain(..size).collect()
    }
}

/// Lets the next write start a new task should this one panic (its writes are answered by their
/// dropped replies).
struct Unwinding<'a>(&'a Queue);

impl Drop for Unwinding<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            lock(&self.0.waiting).draining = false;
        }
    }
}

/// Commits a dataset's queued writes group by group until none waits.
async fn drain(queue: Arc<Queue>, pool: Pool) {
    let _unwinding = Unwinding(&queue);
    loop {
        let group = queue.next_group();
        if group.is_empty() {
            return;
        }
        metrics::histogram!("dataforge_postgres_group_writes").record(group.len() as f64);
        let answers = if policy::in_transaction(group.len()) {
            together(&pool, &group).await
        } else {
            let mut answers = Vec::with_capacity(group.len());
            for write in &group {
                answers.push(alone(&pool, write).await);
            }
            answers
        };
        for (write, answer) in group.into_iter().zip(answers) {
            let _ = write.reply.send(answer);
        }
    }
}

/// A write alone: its one statement, as without groups.
async fn alone(pool: &Pool, write: &Queued) -> Answer {
    let client = connection(pool).await?;
    let session = Session::held(&client, &write.writing.schema, &write.batches);
    write.writing.store(&session, write.mode).await
}

/// The writes of a group in one transaction: each one's partitions made and statement prepared
/// first (a failure there is its own), then the transaction.
async fn together(pool: &Pool, writes: &[Queued]) -> Vec<Answer> {
    let client = match connection(pool).await {
        Ok(client) => client,
        Err(e) => return writes.iter().map(|_| Err(e.clone())).collect(),
    };
    let mut answers: Vec<Option<Answer>> = writes.iter().map(|_| None).collect();
    let sessions: Vec<Session<'_>> = writes
        .iter()
        .map(|w| Session::held(&client, &w.writing.schema, &w.batches))
        .collect();
    let mut runs = Vec::with_capacity(writes.len());
    for (i, (write, session)) in writes.iter().zip(&sessions).enumerate() {
        match prepare(write, session).await {
            Ok(statement) => runs.push((i, statement)),
            Err(e) => answers[i] = Some(Err(e)),
        }
    }
    let sessions: Vec<Session<'_>> = sessions
        .into_iter()
        .map(Session::in_open_transaction)
        .collect();
    let broken = run_all(&client, writes, &sessions, runs, &mut answers).await;
    if broken {
        // its transaction may still be open: the connection is closed rather than pooled
        drop(sessions);
        drop(Object::take(client));
    }
    answers
        .into_iter()
        .map(|a| a.unwrap_or_else(|| Err(StoreError::Internal("a write was not run".into()))))
        .collect()
}

/// Makes the partitions a write's records need and prepares its statement.
async fn prepare(write: &Queued, session: &Session<'_>) -> Result<Statement, StoreError> {
    write.writing.make_partitions(session).await?;
    let sql = Inserts::new(&write.writing.schema);
    let statement = match write.mode {
        ConflictMode::Error => sql.plain(),
        ConflictMode::Ignore => sql.ignoring(),
        ConflictMode::Upsert => sql.replacing(),
        ConflictMode::Merge => {
            return Err(StoreError::Internal("a merge cannot join a group".into()));
        }
    };
    session.prepare(&statement).await.map_err(failed)
}

/// How a write came out of a transaction.
enum Settled {
    Answered(Answer),
    /// Chosen by PostgreSQL to end a deadlock with another transaction: nothing of it is stored.
    Deadlocked(StoreError),
}

/// Runs the prepared writes `runs` (index, statement) in a transaction, and the deadlocked ones
/// again in a second, filling in their answers. True when a transaction failed as a whole (its
/// writes are answered its error) and the connection's state is unknown.
async fn run_all(
    client: &Object,
    writes: &[Queued],
    sessions: &[Session<'_>],
    mut runs: Vec<(usize, Statement)>,
    answers: &mut [Option<Answer>],
) -> bool {
    for last in [false, true] {
        if runs.is_empty() {
            break;
        }
        let settled = match transaction(client, writes, sessions, &runs).await {
            Ok(settled) => settled,
            Err(e) => {
                tracing::warn!(writes = runs.len(), error = %e, "a group of writes failed");
                for (i, _) in &runs {
                    answers[*i] = Some(Err(e.clone()));
                }
                return true;
            }
        };
        let mut again = Vec::new();
        for ((i, statement), settled) in runs.into_iter().zip(settled) {
            match settled {
                Settled::Answered(answer) => answers[i] = Some(answer),
                Settled::Deadlocked(e) if last => answers[i] = Some(Err(e)),
                Settled::Deadlocked(_) => again.push((i, statement)),
            }
        }
        runs = again;
    }
    false
}

/// One transaction of the writes `runs`: all at once, or, should one fail, with a savepoint each.
async fn transaction(
    client: &Object,
    writes: &[Queued],
    sessions: &[Session<'_>],
    runs: &[(usize, Statement)],
) -> Result<Vec<Settled>, StoreError> {
    match at_once(client, writes, sessions, runs).await? {
        Some(settled) => Ok(settled),
        None => with_savepoints(client, writes, sessions, runs).await,
    }
}

/// `BEGIN`, the writes and `COMMIT` sent together. `None` when a write failed: the transaction
/// was aborted there, and its `COMMIT` rolled it back (nothing of the group is stored).
async fn at_once(
    client: &Object,
    writes: &[Queued],
    sessions: &[Session<'_>],
    runs: &[(usize, Statement)],
) -> Result<Option<Vec<Settled>>, StoreError> {
    let params = bound(sessions, runs);
    let refs = as_refs(&params);
    let mut steps = vec![Box::pin(control(client, "BEGIN")) as Step<'_, _>];
    for ((i, statement), refs) in runs.iter().zip(&refs) {
        steps.push(store(client, writes[*i].mode, statement, refs));
    }
    steps.push(Box::pin(control(client, "COMMIT")));
    let mut answered = in_order(steps).await;
    let committed = answered.pop();
    let mut done = answered.into_iter();
    done.next().transpose().map_err(failed)?;
    committed.transpose().map_err(failed)?;
    let mut settled = Vec::with_capacity(runs.len());
    for ((i, _), stored) in runs.iter().zip(done) {
        match stored {
            Ok(stored) => settled.push(Settled::Answered(Ok(outcome(&writes[*i].writing, stored)))),
            Err(_) => return Ok(None),
        }
    }
    Ok(Some(settled))
}

/// Passes over the writes not settled yet, each between `SAVEPOINT` and `RELEASE`, each pass
/// stopping at the first write that fails, which is rolled back to its savepoint and settled
/// alone; then the commit.
async fn with_savepoints(
    client: &Object,
    writes: &[Queued],
    sessions: &[Session<'_>],
    runs: &[(usize, Statement)],
) -> Result<Vec<Settled>, StoreError> {
    client.batch_execute("BEGIN").await.map_err(failed)?;
    let mut settled = Vec::with_capacity(runs.len());
    while settled.len() < runs.len() {
        let (done, failure) = pass(client, writes, sessions, &runs[settled.len()..]).await?;
        settled.extend(done);
        match (failure, runs.get(settled.len())) {
            (Some(e), Some((i, _))) => {
                settled.push(recover(client, &writes[*i], &sessions[*i], e).await?)
            }
            (None, Some(_)) => {
                return Err(StoreError::Internal(
                    "a group's statements went unanswered".into(),
                ));
            }
            (_, None) => {}
        }
    }
    client.batch_execute("COMMIT").await.map_err(failed)?;
    Ok(settled)
}

/// What one statement of a pass answered.
enum Done {
    Control,
    Count(u64),
    Rows(Vec<Row>),
}

/// Sends the writes `runs`, each between `SAVEPOINT` and `RELEASE`, together; answers the writes
/// that succeeded up to the first that failed, and that one's error (the transaction is then
/// aborted past its savepoint). An error of the savepoints themselves fails the transaction.
async fn pass(
    client: &Object,
    writes: &[Queued],
    sessions: &[Session<'_>],
    runs: &[(usize, Statement)],
) -> Result<(Vec<Settled>, Option<tokio_postgres::Error>), StoreError> {
    let params = bound(sessions, runs);
    let refs = as_refs(&params);
    let mut steps: Vec<Step<'_, Result<Done, tokio_postgres::Error>>> = Vec::new();
    for ((i, statement), refs) in runs.iter().zip(&refs) {
        steps.push(Box::pin(control(client, "SAVEPOINT write")));
        steps.push(store(client, writes[*i].mode, statement, refs));
        steps.push(Box::pin(control(client, "RELEASE SAVEPOINT write")));
    }
    let mut answered = in_order(steps).await.into_iter();
    let mut done = Vec::with_capacity(runs.len());
    for (i, _) in runs {
        let (Some(savepoint), Some(stored), Some(released)) =
            (answered.next(), answered.next(), answered.next())
        else {
            break;
        };
        savepoint.map_err(failed)?;
        match stored {
            Ok(stored) => {
                released.map_err(failed)?;
                done.push(Settled::Answered(Ok(outcome(&writes[*i].writing, stored))));
            }
            Err(e) => return Ok((done, Some(e))),
        }
    }
    Ok((done, None))
}

/// The held records of each write of `runs`, as parameters.
fn bound<'a>(sessions: &'a [Session<'_>], runs: &[(usize, Statement)]) -> Vec<Vec<Param<'a>>> {
    runs.iter().map(|(i, _)| sessions[*i].params()).collect()
}

/// Parameters as a statement takes them.
fn as_refs<'a>(params: &'a [Vec<Param<'a>>]) -> Vec<Vec<&'a (dyn ToSql + Sync)>> {
    params
        .iter()
        .map(|p| p.iter().map(|p| p as &(dyn ToSql + Sync)).collect())
        .collect()
}

/// A write's statement, with its held records.
fn store<'a>(
    client: &'a Object,
    mode: ConflictMode,
    statement: &'a Statement,
    refs: &'a [&'a (dyn ToSql + Sync)],
) -> Step<'a, Result<Done, tokio_postgres::Error>> {
    match mode {
        ConflictMode::Upsert => {
            Box::pin(async move { client.query(statement, refs).await.map(Done::Rows) })
        }
        _ => Box::pin(async move { client.execute(statement, refs).await.map(Done::Count) }),
    }
}

/// A statement without an answer, sent as a simple query (one message).
async fn control(client: &Object, sql: &'static str) -> Result<Done, tokio_postgres::Error> {
    client.batch_execute(sql).await.map(|()| Done::Control)
}

/// What a write's statement did, as its answer.
fn outcome(writing: &Writing, stored: Done) -> WriteOutcome {
    match stored {
        Done::Count(inserted) => writing.outcome(inserted, 0),
        Done::Rows(rows) => {
            let counted = |i| rows.first().map_or(0, |r| r.get::<_, i64>(i) as u64);
            writing.outcome(counted(0), counted(1))
        }
        Done::Control => writing.outcome(0, 0),
    }
}

/// Rolls a failed write back to its savepoint and settles it: its conflicting keys (read in the
/// transaction, which holds the group's earlier writes), a deadlock to run again, or its error.
async fn recover(
    client: &Object,
    write: &Queued,
    session: &Session<'_>,
    e: tokio_postgres::Error,
) -> Result<Settled, StoreError> {
    client
        .batch_execute("ROLLBACK TO SAVEPOINT write")
        .await
        .map_err(failed)?;
    tracing::debug!(dataset = %write.writing.schema.name, code = ?e.code().map(SqlState::code), "a write of a group rolled back to its savepoint");
    let settled = match e.code() {
        Some(&SqlState::UNIQUE_VIOLATION) if write.mode == ConflictMode::Error => {
            let conflict = match write.writing.conflicts(session).await {
                Ok(listed) => listed.unwrap_or(StoreError::Conflict {
                    keys: Vec::new(),
                    total: 1,
                }),
                Err(listing) => {
                    // the listing failed: undone too, and the write answered its error
                    client
                        .batch_execute("ROLLBACK TO SAVEPOINT write")
                        .await
                        .map_err(failed)?;
                    listing
                }
            };
            Settled::Answered(Err(conflict))
        }
        Some(&SqlState::T_R_DEADLOCK_DETECTED) => Settled::Deadlocked(failed(e)),
        _ => Settled::Answered(Err(failed(e))),
    };
    client
        .batch_execute("RELEASE SAVEPOINT write")
        .await
        .map_err(failed)?;
    Ok(settled)
}
