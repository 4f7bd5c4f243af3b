//! The embedded store's disk: one SQLite database in `DATA_DIR` holding the
//! current value of every key of the embedded ledgers and records, in named
//! spaces (one per app and kind of record).
//!
//! The embedded stores keep their working set in memory and hand each
//! change to the [`Disk`] in the order they made it, while they still hold
//! the lock that ordered it, and go on. One writer thread commits whatever
//! has queued up in one transaction: one fsync for every request waiting
//! (group commit). Nothing that cannot be taken back happens before what
//! led to it is committed: an HTTP answer, or a credential presented to
//! WeChat, first waits at the [`Barrier`] for every change queued so far.
//! At start each store reads its space back.
//!
//! SQLite (bundled, in WAL mode with `synchronous=FULL`) because a second
//! process can read a consistent snapshot while the service writes: that is
//! what `formid-ledger backup` does.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, params};
use tokio::sync::watch;

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
    /// Its place in the queue: 1, 2, ...
    seq: u64,
    space: Arc<str>,
    changes: Vec<Change>,
}

/// How far the writer got: every change up to `seq` is committed, unless a
/// commit failed. After a failure nothing more is accepted, since what is in
/// memory may be ahead of what is on disk.
#[derive(Debug, Clone, Default)]
struct Committed {
    seq: u64,
    failure: Option<String>,
}

/// The database of one `DATA_DIR`, opened by the process that serves it.
pub struct Disk {
    path: PathBuf,
    /// The queue to the writer and the last place handed out in it, taken
    /// together so that places follow the queue's order.
    queue: Mutex<Option<(mpsc::Sender<Queued>, u64)>>,
    /// The last place handed out, for [`Barrier::wait`].
    queued: AtomicU64,
    committed: watch::Sender<Committed>,
    writer: Option<JoinHandle<()>>,
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
        let committed = watch::Sender::new(Committed::default());
        let progress = committed.clone();
        let writer = std::thread::Builder::new()
            .name("formid-disk".into())
            .spawn(move || write_all(writer, &jobs, &progress))
            .map_err(|e| format!("cannot start the disk writer: {e}"))?;
        Ok(Arc::new(Self {
            path,
            queue: Mutex::new(Some((queue, 0))),
            queued: AtomicU64::new(0),
            committed,
            writer: Some(writer),
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
        self.committed.borrow().failure.clone()
    }

    /// Queues `changes` of `space` behind everything queued before.
    fn queue(&self, space: &Arc<str>, changes: Vec<Change>) {
        let mut queue = lock(&self.queue);
        let Some((sender, last)) = queue.as_mut() else {
            return;
        };
        *last += 1;
        let queued = Queued {
            seq: *last,
            space: space.clone(),
            changes,
        };
        if sender.send(queued).is_ok() {
            self.queued.store(*last, Ordering::Release);
        }
    }
}

/// The writer commits what is queued, then stops; the lock file's lock is
/// released after.
impl Drop for Disk {
    fn drop(&mut self) {
        lock(&self.queue).take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// Waits until every change queued so far is committed: before anything
/// that cannot be taken back. Does nothing without a disk (Redis answers
/// each write once it applied it; `STORE=memory` keeps nothing).
#[derive(Clone, Default)]
pub struct Barrier(Option<Arc<Disk>>);

impl Barrier {
    pub fn on(disk: Arc<Disk>) -> Self {
        Self(Some(disk))
    }

    /// Returns once every change queued before the call is committed, or
    /// why it never will be.
    pub async fn wait(&self) -> Result<(), StoreError> {
        let Some(disk) = &self.0 else {
            return Ok(());
        };
        let target = disk.queued.load(Ordering::Acquire);
        let mut progress = disk.committed.subscribe();
        let reached = progress
            .wait_for(|c| c.failure.is_some() || c.seq >= target)
            .await
            .map(|c| c.failure.clone());
        match reached {
            Ok(None) => Ok(()),
            Ok(Some(failure)) => Err(StoreError::Unavailable(failure)),
            Err(_) => Err(StoreError::Unavailable("the disk writer has stopped".into())),
        }
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
    /// under the lock that ordered them); a [`Barrier`] waits for them.
    pub fn record(&self, changes: Vec<Change>) {
        if !changes.is_empty() {
            self.disk.queue(&self.name, changes);
        }
    }

    /// Whether the disk still takes changes.
    pub fn check(&self) -> Result<(), StoreError> {
        match self.disk.failure() {
            Some(failure) => Err(StoreError::Unavailable(failure)),
            None => Ok(()),
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

/// The writer thread: takes what has queued, commits it at once, and says
/// how far it got; until the [`Disk`] closes the queue.
fn write_all(mut connection: Connection, jobs: &mpsc::Receiver<Queued>, progress: &watch::Sender<Committed>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        let mut changes = batch[0].changes.len();
        while changes < MOST_PER_COMMIT {
            let Ok(next) = jobs.try_recv() else { break };
            changes += next.changes.len();
            batch.push(next);
        }
        if progress.borrow().failure.is_some() {
            continue;
        }
        let last = batch.last().map_or(0, |queued| queued.seq);
        match commit(&mut connection, &batch) {
            Ok(()) => {
                progress.send_modify(|c| c.seq = last);
            }
            Err(e) => {
                let failure = format!("writing to the embedded store failed ({e}); restart the service");
                tracing::error!("{failure}");
                progress.send_modify(|c| c.failure = Some(failure));
            }
        }
    }
}

/// Writes a batch in one transaction: each key's last value only (a send
/// changes its Idempotency-Key's record three times, often in one batch).
fn commit(connection: &mut Connection, batch: &[Queued]) -> rusqlite::Result<()> {
    let mut last: HashMap<(&str, &[u8]), Option<&[u8]>> = HashMap::new();
    for queued in batch {
        for (key, value) in &queued.changes {
            last.insert((&queued.space, key), value.as_deref());
        }
    }
    let transaction = connection.transaction()?;
    {
        let mut put = transaction.prepare_cached(
            "INSERT INTO kv (space, key, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (space, key) DO UPDATE SET value = excluded.value",
        )?;
        let mut delete = transaction.prepare_cached("DELETE FROM kv WHERE space = ?1 AND key = ?2")?;
        for ((space, key), value) in last {
            match value {
                Some(value) => put.execute(params![space, key, value])?,
                None => delete.execute(params![space, key])?,
            };
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn change(key: &str, value: &str) -> Change {
        (key.as_bytes().to_vec(), Some(value.as_bytes().to_vec()))
    }

    #[tokio::test]
    async fn a_barrier_returns_once_what_was_queued_before_it_is_committed() {
        let dir = tempfile::TempDir::new().unwrap();
        let disk = Disk::open(dir.path()).unwrap();
        let space = disk.space("test");
        for n in 0..1000 {
            space.record(vec![change(&format!("k{n}"), "v")]);
        }
        space.record(vec![change("k7", "w"), (b"k8".to_vec(), None)]);
        Barrier::on(disk.clone()).wait().await.unwrap();
        // Read by another connection, as the next start would.
        let rows: BTreeMap<Vec<u8>, Vec<u8>> = space.load().unwrap().into_iter().collect();
        assert_eq!(rows.len(), 999);
        assert_eq!(rows[b"k7".as_slice()], b"w");
        assert!(!rows.contains_key(b"k8".as_slice()));
    }

    #[tokio::test]
    async fn a_failed_commit_fails_that_wait_and_every_later_one() {
        let dir = tempfile::TempDir::new().unwrap();
        let disk = Disk::open(dir.path()).unwrap();
        let space = disk.space("test");
        space.record(vec![change("a", "1")]);
        Barrier::on(disk.clone()).wait().await.unwrap();
        // The database stops taking writes under the writer's feet.
        Connection::open(dir.path().join(DATABASE_FILE))
            .unwrap()
            .execute_batch("DROP TABLE kv")
            .unwrap();
        space.record(vec![change("b", "2")]);
        assert!(Barrier::on(disk.clone()).wait().await.is_err());
        assert!(space.check().is_err(), "nothing more is accepted");
        space.record(vec![change("c", "3")]);
        assert!(Barrier::on(disk.clone()).wait().await.is_err());
    }

    #[test]
    fn one_process_serves_a_data_directory() {
        let dir = tempfile::TempDir::new().unwrap();
        let first = Disk::open(dir.path()).unwrap();
        let refused = Disk::open(dir.path()).err().unwrap();
        assert!(
            refused.contains("in use by another formid-ledger process"),
            "{refused}"
        );
        drop(first);
        assert!(Disk::open(dir.path()).is_ok(), "free again once closed");
    }
}
