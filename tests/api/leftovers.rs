//! What a test makes outside itself — a PostgreSQL database, an SQLite file, a data
//! folder — is removed when the test ends. A CI machine's disk can be nearly full:
//! a suite that kept all of its ~200 databases (about 2 GB with their WAL) once ran
//! PostgreSQL out of space in the middle of a run, and the next tests failed at once.
//!
//! libtest runs every test on a thread of its own and joins it before the next one,
//! so the list lives in a thread-local and is emptied by its destructor: by then the
//! test's runtime, its pools and sockets are gone. `TUTOR_TEST_KEEP=1` keeps it all
//! (to look into a failed test's database).

use std::cell::RefCell;
use std::path::PathBuf;

use crate::helpers::{fresh_data_dir, fresh_database_url, Db};

#[derive(Default)]
struct Leftovers {
    /// (the PostgreSQL server's admin URL, a database made on it)
    databases: Vec<(String, String)>,
    /// Files and folders, removed whichever they are.
    paths: Vec<PathBuf>,
}

thread_local! {
    static LEFTOVERS: RefCell<Leftovers> = RefCell::default();
}

/// Drops `database` on `admin_url`'s server when the calling test ends.
pub fn database(admin_url: &str, database: &str) {
    LEFTOVERS.with(|l| l.borrow_mut().databases.push((admin_url.to_string(), database.to_string())));
}

/// Removes `path` (a file or a folder, with what is in it) when the calling test ends.
pub fn path(path: PathBuf) {
    LEFTOVERS.with(|l| l.borrow_mut().paths.push(path));
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        if std::env::var_os("TUTOR_TEST_KEEP").is_some_and(|v| v == "1") {
            return;
        }
        for path in &self.paths {
            let _ = std::fs::remove_dir_all(path).or_else(|_| std::fs::remove_file(path));
        }
        let databases = std::mem::take(&mut self.databases);
        if !databases.is_empty() {
            // On a thread of its own: this one's thread-locals (tokio's too) are being
            // torn down, and a panic in a thread-local's destructor aborts the suite.
            match std::thread::Builder::new().spawn(move || drop_databases(databases)) {
                Ok(dropping) => {
                    let _ = dropping.join();
                }
                Err(e) => eprintln!("[leftovers] no thread to drop the test's databases: {e}"),
            }
        }
    }
}

/// Past this, a database is left for the throwaway cluster's own removal: libtest is
/// waiting for this thread, and no test's timeout would fire.
const DROP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// `WITH (FORCE)` ends what is still connected (a server process the test killed
/// halfway, a pool's idle connection whose close PostgreSQL has not seen yet).
fn drop_databases(databases: Vec<(String, String)>) {
    use sqlx::Connection;
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return eprintln!("[leftovers] no runtime to drop the test's databases: {e}"),
    };
    runtime.block_on(async {
        for (admin_url, name) in databases {
            let dropped = tokio::time::timeout(DROP_TIMEOUT, async {
                let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut admin).await
            });
            match dropped.await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => eprintln!("[leftovers] could not drop the test database {name}: {e}"),
                Err(_) => eprintln!("[leftovers] dropping the test database {name} took over {DROP_TIMEOUT:?}"),
            }
        }
    });
}

/// The harness's own promise: a finished test leaves no database, file or folder.
#[test]
fn a_finished_test_leaves_no_database_file_or_folder() {
    if std::env::var_os("TUTOR_TEST_KEEP").is_some_and(|v| v == "1") {
        eprintln!("TUTOR_TEST_KEEP=1: leftovers are kept on purpose, nothing to check");
        return;
    }
    let (url, data_dir) = std::thread::spawn(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let url = fresh_database_url().await;
            let data_dir = fresh_data_dir();
            // Connecting makes the SQLite file and its WAL, and the schema.
            Db::connect(&url, 2).await.unwrap();
            std::fs::create_dir_all(data_dir.join("lessons-index")).unwrap();
            std::fs::write(data_dir.join("lessons-index").join("a-file"), b"kept until the test ends").unwrap();
            (url, data_dir)
        })
    })
    .join()
    .unwrap();

    assert!(!data_dir.exists(), "{} is left behind", data_dir.display());
    match url.strip_prefix("sqlite://") {
        Some(rest) => {
            let file = rest.split('?').next().unwrap();
            for suffix in ["", "-wal", "-shm"] {
                let path = format!("{file}{suffix}");
                assert!(!std::path::Path::new(&path).exists(), "{path} is left behind");
            }
        }
        None => {
            let name = url.rsplit_once('/').unwrap().1.to_string();
            let admin_url = std::env::var("TUTOR_TEST_DATABASE_URL").unwrap();
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let left: i64 = runtime.block_on(async {
                use sqlx::Connection;
                let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
                sqlx::query_scalar("SELECT COUNT(*) FROM pg_database WHERE datname = $1")
                    .bind(&name)
                    .fetch_one(&mut admin)
                    .await
                    .unwrap()
            });
            assert_eq!(left, 0, "the database {name} is left behind");
        }
    }
}
