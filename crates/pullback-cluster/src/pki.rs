//! The cluster certificate authority and the node identities it issues.
//!
//! Every node holds a certificate from the one cluster CA and trusts nothing else, so a Raft
//! RPC is accepted only from, and sent only to, a holder of such a certificate.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// How long the cluster CA is valid.
const CA_VALIDITY: time::Duration = time::Duration::days(3652);
/// How long a node certificate is valid.
const NODE_VALIDITY: time::Duration = time::Duration::days(731);
/// How far back a certificate's validity starts, so that a peer whose clock is a little behind
/// already accepts it.
const BACKDATE: time::Duration = time::Duration::hours(1);

/// File names inside a folder written by [`ClusterCa::write_to`] or [`NodeIdentity::write_to`].
const CA_CERT_FILE: &str = "ca.crt";
const CA_KEY_FILE: &str = "ca.key";
const NODE_CERT_FILE: &str = "node.crt";
const NODE_KEY_FILE: &str = "node.key";

/// What can go wrong making, loading or storing certificates.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot generate a key or certificate: {0}")]
    Generate(rcgen::Error),
    #[error("the {what} is not valid: {reason}")]
    Invalid { what: &'static str, reason: String },
    #[error("the CA certificate and the CA key do not belong together")]
    KeyMismatch,
    #[error("a node certificate needs at least one IP address or DNS name")]
    NoNames,
    #[error("cannot access {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds a private key but is readable by others (mode {mode:o}); chmod 600 it")]
    NotPrivate { path: PathBuf, mode: u32 },
}

/// The cluster certificate authority: an ECDSA P-256 self-signed CA that signs node
/// certificates. Its `Debug` never shows the key.
pub struct ClusterCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A node's certificate and key, and the cluster CA certificate it trusts. Its `Debug` never
/// shows the key.
#[derive(Clone)]
pub struct NodeIdentity {
    /// The node's certificate, PEM.
    pub cert_pem: String,
    /// The node's private key, PKCS#8 PEM.
    pub key_pem: String,
    /// The cluster CA certificate, PEM: the only root the node trusts.
    pub ca_pem: String,
}

impl ClusterCa {
    /// Creates a new CA for the cluster called `cluster_name`, valid for ten years.
    pub fn generate(cluster_name: &str) -> Result<ClusterCa, PkiError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(PkiError::Generate)?;
        let mut params = CertificateParams::default();
        params.distinguished_name.remove(DnType::CommonName);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Pullback");
        params.distinguished_name.push(
            DnType::CommonName,
            format!("Pullback cluster CA {cluster_name}"),
        );
        // Path length zero: the CA signs node certificates and no intermediate CAs.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, CA_VALIDITY);

        let cert = params.self_signed(&key).map_err(PkiError::Generate)?;
        Ok(ClusterCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a CA from its certificate and key, checking that they belong together and that
    /// the certificate is a CA.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<ClusterCa, PkiError> {
        let der = parse_certs(cert_pem, "CA certificate")?.remove(0);
        let (_, cert) =
            x509_parser::parse_x509_certificate(&der).map_err(|e| invalid("CA certificate", e))?;
        let is_ca = cert
            .basic_constraints()
            .map_err(|e| invalid("CA certificate", e))?
            .is_some_and(|constraints| constraints.value.ca);
        if !is_ca {
            return Err(invalid("CA certificate", "it is not a CA certificate"));
        }
        check_key_matches(cert_pem, key_pem)?;

        let key = KeyPair::from_pem(key_pem).map_err(|e| invalid("CA key", e))?;
        let issuer =
            Issuer::from_ca_cert_der(&der, key).map_err(|e| invalid("CA certificate", e))?;
        Ok(ClusterCa {
            cert_pem: cert_pem.to_owned(),
            issuer,
        })
    }

    /// The certificate and the private key, both PEM.
    pub fn to_pem(&self) -> (String, String) {
        (self.cert_pem.clone(), self.issuer.key().serialize_pem())
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues node `node_id` a certificate for both serving and calling peers, valid for two
    /// years, naming it `pullback-node-<id>` and covering `sans` (IP addresses or DNS names,
    /// which must include every address peers use to reach it).
    pub fn issue_node(&self, node_id: u64, sans: &[String]) -> Result<NodeIdentity, PkiError> {
        if sans.is_empty() {
            return Err(PkiError::NoNames);
        }
        let mut params = CertificateParams::new(sans.to_vec()).map_err(PkiError::Generate)?;
        params.distinguished_name.remove(DnType::CommonName);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Pullback");
        params
            .distinguished_name
            .push(DnType::CommonName, node_common_name(node_id));
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, NODE_VALIDITY);

        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(PkiError::Generate)?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(PkiError::Generate)?;
        Ok(NodeIdentity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            ca_pem: self.cert_pem.clone(),
        })
    }

    /// Writes `ca.crt` and `ca.key` (mode 600) into `dir`, creating it if needed.
    pub fn write_to(&self, dir: &Path) -> Result<(), PkiError> {
        let (cert_pem, key_pem) = self.to_pem();
        create_dir(dir)?;
        write_file(&dir.join(CA_CERT_FILE), &cert_pem, 0o644)?;
        write_file(&dir.join(CA_KEY_FILE), &key_pem, 0o600)
    }

    /// Reads a CA written by [`ClusterCa::write_to`]; the key file must be private.
    pub fn read_from(dir: &Path) -> Result<ClusterCa, PkiError> {
        let cert_pem = read_file(&dir.join(CA_CERT_FILE))?;
        let key_pem = read_private_file(&dir.join(CA_KEY_FILE))?;
        ClusterCa::from_pem(&cert_pem, &key_pem)
    }
}

impl fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterCa")
            .field("cert_pem", &self.cert_pem)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl NodeIdentity {
    /// Writes `node.crt`, `node.key` (mode 600) and `ca.crt` into `dir`, creating it if needed.
    pub fn write_to(&self, dir: &Path) -> Result<(), PkiError> {
        create_dir(dir)?;
        write_file(&dir.join(CA_CERT_FILE), &self.ca_pem, 0o644)?;
        write_file(&dir.join(NODE_CERT_FILE), &self.cert_pem, 0o644)?;
        write_file(&dir.join(NODE_KEY_FILE), &self.key_pem, 0o600)
    }

    /// Reads an identity written by [`NodeIdentity::write_to`], checking that the key file is
    /// private, that the key belongs to the certificate and that both certificates parse.
    pub fn read_from(dir: &Path) -> Result<NodeIdentity, PkiError> {
        let identity = NodeIdentity {
            cert_pem: read_file(&dir.join(NODE_CERT_FILE))?,
            key_pem: read_private_file(&dir.join(NODE_KEY_FILE))?,
            ca_pem: read_file(&dir.join(CA_CERT_FILE))?,
        };
        identity.ca_cert()?;
        check_key_matches(&identity.cert_pem, &identity.key_pem)?;
        Ok(identity)
    }

    /// The node's certificate chain, DER.
    pub(crate) fn cert_chain(&self) -> Result<Vec<CertificateDer<'static>>, PkiError> {
        parse_certs(&self.cert_pem, "node certificate")
    }

    /// The node's private key, DER.
    pub(crate) fn private_key(&self) -> Result<PrivateKeyDer<'static>, PkiError> {
        // The parser's error names the PEM section at most, never the key bytes.
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(|e| invalid("node key", e))
    }

    /// The cluster CA certificate, DER.
    pub(crate) fn ca_cert(&self) -> Result<CertificateDer<'static>, PkiError> {
        let mut certs = parse_certs(&self.ca_pem, "CA certificate")?;
        Ok(certs.remove(0))
    }
}

impl fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .field("ca_pem", &self.ca_pem)
            .finish()
    }
}

/// The SHA-256 of a PEM certificate's DER form, hex: how a join token pins the cluster CA.
pub fn fingerprint(cert_pem: &str) -> Result<String, PkiError> {
    use sha2::{Digest, Sha256};
    let der = parse_certs(cert_pem, "certificate")?.remove(0);
    Ok(hex::encode(Sha256::digest(der.as_ref())))
}

/// The subject common name of node `node_id`'s certificate.
pub fn node_common_name(node_id: u64) -> String {
    format!("pullback-node-{node_id}")
}

fn set_validity(params: &mut CertificateParams, validity: time::Duration) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + validity;
}

fn invalid(what: &'static str, reason: impl fmt::Display) -> PkiError {
    PkiError::Invalid {
        what,
        reason: reason.to_string(),
    }
}

fn parse_certs(pem: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(what, e))?;
    if certs.is_empty() {
        return Err(invalid(what, "no certificate in the PEM text"));
    }
    Ok(certs)
}

/// Checks that the private key in `key_pem` is the one whose public half `cert_pem` certifies.
fn check_key_matches(cert_pem: &str, key_pem: &str) -> Result<(), PkiError> {
    let certs = parse_certs(cert_pem, "certificate")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| invalid("key", e))?;
    let signing_key =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| invalid("key", e))?;
    rustls::sign::CertifiedKey::new(certs, signing_key)
        .keys_match()
        .map_err(|_| PkiError::KeyMismatch)
}

fn create_dir(dir: &Path) -> Result<(), PkiError> {
    fs::create_dir_all(dir).map_err(|source| PkiError::Io {
        path: dir.to_owned(),
        source,
    })
}

/// Writes `contents` to `path` with `mode`, through a temporary file renamed into place, so a
/// crash leaves either the old file or the new one. A key is never readable by others, not
/// even while it is being written.
fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        path: path.to_owned(),
        source,
    };
    let temporary = path.with_extension("tmp");
    let _ = fs::remove_file(&temporary);

    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temporary)
        .map_err(io)?;
    // The umask may have narrowed the mode; set it exactly.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(&temporary, path).map_err(io)
}

fn read_file(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Reads a file holding a private key, refusing it when its group or others may read it.
fn read_private_file(path: &Path) -> Result<String, PkiError> {
    let metadata = fs::metadata(path).map_err(|source| PkiError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(PkiError::NotPrivate {
            path: path.to_owned(),
            mode,
        });
    }
    read_file(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{ServerName, UnixTime};
    use rustls::server::WebPkiClientVerifier;
    use std::sync::Arc;
    use x509_parser::certificate::X509Certificate;

    /// Whether `identity`'s certificate is accepted by a node trusting only `ca`, as a server
    /// reached at `server_name` and as a client.
    fn accepted(ca: &ClusterCa, identity: &NodeIdentity, server_name: &str) -> (bool, bool) {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(parse_certs(ca.cert_pem(), "CA").unwrap().remove(0))
            .unwrap();
        let roots = Arc::new(roots);
        let cert = identity.cert_chain().unwrap().remove(0);
        let name = ServerName::try_from(server_name.to_owned()).unwrap();
        let now = UnixTime::now();

        let server = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .unwrap()
            .verify_server_cert(&cert, &[], &name, &[], now)
            .is_ok();
        let client = WebPkiClientVerifier::builder_with_provider(roots, provider)
            .build()
            .unwrap()
            .verify_client_cert(&cert, &[], now)
            .is_ok();
        (server, client)
    }

    /// Parses a PEM certificate and hands it to `check`.
    fn inspect<T>(cert_pem: &str, check: impl FnOnce(&X509Certificate<'_>) -> T) -> T {
        let der = parse_certs(cert_pem, "certificate").unwrap().remove(0);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        check(&cert)
    }

    /// How long a certificate is valid, in days.
    fn lifetime_days(cert: &X509Certificate<'_>) -> i64 {
        let validity = cert.validity();
        (validity.not_after.timestamp() - validity.not_before.timestamp()) / 86_400
    }

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn an_issued_certificate_chains_to_its_ca_as_server_and_client() {
        let ca = ClusterCa::generate("test").unwrap();
        let identity = ca
            .issue_node(7, &names(&["127.0.0.1", "node7.example"]))
            .unwrap();

        assert_eq!(accepted(&ca, &identity, "127.0.0.1"), (true, true));
        assert_eq!(accepted(&ca, &identity, "node7.example"), (true, true));
        assert_eq!(identity.ca_pem, ca.cert_pem());
    }

    #[test]
    fn a_certificate_from_another_ca_is_refused() {
        let ca = ClusterCa::generate("test").unwrap();
        let stranger = ClusterCa::generate("test").unwrap();
        let identity = stranger.issue_node(1, &names(&["127.0.0.1"])).unwrap();

        assert_eq!(accepted(&ca, &identity, "127.0.0.1"), (false, false));
    }

    #[test]
    fn a_server_certificate_is_refused_for_an_address_it_does_not_name() {
        let ca = ClusterCa::generate("test").unwrap();
        let identity = ca.issue_node(1, &names(&["127.0.0.1"])).unwrap();

        assert_eq!(accepted(&ca, &identity, "10.0.0.9"), (false, true));
    }

    #[test]
    fn a_node_certificate_names_the_node_and_is_no_ca() {
        let ca = ClusterCa::generate("test").unwrap();
        let identity = ca.issue_node(42, &names(&["127.0.0.1"])).unwrap();

        inspect(&identity.cert_pem, |cert| {
            let name = cert
                .subject()
                .iter_common_name()
                .next()
                .unwrap()
                .as_str()
                .unwrap();
            assert_eq!(name, "pullback-node-42");
            let constraints = cert.basic_constraints().unwrap().unwrap().value;
            assert!(!constraints.ca);
            let usage = cert.extended_key_usage().unwrap().unwrap().value;
            assert!(usage.server_auth && usage.client_auth);
            assert!((730..=732).contains(&lifetime_days(cert)));
        });
        inspect(ca.cert_pem(), |cert| {
            assert!(cert.basic_constraints().unwrap().unwrap().value.ca);
            assert!(cert.key_usage().unwrap().unwrap().value.key_cert_sign());
            assert!((3652..=3653).contains(&lifetime_days(cert)));
        });
    }

    #[test]
    fn a_node_certificate_needs_a_name() {
        let ca = ClusterCa::generate("test").unwrap();
        assert!(matches!(ca.issue_node(1, &[]), Err(PkiError::NoNames)));
    }

    #[test]
    fn a_ca_loaded_from_pem_issues_certificates_the_original_accepts() {
        let ca = ClusterCa::generate("test").unwrap();
        let (cert_pem, key_pem) = ca.to_pem();
        let loaded = ClusterCa::from_pem(&cert_pem, &key_pem).unwrap();
        let identity = loaded.issue_node(2, &names(&["127.0.0.1"])).unwrap();

        assert_eq!(accepted(&ca, &identity, "127.0.0.1"), (true, true));
    }

    #[test]
    fn a_ca_with_the_wrong_key_or_a_node_certificate_is_refused() {
        let ca = ClusterCa::generate("test").unwrap();
        let other = ClusterCa::generate("test").unwrap();
        let (cert_pem, _) = ca.to_pem();
        let (_, other_key) = other.to_pem();
        assert!(matches!(
            ClusterCa::from_pem(&cert_pem, &other_key),
            Err(PkiError::KeyMismatch)
        ));

        let identity = ca.issue_node(1, &names(&["127.0.0.1"])).unwrap();
        let refused = ClusterCa::from_pem(&identity.cert_pem, &identity.key_pem);
        assert!(matches!(refused, Err(PkiError::Invalid { .. })));
    }

    #[test]
    fn files_round_trip_with_private_keys() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::generate("test").unwrap();
        let identity = ca.issue_node(3, &names(&["127.0.0.1"])).unwrap();
        ca.write_to(&dir.path().join("ca")).unwrap();
        identity.write_to(&dir.path().join("node")).unwrap();

        for key in ["ca/ca.key", "node/node.key"] {
            let mode = fs::metadata(dir.path().join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
        let read = NodeIdentity::read_from(&dir.path().join("node")).unwrap();
        assert_eq!(read.cert_pem, identity.cert_pem);
        assert_eq!(read.key_pem, identity.key_pem);
        assert_eq!(read.ca_pem, identity.ca_pem);
        let loaded = ClusterCa::read_from(&dir.path().join("ca")).unwrap();
        assert_eq!(loaded.to_pem(), ca.to_pem());
    }

    #[test]
    fn a_key_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::generate("test").unwrap();
        ca.write_to(dir.path()).unwrap();
        let key = dir.path().join(CA_KEY_FILE);
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();

        let refused = ClusterCa::read_from(dir.path());
        assert!(matches!(
            refused,
            Err(PkiError::NotPrivate { mode: 0o644, .. })
        ));
    }

    #[test]
    fn debug_never_shows_a_key() {
        let ca = ClusterCa::generate("test").unwrap();
        let identity = ca.issue_node(1, &names(&["127.0.0.1"])).unwrap();
        let (_, ca_key) = ca.to_pem();

        assert!(!format!("{ca:?}").contains(&ca_key));
        assert!(!format!("{identity:?}").contains(&identity.key_pem));
        assert!(!format!("{identity:?}").contains("PRIVATE KEY"));
    }
}
