//! `pullback upgrade`: in-place upgrades of the appliance from a signed IMG, the health
//! check that confirms a new slot, rollbacks, and the boot check that settles the slots.
//! The slot logic is `pullback_appliance::upgrade`; this file adds the node (stopping it,
//! asking it whether it is healthy) and the reboots.

use crate::appliance::{NODE_CONFIG, announce, appliance_key_path, run_quiet};
use anyhow::{Context, bail};
use clap::Subcommand;
use pullback_appliance::Layout;
use pullback_appliance::inbox::{Inbox, InboxResult, InboxState};
use pullback_appliance::upgrade::{Appliance, BootOutcome, Checked, UpgradeError};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Subcommand)]
pub enum UpgradeCommand {
    /// Checks an upgrade image (signature, hashes, data format, size) without writing.
    Verify { file: PathBuf },
    /// Checks an upgrade image, snapshots the data, writes the other slot and reboots into
    /// it for one try. The new slot confirms itself once the node is healthy; otherwise the
    /// next boot is back on this slot.
    Apply {
        file: PathBuf,
        /// Do not reboot at the end (the trial starts at the next reboot).
        #[arg(long)]
        no_reboot: bool,
    },
    /// Shows the slots, their releases, a pending trial and the recent history.
    Status,
    /// On a trial boot: waits until the node is healthy (service up, Raft rejoined, applied
    /// index caught up), then makes this slot the active one.
    MarkGood {
        /// Wait for the node to become healthy instead of checking once.
        #[arg(long)]
        wait: bool,
        /// How long to wait.
        #[arg(long, default_value_t = 600)]
        timeout_secs: u64,
    },
    /// Goes back to the previous slot (reboots), if its release reads the current data.
    Rollback {
        /// Put back the data snapshot taken before the upgrade, for a release that cannot
        /// read the current data. What changed since the snapshot is lost on this node.
        #[arg(long)]
        restore_snapshot: bool,
        #[arg(long)]
        no_reboot: bool,
    },
    /// Settles the slots at boot, before the node starts (run by pullback-boot-check.service).
    BootCheck,
    /// Applies an image uploaded through the API, as `apply` does, reporting each step
    /// where the node reads it (run as root by pullback-upgrade-inbox.path).
    Inbox,
}

pub async fn run(command: UpgradeCommand) -> anyhow::Result<()> {
    let appliance = Appliance::new(Layout::system());
    match command {
        UpgradeCommand::Verify { file } => {
            let checked = appliance.check_image(&file)?;
            let release = checked.img.manifest.release();
            println!(
                "{}: release {} (data format {}, migrates from {}), signed by {}; it would go \
                 to slot {} (running: {})",
                file.display(),
                release.version,
                release.data_format,
                release.oldest_data_format,
                checked.img.signed_by,
                checked.target,
                checked.current.version
            );
            Ok(())
        }
        UpgradeCommand::Apply { file, no_reboot } => apply(&appliance, &file, no_reboot),
        UpgradeCommand::Status => status(&appliance),
        UpgradeCommand::MarkGood { wait, timeout_secs } => {
            mark_good(&appliance, wait, Duration::from_secs(timeout_secs)).await
        }
        UpgradeCommand::Rollback {
            restore_snapshot,
            no_reboot,
        } => {
            let release = appliance.rollback(restore_snapshot)?;
            announce(&format!("rolling back to release {}", release.version));
            reboot(no_reboot)
        }
        UpgradeCommand::BootCheck => boot_check(&appliance),
        UpgradeCommand::Inbox => inbox(&appliance),
    }
}

fn apply(appliance: &Appliance, file: &std::path::Path, no_reboot: bool) -> anyhow::Result<()> {
    let checked = appliance.check_image(file)?;
    println!(
        "{}: release {} signed by {}; every check passed",
        file.display(),
        checked.img.manifest.version,
        checked.img.signed_by
    );
    install(appliance, &checked, &mut |step| println!("{step}"))?;
    reboot(no_reboot)
}

/// Stops the node, writes the checked image to the other slot and arms its trial boot; on
/// failure starts the node again on the current release.
fn install(
    appliance: &Appliance,
    checked: &Checked,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<()> {
    progress("stopping the node");
    run_quiet(Command::new("systemctl").args(["stop", "pullback.service"]))?;
    if let Err(e) = appliance.install(checked, progress) {
        let _ = run_quiet(Command::new("systemctl").args(["start", "pullback.service"]));
        return Err(e).context("the upgrade stopped; the node runs the current release again");
    }
    announce(&format!(
        "release {} written to slot {}; the next boot tries it once",
        checked.img.manifest.version, checked.target
    ));
    Ok(())
}

/// `pullback upgrade inbox`: takes the uploaded image out of the node's reach, then checks,
/// installs and reboots as `apply` does, writing each step to the inbox's result.
fn inbox(appliance: &Appliance) -> anyhow::Result<()> {
    let layout = appliance.layout();
    let inbox = Inbox::at(layout.upgrade_inbox());
    // The node wrote who uploaded it when it queued the image.
    let uploaded_by = inbox.result().ok().flatten().and_then(|r| r.uploaded_by);
    let report = |state: InboxState, message: String, version: Option<String>| {
        let result = InboxResult {
            state,
            message,
            version,
            uploaded_by: uploaded_by.clone(),
            at: pullback_appliance::slots::now(),
        };
        if let Err(e) = inbox.set_result(&result) {
            tracing::warn!(error = %e, "cannot write the upgrade inbox's result");
        }
    };
    let taken = match inbox.take_request(&layout.taken_upload()) {
        Ok(Some(taken)) => taken,
        Ok(None) => return Ok(()),
        Err(e) => {
            let message = format!("the uploaded file was refused, nothing was written: {e}");
            report(InboxState::Refused, message.clone(), None);
            bail!(message);
        }
    };
    report(
        InboxState::Checking,
        "checking the signature, the hashes and the data format".into(),
        None,
    );
    let checked = match appliance.check_image(&taken) {
        Ok(checked) => checked,
        Err(e) => {
            let _ = std::fs::remove_file(&taken);
            // Not the private copy's path: the uploader knows the file by its own name.
            let message = match e {
                UpgradeError::Refused { error, .. } => {
                    format!("the uploaded image was refused, nothing was written: {error}")
                }
                other => other.to_string(),
            };
            report(InboxState::Refused, message.clone(), None);
            announce(&format!("uploaded upgrade refused: {message}"));
            bail!(message);
        }
    };
    let version = checked.img.manifest.version.clone();
    let by = uploaded_by.as_deref().unwrap_or("the API");
    announce(&format!(
        "release {version}, uploaded by {by}: every check passed"
    ));
    report(
        InboxState::Installing,
        format!(
            "every check passed; writing release {version} to slot {}",
            checked.target
        ),
        Some(version.clone()),
    );
    let installed = install(appliance, &checked, &mut |step| {
        report(
            InboxState::Installing,
            step.to_string(),
            Some(version.clone()),
        )
    });
    let _ = std::fs::remove_file(&taken);
    if let Err(e) = installed {
        report(InboxState::Failed, format!("{e:#}"), Some(version));
        return Err(e);
    }
    report(
        InboxState::Rebooting,
        format!(
            "release {version} written to slot {}; rebooting to try it once",
            checked.target
        ),
        Some(version),
    );
    reboot(false)
}

fn reboot(no_reboot: bool) -> anyhow::Result<()> {
    if no_reboot {
        println!("reboot when ready: systemctl reboot");
        return Ok(());
    }
    run_quiet(Command::new("systemctl").arg("reboot"))
}

fn status(appliance: &Appliance) -> anyhow::Result<()> {
    let (booted, trial) = appliance.booted()?;
    let state = appliance.state()?;
    println!(
        "running: slot {booted}{}, active slot {}, data format {}",
        if trial { " (trial boot)" } else { "" },
        state.active,
        state.data_format
    );
    for (slot, record) in [("A", &state.a), ("B", &state.b)] {
        let release = record
            .release
            .as_ref()
            .map_or("-".into(), |r| r.version.clone());
        println!("slot {slot}: {release} ({:?})", record.status);
    }
    if let Some(trial) = &state.trial {
        println!("waiting: {} on slot {}", trial.release.version, trial.slot);
    }
    if let Some(snapshot) = &state.snapshot {
        println!(
            "snapshot: {} (data format {}, taken under {})",
            snapshot.path.display(),
            snapshot.data_format,
            snapshot.version
        );
    }
    for event in state.history.iter().rev().take(10).rev() {
        println!("{}  {}", event.at, event.text);
    }
    Ok(())
}

fn boot_check(appliance: &Appliance) -> anyhow::Result<()> {
    let outcome = appliance.boot_check()?;
    match outcome {
        BootOutcome::Fresh(_) | BootOutcome::Normal(_) => {}
        BootOutcome::TrialInProgress(slot) => {
            announce(&format!("trying the new release on slot {slot}"));
        }
        BootOutcome::TrialFailed {
            failed,
            back_on,
            restored,
        } => {
            let message = format!(
                "upgrade to {} failed its trial boot; back on slot {back_on}{}",
                failed.version,
                if restored {
                    " with the data snapshot put back"
                } else {
                    ""
                }
            );
            settle_inbox(appliance, &failed.version, InboxState::FellBack, &message);
            announce(&message);
        }
        BootOutcome::Switched { to, restored } => announce(&format!(
            "slot {to} is active again{}",
            if restored {
                " with the data snapshot put back"
            } else {
                ""
            }
        )),
    }
    Ok(())
}

async fn mark_good(appliance: &Appliance, wait: bool, timeout: Duration) -> anyhow::Result<()> {
    let (slot, trial) = appliance.booted()?;
    if !trial {
        bail!("slot {slot} was not started as a trial: nothing to confirm");
    }
    let probe = HealthProbe::new(appliance.layout())?;
    let deadline = Instant::now() + if wait { timeout } else { Duration::ZERO };
    let mut target = None;
    loop {
        match probe.check(&mut target).await {
            Ok(()) => break,
            Err(Unhealthy::Fatal(reason)) => {
                announce(&format!(
                    "the new release on slot {slot} is not healthy: {reason}"
                ));
                bail!("health check failed: {reason}");
            }
            Err(Unhealthy::NotYet(reason)) if Instant::now() >= deadline => {
                announce(&format!(
                    "the new release on slot {slot} did not become healthy: {reason}"
                ));
                bail!("health check failed: {reason}");
            }
            Err(Unhealthy::NotYet(_)) => {}
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let release = appliance.confirm()?;
    let message = format!(
        "upgrade to {} confirmed: slot {slot} is healthy and now the active slot",
        release.version
    );
    settle_inbox(appliance, &release.version, InboxState::Confirmed, &message);
    announce(&message);
    Ok(())
}

/// Tells the API how the trial of an uploaded release ended.
fn settle_inbox(appliance: &Appliance, version: &str, state: InboxState, message: &str) {
    let inbox = Inbox::at(appliance.layout().upgrade_inbox());
    if let Err(e) = inbox.settle(version, state, message.to_string()) {
        tracing::warn!(error = %e, "cannot record the trial's end in the upgrade inbox");
    }
}

enum Unhealthy {
    /// Keep waiting.
    NotYet(String),
    /// Waiting will not help.
    Fatal(String),
}

/// Asks the local node whether it is healthy, with the appliance's read-only key.
struct HealthProbe {
    client: reqwest::Client,
    base: String,
    key: String,
    node_id: u64,
}

/// How many failed starts of the node's service end the wait.
const FAILED_STARTS: u64 = 5;

impl HealthProbe {
    fn new(layout: &Layout) -> anyhow::Result<HealthProbe> {
        let text = std::fs::read_to_string(NODE_CONFIG)
            .with_context(|| format!("cannot read {NODE_CONFIG}"))?;
        let config: toml::Value = toml::from_str(&text)?;
        let listen = config["node"]["listen"]
            .as_str()
            .context("no node.listen")?;
        let port = listen
            .rsplit(':')
            .next()
            .context("node.listen has no port")?;
        let node_id = config["node"]["id"].as_integer().context("no node.id")? as u64;
        let key_path = appliance_key_path(layout);
        let key = std::fs::read_to_string(&key_path)
            .with_context(|| format!("cannot read {}", key_path.display()))?;
        // The node is asked over loopback; its certificate names its network addresses, not
        // 127.0.0.1, and nothing else can answer on this machine's loopback.
        let client = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(HealthProbe {
            client,
            base: format!("https://127.0.0.1:{port}"),
            key: key.trim().to_string(),
            node_id,
        })
    }

    /// Healthy when the service runs, the node knows a leader that counts it as a voter, and
    /// it has applied everything the leader had when the check first reached it.
    async fn check(&self, target: &mut Option<u64>) -> Result<(), Unhealthy> {
        let restarts = service_property("NRestarts")
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        if restarts >= FAILED_STARTS {
            return Err(Unhealthy::Fatal(format!(
                "pullback.service failed to start {restarts} times"
            )));
        }
        // Between restarts the unit is `activating`; `failed` means systemd gave up on it
        // (its start limit, or a failure it does not restart after).
        if service_property("ActiveState").as_deref() == Some("failed") {
            let result = service_property("Result").unwrap_or_default();
            return Err(Unhealthy::Fatal(format!(
                "pullback.service failed ({result}) after {restarts} restarts"
            )));
        }
        fn not_yet(what: &'static str) -> impl Fn(reqwest::Error) -> Unhealthy {
            move |e| Unhealthy::NotYet(format!("{what}: {e}"))
        }
        let ready = self
            .client
            .get(format!("{}/health/ready", self.base))
            .send()
            .await
            .map_err(not_yet("the API does not answer"))?;
        if !ready.status().is_success() {
            return Err(Unhealthy::NotYet(format!(
                "/health/ready answers {}",
                ready.status()
            )));
        }
        let cluster: serde_json::Value = self
            .get("/api/v1/cluster")
            .await?
            .json()
            .await
            .map_err(not_yet("/api/v1/cluster"))?;
        if cluster["from_leader"] != true {
            return Err(Unhealthy::NotYet("the leader cannot be reached".into()));
        }
        let me = cluster["members"]
            .as_array()
            .and_then(|members| members.iter().find(|m| m["id"] == self.node_id));
        match me.and_then(|m| m["role"].as_str()) {
            Some("leader" | "voter") => {}
            role => {
                return Err(Unhealthy::NotYet(format!(
                    "node {} is {} in the cluster, not yet a voter",
                    self.node_id,
                    role.unwrap_or("absent")
                )));
            }
        }
        let leader_index = cluster["last_log_index"].as_u64().unwrap_or(0);
        let target = *target.get_or_insert(leader_index);
        let metrics = self
            .get("/metrics")
            .await?
            .text()
            .await
            .map_err(not_yet("/metrics"))?;
        let applied = metrics
            .lines()
            .find_map(|l| l.strip_prefix("pullback_raft{field=\"last_applied\"} "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if applied < target {
            return Err(Unhealthy::NotYet(format!(
                "applied index {applied}, the leader was at {target}"
            )));
        }
        Ok(())
    }

    async fn get(&self, path: &str) -> Result<reqwest::Response, Unhealthy> {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .header("Authorization", &self.key)
            .send()
            .await
            .map_err(|e| Unhealthy::NotYet(format!("{path}: {e}")))?;
        if !response.status().is_success() {
            return Err(Unhealthy::NotYet(format!(
                "{path} answers {}",
                response.status()
            )));
        }
        Ok(response)
    }
}

fn service_property(name: &str) -> Option<String> {
    let output = Command::new("systemctl")
        .args(["show", "--value", "-p", name, "pullback.service"])
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&output.stdout).trim().to_string())
}
