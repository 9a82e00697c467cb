//! Importing the directory: the leader reads the configured LDAP or Active Directory server on
//! a schedule (and when an administrator asks), resolves groups, and writes the result to the
//! replicated state in bounded entries; the import is put in force only once it is whole, so
//! a failed run leaves the previous one in force.

use crate::{Node, ProposeError};
use pullback_directory::{
    Changed, Directory, DirectoryClient, DirectoryConfig, DirectoryEntry, EntryKind, Watermark,
};
use pullback_domain::{
    Command, DirectoryAction, DirectoryKind, DirectoryOutcome, DirectoryRecord, DirectoryRun,
    QuarantineJob, RecipientOutcome, RecipientStatus,
};
use std::collections::HashMap;
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
    /// Hours between full imports; the runs between them read only changes where the server
    /// keeps track of them.
    #[serde(default = "twenty_four")]
    pub full_every_hours: u64,
    pub ldap: DirectoryConfig,
}

fn twenty_four() -> u64 {
    24
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

/// What the leader keeps of its last import, so that the next one can read only changes:
/// the whole directory (groups without an address included, which membership needs), where
/// the server's record of changes stood, and the records as they were written.
pub(crate) struct DirectoryCache {
    directory: Directory,
    watermark: Watermark,
    records: HashMap<String, DirectoryRecord>,
    /// The import in force that `records` describe.
    generation: String,
    /// The run that wrote them last; if another run (another leader's) came after, the
    /// records in force may differ from `records`, so the next run reads everything.
    last_run: String,
    /// When the last full run ended.
    full_at: std::time::Instant,
}

/// The most changed records an incremental run writes as one patch; past that it writes a
/// new import, in bounded entries, put in force at the end.
const PATCH_LIMIT: usize = 2_000;

impl Node {
    /// Imports the directory once, now, and returns the run's record.
    ///
    /// The first run of a leader, and a run every `full_every_hours`, reads everything. Other
    /// runs ask the server only for what changed since the previous one (by `uSNChanged`,
    /// `entryCSN` or `modifyTimestamp`, whichever it keeps) and its list of DNs for
    /// deletions, resolve membership again over the whole directory, and write only the
    /// records that changed, in one entry.
    pub async fn import_directory(&self) -> Result<DirectoryRun, ProposeError> {
        let Some(section) = &self.directory else {
            return Err(ProposeError::Refused(
                "no [directory] section is configured".into(),
            ));
        };
        let mut cache = self.directory_cache.lock().await;
        let unreadable = |e: pullback_store::StoreError| {
            ProposeError::Unavailable(format!("reading the directory in force: {e}"))
        };
        let in_force = self.reader.directory_in_force().map_err(unreadable)?;
        let newest_done = self
            .reader
            .directory_runs()
            .map_err(unreadable)?
            .into_iter()
            .filter(|r| r.state == "done")
            .max_by(|a, b| a.finished_at.cmp(&b.finished_at))
            .map(|r| r.id);
        let full_every = Duration::from_secs(section.full_every_hours.max(1) * 3600);
        let since = cache
            .as_ref()
            .filter(|c| Some(&c.generation) == in_force.as_ref())
            .filter(|c| Some(&c.last_run) == newest_done.as_ref())
            .filter(|c| c.full_at.elapsed() < full_every)
            .map(|c| c.watermark.clone());
        let started = chrono::Utc::now();
        let mut run = DirectoryRun {
            id: started.format("%Y%m%dT%H%M%S%.3fZ").to_string(),
            started_at: Some(started),
            state: "running".into(),
            ..DirectoryRun::default()
        };
        let imported = match pullback_directory::import(&section.ldap, since).await {
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
        run.incremental = imported.incremental;
        let watermark = imported.watermark.clone();
        let read_problems: Vec<String> = imported
            .problems
            .iter()
            .map(|p| format!("{}: {:?}", p.dn, p.what))
            .collect();
        let (directory, previous) = match cache.take() {
            Some(mut cached) if imported.incremental => {
                cached.directory.update(imported);
                let previous = (cached.records, cached.generation, cached.full_at);
                (cached.directory, Some(previous))
            }
            _ => (Directory::new(imported.entries), None),
        };
        run.problems = directory
            .problems()
            .iter()
            .map(|p| format!("{}: {:?}", p.dn, p.what))
            .chain(read_problems)
            .take(MAX_PROBLEMS)
            .collect();
        let mut records: HashMap<String, DirectoryRecord> = HashMap::new();
        for entry in directory
            .entries()
            .iter()
            .filter(|e| !e.addresses.is_empty())
        {
            let record = record(&directory, entry);
            for address in &record.addresses {
                records.insert(address.to_ascii_lowercase(), record.clone());
            }
        }
        let unique = unique_records(&records);
        run.people = unique
            .iter()
            .filter(|r| r.kind == Some(DirectoryKind::Person))
            .count() as u64;
        run.groups = directory
            .entries()
            .iter()
            .filter(|e| e.kind == EntryKind::Group)
            .count() as u64;

        let last_full = previous.as_ref().map(|(_, _, full_at)| *full_at);
        if let Some((old, generation, full_at)) = previous {
            let changed: HashMap<String, DirectoryRecord> = records
                .iter()
                .filter(|(address, record)| old.get(*address) != Some(record))
                .map(|(a, r)| (a.clone(), r.clone()))
                .collect();
            let upserts = unique_records(&changed);
            let removed: Vec<String> = old
                .keys()
                .filter(|a| !records.contains_key(*a))
                .cloned()
                .collect();
            if upserts.len() + removed.len() <= PATCH_LIMIT {
                run.state = "done".into();
                run.changed = upserts.len() as u64;
                run.removed = removed.len() as u64;
                run.finished_at = Some(chrono::Utc::now());
                let response = self
                    .propose(Command::PatchDirectory {
                        base: generation.clone(),
                        run: run.clone(),
                        upserts,
                        removed,
                    })
                    .await?;
                match response.refused {
                    None => {
                        tracing::info!(
                            changed = run.changed,
                            removed = run.removed,
                            problems = run.problems.len(),
                            "directory changes imported"
                        );
                        *cache = Some(DirectoryCache {
                            directory,
                            watermark,
                            records,
                            generation,
                            last_run: run.id.clone(),
                            full_at,
                        });
                        return Ok(run);
                    }
                    Some(why) => {
                        tracing::warn!(reason = %why, "directory patch refused; writing the whole import");
                    }
                }
            }
        }

        run.changed = unique.len() as u64;
        run.removed = 0;
        for chunk in unique.chunks(STAGE_CHUNK) {
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
            incremental_read = run.incremental,
            "directory imported"
        );
        *cache = Some(DirectoryCache {
            directory,
            watermark,
            records,
            generation: run.id.clone(),
            last_run: run.id.clone(),
            // Changes read onto the last full run keep its time; a full read starts anew.
            full_at: last_full.unwrap_or_else(std::time::Instant::now),
        });
        Ok(run)
    }
}

/// Each record once, though it is filed under each of its addresses; in DN order.
fn unique_records(by_address: &HashMap<String, DirectoryRecord>) -> Vec<DirectoryRecord> {
    let mut seen = std::collections::BTreeMap::new();
    for record in by_address.values() {
        seen.entry(record.dn.clone())
            .or_insert_with(|| record.clone());
    }
    seen.into_values().collect()
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

/// How many outcomes of a directory job are recorded per log entry.
const OUTCOMES_PER_ENTRY: usize = 50;

/// Makes (or, with `original`, undoes) a directory change for the recipients this worker
/// claimed, one LDAP connection for the job, recording outcomes as they come. The change
/// and each outcome go into the audit log under the name of whoever asked for the job.
pub(crate) async fn run_directory_job(
    node: &Arc<Node>,
    term: u64,
    job: &QuarantineJob,
    recipients: Vec<String>,
    change: &DirectoryAction,
    original: Option<&QuarantineJob>,
) -> anyhow::Result<()> {
    let by = match original {
        Some(_) => job.requested_by.clone(),
        None => format!("condition {}", job.requested_by),
    };
    let mut client = match &node.directory {
        None => {
            Err("no [directory] section is configured, so there is no directory to change".into())
        }
        Some(section) => DirectoryClient::connect(&section.ldap)
            .await
            .map_err(|e| format!("connecting to the directory: {e}")),
    };
    let mut pending = Vec::new();
    for (n, recipient) in recipients.iter().enumerate() {
        let outcome = match client.as_mut() {
            Ok(client) => change_one(node, client, recipient, change, original).await,
            Err(reason) => failed(recipient, reason.clone()),
        };
        tracing::info!(
            job = job.id,
            action = %change.describe(),
            undo = original.is_some(),
            recipient = %recipient,
            status = outcome.outcome.status.as_str(),
            details = %outcome.outcome.details,
            "directory change done"
        );
        pending.push(outcome);
        if pending.len() == OUTCOMES_PER_ENTRY || n + 1 == recipients.len() {
            let command = Command::Audited {
                by: by.clone(),
                at: chrono::Utc::now(),
                command: Box::new(Command::RecordDirectoryOutcomes {
                    job_id: job.id,
                    outcomes: std::mem::take(&mut pending),
                    term,
                    at: chrono::Utc::now(),
                }),
            };
            let response = node.propose_local(command).await?;
            if let Some(reason) = response.refused {
                anyhow::bail!("outcome refused: {reason}");
            }
        }
    }
    if let Ok(client) = client {
        client.close().await;
    }
    Ok(())
}

fn failed(recipient: &str, details: String) -> DirectoryOutcome {
    outcome(recipient, RecipientStatus::Failed, details, None)
}

fn outcome(
    recipient: &str,
    status: RecipientStatus,
    details: String,
    previous: Option<Vec<String>>,
) -> DirectoryOutcome {
    DirectoryOutcome {
        outcome: RecipientOutcome {
            recipient: recipient.to_owned(),
            status,
            details,
            is_read: None,
        },
        previous,
    }
}

/// One recipient's change, or its undo when `original` (the job that made it) is given.
async fn change_one(
    node: &Node,
    client: &mut DirectoryClient,
    recipient: &str,
    change: &DirectoryAction,
    original: Option<&QuarantineJob>,
) -> DirectoryOutcome {
    let record = match node.reader.directory_lookup(recipient) {
        Ok(Some(record)) => record,
        Ok(None) => {
            return failed(
                recipient,
                format!("{recipient} has no entry in the imported directory"),
            );
        }
        Err(e) => return failed(recipient, format!("reading the directory: {e}")),
    };
    let dn = record.dn.as_str();
    let (done, already) = match original {
        None => (RecipientStatus::Applied, "already so"),
        Some(_) => (RecipientStatus::Reverted, "already as it was"),
    };
    let said = |changed: Changed, what: String| match changed {
        Changed::Done => outcome(recipient, done, what, None),
        Changed::AlreadySo => outcome(
            recipient,
            RecipientStatus::AlreadyInDestination,
            format!("{already}: {what}"),
            None,
        ),
    };
    let result = match change {
        DirectoryAction::AddToGroup { group } | DirectoryAction::RemoveFromGroup { group } => {
            let adding = matches!(change, DirectoryAction::AddToGroup { .. }) == original.is_none();
            match client.find_group(group).await {
                Err(e) => Err(e),
                Ok(group_dn) if adding => client
                    .add_member(&group_dn, dn)
                    .await
                    .map(|c| said(c, format!("{dn} is a member of {group_dn}"))),
                Ok(group_dn) => client
                    .remove_member(&group_dn, dn)
                    .await
                    .map(|c| said(c, format!("{dn} is not a member of {group_dn}"))),
            }
        }
        DirectoryAction::SetAttribute { attribute, values } => {
            let target = match original {
                None => values.clone(),
                Some(job) => match job.results.iter().find(|r| r.recipient == recipient) {
                    Some(result) if result.previous.is_some() => {
                        result.previous.clone().unwrap_or_default()
                    }
                    _ => {
                        return failed(
                            recipient,
                            format!(
                                "job {} recorded no earlier value of {attribute} to put back",
                                job.id
                            ),
                        );
                    }
                },
            };
            client
                .set_attribute(dn, attribute, &target)
                .await
                .map(|previous| {
                    let what = format!("{attribute} of {dn} is {:?}", target);
                    let mut done = said(previous.changed, what);
                    if original.is_none() && previous.changed == Changed::Done {
                        done.previous = Some(previous.values);
                    }
                    done
                })
        }
    };
    result.unwrap_or_else(|e| failed(recipient, e.to_string()))
}
