//! The embedded store's disk: one SQLite database in `DATA_DIR` holding the
//! current value of every key of the embedded ledgers and records, in named
//! spaces (one per app and kind of record).
//!
//! The embedded stores keep their working set in memory and hand each
//! change to the [`Disk`] in the order they made it, while they still hold
//! the lock that ordered it. One writer thread commits whatever has queued
//! up in one transaction: one fsync for every request waiting (group
//! commit). A request is answered only once its change is on disk
//! ([`Durable::wait`]). At start each store reads its space back.
//!
//! SQLite (bundled, in WAL mode with `synchronous=FULL`) because a second
//! process can read a consistent snapshot while the service writes: that is
//! what `formid-ledger backup` does.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, params};
use tokio::sync::oneshot;

use super::StoreError;

/// The database file inside `DATA_DIR`.
pub const DATABASE_FILE: &str = "formid-ledger.sqlite3";
/// Held (an exclusive file lock) by the one process serving a `DATA_DIR`.
const LOCK_FILE: &str = "formid-ledger.lock";
/// The layout this version writes; a database of a later one is refused.
const FORMAT: i64 = 1;
/// Most changes one transaction carries; more wait for the next one.
const MOST_PER_COMMIT: usize = 4096;

/// One key's new value (`None`: the key is gone).
pub type Change = (Vec<u8>, Option<Vec<u8>>);

/// One stored key and its value.
pub type Row = (Vec<u8>, Vec<u8>);

struct Queued {
    space: Arc<str>,
    changes: Vec<Change>,
    done: oneshot::Sender<Result<(), String>>,
}

/// The database of one `DATA_DIR`, opened by the process that serves it.
pub struct Disk {
    path: PathBuf,
    queue: mpsc::Sender<Queued>,
    /// The first commit that failed: from then on nothing more is accepted,
    /// since what is in memory may be ahead of what is on disk.
    failed: Arc<Mutex<Option<String>>>,
    /// Holds the lock file's lock while the process lives.
    _lock: File,
}

impl Disk {
    /// Opens (creating them if needed) `dir` and its database, and starts
    /// the writer. Refused if another process serves `dir`, or if the
    /// database was written by a later version.
    pub fn open(dir: &Path) -> Result<Arc<Self>, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("DATA_DIR {}: cannot create it: {e}", dir.display()))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| format!("DATA_DIR {}: {e}", dir.display()))?;
        if lock.try_lock().is_err() {
            return Err(format!(
                "DATA_DIR {} is in use by another formid-ledger process: stop it, or give this one \
                 another DATA_DIR (two processes on one embedded store would spend the same \
                 credentials twice; several instances need REDIS_URL)",
                dir.display()
            ));
        }
        let path = dir.join(DATABASE_FILE);
        let writer = connect(&path, OpenFlags::default()).map_err(|e| describe(&path, &e))?;
        prepare(&writer).map_err(|e| format!("{}: {e}", path.display()))?;
        let (queue, jobs) = mpsc::channel();
        let failed = Arc::new(Mutex::new(None));
        let failures = failed.clone();
        std::thread::Builder::new()
            .name("formid-disk".into())
            .spawn(move || write_all(writer, &jobs, &failures))
            .map_err(|e| format!("cannot start the disk writer: {e}"))?;
        Ok(Arc::new(Self {
            path,
            queue,
            failed,
            _lock: lock,
        }))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The space `name`: the keys of one store.
    pub fn space(self: &Arc<Self>, name: &str) -> Space {
        Space {
            disk: self.clone(),
            name: name.into(),
        }
    }

    /// Why the disk accepts no more changes, if it does not.
    pub fn failure(&self) -> Option<String> {
        lock(&self.failed).clone()
    }
}

/// The keys of one store in the database.
#[derive(Clone)]
pub struct Space {
    disk: Arc<Disk>,
    name: Arc<str>,
}

impl Space {
    /// Every key of the space with its value, as last committed.
    pub fn load(&self) -> Result<Vec<Row>, StoreError> {
        let unavailable = |e: rusqlite::Error| StoreError::Unavailable(describe(&self.disk.path, &e));
        let reader = connect(&self.disk.path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(unavailable)?;
        let mut rows = reader
            .prepare("SELECT key, value FROM kv WHERE space = ?1")
            .map_err(unavailable)?;
        let read = rows
            .query_map(params![&*self.name], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(unavailable)?;
        read.collect::<Result<_, _>>().map_err(unavailable)
    }

    /// Queues `changes` behind every change queued before them (call it
    /// under the lock that ordered them); the [`Durable`] says when they
    /// are on disk.
    pub fn record(&self, changes: Vec<Change>) -> Durable {
        if changes.is_empty() {
            return Durable(None);
        }
        let (done, on_disk) = oneshot::channel();
        let queued = Queued {
            space: self.name.clone(),
            changes,
            done,
        };
        if let Err(mpsc::SendError(queued)) = self.disk.queue.send(queued) {
            let _ = queued.done.send(Err("the disk writer has stopped".into()));
        }
        Durable(Some(on_disk))
    }

    /// Whether the disk still takes changes.
    pub fn check(&self) -> Result<(), StoreError> {
        match self.disk.failure() {
            Some(failure) => Err(StoreError::Unavailable(failure)),
            None => Ok(()),
        }
    }
}

/// Changes on their way to disk.
#[must_use = "a change is not durable until waited for"]
pub struct Durable(Option<oneshot::Receiver<Result<(), String>>>);

impl Durable {
    /// Nothing to wait for (no disk, or nothing changed).
    pub fn done() -> Self {
        Self(None)
    }

    /// Returns once the changes are committed, or why they never will be.
    pub async fn wait(self) -> Result<(), StoreError> {
        let Some(on_disk) = self.0 else {
            return Ok(());
        };
        match on_disk.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(failure)) => Err(StoreError::Unavailable(failure)),
            Err(_) => Err(StoreError::Unavailable("the disk writer has stopped".into())),
        }
    }
}

/// `formid-ledger backup`: a consistent copy of the database in `dir` to
/// `dest`, taken while the service may be writing. Returns the rows copied.
pub fn backup(dir: &Path, dest: &Path) -> Result<u64, String> {
    let path = dir.join(DATABASE_FILE);
    if !path.exists() {
        return Err(format!("{} does not exist: is DATA_DIR right?", path.display()));
    }
    if dest.exists() {
        return Err(format!("{} exists: name a new file", dest.display()));
    }
    let source = connect(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|e| describe(&path, &e))?;
    let mut copy = Connection::open(dest).map_err(|e| describe(dest, &e))?;
    // All pages in one step: a copy taken in small steps starts over at
    // every commit of the service, and may never finish while it is busy.
    let copied = rusqlite::backup::Backup::new(&source, &mut copy).and_then(|b| b.step(-1));
    match copied {
        Ok(rusqlite::backup::StepResult::Done) => {}
        Ok(other) => {
            return Err(format!(
                "copying {}: the copy did not finish ({other:?})",
                path.display()
            ));
        }
        Err(e) => return Err(format!("copying {} to {}: {e}", path.display(), dest.display())),
    }
    copy.pragma_update(None, "journal_mode", "DELETE")
        .and_then(|_| copy.query_row("SELECT count(*) FROM kv", [], |row| row.get::<_, i64>(0)))
        .map(|rows| u64::try_from(rows).unwrap_or(0))
        .map_err(|e| describe(dest, &e))
}

fn connect(path: &Path, flags: OpenFlags) -> rusqlite::Result<Connection> {
    let connection = Connection::open_with_flags(path, flags)?;
    // A backup or a reader may hold the database briefly: wait, do not fail.
    connection.busy_timeout(Duration::from_secs(5))?;
    Ok(connection)
}

/// WAL with `synchronous=FULL`: every commit is on disk before it returns,
/// and readers (a backup) never block the writer.
fn prepare(connection: &Connection) -> Result<(), String> {
    let format: i64 = connection
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(|e| e.to_string())?;
    if format > FORMAT {
        return Err(format!(
            "written by a later formid-ledger (layout {format}; this version reads {FORMAT}): run \
             that version, or restore a backup this one wrote"
        ));
    }
    connection
        .pragma_update(None, "journal_mode", "WAL")
        .and_then(|_| connection.pragma_update(None, "synchronous", "FULL"))
        .and_then(|_| {
            connection.execute_batch(
                "CREATE TABLE IF NOT EXISTS kv (
                     space TEXT NOT NULL,
                     key BLOB NOT NULL,
                     value BLOB NOT NULL,
                     PRIMARY KEY (space, key)
                 ) WITHOUT ROWID",
            )
        })
        .and_then(|_| connection.pragma_update(None, "user_version", FORMAT))
        .map_err(|e| e.to_string())
}

/// The writer thread: takes what has queued, commits it at once, answers
/// everyone in it; until every [`Disk`] handle is gone.
fn write_all(mut connection: Connection, jobs: &mpsc::Receiver<Queued>, failed: &Mutex<Option<String>>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        let mut changes = batch[0].changes.len();
        while changes < MOST_PER_COMMIT {
            let Ok(next) = jobs.try_recv() else { break };
            changes += next.changes.len();
            batch.push(next);
        }
        let outcome = match lock(failed).clone() {
            Some(failure) => Err(failure),
            None => commit(&mut connection, &batch).map_err(|e| {
                let failure = format!("writing to the embedded store failed ({e}); restart the service");
                tracing::error!("{failure}");
                *lock(failed) = Some(failure.clone());
                failure
            }),
        };
        for queued in batch {
            let _ = queued.done.send(outcome.clone());
        }
    }
}

fn commit(connection: &mut Connection, batch: &[Queued]) -> rusqlite::Result<()> {
    let transaction = connection.transaction()?;
    {
        let mut put = transaction.prepare_cached(
            "INSERT INTO kv (space, key, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (space, key) DO UPDATE SET value = excluded.value",
        )?;
        let mut delete = transaction.prepare_cached("DELETE FROM kv WHERE space = ?1 AND key = ?2")?;
        for queued in batch {
            for (key, value) in &queued.changes {
                match value {
                    Some(value) => put.execute(params![&*queued.space, key, value])?,
                    None => delete.execute(params![&*queued.space, key])?,
                };
            }
        }
    }
    transaction.commit()
}

fn describe(path: &Path, error: &rusqlite::Error) -> String {
    format!("{}: {error}", path.display())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
