//! Helpers shared by the backend tests: targets, real messages and the fixtures written for
//! this crate.

use pullback_mailbox::headers::MessageHeaders;
use pullback_mailbox::testing::shared_mail;
use pullback_mailbox::{MessageFingerprint, MessageId, MessageTarget};

/// The recipient used throughout.
pub const ALICE: &str = "alice@example.test";

/// `sample-14.eml`: a phishing message whose Subject and From are RFC 2047 encoded.
pub const SAMPLE_14_ID: &str = "<fyZslYxL.tkUX.lOKQIm.fyZslYxL@email.nexxt.com>";
pub const SAMPLE_14_SUBJECT: &str =
    "Massive 400% Welcome Offer + 50 free spins awaits you when you open your account.";

/// The Message-ID that `sample-3690.eml` and `sample-3744.eml` share, and their subjects.
pub const SHARED_ID: &str = "<20240815114713.9D4392C8E9@mail.iptesetxkeys.com>";
pub const SUBJECT_3690: &str = "Date facile avec des filles ukrainiennes parlant anglais";
pub const SUBJECT_3744: &str = "Profitez d'une aide pour l'amélioration de votre logement";

/// A real phishing message from the shared data.
pub fn phish(name: &str) -> Vec<u8> {
    shared_mail(&format!("phish/{name}"))
}

/// A fixture from `tests/fixtures`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = manifest_dir().join("tests/fixtures").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The Message-ID of a message, bracketed, as the crate's own header parser reads it.
pub fn id_of(message: &[u8]) -> String {
    let headers = MessageHeaders::parse(message);
    headers
        .message_id
        .map(|id| id.bracketed())
        .expect("the message has a Message-ID")
}

/// A target between INBOX and Quarantine with an optional subject and sender.
pub fn target(id: &str, subject: Option<&str>, sender: Option<&str>) -> MessageTarget {
    let fingerprint = MessageFingerprint {
        subject: subject.map(str::to_owned),
        sender: sender.map(str::to_owned),
        ..MessageFingerprint::default()
    };
    MessageTarget::new(
        MessageId::parse(id).expect("a usable Message-ID"),
        fingerprint,
    )
}

/// This crate's folder. Cargo sets it when it runs a test; the compiled-in value is only a
/// fallback, because a build shared between two checkouts may carry the other one's path.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
