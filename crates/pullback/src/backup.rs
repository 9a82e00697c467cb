//! `pullback backup`: take a backup through a running node, list backups, and restore one
//! into a stopped node.

use crate::cluster::{ApiClient, ApiOptions};
use anyhow::{Context, bail};
use clap::Subcommand;
use pullback_backup::{Progress, Stage, Target};
use pullback_node::config::Config;
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Subcommand)]
pub enum BackupCommand {
    /// Takes a backup on a running node (it keeps working meanwhile), follows it with a
    /// progress bar, and exits when it is verified (0) or failed (1).
    Create {
        #[command(flatten)]
        api: ApiOptions,
        /// The backup target's name, as configured on that node.
        #[arg(long)]
        target: String,
    },
    /// Lists backup runs and their state, newest first.
    List {
        #[command(flatten)]
        api: ApiOptions,
    },
    /// Restores a backup into this node's data folder, which must hold no store; the node
    /// must be stopped. It then starts a cluster of its own with the data; other nodes join
    /// it with `pullback cluster join`.
    Restore {
        /// The node's configuration: its data folder and backup targets.
        #[arg(long, short)]
        config: PathBuf,
        /// The backup target's name in that configuration.
        #[arg(long)]
        target: String,
        /// The backup's id (see `pullback backup list`, or the target's folders).
        #[arg(long)]
        id: String,
    },
}

pub async fn run(command: BackupCommand) -> anyhow::Result<()> {
    match command {
        BackupCommand::Create { api, target } => create(&api, &target).await,
        BackupCommand::List { api } => list(&api).await,
        BackupCommand::Restore { config, target, id } => restore(&config, &target, &id).await,
    }
}

/// A progress bar on standard error: `[#########-----------]  45% writing 1.2 / 2.6 GB`.
fn bar(percent: u64, stage: &str, done: u64, total: u64) {
    let filled = (percent.min(100) / 5) as usize;
    let gb = |b: u64| b as f64 / 1e9;
    let mut err = std::io::stderr();
    let _ = write!(
        err,
        "\r[{}{}] {percent:>3}% {stage:<12} {:.2} / {:.2} GB ",
        "#".repeat(filled),
        "-".repeat(20 - filled),
        gb(done),
        gb(total)
    );
    let _ = err.flush();
}

async fn create(options: &ApiOptions, target: &str) -> anyhow::Result<()> {
    let client = ApiClient::new(options)?;
    let started: Value = client
        .send(
            reqwest::Method::POST,
            "/api/v1/backups",
            Some(json!({ "target": target })),
        )
        .await?;
    let id = started["id"]
        .as_str()
        .context("the node gave no backup id")?
        .to_owned();
    eprintln!("backup {id} to {target}");
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let record: Value = client
            .send(reqwest::Method::GET, &format!("/api/v1/backups/{id}"), None)
            .await?;
        let number = |name: &str| record[name].as_u64().unwrap_or(0);
        let stage = record["stage"].as_str().unwrap_or("");
        bar(
            number("progress"),
            stage,
            number("done_bytes"),
            number("total_bytes"),
        );
        match record["state"].as_str() {
            Some("verified") => {
                eprintln!();
                println!(
                    "backup {id} verified: {} bytes, state as of log index {}, counts {}",
                    number("total_bytes"),
                    number("applied_index"),
                    record["counts"]
                );
                return Ok(());
            }
            Some("failed") => {
                eprintln!();
                bail!(
                    "backup {id} failed: {}",
                    record["error"].as_str().unwrap_or("no reason given")
                );
            }
            _ => {}
        }
    }
}

async fn list(options: &ApiOptions) -> anyhow::Result<()> {
    let client = ApiClient::new(options)?;
    let backups: Vec<Value> = client
        .send(reqwest::Method::GET, "/api/v1/backups", None)
        .await?;
    println!(
        "{:<24} {:<12} {:<10} {:>14} {:>10}  error",
        "id", "target", "state", "bytes", "index"
    );
    for b in backups {
        println!(
            "{:<24} {:<12} {:<10} {:>14} {:>10}  {}",
            b["id"].as_str().unwrap_or(""),
            b["target"].as_str().unwrap_or(""),
            b["state"].as_str().unwrap_or(""),
            b["total_bytes"].as_u64().unwrap_or(0),
            b["applied_index"].as_u64().unwrap_or(0),
            b["error"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

async fn restore(path: &Path, target_name: &str, id: &str) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let target_config = config
        .backup_targets
        .iter()
        .find(|t| t.name == target_name)
        .with_context(|| {
            format!(
                "{} defines no backup target {target_name:?}",
                path.display()
            )
        })?;
    let target = Target::new(&target_config.target)?;
    let store = config.node.store_dir();
    if store.join("CURRENT").exists() {
        bail!(
            "{} already holds a store; restore into a node whose data folder holds none \
             (stop the node and move {} away first)",
            store.display(),
            store.display()
        );
    }
    let cluster_dir = config.node.cluster_dir();
    std::fs::create_dir_all(&config.node.data_dir)
        .with_context(|| format!("cannot create {}", config.node.data_dir.display()))?;
    let scratch = config.node.data_dir.join(format!("restore-{id}"));
    let _ = std::fs::remove_dir_all(&scratch);
    let report = |p: Progress| {
        let stage = match p.stage {
            Stage::Writing => "writing",
            Stage::Verifying => "verifying",
            Stage::Fetching => "fetching",
        };
        let percent = (p.done_bytes * 100).checked_div(p.total_bytes).unwrap_or(0);
        bar(percent, stage, p.done_bytes, p.total_bytes);
    };
    let manifest = target
        .fetch(id, &scratch, &report)
        .await
        .with_context(|| format!("fetching backup {id} from {}", target.location()))?;
    eprintln!();
    if manifest.data_format > pullback_domain::versioned::DATA_FORMAT {
        let _ = std::fs::remove_dir_all(&scratch);
        bail!(
            "backup {id} was written by Pullback {} with data format {}; this Pullback ({}) \
             reads formats up to {}: restore it with the same or a newer version",
            manifest.pullback_version,
            manifest.data_format,
            env!("CARGO_PKG_VERSION"),
            pullback_domain::versioned::DATA_FORMAT
        );
    }
    // A node that already belongs to a cluster takes only that cluster's backups.
    if let Ok(pem) = std::fs::read_to_string(cluster_dir.join("ca.crt")) {
        let here = pullback_store::backup::cluster_identity(Some(&pem));
        if here != manifest.cluster {
            let _ = std::fs::remove_dir_all(&scratch);
            bail!(
                "backup {id} comes from another cluster ({}); this node belongs to {here}. \
                 Restore it on a node that has not joined a cluster",
                manifest.cluster
            );
        }
    }
    let checkpoint = scratch.clone();
    let store_dir = store.clone();
    // Every fetched file matched the verified backup's manifest (size and SHA-256), whose
    // counts and data format were checked against the checkpoint when it was written.
    let restored = tokio::task::spawn_blocking(move || {
        pullback_store::backup::restore_verified(&checkpoint, &store_dir)
    })
    .await?;
    let _ = std::fs::remove_dir_all(&scratch);
    let forgotten = restored?;
    if config.cluster.is_some() {
        // The restored node leads a new group of the same cluster: it holds the CA.
        let ca = {
            let (_log, _state, reader) = pullback_store::open(&store)?;
            reader.cluster_ca()?
        };
        if let Some(ca) = ca {
            let ca = pullback_cluster::ClusterCa::from_pem(&ca.cert_pem, &ca.key_pem.0)?;
            ca.write_to(&cluster_dir)?;
            pullback_node::cluster::mark_forced(&cluster_dir)
                .with_context(|| format!("cannot write into {}", cluster_dir.display()))?;
            let _ = std::fs::remove_file(cluster_dir.join("seeds.json"));
        }
    }
    println!(
        "restored backup {id} ({} from {}, data format {}, log index {}): {:?}; {} recipient(s) \
         left in progress were released",
        manifest.pullback_version,
        manifest.created_at.to_rfc3339(),
        manifest.data_format,
        forgotten
            .applied
            .map_or(manifest.applied_index, |l| l.index),
        manifest.counts,
        forgotten.released
    );
    println!(
        "next: start the node (pullback server --config {}); in a cluster, add the other \
         nodes with `pullback cluster token` and `pullback cluster join`",
        path.display()
    );
    Ok(())
}
