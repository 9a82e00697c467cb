//! The quarantine worker: takes queued jobs, claims their recipients under the leader's term,
//! acts on each mailbox, and records each recipient's outcome as soon as it is known.
//!
//! A recipient claimed under an older term (a crashed or deposed leader's) is claimed again
//! and redone. Backends are idempotent, so a redo reports "already in destination" instead of
//! moving anything twice, and the state machine refuses outcomes from an older term.

use crate::Node;
use crate::backends::Backends;
use crate::config::WorkerConfig;
use pullback_domain::{
    Command, JobAction, QuarantineJob, RecipientOutcome, RecipientStatus, Removal,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

pub(crate) async fn run(
    node: Arc<Node>,
    backends: &Backends,
    config: WorkerConfig,
    term: u64,
    mut stop: watch::Receiver<bool>,
) {
    let limit = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let idle = Duration::from_millis(config.poll_interval_ms.max(10));
    loop {
        // Register interest before reading the queue, so a job committed in between wakes us.
        let notified = node.work.notified();
        let jobs = match node.reader.queued_jobs() {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the job queue");
                Vec::new()
            }
        };
        for job in jobs {
            if *stop.borrow() {
                return;
            }
            if let Err(e) = run_job(&node, backends, &limit, term, job, &stop).await {
                // Most likely this node lost leadership; the supervisor stops us shortly.
                tracing::warn!(error = %e, term, "job interrupted");
                break;
            }
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(idle) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn run_job(
    node: &Arc<Node>,
    backends: &Backends,
    limit: &Arc<Semaphore>,
    term: u64,
    job: QuarantineJob,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let claimable: Vec<String> = job
        .results
        .iter()
        .filter(|r| {
            r.status == RecipientStatus::Pending
                || (r.status == RecipientStatus::InProgress && r.term < term)
        })
        .map(|r| r.recipient.clone())
        .collect();
    if !claimable.is_empty() {
        let at = chrono::Utc::now();
        let command = Command::ClaimRecipients {
            job_id: job.id,
            recipients: claimable,
            term,
            at,
        };
        let response = node.propose_local(command).await?;
        if let Some(reason) = response.refused {
            anyhow::bail!("claim on job {} refused: {reason}", job.id);
        }
    }
    let Some(job) = node.reader.job(job.id)? else {
        return Ok(());
    };
    let mine: Vec<String> = job
        .results
        .iter()
        .filter(|r| r.status == RecipientStatus::InProgress && r.term == term)
        .map(|r| r.recipient.clone())
        .collect();
    if mine.is_empty() {
        return Ok(());
    }
    match &job.action {
        JobAction::Directory { change } => {
            return crate::directory::run_directory_job(node, term, &job, mine, change, None).await;
        }
        JobAction::Restore { original } => {
            let original = node.reader.job(*original)?;
            if let Some(original) = &original
                && let JobAction::Directory { change } = &original.action
            {
                return crate::directory::run_directory_job(
                    node,
                    term,
                    &job,
                    mine,
                    change,
                    Some(original),
                )
                .await;
            }
        }
        JobAction::Quarantine => {}
    }
    let job = Arc::new(job);
    let mut running = JoinSet::new();
    // Every recipient gets a task at once; the semaphore bounds how many touch a mailbox,
    // and outcomes are recorded as they finish, so progress is durable as it happens.
    // A recipient not yet started when leadership ends is left for the next leader: a
    // deposed leader must stop touching mailboxes, and its outcomes would be refused anyway.
    for recipient in mine {
        let (job, limit, stop) = (job.clone(), limit.clone(), stop.clone());
        let route = backends
            .route(&recipient)
            .map(|r| (r.backend.clone(), r.target_parts(&job)));
        running.spawn(async move {
            let _permit = limit.acquire_owned().await;
            if *stop.borrow() {
                return None;
            }
            Some(act(&job, &recipient, route).await)
        });
    }
    let action = match job.action {
        JobAction::Quarantine => job.removal.as_str(),
        JobAction::Restore { .. } => "restore",
        JobAction::Directory { .. } => "directory",
    };
    let mut first_error = None;
    while let Some(joined) = running.join_next().await {
        // Whatever else has finished meanwhile is recorded in the same entry: one commit per
        // wake-up rather than one per mailbox, while each result is still durable as soon
        // as the worker learns it.
        let mut outcomes = Vec::new();
        let mut next = Some(joined);
        while let Some(joined) = next {
            match joined {
                Ok(Some(outcome)) => outcomes.push(outcome),
                Ok(None) => {}
                Err(e) => tracing::error!(job = job.id, error = %e, "a mailbox task panicked"),
            }
            next = running.try_join_next();
        }
        if outcomes.is_empty() {
            continue;
        }
        for outcome in &outcomes {
            tracing::info!(
                job = job.id,
                action,
                recipient = %outcome.recipient,
                status = outcome.status.as_str(),
                details = %outcome.details,
                "recipient done"
            );
            node.metrics
                .recipient_outcomes
                .with_label_values(&[action, outcome.status.as_str()])
                .inc();
        }
        let command = Command::RecordOutcomes {
            job_id: job.id,
            outcomes,
            term,
            at: chrono::Utc::now(),
        };
        match node.propose_local(command).await {
            Ok(response) if response.refused.is_some() => {
                first_error.get_or_insert(anyhow::anyhow!(
                    "outcome refused: {}",
                    response.refused.unwrap_or_default()
                ));
            }
            Ok(_) => {}
            Err(e) => {
                first_error.get_or_insert(e.into());
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

type Routed = (
    Arc<dyn pullback_mailbox::MailboxBackend>,
    Option<pullback_mailbox::MessageTarget>,
);

async fn act(job: &QuarantineJob, recipient: &str, route: Option<Routed>) -> RecipientOutcome {
    let failed = |details: String| RecipientOutcome {
        recipient: recipient.to_owned(),
        status: RecipientStatus::Failed,
        details,
        is_read: None,
    };
    let Some((backend, target)) = route else {
        return failed(format!("no mailbox backend serves {recipient}"));
    };
    let Some(target) = target else {
        return failed("the job has no Message-ID to look the message up by".into());
    };
    use pullback_mailbox::Deletion;
    let mut outcome = match (&job.action, job.removal) {
        (JobAction::Quarantine, Removal::Quarantine) => {
            backend.quarantine(recipient, &target).await
        }
        (JobAction::Quarantine, Removal::SoftDelete) => {
            backend.delete(recipient, &target, Deletion::Soft).await
        }
        (JobAction::Quarantine, Removal::HardDelete) => {
            backend.delete(recipient, &target, Deletion::Hard).await
        }
        (JobAction::Restore { .. }, Removal::Quarantine) => {
            backend.restore(recipient, &target).await
        }
        (JobAction::Restore { .. }, Removal::SoftDelete) => {
            backend.restore_deleted(recipient, &target).await
        }
        (JobAction::Restore { .. }, Removal::HardDelete) => {
            return failed("a hard delete cannot be undone".into());
        }
        (JobAction::Directory { .. }, _) => {
            return RecipientOutcome {
                recipient: recipient.to_owned(),
                status: RecipientStatus::Failed,
                details: "a directory job reached the mailbox worker".into(),
                is_read: None,
            };
        }
    };
    outcome.recipient = recipient.to_owned();
    outcome
}

impl crate::backends::Route {
    fn target_parts(&self, job: &QuarantineJob) -> Option<pullback_mailbox::MessageTarget> {
        let id = job.message_id.clone()?;
        Some(self.target(id, job.fingerprint.clone()))
    }
}
