//! Progress reports, and running blocking file work on tokio's blocking pool while the
//! caller's task reports its progress.

use crate::BackupError;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often progress is reported while bytes move.
const REPORT_EVERY: Duration = Duration::from_millis(200);

/// Which part of an operation is running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Copying files to the target.
    Writing,
    /// Reading files back from the target and checking them.
    Verifying,
    /// Copying files from the target to a local folder.
    Fetching,
}

/// How far an operation has got, in bytes of file content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Bytes done so far.
    pub done_bytes: u64,
    /// Bytes to do in all.
    pub total_bytes: u64,
    /// What is being done.
    pub stage: Stage,
}

/// What receives progress reports. It is called at most every 200 ms, and once at the end.
pub type ProgressFn<'a> = dyn Fn(Progress) + Send + Sync + 'a;

/// A progress receiver that ignores every report.
pub const NO_PROGRESS: &ProgressFn<'static> = &|_| {};

/// Counters shared between the threads doing the work and the task reporting it, and a flag
/// telling the workers to stop.
#[derive(Debug, Default)]
pub(crate) struct Meter {
    done: AtomicU64,
    total: AtomicU64,
    cancelled: AtomicBool,
}

impl Meter {
    pub(crate) fn set_total(&self, bytes: u64) {
        self.total.store(bytes, Ordering::Relaxed);
    }

    pub(crate) fn add(&self, bytes: u64) {
        self.done.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Tells every worker to stop at its next chunk.
    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    /// [`BackupError::Cancelled`] once [`Meter::cancel`] was called.
    pub(crate) fn check(&self) -> Result<(), BackupError> {
        match self.cancelled.load(Ordering::Relaxed) {
            true => Err(BackupError::Cancelled),
            false => Ok(()),
        }
    }

    fn progress(&self, stage: Stage) -> Progress {
        Progress {
            done_bytes: self.done.load(Ordering::Relaxed),
            total_bytes: self.total.load(Ordering::Relaxed),
            stage,
        }
    }
}

/// Cancels the meter's work when the future waiting for it is dropped.
struct CancelOnDrop(Arc<Meter>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Runs `work` on the blocking pool, reporting its meter to `progress` every 200 ms and once
/// more when it succeeds. Dropping the returned future tells the work to stop.
pub(crate) async fn run_blocking<T, F>(
    stage: Stage,
    progress: &ProgressFn<'_>,
    work: F,
) -> Result<T, BackupError>
where
    T: Send + 'static,
    F: FnOnce(&Meter) -> Result<T, BackupError> + Send + 'static,
{
    let meter = Arc::new(Meter::default());
    // Cancelling after the work ended does nothing, so the guard can simply go out of scope.
    let _guard = CancelOnDrop(meter.clone());
    let shared = meter.clone();
    let mut task = tokio::task::spawn_blocking(move || work(&shared));
    let mut tick = tokio::time::interval(REPORT_EVERY);
    let mut last = None;
    let joined = loop {
        tokio::select! {
            joined = &mut task => break joined,
            _ = tick.tick() => {
                let now = meter.progress(stage);
                if last != Some(now) {
                    progress(now);
                    last = Some(now);
                }
            }
        }
    };
    let result = match joined {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(BackupError::Cancelled),
    };
    if result.is_ok() {
        progress(meter.progress(stage));
    }
    result
}

/// Reports progress from async code, at most every 200 ms.
pub(crate) struct Reporter<'a> {
    progress: &'a ProgressFn<'a>,
    stage: Stage,
    done: u64,
    total: u64,
    last: Option<Instant>,
}

impl<'a> Reporter<'a> {
    pub(crate) fn new(progress: &'a ProgressFn<'a>, stage: Stage, total: u64) -> Reporter<'a> {
        Reporter {
            progress,
            stage,
            done: 0,
            total,
            last: None,
        }
    }

    /// Counts bytes done and reports if the last report is old enough.
    pub(crate) fn add(&mut self, bytes: u64) {
        self.done += bytes;
        if self.last.is_none_or(|at| at.elapsed() >= REPORT_EVERY) {
            self.report();
        }
    }

    /// Reports now.
    pub(crate) fn report(&mut self) {
        (self.progress)(Progress {
            done_bytes: self.done,
            total_bytes: self.total,
            stage: self.stage,
        });
        self.last = Some(Instant::now());
    }
}
