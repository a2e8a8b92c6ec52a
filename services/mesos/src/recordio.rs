//! RecordIO framing of Mesos streaming responses: `<decimal length>\n<bytes>`, shared by
//! the master (encoding), the agent and frameworks such as Marathon (decoding).
//!
//! Proxies may re-chunk a stream arbitrarily, so [`Decoder`] parses the byte stream,
//! not HTTP chunks.

use bytes::{Buf, Bytes, BytesMut};

/// The longest record [`Decoder`] accepts (64 MiB), so a corrupt length cannot make a
/// reader allocate without bound.
pub const MAX_RECORD_LEN: usize = 64 << 20;

/// Frames one record.
pub fn encode(record: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(record.len() + 12);
    out.extend_from_slice(record.len().to_string().as_bytes());
    out.extend_from_slice(b"\n");
    out.extend_from_slice(record);
    out.freeze()
}

/// A malformed RecordIO stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordIoError {
    /// The length prefix is not a decimal number.
    #[error("invalid RecordIO length prefix {prefix:?}")]
    BadLength {
        /// The text found before the newline.
        prefix: String,
    },
    /// The length exceeds [`MAX_RECORD_LEN`].
    #[error("RecordIO record of {len} bytes exceeds the limit of {MAX_RECORD_LEN}")]
    TooLong {
        /// The announced length.
        len: usize,
    },
}

/// Incremental RecordIO parser: feed bytes, take complete records.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: BytesMut,
}

impl Decoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete record, if one is buffered.
    pub fn next_record(&mut self) -> Result<Option<Bytes>, RecordIoError> {
        let Some(nl) = self.buf.iter().position(|b| *b == b'\n') else {
            if self.buf.len() > 20 {
                return Err(RecordIoError::BadLength {
                    prefix: String::from_utf8_lossy(&self.buf[..20]).into_owned(),
                });
            }
            return Ok(None);
        };
        let prefix = &self.buf[..nl];
        let len: usize = std::str::from_utf8(prefix)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| RecordIoError::BadLength {
                prefix: String::from_utf8_lossy(prefix).into_owned(),
            })?;
        if len > MAX_RECORD_LEN {
            return Err(RecordIoError::TooLong { len });
        }
        if self.buf.len() < nl + 1 + len {
            return Ok(None);
        }
        self.buf.advance(nl + 1);
        Ok(Some(self.buf.split_to(len).freeze()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_across_arbitrary_chunks() {
        let a = encode(br#"{"type":"HEARTBEAT"}"#);
        assert_eq!(&a[..], b"20\n{\"type\":\"HEARTBEAT\"}");
        let b = encode(b"xyz");
        let all: Vec<u8> = [a.as_ref(), b.as_ref()].concat();
        for split in 0..all.len() {
            let mut d = Decoder::new();
            let mut got = Vec::new();
            d.feed(&all[..split]);
            while let Some(r) = d.next_record().unwrap() {
                got.push(r);
            }
            d.feed(&all[split..]);
            while let Some(r) = d.next_record().unwrap() {
                got.push(r);
            }
            assert_eq!(got.len(), 2, "split at {split}");
            assert_eq!(&got[1][..], b"xyz");
        }
    }

    #[test]
    fn bad_prefix_is_an_error() {
        let mut d = Decoder::new();
        d.feed(b"abc\n{}");
        assert!(matches!(
            d.next_record(),
            Err(RecordIoError::BadLength { .. })
        ));
    }
}
