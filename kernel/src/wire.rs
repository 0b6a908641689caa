//! The wire format: a handshake, then length-prefixed frames each carrying one envelope.
//!
//! ```text
//! handshake := "KEEL" version:u16 addr_len:u16 addr          (the sender node's host:port)
//! frame     := len:u32 payload                                (len <= max frame size)
//! payload   := id:u64 parent:u64 from_len:u16 from to_len:u16 to kind_len:u16 kind body
//! ```
//! Integers are big-endian; `parent` 0 means "no parent"; strings are UTF-8; the body
//! is the rmp-serde encoding of the message and runs to the end of the frame.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::WireError;
use crate::upid::NodeAddr;

/// The four bytes that open every Keel connection.
pub const MAGIC: [u8; 4] = *b"KEEL";
/// The protocol version this node speaks.
pub const PROTOCOL_VERSION: u16 = 1;
/// The default maximum frame size: 16 MiB.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

const FIXED_HEADER: usize = 8 + 8 + 2 + 2 + 2;

/// A decoded envelope. String fields are views into the frame (no copies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The message id.
    pub id: u64,
    /// The id of the message being handled when this one was sent, 0 for none.
    pub parent: u64,
    /// The sender's UPID as text.
    pub from: Text,
    /// The target actor's name on the receiving node.
    pub to: Text,
    /// The message kind.
    pub kind: Text,
    /// The encoded body.
    pub body: Bytes,
}

/// Validated UTF-8 held in shared bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Text(Bytes);

impl Text {
    fn new(bytes: Bytes) -> Result<Text, WireError> {
        std::str::from_utf8(&bytes).map_err(|_| WireError::Malformed("field is not UTF-8".into()))?;
        Ok(Text(bytes))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Validated in `Text::new`; cannot fail.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Writes the handshake a connecting node sends first.
pub fn write_handshake(out: &mut BytesMut, sender: &NodeAddr) {
    let addr = sender.to_string();
    out.put_slice(&MAGIC);
    out.put_u16(PROTOCOL_VERSION);
    out.put_u16(addr.len() as u16);
    out.put_slice(addr.as_bytes());
}

/// Reads a handshake from the front of `buf`: `Ok(None)` until it is complete.
pub fn read_handshake(buf: &mut BytesMut) -> Result<Option<NodeAddr>, WireError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let magic: [u8; 4] = [buf[0], buf[1], buf[2], buf[3]];
    if magic != MAGIC {
        return Err(WireError::BadMagic(magic));
    }
    if buf.len() < 8 {
        return Ok(None);
    }
    let version = u16::from_be_bytes([buf[4], buf[5]]);
    if version != PROTOCOL_VERSION {
        return Err(WireError::UnsupportedVersion(version));
    }
    let len = u16::from_be_bytes([buf[6], buf[7]]) as usize;
    if buf.len() < 8 + len {
        return Ok(None);
    }
    let addr = std::str::from_utf8(&buf[8..8 + len])
        .map_err(|_| WireError::Malformed("handshake address is not UTF-8".into()))?
        .parse::<NodeAddr>()
        .map_err(|e| WireError::Malformed(e.to_string()))?;
    buf.advance(8 + len);
    Ok(Some(addr))
}

/// The header fields of a frame being written.
#[derive(Debug, Clone, Copy)]
pub struct Header<'a> {
    /// Message id.
    pub id: u64,
    /// Causal parent id, 0 for none.
    pub parent: u64,
    /// Sender UPID text.
    pub from: &'a str,
    /// Target actor name.
    pub to: &'a str,
    /// Message kind.
    pub kind: &'a str,
}

/// Why a frame could not be written.
#[derive(Debug)]
pub enum WriteError {
    /// A header field is longer than 65535 bytes, or the frame exceeds the maximum.
    TooLarge,
    /// The body's encoder failed.
    Encode(String),
}

/// The bytes a frame adds around its body: the length prefix and the header.
pub fn frame_overhead(header: &Header<'_>) -> usize {
    4 + FIXED_HEADER + header.from.len() + header.to.len() + header.kind.len()
}

/// Appends one frame to `out`, encoding the body in place with `body`; returns the
/// frame's length.
///
/// On error `out` is left as it was.
pub fn write_frame<F, E>(
    out: &mut BytesMut,
    max_frame: usize,
    header: Header<'_>,
    body: F,
) -> Result<usize, WriteError>
where
    F: FnOnce(&mut bytes::buf::Writer<&mut BytesMut>) -> Result<(), E>,
    E: std::fmt::Display,
{
    let start = out.len();
    let fields = [header.from, header.to, header.kind];
    if fields.iter().any(|f| f.len() > u16::MAX as usize) {
        return Err(WriteError::TooLarge);
    }
    out.reserve(4 + FIXED_HEADER + header.from.len() + header.to.len() + header.kind.len() + 128);
    out.put_u32(0);
    out.put_u64(header.id);
    out.put_u64(header.parent);
    for field in fields {
        out.put_u16(field.len() as u16);
        out.put_slice(field.as_bytes());
    }
    let mut writer = BufMut::writer(&mut *out);
    if let Err(e) = body(&mut writer) {
        out.truncate(start);
        return Err(WriteError::Encode(e.to_string()));
    }
    let len = out.len() - start - 4;
    if len > max_frame {
        out.truncate(start);
        return Err(WriteError::TooLarge);
    }
    out[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(len + 4)
}

/// Splits complete frames off a receive buffer.
#[derive(Debug, Clone, Copy)]
pub struct FrameDecoder {
    max_frame: usize,
}

impl FrameDecoder {
    /// A decoder refusing frames larger than `max_frame` bytes.
    pub fn new(max_frame: usize) -> FrameDecoder {
        FrameDecoder { max_frame }
    }

    /// Takes the next complete frame's payload off the front of `buf`.
    /// `Ok(None)` means more bytes are needed; an oversized prefix is fatal.
    pub fn next_frame(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, WireError> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len > self.max_frame {
            return Err(WireError::Oversized { len, max: self.max_frame });
        }
        if buf.len() < 4 + len {
            buf.reserve(4 + len - buf.len());
            return Ok(None);
        }
        buf.advance(4);
        Ok(Some(buf.split_to(len).freeze()))
    }
}

/// Decodes one frame's payload into an envelope.
pub fn decode_envelope(mut frame: Bytes) -> Result<Envelope, WireError> {
    if frame.len() < FIXED_HEADER {
        return Err(WireError::Truncated("header"));
    }
    let id = frame.get_u64();
    let parent = frame.get_u64();
    let from = take_field(&mut frame, "from")?;
    let to = take_field(&mut frame, "to")?;
    let kind = take_field(&mut frame, "kind")?;
    if to.as_str().is_empty() || kind.as_str().is_empty() {
        return Err(WireError::Malformed("empty target or kind".into()));
    }
    Ok(Envelope { id, parent, from, to, kind, body: frame })
}

fn take_field(frame: &mut Bytes, name: &'static str) -> Result<Text, WireError> {
    if frame.len() < 2 {
        return Err(WireError::Truncated(name));
    }
    let len = frame.get_u16() as usize;
    if frame.len() < len {
        return Err(WireError::Truncated(name));
    }
    Text::new(frame.split_to(len))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn frame_of(header: Header<'_>, body: &[u8]) -> BytesMut {
        let mut out = BytesMut::new();
        write_frame(&mut out, DEFAULT_MAX_FRAME_BYTES, header, |w| std::io::Write::write_all(w, body))
            .unwrap();
        out
    }

    proptest! {
        #[test]
        fn envelope_round_trips(
            id in any::<u64>(),
            parent in any::<u64>(),
            from in "[a-z0-9_-]{1,20}@[a-z0-9.]{1,15}:[1-9][0-9]{0,4}",
            to in "[a-zA-Z0-9_()-]{1,40}",
            kind in "[a-zA-Z.]{1,60}",
            body in proptest::collection::vec(any::<u8>(), 0..512),
            split in 0usize..600,
        ) {
            let header = Header { id, parent, from: &from, to: &to, kind: &kind };
            let mut wire = frame_of(header, &body);
            let decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES);
            // Feed the bytes in two pieces: a partial frame is never returned.
            let split = split.min(wire.len());
            let rest = wire.split_off(split);
            let mut buf = wire;
            let first = decoder.next_frame(&mut buf).unwrap();
            if split < buf.len() + rest.len() {
                prop_assert!(first.is_none() || rest.is_empty());
            }
            buf.extend_from_slice(&rest);
            let frame = match first { Some(f) => f, None => decoder.next_frame(&mut buf).unwrap().unwrap() };
            prop_assert!(buf.is_empty());
            let env = decode_envelope(frame).unwrap();
            prop_assert_eq!(env.id, id);
            prop_assert_eq!(env.parent, parent);
            prop_assert_eq!(env.from.as_str(), from.as_str());
            prop_assert_eq!(env.to.as_str(), to.as_str());
            prop_assert_eq!(env.kind.as_str(), kind.as_str());
            prop_assert_eq!(&env.body[..], &body[..]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut buf = BytesMut::from(&bytes[..]);
            let _ = read_handshake(&mut buf.clone());
            let decoder = FrameDecoder::new(1024);
            while let Ok(Some(frame)) = decoder.next_frame(&mut buf) {
                let _ = decode_envelope(frame);
            }
        }
    }

    #[test]
    fn oversized_prefix_is_fatal() {
        let mut buf = BytesMut::new();
        buf.put_u32(1025);
        let err = FrameDecoder::new(1024).next_frame(&mut buf).unwrap_err();
        assert_eq!(err, WireError::Oversized { len: 1025, max: 1024 });
        assert!(err.is_fatal());
    }

    #[test]
    fn truncated_envelope_is_an_error() {
        let mut buf = BytesMut::new();
        buf.put_u32(10);
        buf.put_slice(&[0; 10]);
        let frame = FrameDecoder::new(1024).next_frame(&mut buf).unwrap().unwrap();
        assert_eq!(decode_envelope(frame).unwrap_err(), WireError::Truncated("header"));
    }

    #[test]
    fn handshake_round_trips_and_rejects_bad_magic() {
        let addr: NodeAddr = "127.0.0.1:5050".parse().unwrap();
        let mut buf = BytesMut::new();
        write_handshake(&mut buf, &addr);
        buf.put_slice(b"rest");
        assert_eq!(read_handshake(&mut buf).unwrap(), Some(addr));
        assert_eq!(&buf[..], b"rest");
        let mut bad = BytesMut::from(&b"NOPE\x00\x01"[..]);
        assert_eq!(read_handshake(&mut bad).unwrap_err(), WireError::BadMagic(*b"NOPE"));
    }

    #[test]
    fn frame_larger_than_max_is_not_written() {
        let mut out = BytesMut::from(&b"keep"[..]);
        let header = Header { id: 1, parent: 0, from: "a@h:1", to: "b", kind: "k" };
        let res = write_frame(&mut out, 16, header, |w| std::io::Write::write_all(w, &[0u8; 64]));
        assert!(matches!(res, Err(WriteError::TooLarge)));
        assert_eq!(&out[..], b"keep");
    }
}
