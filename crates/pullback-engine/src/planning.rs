//! Planning quarantines: which recipients of which message to act on.

use crate::Decision;
use pullback_domain::{
    AlertDraft, AlertKind, DirectoryKind, DirectoryLookup, MessageFingerprint, MessageId,
    NoDirectory, TimeWindow,
};

/// A quarantine the state machine should record as a job.
#[derive(Clone, Debug, PartialEq)]
pub struct JobPlan {
    pub message_id: Option<MessageId>,
    pub fingerprint: MessageFingerprint,
    pub dry_run: bool,
    /// Recipients to act on, each with the reason it cannot be acted on, if any. A recipient
    /// with a reason is recorded as failed at once, so the analyst sees why.
    pub recipients: Vec<(String, Option<String>)>,
}

/// Plans the quarantine an alert calls for, or `None` with nothing to do.
///
/// `already_planned` answers whether an earlier job already covers this message for this
/// recipient; such recipients are skipped, so two alerts about one message (the delivery and
/// a click, say) never pull it twice.
pub fn plan_quarantine(
    alert: &AlertDraft,
    decision: &Decision,
    already_planned: impl Fn(&MessageId, &str) -> bool,
) -> Option<JobPlan> {
    plan_quarantine_with(alert, decision, already_planned, &NoDirectory)
}

/// [`plan_quarantine`] with a directory: a recipient that is a distribution list is replaced
/// by its members (nested lists included), each of them subject to the same exclusions.
pub fn plan_quarantine_with(
    alert: &AlertDraft,
    decision: &Decision,
    already_planned: impl Fn(&MessageId, &str) -> bool,
    directory: &dyn DirectoryLookup,
) -> Option<JobPlan> {
    if !decision.quarantine {
        return None;
    }
    // A blocked message never reached a mailbox, so there is nothing to pull.
    if matches!(
        alert.kind,
        AlertKind::MessageBlocked | AlertKind::ClickBlocked
    ) {
        return None;
    }
    let missing_id = alert
        .message_id
        .is_none()
        .then(|| "the alert carries no Message-ID, so the message cannot be looked up".to_owned());
    let mut recipients = Vec::new();
    let mut expanded: Vec<String> = Vec::new();
    for recipient in &alert.recipients {
        match directory.lookup(recipient) {
            Some(list) if list.kind == Some(DirectoryKind::Group) && !list.members.is_empty() => {
                expanded.extend(list.members.iter().cloned());
            }
            _ => expanded.push(recipient.clone()),
        }
    }
    for recipient in &expanded {
        if decision.excluded.contains(recipient) {
            continue;
        }
        let excluded_by_group = !decision.excluded_groups.is_empty()
            && directory
                .lookup(recipient)
                .is_some_and(|r| decision.excluded_groups.iter().any(|g| r.in_group(g)));
        if excluded_by_group {
            continue;
        }
        if let Some(id) = &alert.message_id
            && already_planned(id, recipient)
        {
            continue;
        }
        if !recipients.iter().any(|(r, _)| r == recipient) {
            recipients.push((recipient.clone(), missing_id.clone()));
        }
    }
    if recipients.is_empty() {
        return None;
    }
    Some(JobPlan {
        message_id: alert.message_id.clone(),
        fingerprint: fingerprint_of(alert),
        dry_run: decision.dry_run,
        recipients,
    })
}

/// What besides the Message-ID identifies the message. A reported message also names its
/// sender, and copies sent again under other ids within a day of it are pulled too.
fn fingerprint_of(alert: &AlertDraft) -> MessageFingerprint {
    let subject = alert.subject.clone().filter(|s| !s.trim().is_empty());
    if alert.kind != AlertKind::AbuseReport {
        return MessageFingerprint {
            subject,
            ..MessageFingerprint::default()
        };
    }
    let sender = alert.sender.clone().filter(|s| s.contains('@'));
    let day = chrono::TimeDelta::days(1);
    let similar_within = (subject.is_some() && sender.is_some()).then(|| TimeWindow {
        since: alert.time - day,
        until: alert.time + day,
    });
    MessageFingerprint {
        subject,
        sender,
        similar_within,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(kind: AlertKind, message_id: Option<&str>, recipients: &[&str]) -> AlertDraft {
        AlertDraft {
            kind,
            dedup_key: "id:x".into(),
            time: chrono::Utc::now(),
            message_id: message_id.and_then(MessageId::parse),
            subject: Some("Invoice".into()),
            sender: Some("bad@evil.zz".into()),
            recipients: recipients.iter().map(|r| r.to_string()).collect(),
            threats: vec![],
            notes: vec![],
            link: None,
            analysis: None,
            raw: serde_json::Value::Null,
        }
    }

    fn quarantine() -> Decision {
        Decision {
            open_incident: true,
            quarantine: true,
            ..Decision::default()
        }
    }

    #[test]
    fn blocked_messages_and_non_matching_alerts_plan_nothing() {
        let blocked = alert(AlertKind::MessageBlocked, Some("<m@x>"), &["a@x"]);
        assert_eq!(plan_quarantine(&blocked, &quarantine(), |_, _| false), None);
        let delivered = alert(AlertKind::MessageDelivered, Some("<m@x>"), &["a@x"]);
        assert_eq!(
            plan_quarantine(&delivered, &Decision::default(), |_, _| false),
            None
        );
    }

    #[test]
    fn skips_excluded_and_already_planned_recipients() {
        let a = alert(
            AlertKind::MessageDelivered,
            Some("<m@x>"),
            &["a@x", "b@x", "soc@x", "a@x"],
        );
        let mut d = quarantine();
        d.excluded.push("soc@x".into());
        let plan = plan_quarantine(&a, &d, |_, r| r == "b@x").unwrap();
        assert_eq!(plan.recipients, vec![("a@x".to_owned(), None)]);
        assert!(plan_quarantine(&a, &d, |_, _| true).is_none());
    }

    #[test]
    fn missing_message_id_is_planned_as_a_recorded_failure() {
        let a = alert(AlertKind::MessageDelivered, None, &["a@x"]);
        let plan = plan_quarantine(&a, &quarantine(), |_, _| false).unwrap();
        assert!(
            plan.recipients[0]
                .1
                .as_deref()
                .unwrap()
                .contains("no Message-ID")
        );
    }

    #[test]
    fn a_reported_message_is_also_looked_for_under_other_ids_around_its_time() {
        let mut reported = alert(AlertKind::AbuseReport, Some("<m@x>"), &["a@x"]);
        let fingerprint = fingerprint_of(&reported);
        let window = fingerprint.similar_within.expect("a window");
        assert!(window.since < reported.time && reported.time < window.until);
        assert_eq!(fingerprint.sender.as_deref(), Some("bad@evil.zz"));
        reported.subject = None;
        assert_eq!(
            fingerprint_of(&reported).similar_within,
            None,
            "needs a subject"
        );
        let delivered = alert(AlertKind::MessageDelivered, Some("<m@x>"), &["a@x"]);
        let fingerprint = fingerprint_of(&delivered);
        assert_eq!(fingerprint.similar_within, None);
        assert_eq!(fingerprint.sender, None);
    }
}
