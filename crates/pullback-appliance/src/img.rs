//! Upgrade images (`.img`): one release's root filesystem, kernel and initramfs, with a
//! manifest signed by a release key.
//!
//! An image is a POSIX tar archive whose members come in a fixed order: `manifest.json`,
//! `manifest.sig` (the 64-byte Ed25519 signature of the manifest's bytes), then `vmlinuz`,
//! `initrd.img` and `rootfs.ext4`, each listed in the manifest with its size and SHA-256.
//! [`verify`] reads the whole file once and checks, in this order: that it is such an
//! archive, that the signature verifies with a trusted key (before the manifest is even
//! parsed), that the manifest is one this release understands, that every member has the
//! listed size and hash, and that the file ends where it should. Nothing is written before
//! all of that passed; [`VerifiedImg::copy_member`] hashes again while it copies, so a file
//! changed after the check is caught too.

use crate::keys::TrustedKeys;
use crate::release::Release;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The manifest's `format`.
pub const FORMAT: &str = "pullback-img/1";
/// The payload members, in the order they must appear.
pub const MEMBERS: [&str; 3] = ["vmlinuz", "initrd.img", "rootfs.ext4"];
const BLOCK: usize = 512;
const MANIFEST_LIMIT: u64 = 64 * 1024;
const SIGNATURE_LEN: u64 = 64;

/// The signed description of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// The release's version.
    pub version: String,
    /// The data format the release writes.
    pub data_format: u8,
    /// The oldest data format the release migrates from.
    pub oldest_data_format: u8,
    /// Build time, seconds since 1970.
    pub built: u64,
    /// The payload members.
    pub members: Vec<MemberSpec>,
}

/// One payload member as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberSpec {
    /// Its name in the archive.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256, lower-case hex.
    pub sha256: String,
}

impl Manifest {
    /// The release the image holds.
    pub fn release(&self) -> Release {
        Release {
            version: self.version.clone(),
            data_format: self.data_format,
            oldest_data_format: self.oldest_data_format,
            built: self.built,
        }
    }

    /// The listed member called `name`.
    pub fn member(&self, name: &str) -> Option<&MemberSpec> {
        self.members.iter().find(|m| m.name == name)
    }
}

/// Why an image was refused. Each names the check that failed.
#[derive(Debug, thiserror::Error)]
pub enum ImgError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        error: std::io::Error,
    },
    /// The file is not an archive of the expected shape.
    #[error("format check failed: {0}")]
    Format(String),
    /// The file ends early.
    #[error("completeness check failed: the file is truncated ({0})")]
    Truncated(String),
    /// No trusted key made the signature.
    #[error(
        "signature check failed: the manifest is not signed by a trusted release key \
         (trusted: {trusted})"
    )]
    Signature {
        /// The names of the trusted keys.
        trusted: String,
    },
    /// The signed manifest is not one this release understands.
    #[error("manifest check failed: {0}")]
    Manifest(String),
    /// A member's size differs from the manifest.
    #[error("size check failed: {member} has {found} bytes, the manifest says {expected}")]
    Size {
        /// The member.
        member: String,
        /// Per the manifest.
        expected: u64,
        /// In the file.
        found: u64,
    },
    /// A member's hash differs from the manifest.
    #[error("hash check failed: the SHA-256 of {member} is not the one in the manifest")]
    Hash {
        /// The member.
        member: String,
    },
    /// The release cannot run on the node's data.
    #[error("data format check failed: {0}")]
    DataFormat(String),
}

impl ImgError {
    fn read(path: &Path, source: std::io::Error) -> ImgError {
        if source.kind() == std::io::ErrorKind::UnexpectedEof {
            return ImgError::Truncated("it ends in the middle of a member".into());
        }
        ImgError::Read {
            path: path.display().to_string(),
            error: source,
        }
    }
}

/// An image whose signature, manifest and members all checked out.
#[derive(Debug, Clone)]
pub struct VerifiedImg {
    /// The file.
    pub path: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// The name of the trusted key that signed it.
    pub signed_by: String,
    offsets: Vec<(String, u64)>,
}

/// The manifest an image says it has, unverified: enough to tell which release it claims to
/// be, for example to skip nodes that already run it. Never a reason to write anything.
pub fn read_manifest(path: &Path) -> Result<Manifest, ImgError> {
    let file = File::open(path).map_err(|e| ImgError::read(path, e))?;
    let mut tar = TarReader::new(BufReader::new(file));
    let bytes = tar
        .small_member("manifest.json", MANIFEST_LIMIT)
        .map_err(|e| ImgError::read(path, e))??;
    parse_manifest(&bytes)
}

/// Verifies the image at `path` against `keys` (see the module documentation).
pub fn verify(path: &Path, keys: &TrustedKeys) -> Result<VerifiedImg, ImgError> {
    verify_with(path, keys, |_| Ok(()))
}

/// [`verify`], with `accept` judging the signed manifest before the payload is read, so that
/// an image for the wrong data format is refused without hashing hundreds of megabytes.
pub fn verify_with(
    path: &Path,
    keys: &TrustedKeys,
    accept: impl FnOnce(&Manifest) -> Result<(), ImgError>,
) -> Result<VerifiedImg, ImgError> {
    let file = File::open(path).map_err(|e| ImgError::read(path, e))?;
    let mut tar = TarReader::new(BufReader::with_capacity(1 << 20, file));
    let err = |e| ImgError::read(path, e);

    let manifest_bytes = tar
        .small_member("manifest.json", MANIFEST_LIMIT)
        .map_err(err)??;
    let signature = tar
        .small_member("manifest.sig", SIGNATURE_LEN)
        .map_err(err)??;
    let Some(key) = keys.verify(&manifest_bytes, &signature) else {
        let trusted: Vec<&str> = keys.keys().iter().map(|k| k.name.as_str()).collect();
        return Err(ImgError::Signature {
            trusted: trusted.join(", "),
        });
    };
    let manifest = parse_manifest(&manifest_bytes)?;
    accept(&manifest)?;

    let mut offsets = Vec::new();
    for spec in &manifest.members {
        let header = tar
            .header()
            .map_err(err)??
            .ok_or_else(|| ImgError::Truncated(format!("the archive ends before {}", spec.name)))?;
        if header.name != spec.name {
            return Err(ImgError::Format(format!(
                "expected the member {} next, found {:?}",
                spec.name, header.name
            )));
        }
        if header.size != spec.size {
            return Err(ImgError::Size {
                member: spec.name.clone(),
                expected: spec.size,
                found: header.size,
            });
        }
        offsets.push((spec.name.clone(), tar.position));
        let digest = tar.hash_member(header.size).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                ImgError::Truncated(format!("it ends inside {}", spec.name))
            } else {
                ImgError::read(path, e)
            }
        })?;
        if hex::encode(digest) != spec.sha256 {
            return Err(ImgError::Hash {
                member: spec.name.clone(),
            });
        }
    }
    tar.end().map_err(err)??;
    Ok(VerifiedImg {
        path: path.to_path_buf(),
        manifest,
        signed_by: key.name.clone(),
        offsets,
    })
}

fn parse_manifest(bytes: &[u8]) -> Result<Manifest, ImgError> {
    let manifest: Manifest = serde_json::from_slice(bytes)
        .map_err(|e| ImgError::Manifest(format!("manifest.json does not parse: {e}")))?;
    if manifest.format != FORMAT {
        return Err(ImgError::Manifest(format!(
            "the image's format is {:?}; this release reads {FORMAT:?}",
            manifest.format
        )));
    }
    let names: Vec<&str> = manifest.members.iter().map(|m| m.name.as_str()).collect();
    if names != MEMBERS {
        return Err(ImgError::Manifest(format!(
            "the manifest lists {names:?}; an image holds {MEMBERS:?}"
        )));
    }
    let bad_hash = manifest
        .members
        .iter()
        .find(|m| m.sha256.len() != 64 || !m.sha256.bytes().all(|b| b.is_ascii_hexdigit()));
    if let Some(member) = bad_hash {
        return Err(ImgError::Manifest(format!(
            "the SHA-256 of {} is not 64 hex digits",
            member.name
        )));
    }
    if manifest.data_format < manifest.oldest_data_format {
        return Err(ImgError::Manifest(
            "data_format is older than oldest_data_format".into(),
        ));
    }
    Ok(manifest)
}

impl VerifiedImg {
    /// Copies the member `name` to `out`, hashing it again, and returns its size. Fails if
    /// the bytes are not those verified (the file changed since [`verify`]).
    pub fn copy_member(&self, name: &str, out: &mut impl Write) -> Result<u64, ImgError> {
        let spec = self
            .manifest
            .member(name)
            .ok_or_else(|| ImgError::Manifest(format!("the image has no member {name}")))?;
        let offset = self
            .offsets
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, offset)| *offset)
            .expect("every listed member has an offset");
        let err = |e| ImgError::read(&self.path, e);
        let mut file = File::open(&self.path).map_err(err)?;
        file.seek(SeekFrom::Start(offset)).map_err(err)?;
        let mut reader = file.take(spec.size);
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 1 << 20];
        let mut copied = 0u64;
        loop {
            let n = reader.read(&mut buffer).map_err(err)?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            out.write_all(&buffer[..n]).map_err(err)?;
            copied += n as u64;
        }
        if copied != spec.size || hex::encode(hasher.finalize()) != spec.sha256 {
            return Err(ImgError::Hash {
                member: format!("{name} (the file changed after it was verified)"),
            });
        }
        Ok(copied)
    }
}

/// One tar header.
struct Header {
    name: String,
    size: u64,
}

/// Reads a ustar archive strictly: regular files only, checksums checked.
struct TarReader<R> {
    inner: R,
    position: u64,
}

type Checked<T> = std::io::Result<Result<T, ImgError>>;

impl<R: Read> TarReader<R> {
    fn new(inner: R) -> Self {
        TarReader { inner, position: 0 }
    }

    fn block(&mut self) -> std::io::Result<Option<[u8; BLOCK]>> {
        let mut block = [0u8; BLOCK];
        let mut filled = 0;
        while filled < BLOCK {
            let n = self.inner.read(&mut block[filled..])?;
            if n == 0 {
                return if filled == 0 {
                    Ok(None)
                } else {
                    Err(std::io::ErrorKind::UnexpectedEof.into())
                };
            }
            filled += n;
        }
        self.position += BLOCK as u64;
        Ok(Some(block))
    }

    /// The next member's header, `None` at the archive's end marker.
    fn header(&mut self) -> Checked<Option<Header>> {
        let Some(block) = self.block()? else {
            return Ok(Err(ImgError::Truncated(
                "the archive has no end marker".into(),
            )));
        };
        if block.iter().all(|&b| b == 0) {
            return Ok(Ok(None));
        }
        Ok(parse_header(&block).map(Some))
    }

    /// Reads a whole member named `name` of at most `limit` bytes.
    fn small_member(&mut self, name: &str, limit: u64) -> Checked<Vec<u8>> {
        let header = match self.header()? {
            Ok(Some(header)) => header,
            Ok(None) => return Ok(Err(ImgError::Format(format!("the archive has no {name}")))),
            Err(e) if self.position == BLOCK as u64 => {
                return Ok(Err(ImgError::Format(format!("not an upgrade image ({e})"))));
            }
            Err(e) => return Ok(Err(e)),
        };
        if header.name != name {
            return Ok(Err(ImgError::Format(format!(
                "expected {name} here, found {:?}; is this an upgrade image?",
                header.name
            ))));
        }
        if header.size > limit {
            return Ok(Err(ImgError::Format(format!(
                "{name} has {} bytes, more than the {limit} allowed",
                header.size
            ))));
        }
        let mut data = vec![0u8; header.size as usize];
        self.inner.read_exact(&mut data)?;
        self.position += header.size;
        self.skip_padding(header.size)?;
        Ok(Ok(data))
    }

    /// Hashes the next `size` bytes (the current member) and its padding.
    fn hash_member(&mut self, size: u64) -> std::io::Result<[u8; 32]> {
        let mut hasher = Sha256::new();
        let mut left = size;
        let mut buffer = vec![0u8; 1 << 20];
        while left > 0 {
            let want = left.min(buffer.len() as u64) as usize;
            let n = self.inner.read(&mut buffer[..want])?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            hasher.update(&buffer[..n]);
            left -= n as u64;
        }
        self.position += size;
        self.skip_padding(size)?;
        Ok(hasher.finalize().into())
    }

    fn skip_padding(&mut self, size: u64) -> std::io::Result<()> {
        let padding = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        let mut pad = [0u8; BLOCK];
        self.inner.read_exact(&mut pad[..padding as usize])?;
        self.position += padding;
        Ok(())
    }

    /// Checks that only the end marker and zero padding follow.
    fn end(&mut self) -> Checked<()> {
        match self.header()? {
            Ok(None) => {}
            Ok(Some(header)) => {
                return Ok(Err(ImgError::Format(format!(
                    "unexpected member {:?} after the last one",
                    header.name
                ))));
            }
            Err(e) => return Ok(Err(e)),
        }
        let mut rest = [0u8; 8192];
        loop {
            let n = self.inner.read(&mut rest)?;
            if n == 0 {
                return Ok(Ok(()));
            }
            if rest[..n].iter().any(|&b| b != 0) {
                return Ok(Err(ImgError::Format(
                    "data follows the archive's end marker".into(),
                )));
            }
        }
    }
}

fn parse_header(block: &[u8; BLOCK]) -> Result<Header, ImgError> {
    let stored = octal(&block[148..156])
        .ok_or_else(|| ImgError::Format("a tar header has no checksum".into()))?;
    let computed: u64 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                b' ' as u64
            } else {
                b as u64
            }
        })
        .sum();
    if stored != computed {
        return Err(ImgError::Format("a tar header's checksum is wrong".into()));
    }
    if &block[257..262] != b"ustar" {
        return Err(ImgError::Format(
            "the archive is not in ustar format".into(),
        ));
    }
    if !matches!(block[156], b'0' | 0) {
        return Err(ImgError::Format(format!(
            "a member is not a regular file (type {:?})",
            block[156] as char
        )));
    }
    let name_end = block[..100].iter().position(|&b| b == 0).unwrap_or(100);
    let name = String::from_utf8_lossy(&block[..name_end]).into_owned();
    let size = octal(&block[124..136])
        .ok_or_else(|| ImgError::Format(format!("the size of {name:?} is not a number")))?;
    Ok(Header { name, size })
}

fn octal(field: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(field).ok()?;
    let text = text.trim_matches(|c: char| c == '\0' || c == ' ');
    u64::from_str_radix(text, 8).ok()
}

/// Writes images as `packaging/build-image` does, for tests here and in other crates (feature
/// `testing`).
#[cfg(any(test, feature = "testing"))]
#[allow(missing_docs)]
pub mod testing {
    use super::*;

    pub fn header(name: &str, size: u64) -> [u8; BLOCK] {
        let mut h = [0u8; BLOCK];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..108].copy_from_slice(b"0000644\0");
        h[108..116].copy_from_slice(b"0000000\0");
        h[116..124].copy_from_slice(b"0000000\0");
        h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
        h[136..148].copy_from_slice(b"00000000000\0");
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|&b| b as u64).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        h
    }

    pub fn tar(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, data) in members {
            out.extend_from_slice(&header(name, data.len() as u64));
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
        }
        out.resize(out.len() + 2 * BLOCK, 0);
        out.resize(out.len().div_ceil(10240) * 10240, 0);
        out
    }

    /// The manifest of `payload` for `release`.
    pub fn manifest(release: &Release, payload: &[(&str, &[u8])]) -> Manifest {
        Manifest {
            format: FORMAT.into(),
            version: release.version.clone(),
            data_format: release.data_format,
            oldest_data_format: release.oldest_data_format,
            built: release.built,
            members: payload
                .iter()
                .map(|(name, data)| MemberSpec {
                    name: name.to_string(),
                    size: data.len() as u64,
                    sha256: hex::encode(Sha256::digest(data)),
                })
                .collect(),
        }
    }

    /// A signed image of `payload` with `manifest`.
    pub fn image(
        key: &ring::signature::Ed25519KeyPair,
        manifest: &Manifest,
        payload: &[(&str, &[u8])],
    ) -> Vec<u8> {
        let bytes = serde_json::to_vec_pretty(manifest).unwrap();
        let signature = key.sign(&bytes);
        let mut members: Vec<(&str, &[u8])> = vec![
            ("manifest.json", &bytes),
            ("manifest.sig", signature.as_ref()),
        ];
        members.extend_from_slice(payload);
        tar(&members)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    fn key(seed: u8) -> Ed25519KeyPair {
        Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap()
    }

    fn trusting(key: &Ed25519KeyPair) -> TrustedKeys {
        TrustedKeys::parse(&format!(
            "ed25519 {} release-test\n",
            hex::encode(key.public_key())
        ))
        .unwrap()
    }

    fn release() -> Release {
        Release {
            version: "0.2.0".into(),
            data_format: 1,
            oldest_data_format: 1,
            built: 1,
        }
    }

    const ROOTFS: &[u8] = &[7u8; 5000];

    fn payload() -> Vec<(&'static str, &'static [u8])> {
        vec![
            ("vmlinuz", b"kernel"),
            ("initrd.img", b"initrd!"),
            ("rootfs.ext4", ROOTFS),
        ]
    }

    fn check(bytes: &[u8], keys: &TrustedKeys) -> Result<VerifiedImg, ImgError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.img");
        std::fs::write(&path, bytes).unwrap();
        verify(&path, keys)
    }

    #[test]
    fn accepts_a_signed_image_and_copies_its_members() {
        let signer = key(1);
        let manifest = manifest(&release(), &payload());
        let bytes = image(&signer, &manifest, &payload());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ok.img");
        std::fs::write(&path, &bytes).unwrap();

        let verified = verify(&path, &trusting(&signer)).unwrap();
        assert_eq!(verified.manifest, manifest);
        assert_eq!(verified.signed_by, "release-test");
        let mut out = Vec::new();
        assert_eq!(verified.copy_member("rootfs.ext4", &mut out).unwrap(), 5000);
        assert_eq!(out, ROOTFS);

        // The file changes after verification: the copy notices.
        let mut changed = bytes.clone();
        let at = changed.windows(5000).position(|w| w == ROOTFS).unwrap();
        changed[at + 10] = 0;
        std::fs::write(&path, &changed).unwrap();
        let err = verified
            .copy_member("rootfs.ext4", &mut Vec::new())
            .unwrap_err();
        assert!(
            err.to_string().contains("changed after it was verified"),
            "{err}"
        );
    }

    #[test]
    fn refuses_bad_images_naming_the_check() {
        let signer = key(1);
        let keys = trusting(&signer);
        let good_manifest = manifest(&release(), &payload());
        let good = image(&signer, &good_manifest, &payload());

        let mut tampered = good.clone();
        let at = tampered.windows(5000).position(|w| w == ROOTFS).unwrap();
        tampered[at + 4999] ^= 1;

        let mut tampered_manifest = good.clone();
        let at = tampered_manifest
            .windows(5)
            .position(|w| w == b"0.2.0")
            .unwrap();
        tampered_manifest[at + 2] = b'9';

        let other_key = image(&key(2), &good_manifest, &payload());

        let mut wrong_size = good_manifest.clone();
        wrong_size.members[2].size = 4999;
        let wrong_size = image(&signer, &wrong_size, &payload());

        let mut wrong_format = good_manifest.clone();
        wrong_format.format = "pullback-img/9".into();
        let wrong_format = image(&signer, &wrong_format, &payload());

        let mut extra = good[..good.len() - 10240].to_vec();
        extra.extend_from_slice(&header("extra", 1));
        extra.resize(extra.len() + 10240, 0);

        let checks: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "tampered payload",
                tampered,
                "hash check failed: the SHA-256 of rootfs.ext4",
            ),
            (
                "tampered manifest",
                tampered_manifest,
                "signature check failed",
            ),
            (
                "other key",
                other_key,
                "not signed by a trusted release key (trusted: release-test)",
            ),
            ("truncated in a member", good[..3000].to_vec(), "truncated"),
            (
                "truncated before the end",
                good[..good.len() - 10240].to_vec(),
                "truncated",
            ),
            ("empty", Vec::new(), "truncated"),
            (
                "not a tar",
                vec![b'x'; 4096],
                "format check failed: not an upgrade image",
            ),
            (
                "wrong size",
                wrong_size,
                "size check failed: rootfs.ext4 has 5000 bytes",
            ),
            ("unknown format", wrong_format, "manifest check failed"),
            (
                "trailing member",
                extra,
                "format check failed: unexpected member",
            ),
        ];
        for (what, bytes, words) in checks {
            let err = check(&bytes, &keys).unwrap_err().to_string();
            assert!(err.contains(words), "{what}: {err}");
        }
    }
}
