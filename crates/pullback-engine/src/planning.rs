//! Planning quarantines: which recipients of which message to act on.

use crate::Decision;
use pullback_domain::{
    AlertDraft, AlertKind, DirectoryAction, DirectoryKind, DirectoryLookup, MessageFingerprint,
    MessageId, NoDirectory, Removal, TimeWindow,
};

/// A quarantine the state machine should record as a job.
#[derive(Clone, Debug, PartialEq)]
pub struct JobPlan {
    pub message_id: Option<MessageId>,
    pub fingerprint: MessageFingerprint,
    pub dry_run: bool,
    /// Quarantine, soft delete or hard delete.
    pub removal: Removal,
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
        removal: decision.removal,
        recipients,
    })
}

/// A directory change the state machine should record as a job.
#[derive(Clone, Debug, PartialEq)]
pub struct DirectoryPlan {
    pub action: DirectoryAction,
    /// The condition that asked for it.
    pub condition: String,
    /// People to change, each with the reason it cannot be done, if any (recorded as
    /// failed at once).
    pub recipients: Vec<(String, Option<String>)>,
}

/// Plans the directory changes a decision calls for: one plan per change, for the people
/// it is for. A distribution list is replaced by its members, excluded recipients and
/// members of excluded groups are left out, and an address the directory does not know is
/// recorded as failed with why (there is no entry to change).
pub fn plan_directory(decision: &Decision, directory: &dyn DirectoryLookup) -> Vec<DirectoryPlan> {
    let mut plans = Vec::new();
    for item in &decision.directory_actions {
        let problem = item.action.problem();
        let mut people: Vec<String> = Vec::new();
        for recipient in &item.recipients {
            match directory.lookup(recipient) {
                Some(list) if list.kind == Some(DirectoryKind::Group) => {
                    people.extend(list.members.iter().cloned());
                }
                _ => people.push(recipient.clone()),
            }
        }
        let mut recipients: Vec<(String, Option<String>)> = Vec::new();
        for person in people {
            let record = directory.lookup(&person);
            let excluded = decision.excluded.contains(&person)
                || record
                    .as_ref()
                    .is_some_and(|r| decision.excluded_groups.iter().any(|g| r.in_group(g)));
            if excluded || recipients.iter().any(|(r, _)| *r == person) {
                continue;
            }
            let unworkable = problem.clone().or_else(|| {
                record.is_none().then(|| {
                    format!("{person} has no entry in the imported directory, so none can change")
                })
            });
            recipients.push((person, unworkable));
        }
        if !recipients.is_empty() {
            plans.push(DirectoryPlan {
                action: item.action.clone(),
                condition: item.condition.clone(),
                recipients,
            });
        }
    }
    plans
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

    /// A directory held in a map, for tests.
    struct Map(Vec<pullback_domain::DirectoryRecord>);

    impl DirectoryLookup for Map {
        fn lookup(&self, address: &str) -> Option<pullback_domain::DirectoryRecord> {
            self.0
                .iter()
                .find(|r| r.addresses.iter().any(|a| a == address))
                .cloned()
        }
    }

    fn person(address: &str, groups: &[&str]) -> pullback_domain::DirectoryRecord {
        pullback_domain::DirectoryRecord {
            dn: format!("uid={address}"),
            kind: Some(DirectoryKind::Person),
            addresses: vec![address.to_owned()],
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn directory_changes_are_planned_for_the_people_each_condition_picked() {
        let directory = Map(vec![
            person("exec@x", &["executives"]),
            person("clerk@x", &[]),
            person("soc@x", &["security"]),
            pullback_domain::DirectoryRecord {
                dn: "cn=board".into(),
                kind: Some(DirectoryKind::Group),
                addresses: vec!["board@x".into()],
                members: vec!["exec@x".into(), "soc@x".into(), "chair@x".into()],
                ..Default::default()
            },
        ]);
        let enrol = DirectoryAction::AddToGroup {
            group: "training".into(),
        };
        let decision = Decision {
            open_incident: true,
            excluded_groups: vec!["security".into()],
            directory_actions: vec![crate::DirectoryPlanItem {
                condition: "execs".into(),
                action: enrol.clone(),
                recipients: vec!["board@x".into(), "exec@x".into()],
            }],
            ..Decision::default()
        };
        let plans = plan_directory(&decision, &directory);
        assert_eq!(plans.len(), 1);
        assert_eq!(
            (&plans[0].action, plans[0].condition.as_str()),
            (&enrol, "execs")
        );
        // The list is expanded, its excluded member left out, each person once, and a member
        // the directory does not know recorded as failed with why.
        let people: Vec<(&str, bool)> = plans[0]
            .recipients
            .iter()
            .map(|(r, problem)| (r.as_str(), problem.is_some()))
            .collect();
        assert_eq!(people, [("exec@x", false), ("chair@x", true)]);
        assert!(
            plans[0].recipients[1]
                .1
                .as_deref()
                .unwrap()
                .contains("no entry")
        );

        // An action that cannot be taken as written fails for everyone, visibly.
        let mut bad = decision.clone();
        bad.directory_actions[0].action = DirectoryAction::SetAttribute {
            attribute: "not an attribute".into(),
            values: vec![],
        };
        let plans = plan_directory(&bad, &directory);
        assert!(plans[0].recipients.iter().all(|(_, p)| p.is_some()));
        assert!(plan_directory(&Decision::default(), &directory).is_empty());
    }
}
