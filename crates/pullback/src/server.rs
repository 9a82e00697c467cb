//! `pullback server` and `pullback validate`.

use anyhow::Context;
use pullback_api::{ApiKey, AppState};
use pullback_node::config::Config;
use pullback_node::{Backends, Node, Parts, Source};
use std::path::Path;
use std::sync::Arc;

/// Builds everything a configuration describes; the errors name what is wrong.
pub fn parts(config: &Config) -> anyhow::Result<(Parts, Vec<ApiKey>)> {
    let backends = Backends::from_config(&config.mailboxes).map_err(anyhow::Error::msg)?;
    let sources = config
        .sources
        .iter()
        .map(Source::from_config)
        .filter_map(Result::transpose)
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    let mut keys = Vec::new();
    for key in &config.api_keys {
        let mut sha256 = [0u8; 32];
        hex::decode_to_slice(&key.sha256, &mut sha256)
            .with_context(|| format!("api key {:?}: sha256 is not hex", key.name))?;
        keys.push(ApiKey {
            name: key.name.clone(),
            role: key.role,
            sha256,
        });
    }
    Ok((
        Parts {
            backends: Arc::new(backends),
            sources,
        },
        keys,
    ))
}

/// The Azure AD sign-in client, when `[oidc]` is configured.
pub fn oidc_client(config: &Config) -> anyhow::Result<Option<pullback_oidc::OidcClient>> {
    let Some(section) = &config.oidc else {
        return Ok(None);
    };
    let settings = section
        .settings()
        .map_err(|problems| anyhow::anyhow!("{}", problems.join("; ")))?;
    Ok(Some(pullback_oidc::OidcClient::new(settings)?))
}

pub fn validate(path: &Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    parts(&config)?;
    oidc_client(&config)?;
    if let Some(tls) = &config.node.tls {
        pullback_api::tls::server_config(&tls.cert_file, &tls.key_file)?;
    } else if config.cluster.is_none() && !config.node.listen.ip().is_loopback() {
        eprintln!("{}", plain_http_warning(&config));
    }
    if config.cluster.is_some() {
        let dir = config.node.cluster_dir();
        match pullback_cluster::NodeIdentity::read_from(&dir) {
            Ok(_) => {}
            Err(e) => eprintln!(
                "warning: no usable cluster identity in {} ({e}); run `pullback cluster init` \
                 or `pullback cluster join` before starting",
                dir.display()
            ),
        }
    }
    if config.api_keys.is_empty() {
        eprintln!("warning: no api_keys configured; every API call will be refused");
    }
    println!(
        "configuration OK: {} source(s), {} mailbox backend(s), {} match condition(s), {} API key(s)",
        config.sources.len(),
        config.mailboxes.len(),
        config.match_conditions.len(),
        config.api_keys.len()
    );
    Ok(())
}

pub async fn serve(path: &Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let (parts, keys) = parts(&config)?;
    let oidc = oidc_client(&config)?;
    let listener = tokio::net::TcpListener::bind(config.node.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.node.listen))?;
    // An operator's certificate wins; a cluster member otherwise serves its cluster
    // certificate, which clients verify against the cluster CA.
    let tls = match (&config.node.tls, &config.cluster) {
        (Some(files), _) => Some(pullback_api::tls::server_config(
            &files.cert_file,
            &files.key_file,
        )?),
        (None, Some(_)) => {
            let identity = pullback_cluster::NodeIdentity::read_from(&config.node.cluster_dir())
                .context("reading the cluster identity; run `pullback cluster init` or `join`")?;
            Some(pullback_cluster::api_server_config(&identity)?)
        }
        (None, None) => None,
    };
    let node = Node::start(&config, parts).await?;
    let mut state = AppState::new(node.clone(), keys);
    if let Some(inbox) = &config.node.upgrade_inbox {
        state = state.with_upgrade_inbox(inbox.clone());
    }
    if let Some(client) = oidc {
        tracing::info!(cloud = %client.settings().cloud, "sign-in with Azure AD offered");
        state = state.with_oidc(client);
    }
    let app = pullback_api::router(state);
    // Stop on SIGTERM or Ctrl-C; exit with an error when Raft itself stopped, so that systemd
    // restarts the node instead of leaving a process that answers but cannot take part.
    let failed = Arc::new(std::sync::Mutex::new(None::<String>));
    let stop = {
        let (node, failed) = (node.clone(), failed.clone());
        async move {
            tokio::select! {
                () = shutdown_signal() => {}
                reason = node.raft_failed() => {
                    tracing::error!(%reason, "raft stopped; exiting so that the node is restarted");
                    *failed.lock().expect("failure lock") = Some(reason);
                }
            }
        }
    };
    match tls {
        Some(tls) => {
            tracing::info!(address = %config.node.listen, "API listening over TLS");
            let listener = pullback_api::tls::TlsListener::new(listener, tls)?;
            axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await?;
        }
        None => {
            if !config.node.listen.ip().is_loopback() {
                tracing::warn!("{}", plain_http_warning(&config));
            }
            tracing::info!(address = %config.node.listen, "API listening over plain HTTP");
            axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await?;
        }
    }
    node.shutdown().await;
    match failed.lock().expect("failure lock").take() {
        Some(reason) => Err(anyhow::anyhow!("raft stopped: {reason}")),
        None => Ok(()),
    }
}

fn plain_http_warning(config: &Config) -> String {
    format!(
        "warning: the API listens on {} without TLS; API keys would cross the network in clear \
         (set tls in [node])",
        config.node.listen
    )
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; use Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutdown requested");
}

/// A random 32-byte key, hex encoded.
pub fn new_api_key() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(hex::encode(bytes))
}
