//! Abuse mailboxes on the leader: each cycle takes the reports waiting in the mailbox, finds
//! the reported message in each, analyses it (CLEAR), commits one alert per report with the
//! analysis, tells the reporter, and files the report away.
//!
//! A report is committed before it is filed away, so a failover between the two only means
//! the next leader takes it again and finds it a repeat (its key is a hash of the report's
//! bytes); replies go out only for reports that were new.

use crate::Node;
use crate::backends::Backends;
use pullback_clear::facts::MessageFacts;
use pullback_clear::verdict::{self, Disposition, Verdict};
use pullback_domain::{
    AbuseSpec, AlertDraft, AlertKind, Command, IntelKind, MessageId, RejectedEvent, ReplySpec,
    Threat, ThreatKind,
};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Polls one abuse mailbox until told to stop.
pub(crate) async fn poll(
    node: Arc<Node>,
    backends: Arc<Backends>,
    name: String,
    spec: AbuseSpec,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let started = chrono::Utc::now();
        let error = match cycle(&node, &backends, &name, &spec).await {
            Ok(()) => None,
            Err(e) => {
                tracing::warn!(source = %name, error = %e, "abuse mailbox cycle failed");
                node.metrics.source_errors.with_label_values(&[&name]).inc();
                Some(e)
            }
        };
        node.metrics.source_calls.with_label_values(&[&name]).inc();
        crate::scripts::record_run(&node, &name, started, error).await;
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(spec.interval_secs)) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn cycle(
    node: &Node,
    backends: &Backends,
    name: &str,
    spec: &AbuseSpec,
) -> Result<(), String> {
    let route = backends
        .route(&spec.mailbox)
        .ok_or_else(|| format!("no mailbox backend serves {}", spec.mailbox))?;
    let backend = &route.backend;
    let reports = backend
        .take_messages(&spec.mailbox, &spec.folder, spec.batch)
        .await?;
    let mut done = Vec::with_capacity(reports.len());
    for (id, bytes) in reports {
        let analysed = analyse_report(node, &bytes);
        let new = commit(node, name, &analysed).await?;
        if new && let (Some(reply), Some(found)) = (&spec.reply, &analysed.found) {
            reply_to_reporter(reply, &analysed, found).await;
        }
        done.push(id);
    }
    backend
        .file_away(&spec.mailbox, &spec.folder, &done, &spec.processed_folder)
        .await
}

/// A report, read and judged.
struct Analysed {
    /// A hash of the report's bytes: the same report taken twice is one alert.
    key: String,
    reporter: Option<String>,
    report_subject: Option<String>,
    report_message_id: Option<String>,
    found: Option<Found>,
    problems: Vec<String>,
}

struct Found {
    original: MessageFacts,
    found_as: String,
    verdict: Verdict,
}

fn analyse_report(node: &Node, bytes: &[u8]) -> Analysed {
    let report = pullback_clear::report::read_report(bytes);
    let key = format!("report:{}", hex::encode(Sha256::digest(bytes)));
    let reporter = report.reporter.as_ref().and_then(|m| m.address.clone());
    let found = report.original.map(|original| {
        let verdict = verdict::analyse(&original, &node.intelligence());
        Found {
            original,
            found_as: serde_json::to_value(report.found_as)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            verdict,
        }
    });
    Analysed {
        key,
        reporter,
        report_subject: report.report_subject,
        report_message_id: report.report_message_id,
        found,
        problems: report.problems,
    }
}

fn disposition_name(disposition: Disposition) -> &'static str {
    disposition.as_str()
}

/// Commits the report's alert, or its rejection when no reported message was found; returns
/// whether it was new.
async fn commit(node: &Node, name: &str, analysed: &Analysed) -> Result<bool, String> {
    let raw = serde_json::json!({
        "reporter": analysed.reporter,
        "report_subject": analysed.report_subject,
        "report_message_id": analysed.report_message_id,
        "found_as": analysed.found.as_ref().map(|f| f.found_as.clone()),
        "problems": analysed.problems,
    });
    let (drafts, rejected) = match &analysed.found {
        None => {
            let reason = format!(
                "report from {}: no reported message found: {}",
                analysed.reporter.as_deref().unwrap_or("an unknown sender"),
                if analysed.problems.is_empty() {
                    "nothing attached or forwarded".to_owned()
                } else {
                    analysed.problems.join("; ")
                }
            );
            let event = RejectedEvent {
                key: analysed.key.clone(),
                reason,
                raw,
            };
            (Vec::new(), vec![event])
        }
        Some(found) => (vec![draft(node, analysed, found, raw)], Vec::new()),
    };
    let command = Command::IngestAlerts {
        source: name.to_owned(),
        at: chrono::Utc::now(),
        drafts,
        rejected,
        checkpoint: None,
    };
    let response = node
        .propose_local(command)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(reason) = response.refused {
        return Err(format!("the state machine refused the report: {reason}"));
    }
    node.count_ingested(name, &response, u64::from(analysed.found.is_none()));
    Ok(!response.alerts.is_empty())
}

fn draft(node: &Node, analysed: &Analysed, found: &Found, raw: serde_json::Value) -> AlertDraft {
    let headers = &found.original.headers;
    let message_id = headers.message_id.as_deref().and_then(MessageId::parse);
    // Every mailbox known to hold the message: its visible recipients, the reporter, and the
    // recipients other sources reported for the same Message-ID.
    // FIXME: copies sent by Bcc to mailboxes no alert names are not found; a sweep of every
    // mailbox needs the directory (issue 9).
    let mut recipients: Vec<String> = headers
        .to
        .iter()
        .chain(&headers.cc)
        .filter_map(|m| m.address.clone())
        .chain(analysed.reporter.clone())
        .collect();
    if let Some(id) = &message_id
        && let Ok(alerts) = node.reader.alerts_by_message_id(id)
    {
        recipients.extend(alerts.into_iter().flat_map(|a| a.body.recipients));
    }
    recipients.sort();
    recipients.dedup();
    let verdict = &found.verdict;
    let disposition = disposition_name(verdict.disposition);
    let mut notes = analysed.problems.clone();
    notes.extend(verdict.problems.iter().cloned());
    if found.original.headers_lost {
        notes.push(
            "the report forwarded the message inline, which loses its original headers; the \
             analysis used what was left"
                .to_owned(),
        );
    }
    AlertDraft {
        kind: AlertKind::AbuseReport,
        dedup_key: analysed.key.clone(),
        // When the message says when it was sent; copies sent again are looked for around it.
        time: headers
            .date
            .as_deref()
            .and_then(|d| chrono::DateTime::parse_from_rfc2822(d.trim()).ok())
            .map_or_else(chrono::Utc::now, |d| d.to_utc()),
        message_id,
        subject: headers.subject.clone(),
        sender: headers.from.as_ref().and_then(|m| m.address.clone()),
        recipients,
        threats: vec![Threat {
            kind: Some(ThreatKind::MessageText),
            classification: Some(disposition.to_owned()),
            value: Some(verdict.summary.clone()),
            ..Threat::default()
        }],
        notes,
        link: None,
        analysis: serde_json::to_value(verdict).ok(),
        raw,
    }
}

/// Sends the acknowledgement and the verdict; a failure is logged, never fatal.
async fn reply_to_reporter(reply: &ReplySpec, analysed: &Analysed, found: &Found) {
    let Some(reporter) = &analysed.reporter else {
        return;
    };
    let config = pullback_mailbox::smtp::SmtpConfig {
        host: reply.host.clone(),
        port: reply.port,
        protocol: if reply.protocol == "lmtp" {
            pullback_mailbox::smtp::Protocol::Lmtp
        } else {
            pullback_mailbox::smtp::Protocol::Smtp
        },
        hello_name: "pullback".into(),
        timeout: Duration::from_secs(30),
    };
    let verdict = &found.verdict;
    let subject = found
        .original
        .headers
        .subject
        .clone()
        .unwrap_or_else(|| "(no subject)".into());
    let reasons: String = verdict
        .reasons
        .iter()
        .map(|r| format!("- {}: {}\n", r.item, r.text))
        .collect();
    let fill = |template: &str| {
        template
            .replace("{subject}", &subject)
            .replace("{disposition}", disposition_name(verdict.disposition))
            .replace("{score}", &verdict.score.to_string())
            .replace("{summary}", &verdict.summary)
            .replace("{reasons}", reasons.trim_end())
    };
    let from_address = pullback_domain::normalise_address(&reply.from).unwrap_or_default();
    let parent = analysed.report_message_id.as_deref();
    let texts = [
        (
            "ack",
            &reply.acknowledgement_subject,
            &reply.acknowledgement_body,
        ),
        ("verdict", &reply.verdict_subject, &reply.verdict_body),
    ];
    for (what, subject_template, body_template) in texts {
        let message_id = format!(
            "{what}.{}@pullback",
            &analysed.key["report:".len()..]
                .get(..24)
                .unwrap_or_default()
        );
        let message = pullback_mailbox::smtp::compose(
            &reply.from,
            reporter,
            &fill(subject_template),
            parent,
            &fill(body_template),
            &message_id,
        );
        if let Err(e) = pullback_mailbox::smtp::send(
            &config,
            &from_address,
            std::slice::from_ref(reporter),
            &message,
        )
        .await
        {
            tracing::warn!(reporter, what, error = %e, "reply to the reporter failed");
        }
    }
}

/// What the replicated state knows to be bad: the intelligence lists, and what threat feeds
/// condemned.
pub(crate) struct StoreIntelligence<'a> {
    reader: &'a pullback_store::Reader,
}

impl StoreIntelligence<'_> {
    fn lookup(&self, kind: IntelKind, raw: &str) -> Option<String> {
        let value = kind.normalise(raw)?;
        if let Ok(Some(entry)) = self.reader.intel(kind, &value) {
            return Some(format!("intelligence list {:?}", entry.list));
        }
        match self.reader.condemned_by(kind, &value) {
            Ok(Some(alert)) => Some(format!("a threat feed (alert {alert})")),
            _ => None,
        }
    }
}

impl verdict::Intelligence for StoreIntelligence<'_> {
    fn url_is_bad(&self, url: &str) -> Option<String> {
        self.lookup(IntelKind::Url, url)
    }

    fn domain_is_bad(&self, domain: &str) -> Option<String> {
        self.lookup(IntelKind::Domain, domain)
    }

    fn hash_is_bad(&self, sha256: &str) -> Option<String> {
        self.lookup(IntelKind::Sha256, sha256)
    }
}

impl Node {
    /// The intelligence CLEAR analysis consults on this node.
    pub(crate) fn intelligence(&self) -> StoreIntelligence<'_> {
        StoreIntelligence {
            reader: &self.reader,
        }
    }
}
