//! Exchange Online through Microsoft Graph: a mailbox backend that quarantines, restores,
//! soft-deletes and hard-deletes messages with application permissions, in any national
//! cloud, within Graph's throttling limits.
//!
//! The layers: [`cloud`] says where a tenant's authority and Graph are; [`credentials`] and
//! [`token`] get and cache the application's token; [`throttle`] keeps each mailbox within
//! four requests at a time and its request budget; [`client`] sends requests and `$batch`es
//! and retries as Graph asks; [`backend`] is the [`pullback_mailbox::MailboxBackend`].
//! [`testing`] (a feature) is a local Graph and token endpoint that refuse what the real
//! ones refuse.

pub mod backend;
pub mod client;
pub mod cloud;
pub mod credentials;
#[cfg(feature = "testing")]
pub mod testing;
pub mod throttle;
pub mod token;
pub mod wire;

pub use backend::GraphBackend;
pub use client::{GraphClient, GraphConfig, GraphError, Stats};
pub use cloud::{EndpointError, Endpoints, NationalCloud};
pub use credentials::{AssertionAlgorithm, CertificateCredential, Credential, CredentialError};
pub use throttle::Limits;
pub use token::TokenError;
