//! Incidents: alerts about the same threat or message, worked by an analyst as one case.

use crate::{MessageId, Timestamp};
use serde::{Deserialize, Serialize};

/// What ties an alert to an incident. An incident is indexed under every link of its first
/// alert, and later alerts join through any of theirs.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "by", content = "value", rename_all = "snake_case")]
pub enum IncidentLink {
    Campaign(String),
    Threat(String),
    Message(MessageId),
    /// A source-defined attribute, such as the JSON source's `link_attribute`.
    Attribute(String),
}

impl IncidentLink {
    /// The key under which the store indexes open incidents.
    pub fn index_key(&self) -> String {
        match self {
            IncidentLink::Campaign(c) => format!("campaign:{c}"),
            IncidentLink::Threat(t) => format!("threat:{t}"),
            IncidentLink::Message(m) => format!("message:{}", m.as_str()),
            IncidentLink::Attribute(a) => format!("attribute:{a}"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentState {
    Open,
    Closed,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comment {
    pub at: Timestamp,
    pub author: String,
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: u64,
    pub title: String,
    pub state: IncidentState,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub links: Vec<IncidentLink>,
    pub alert_ids: Vec<u64>,
    pub job_ids: Vec<u64>,
    /// Sources that contributed alerts, in order of arrival.
    pub sources: Vec<String>,
    /// Classifications seen across its alerts, lower case.
    pub classifications: Vec<String>,
    #[serde(default)]
    pub comments: Vec<Comment>,
}
