//! Matching alerts against match conditions.

use pullback_domain::{
    AlertDraft, DirectoryAction, DirectoryLookup, DirectoryRecord, MatchCondition, NoDirectory,
    Removal, Response,
};
use std::collections::BTreeMap;

/// What the match conditions decided for one alert.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    /// Names of the conditions that matched, in evaluation order.
    pub matched: Vec<String>,
    pub open_incident: bool,
    pub quarantine: bool,
    /// Quarantine is recorded, not performed.
    pub dry_run: bool,
    /// Recipients a matching condition excluded from any action.
    pub excluded: Vec<String>,
    /// Directory groups whose members a matching condition excluded from any action; checked
    /// again for the members of a distribution list when it is expanded.
    pub excluded_groups: Vec<String>,
    /// The directory changes matching conditions call for.
    pub directory_actions: Vec<DirectoryPlanItem>,
    /// How the message leaves the mailboxes: the strongest removal any matching condition
    /// asked for (a hard delete over a soft delete over a quarantine).
    pub removal: Removal,
}

/// One directory change a matching condition calls for, with the recipients it is for: those
/// of the alert's recipients that pass the condition's recipient filters (domains, groups,
/// object classes, attributes), so that "add targeted executives to a training group" never
/// enrols the clerk who got the same message.
#[derive(Clone, Debug, PartialEq)]
pub struct DirectoryPlanItem {
    pub condition: String,
    pub action: DirectoryAction,
    pub recipients: Vec<String>,
}

/// The directory records of an alert's recipients, looked up once.
struct Recipients<'a> {
    directory: &'a dyn DirectoryLookup,
    records: BTreeMap<String, Option<DirectoryRecord>>,
}

impl Recipients<'_> {
    fn record(&mut self, address: &str) -> Option<&DirectoryRecord> {
        let directory = self.directory;
        self.records
            .entry(address.to_owned())
            .or_insert_with(|| directory.lookup(address))
            .as_ref()
    }

    fn any(&mut self, alert: &AlertDraft, mut test: impl FnMut(&DirectoryRecord) -> bool) -> bool {
        alert
            .recipients
            .iter()
            .any(|r| self.record(r).is_some_and(&mut test))
    }
}

/// Evaluates every enabled condition in priority order (then by name, for a stable order),
/// without a directory.
pub fn evaluate(conditions: &[MatchCondition], source: &str, alert: &AlertDraft) -> Decision {
    evaluate_with(conditions, source, alert, &NoDirectory)
}

/// Evaluates every enabled condition, answering directory tests from `directory`.
pub fn evaluate_with(
    conditions: &[MatchCondition],
    source: &str,
    alert: &AlertDraft,
    directory: &dyn DirectoryLookup,
) -> Decision {
    let mut recipients = Recipients {
        directory,
        records: BTreeMap::new(),
    };
    let mut ordered: Vec<&MatchCondition> = conditions.iter().filter(|c| c.enabled).collect();
    ordered.sort_by(|a, b| {
        a.priority
            .cmp(&b.priority)
            .then_with(|| a.name.cmp(&b.name))
    });

    let mut decision = Decision::default();
    let mut real_quarantine = false;
    for condition in ordered {
        if !matches(condition, source, alert)
            || !directory_matches(condition, alert, &mut recipients)
        {
            continue;
        }
        decision.matched.push(condition.name.clone());
        decision.open_incident = true;
        for response in &condition.responses {
            match response {
                Response::Incident => {}
                Response::Quarantine => real_quarantine = true,
                Response::DryRunQuarantine => decision.quarantine = true,
                Response::SoftDelete => {
                    real_quarantine = true;
                    decision.removal = decision.removal.max(Removal::SoftDelete);
                }
                Response::HardDelete => {
                    real_quarantine = true;
                    decision.removal = decision.removal.max(Removal::HardDelete);
                }
            }
        }
        if !condition.directory_actions.is_empty() {
            let chosen: Vec<String> = alert
                .recipients
                .iter()
                .filter(|r| recipient_passes(condition, r, &mut recipients))
                .cloned()
                .collect();
            for action in &condition.directory_actions {
                decision.directory_actions.push(DirectoryPlanItem {
                    condition: condition.name.clone(),
                    action: action.clone(),
                    recipients: chosen.clone(),
                });
            }
        }
        for excluded in &condition.exclude_recipients {
            let excluded = excluded.trim().to_ascii_lowercase();
            if !decision.excluded.contains(&excluded) {
                decision.excluded.push(excluded);
            }
        }
        for group in &condition.exclude_recipient_groups {
            if !decision.excluded_groups.contains(group) {
                decision.excluded_groups.push(group.clone());
            }
            for recipient in &alert.recipients {
                let in_group = recipients
                    .record(recipient)
                    .is_some_and(|r| r.in_group(group));
                if in_group && !decision.excluded.contains(recipient) {
                    decision.excluded.push(recipient.clone());
                }
            }
        }
        if condition.stop {
            break;
        }
    }
    // A real quarantine from any condition wins over a dry run from another.
    decision.dry_run = decision.quarantine && !real_quarantine;
    decision.quarantine |= real_quarantine;
    decision
}

fn matches(condition: &MatchCondition, source: &str, alert: &AlertDraft) -> bool {
    let threats = &alert.threats;
    any_or_empty(&condition.sources, |s| s.eq_ignore_ascii_case(source))
        && (condition.kinds.is_empty() || condition.kinds.contains(&alert.kind))
        && any_or_empty(&condition.classifications, |c| {
            threats
                .iter()
                .any(|t| eq_folded(t.classification.as_deref(), c))
        })
        && any_or_empty(&condition.threat_statuses, |s| {
            threats.iter().any(|t| eq_folded(t.status.as_deref(), s))
        })
        && any_or_empty(&condition.threat_types, |k| {
            threats
                .iter()
                .any(|t| eq_folded(t.kind.as_ref().map(|k| k.as_str()), k))
        })
        && !excluded_sender(&condition.exclude_senders, alert.sender.as_deref())
        && any_or_empty(&condition.recipient_domains, |d| {
            let suffix = format!("@{}", d.trim().trim_start_matches('@').to_ascii_lowercase());
            alert.recipients.iter().any(|r| r.ends_with(&suffix))
        })
}

/// The directory filters: each passes when it is empty or when some recipient passes it.
fn directory_matches(
    condition: &MatchCondition,
    alert: &AlertDraft,
    recipients: &mut Recipients<'_>,
) -> bool {
    (condition.recipient_groups.is_empty()
        || recipients.any(alert, |r| {
            condition.recipient_groups.iter().any(|g| r.in_group(g))
        }))
        && (condition.recipient_object_classes.is_empty()
            || recipients.any(alert, |r| {
                condition
                    .recipient_object_classes
                    .iter()
                    .any(|c| r.has_class(c))
            }))
        && (condition.recipient_attributes.is_empty()
            || recipients.any(alert, |r| {
                condition.recipient_attributes.iter().all(|t| t.passes(r))
            }))
}

/// Whether one recipient passes every recipient filter of a condition on its own.
fn recipient_passes(
    condition: &MatchCondition,
    recipient: &str,
    recipients: &mut Recipients<'_>,
) -> bool {
    let in_domain = any_or_empty(&condition.recipient_domains, |d| {
        recipient.ends_with(&format!(
            "@{}",
            d.trim().trim_start_matches('@').to_ascii_lowercase()
        ))
    });
    let needs_record = !condition.recipient_groups.is_empty()
        || !condition.recipient_object_classes.is_empty()
        || !condition.recipient_attributes.is_empty();
    if !in_domain {
        return false;
    }
    if !needs_record {
        return true;
    }
    recipients.record(recipient).is_some_and(|r| {
        any_or_empty(&condition.recipient_groups, |g| r.in_group(g))
            && any_or_empty(&condition.recipient_object_classes, |c| r.has_class(c))
            && condition.recipient_attributes.iter().all(|t| t.passes(r))
    })
}

/// Whether the sender is an excluded address, or in an excluded `@domain`.
fn excluded_sender(excluded: &[String], sender: Option<&str>) -> bool {
    let Some(sender) = sender.map(str::to_ascii_lowercase) else {
        return false;
    };
    excluded.iter().any(|e| {
        let e = e.trim().to_ascii_lowercase();
        match e.strip_prefix('@') {
            Some(domain) => sender.ends_with(&format!("@{domain}")),
            None => sender == e,
        }
    })
}

fn any_or_empty(values: &[String], pred: impl Fn(&str) -> bool) -> bool {
    values.is_empty() || values.iter().any(|v| pred(v))
}

/// Compares a feed value with a configured one, ignoring case and the `_` in
/// `message_text`/`false_positive`, so that `messageText`, `MESSAGETEXT` and `message_text`
/// are one value.
fn eq_folded(value: Option<&str>, configured: &str) -> bool {
    let fold = |s: &str| {
        s.chars()
            .filter(|c| *c != '_')
            .collect::<String>()
            .to_lowercase()
    };
    value.is_some_and(|v| fold(v) == fold(configured))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excluded_senders_are_never_matched() {
        let excluded = [
            "sim@phish-training.example".to_owned(),
            "@simulator.example".to_owned(),
        ];
        assert!(excluded_sender(
            &excluded,
            Some("SIM@phish-training.example")
        ));
        assert!(excluded_sender(&excluded, Some("a@simulator.example")));
        assert!(!excluded_sender(&excluded, Some("a@notsimulator.example")));
        assert!(!excluded_sender(&excluded, None));
    }
    use pullback_domain::{AlertKind, Threat, ThreatKind};

    fn alert(kind: AlertKind, classification: &str, status: &str) -> AlertDraft {
        AlertDraft {
            kind,
            dedup_key: "id:1".into(),
            time: chrono::Utc::now(),
            message_id: None,
            subject: None,
            sender: None,
            recipients: vec!["a@corp.zz".into(), "soc@corp.zz".into()],
            threats: vec![Threat {
                kind: Some(ThreatKind::Url),
                classification: Some(classification.into()),
                status: Some(status.into()),
                ..Threat::default()
            }],
            notes: vec![],
            link: None,
            analysis: None,
            raw: serde_json::Value::Null,
        }
    }

    fn condition(toml_body: &str) -> MatchCondition {
        let mut c: MatchCondition = serde_json::from_str(toml_body).unwrap();
        if c.responses.is_empty() {
            c.responses.push(Response::Quarantine);
        }
        c
    }

    /// One case a line: the condition, the alert, and whether it quarantines.
    fn check(cond: &str, alert: &AlertDraft, quarantine: bool) {
        let decision = evaluate(&[condition(cond)], "tap", alert);
        assert_eq!(
            decision.quarantine, quarantine,
            "{cond} on {:?}",
            alert.kind
        );
    }

    #[test]
    fn the_strongest_removal_asked_for_wins() {
        let phish = alert(AlertKind::MessageDelivered, "phish", "active");
        let removal = |responses: &[&str]| {
            let conditions: Vec<MatchCondition> = responses
                .iter()
                .enumerate()
                .map(|(i, r)| condition(&format!(r#"{{"name":"c{i}","responses":["{r}"]}}"#)))
                .collect();
            let decision = evaluate(&conditions, "tap", &phish);
            assert!(decision.quarantine && !decision.dry_run, "{responses:?}");
            decision.removal
        };
        assert_eq!(removal(&["quarantine"]), Removal::Quarantine);
        assert_eq!(removal(&["soft_delete", "quarantine"]), Removal::SoftDelete);
        assert_eq!(
            removal(&["dry_run_quarantine", "hard_delete", "soft_delete"]),
            Removal::HardDelete
        );
    }

    #[test]
    fn filters_combine() {
        let delivered_phish = alert(AlertKind::MessageDelivered, "phish", "active");
        let delivered_spam = alert(AlertKind::MessageDelivered, "spam", "active");
        let fp = alert(AlertKind::MessageDelivered, "phish", "falsepositive");
        let click = alert(AlertKind::ClickPermitted, "malware", "active");
        let base = r#""name":"q","responses":["quarantine"]"#;
        check(&format!("{{{base}}}"), &delivered_spam, true);
        check(
            &format!(r#"{{{base},"sources":["TAP"]}}"#),
            &delivered_phish,
            true,
        );
        check(
            &format!(r#"{{{base},"sources":["other"]}}"#),
            &delivered_phish,
            false,
        );
        let phish_or_malware = r#""classifications":["PHISH","malware"]"#;
        check(
            &format!("{{{base},{phish_or_malware}}}"),
            &delivered_phish,
            true,
        );
        check(
            &format!("{{{base},{phish_or_malware}}}"),
            &delivered_spam,
            false,
        );
        check(
            &format!(r#"{{{base},"threat_statuses":["active"]}}"#),
            &fp,
            false,
        );
        check(
            &format!(r#"{{{base},"threat_statuses":["falsePositive"]}}"#),
            &fp,
            true,
        );
        check(
            &format!(r#"{{{base},"kinds":["message_delivered"]}}"#),
            &click,
            false,
        );
        check(
            &format!(r#"{{{base},"threat_types":["URL"]}}"#),
            &click,
            true,
        );
        check(
            &format!(r#"{{{base},"recipient_domains":["@corp.zz"]}}"#),
            &click,
            true,
        );
        check(
            &format!(r#"{{{base},"recipient_domains":["other.zz"]}}"#),
            &click,
            false,
        );
        check(
            &format!(r#"{{{base},"enabled":false}}"#),
            &delivered_phish,
            false,
        );
    }

    #[test]
    fn real_quarantine_wins_over_dry_run_and_stop_ends_evaluation() {
        let a = alert(AlertKind::MessageDelivered, "phish", "active");
        let dry = condition(r#"{"name":"a","priority":1,"responses":["dry_run_quarantine"]}"#);
        let real = condition(r#"{"name":"b","priority":2,"responses":["quarantine"]}"#);
        let d = evaluate(&[real.clone(), dry.clone()], "tap", &a);
        assert_eq!(d.matched, vec!["a", "b"]);
        assert!(d.quarantine && !d.dry_run);

        let mut stopping = dry.clone();
        stopping.stop = true;
        let d = evaluate(&[real, stopping], "tap", &a);
        assert_eq!(d.matched, vec!["a"]);
        assert!(d.quarantine && d.dry_run);
    }

    #[test]
    fn exclusions_are_collected() {
        let a = alert(AlertKind::MessageDelivered, "phish", "active");
        let c = condition(
            r#"{"name":"a","responses":["quarantine"],"exclude_recipients":["SOC@corp.zz"]}"#,
        );
        assert_eq!(evaluate(&[c], "tap", &a).excluded, vec!["soc@corp.zz"]);
    }

    #[test]
    fn directory_actions_go_to_the_recipients_that_passed_the_condition() {
        struct Groups;
        impl DirectoryLookup for Groups {
            fn lookup(&self, address: &str) -> Option<DirectoryRecord> {
                (address == "exec@corp.example").then(|| DirectoryRecord {
                    addresses: vec![address.to_owned()],
                    groups: vec!["executives".into()],
                    ..DirectoryRecord::default()
                })
            }
        }
        let condition = condition(
            r#"{"name": "execs", "recipient_groups": ["executives"], "responses": ["incident"],
                "directory_actions": [{"type": "add_to_group", "group": "training"}]}"#,
        );
        let mut alert = alert(AlertKind::MessageDelivered, "phish", "active");
        alert.recipients = vec!["clerk@corp.example".into(), "exec@corp.example".into()];
        let decision = evaluate_with(std::slice::from_ref(&condition), "tap", &alert, &Groups);
        assert_eq!(decision.directory_actions.len(), 1);
        assert_eq!(
            decision.directory_actions[0].recipients,
            ["exec@corp.example"]
        );
        // Without a directory nobody passes a group filter, and the condition does not match.
        let decision = evaluate_with(&[condition], "tap", &alert, &NoDirectory);
        assert!(decision.directory_actions.is_empty() && decision.matched.is_empty());
    }
}
