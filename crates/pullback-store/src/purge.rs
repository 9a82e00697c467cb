//! Purges: removing old incidents and alerts, a bounded piece per log entry.
//!
//! Every node applies the same entries, so every node removes the same items. What a removed
//! alert was indexed by is derived again from the alert and removed with it. Deduplication
//! keys stay (they are small), so an event a feed sends again after its alert was purged is
//! still recognised as a repeat; so do the daily counts, which are history.

use crate::apply::{Tx, state_name};
use crate::db::{Cf, StoreError, keys};
use pullback_domain::{Alert, CommandResponse, Incident, IncidentState, Removed, Timestamp};

/// Alerts newer than the cutoff by this much end the walk: ids follow the leader's clock,
/// which may step back a little between leaders, so the walk does not stop at the first
/// alert past the cutoff but at the first one well past it.
const CLOCK_SLACK: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

pub(crate) fn purge(
    tx: &mut Tx<'_>,
    closed_before: Timestamp,
    alerts_before: Timestamp,
    after_alert: u64,
    limit: u64,
) -> Result<CommandResponse, StoreError> {
    let limit = limit.clamp(1, 10_000);
    let mut removed = Removed::default();
    let mut incidents: std::collections::HashMap<u64, Option<Incident>> = Default::default();
    let mut last = after_alert;
    let mut finished = true;
    let db = tx.db();
    let mut iter = db.rocks().raw_iterator_cf(db.cf(Cf::State));
    iter.seek(keys::alert(after_alert.saturating_add(1)));
    while iter.valid() {
        let (Some(key), Some(value)) = (iter.key(), iter.value()) else {
            break;
        };
        if !key.starts_with(b"alert/") {
            break;
        }
        let alert: Alert = crate::db::decode(key, value)?;
        if alert.received_at >= alerts_before.max(closed_before) + CLOCK_SLACK {
            break;
        }
        if removed.alerts >= limit {
            finished = false;
            break;
        }
        last = alert.id;
        let goes = match alert.incident_id {
            None => alert.received_at < alerts_before,
            Some(id) => {
                let incident = match incidents.get(&id) {
                    Some(incident) => incident.clone(),
                    None => {
                        let incident = tx.get::<Incident>(Cf::State, &keys::incident(id))?;
                        incidents.insert(id, incident.clone());
                        incident
                    }
                };
                incident.is_some_and(|i| {
                    i.state == IncidentState::Closed && i.updated_at < closed_before
                })
            }
        };
        if goes {
            remove_alert(tx, &alert);
            removed.alerts += 1;
        }
        iter.next();
    }
    iter.status().map_err(|source| StoreError::Rocks {
        doing: "walking alerts to purge",
        source,
    })?;
    // The incidents whose alerts were all walked past go too, with their jobs.
    for (id, incident) in incidents {
        let Some(incident) = incident else { continue };
        let old = incident.state == IncidentState::Closed && incident.updated_at < closed_before;
        let all_walked = incident.alert_ids.iter().all(|a| *a <= last);
        if old && (all_walked || finished) {
            for job_id in &incident.job_ids {
                if tx
                    .get::<pullback_domain::QuarantineJob>(Cf::State, &keys::job(*job_id))?
                    .is_some()
                {
                    tx.delete(Cf::State, keys::job(*job_id));
                    tx.delete(Cf::Index, keys::queued(*job_id));
                    removed.jobs += 1;
                }
            }
            tx.delete(Cf::State, keys::incident(id));
            tx.delete(
                Cf::Index,
                keys::incident_state(state_name(incident.state), id),
            );
            removed.incidents += 1;
        }
    }
    removed.next = (!finished).then_some(last);
    Ok(CommandResponse {
        removed: Some(removed),
        ..CommandResponse::default()
    })
}

fn remove_alert(tx: &mut Tx<'_>, alert: &Alert) {
    for (field, term) in crate::search::alert_terms(alert) {
        tx.delete(Cf::Index, crate::search::term_key(field, &term, alert.id));
    }
    if let Some(message_id) = &alert.body.message_id {
        tx.delete(Cf::Index, keys::message(message_id.as_str(), alert.id));
    }
    tx.delete(Cf::State, keys::alert(alert.id));
}
