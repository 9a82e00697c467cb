//! Which release a root slot holds: `/usr/lib/pullback/release.json`, written by
//! `packaging/build-image` and repeated in every upgrade image's signed manifest.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// A release of the appliance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// The release version, e.g. `0.2.0`.
    pub version: String,
    /// The data format this release writes (`pullback_domain::versioned::DATA_FORMAT`).
    pub data_format: u8,
    /// The oldest data format this release reads and migrates forward.
    pub oldest_data_format: u8,
    /// When it was built, in seconds since 1970 (SOURCE_DATE_EPOCH).
    #[serde(default)]
    pub built: u64,
}

/// Why a release file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// The file could not be read.
    #[error("cannot read the release file {path}: {error}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        error: std::io::Error,
    },
    /// The file is not the JSON of a release.
    #[error("the release file {path} is not valid: {error}")]
    Parse {
        /// The file.
        path: String,
        /// Why.
        error: serde_json::Error,
    },
}

impl Release {
    /// Reads a release file.
    pub fn read(path: &Path) -> Result<Release, ReleaseError> {
        let text = std::fs::read(path).map_err(|source| ReleaseError::Read {
            path: path.display().to_string(),
            error: source,
        })?;
        serde_json::from_slice(&text).map_err(|source| ReleaseError::Parse {
            path: path.display().to_string(),
            error: source,
        })
    }

    /// Whether this release can run on data written in `format`: it reads it, possibly
    /// after migrating it forward. `Err` says why not.
    pub fn can_run_on(&self, format: u8) -> Result<(), String> {
        if format > self.data_format {
            return Err(format!(
                "release {} writes data format {} but the node's data is already in format \
                 {format}; a release cannot go back to an older data format",
                self.version, self.data_format
            ));
        }
        if format < self.oldest_data_format {
            return Err(format!(
                "release {} migrates data from format {} onwards, but the node's data is in \
                 format {format}; upgrade through an intermediate release first",
                self.version, self.oldest_data_format
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(data_format: u8, oldest: u8) -> Release {
        Release {
            version: "9.9.9".into(),
            data_format,
            oldest_data_format: oldest,
            built: 0,
        }
    }

    #[test]
    fn runs_on_the_formats_between_its_oldest_and_its_own() {
        let checks = [
            (release(2, 1), 1, None),
            (release(2, 1), 2, None),
            (
                release(2, 1),
                3,
                Some("cannot go back to an older data format"),
            ),
            (release(3, 2), 1, Some("intermediate release")),
        ];
        for (release, format, refusal) in checks {
            let result = release.can_run_on(format);
            match refusal {
                None => assert!(result.is_ok(), "{release:?} on {format}: {result:?}"),
                Some(words) => {
                    let err = result.unwrap_err();
                    assert!(err.contains(words), "{release:?} on {format}: {err}");
                }
            }
        }
    }
}
