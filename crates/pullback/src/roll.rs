//! `pullback cluster upgrade`: a rolling upgrade of an appliance cluster through the API.
//!
//! One node at a time, followers first and the leader last, so a quorum stays up: upload the
//! IMG to the node (`POST /api/v1/appliance/upgrade`), wait until its trial boot confirmed
//! itself, then until the cluster has a leader and every member caught up, and only then go
//! on. The first node that refuses the image, fails or falls back stops the roll; the nodes
//! after it are not touched, and running the command again skips the nodes already upgraded.
//! Once every node confirmed, the roll finalizes the upgrade: the cluster's command level
//! rises to the new release's, and the commands it added may be used.

use crate::cluster::ApiClient;
use anyhow::{Context, bail};
use pullback_node::cluster::{ClusterStatus, MemberStatus};
use std::path::Path;
use std::time::{Duration, Instant};

/// How far behind the leader's log a member may be and still count as caught up.
const CAUGHT_UP: u64 = 64;

/// How often a node's progress is asked.
const POLL: Duration = Duration::from_secs(3);

/// The members in the order they are upgraded: followers by id, then the leader.
pub(crate) fn order(status: &ClusterStatus) -> Vec<MemberStatus> {
    let mut members = status.members.clone();
    members.sort_by_key(|m| (Some(m.id) == status.leader, m.id));
    members
}

/// Whether the cluster is whole: a leader that answered, and every member caught up.
fn settled(status: &ClusterStatus) -> Result<(), String> {
    if !status.from_leader || status.leader.is_none() {
        return Err("no leader answers".into());
    }
    for member in &status.members {
        match member.lag {
            Some(lag) if lag <= CAUGHT_UP => {}
            Some(lag) => return Err(format!("node {} is {lag} entries behind", member.id)),
            None => return Err(format!("node {}'s progress is unknown", member.id)),
        }
    }
    Ok(())
}

pub(crate) async fn run(
    client: &ApiClient,
    file: &Path,
    node_timeout: Duration,
) -> anyhow::Result<()> {
    let manifest = pullback_appliance::img::read_manifest(file)
        .with_context(|| format!("{} is not an upgrade image", file.display()))?;
    let version = manifest.version;
    let status: ClusterStatus = client
        .send(reqwest::Method::GET, "/api/v1/cluster", None)
        .await?;
    if let Err(why) = settled(&status) {
        bail!("the cluster is not ready for a rolling upgrade: {why}");
    }
    let members = order(&status);
    println!(
        "upgrading {} nodes to {version}, one at a time: {}",
        members.len(),
        members
            .iter()
            .map(|m| format!("node {}", m.id))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for member in members {
        let node = client.at(&member.api);
        let now: serde_json::Value = node
            .send(reqwest::Method::GET, "/api/v1/appliance/upgrade", None)
            .await
            .with_context(|| format!("node {}", member.id))?;
        if now["running"]["version"].as_str() == Some(version.as_str()) {
            println!("node {}: already runs {version}", member.id);
            continue;
        }
        println!("node {}: uploading {}", member.id, file.display());
        node.upload("/api/v1/appliance/upgrade", file)
            .await
            .with_context(|| {
                format!(
                    "node {}: the upload failed; this node was not changed",
                    member.id
                )
            })?;
        wait_confirmed(&node, member.id, &version, node_timeout).await?;
        wait_settled(client, &node, member.id, node_timeout).await?;
        println!("node {}: {version} confirmed and caught up", member.id);
    }
    println!("every node runs {version}");
    crate::cluster::finalize(client).await
}

/// Follows the node's upgrade until its trial boot confirmed itself; fails on anything else.
async fn wait_confirmed(
    node: &ApiClient,
    id: u64,
    version: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut shown = String::new();
    loop {
        tokio::time::sleep(POLL).await;
        // While it writes the slot and reboots, the node does not answer.
        let answer: anyhow::Result<serde_json::Value> = node
            .send(reqwest::Method::GET, "/api/v1/appliance/upgrade", None)
            .await;
        if let Ok(answer) = answer {
            let last = &answer["last"];
            let state = last["state"].as_str().unwrap_or("");
            let message = last["message"].as_str().unwrap_or("");
            if state != shown {
                println!("node {id}: {state}: {message}");
                shown = state.to_owned();
            }
            match state {
                "confirmed" if last["version"].as_str() == Some(version) => return Ok(()),
                "refused" | "failed" | "fellback" => bail!(
                    "node {id}: {state}: {message}; the roll stops here, the nodes after it \
                     were not touched"
                ),
                _ => {}
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "node {id} did not confirm {version} within {} s; the roll stops here",
                timeout.as_secs()
            );
        }
    }
}

/// Waits until the cluster, asked through the node or the first address, is whole again.
async fn wait_settled(
    first: &ApiClient,
    node: &ApiClient,
    id: u64,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut why = String::new();
    while Instant::now() < deadline {
        for client in [node, first] {
            let status: anyhow::Result<ClusterStatus> = client
                .send(reqwest::Method::GET, "/api/v1/cluster", None)
                .await;
            match status.map(|s| settled(&s)) {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(reason)) => why = reason,
                Err(e) => why = format!("{e:#}"),
            }
        }
        tokio::time::sleep(POLL).await;
    }
    bail!("after node {id}'s upgrade the cluster did not settle: {why}; the roll stops here")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, lag: Option<u64>) -> MemberStatus {
        MemberStatus {
            id,
            role: "voter".into(),
            raft: String::new(),
            api: String::new(),
            matched: None,
            lag,
            release: None,
        }
    }

    fn status(leader: Option<u64>, members: Vec<MemberStatus>) -> ClusterStatus {
        ClusterStatus {
            answered_by: 1,
            from_leader: true,
            leader,
            term: 3,
            last_log_index: Some(100),
            applied: Some(100),
            level: 1,
            members,
        }
    }

    #[test]
    fn followers_go_first_and_the_leader_last() {
        let view = status(
            Some(2),
            vec![member(3, Some(0)), member(2, Some(0)), member(1, Some(0))],
        );
        let ids: Vec<u64> = order(&view).iter().map(|m| m.id).collect();
        assert_eq!(ids, [1, 3, 2]);
    }

    #[test]
    fn a_lagging_member_or_a_missing_leader_holds_the_roll() {
        assert_eq!(
            settled(&status(
                Some(1),
                vec![member(1, Some(0)), member(2, Some(3))]
            )),
            Ok(())
        );
        let behind = settled(&status(
            Some(1),
            vec![member(1, Some(0)), member(2, Some(500))],
        ));
        assert!(behind.unwrap_err().contains("node 2 is 500 entries behind"));
        let unknown = settled(&status(Some(1), vec![member(1, Some(0)), member(2, None)]));
        assert!(unknown.unwrap_err().contains("node 2"));
        assert!(settled(&status(None, vec![member(1, Some(0))])).is_err());
    }
}
