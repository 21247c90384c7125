//! Group commit: every write to the SQLite store is a job for one writer, which runs all jobs
//! waiting at that moment in one transaction and answers each only after the single COMMIT
//! (one fsync for all of them).
//!
//! A job of several statements runs inside a savepoint: if it fails it rolls back to it and
//! gets its own error while its neighbours still commit. A job of exactly one statement needs
//! no savepoint (SQLite undoes a failed statement by itself), which saves two round trips to
//! SQLite's worker thread; on these machines each costs about 0.1 ms, and the writer is serial.
//! If the COMMIT fails, every job in the batch gets `Unavailable` (503: retry), and nothing was
//! acknowledged before.

use futures_util::future::BoxFuture;
use sqlx::{SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::merged;
use crate::store::StoreError;

/// The most jobs one transaction takes.
pub const MAX_BATCH: usize = 256;

/// What the writer is asked to do. Items of the merged kinds run together: one statement for
/// all of a batch's items of a kind (see [`merged`]).
pub enum Work {
    /// Any job, run on its own in arrival order.
    Job(Box<dyn WriteJob>),
    /// An inbound message that may take the one-statement path.
    Ingest(merged::Ingest),
    /// A bot's answer to an inbound message.
    Complete(merged::Complete),
}

/// One unit of work for the writer.
pub trait WriteJob: Send {
    /// Whether the job runs more than one statement and so needs a savepoint.
    fn needs_savepoint(&self) -> bool;
    /// Runs the job's statements; true when they succeeded.
    fn run<'c>(&'c mut self, conn: &'c mut SqliteConnection) -> BoxFuture<'c, bool>;
    /// Reports the outcome once the transaction committed (or failed).
    fn finish(self: Box<Self>, committed: Result<(), String>);
}

/// A job built from a closure, answering through a oneshot channel.
pub struct Job<T, F> {
    savepoint: bool,
    work: Option<F>,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job<T, F>
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, StoreError>>
        + Send
        + 'static,
{
    /// A job and the receiver of its result. `savepoint` is false only for work that runs
    /// exactly one statement.
    pub fn boxed(
        savepoint: bool,
        work: F,
    ) -> (Box<dyn WriteJob>, oneshot::Receiver<Result<T, StoreError>>) {
        let (reply, rx) = oneshot::channel();
        (Self::with_reply(savepoint, work, reply), rx)
    }

    /// A job answering through an existing channel.
    pub fn with_reply(
        savepoint: bool,
        work: F,
        reply: oneshot::Sender<Result<T, StoreError>>,
    ) -> Box<dyn WriteJob> {
        Box::new(Self {
            savepoint,
            work: Some(work),
            result: None,
            reply,
        })
    }
}

impl<T: Send + 'static> Job<T, fn(&mut SqliteConnection) -> BoxFuture<'_, Result<T, StoreError>>> {
    /// A job whose work already ran (merged with others); it answers after the COMMIT.
    pub fn done(
        result: Result<T, StoreError>,
        reply: oneshot::Sender<Result<T, StoreError>>,
    ) -> Box<dyn WriteJob> {
        Box::new(Self {
            savepoint: false,
            work: None,
            result: Some(result),
            reply,
        })
    }
}

impl<T, F> WriteJob for Job<T, F>
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, StoreError>>
        + Send
        + 'static,
{
    fn needs_savepoint(&self) -> bool {
        self.savepoint
    }

    fn run<'c>(&'c mut self, conn: &'c mut SqliteConnection) -> BoxFuture<'c, bool> {
        Box::pin(async move {
            let Some(work) = self.work.take() else {
                return false;
            };
            let result = work(conn).await;
            let ok = result.is_ok();
            self.result = Some(result);
            ok
        })
    }

    fn finish(self: Box<Self>, committed: Result<(), String>) {
        let result = match committed {
            Ok(()) => self
                .result
                .unwrap_or_else(|| Err(StoreError::Conflict("write job did not run".into()))),
            Err(why) => Err(unavailable(why)),
        };
        let _ = self.reply.send(result);
    }
}

fn unavailable(why: String) -> StoreError {
    StoreError::Unavailable(sqlx::Error::Protocol(format!("group commit failed: {why}")))
}

/// The writer task: runs until every sender is gone.
pub async fn run(pool: SqlitePool, mut rx: mpsc::Receiver<Work>) {
    let mut work = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut work, MAX_BATCH).await > 0 {
        let batch = std::mem::take(&mut work);
        let (batch, committed) = run_batch(&pool, batch).await;
        if let Err(why) = &committed {
            tracing::error!(error = %why, jobs = batch.len(), "store write failed; callers get 503");
        }
        for job in batch {
            job.finish(committed.clone());
        }
    }
}

/// Runs one batch in one transaction. Returns every job (to answer) and the COMMIT's outcome.
async fn run_batch(
    pool: &SqlitePool,
    batch: Vec<Work>,
) -> (Vec<Box<dyn WriteJob>>, Result<(), String>) {
    let (mut jobs, mut ingests, mut completes) = (Vec::new(), Vec::new(), Vec::new());
    for w in batch {
        match w {
            Work::Job(j) => jobs.push(j),
            Work::Ingest(i) => ingests.push(i),
            Work::Complete(c) => completes.push(c),
        }
    }
    let mut conn = match pool.acquire().await {
        Ok(c) => c,
        Err(e) => {
            let why = e.to_string();
            return (unrun(jobs, ingests, completes), Err(why));
        }
    };
    // IMMEDIATE: take the write lock now, so no statement inside fails on an upgrade.
    if let Err(e) = sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut *conn).await {
        return (unrun(jobs, ingests, completes), Err(e.to_string()));
    }
    // Merged items first; those they could not take run after, with the other jobs.
    let (pending, mut done) = merged::ingest_all(&mut conn, ingests).await;
    jobs.extend(pending);
    let (pending, done_too) = merged::complete_all(&mut conn, completes).await;
    jobs.extend(pending);
    done.extend(done_too);
    for job in jobs.iter_mut() {
        let step: Result<(), sqlx::Error> = async {
            if !job.needs_savepoint() {
                job.run(&mut conn).await;
                return Ok(());
            }
            sqlx::raw_sql("SAVEPOINT job").execute(&mut *conn).await?;
            if job.run(&mut conn).await {
                sqlx::raw_sql("RELEASE job").execute(&mut *conn).await?;
            } else {
                sqlx::raw_sql("ROLLBACK TO job; RELEASE job")
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(())
        }
        .await;
        if let Err(e) = step {
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
            jobs.extend(done);
            return (jobs, Err(e.to_string()));
        }
    }
    jobs.extend(done);
    match sqlx::raw_sql("COMMIT").execute(&mut *conn).await {
        Ok(_) => (jobs, Ok(())),
        Err(e) => {
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
            (jobs, Err(e.to_string()))
        }
    }
}

/// Every job of a batch that never started, ready to be answered with the failure.
fn unrun(
    mut jobs: Vec<Box<dyn WriteJob>>,
    ingests: Vec<merged::Ingest>,
    completes: Vec<merged::Complete>,
) -> Vec<Box<dyn WriteJob>> {
    jobs.extend(ingests.into_iter().map(merged::Ingest::fallback));
    jobs.extend(completes.into_iter().map(merged::Complete::fallback));
    jobs
}
