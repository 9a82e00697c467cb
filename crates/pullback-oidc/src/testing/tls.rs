//! HTTPS for the local identity provider: a self-signed certificate for 127.0.0.1 made at
//! start (rcgen, ECDSA P-256), and a listener that hands axum TLS connections.
//!
//! Clients trust it explicitly: the appliance through `ca_file`, Chromium through
//! `--ignore-certificate-errors-spki-list` with [`TlsIdentity::spki_sha256`], which pins this
//! one key rather than turning certificate checks off.

use base64::Engine;
use rcgen::PublicKeyData;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// The certificate the provider serves and what clients need to trust it.
#[derive(Clone)]
pub struct TlsIdentity {
    /// The certificate, PEM: a client's extra trust anchor.
    pub certificate_pem: String,
    /// Base64 of the SHA-256 of the certificate's public key (SPKI), as Chromium's
    /// `--ignore-certificate-errors-spki-list` wants it.
    pub spki_sha256: String,
    config: Arc<rustls::ServerConfig>,
}

impl TlsIdentity {
    /// A fresh self-signed certificate for `127.0.0.1` and `localhost`.
    pub fn generate() -> TlsIdentity {
        let key = rcgen::KeyPair::generate().expect("an ECDSA key");
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("certificate parameters");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "local identity provider");
        let certificate = params.self_signed(&key).expect("a self-signed certificate");
        let spki = key.subject_public_key_info();
        let spki_sha256 =
            base64::engine::general_purpose::STANDARD.encode(crate::encoding::sha256(&spki));
        let key_der = rustls_pki_types::PrivateKeyDer::Pkcs8(
            rustls_pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()),
        );
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![certificate.der().clone()], key_der)
            .expect("a TLS configuration");
        let mut config = config;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        TlsIdentity {
            certificate_pem: certificate.pem(),
            spki_sha256,
            config: Arc::new(config),
        }
    }
}

/// Accepts TCP connections and completes their TLS handshakes for axum.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl TlsListener {
    /// Serves `identity` on `tcp`.
    pub fn new(tcp: TcpListener, identity: &TlsIdentity) -> TlsListener {
        TlsListener {
            tcp,
            acceptor: TlsAcceptor::from(identity.config.clone()),
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, peer)) = self.tcp.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            // A client that never finishes its handshake must not hold up the others long.
            let handshake = self.acceptor.accept(tcp);
            if let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(5), handshake).await {
                return (tls, peer);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}
