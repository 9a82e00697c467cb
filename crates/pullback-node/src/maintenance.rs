//! Backups, purges and the recommendations about them.
//!
//! A backup is taken on the node that runs it (any node: the API's or, for scheduled purges,
//! the leader) from a RocksDB checkpoint, so the cluster keeps working meanwhile; it is
//! written to a configured target, read back, and counts only once verified. A purge that
//! backs up first runs only after a verified backup of the same moment, and goes through the
//! log in bounded steps, so every node removes the same items. Every run is recorded in the
//! replicated state, with its progress, so every node can show it.

use crate::config::{BackupTargetConfig, MaintenanceConfig};
use crate::{Node, ProposeError};
use pullback_backup::{BackupError, Manifest, Progress, Stage, Target};
use pullback_domain::{
    BackupRecord, BackupState, Command, PurgeRun, PurgeSchedule, PurgeState, RecommendationMarks,
    Removed, Timestamp,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Alerts one purge entry removes at most.
const PURGE_STEP: u64 = 2_000;
/// How often progress is written to the replicated state while a backup runs.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// How often the leader looks for purges that are due.
const SCHEDULE_CHECK: Duration = Duration::from_secs(20);

/// The configured targets and thresholds of one node.
pub struct Maintenance {
    targets: BTreeMap<String, (Arc<Target>, BackupTargetConfig)>,
    pub thresholds: MaintenanceConfig,
    /// Where checkpoints are made before they are copied out.
    scratch: PathBuf,
    version: String,
}

impl Maintenance {
    pub fn new(
        targets: &[BackupTargetConfig],
        thresholds: MaintenanceConfig,
        data_dir: &std::path::Path,
    ) -> Result<Maintenance, String> {
        let mut built = BTreeMap::new();
        for config in targets {
            let target = Target::new(&config.target)
                .map_err(|e| format!("backup target {:?}: {e}", config.name))?;
            built.insert(config.name.clone(), (Arc::new(target), config.clone()));
        }
        Ok(Maintenance {
            targets: built,
            thresholds,
            scratch: data_dir.join("backup-scratch"),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        })
    }

    /// The configured targets: name, where, how many backups they keep.
    pub fn targets(&self) -> Vec<TargetView> {
        self.targets
            .iter()
            .map(|(name, (target, config))| TargetView {
                name: name.clone(),
                location: target.location(),
                keep: config.keep,
            })
            .collect()
    }

    pub fn target(&self, name: &str) -> Option<Arc<Target>> {
        self.targets.get(name).map(|(t, _)| t.clone())
    }
}

/// A target as the API shows it: never its credentials.
#[derive(Clone, Debug, Serialize)]
pub struct TargetView {
    pub name: String,
    pub location: String,
    pub keep: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    #[error("no backup target {0:?} is configured on this node")]
    NoTarget(String),
    #[error(transparent)]
    Propose(#[from] ProposeError),
}

fn backup_id(node: u64, at: Timestamp) -> String {
    format!("{}-n{node}", at.format("%Y%m%dT%H%M%SZ"))
}

impl Node {
    /// Starts a backup to `target` in the background and returns its id at once; its record
    /// shows the progress.
    pub async fn start_backup(
        self: &Arc<Self>,
        target: &str,
        by: &str,
    ) -> Result<String, MaintenanceError> {
        let record = self.begin_backup(target, by).await?;
        let (node, id) = (self.clone(), record.id.clone());
        tokio::spawn(async move { node.finish_backup(record).await });
        Ok(id)
    }

    /// Takes a backup to `target` and returns its final record (verified or failed).
    pub async fn run_backup(
        self: &Arc<Self>,
        target: &str,
        by: &str,
    ) -> Result<BackupRecord, MaintenanceError> {
        let record = self.begin_backup(target, by).await?;
        Ok(self.finish_backup(record).await)
    }

    async fn begin_backup(&self, target: &str, by: &str) -> Result<BackupRecord, MaintenanceError> {
        if self.maintenance.target(target).is_none() {
            return Err(MaintenanceError::NoTarget(target.to_owned()));
        }
        let now = chrono::Utc::now();
        let record = BackupRecord {
            id: backup_id(self.id, now),
            target: target.to_owned(),
            node_id: self.id,
            requested_by: by.to_owned(),
            started_at: now,
            finished_at: None,
            state: BackupState::Running,
            stage: "checkpoint".into(),
            done_bytes: 0,
            total_bytes: 0,
            applied_index: 0,
            counts: BTreeMap::new(),
            error: None,
        };
        self.propose(Command::PutBackupRecord {
            record: record.clone(),
        })
        .await?;
        Ok(record)
    }

    async fn finish_backup(self: &Arc<Self>, mut record: BackupRecord) -> BackupRecord {
        let scratch = self.maintenance.scratch.join(&record.id);
        let outcome = self.take_backup(&mut record, &scratch).await;
        let _ = tokio::fs::remove_dir_all(&scratch).await;
        record.finished_at = Some(chrono::Utc::now());
        match outcome {
            Ok(()) => {
                record.state = BackupState::Verified;
                record.stage = "done".into();
                tracing::info!(backup = %record.id, target = %record.target, bytes = record.total_bytes, "backup verified");
            }
            Err(e) => {
                record.state = BackupState::Failed;
                tracing::error!(backup = %record.id, target = %record.target, error = %e, "backup failed");
                record.error = Some(e);
            }
        }
        self.save_backup(&record).await;
        record
    }

    async fn save_backup(&self, record: &BackupRecord) {
        let command = Command::PutBackupRecord {
            record: record.clone(),
        };
        if let Err(e) = self.propose(command).await {
            tracing::warn!(backup = %record.id, error = %e, "could not record the backup's progress");
        }
    }

    async fn take_backup(
        self: &Arc<Self>,
        record: &mut BackupRecord,
        scratch: &std::path::Path,
    ) -> Result<(), String> {
        let target = self
            .maintenance
            .target(&record.target)
            .ok_or_else(|| format!("no backup target {:?}", record.target))?;
        let keep = self
            .maintenance
            .targets
            .get(&record.target)
            .map_or(7, |(_, c)| c.keep);
        std::fs::create_dir_all(&self.maintenance.scratch)
            .map_err(|e| format!("creating {}: {e}", self.maintenance.scratch.display()))?;
        let checkpoint = scratch.join("store");
        std::fs::create_dir_all(scratch)
            .map_err(|e| format!("creating {}: {e}", scratch.display()))?;
        let (reader, dir) = (self.reader.clone(), checkpoint.clone());
        tokio::task::spawn_blocking(move || reader.store_checkpoint(&dir))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("taking a checkpoint: {e}"))?;
        record.stage = "writing".into();
        self.save_backup(record).await;

        // The checkpoint is read whole (every value decoded, the records counted) while its
        // files are copied: both read the same files, so the disk gives them up once, and the
        // counts are ready when the manifest is written after the last file.
        let dir = checkpoint.clone();
        let scan = tokio::task::spawn_blocking(move || pullback_store::backup::inspect(&dir));
        let summary = Mutex::new(None);
        let describe = async {
            let scanned = scan.await.map_err(|e| BackupError::Describe {
                reason: e.to_string(),
            })?;
            let scanned = scanned.map_err(|e| BackupError::Describe {
                reason: format!("reading the checkpoint: {e}"),
            })?;
            let manifest = Manifest {
                manifest_format: pullback_backup::MANIFEST_FORMAT,
                id: record.id.clone(),
                pullback_version: self.maintenance.version.clone(),
                data_format: scanned.data_format,
                cluster: scanned.cluster.clone(),
                node_id: self.id,
                created_at: record.started_at,
                applied_index: scanned.applied_index,
                counts: scanned.counts.clone(),
                files: Vec::new(),
            };
            *summary.lock().unwrap_or_else(|e| e.into_inner()) = Some(scanned);
            Ok(manifest)
        };
        let progress = ProgressWriter::new(self.clone(), record.clone());
        let report = |p: Progress| progress.report(p);
        let id = record.id.clone();
        let written = target
            .write_described(&checkpoint, &id, describe, &report)
            .await
            .map_err(|e| format!("writing: {e}"))?;
        let summary = summary
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .ok_or("the checkpoint was not read")?;
        record.applied_index = summary.applied_index;
        record.counts = summary.counts.clone();
        record.total_bytes = written.total_bytes();
        record.done_bytes = 0;
        record.stage = "verifying".into();
        self.save_backup(record).await;

        // Read it all back and check every file's hash against the manifest. The checkpoint
        // whose bytes these hashes describe was opened read-only and read whole above, so equal
        // hashes prove that the copy opens and holds what the manifest counts, without copying
        // it back a second time.
        let verified = target
            .verify(&record.id, &report)
            .await
            .map_err(|e| format!("verifying: {e}"))?;
        if verified.counts != summary.counts
            || verified.applied_index != summary.applied_index
            || verified.cluster != summary.cluster
        {
            return Err(format!(
                "the backup read back says {:?} at index {}, but the checkpoint held {:?} at \
                 index {}",
                verified.counts, verified.applied_index, summary.counts, summary.applied_index
            ));
        }
        record.stage = "pruning".into();
        record.done_bytes = record.total_bytes;
        match target.prune(keep).await {
            Ok(removed) if !removed.is_empty() => {
                tracing::info!(target = %record.target, removed = ?removed, "old backups removed");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(target = %record.target, error = %e, "old backups could not be removed")
            }
        }
        Ok(())
    }

    /// Runs a purge: a verified backup first when asked, then the removal in bounded log
    /// entries. The run is recorded from its start; a run id that exists already is not run
    /// again (so a new leader does not repeat a scheduled run).
    pub async fn run_purge(
        self: &Arc<Self>,
        plan: PurgePlan,
    ) -> Result<PurgeRun, MaintenanceError> {
        let run = self.begin_purge(&plan).await?;
        Ok(self.finish_purge(plan, run).await)
    }

    /// Records a purge run and carries it out in the background; the record exists when
    /// this returns.
    pub async fn start_purge(
        self: &Arc<Self>,
        plan: PurgePlan,
    ) -> Result<String, MaintenanceError> {
        let run = self.begin_purge(&plan).await?;
        let (node, id) = (self.clone(), run.id.clone());
        tokio::spawn(async move { node.finish_purge(plan, run).await });
        Ok(id)
    }

    async fn begin_purge(&self, plan: &PurgePlan) -> Result<PurgeRun, MaintenanceError> {
        let now = chrono::Utc::now();
        let days = |n: u32| chrono::TimeDelta::days(i64::from(n));
        let run = PurgeRun {
            id: plan.id.clone(),
            schedule: plan.schedule.clone(),
            requested_by: plan.by.clone(),
            started_at: now,
            finished_at: None,
            closed_before: now - days(plan.closed_days),
            alerts_before: now - days(plan.alert_days),
            backup_id: None,
            state: PurgeState::Running,
            removed: Removed::default(),
            error: None,
        };
        if plan.backup_first && plan.target.is_none() {
            return Err(MaintenanceError::NoTarget(String::new()));
        }
        if let Some(target) = plan.target.as_deref().filter(|_| plan.backup_first)
            && self.maintenance.target(target).is_none()
        {
            return Err(MaintenanceError::NoTarget(target.to_owned()));
        }
        let created = self
            .propose(Command::PutPurgeRun {
                run: run.clone(),
                create_only: true,
            })
            .await?;
        if let Some(reason) = created.refused {
            return Err(MaintenanceError::Propose(ProposeError::Refused(reason)));
        }
        Ok(run)
    }

    async fn finish_purge(self: &Arc<Self>, plan: PurgePlan, mut run: PurgeRun) -> PurgeRun {
        if plan.backup_first {
            let target = plan.target.as_deref().unwrap_or_default();
            let backup = match self.run_backup(target, &plan.by).await {
                Ok(backup) => backup,
                Err(e) => return self.end_purge(run, Some(format!("backup: {e}"))).await,
            };
            run.backup_id = Some(backup.id.clone());
            if backup.state != BackupState::Verified {
                let why = backup.error.unwrap_or_else(|| "not verified".into());
                let error = format!(
                    "the backup {} failed, so nothing was purged: {why}",
                    backup.id
                );
                return self.end_purge(run, Some(error)).await;
            }
        }
        let mut after = 0;
        loop {
            let command = Command::Purge {
                closed_before: run.closed_before,
                alerts_before: run.alerts_before,
                after_alert: after,
                limit: PURGE_STEP,
                backup_id: run.backup_id.clone(),
            };
            let removed = match self.propose(command).await {
                Ok(response) => response.removed.unwrap_or_default(),
                Err(e) => {
                    return self
                        .end_purge(run, Some(format!("stopped part way: {e}")))
                        .await;
                }
            };
            run.removed.alerts += removed.alerts;
            run.removed.incidents += removed.incidents;
            run.removed.jobs += removed.jobs;
            match removed.next {
                Some(next) => after = next,
                None => break,
            }
        }
        tracing::info!(purge = %run.id, alerts = run.removed.alerts, incidents = run.removed.incidents, jobs = run.removed.jobs, "purge done");
        self.end_purge(run, None).await
    }

    async fn end_purge(&self, mut run: PurgeRun, error: Option<String>) -> PurgeRun {
        run.finished_at = Some(chrono::Utc::now());
        run.state = if error.is_some() {
            PurgeState::Failed
        } else {
            PurgeState::Done
        };
        if let Some(e) = &error {
            tracing::error!(purge = %run.id, error = %e, "purge did not run to the end");
        }
        run.error = error;
        let command = Command::PutPurgeRun {
            run: run.clone(),
            create_only: false,
        };
        if let Err(e) = self.propose(command).await {
            tracing::warn!(purge = %run.id, error = %e, "could not record the purge");
        }
        run
    }

    /// The recommendations that hold now.
    pub fn recommendations(
        &self,
        now: Timestamp,
    ) -> Result<Vec<Recommendation>, pullback_store::StoreError> {
        let reader = &self.reader;
        let last_backup = reader
            .backups()?
            .into_iter()
            .filter(|b| b.state == BackupState::Verified)
            .filter_map(|b| b.finished_at)
            .max();
        let today = now.date_naive();
        let week = reader.days(today - chrono::TimeDelta::days(6), today)?;
        let alerts_last_week: u64 = week.iter().map(|(_, c)| c.alerts).sum();
        let signals = Signals {
            store_bytes: reader.disk_bytes(),
            alerts: reader.count("alert/")?,
            alerts_per_day: alerts_last_week as f64 / 7.0,
            last_verified_backup: last_backup,
            purge_scheduled: reader.purge_schedules()?.iter().any(|s| s.enabled),
        };
        let marks: BTreeMap<String, RecommendationMarks> =
            reader.recommendation_marks()?.into_iter().collect();
        Ok(recommend(
            &signals,
            &self.maintenance.thresholds,
            &marks,
            now,
        ))
    }
}

/// What a purge removes and whether it backs up first.
#[derive(Clone, Debug)]
pub struct PurgePlan {
    pub id: String,
    pub schedule: Option<String>,
    pub by: String,
    pub closed_days: u32,
    pub alert_days: u32,
    pub backup_first: bool,
    pub target: Option<String>,
}

/// Writes a running backup's progress to the replicated state, at most every
/// [`PROGRESS_EVERY`].
struct ProgressWriter {
    node: Arc<Node>,
    record: Mutex<(BackupRecord, Option<Instant>)>,
}

impl ProgressWriter {
    fn new(node: Arc<Node>, record: BackupRecord) -> ProgressWriter {
        ProgressWriter {
            node,
            record: Mutex::new((record, None)),
        }
    }

    fn report(&self, progress: Progress) {
        let mut guard = self.record.lock().unwrap_or_else(|e| e.into_inner());
        let (record, last) = &mut *guard;
        record.done_bytes = progress.done_bytes;
        record.total_bytes = progress.total_bytes;
        record.stage = match progress.stage {
            Stage::Writing => "writing",
            Stage::Verifying => "verifying",
            Stage::Fetching => "reading back",
        }
        .into();
        if last.is_some_and(|l| l.elapsed() < PROGRESS_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        let (node, record) = (self.node.clone(), record.clone());
        tokio::spawn(async move { node.save_backup(&record).await });
    }
}

/// The leader's loop that starts scheduled purges when they are due.
pub(crate) async fn schedule(node: Arc<Node>, mut stopped: tokio::sync::watch::Receiver<bool>) {
    let mut last_check = chrono::Utc::now() - chrono::TimeDelta::minutes(1);
    loop {
        tokio::select! {
            () = tokio::time::sleep(SCHEDULE_CHECK) => {}
            _ = stopped.changed() => return,
        }
        let now = chrono::Utc::now();
        let schedules = match node.reader.purge_schedules() {
            Ok(schedules) => schedules,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read purge schedules");
                continue;
            }
        };
        for schedule in schedules.into_iter().filter(|s| s.enabled) {
            let Some(due) = due_between(&schedule, last_check, now) else {
                continue;
            };
            let plan = PurgePlan {
                id: format!("{}-{}", schedule.name, due.format("%Y%m%dT%H%MZ")),
                schedule: Some(schedule.name.clone()),
                by: format!("schedule {}", schedule.name),
                closed_days: schedule.closed_days,
                alert_days: schedule.alert_days,
                backup_first: schedule.backup_first,
                target: schedule.target.clone(),
            };
            tracing::info!(schedule = %schedule.name, %due, "scheduled purge is due");
            match node.run_purge(plan).await {
                Ok(run) => {
                    tracing::info!(purge = %run.id, state = ?run.state, "scheduled purge ended")
                }
                Err(e) => {
                    tracing::warn!(schedule = %schedule.name, error = %e, "scheduled purge did not start")
                }
            }
        }
        last_check = now;
    }
}

fn due_between(schedule: &PurgeSchedule, after: Timestamp, until: Timestamp) -> Option<Timestamp> {
    pullback_domain::cron::Cron::parse(&schedule.cron)
        .ok()?
        .latest_between(after, until)
}

/// What the recommendations are computed from.
#[derive(Clone, Debug, Default)]
pub struct Signals {
    pub store_bytes: u64,
    pub alerts: u64,
    pub alerts_per_day: f64,
    pub last_verified_backup: Option<Timestamp>,
    pub purge_scheduled: bool,
}

/// Advice about backups and size, with what people did about it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Recommendation {
    /// Stable for one kind of advice: `backup-age`, `store-size`, `growth`, `purge-schedule`.
    pub id: String,
    pub severity: &'static str,
    pub text: String,
    /// What an administrator can do: `schedule_backup` or `schedule_purge`.
    pub action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acknowledged_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acknowledged_at: Option<Timestamp>,
}

/// The recommendations that hold for `signals` at `now`, less those dismissed until later.
pub fn recommend(
    signals: &Signals,
    limits: &MaintenanceConfig,
    marks: &BTreeMap<String, RecommendationMarks>,
    now: Timestamp,
) -> Vec<Recommendation> {
    let mut out = Vec::new();
    let mut add = |id: &str, severity, text: String, action| {
        out.push(Recommendation {
            id: id.to_owned(),
            severity,
            text,
            action,
            acknowledged_by: None,
            acknowledged_at: None,
        })
    };
    let max_age = chrono::TimeDelta::days(i64::from(limits.backup_max_age_days));
    match signals.last_verified_backup {
        None => add(
            "backup-age",
            "warning",
            "No verified backup yet: schedule backups (a purge schedule with \"back up first\")"
                .into(),
            "schedule_backup",
        ),
        Some(last) if now - last > max_age => add(
            "backup-age",
            "warning",
            format!("No verified backup for {} days", (now - last).num_days()),
            "schedule_backup",
        ),
        Some(_) => {}
    }
    let recommended = limits.recommended_store_gb.saturating_mul(1 << 30);
    let warning = recommended / 100 * u64::from(limits.size_warning_percent);
    if signals.store_bytes >= warning && recommended > 0 {
        add(
            "store-size",
            "warning",
            format!(
                "The store is at {}% of the recommended size ({} GB): schedule a purge of \
                 incidents closed over 90 days",
                signals.store_bytes * 100 / recommended,
                limits.recommended_store_gb
            ),
            "schedule_purge",
        );
    } else if signals.alerts > 0 && signals.alerts_per_day > 0.0 && recommended > 0 {
        let bytes_per_alert = signals.store_bytes as f64 / signals.alerts as f64;
        let days_left = (warning.saturating_sub(signals.store_bytes)) as f64
            / (bytes_per_alert * signals.alerts_per_day);
        if days_left < 30.0 {
            add(
                "growth",
                "info",
                format!(
                    "At {:.0} alerts a day the store reaches {}% of its recommended size in \
                     about {:.0} days: schedule a purge",
                    signals.alerts_per_day, limits.size_warning_percent, days_left
                ),
                "schedule_purge",
            );
        }
    }
    if signals.alerts >= limits.alerts_without_purge && !signals.purge_scheduled {
        add(
            "purge-schedule",
            "info",
            format!(
                "{} alerts are kept and no purge is scheduled: schedule one",
                signals.alerts
            ),
            "schedule_purge",
        );
    }
    out.retain(|r| {
        marks
            .get(&r.id)
            .and_then(|m| m.dismissed_until)
            .is_none_or(|until| until <= now)
    });
    for r in &mut out {
        if let Some(m) = marks.get(&r.id) {
            r.acknowledged_by = m.acknowledged_by.clone();
            r.acknowledged_at = m.acknowledged_at;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        chrono::DateTime::parse_from_rfc3339(text).unwrap().into()
    }

    #[test]
    fn recommendations_appear_are_dismissed_for_a_while_and_return() {
        let limits = MaintenanceConfig::default();
        let now = at("2026-12-10T12:00:00Z");
        let signals = Signals {
            store_bytes: limits.recommended_store_gb * (1 << 30) * 85 / 100,
            alerts: 2_000_000,
            alerts_per_day: 10_000.0,
            last_verified_backup: Some(at("2026-12-01T12:00:00Z")),
            purge_scheduled: false,
        };
        let mut marks = BTreeMap::new();
        let ids = |r: &[Recommendation]| r.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
        let shown = recommend(&signals, &limits, &marks, now);
        assert_eq!(ids(&shown), ["backup-age", "store-size", "purge-schedule"]);
        assert_eq!(shown[0].text, "No verified backup for 9 days");
        assert!(
            shown[1].text.contains("85% of the recommended size"),
            "{}",
            shown[1].text
        );

        // Acknowledged: still shown, with who saw it.
        marks.insert(
            "backup-age".to_owned(),
            RecommendationMarks {
                acknowledged_by: Some("ann".into()),
                acknowledged_at: Some(now),
                ..RecommendationMarks::default()
            },
        );
        let shown = recommend(&signals, &limits, &marks, now);
        assert_eq!(shown[0].acknowledged_by.as_deref(), Some("ann"));
        // Dismissed for 7 days: gone until then, back after if still true.
        marks.get_mut("backup-age").unwrap().dismissed_until =
            Some(now + chrono::TimeDelta::days(7));
        let later = now + chrono::TimeDelta::days(6);
        assert_eq!(
            ids(&recommend(&signals, &limits, &marks, later)),
            ["store-size", "purge-schedule"]
        );
        let after = now + chrono::TimeDelta::days(7);
        assert_eq!(
            ids(&recommend(&signals, &limits, &marks, after))[0],
            "backup-age"
        );
        // A fresh backup and a small store: nothing to say.
        let healthy = Signals {
            store_bytes: 1 << 20,
            alerts: 1_000,
            alerts_per_day: 10.0,
            last_verified_backup: Some(now - chrono::TimeDelta::hours(3)),
            purge_scheduled: true,
        };
        assert!(recommend(&healthy, &limits, &BTreeMap::new(), now).is_empty());
    }

    #[test]
    fn fast_growth_is_foreseen() {
        let limits = MaintenanceConfig::default();
        let recommended = limits.recommended_store_gb * (1 << 30);
        let signals = Signals {
            store_bytes: recommended / 2,
            alerts: 1_000_000,
            alerts_per_day: 100_000.0,
            last_verified_backup: Some(at("2026-12-10T00:00:00Z")),
            purge_scheduled: true,
        };
        let shown = recommend(
            &signals,
            &limits,
            &BTreeMap::new(),
            at("2026-12-10T12:00:00Z"),
        );
        assert_eq!(shown.len(), 1);
        assert_eq!(shown[0].id, "growth");
        assert!(
            shown[0].text.contains("in about 6 days"),
            "{}",
            shown[0].text
        );
    }
}
