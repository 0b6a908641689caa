//! RecordIO, the framing of Mesos's event streams: each record is its length in
//! bytes as decimal digits, a line feed, and the record (`60\n{"type":...}`), with
//! nothing between records. [`encode`] writes one; [`Decoder`] reads them back from
//! chunks cut anywhere (for Keel's own clients and the tests).

use bytes::{Bytes, BytesMut};

/// The longest length prefix read (20 digits hold any u64).
const MAX_DIGITS: usize = 20;

/// One record: `<length>\n<data>`.
pub fn encode(data: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + MAX_DIGITS + 1);
    out.extend_from_slice(data.len().to_string().as_bytes());
    out.extend_from_slice(b"\n");
    out.extend_from_slice(data);
    out.freeze()
}

/// A stream that is not RecordIO.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordIoError {
    /// The length prefix is not decimal digits followed by a line feed.
    #[error("invalid record length prefix {0:?}")]
    BadLength(String),
    /// A record is longer than the decoder takes.
    #[error("a record of {length} bytes is longer than the limit of {limit}")]
    TooLong {
        /// The record's length.
        length: usize,
        /// The limit.
        limit: usize,
    },
}

/// Reads records from bytes arriving in pieces.
#[derive(Debug)]
pub struct Decoder {
    buffer: BytesMut,
    max_record: usize,
}

impl Decoder {
    /// A decoder that refuses records longer than `max_record` bytes.
    pub fn new(max_record: usize) -> Decoder {
        Decoder { buffer: BytesMut::new(), max_record }
    }

    /// Adds bytes and returns every record now complete, in order.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Bytes>, RecordIoError> {
        self.buffer.extend_from_slice(bytes);
        let mut records = Vec::new();
        loop {
            let Some(newline) = self.buffer.iter().take(MAX_DIGITS + 1).position(|&b| b == b'\n') else {
                if self.buffer.len() > MAX_DIGITS || !self.buffer.iter().all(u8::is_ascii_digit) {
                    return Err(self.bad_prefix(self.buffer.len().min(MAX_DIGITS + 1)));
                }
                return Ok(records);
            };
            let digits = &self.buffer[..newline];
            if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                return Err(self.bad_prefix(newline));
            }
            let length: usize = std::str::from_utf8(digits)
                .ok()
                .and_then(|d| d.parse().ok())
                .ok_or_else(|| self.bad_prefix(newline))?;
            if length > self.max_record {
                return Err(RecordIoError::TooLong { length, limit: self.max_record });
            }
            if self.buffer.len() < newline + 1 + length {
                return Ok(records);
            }
            let _ = self.buffer.split_to(newline + 1);
            records.push(self.buffer.split_to(length).freeze());
        }
    }

    fn bad_prefix(&self, upto: usize) -> RecordIoError {
        RecordIoError::BadLength(String::from_utf8_lossy(&self.buffer[..upto]).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_across_any_cut() {
        let records: Vec<&[u8]> = vec![b"{\"type\":\"SUBSCRIBED\"}", b"{}", b"{\"type\":\"HEARTBEAT\"}"];
        let wire: Vec<u8> = records.iter().flat_map(|r| encode(r).to_vec()).collect();
        assert_eq!(&wire[..24], b"21\n{\"type\":\"SUBSCRIBED\"}");
        for cut in 1..wire.len() {
            let mut decoder = Decoder::new(1024);
            let mut got = decoder.feed(&wire[..cut]).unwrap();
            got.extend(decoder.feed(&wire[cut..]).unwrap());
            let got: Vec<&[u8]> = got.iter().map(|b| b.as_ref()).collect();
            assert_eq!(got, records, "cut at {cut}");
        }
        // One byte at a time.
        let mut decoder = Decoder::new(1024);
        let mut got = Vec::new();
        for byte in &wire {
            got.extend(decoder.feed(std::slice::from_ref(byte)).unwrap());
        }
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn garbage_and_oversized_records_are_errors() {
        assert!(matches!(Decoder::new(10).feed(b"x\n{}"), Err(RecordIoError::BadLength(_))));
        assert!(matches!(Decoder::new(10).feed(b"\n{}"), Err(RecordIoError::BadLength(_))));
        assert!(matches!(
            Decoder::new(10).feed(b"11\n"),
            Err(RecordIoError::TooLong { length: 11, limit: 10 })
        ));
        assert!(matches!(Decoder::new(10).feed(&[b'1'; 25]), Err(RecordIoError::BadLength(_))));
        assert!(matches!(Decoder::new(10).feed(b"12x"), Err(RecordIoError::BadLength(_))));
        // An incomplete prefix is just incomplete.
        assert_eq!(Decoder::new(10).feed(b"12").unwrap(), Vec::<Bytes>::new());
    }
}
