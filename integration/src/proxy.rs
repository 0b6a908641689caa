//! A TCP proxy on loopback for fault tests with real processes: put in front of
//! a node (which advertises the proxy's port), it carries one direction of the
//! node's traffic. It can cut every connection through it (and refuse new ones)
//! until restored, and drop the next frames of a given message kind (it reads
//! Keel's wire format; other traffic, HTTP included, passes as bytes).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use keel_kernel::wire;

#[derive(Debug, Default)]
struct Shared {
    cut: AtomicBool,
    /// Message kinds to drop, with how many more of each.
    drops: Mutex<Vec<(String, u32)>>,
    dropped: AtomicU64,
    /// Live sockets (both ends), to cut.
    live: Mutex<Vec<TcpStream>>,
}

impl Shared {
    fn should_drop(&self, kind: &str) -> bool {
        let mut drops = self.drops.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = drops.iter_mut().find(|(k, n)| k == kind && *n > 0) {
            entry.1 -= 1;
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        false
    }
}

/// A running proxy.
#[derive(Debug)]
pub struct Proxy {
    port: u16,
    shared: Arc<Shared>,
}

/// A free loopback port (bound, then released: good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

impl Proxy {
    /// A proxy on a free loopback port forwarding to `target`.
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy binds");
        let port = listener.local_addr().expect("bound").port();
        let shared = Arc::new(Shared::default());
        let accepting = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if accepting.cut.load(Ordering::Relaxed) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                if let (Ok(a), Ok(b)) = (client.try_clone(), server.try_clone()) {
                    let mut live = accepting.live.lock().unwrap_or_else(|p| p.into_inner());
                    live.push(a);
                    live.push(b);
                }
                let (Ok(client_in), Ok(server_out)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                let shared = accepting.clone();
                std::thread::spawn(move || forward_frames(client_in, server_out, &shared));
                std::thread::spawn(move || copy(server, client));
            }
        });
        Proxy { port, shared }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Closes every connection through it and refuses new ones until `restore`.
    pub fn cut(&self) {
        self.shared.cut.store(true, Ordering::Relaxed);
        let mut live = self.shared.live.lock().unwrap_or_else(|p| p.into_inner());
        for socket in live.drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.shared.cut.store(false, Ordering::Relaxed);
    }

    /// Drops the next `count` messages of `kind` going to the target.
    pub fn drop_next(&self, kind: &str, count: u32) {
        self.shared.drops.lock().unwrap_or_else(|p| p.into_inner()).push((kind.to_string(), count));
    }

    /// Messages dropped so far.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

fn copy(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Both);
}

/// Forwards a Keel connection frame by frame (dropping the kinds asked for), or
/// anything else as bytes.
fn forward_frames(mut from: TcpStream, mut to: TcpStream, shared: &Shared) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut keel: Option<bool> = None;
    let decoder = wire::FrameDecoder::new(wire::DEFAULT_MAX_FRAME_BYTES);
    loop {
        let n = match from.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        if keel.is_none() && buf.len() >= 4 {
            keel = Some(buf[..4] == wire::MAGIC);
            if keel == Some(true) {
                // The handshake goes through as it is.
                let before = buf.len();
                let mut probe = buf.clone();
                match wire::read_handshake(&mut probe) {
                    Ok(Some(_)) => {
                        let used = before - probe.len();
                        if to.write_all(&buf.split_to(used)).is_err() {
                            break;
                        }
                    }
                    Ok(None) => {
                        keel = None;
                        continue;
                    }
                    Err(_) => keel = Some(false),
                }
            }
        }
        match keel {
            None => continue,
            Some(false) => {
                if to.write_all(&buf.split()).is_err() {
                    break;
                }
            }
            Some(true) => loop {
                match decoder.next_frame(&mut buf) {
                    Ok(Some(payload)) => {
                        let kind =
                            wire::decode_envelope(payload.clone()).map(|e| e.kind.as_str().to_string());
                        if kind.as_deref().is_ok_and(|k| shared.should_drop(k)) {
                            continue;
                        }
                        let mut framed = Vec::with_capacity(payload.len() + 4);
                        framed.extend_from_slice(&(payload.len() as u32).to_be_bytes());
                        framed.extend_from_slice(&payload);
                        if to.write_all(&framed).is_err() {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(_) => return,
                }
            },
        }
    }
    let _ = to.shutdown(Shutdown::Both);
}
