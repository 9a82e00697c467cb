//! A cluster of real `pullback` processes on loopback, built the way an operator builds one:
//! `cluster init` on node 1, then a join token and `cluster join` for each other node.
//!
//! Node K serves its API and Raft on 127.0.K.1. With `proxied`, peers reach node K's Raft
//! port through a [`FaultProxy`] on 127.0.K.2, so a test can cut links between nodes.

use super::fault_proxy::{FaultProxy, Faults, node_ip, proxy_ip};
use super::history::NodeDb;
use super::{ADMIN_KEY, Api, NodeConfig, Server, TAP_SECRET, free_port, wait_for};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// How the nodes of a test cluster are set up.
pub struct ClusterOptions<'a> {
    pub nodes: u64,
    /// Sources, mailboxes and keys, shared by every node.
    pub base: NodeConfig<'a>,
    /// Put a fault proxy in front of each node's Raft port.
    pub proxied: bool,
    /// Entries between snapshots (small values make lagging nodes catch up by snapshot).
    pub snapshot_logs: u64,
}

pub struct ClusterNode {
    pub id: u64,
    pub config: PathBuf,
    pub data_dir: PathBuf,
    pub api_base: String,
    pub server: Option<Server>,
    /// The `pullback` this node runs: this build unless a test upgraded it.
    pub binary: PathBuf,
    listen: SocketAddr,
    proxy: Option<FaultProxy>,
}

pub struct TestCluster {
    pub nodes: Vec<ClusterNode>,
    pub faults: Faults,
    /// An HTTPS client that trusts the cluster CA.
    pub client: reqwest::Client,
}

impl TestCluster {
    /// Creates the cluster and waits until every node is a voter.
    pub async fn start(options: ClusterOptions<'_>) -> TestCluster {
        let faults = Faults::new();
        let mut nodes = Vec::new();
        for id in 1..=options.nodes {
            let (api_port, raft_port) = (free_port(), free_port());
            let listen = SocketAddr::new(node_ip(id), api_port);
            let raft_listen = SocketAddr::new(node_ip(id), raft_port);
            let (proxy, advertise) = if options.proxied {
                let at = SocketAddr::new(proxy_ip(id), raft_port);
                let proxy = FaultProxy::start(at, raft_listen, &faults).await;
                let advertise = proxy.address();
                (Some(proxy), advertise)
            } else {
                (None, raft_listen)
            };
            let node_dir = options.base.dir.join(format!("node{id}"));
            std::fs::create_dir_all(&node_dir).expect("node folder");
            let data_dir = node_dir.join("data");
            let extra = format!(
                "[cluster]\nraft_listen = \"{raft_listen}\"\nraft_advertise = \"{advertise}\"\n\
                 snapshot_logs = {}\n",
                options.snapshot_logs
            );
            let text = options.base.text(id, &data_dir, listen, &extra);
            let config = node_dir.join("pullback.toml");
            std::fs::write(&config, text).expect("write config");
            nodes.push(ClusterNode {
                id,
                config,
                data_dir,
                api_base: format!("https://{listen}"),
                server: None,
                binary: PathBuf::from(env!("CARGO_BIN_EXE_pullback")),
                listen,
                proxy,
            });
        }

        run_cli(&["cluster", "init", "--config"], &nodes[0].config, &[]);
        let ca = std::fs::read(nodes[0].data_dir.join("cluster/ca.crt")).expect("cluster CA");
        let client = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA"))
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        let mut cluster = TestCluster {
            nodes,
            faults,
            client,
        };
        cluster.start_node(1).await;
        for id in 2..=options.nodes {
            cluster.join(id).await;
        }
        cluster
    }

    pub fn node(&self, id: u64) -> &ClusterNode {
        &self.nodes[(id - 1) as usize]
    }

    fn node_mut(&mut self, id: u64) -> &mut ClusterNode {
        &mut self.nodes[(id - 1) as usize]
    }

    /// Spends a fresh token for node `id`, starts it, and waits until it votes.
    pub async fn join(&mut self, id: u64) {
        let token = self.token().await;
        let peer = self.live_ids()[0];
        let peer = self.node(peer).api_base.clone();
        let config = self.node(id).config.clone();
        run_cli(
            &["cluster", "join", "--peer", &peer, "--config"],
            &config,
            &[("PULLBACK_JOIN_TOKEN", &token)],
        );
        self.start_node(id).await;
        let voter = wait_for(Duration::from_secs(60), || async {
            self.members()
                .await
                .iter()
                .any(|m| m["id"] == id && (m["role"] == "voter" || m["role"] == "leader"))
        })
        .await;
        assert!(voter, "node {id} did not become a voter:\n{}", self.logs());
    }

    /// A join token from any live node.
    pub async fn token(&self) -> String {
        for id in self.live_ids() {
            let (status, body) = self
                .api(id)
                .send(
                    reqwest::Method::POST,
                    "/api/v1/cluster/join-tokens",
                    json!({}),
                )
                .await;
            if status == 200 {
                return body["token"].as_str().expect("token").to_owned();
            }
        }
        panic!("no node issued a join token:\n{}", self.logs());
    }

    /// Starts (or restarts) node `id` and waits until it knows a leader.
    pub async fn start_node(&mut self, id: u64) {
        let (binary, config, base, client) = {
            let node = self.node(id);
            (
                node.binary.clone(),
                node.config.clone(),
                node.api_base.clone(),
                self.client.clone(),
            )
        };
        let server = Server::start_binary(&binary, &config, base, client).await;
        self.node_mut(id).server = Some(server);
    }

    /// Starts node `id` without waiting: a node restarting alone is not ready until a
    /// majority is back.
    pub fn launch(&mut self, id: u64) {
        let (binary, config, base) = {
            let node = self.node(id);
            (
                node.binary.clone(),
                node.config.clone(),
                node.api_base.clone(),
            )
        };
        self.node_mut(id).server = Some(Server::spawn_binary(&binary, &config, base));
    }

    /// Stops node `id`, and starts `binary` on its data in its place: an upgrade, or a
    /// downgrade.
    pub async fn replace_binary(&mut self, id: u64, binary: &Path) {
        self.stop(id);
        self.node_mut(id).binary = binary.to_path_buf();
        self.start_node(id).await;
    }

    /// SIGKILLs node `id`.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut server) = self.node_mut(id).server.take() {
            server.kill_9();
        }
    }

    /// Stops node `id` with SIGTERM and waits for it to exit.
    pub fn stop(&mut self, id: u64) {
        if let Some(mut server) = self.node_mut(id).server.take() {
            let pid = server.child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while std::time::Instant::now() < deadline {
                if matches!(server.child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            server.kill_9();
        }
    }

    pub fn stop_all(&mut self) {
        for id in 1..=self.nodes.len() as u64 {
            self.stop(id);
        }
    }

    pub fn live_ids(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|n| n.server.is_some())
            .map(|n| n.id)
            .collect()
    }

    /// An admin client of node `id`'s API.
    pub fn api(&self, id: u64) -> Api {
        Api {
            base: self.node(id).api_base.clone(),
            key: ADMIN_KEY.into(),
            client: self.client.clone(),
        }
    }

    /// Node `id`'s own status (no majority needed).
    pub async fn status(&self, id: u64) -> Option<Value> {
        let (status, body) = self.api(id).try_get("/api/v1/status").await?;
        (status == 200).then_some(body)
    }

    /// The leader that a live node other than `except` reports and that itself agrees.
    pub async fn leader(&self, except: Option<u64>) -> Option<u64> {
        for id in self.live_ids() {
            if Some(id) == except {
                continue;
            }
            let Some(status) = self.status(id).await else {
                continue;
            };
            let Some(leader) = status["leader"].as_u64() else {
                continue;
            };
            if Some(leader) == except || !self.live_ids().contains(&leader) {
                continue;
            }
            let Some(theirs) = self.status(leader).await else {
                continue;
            };
            if theirs["state"] == "leader" {
                return Some(leader);
            }
        }
        None
    }

    /// Waits for a leader other than `except`.
    pub async fn wait_for_leader(&self, except: Option<u64>) -> u64 {
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Some(leader) = self.leader(except).await {
                return leader;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no leader elected:\n{}", self.logs());
    }

    /// Members as the leader reports them.
    pub async fn members(&self) -> Vec<Value> {
        for id in self.live_ids() {
            let Some((status, body)) = self.api(id).try_get("/api/v1/cluster").await else {
                continue;
            };
            if status == 200 && body["from_leader"] == true {
                return body["members"].as_array().cloned().unwrap_or_default();
            }
        }
        Vec::new()
    }

    /// Waits until every live node has applied the same index as the leader's log end.
    pub async fn wait_converged(&self) -> bool {
        wait_for(Duration::from_secs(60), || async {
            let mut applied = Vec::new();
            for id in self.live_ids() {
                match self.status(id).await {
                    Some(status) => applied.push((
                        status["last_applied"].as_u64(),
                        status["last_log_index"].as_u64(),
                    )),
                    None => return false,
                }
            }
            let first = applied.first().and_then(|a| a.0);
            applied
                .iter()
                .all(|(a, last)| *a == first && *last == first)
        })
        .await
    }

    /// The stores of every node, for the history check (nodes must be stopped).
    pub fn stores(&self) -> Vec<NodeDb> {
        self.nodes
            .iter()
            .map(|n| NodeDb::new(n.id, n.data_dir.join("db")))
            .collect()
    }

    /// Removes node `id`'s data folder, certificate included: a lost disk.
    pub fn wipe(&mut self, id: u64) {
        self.kill(id);
        std::fs::remove_dir_all(&self.node(id).data_dir).expect("wipe data");
    }

    /// The proxy in front of node `id`'s Raft port.
    pub fn proxy(&self, id: u64) -> Option<&FaultProxy> {
        self.node(id).proxy.as_ref()
    }

    pub fn listen(&self, id: u64) -> SocketAddr {
        self.node(id).listen
    }

    /// The tail of every node's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            let dir = node.config.parent().expect("node folder");
            let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "log"))
                .collect();
            logs.sort();
            for log in logs {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let lines = std::env::var("PULLBACK_TEST_LOG_LINES")
                    .ok()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(25);
                let tail: Vec<&str> = text.lines().rev().take(lines).collect();
                out.push_str(&format!("--- node {} {}\n", node.id, log.display()));
                // A panic may be far above the tail; always show it and what follows it.
                let lines: Vec<&str> = text.lines().collect();
                for (at, line) in lines.iter().enumerate() {
                    if line.contains("panicked at") {
                        out.push_str("    (earlier) ");
                        out.push_str(&lines[at..(at + 4).min(lines.len())].join("\n    "));
                        out.push('\n');
                    }
                }
                for line in tail.into_iter().rev() {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut server) = node.server.take() {
                server.kill_9();
            }
        }
    }
}

/// Runs the `pullback` binary with `args` followed by `config`, and asserts success.
fn run_cli(args: &[&str], config: &Path, env: &[(&str, &str)]) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pullback"));
    command
        .args(args)
        .arg(config)
        .env("PULLBACK_TEST_TAP_SECRET", TAP_SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("run pullback");
    assert!(
        output.status.success(),
        "pullback {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
