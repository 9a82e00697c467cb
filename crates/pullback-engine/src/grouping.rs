//! Grouping alerts into incidents.

use pullback_domain::{AlertDraft, IncidentLink};

/// The links through which an alert can join an open incident, strongest first: a campaign
/// ties together many messages, a threat the messages that carry it, a Message-ID the copies
/// of one message.
///
/// A source that names its own link (the JSON source's `link_attribute`) decides alone.
pub fn incident_links(alert: &AlertDraft) -> Vec<IncidentLink> {
    if let Some(link) = &alert.link {
        return vec![IncidentLink::Attribute(link.clone())];
    }
    let mut links = Vec::new();
    let mut push = |link: IncidentLink| {
        if !links.contains(&link) {
            links.push(link);
        }
    };
    for campaign in alert
        .threats
        .iter()
        .filter_map(|t| t.campaign_id.as_deref())
    {
        push(IncidentLink::Campaign(campaign.to_owned()));
    }
    for threat in &alert.threats {
        // Prefer the feed's id; a threat without one is known by its value.
        if let Some(key) = threat.id.as_deref().or(threat.value.as_deref()) {
            push(IncidentLink::Threat(key.to_owned()));
        }
    }
    if let Some(id) = &alert.message_id {
        push(IncidentLink::Message(id.clone()));
    }
    links
}

/// A title for a new incident, from what an analyst recognises first.
pub fn incident_title(alert: &AlertDraft) -> String {
    let classification = alert.classifications().first().map(|c| c.to_string());
    let subject = alert
        .subject
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let threat = alert
        .threats
        .iter()
        .find_map(|t| t.hostname.as_deref().or(t.value.as_deref()));
    let what = subject.or(threat).unwrap_or("message without subject");
    match classification {
        Some(c) => format!("{c}: {}", truncate(what, 120)),
        None => truncate(what, 120).to_owned(),
    }
}

fn truncate(s: &str, max_chars: usize) -> &str {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pullback_domain::{AlertKind, MessageId, Threat};

    #[test]
    fn links_are_ordered_and_unique() {
        let threat = |id: &str| Threat {
            id: Some(id.into()),
            campaign_id: Some("c1".into()),
            ..Threat::default()
        };
        let alert = AlertDraft {
            kind: AlertKind::MessageDelivered,
            dedup_key: "id:x".into(),
            time: chrono::Utc::now(),
            message_id: MessageId::parse("<m@x>"),
            subject: Some("Invoice".into()),
            sender: None,
            recipients: vec![],
            threats: vec![threat("t1"), threat("t2")],
            notes: vec![],
            link: None,
            analysis: None,
            raw: serde_json::Value::Null,
        };
        let keys: Vec<String> = incident_links(&alert)
            .iter()
            .map(|l| l.index_key())
            .collect();
        assert_eq!(
            keys,
            ["campaign:c1", "threat:t1", "threat:t2", "message:m@x"]
        );
        assert_eq!(incident_title(&alert), "Invoice");
    }

    #[test]
    fn titles_are_truncated_on_character_boundaries() {
        let long = "é".repeat(300);
        assert_eq!(truncate(&long, 120).chars().count(), 120);
    }
}
