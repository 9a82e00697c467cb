//! The envelope of every value Pullback writes to disk or into a Raft entry.
//!
//! A stored value is one format byte followed by JSON. Readers accept every format they know
//! and refuse newer ones with an error that says so, which is what lets a newer release read
//! an older database and an older release refuse a newer one instead of misreading it.

use serde::{Serialize, de::DeserializeOwned};

/// The data format this build writes. Raise it when a stored shape changes incompatibly, and
/// teach [`decode`] to upgrade the older shape.
pub const DATA_FORMAT: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("empty value")]
    Empty,
    #[error("value has data format {found}, this build reads formats up to {DATA_FORMAT}")]
    TooNew { found: u8 },
    #[error("value has unknown data format 0")]
    Unknown,
    #[error("value of data format {format} does not decode: {source}")]
    Json {
        format: u8,
        source: serde_json::Error,
    },
}

/// Encodes a value in the current data format.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.push(DATA_FORMAT);
    // Serialising plain data structs to a Vec cannot fail.
    serde_json::to_writer(&mut out, value).expect("domain values serialise to JSON");
    out
}

/// Decodes a value written by this or an older release.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let (&format, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
    match format {
        0 => Err(DecodeError::Unknown),
        1 => serde_json::from_slice(body).map_err(|source| DecodeError::Json { format, source }),
        found => Err(DecodeError::TooNew { found }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_newer_formats() {
        let bytes = encode(&vec![1u32, 2]);
        assert_eq!(bytes[0], DATA_FORMAT);
        assert_eq!(decode::<Vec<u32>>(&bytes).unwrap(), vec![1, 2]);

        let mut newer = bytes.clone();
        newer[0] = DATA_FORMAT + 1;
        let err = decode::<Vec<u32>>(&newer).unwrap_err();
        assert!(err.to_string().contains("reads formats up to"), "{err}");
        assert!(matches!(decode::<Vec<u32>>(&[]), Err(DecodeError::Empty)));
    }
}
