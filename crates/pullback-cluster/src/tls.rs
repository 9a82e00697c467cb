//! Serving TLS: the configurations a node serves with (mutual TLS for peers, server-only for
//! clients of the API), and a listener for `axum::serve` that completes each handshake in a
//! task of its own, so one slow or hostile client cannot hold up the others.

use crate::pki::{NodeIdentity, PkiError};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a peer may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How many handshakes may run at once; further connections wait to be accepted.
const MAX_HANDSHAKES: usize = 64;

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    Identity(#[from] PkiError),
    #[error("the cluster CA certificate cannot be trusted: {0}")]
    Root(rustls::Error),
    #[error("cannot build the client certificate verifier: {0}")]
    Verifier(rustls::server::VerifierBuilderError),
    #[error("the node certificate and key do not make a TLS configuration: {0}")]
    Config(rustls::Error),
}

/// A server configuration presenting `identity` and accepting only clients whose certificate
/// chains to the cluster CA.
pub fn server_config(identity: &NodeIdentity) -> Result<rustls::ServerConfig, TlsError> {
    // FIXME: certificates cannot be revoked, and any certificate of the cluster CA is accepted
    // whatever node it names; a node removed from the group can still call its former peers
    // until its certificate expires, two years after issue.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(identity.ca_cert()?).map_err(TlsError::Root)?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(TlsError::Verifier)?;

    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.cert_chain()?, identity.private_key()?)
        .map_err(TlsError::Config)
}

/// A server configuration presenting `identity` to clients that need no certificate: the
/// API of a cluster node, whose clients trust the cluster CA.
pub fn api_server_config(identity: &NodeIdentity) -> Result<rustls::ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_single_cert(identity.cert_chain()?, identity.private_key()?)
        .map_err(TlsError::Config)
}

/// A listener for `axum::serve` that hands over only connections whose handshake (client
/// certificate included, when the configuration asks for one) succeeded.
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    /// Starts accepting on `tcp`. The accepting task ends when this listener is dropped.
    pub fn new(tcp: TcpListener, config: rustls::ServerConfig) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (sender, ready) = mpsc::channel(MAX_HANDSHAKES);
        tokio::spawn(accept_loop(
            tcp,
            TlsAcceptor::from(Arc::new(config)),
            sender,
        ));
        Ok(TlsListener { local, ready })
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    sender: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let accepted = tokio::select! {
            () = sender.closed() => return,
            accepted = tcp.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a TLS connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = handshakes.clone().acquire_owned().await else {
            return;
        };

        let (acceptor, sender) = (acceptor.clone(), sender.clone());
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = sender.send((tls, peer)).await;
                }
                // A stranger knocking is not the operator's problem; DEBUG keeps it quiet.
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accepting task only ends once this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// Who is calling on a mutual-TLS connection: the node id its cluster certificate names
/// (`pullback-node-<id>`), if it names one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    pub node_id: Option<u64>,
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>>
    for PeerIdentity
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        let (_, session) = stream.io().get_ref();
        let node_id = session
            .peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(|cert| node_id_of(cert.as_ref()));
        PeerIdentity { node_id }
    }
}

/// The node id in a certificate's common name, `pullback-node-<id>`.
pub fn node_id_of(der: &[u8]) -> Option<u64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let common_name = cert.subject().iter_common_name().next()?.as_str().ok()?;
    common_name.strip_prefix("pullback-node-")?.parse().ok()
}
