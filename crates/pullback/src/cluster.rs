//! `pullback cluster`: create a cluster, admit nodes, take them out, and show its state.
//!
//! `init` and `join` prepare a node's data folder before its first start; `token`, `status`
//! and `remove` are clients of a running node's API.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use pullback_cluster::{ClusterCa, NodeIdentity};
use pullback_node::cluster::write_seeds;
use pullback_node::config::Config;
use pullback_node::{Admission, ClusterStatus, JoinRequest, JoinToken};
use pullback_store::Member;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Creates a new cluster with this node as its first member: the cluster CA and this
    /// node's certificate, in <data_dir>/cluster. Then start the node with `pullback server`.
    Init {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Prepares this node to join a running cluster: spends a join token at a member, which
    /// issues this node's certificate. Then start the node with `pullback server`; it asks to
    /// be added and becomes a voter once it has caught up.
    Join {
        #[arg(long, short)]
        config: PathBuf,
        /// A token from `pullback cluster token`.
        #[arg(long, env = "PULLBACK_JOIN_TOKEN", hide_env_values = true)]
        token: String,
        /// The API of any member, such as https://10.0.0.1:8480.
        #[arg(long)]
        peer: String,
    },
    /// Recovery after losing a majority for good: makes this stopped node forget its group
    /// and start a new one alone with all its data. Never start the old nodes again.
    ForceNewCluster {
        #[arg(long, short)]
        config: PathBuf,
        /// Confirms that the other members are gone for good.
        #[arg(long)]
        yes: bool,
    },
    /// Prints a one-time token that admits one node.
    Token {
        #[command(flatten)]
        api: ApiOptions,
        /// Minutes until the token expires.
        #[arg(long, default_value_t = 60)]
        ttl_minutes: u64,
    },
    /// Shows members, roles, the leader, the term, applied indexes and replication lag.
    Status {
        #[command(flatten)]
        api: ApiOptions,
        #[arg(long)]
        json: bool,
    },
    /// Upgrades every node of an appliance cluster to FILE.img through the API, one node at
    /// a time, followers first and the leader last; each next node only once the previous one
    /// confirmed its trial boot and the cluster caught up. Stops at the first node that
    /// refuses the image or falls back; run it again to go on (upgraded nodes are skipped).
    Upgrade {
        #[command(flatten)]
        api: ApiOptions,
        /// The signed upgrade image.
        file: PathBuf,
        /// How long one node may take from upload to confirmed and caught up.
        #[arg(long, default_value_t = 1800)]
        node_timeout_secs: u64,
    },
    /// Ends an upgrade of every node: raises the cluster's command level to what every
    /// member's release applies, so the commands new in that release may be used. Before it,
    /// nodes may still go back to the previous release; after it, that release no longer
    /// starts on this cluster. `cluster upgrade` does this once every node confirmed.
    Finalize {
        #[command(flatten)]
        api: ApiOptions,
    },
    /// Takes a node out of the cluster.
    Remove {
        #[command(flatten)]
        api: ApiOptions,
        /// The node id to remove.
        id: u64,
    },
}

/// How to reach a node's API.
#[derive(Args)]
pub(crate) struct ApiOptions {
    /// A node's configuration: its API address and the cluster CA are taken from it.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The API base URL, such as https://10.0.0.1:8480 (instead of --config).
    #[arg(long)]
    api: Option<String>,
    /// The CA certificate to trust for the API (default: the cluster CA of --config).
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// A file holding an API key; or set PULLBACK_API_KEY.
    #[arg(long)]
    api_key_file: Option<PathBuf>,
}

pub async fn run(command: ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Init { config } => init(&config),
        ClusterCommand::Join {
            config,
            token,
            peer,
        } => join(&config, &token, &peer).await,
        ClusterCommand::ForceNewCluster { config, yes } => force_new_cluster(&config, yes),
        ClusterCommand::Token { api, ttl_minutes } => {
            let client = ApiClient::new(&api)?;
            let body = serde_json::json!({ "ttl_minutes": ttl_minutes });
            let answer: serde_json::Value = client
                .send(
                    reqwest::Method::POST,
                    "/api/v1/cluster/join-tokens",
                    Some(body),
                )
                .await?;
            let token = answer["token"]
                .as_str()
                .context("the answer has no token")?;
            println!("{token}");
            eprintln!(
                "This token admits one node and expires in {ttl_minutes} minutes. On the new node:\n  \
                 PULLBACK_JOIN_TOKEN=<token> pullback cluster join --config <its config> --peer {}",
                client.base
            );
            Ok(())
        }
        ClusterCommand::Status { api, json } => {
            let client = ApiClient::new(&api)?;
            let status: ClusterStatus = client
                .send(reqwest::Method::GET, "/api/v1/cluster", None)
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print_status(&status);
            }
            Ok(())
        }
        ClusterCommand::Upgrade {
            api,
            file,
            node_timeout_secs,
        } => {
            let client = ApiClient::new(&api)?;
            crate::roll::run(&client, &file, Duration::from_secs(node_timeout_secs)).await
        }
        ClusterCommand::Finalize { api } => {
            let client = ApiClient::new(&api)?;
            finalize(&client).await
        }
        ClusterCommand::Remove { api, id } => {
            let client = ApiClient::new(&api)?;
            let path = format!("/api/v1/cluster/members/{id}");
            client
                .send_no_answer(reqwest::Method::DELETE, &path)
                .await?;
            println!("node {id} removed from the cluster");
            Ok(())
        }
    }
}

fn cluster_section(config: &Config) -> anyhow::Result<&pullback_node::config::ClusterSection> {
    config.cluster.as_ref().context(
        "the configuration has no [cluster] section; add one with raft_listen (see docs/cluster.md)",
    )
}

/// Refuses to overwrite a node that already has an identity or data.
fn check_fresh(config: &Config) -> anyhow::Result<()> {
    let cluster_dir = config.node.cluster_dir();
    if cluster_dir.join("node.crt").exists() {
        bail!(
            "{} already holds a cluster identity; this node is already part of a cluster",
            cluster_dir.display()
        );
    }
    let store = config.node.store_dir();
    if store.exists() && std::fs::read_dir(&store).is_ok_and(|mut d| d.next().is_some()) {
        bail!(
            "{} already holds data; a node joins or creates a cluster only with an empty store",
            store.display()
        );
    }
    Ok(())
}

fn init(path: &Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let cluster = cluster_section(&config)?;
    check_fresh(&config)?;
    let names = cluster.certificate_names(config.node.listen);
    let ca = ClusterCa::generate("pullback")?;
    let identity = ca.issue_node(config.node.id, &names)?;
    let dir = config.node.cluster_dir();
    ca.write_to(&dir)?;
    identity.write_to(&dir)?;
    println!(
        "cluster created; node {} holds its CA in {}",
        config.node.id,
        dir.display()
    );
    println!("certificate names: {}", names.join(", "));
    println!(
        "CA fingerprint (SHA-256): {}",
        pullback_cluster::fingerprint(ca.cert_pem())?
    );
    println!(
        "next: start this node (pullback server --config {}), then run `pullback cluster token` \
         for each node to add",
        path.display()
    );
    Ok(())
}

async fn join(path: &Path, token: &str, peer: &str) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let cluster = cluster_section(&config)?;
    check_fresh(&config)?;
    let token = JoinToken::parse(token).map_err(anyhow::Error::msg)?;
    let peer = peer.trim_end_matches('/');

    // The CA is fetched without trusting anything, then pinned by the token's fingerprint;
    // only then is the token's secret sent, over TLS that the pinned CA vouches for.
    let insecure = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(15))
        .build()?;
    let ca_pem = insecure
        .get(format!("{peer}/api/v1/cluster/ca"))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .with_context(|| format!("cannot fetch the cluster CA from {peer}"))?
        .text()
        .await?;
    let fingerprint = pullback_cluster::fingerprint(&ca_pem)?;
    if fingerprint != token.ca_fingerprint {
        bail!(
            "{peer} presents a cluster CA with fingerprint {fingerprint}, not the {} the token \
             names: this is not the cluster that issued the token",
            token.ca_fingerprint
        );
    }
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes())?)
        .timeout(Duration::from_secs(60))
        .build()?;
    let request = JoinRequest {
        token: token.to_string(),
        node_id: config.node.id,
        member: Member {
            raft: cluster.raft_address(),
            api: cluster.api_address(config.node.listen),
        },
        names: cluster.certificate_names(config.node.listen),
    };
    let response = client
        .post(format!("{peer}/api/v1/cluster/join"))
        .json(&request)
        .send()
        .await
        .with_context(|| format!("cannot reach {peer}"))?;
    if !response.status().is_success() {
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        bail!(
            "{peer} refused the join ({status}): {}",
            body["error"].as_str().unwrap_or("no reason given")
        );
    }
    let admission: Admission = response.json().await?;
    let identity = NodeIdentity {
        cert_pem: admission.cert_pem,
        key_pem: admission.key_pem,
        ca_pem: admission.ca_pem,
    };
    let dir = config.node.cluster_dir();
    identity.write_to(&dir)?;
    write_seeds(&dir, &admission.seeds)
        .with_context(|| format!("cannot write the seeds into {}", dir.display()))?;
    println!(
        "node {} admitted; its certificate is in {}",
        config.node.id,
        dir.display()
    );
    println!(
        "next: pullback server --config {} (it asks to be added, catches up, then votes)",
        path.display()
    );
    Ok(())
}

fn force_new_cluster(path: &Path, yes: bool) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    cluster_section(&config)?;
    if !yes {
        bail!(
            "this makes node {} a cluster of one with the data it has, and the other members \
             must never run again; run with --yes once they are gone for good \
             (see docs/cluster.md, \"Recovering from the loss of a majority\")",
            config.node.id
        );
    }
    let store = config.node.store_dir();
    let dir = config.node.cluster_dir();
    // The new group is created by the node that holds the CA key: this one, from now on.
    let ca = {
        let (_log, _state, reader) = pullback_store::open(&store).with_context(|| {
            format!(
                "cannot open {} (is the node still running?)",
                store.display()
            )
        })?;
        reader
            .cluster_ca()?
            .context("this node's state holds no cluster CA; it never was part of a cluster")?
    };
    let ca = ClusterCa::from_pem(&ca.cert_pem, &ca.key_pem.0)?;
    let forgotten = pullback_store::forget_group(&store)?;
    ca.write_to(&dir)?;
    pullback_node::cluster::mark_forced(&dir)
        .with_context(|| format!("cannot write into {}", dir.display()))?;
    let _ = std::fs::remove_file(dir.join("seeds.json"));
    println!(
        "node {} forgot its old cluster; its state is kept as of log index {} and {} \
         recipient(s) left in progress were released for the new leader",
        config.node.id,
        forgotten.applied.map_or(0, |l| l.index),
        forgotten.released
    );
    println!(
        "next: start it (pullback server --config {}), then add new nodes with \
         `pullback cluster token` and `pullback cluster join`; wipe the old nodes",
        path.display()
    );
    Ok(())
}

/// Raises the cluster's command level as far as every member allows, and says so.
pub(crate) async fn finalize(client: &ApiClient) -> anyhow::Result<()> {
    let answer: serde_json::Value = client
        .send(reqwest::Method::POST, "/api/v1/cluster/finalize", None)
        .await
        .context("the upgrade could not be finalized")?;
    let level = answer["level"].as_u64().unwrap_or_default();
    if answer["raised"].as_bool() == Some(true) {
        println!("the cluster now runs at command level {level}");
    } else {
        println!(
            "the cluster already runs at command level {level}, the newest every node applies"
        );
    }
    Ok(())
}

fn print_status(status: &ClusterStatus) {
    let leader = status
        .leader
        .map_or("none".to_owned(), |id| format!("node {id}"));
    println!(
        "leader: {leader}   term: {}   last log index: {}   applied: {}   command level: {}",
        status.term,
        status.last_log_index.unwrap_or(0),
        status.applied.unwrap_or(0),
        status.level
    );
    if !status.from_leader {
        println!(
            "(answered by node {}, which cannot reach the leader; lag unknown)",
            status.answered_by
        );
    }
    println!(
        "{:>4}  {:<8}  {:<24}  {:<32}  {:>8}  {:>6}  {:<16}",
        "id", "role", "raft", "api", "matched", "lag", "release (level)"
    );
    for member in &status.members {
        let show = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
        let release = member
            .release
            .as_ref()
            .map_or("-".to_owned(), |r| format!("{} ({})", r.version, r.level));
        println!(
            "{:>4}  {:<8}  {:<24}  {:<32}  {:>8}  {:>6}  {:<16}",
            member.id,
            member.role,
            member.raft,
            member.api,
            show(member.matched),
            show(member.lag),
            release
        );
    }
}

/// A client of one node's API.
pub(crate) struct ApiClient {
    base: String,
    key: String,
    client: reqwest::Client,
}

impl ApiClient {
    pub(crate) fn new(options: &ApiOptions) -> anyhow::Result<ApiClient> {
        let config = options.config.as_deref().map(Config::load).transpose()?;
        let base = match (&options.api, &config) {
            (Some(api), _) => api.trim_end_matches('/').to_owned(),
            (None, Some(config)) => match &config.cluster {
                Some(cluster) => cluster.api_address(config.node.listen),
                None if config.node.tls.is_some() => format!("https://{}", config.node.listen),
                None => format!("http://{}", config.node.listen),
            },
            (None, None) => bail!("give --config or --api"),
        };
        let ca_file = match (&options.ca_file, &config) {
            (Some(file), _) => Some(file.clone()),
            (None, Some(config)) if config.cluster.is_some() => {
                Some(config.node.cluster_dir().join("ca.crt"))
            }
            _ => None,
        };
        let key = match &options.api_key_file {
            Some(file) => std::fs::read_to_string(file)
                .with_context(|| format!("cannot read the API key from {}", file.display()))?,
            None => std::env::var("PULLBACK_API_KEY")
                .context("give --api-key-file or set PULLBACK_API_KEY")?,
        };
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(30));
        if let Some(file) = ca_file {
            let pem = std::fs::read(&file)
                .with_context(|| format!("cannot read the CA certificate {}", file.display()))?;
            builder = builder
                .tls_built_in_root_certs(false)
                .add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
        }
        Ok(ApiClient {
            base,
            key: key.trim().to_owned(),
            client: builder.build()?,
        })
    }

    /// The same key and trust, for another node's API.
    pub(crate) fn at(&self, base: &str) -> ApiClient {
        ApiClient {
            base: base.trim_end_matches('/').to_owned(),
            key: self.key.clone(),
            client: self.client.clone(),
        }
    }

    /// POSTs a file as the body, streamed; large files get time to go up.
    pub(crate) async fn upload(
        &self,
        path: &str,
        file: &Path,
    ) -> anyhow::Result<serde_json::Value> {
        let opened = tokio::fs::File::open(file)
            .await
            .with_context(|| format!("cannot read {}", file.display()))?;
        let size = opened.metadata().await?.len();
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
            opened,
            1 << 20,
        ));
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, size)
            .timeout(Duration::from_secs(3600))
            .body(body)
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        Self::answer(&self.base, response)
            .await?
            .json()
            .await
            .map_err(Into::into)
    }

    pub(crate) async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<reqwest::Response> {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        Self::answer(&self.base, response).await
    }

    /// The response if it succeeded; otherwise an error with the server's reason.
    async fn answer(base: &str, response: reqwest::Response) -> anyhow::Result<reqwest::Response> {
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        bail!(
            "{base} answered {status}: {}",
            body["error"].as_str().unwrap_or("no reason given")
        )
    }

    pub(crate) async fn send<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<T> {
        Ok(self.request(method, path, body).await?.json().await?)
    }

    async fn send_no_answer(&self, method: reqwest::Method, path: &str) -> anyhow::Result<()> {
        self.request(method, path, None).await.map(drop)
    }
}
