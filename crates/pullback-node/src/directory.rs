//! Importing the directory: the leader reads the configured LDAP or Active Directory server on
//! a schedule (and when an administrator asks), resolves groups, and writes the result to the
//! replicated state in bounded entries; the import is put in force only once it is whole, so
//! a failed run leaves the previous one in force.

use crate::{Node, ProposeError};
use pullback_directory::{Directory, DirectoryConfig, DirectoryEntry, EntryKind};
use pullback_domain::{Command, DirectoryKind, DirectoryRecord, DirectoryRun};
use std::sync::Arc;
use std::time::Duration;

/// Records staged per log entry.
const STAGE_CHUNK: usize = 500;
/// Problems kept in a run's record.
const MAX_PROBLEMS: usize = 200;

/// The `[directory]` section.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectorySection {
    /// Minutes between imports; the first runs when a node becomes leader.
    #[serde(default = "sixty")]
    pub interval_minutes: u64,
    pub ldap: DirectoryConfig,
}

fn sixty() -> u64 {
    60
}

/// What the replicated state keeps of an imported entry with an address.
fn record(directory: &Directory, entry: &DirectoryEntry) -> DirectoryRecord {
    let mut groups = Vec::new();
    for group in directory.groups_of(&entry.dn) {
        if let Some(name) = pullback_directory::dn::first_value(&group.dn) {
            groups.push(name);
        }
        groups.push(group.dn.clone());
    }
    let kind = match entry.kind {
        EntryKind::Person => DirectoryKind::Person,
        EntryKind::Group => DirectoryKind::Group,
    };
    let members = match entry.kind {
        EntryKind::Group => directory
            .members_of(&entry.dn, true)
            .into_iter()
            .filter_map(|p| p.addresses.first().cloned())
            .collect(),
        EntryKind::Person => Vec::new(),
    };
    DirectoryRecord {
        dn: entry.dn.clone(),
        kind: Some(kind),
        object_classes: entry.object_classes.clone(),
        addresses: entry.addresses.clone(),
        display_name: entry.display_name.clone(),
        department: entry.department.clone(),
        title: entry.title.clone(),
        manager: entry.manager.clone(),
        groups,
        attributes: entry.attributes.clone(),
        members,
    }
}

impl Node {
    /// Imports the directory once, now, and returns the run's record.
    pub async fn import_directory(&self) -> Result<DirectoryRun, ProposeError> {
        let Some(section) = &self.directory else {
            return Err(ProposeError::Refused(
                "no [directory] section is configured".into(),
            ));
        };
        let started = chrono::Utc::now();
        let mut run = DirectoryRun {
            id: started.format("%Y%m%dT%H%M%S%.3fZ").to_string(),
            started_at: Some(started),
            state: "running".into(),
            ..DirectoryRun::default()
        };
        let imported = match pullback_directory::import(&section.ldap, None).await {
            Ok(imported) => imported,
            Err(e) => {
                tracing::error!(error = %e, "directory import failed");
                run.state = "failed".into();
                run.error = Some(e.to_string());
                run.finished_at = Some(chrono::Utc::now());
                self.propose(Command::RecordDirectoryRun {
                    run: run.clone(),
                    make_current: false,
                })
                .await?;
                return Ok(run);
            }
        };
        let directory = Directory::new(imported.entries);
        run.problems = directory
            .problems()
            .iter()
            .chain(imported.problems.iter())
            .take(MAX_PROBLEMS)
            .map(|p| format!("{}: {:?}", p.dn, p.what))
            .collect();
        let records: Vec<DirectoryRecord> = directory
            .entries()
            .iter()
            .filter(|e| !e.addresses.is_empty())
            .map(|e| record(&directory, e))
            .collect();
        run.people = records
            .iter()
            .filter(|r| r.kind == Some(DirectoryKind::Person))
            .count() as u64;
        run.groups = directory
            .entries()
            .iter()
            .filter(|e| e.kind == EntryKind::Group)
            .count() as u64;
        for chunk in records.chunks(STAGE_CHUNK) {
            self.propose(Command::StageDirectory {
                import: run.id.clone(),
                records: chunk.to_vec(),
            })
            .await?;
        }
        run.state = "done".into();
        run.finished_at = Some(chrono::Utc::now());
        self.propose(Command::RecordDirectoryRun {
            run: run.clone(),
            make_current: true,
        })
        .await?;
        tracing::info!(
            people = run.people,
            groups = run.groups,
            problems = run.problems.len(),
            "directory imported"
        );
        Ok(run)
    }
}

/// The leader's loop: an import at once, then one every interval.
pub(crate) async fn schedule(node: Arc<Node>, mut stopped: tokio::sync::watch::Receiver<bool>) {
    let Some(interval) = node.directory.as_ref().map(|d| d.interval_minutes.max(1)) else {
        return;
    };
    loop {
        if let Err(e) = node.import_directory().await {
            tracing::warn!(error = %e, "directory import could not be recorded");
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(interval * 60)) => {}
            _ = stopped.changed() => return,
        }
    }
}
