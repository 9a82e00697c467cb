//! Which mailbox backend serves which recipient: routing by domain.

use crate::config::{BackendConfig, MailboxConfig, TlsMode};
use pullback_domain::{MessageFingerprint, MessageId};
use pullback_mailbox::{MailboxBackend, MessageTarget};
use std::sync::Arc;
use std::time::Duration;

/// One configured backend with the folders it uses.
pub struct Route {
    pub name: String,
    pub domains: Vec<String>,
    pub quarantine_folder: String,
    pub source_folder: String,
    pub backend: Arc<dyn MailboxBackend>,
}

/// The mailbox backends of a node.
#[derive(Default)]
pub struct Backends {
    routes: Vec<Route>,
}

impl Backends {
    pub fn new(routes: Vec<Route>) -> Backends {
        Backends { routes }
    }

    /// Builds the backends a configuration describes, reading their secrets.
    pub fn from_config(mailboxes: &[MailboxConfig]) -> Result<Backends, String> {
        let mut routes = Vec::new();
        for mailbox in mailboxes {
            let backend: Arc<dyn MailboxBackend> = match &mailbox.backend {
                BackendConfig::Maildir { root } => {
                    Arc::new(pullback_mailbox::maildir::MaildirBackend::new(root.clone()))
                }
                BackendConfig::Imap {
                    host,
                    port,
                    tls,
                    ca_file,
                    master_user,
                    master_password,
                    timeout_secs,
                } => {
                    let what = format!("mailbox backend {:?} password", mailbox.name);
                    let password = master_password.resolve(&what)?;
                    let tls = match tls {
                        TlsMode::None => pullback_mailbox::imap::TlsMode::None,
                        TlsMode::Starttls => pullback_mailbox::imap::TlsMode::Starttls,
                        TlsMode::Tls => pullback_mailbox::imap::TlsMode::Tls,
                    };
                    let mut imap = pullback_mailbox::imap::ImapConfig::new(
                        host,
                        *port,
                        master_user,
                        &password,
                    );
                    imap.tls = tls;
                    imap.ca_file = ca_file.clone();
                    imap.timeout = Duration::from_secs(*timeout_secs);
                    let backend = pullback_mailbox::imap::ImapBackend::new(imap)
                        .map_err(|e| format!("mailbox backend {:?}: {e}", mailbox.name))?;
                    Arc::new(backend)
                }
                BackendConfig::Graph(graph) => Arc::new(graph.backend(&mailbox.name)?),
            };
            routes.push(Route {
                name: mailbox.name.clone(),
                domains: mailbox
                    .domains
                    .iter()
                    .map(|d| d.trim().to_ascii_lowercase())
                    .collect(),
                quarantine_folder: mailbox.quarantine_folder.clone(),
                source_folder: mailbox.source_folder.clone(),
                backend,
            });
        }
        Ok(Backends { routes })
    }

    /// The backend for a recipient: the one naming its domain, else the catch-all.
    pub fn route(&self, recipient: &str) -> Option<&Route> {
        let domain = recipient
            .rsplit_once('@')
            .map(|(_, d)| d)
            .unwrap_or_default();
        self.routes
            .iter()
            .find(|r| r.domains.iter().any(|d| d == domain))
            .or_else(|| self.routes.iter().find(|r| r.domains.is_empty()))
    }
}

impl Route {
    pub fn target(&self, message_id: MessageId, fingerprint: MessageFingerprint) -> MessageTarget {
        MessageTarget {
            message_id,
            fingerprint,
            quarantine_folder: self.quarantine_folder.clone(),
            source_folder: self.source_folder.clone(),
        }
    }
}
