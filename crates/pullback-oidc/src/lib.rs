//! Sign-in with Azure AD (Microsoft Entra ID) by OpenID Connect, in the global cloud, the US
//! Government cloud, the China cloud operated by 21Vianet, or at an explicit authority.
//!
//! The flow is the authorization code flow with PKCE (S256), a `state` that ties the answer
//! to the browser that asked and a `nonce` that ties the ID token to this sign-in. The ID
//! token is verified here, never trusted because it came over TLS: its RS256 signature
//! against the keys the tenant publishes (cached, fetched again when an unknown key id
//! appears, at most once per interval), its issuer (the tenant's, in the cloud's own host),
//! audience, tenant, nonce and times. Its groups or app roles then map to a Pullback role.
//!
//! - [`cloud`]: the clouds and their hosts; the only place a Microsoft host name is written.
//! - [`settings`]: what the appliance is configured with, checked.
//! - [`roles`]: groups and app roles to a Pullback role.
//! - [`jwt`]: reading and verifying an ID token, without IO.
//! - [`jwks`], [`discovery`]: the tenant's keys and its OpenID configuration.
//! - [`flow`]: what a sign-in remembers between the redirect and the callback, sealed into
//!   a cookie.
//! - [`token`]: the token request, with a client secret or a certificate assertion.
//! - [`client`]: [`OidcClient`], which ties them together for the API.
//! - `testing` (feature): a local identity provider for the tests.

#![warn(missing_docs)]

pub mod client;
pub mod cloud;
pub mod discovery;
pub mod error;
pub mod flow;
pub mod jwks;
pub mod jwt;
pub mod roles;
pub mod settings;
pub mod token;

#[cfg(feature = "testing")]
pub mod testing;

mod encoding;

pub use client::{OidcClient, SignInStart, SignedIn};
pub use cloud::Cloud;
pub use error::SignInError;
pub use roles::{RoleMapping, RoleMembers};
pub use settings::{ClientCredential, OidcSettings, SettingsError};
