//! Scripted pollers run as real programs (shell and Python): what they print reaches the sink,
//! in order and in bounded batches, whatever way they end.

use pullback_domain::{ScriptSecret, ScriptSpec, Secret, SecretDelivery};
use pullback_script::runner::{BATCH_ALERTS, Batch, Ending, Report, Sink, run};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Keeps every committed batch; can be told to fail from a given commit on.
#[derive(Default)]
struct Collect {
    batches: Vec<Batch>,
    fail_from: Option<usize>,
    /// Count alerts instead of keeping them, to measure the reader alone.
    count_only: bool,
    counted: u64,
}

impl Sink for Collect {
    async fn commit(&mut self, batch: Batch) -> Result<(), String> {
        if self.fail_from.is_some_and(|n| self.batches.len() >= n) {
            return Err("no leader".into());
        }
        if self.count_only {
            self.counted += batch.drafts.len() as u64;
            let rejected_only = Batch {
                rejected: batch.rejected,
                position: batch.position,
                ..Batch::default()
            };
            self.batches.push(rejected_only);
        } else {
            self.batches.push(batch);
        }
        Ok(())
    }
}

impl Collect {
    fn alerts(&self) -> Vec<String> {
        let drafts = self.batches.iter().flat_map(|b| &b.drafts);
        drafts.map(|d| d.dedup_key.clone()).collect()
    }

    /// The position a node would hold after these commits.
    fn position(&self) -> Option<String> {
        self.batches.iter().rev().find_map(|b| b.position.clone())
    }
}

struct Script {
    _dir: tempfile::TempDir,
    spec: ScriptSpec,
}

fn script(body: &str) -> Script {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("poller");
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let spec = ScriptSpec {
        command: path.display().to_string(),
        args: Vec::new(),
        interval_secs: 60,
        timeout_secs: 60,
        memory_mb: 1024,
        max_lines_per_sec: 1_000_000,
        secrets: Vec::new(),
    };
    Script { _dir: dir, spec }
}

async fn run_it(spec: &ScriptSpec, position: Option<&str>, sink: &mut Collect) -> Report {
    let (_stop, stopped) = watch::channel(false);
    run("imd", spec, position, sink, stopped).await
}

fn ids(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("id:a{i}")).collect()
}

const PYTHON_MANY: &str = r#"#!/usr/bin/env python3
import json, os, sys
start = int(os.environ.get("PULLBACK_CHECKPOINT", "0"))
for i in range(start, start + 20000):
    print(json.dumps({"id": "a%d" % i, "message_id": "<m%d@x.example>" % i,
                      "recipients": ["u%d@corp.example" % (i % 7)], "classification": "phish"}))
    if (i + 1) % 1000 == 0:
        print(json.dumps({"checkpoint": str(i + 1)}))
"#;

#[tokio::test]
async fn many_alerts_arrive_in_order_in_bounded_batches_and_the_position_follows() {
    let script = script(PYTHON_MANY);
    let mut sink = Collect::default();
    let report = run_it(&script.spec, Some("5"), &mut sink).await;
    assert_eq!(report.ending, Ending::Finished, "{report:?}");
    assert_eq!(report.alerts, 20_000);
    assert_eq!(report.lines, 20_000 + 20);
    assert_eq!(sink.alerts(), ids(5..20_005));
    assert!(sink.batches.iter().all(|b| b.drafts.len() <= BATCH_ALERTS));
    assert_eq!(sink.position().as_deref(), Some("20000"));
    // A position is only ever committed with or after the alerts it covers.
    let mut seen = 0u64;
    for batch in &sink.batches {
        seen += batch.drafts.len() as u64;
        if let Some(p) = &batch.position {
            assert!(
                p.parse::<u64>().unwrap() <= seen + 5,
                "{p} after {seen} alerts"
            );
        }
    }
}

#[tokio::test]
async fn a_crash_keeps_what_was_printed_and_the_position_it_reached() {
    let script = script(
        "#!/bin/sh\n\
         i=0\n\
         while [ $i -lt 1200 ]; do\n\
           echo \"{\\\"id\\\":\\\"a$i\\\",\\\"recipients\\\":[\\\"x@corp.example\\\"]}\"\n\
           i=$((i+1))\n\
           if [ $i -eq 1000 ]; then echo '{\"checkpoint\":\"p1000\"}'; fi\n\
         done\n\
         echo 'Traceback: something broke' >&2\n\
         exit 3\n",
    );
    let mut sink = Collect::default();
    let report = run_it(&script.spec, None, &mut sink).await;
    assert!(
        matches!(&report.ending, Ending::Failed(s) if s.contains('3')),
        "{report:?}"
    );
    assert_eq!(sink.alerts(), ids(0..1200));
    assert_eq!(sink.position().as_deref(), Some("p1000"));
    assert_eq!(report.stderr_lines, 1);
    assert!(report.ending.error().unwrap().contains("failed"));
}

#[tokio::test]
async fn a_script_that_hangs_is_killed_with_its_children_and_keeps_its_alerts() {
    let mut script = script(
        "#!/bin/sh\n\
         echo '{\"id\":\"a0\"}'\n\
         echo '{\"checkpoint\":\"c1\"}'\n\
         echo '{\"id\":\"a1\"}'\n\
         sleep 300 &\n\
         echo $! > \"$1\"\n\
         sleep 300\n",
    );
    let pid_file = script._dir.path().join("child.pid");
    script.spec.args = vec![pid_file.display().to_string()];
    script.spec.timeout_secs = 2;
    let started = Instant::now();
    let mut sink = Collect::default();
    let report = run_it(&script.spec, None, &mut sink).await;
    assert_eq!(report.ending, Ending::TimedOut);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(sink.alerts(), ids(0..2));
    assert_eq!(sink.position().as_deref(), Some("c1"));
    // The background child was in the script's process group and died with it (a zombie
    // waiting for init to reap it is dead too).
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let pid = pid.trim();
    assert!(!pid.is_empty());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        if status.is_empty() || status.contains("State:\tZ") {
            break;
        }
        assert!(Instant::now() < deadline, "child {pid} still runs");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn garbage_lines_are_reported_by_number_and_cost_their_neighbours_nothing() {
    let script = script(
        "#!/bin/sh\n\
         echo '{\"id\":\"a0\"}'\n\
         echo 'Warning: deprecated option'\n\
         echo '{\"id\":\"a1\",\"recipients\":[\"not an address\"]}'\n\
         echo ''\n\
         printf '{\"id\":\"a2\"}\\r\\n'\n\
         printf '\\377\\376 binary junk\\n'\n\
         echo '[1, 2, 3]'\n\
         printf '{\"id\":\"a3\"}'\n",
    );
    let mut sink = Collect::default();
    let report = run_it(&script.spec, None, &mut sink).await;
    assert_eq!(report.ending, Ending::Finished, "{report:?}");
    assert_eq!(sink.alerts(), ["id:a0", "id:a2", "id:a3"]);
    assert_eq!(report.malformed, 4);
    let reasons: Vec<String> = sink
        .batches
        .iter()
        .flat_map(|b| &b.rejected)
        .map(|r| r.reason.clone())
        .collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(
        reasons[0].starts_with("line 2: (line): not JSON"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].starts_with("line 3: recipients[0]"),
        "{reasons:?}"
    );
    assert!(reasons[2].starts_with("line 6:"), "{reasons:?}");
    assert!(
        reasons[3].starts_with("line 7: (line): expected a JSON object"),
        "{reasons:?}"
    );
}

/// The peak resident memory of this test process, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[tokio::test]
async fn output_larger_than_memory_would_allow_is_streamed() {
    // 768 MiB in one endless line, then a real alert: buffering either would show.
    let script = script(
        "#!/usr/bin/env python3\n\
         import sys\n\
         chunk = b'x' * (1 << 20)\n\
         for _ in range(768):\n    sys.stdout.buffer.write(chunk)\n\
         sys.stdout.buffer.write(b'\\n')\n\
         for i in range(100000):\n    sys.stdout.buffer.write(b'{\"id\":\"a%d\",\"subject\":\"%s\"}\\n' % (i, b'y' * 2000))\n",
    );
    let before = peak_rss();
    let mut sink = Collect {
        count_only: true,
        ..Collect::default()
    };
    let report = run_it(&script.spec, None, &mut sink).await;
    assert_eq!(report.ending, Ending::Finished, "{report:?}");
    assert_eq!(report.alerts, 100_000);
    assert_eq!(sink.counted, 100_000);
    assert_eq!(report.malformed, 1);
    let rejected = &sink.batches[0].rejected[0];
    assert!(
        rejected.reason.starts_with("line 1: longer than"),
        "{}",
        rejected.reason
    );
    // About 1 GB went through; holding the long line or the output would show here. A batch
    // is at most 4 MiB of lines plus its drafts; other tests of this binary run meanwhile.
    let grown = peak_rss().saturating_sub(before);
    assert!(grown < 64 << 20, "peak grew by {} MiB", grown >> 20);
}

#[tokio::test]
async fn memory_and_rate_are_capped() {
    let mut greedy = script(
        "#!/usr/bin/env python3\n\
         print('{\"id\":\"a0\"}', flush=True)\n\
         hog = bytearray(512 * 1024 * 1024)\n\
         print('{\"id\":\"a1\"}')\n",
    );
    greedy.spec.memory_mb = 128;
    let mut sink = Collect::default();
    let report = run_it(&greedy.spec, None, &mut sink).await;
    assert!(matches!(report.ending, Ending::Failed(_)), "{report:?}");
    assert_eq!(sink.alerts(), ["id:a0"]);

    let mut chatty = script(
        "#!/bin/sh\ni=0\nwhile [ $i -lt 600 ]; do echo \"{\\\"id\\\":\\\"a$i\\\"}\"; i=$((i+1)); done\n",
    );
    chatty.spec.max_lines_per_sec = 200;
    let started = Instant::now();
    let mut sink = Collect::default();
    let report = run_it(&chatty.spec, None, &mut sink).await;
    assert_eq!(report.ending, Ending::Finished);
    assert_eq!(report.alerts, 600);
    // 600 lines at 200 a second cannot be read in less than two seconds.
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn secrets_reach_the_script_by_environment_and_file_but_not_its_command_line() {
    // Whatever the node's environment holds stays out of the script's.
    // SAFETY: set before any thread of this test reads the environment; the variable is
    // this test's own.
    unsafe { std::env::set_var("PULLBACK_TEST_NODE_ONLY", "node-secret") };
    let mut script = script(
        "#!/bin/sh\n\
         echo \"{\\\"id\\\":\\\"env-$API_TOKEN\\\"}\"\n\
         echo \"{\\\"id\\\":\\\"file-$(cat \"$PULLBACK_SECRETS_DIR/CLIENT_KEY\")\\\"}\"\n\
         echo \"{\\\"id\\\":\\\"args-$(tr '\\0' ' ' < /proc/$$/cmdline)\\\"}\"\n\
         echo \"{\\\"id\\\":\\\"leak-${PULLBACK_TEST_NODE_ONLY:-none}\\\"}\"\n\
         echo \"{\\\"id\\\":\\\"mode-$(stat -c %a \"$PULLBACK_SECRETS_DIR/CLIENT_KEY\")\\\"}\"\n",
    );
    script.spec.secrets = vec![
        ScriptSecret {
            name: "API_TOKEN".into(),
            delivery: SecretDelivery::Env,
            value: Secret("tok-1".into()),
        },
        ScriptSecret {
            name: "CLIENT_KEY".into(),
            delivery: SecretDelivery::File,
            value: Secret("key-2".into()),
        },
    ];
    let mut sink = Collect::default();
    let report = run_it(&script.spec, None, &mut sink).await;
    assert_eq!(report.ending, Ending::Finished, "{report:?}");
    let alerts = sink.alerts();
    assert_eq!(alerts[0], "id:env-tok-1");
    assert_eq!(alerts[1], "id:file-key-2");
    assert!(
        !alerts[2].contains("tok-1") && !alerts[2].contains("key-2"),
        "{}",
        alerts[2]
    );
    assert_eq!(alerts[3], "id:leak-none");
    assert_eq!(alerts[4], "id:mode-600");
}

#[tokio::test]
async fn a_stop_kills_the_script_and_keeps_what_it_printed() {
    let script = script(
        "#!/bin/sh\n\
         i=0\nwhile [ $i -lt 100 ]; do echo \"{\\\"id\\\":\\\"a$i\\\"}\"; i=$((i+1)); done\n\
         echo '{\"checkpoint\":\"c100\"}'\n\
         sleep 300\n",
    );
    let (stop, stopped) = watch::channel(false);
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let _ = stop.send(true);
        stop
    });
    let mut sink = Collect::default();
    let report = run("imd", &script.spec, None, &mut sink, stopped).await;
    drop(stopper.await);
    assert_eq!(report.ending, Ending::Stopped);
    assert_eq!(sink.alerts(), ids(0..100));
    assert_eq!(sink.position().as_deref(), Some("c100"));
}

#[tokio::test]
async fn a_failed_commit_ends_the_run_without_advancing_past_it() {
    let script = script(PYTHON_MANY);
    let mut sink = Collect {
        fail_from: Some(2),
        ..Collect::default()
    };
    let report = run_it(&script.spec, None, &mut sink).await;
    assert!(
        matches!(report.ending, Ending::NotCommitted(_)),
        "{report:?}"
    );
    assert_eq!(sink.batches.len(), 2);
    assert_eq!(report.alerts, 2 * BATCH_ALERTS as u64);
    // Two batches of 500 hold alerts 0..1000; the checkpoint "1000" comes after the 1000th
    // alert, so it was not committed.
    assert_eq!(sink.position(), None);
}

#[tokio::test]
async fn a_missing_program_is_reported() {
    let mut script = script("#!/bin/sh\n");
    script.spec.command = "/nonexistent/poller".into();
    let mut sink = Collect::default();
    let report = run_it(&script.spec, None, &mut sink).await;
    assert!(matches!(&report.ending, Ending::NotStarted(e) if e.contains("/nonexistent/poller")));
}

#[tokio::test]
async fn a_child_that_leaves_the_process_group_neither_wedges_the_run_nor_outlives_it() {
    let mut script = script(
        "#!/bin/sh\n\
         setsid sleep 300 > /dev/null 2>&1 &\n\
         setsid sh -c 'echo $$ > \"$0\"; sleep 300' \"$1\" &\n\
         echo '{\"id\":\"a0\"}'\n\
         sleep 0.5\n\
         exit 0\n",
    );
    let pid_file = script._dir.path().join("escaped.pid");
    script.spec.args = vec![pid_file.display().to_string()];
    script.spec.timeout_secs = 5;
    let started = Instant::now();
    let mut sink = Collect::default();
    let report = run_it(&script.spec, None, &mut sink).await;
    // The escaped child keeps standard error open; the run still ends soon after the program.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(sink.alerts(), ["id:a0"]);
    assert!(
        matches!(report.ending, Ending::Finished | Ending::TimedOut),
        "{report:?}"
    );
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let pid = pid.trim();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        if status.is_empty() || status.contains("State:\tZ") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "escaped process {pid} still runs"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
