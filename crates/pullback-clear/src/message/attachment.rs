//! What one file is: its name and extension, the type its first bytes show, whether it is a
//! kind of file that phishing uses to deliver something, and whether its declared type, its
//! content and its name disagree.

use std::io::{Cursor, Read};

use sha2::{Digest, Sha256};

use crate::facts::{AttachmentFacts, RiskyKind};

/// How many bytes of an OLE stream are read when looking for an encryption marker.
const MAX_OLE_STREAM_PEEK: u64 = 64 * 1024;

/// How many ZIP entries are looked at before giving up on the rest.
const MAX_ZIP_ENTRIES: usize = 10_000;

/// Describes one file found in a message. The content is hashed and inspected, not kept.
pub(crate) fn describe(name: Option<String>, declared_type: &str, data: &[u8]) -> AttachmentFacts {
    let name = name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
    let extension = name.as_deref().and_then(extension_of);
    let declared_type = declared_type.trim().to_ascii_lowercase();
    let content = inspect(data);

    let risky = risky_kind(extension.as_deref(), &declared_type, &content);
    let mismatch = mismatch(extension.as_deref(), &declared_type, content.sniffed);

    AttachmentFacts {
        name,
        declared_type,
        sniffed_type: content.sniffed.map(str::to_string),
        extension,
        size: data.len(),
        sha256: hex::encode(Sha256::digest(data)),
        risky,
        mismatch,
    }
}

/// The extension of a file name, lower case, without the dot. Trailing dots and spaces, which
/// Windows ignores, are ignored here too.
pub(crate) fn extension_of(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let base = base.trim_end_matches(['.', ' ']);
    let (stem, ext) = base.rsplit_once('.')?;
    let valid = !stem.is_empty() && !ext.is_empty() && ext.len() <= 16;
    valid
        .then(|| ext.to_ascii_lowercase())
        .filter(|e| e.chars().all(char::is_alphanumeric))
}

/// What the content of a file shows.
#[derive(Debug, Default)]
struct Content {
    sniffed: Option<&'static str>,
    has_macros: bool,
    encrypted: bool,
}

fn inspect(data: &[u8]) -> Content {
    let sniffed = sniff(data);
    let mut content = Content {
        sniffed,
        ..Content::default()
    };
    match sniffed {
        Some(ZIP) | Some(DOCX) | Some(XLSX) | Some(PPTX) | Some(JAR) => {
            let zip = zip_listing(data);
            content.encrypted = zip.encrypted;
            content.has_macros = zip.has_vba_project;
        }
        Some(PDF) => content.encrypted = pdf_is_encrypted(data),
        Some(OLE) | Some(DOC) | Some(XLS) | Some(PPT) | Some(MSI) | Some(MSG) => {
            let ole = ole_inspection(data);
            content.has_macros = ole.has_macros;
            content.encrypted = ole.encrypted;
        }
        _ => {}
    }
    content
}

const PDF: &str = "application/pdf";
const ZIP: &str = "application/zip";
const DOCX: &str = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";
const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
const PPTX: &str = "application/vnd.openxmlformats-officedocument.presentationml.presentation";
const JAR: &str = "application/java-archive";
const OLE: &str = "application/x-ole-storage";
const DOC: &str = "application/msword";
const XLS: &str = "application/vnd.ms-excel";
const PPT: &str = "application/vnd.ms-powerpoint";
const MSI: &str = "application/x-msi";
const MSG: &str = "application/vnd.ms-outlook";
const EXE: &str = "application/x-msdownload";
const ISO: &str = "application/x-iso9660-image";
const VHD: &str = "application/x-vhd";
const VHDX: &str = "application/x-vhdx";
const RAR: &str = "application/vnd.rar";
const SEVEN_Z: &str = "application/x-7z-compressed";
const GZIP: &str = "application/gzip";
const CAB: &str = "application/vnd.ms-cab-compressed";
const LNK: &str = "application/x-ms-shortcut";
const RTF: &str = "application/rtf";
const HTML: &str = "text/html";
const SVG: &str = "image/svg+xml";
const XML: &str = "application/xml";
const PLIST: &str = "application/x-plist";
const MOBILECONFIG: &str = "application/x-apple-aspen-config";

/// The type the first bytes of `data` show, when they show one.
pub(crate) fn sniff(data: &[u8]) -> Option<&'static str> {
    const MAGIC: &[(&[u8], &str)] = &[
        (b"MZ", EXE),
        (b"PK\x03\x04", ZIP),
        (b"PK\x05\x06", ZIP),
        (b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1", OLE),
        (b"Rar!\x1A\x07", RAR),
        (b"7z\xBC\xAF\x27\x1C", SEVEN_Z),
        (b"\x1F\x8B", GZIP),
        (b"MSCF", CAB),
        (b"\x4C\x00\x00\x00\x01\x14\x02\x00", LNK),
        (b"conectix", VHD),
        (b"vhdxfile", VHDX),
        (b"{\\rtf", RTF),
        (b"\x89PNG\r\n\x1A\n", "image/png"),
        (b"\xFF\xD8\xFF", "image/jpeg"),
        (b"GIF87a", "image/gif"),
        (b"GIF89a", "image/gif"),
        (b"II*\x00", "image/tiff"),
        (b"MM\x00*", "image/tiff"),
    ];
    if let Some(&(_, kind)) = MAGIC.iter().find(|(magic, _)| data.starts_with(magic)) {
        return Some(match kind {
            ZIP => zip_flavour(data),
            OLE => ole_flavour(data),
            other => other,
        });
    }
    if data.starts_with(b"RIFF") && data.get(8..12) == Some(b"WEBP") {
        return Some("image/webp");
    }
    if find(data.get(..1024).unwrap_or(data), b"%PDF-").is_some() {
        return Some(PDF);
    }
    if [0x8001, 0x8801, 0x9001]
        .iter()
        .any(|&at| data.get(at..at + 5) == Some(b"CD001"))
    {
        return Some(ISO);
    }
    if data.len() >= 512 && data[data.len() - 512..].starts_with(b"conectix") {
        return Some(VHD);
    }
    if is_signed_profile(data) {
        return Some(MOBILECONFIG);
    }
    sniff_markup(data)
}

/// Text that starts with markup: HTML, SVG, a property list or other XML.
fn sniff_markup(data: &[u8]) -> Option<&'static str> {
    let head = data.get(..4096).unwrap_or(data);
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let start = head.iter().position(|b| !b.is_ascii_whitespace())?;
    let head = String::from_utf8_lossy(&head[start..]).to_ascii_lowercase();
    if !head.starts_with('<') {
        return None;
    }
    if head.contains("<plist") || head.contains("<!doctype plist") {
        return Some(if head.contains("payloadtype") {
            MOBILECONFIG
        } else {
            PLIST
        });
    }
    if head.contains("<svg") {
        return Some(SVG);
    }
    const HTML_OPENERS: &[&str] = &[
        "<!doctype html",
        "<html",
        "<head",
        "<body",
        "<script",
        "<meta",
        "<form",
        "<iframe",
        "<div",
        "<table",
        "<title",
        "<a ",
        "<p>",
        "<img",
        "<style",
        "<!--",
    ];
    if HTML_OPENERS.iter().any(|tag| head.starts_with(tag)) || head.contains("<html") {
        return Some(HTML);
    }
    head.starts_with("<?xml").then_some(XML)
}

/// A signed configuration profile is a CMS envelope around a property list.
fn is_signed_profile(data: &[u8]) -> bool {
    let is_der_sequence = data.first() == Some(&0x30) && matches!(data.get(1), Some(0x80..=0x84));
    let head = data.get(..65_536).unwrap_or(data);
    is_der_sequence && find(head, b"<plist").is_some() && find(head, b"PayloadType").is_some()
}

fn zip_flavour(data: &[u8]) -> &'static str {
    let listing = zip_listing(data);
    if listing.names.iter().any(|n| n == "[Content_Types].xml") {
        let under = |prefix: &str| listing.names.iter().any(|n| n.starts_with(prefix));
        if under("word/") {
            return DOCX;
        }
        if under("xl/") {
            return XLSX;
        }
        if under("ppt/") {
            return PPTX;
        }
    }
    if listing
        .names
        .iter()
        .any(|n| n.eq_ignore_ascii_case("META-INF/MANIFEST.MF"))
    {
        return JAR;
    }
    ZIP
}

fn ole_flavour(data: &[u8]) -> &'static str {
    let names = ole_inspection(data).names;
    let has = |name: &str| names.iter().any(|n| n.eq_ignore_ascii_case(name));
    if has("WordDocument") {
        DOC
    } else if has("Workbook") || has("Book") {
        XLS
    } else if has("PowerPoint Document") {
        PPT
    } else if names.iter().any(|n| n.starts_with("__substg1.0_")) {
        MSG
    } else if has("\u{5}SummaryInformation") && names.iter().any(|n| n.starts_with('\u{4840}')) {
        MSI
    } else {
        OLE
    }
}

/// What the local headers of a ZIP file say.
#[derive(Debug, Default)]
struct ZipListing {
    names: Vec<String>,
    encrypted: bool,
    has_vba_project: bool,
}

/// Walks the local file headers of a ZIP file. Entries written with a data descriptor and no
/// sizes stop the walk; the central directory at the end is then read instead.
fn zip_listing(data: &[u8]) -> ZipListing {
    let mut listing = ZipListing::default();
    let mut at = 0;
    while listing.names.len() < MAX_ZIP_ENTRIES && data.get(at..at + 4) == Some(b"PK\x03\x04") {
        let Some(header) = data.get(at..at + 30) else {
            break;
        };
        let flags = u16_le(header, 6);
        let compressed = u32_le(header, 18) as usize;
        let name_len = u16_le(header, 26) as usize;
        let extra_len = u16_le(header, 28) as usize;
        let Some(name) = data.get(at + 30..at + 30 + name_len) else {
            break;
        };
        listing.add(name, flags);
        if flags & 0x0008 != 0 && compressed == 0 {
            return central_listing(data).unwrap_or(listing);
        }
        at += 30 + name_len + extra_len + compressed;
    }
    if listing.names.is_empty() {
        return central_listing(data).unwrap_or(listing);
    }
    listing
}

/// Reads the central directory named by the end-of-central-directory record.
fn central_listing(data: &[u8]) -> Option<ZipListing> {
    let tail_start = data.len().saturating_sub(65_557);
    let end = tail_start + rfind(&data[tail_start..], b"PK\x05\x06")?;
    let record = data.get(end..end + 22)?;
    let mut at = u32_le(record, 16) as usize;
    let mut listing = ZipListing::default();
    while listing.names.len() < MAX_ZIP_ENTRIES && data.get(at..at + 4) == Some(b"PK\x01\x02") {
        let header = data.get(at..at + 46)?;
        let name_len = u16_le(header, 28) as usize;
        let skip = name_len + u16_le(header, 30) as usize + u16_le(header, 32) as usize;
        listing.add(data.get(at + 46..at + 46 + name_len)?, u16_le(header, 8));
        at += 46 + skip;
    }
    Some(listing)
}

impl ZipListing {
    fn add(&mut self, name: &[u8], flags: u16) {
        let name = String::from_utf8_lossy(name).into_owned();
        self.encrypted |= flags & 0x0001 != 0;
        self.has_vba_project |= name.to_ascii_lowercase().ends_with("vbaproject.bin");
        self.names.push(name);
    }
}

/// An encrypted PDF names its security handler in an `/Encrypt` entry of its trailer.
fn pdf_is_encrypted(data: &[u8]) -> bool {
    find(data, b"/Encrypt").is_some()
}

/// What the storages and streams of an OLE compound file show.
#[derive(Debug, Default)]
struct OleInspection {
    names: Vec<String>,
    has_macros: bool,
    encrypted: bool,
}

/// Lists an OLE compound file. The cfb crate reads hostile input, so a panic inside it is
/// caught and the file is treated as unreadable.
fn ole_inspection(data: &[u8]) -> OleInspection {
    std::panic::catch_unwind(|| ole_inspection_inner(data)).unwrap_or_default()
}

fn ole_inspection_inner(data: &[u8]) -> OleInspection {
    let mut inspection = OleInspection::default();
    let Ok(mut file) = cfb::CompoundFile::open(Cursor::new(data)) else {
        return inspection;
    };
    let entries: Vec<(String, std::path::PathBuf, bool)> = file
        .walk()
        .take(MAX_ZIP_ENTRIES)
        .map(|e| (e.name().to_string(), e.path().to_path_buf(), e.is_stream()))
        .collect();
    for (name, path, is_stream) in entries {
        let lower = name.to_ascii_lowercase();
        inspection.has_macros |= !is_stream && (lower == "macros" || lower == "vba");
        inspection.has_macros |= lower == "_vba_project_cur" || lower == "_vba_project";
        inspection.encrypted |= lower == "encryptedpackage" || lower == "encryptioninfo";
        if is_stream && lower == "workbook" {
            inspection.encrypted |= workbook_has_filepass(&mut file, &path);
        }
        inspection.names.push(name);
    }
    inspection
}

/// A password-protected Excel 97 workbook carries a FILEPASS record (0x002F) right after its
/// first BOF record.
fn workbook_has_filepass(
    file: &mut cfb::CompoundFile<Cursor<&[u8]>>,
    path: &std::path::Path,
) -> bool {
    let Ok(stream) = file.open_stream(path) else {
        return false;
    };
    let mut head = Vec::new();
    if stream
        .take(MAX_OLE_STREAM_PEEK)
        .read_to_end(&mut head)
        .is_err()
        || head.len() < 4
    {
        return false;
    }
    let bof_len = u16_le(&head, 2) as usize;
    head.get(4 + bof_len..4 + bof_len + 2)
        .is_some_and(|id| id == [0x2F, 0x00])
}

/// The risky kind of a file, from what its content shows first and its name second.
fn risky_kind(extension: Option<&str>, declared: &str, content: &Content) -> Option<RiskyKind> {
    let ext = extension.unwrap_or("");
    let sniffed = content.sniffed;
    let is = |list: &[&str]| list.contains(&ext);

    if sniffed == Some(EXE) || is(&["exe", "scr", "dll", "msi", "com", "pif", "cpl", "msp"]) {
        return Some(RiskyKind::Executable);
    }
    if content.encrypted {
        return Some(RiskyKind::EncryptedContainer);
    }
    if content.has_macros
        || is(&[
            "docm", "dotm", "xlsm", "xltm", "xlam", "pptm", "potm", "ppsm", "ppam", "sldm",
        ])
    {
        return Some(RiskyKind::MacroDocument);
    }
    const SCRIPTS: &[&str] = &[
        "js", "jse", "vbs", "vbe", "vb", "ps1", "psm1", "bat", "cmd", "hta", "wsf", "wsh", "wsc",
        "sct", "jar", "reg", "msc",
    ];
    if sniffed == Some(JAR) || is(SCRIPTS) {
        return Some(RiskyKind::Script);
    }
    if matches!(sniffed, Some(ISO) | Some(VHD) | Some(VHDX)) || is(&["iso", "img", "vhd", "vhdx"]) {
        return Some(RiskyKind::DiskImage);
    }
    if sniffed == Some(LNK) || is(&["lnk", "url", "scf", "website", "library-ms", "search-ms"]) {
        return Some(RiskyKind::Shortcut);
    }
    if sniffed == Some(MOBILECONFIG) || ext == "mobileconfig" {
        return Some(RiskyKind::ConfigurationProfile);
    }
    let html_declared = declared == HTML || declared == SVG || declared == "application/xhtml+xml";
    if matches!(sniffed, Some(HTML) | Some(SVG))
        || html_declared
        || is(&["html", "htm", "shtml", "xhtml", "svg", "mht", "mhtml"])
    {
        return Some(RiskyKind::Html);
    }
    const ARCHIVES: &[&str] = &[
        "zip", "rar", "7z", "gz", "tgz", "tar", "bz2", "xz", "cab", "arj", "ace", "lz", "lzh", "z",
    ];
    if matches!(
        sniffed,
        Some(ZIP) | Some(RAR) | Some(SEVEN_Z) | Some(GZIP) | Some(CAB)
    ) || is(ARCHIVES)
    {
        return Some(RiskyKind::Archive);
    }
    None
}

/// Coarse families of file types: two types in the same family do not disagree in a way that
/// matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Pdf,
    Zip,
    Ole,
    Executable,
    Markup,
    Xml,
    Image,
    DiskImage,
    OtherArchive,
    Shortcut,
    Rtf,
}

fn family_of_type(mime: &str) -> Option<Family> {
    Some(match mime {
        PDF => Family::Pdf,
        ZIP | DOCX | XLSX | PPTX | JAR | "application/x-zip-compressed" => Family::Zip,
        OLE | DOC | XLS | PPT | MSI | MSG => Family::Ole,
        EXE | "application/x-msdos-program" | "application/x-dosexec" | "application/exe" => {
            Family::Executable
        }
        HTML | SVG | "application/xhtml+xml" => Family::Markup,
        XML | PLIST | MOBILECONFIG | "text/xml" => Family::Xml,
        ISO | VHD | VHDX | "application/x-iso-image" => Family::DiskImage,
        RAR | SEVEN_Z | GZIP | CAB | "application/x-rar-compressed" | "application/x-gzip" => {
            Family::OtherArchive
        }
        LNK => Family::Shortcut,
        RTF | "text/rtf" => Family::Rtf,
        m if m.starts_with("image/") => Family::Image,
        m if m.starts_with("application/vnd.openxmlformats-officedocument.") => Family::Zip,
        _ => return None,
    })
}

fn family_of_extension(ext: &str) -> Option<Family> {
    Some(match ext {
        "pdf" => Family::Pdf,
        "zip" | "docx" | "xlsx" | "pptx" | "docm" | "xlsm" | "pptm" | "dotx" | "dotm" | "xltx"
        | "jar" | "apk" | "odt" | "ods" | "odp" | "epub" | "xps" | "oxps" => Family::Zip,
        "doc" | "xls" | "ppt" | "msi" | "msg" | "dot" | "xlt" | "pps" | "pot" => Family::Ole,
        "exe" | "dll" | "scr" | "com" | "pif" | "cpl" | "sys" => Family::Executable,
        "html" | "htm" | "shtml" | "xhtml" | "svg" => Family::Markup,
        "xml" | "plist" | "mobileconfig" => Family::Xml,
        "jpg" | "jpeg" | "png" | "gif" | "bmp" | "tif" | "tiff" | "webp" | "ico" => Family::Image,
        "iso" | "img" | "vhd" | "vhdx" => Family::DiskImage,
        "rar" | "7z" | "gz" | "tgz" | "cab" => Family::OtherArchive,
        "lnk" => Family::Shortcut,
        "rtf" => Family::Rtf,
        _ => return None,
    })
}

/// Why the extension, the declared type and the sniffed type disagree, when two of them name
/// different families. A generic declared type (`application/octet-stream`) names none.
fn mismatch(extension: Option<&str>, declared: &str, sniffed: Option<&str>) -> Option<String> {
    let by_ext = extension.and_then(|e| Some((family_of_extension(e)?, e)));
    let by_declared = family_of_type(declared);
    let by_content = sniffed.and_then(|s| Some((family_of_type(s)?, s)));

    if let (Some((content, sniffed)), Some((named, ext))) = (by_content, by_ext)
        && content != named
        && !(named == Family::Xml && content == Family::Markup)
    {
        return Some(format!("named .{ext} but its content is {sniffed}"));
    }
    if let (Some((content, sniffed)), Some(declared_family)) = (by_content, by_declared)
        && content != declared_family
    {
        return Some(format!("declared {declared} but its content is {sniffed}"));
    }
    if let (None, Some((named, ext)), Some(declared_family)) = (by_content, by_ext, by_declared)
        && named != declared_family
    {
        return Some(format!("declared {declared} but named .{ext}"));
    }
    None
}

/// The first position of `needle` in `haystack`.
pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let last_start = haystack.len() - needle.len();
    let mut at = 0;
    while at <= last_start {
        let offset = haystack[at..=last_start].iter().position(|&b| b == first)?;
        at += offset;
        if haystack[at..].starts_with(needle) {
            return Some(at);
        }
        at += 1;
    }
    None
}

fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

pub(crate) fn u16_le(data: &[u8], at: usize) -> u16 {
    data.get(at..at + 2)
        .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]))
}

pub(crate) fn u32_le(data: &[u8], at: usize) -> u32 {
    data.get(at..at + 4)
        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}
