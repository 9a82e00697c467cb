//! Running one scripted poller once.
//!
//! The program's standard output is read as a stream, one line at a time, through a buffer
//! of fixed size: a line longer than [`MAX_LINE_BYTES`] is skipped as it passes, never held.
//! Alerts are handed to a [`Sink`] in batches of at most [`BATCH_ALERTS`] alerts or
//! [`BATCH_BYTES`] bytes, in the order they were printed, and reading pauses while a batch
//! is committed; a script that prints faster than that waits on its full pipe. So the memory
//! a run takes does not depend on how much the script prints.
//!
//! A `{"checkpoint": ...}` line covers the alerts printed before it. Its position travels
//! with the batch that holds the last of those alerts, so it is stored only together with
//! them: a run that ends early (crash, timeout, failover) keeps every batch committed so far
//! and a position no later than what they cover.

use crate::line::{self, Parsed};
use pullback_domain::{AlertDraft, RejectedEvent, ScriptSpec, SecretDelivery};
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::sync::watch;

/// The longest output line read; a longer one is reported and skipped.
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// Alerts in one batch at most.
pub const BATCH_ALERTS: usize = 500;
/// Bytes of alert lines in one batch at most.
pub const BATCH_BYTES: usize = 4 << 20;
/// A batch that has waited this long is committed even if not full.
pub const BATCH_WAIT: Duration = Duration::from_secs(1);
/// Malformed lines kept per run; more are counted and logged in summary only.
pub const MAX_REJECTED_PER_RUN: u64 = 1_000;
/// How much of a malformed line is kept.
const KEPT_LINE_CHARS: usize = 4_096;
/// Standard error lines logged per [`STDERR_WINDOW`]; more are counted.
const STDERR_LINES_PER_WINDOW: u32 = 20;
const STDERR_WINDOW: Duration = Duration::from_secs(10);
const STDERR_LINE_CHARS: usize = 1_024;
/// How long standard error is still read after the program ended or was killed.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// What a run hands over to be committed.
#[derive(Debug, Default)]
pub struct Batch {
    pub drafts: Vec<AlertDraft>,
    pub rejected: Vec<RejectedEvent>,
    /// The position the script printed last, when this batch completes what it covers.
    pub position: Option<String>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.drafts.is_empty() && self.rejected.is_empty() && self.position.is_none()
    }
}

/// Commits batches; the node's implementation proposes them through Raft.
pub trait Sink {
    fn commit(&mut self, batch: Batch) -> impl Future<Output = Result<(), String>> + Send;
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The program exited with status 0 and everything it printed was committed.
    Finished,
    /// The program exited with another status or was killed by a signal.
    Failed(String),
    TimedOut,
    /// Told to stop (leadership ended, the node shuts down or the source changed).
    Stopped,
    /// A batch could not be committed; reading stopped there.
    NotCommitted(String),
    /// The program could not be started.
    NotStarted(String),
}

impl Ending {
    /// The error to show as the source's last error, `None` when the run went well.
    pub fn error(&self) -> Option<String> {
        match self {
            Ending::Finished => None,
            Ending::Failed(status) => Some(format!("the script failed: {status}")),
            Ending::TimedOut => Some("the script ran past its timeout and was killed".into()),
            Ending::Stopped => Some("the run was stopped before the script finished".into()),
            Ending::NotCommitted(e) => Some(format!("alerts could not be committed: {e}")),
            Ending::NotStarted(e) => Some(format!("the script could not be started: {e}")),
        }
    }
}

/// What a run did.
#[derive(Debug)]
pub struct Report {
    pub ending: Ending,
    pub lines: u64,
    /// Alerts handed to the sink and committed.
    pub alerts: u64,
    pub malformed: u64,
    pub stderr_lines: u64,
    pub elapsed: Duration,
}

/// Runs `spec` once for source `source`, giving it `position` (its last checkpoint), and
/// commits what it prints through `sink`. Returns when the program has ended and everything
/// read was committed, or when `stop` changes (the program is then killed).
pub async fn run(
    source: &str,
    spec: &ScriptSpec,
    position: Option<&str>,
    sink: &mut impl Sink,
    mut stop: watch::Receiver<bool>,
) -> Report {
    let started = Instant::now();
    let mut report = Report {
        ending: Ending::Finished,
        lines: 0,
        alerts: 0,
        malformed: 0,
        stderr_lines: 0,
        elapsed: Duration::ZERO,
    };
    let workdir = match prepare(spec) {
        Ok(dir) => dir,
        Err(e) => {
            report.ending = Ending::NotStarted(e);
            return report;
        }
    };
    adopt_orphans();
    let mut child = match command(source, spec, position, workdir.path()).spawn() {
        Ok(child) => child,
        Err(e) => {
            report.ending = Ending::NotStarted(format!("{}: {e}", spec.command));
            return report;
        }
    };
    let group = child.id().map(|pid| pid as i32);
    if let (Some(pid), Ok(mut live)) = (child.id(), running().lock()) {
        live.insert(pid);
    }
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let stderr_task = tokio::spawn(log_stderr(source.to_owned(), stderr));

    let deadline = tokio::time::sleep(Duration::from_secs(spec.timeout_secs));
    tokio::pin!(deadline);
    let mut reader = Reader::new(
        source,
        spec.max_lines_per_sec,
        BufReader::with_capacity(64 << 10, stdout),
    );
    let read = reader.read_all(sink);
    let outcome = tokio::select! {
        outcome = read => outcome,
        () = &mut deadline => Err(Ending::TimedOut),
        _ = stop.changed() => Err(Ending::Stopped),
    };
    // Whatever happened, nothing the program started outlives the run.
    if let Some(group) = group {
        kill_group(group);
    }
    let status = child.wait().await;
    if let (Some(group), Ok(mut live)) = (group, running().lock()) {
        live.remove(&(group as u32));
    }
    // What was read but not yet committed is committed now, also after a timeout or a stop:
    // it was printed, and keeping it costs nothing (a new leader's rerun finds it a repeat).
    let flushed = reader.flush(sink).await;
    report.ending = match (outcome, flushed) {
        (Err(ending), _) => ending,
        (Ok(()), Err(e)) => Ending::NotCommitted(e),
        (Ok(()), Ok(())) => match status {
            Ok(status) if status.success() => Ending::Finished,
            Ok(status) => Ending::Failed(status.to_string()),
            Err(e) => Ending::Failed(e.to_string()),
        },
    };
    // A process that left the group (setsid) may still hold standard error open: stop
    // listening after a short grace rather than wait for it.
    let mut stderr_task = stderr_task;
    report.stderr_lines = match tokio::time::timeout(DRAIN_GRACE, &mut stderr_task).await {
        Ok(lines) => lines.unwrap_or(0),
        Err(_) => {
            stderr_task.abort();
            0
        }
    };
    reap_escaped();
    report.lines = reader.lines;
    report.alerts = reader.committed_alerts;
    report.malformed = reader.malformed;
    report.elapsed = started.elapsed();
    report
}

/// A private working folder, holding the secrets given by file.
fn prepare(spec: &ScriptSpec) -> Result<tempfile::TempDir, String> {
    let dir = tempfile::Builder::new()
        .prefix("pullback-script-")
        .tempdir()
        .map_err(|e| format!("cannot create a working folder: {e}"))?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("cannot make the working folder private: {e}"))?;
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).map_err(|e| format!("cannot create the secrets folder: {e}"))?;
    for secret in spec
        .secrets
        .iter()
        .filter(|s| s.delivery == SecretDelivery::File)
    {
        let path = secrets.join(&secret.name);
        let mut options = std::fs::OpenOptions::new();
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| format!("cannot write secret {}: {e}", secret.name))?;
        std::io::Write::write_all(&mut file, secret.value.0.as_bytes())
            .map_err(|e| format!("cannot write secret {}: {e}", secret.name))?;
    }
    Ok(dir)
}

fn command(
    source: &str,
    spec: &ScriptSpec,
    position: Option<&str>,
    workdir: &std::path::Path,
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(&spec.command);
    command
        .args(&spec.args)
        // The node's own environment (and whatever secrets it holds) is not the script's.
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LANG", "C.UTF-8")
        .env("HOME", workdir)
        .env("TMPDIR", workdir)
        .env("PULLBACK_SOURCE", source)
        .env("PULLBACK_SECRETS_DIR", workdir.join("secrets"))
        .current_dir(workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group, so that a timeout kills whatever it started too.
        .process_group(0);
    if let Some(position) = position {
        command.env("PULLBACK_CHECKPOINT", position);
    }
    for secret in spec
        .secrets
        .iter()
        .filter(|s| s.delivery == SecretDelivery::Env)
    {
        command.env(&secret.name, &secret.value.0);
    }
    let limit = spec.memory_mb.saturating_mul(1 << 20);
    // SAFETY: the closure runs in the forked child before exec and only calls setrlimit,
    // which is async-signal-safe; it allocates nothing and touches no lock.
    unsafe {
        command.pre_exec(move || {
            let rlimit = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &rlimit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
}

/// Makes this process adopt the orphans of the programs it runs (`PR_SET_CHILD_SUBREAPER`),
/// so that a descendant that left its process group can still be found and killed.
fn adopt_orphans() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer flag and touches no
        // memory of ours.
        let done = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        if done != 0 {
            tracing::warn!(
                error = %std::io::Error::last_os_error(),
                "cannot adopt orphaned script processes; one that escapes its group may outlive its run"
            );
        }
    });
}

/// Programs running now, by process id: their descendants are not orphans to kill.
fn running() -> &'static std::sync::Mutex<std::collections::HashSet<u32>> {
    static RUNNING: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<u32>>> =
        std::sync::OnceLock::new();
    RUNNING.get_or_init(Default::default)
}

/// Kills and reaps the processes this process adopted: descendants of finished runs that
/// escaped their process group. A running program's own children are its, not ours, so they
/// are not touched.
fn reap_escaped() {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    let live = running().lock().map(|r| r.clone()).unwrap_or_default();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if live.contains(&pid) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The parent id is the second field after the command name, which ends at the last ')'.
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if parent != Some(me) {
            continue;
        }
        // Only processes adopted after a script: the node starts no other children.
        tracing::warn!(
            pid,
            "killing a process a script left behind outside its group"
        );
        // SAFETY: kill and waitpid on a process id; no memory is shared.
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
            libc::waitpid(pid as i32, std::ptr::null_mut(), 0);
        }
    }
}

fn kill_group(group: i32) {
    // SAFETY: kill(2) with a negative pid signals the process group the child leads; it has
    // no memory-safety preconditions.
    unsafe {
        libc::kill(-group, libc::SIGKILL);
    }
}

/// Reads output lines into batches.
struct Reader<'a, R> {
    source: &'a str,
    input: R,
    line: Vec<u8>,
    too_long: bool,
    lines: u64,
    malformed: u64,
    committed_alerts: u64,
    batch: Batch,
    batch_bytes: usize,
    batch_started: Option<Instant>,
    /// The newest position printed, waiting for the batch that covers it.
    position: Option<String>,
    max_lines_per_sec: u32,
    second: Instant,
    lines_this_second: u32,
}

impl<'a, R: AsyncBufRead + Unpin> Reader<'a, R> {
    fn new(source: &'a str, max_lines_per_sec: u32, input: R) -> Self {
        Reader {
            source,
            input,
            line: Vec::new(),
            too_long: false,
            lines: 0,
            malformed: 0,
            committed_alerts: 0,
            batch: Batch::default(),
            batch_bytes: 0,
            batch_started: None,
            position: None,
            max_lines_per_sec: max_lines_per_sec.max(1),
            second: Instant::now(),
            lines_this_second: 0,
        }
    }

    /// Reads until the end of the output, committing full batches on the way.
    async fn read_all(&mut self, sink: &mut impl Sink) -> Result<(), Ending> {
        loop {
            let wait = self
                .batch_started
                .map(|t| BATCH_WAIT.saturating_sub(t.elapsed()));
            let more = match wait {
                Some(wait) => match tokio::time::timeout(wait, self.next_line()).await {
                    Ok(more) => more,
                    Err(_) => {
                        self.flush(sink).await.map_err(Ending::NotCommitted)?;
                        continue;
                    }
                },
                None => self.next_line().await,
            };
            match more {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(e) => {
                    return Err(Ending::Failed(format!("reading its output failed: {e}")));
                }
            }
            self.take_line();
            if self.batch.drafts.len() >= BATCH_ALERTS || self.batch_bytes >= BATCH_BYTES {
                self.flush(sink).await.map_err(Ending::NotCommitted)?;
            }
            self.pace().await;
        }
    }

    /// Reads the next whole line into `self.line` (without its end); `false` at the end of
    /// the output. A partial line at the end counts as a line. Cancel-safe: bytes already
    /// taken from the input stay in `self.line`.
    async fn next_line(&mut self) -> std::io::Result<bool> {
        loop {
            let available = self.input.fill_buf().await?;
            if available.is_empty() {
                let partial = !self.line.is_empty() || self.too_long;
                return Ok(partial);
            }
            let (part, found) = match available.iter().position(|b| *b == b'\n') {
                Some(end) => (&available[..end], Some(end + 1)),
                None => (available, None),
            };
            if !self.too_long {
                if self.line.len() + part.len() > MAX_LINE_BYTES {
                    // Keep the start of the line, to show what it was.
                    self.too_long = true;
                    let room = KEPT_LINE_CHARS.saturating_sub(self.line.len());
                    self.line.extend_from_slice(&part[..room.min(part.len())]);
                    self.line.truncate(KEPT_LINE_CHARS);
                    self.line.shrink_to(KEPT_LINE_CHARS);
                } else {
                    self.line.extend_from_slice(part);
                }
            }
            let consumed = found.unwrap_or(available.len());
            self.input.consume(consumed);
            if found.is_some() {
                return Ok(true);
            }
        }
    }

    /// Turns the line just read into an alert, a position or a rejected event.
    fn take_line(&mut self) {
        self.lines += 1;
        let number = self.lines;
        let too_long = std::mem::take(&mut self.too_long);
        let text = std::mem::take(&mut self.line);
        let text = text.strip_suffix(b"\r").unwrap_or(&text);
        if too_long {
            self.reject(number, format!("longer than {MAX_LINE_BYTES} bytes"), text);
            return;
        }
        if text.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        match line::parse_line(text, chrono::Utc::now()) {
            Ok(Parsed::Alert(draft)) => {
                if self.batch.drafts.is_empty() && self.batch.rejected.is_empty() {
                    self.batch_started = Some(Instant::now());
                }
                self.batch_bytes += text.len();
                self.batch.drafts.push(*draft);
            }
            Ok(Parsed::Checkpoint(position)) => self.position = Some(position),
            Err(e) => self.reject(number, e.to_string(), text),
        }
    }

    fn reject(&mut self, number: u64, reason: String, text: &[u8]) {
        self.malformed += 1;
        let reason = format!("line {number}: {reason}");
        if self.malformed <= 10 {
            tracing::warn!(source = self.source, %reason, "malformed line from the script");
        } else if self.malformed == 11 {
            tracing::warn!(
                source = self.source,
                "more malformed lines from the script; only the first ten are logged"
            );
        }
        if self.malformed > MAX_REJECTED_PER_RUN {
            return;
        }
        let kept: String = String::from_utf8_lossy(text)
            .chars()
            .take(KEPT_LINE_CHARS)
            .collect();
        let raw = serde_json::Value::String(kept);
        if self.batch.drafts.is_empty() && self.batch.rejected.is_empty() {
            self.batch_started = Some(Instant::now());
        }
        self.batch.rejected.push(RejectedEvent {
            key: format!("line:{}", line::canonical_hash(&raw)),
            reason,
            raw,
        });
    }

    /// Commits what is waiting, with the newest position: every alert printed before that
    /// position is in this batch or an earlier one.
    async fn flush(&mut self, sink: &mut impl Sink) -> Result<(), String> {
        self.batch.position = self.position.take();
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        let alerts = batch.drafts.len() as u64;
        self.batch_bytes = 0;
        self.batch_started = None;
        // On failure the batch, and its position with it, is gone: the run ends, and the
        // next run starts from the last position that was committed.
        sink.commit(batch).await?;
        self.committed_alerts += alerts;
        Ok(())
    }

    /// Keeps to `max_lines_per_sec`.
    async fn pace(&mut self) {
        self.lines_this_second += 1;
        if self.lines_this_second < self.max_lines_per_sec {
            return;
        }
        let elapsed = self.second.elapsed();
        if elapsed < Duration::from_secs(1) {
            tokio::time::sleep(Duration::from_secs(1) - elapsed).await;
        }
        self.second = Instant::now();
        self.lines_this_second = 0;
    }
}

/// Logs the script's standard error, at most [`STDERR_LINES_PER_WINDOW`] lines per window;
/// returns how many lines it wrote in all.
async fn log_stderr(source: String, stderr: impl AsyncRead + Unpin) -> u64 {
    let mut input = BufReader::with_capacity(8 << 10, stderr);
    let mut total = 0u64;
    let mut window = Instant::now();
    let mut logged = 0u32;
    let mut suppressed = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        // Reads at most a bounded piece of an endless line at a time.
        let read = (&mut input)
            .take(STDERR_LINE_CHARS as u64 * 4)
            .read_until(b'\n', &mut line)
            .await;
        match read {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        total += 1;
        if window.elapsed() >= STDERR_WINDOW {
            if suppressed > 0 {
                tracing::warn!(source = %source, suppressed, "script stderr lines not logged");
            }
            window = Instant::now();
            logged = 0;
            suppressed = 0;
        }
        if logged < STDERR_LINES_PER_WINDOW {
            logged += 1;
            let text: String = String::from_utf8_lossy(&line)
                .trim_end()
                .chars()
                .take(STDERR_LINE_CHARS)
                .collect();
            tracing::warn!(source = %source, stderr = %text, "script");
        } else {
            suppressed += 1;
        }
    }
    if suppressed > 0 {
        tracing::warn!(source = %source, suppressed, "script stderr lines not logged");
    }
    total
}
