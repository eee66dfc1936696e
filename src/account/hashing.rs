//! Password hashing, bounded. argon2id costs 19 MiB and tens of milliseconds of a core
//! per hash; run on the blocking pool without a bound, a few hundred sign-ups at once
//! were hundreds of hashes at once (gigabytes). Here at most one hash per core runs,
//! a short queue waits, and beyond it the request is refused with `busy` at once.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("too many password hashes waiting")]
    Busy,
    #[error("password hashing failed: {0}")]
    Failed(String),
}

pub struct PasswordHashing {
    cores: Arc<Semaphore>,
    cores_total: usize,
    waiting: AtomicUsize,
    max_waiting: usize,
    running: Arc<AtomicUsize>,
    /// The most hashes that ever ran at once, and the verifications run (for tests and
    /// docs/security.md).
    peak_running: AtomicUsize,
    verifications: AtomicU64,
}

/// A core, held by the hash's blocking work itself: a request that goes away does not
/// free it while argon2 still runs.
struct Running {
    running: Arc<AtomicUsize>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.running.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A place in the queue, given back however the wait ends (a dropped request too).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl PasswordHashing {
    /// One hash per core at once, `max_waiting` more in line.
    pub fn new(max_waiting: usize) -> PasswordHashing {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        PasswordHashing {
            cores: Arc::new(Semaphore::new(cores)),
            cores_total: cores,
            waiting: AtomicUsize::new(0),
            max_waiting,
            running: Arc::new(AtomicUsize::new(0)),
            peak_running: AtomicUsize::new(0),
            verifications: AtomicU64::new(0),
        }
    }

    async fn core(&self) -> Result<Running, HashError> {
        let permit = match self.cores.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let waiting = Waiting(&self.waiting);
                if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
                    return Err(HashError::Busy);
                }
                let acquired = self.cores.clone().acquire_owned().await;
                drop(waiting);
                acquired.map_err(|e| HashError::Failed(e.to_string()))?
            }
        };
        let now = self.running.fetch_add(1, Ordering::AcqRel) + 1;
        self.peak_running.fetch_max(now, Ordering::AcqRel);
        Ok(Running {
            running: self.running.clone(),
            _permit: permit,
        })
    }

    /// An argon2id hash (PHC string) of a new password.
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        let core = self.core().await?;
        tokio::task::spawn_blocking(move || {
            let _core = core;
            let mut salt = [0u8; 16];
            getrandom::fill(&mut salt).map_err(|e| e.to_string())?;
            let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
            Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map(|hash| hash.to_string())
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| HashError::Failed(e.to_string()))?
        .map_err(HashError::Failed)
    }

    /// Verifies a password. With no account (`hash` is `None`), a dummy hash is
    /// verified anyway, so the answer takes as long whether the name exists or not.
    pub async fn verify(&self, password: String, hash: Option<String>) -> Result<bool, HashError> {
        static DUMMY: OnceLock<String> = OnceLock::new();
        let core = self.core().await?;
        self.verifications.fetch_add(1, Ordering::Relaxed);
        tokio::task::spawn_blocking(move || {
            let _core = core;
            let exists = hash.is_some();
            let hash = hash.unwrap_or_else(|| {
                DUMMY
                    .get_or_init(|| {
                        let salt = SaltString::encode_b64(b"tutor-chat-dummy").expect("constant salt");
                        Argon2::default()
                            .hash_password(b"not a password", &salt)
                            .map(|h| h.to_string())
                            .unwrap_or_default()
                    })
                    .clone()
            });
            let ok = PasswordHash::new(&hash)
                .map(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
                .unwrap_or(false);
            ok && exists
        })
        .await
        .map_err(|e| HashError::Failed(e.to_string()))
    }

    /// Password verifications run so far.
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// The most hashes that ran at once, and how many may.
    pub fn peak_running(&self) -> (usize, usize) {
        (self.peak_running.load(Ordering::Relaxed), self.cores_total)
    }
}
