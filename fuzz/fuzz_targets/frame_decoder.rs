//! Fuzzes what a node does with the bytes of an inbound connection: the handshake,
//! then frames split off by the decoder and decoded into envelopes, with the input
//! fed in arbitrary chunk sizes. No input may panic.
#![no_main]

use bytes::BytesMut;
use keel_kernel::wire::{decode_envelope, read_handshake, FrameDecoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, data)) = data.split_first() else { return };
    let chunk = usize::from(chunk).max(1);
    let decoder = FrameDecoder::new(64 * 1024);
    let mut buf = BytesMut::new();
    let mut handshaken = false;
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        if !handshaken {
            match read_handshake(&mut buf) {
                Ok(Some(_)) => handshaken = true,
                Ok(None) => continue,
                Err(_) => return,
            }
        }
        loop {
            match decoder.next_frame(&mut buf) {
                Ok(Some(frame)) => {
                    if let Ok(envelope) = decode_envelope(frame) {
                        let _ = envelope.from.as_str().parse::<keel_kernel::Upid>();
                        let _ = (envelope.to.as_str(), envelope.kind.as_str(), envelope.body.len());
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
