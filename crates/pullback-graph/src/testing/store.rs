//! The mailboxes of the local Graph: folders (with Exchange's well-known ones) and messages,
//! with the behaviours clients depend on: a move gives the message a new id, the
//! Recoverable Items folders are outside the user's folder tree, hidden folders are listed
//! only when asked for.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Exchange's well-known folders: name in URLs, display name, and whether they are in the
/// user's folder tree (Recoverable Items is not).
const WELL_KNOWN: [(&str, &str, bool); 8] = [
    ("inbox", "Inbox", true),
    ("drafts", "Drafts", true),
    ("sentitems", "Sent Items", true),
    ("deleteditems", "Deleted Items", true),
    ("junkemail", "Junk Email", true),
    ("archive", "Archive", true),
    ("recoverableitemsdeletions", "Deletions", false),
    ("recoverableitemspurges", "Purges", false),
];

/// One folder.
#[derive(Clone, Debug)]
pub struct Folder {
    pub id: String,
    pub display_name: String,
    /// `None` for folders at the top of the tree.
    pub parent: Option<String>,
    pub well_known: Option<&'static str>,
    pub hidden: bool,
    /// In the user's folder tree (what `/messages` covers).
    pub in_tree: bool,
}

/// One message.
#[derive(Clone, Debug)]
pub struct StoredMessage {
    pub id: String,
    pub folder: String,
    pub internet_message_id: String,
    pub subject: String,
    pub from: String,
    pub sender: String,
    pub is_read: bool,
    pub sent: DateTime<Utc>,
    pub received: DateTime<Utc>,
    /// Single-value extended properties by id as written, compared without case.
    pub extended: BTreeMap<String, (String, String)>,
}

/// What a test delivers.
#[derive(Clone, Debug)]
pub struct NewMessage {
    pub internet_message_id: String,
    pub subject: String,
    pub from: String,
    pub is_read: bool,
    pub sent: DateTime<Utc>,
}

impl NewMessage {
    /// A message with this Message-ID (brackets added when missing), subject and sender.
    pub fn new(message_id: &str, subject: &str, from: &str) -> NewMessage {
        let id = message_id.trim();
        let id = if id.starts_with('<') {
            id.to_owned()
        } else {
            format!("<{id}>")
        };
        NewMessage {
            internet_message_id: id,
            subject: subject.to_owned(),
            from: from.to_owned(),
            is_read: false,
            sent: Utc::now(),
        }
    }
}

/// One user's mailbox.
#[derive(Debug)]
pub struct Mailbox {
    pub upn: String,
    pub id: String,
    /// `false` answers like a user without an Exchange Online mailbox.
    pub enabled: bool,
    pub folders: BTreeMap<String, Folder>,
    pub messages: BTreeMap<String, StoredMessage>,
}

/// Makes ids that look like Exchange's: long, URL-safe, unique.
#[derive(Debug, Default)]
pub struct Ids {
    next: u64,
}

impl Ids {
    pub fn next(&mut self, kind: &str) -> String {
        use base64::Engine as _;
        self.next += 1;
        let mut bytes = [0u8; 12];
        getrandom::fill(&mut bytes).expect("randomness for ids");
        let random = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        format!("AAMk{kind}{:06}{random}AAA=", self.next)
    }
}

impl Mailbox {
    pub fn new(upn: &str, ids: &mut Ids) -> Mailbox {
        let mut mailbox = Mailbox {
            upn: upn.to_owned(),
            id: ids.next("U"),
            enabled: true,
            folders: BTreeMap::new(),
            messages: BTreeMap::new(),
        };
        for (name, display, in_tree) in WELL_KNOWN {
            let id = ids.next("F");
            mailbox.folders.insert(
                id.clone(),
                Folder {
                    id,
                    display_name: display.to_owned(),
                    parent: None,
                    well_known: Some(name),
                    hidden: false,
                    in_tree,
                },
            );
        }
        mailbox
    }

    /// A folder by id or well-known name.
    pub fn folder(&self, key: &str) -> Option<&Folder> {
        self.folders.get(key).or_else(|| {
            self.folders
                .values()
                .find(|f| f.well_known.is_some_and(|w| w.eq_ignore_ascii_case(key)))
        })
    }

    /// The folder id for a key, id or well-known name.
    pub fn folder_id(&self, key: &str) -> Option<String> {
        self.folder(key).map(|f| f.id.clone())
    }

    /// A folder at the top of the tree (or under `parent`) by display name, any case.
    pub fn folder_named(&self, parent: Option<&str>, name: &str) -> Option<&Folder> {
        self.folders.values().find(|f| {
            f.in_tree && f.parent.as_deref() == parent && f.display_name.eq_ignore_ascii_case(name)
        })
    }

    pub fn create_folder(
        &mut self,
        ids: &mut Ids,
        parent: Option<&str>,
        name: &str,
        hidden: bool,
    ) -> Result<Folder, &'static str> {
        if self.folder_named(parent, name).is_some() {
            return Err("exists");
        }
        let folder = Folder {
            id: ids.next("F"),
            display_name: name.to_owned(),
            parent: parent.map(str::to_owned),
            well_known: None,
            hidden,
            in_tree: true,
        };
        self.folders.insert(folder.id.clone(), folder.clone());
        Ok(folder)
    }

    pub fn deliver(&mut self, ids: &mut Ids, folder: &str, message: &NewMessage) -> String {
        let folder = self
            .folder_id(folder)
            .expect("delivery to an existing folder");
        let id = ids.next("M");
        self.messages.insert(
            id.clone(),
            StoredMessage {
                id: id.clone(),
                folder,
                internet_message_id: message.internet_message_id.clone(),
                subject: message.subject.clone(),
                from: message.from.clone(),
                sender: message.from.clone(),
                is_read: message.is_read,
                sent: message.sent,
                received: Utc::now(),
                extended: BTreeMap::new(),
            },
        );
        id
    }

    /// Moves a message: Exchange gives the moved item a new id, and the old one is gone.
    pub fn move_message(&mut self, ids: &mut Ids, id: &str, to: &str) -> Option<StoredMessage> {
        let mut message = self.messages.remove(id)?;
        message.id = ids.next("M");
        message.folder = to.to_owned();
        self.messages.insert(message.id.clone(), message.clone());
        Some(message)
    }

    /// The JSON of a folder.
    pub fn folder_json(&self, folder: &Folder) -> Value {
        let in_folder = || self.messages.values().filter(|m| m.folder == folder.id);
        let parent = folder
            .parent
            .clone()
            .unwrap_or_else(|| format!("{}-root", self.id));
        json!({
            "id": folder.id,
            "displayName": folder.display_name,
            "parentFolderId": parent,
            "childFolderCount": self.folders.values().filter(|f| f.parent.as_deref() == Some(&folder.id)).count(),
            "unreadItemCount": in_folder().filter(|m| !m.is_read).count(),
            "totalItemCount": in_folder().count(),
            "isHidden": folder.hidden,
        })
    }
}

impl StoredMessage {
    /// The JSON of a message; `expanded` lists the extended properties asked for.
    pub fn json(&self, expanded: Option<&[(String, String)]>) -> Value {
        let address = |a: &str| json!({ "emailAddress": { "name": a, "address": a } });
        let mut value = json!({
            "id": self.id,
            "parentFolderId": self.folder,
            "internetMessageId": self.internet_message_id,
            "subject": self.subject,
            "from": address(&self.from),
            "sender": address(&self.sender),
            "isRead": self.is_read,
            "sentDateTime": self.sent.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "receivedDateTime": self.received.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        });
        if let Some(properties) = expanded {
            let list: Vec<Value> = properties
                .iter()
                .map(|(id, value)| json!({ "id": id, "value": value }))
                .collect();
            value["singleValueExtendedProperties"] = Value::Array(list);
        }
        value
    }
}
