//! What reading a message establishes, before any judgement. [`crate::message`] fills these;
//! the evidence modules and [`crate::verdict`] only read them.

use serde::Serialize;

/// A parsed address with its display name, as the header gave it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Mailbox {
    /// The display name, decoded (RFC 2047), trimmed; `None` when absent.
    pub name: Option<String>,
    /// The address, lower case; `None` when the header held no usable address.
    pub address: Option<String>,
}

impl Mailbox {
    /// The domain of the address, lower case.
    pub fn domain(&self) -> Option<&str> {
        self.address.as_deref()?.rsplit_once('@').map(|(_, d)| d)
    }
}

/// The headers that analysis reads, decoded.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct HeaderFacts {
    pub from: Option<Mailbox>,
    pub sender: Option<Mailbox>,
    pub reply_to: Vec<Mailbox>,
    pub return_path: Option<String>,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    /// Decoded (RFC 2047).
    pub subject: Option<String>,
    /// Without angle brackets.
    pub message_id: Option<String>,
    /// As written.
    pub date: Option<String>,
    /// Every `Authentication-Results` header value, unfolded, in order.
    pub authentication_results: Vec<String>,
    /// Every `Received-SPF` header value, unfolded.
    pub received_spf: Vec<String>,
    /// `List-Id`, `List-Unsubscribe` and `Precedence`, which mark bulk mail.
    pub list_id: Option<String>,
    pub list_unsubscribe: Option<String>,
    pub precedence: Option<String>,
    /// How many `Received` headers the message carries.
    pub received_count: usize,
    /// Every header as (name, unfolded raw value), in order, at most 500 of them and
    /// 8 KiB per value.
    pub all: Vec<(String, String)>,
}

/// What kind of risky content an attachment is, when it is one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskyKind {
    /// HTML or SVG: can smuggle files or host a credential form offline.
    Html,
    /// ISO, IMG, VHD(X): containers that bypass mark-of-the-web.
    DiskImage,
    /// LNK, URL, SCF files.
    Shortcut,
    /// JS, VBS, PS1, BAT, CMD, HTA, WSF, JAR...
    Script,
    /// EXE, DLL, SCR, MSI, COM...
    Executable,
    /// Office documents with macros (docm, xlsm, pptm, or OLE files with a VBA stream).
    MacroDocument,
    /// Apple configuration profiles (`.mobileconfig`).
    ConfigurationProfile,
    /// Password-protected or encrypted archives and documents (ZIP with the encryption bit,
    /// 7z/RAR that cannot be listed).
    EncryptedContainer,
    /// Other archives (ZIP, RAR, 7z, gz, cab): a common wrapper for the above.
    Archive,
}

/// One attachment, or a part that carries a file.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AttachmentFacts {
    /// The file name, decoded (RFC 2231 and RFC 2047); `None` when the part named none.
    pub name: Option<String>,
    /// The declared `Content-Type`, lower case, without parameters.
    pub declared_type: String,
    /// The type its first bytes show (`application/pdf`, `application/zip`,
    /// `application/x-msdownload`, `text/html`...), when recognised.
    pub sniffed_type: Option<String>,
    /// The extension of `name`, lower case, without the dot.
    pub extension: Option<String>,
    pub size: usize,
    pub sha256: String,
    pub risky: Option<RiskyKind>,
    /// Why the declared type, the sniffed type and the extension disagree, when they do.
    pub mismatch: Option<String>,
}

/// Everything read from one message.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MessageFacts {
    pub headers: HeaderFacts,
    /// The decoded text of `text/plain` parts (and of text parts without a type), in order.
    pub text_bodies: Vec<String>,
    /// The decoded text of `text/html` parts, in order.
    pub html_bodies: Vec<String>,
    pub attachments: Vec<AttachmentFacts>,
    /// Messages attached to this one (`message/rfc822`), read the same way, one level deep.
    pub attached_messages: Vec<MessageFacts>,
    /// True when the message is known to lack its original headers (an inline forward): the
    /// header facts then describe what could be recovered from the forwarded text.
    pub headers_lost: bool,
    /// What could not be read and what was done instead ("part 3: unknown charset
    /// x-mac-ukrainian, read as Windows-1252"), for the analyst.
    pub problems: Vec<String>,
}
