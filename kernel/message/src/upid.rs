//! `Upid`: the name of an actor on a node, `name@host:port`, like libprocess's UPID.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Errors from parsing a [`Upid`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpidError {
    /// The string has no `@` separating name from address.
    #[error("upid {0:?} has no '@' (expected name@host:port)")]
    MissingAt(String),
    /// The name part is empty or contains characters that are not allowed.
    #[error("upid {0:?} has an invalid name (non-empty, no whitespace, '@', '/' or ':')")]
    InvalidName(String),
    /// The address part is not `host:port`.
    #[error("upid {0:?} has an invalid address (expected host:port)")]
    InvalidAddress(String),
    /// The port is not a number in 1..=65535.
    #[error("upid {0:?} has an invalid port")]
    InvalidPort(String),
}

/// An actor's address: `name@host:port`.
///
/// Parses, prints and serialises as exactly that string. Cloning is cheap (the
/// parts are shared), and the full text is kept, so writing a UPID into every
/// frame costs no formatting.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Upid {
    name: Arc<str>,
    node: NodeAddr,
    text: Arc<str>,
}

/// A node's address, `host:port`: what a connection is opened to.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeAddr {
    host: Arc<str>,
    port: u16,
}

impl NodeAddr {
    /// A node address from its parts. The host must be non-empty and free of whitespace.
    pub fn new(host: &str, port: u16) -> Result<NodeAddr, UpidError> {
        let bad = host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '@' || c == '/');
        if bad || port == 0 {
            return Err(UpidError::InvalidAddress(format!("{host}:{port}")));
        }
        Ok(NodeAddr { host: host.into(), port })
    }

    /// The host part (an IP address or a host name).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl FromStr for NodeAddr {
    type Err = UpidError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (host, port) = s.rsplit_once(':').ok_or_else(|| UpidError::InvalidAddress(s.to_string()))?;
        let port: u16 = port.parse().map_err(|_| UpidError::InvalidPort(s.to_string()))?;
        if port == 0 {
            return Err(UpidError::InvalidPort(s.to_string()));
        }
        NodeAddr::new(host, port).map_err(|_| UpidError::InvalidAddress(s.to_string()))
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl fmt::Debug for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Checks an actor name: non-empty, at most 255 bytes, no whitespace, `@`, `/` or `:`.
pub fn validate_name(name: &str) -> Result<(), UpidError> {
    let bad = name.is_empty()
        || name.len() > 255
        || name.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '@' | '/' | ':'));
    if bad {
        Err(UpidError::InvalidName(name.to_string()))
    } else {
        Ok(())
    }
}

impl Upid {
    /// A UPID from a name and a node address.
    pub fn new(name: &str, node: NodeAddr) -> Result<Upid, UpidError> {
        validate_name(name)?;
        let text = format!("{name}@{node}").into();
        Ok(Upid { name: name.into(), node, text })
    }

    /// The UPID as text, `name@host:port`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The actor's name on its node.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The node the actor lives on.
    pub fn node(&self) -> &NodeAddr {
        &self.node
    }
}

impl FromStr for Upid {
    type Err = UpidError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, addr) = s.split_once('@').ok_or_else(|| UpidError::MissingAt(s.to_string()))?;
        validate_name(name).map_err(|_| UpidError::InvalidName(s.to_string()))?;
        let node = addr.parse::<NodeAddr>().map_err(|e| match e {
            UpidError::InvalidPort(_) => UpidError::InvalidPort(s.to_string()),
            _ => UpidError::InvalidAddress(s.to_string()),
        })?;
        Upid::new(name, node)
    }
}

impl fmt::Display for Upid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Upid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Upid {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Upid {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_the_same_string() {
        let upid: Upid = "master@127.0.0.1:5050".parse().unwrap();
        assert_eq!(upid.name(), "master");
        assert_eq!(upid.node().host(), "127.0.0.1");
        assert_eq!(upid.node().port(), 5050);
        assert_eq!(upid.to_string(), "master@127.0.0.1:5050");
        let v6: Upid = "agent@[::1]:5051".parse().unwrap();
        assert_eq!(v6.node().host(), "[::1]");
        assert_eq!(v6.to_string(), "agent@[::1]:5051");
    }

    #[test]
    fn rejects_bad_strings() {
        for bad in [
            "",
            "master",
            "@127.0.0.1:5050",
            "master@",
            "master@127.0.0.1",
            "master@127.0.0.1:",
            "master@127.0.0.1:0",
            "master@127.0.0.1:70000",
            "master@127.0.0.1:abc",
            "ma ster@127.0.0.1:5050",
            "master@:5050",
            "a/b@h:1",
        ] {
            assert!(bad.parse::<Upid>().is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn serde_is_the_string() {
        let upid: Upid = "scheduler-1@10.0.0.2:7000".parse().unwrap();
        let json = serde_json::to_string(&upid).unwrap();
        assert_eq!(json, "\"scheduler-1@10.0.0.2:7000\"");
        let back: Upid = serde_json::from_str(&json).unwrap();
        assert_eq!(back, upid);
        let packed = rmp_serde::to_vec(&upid).unwrap();
        assert_eq!(rmp_serde::from_slice::<Upid>(&packed).unwrap(), upid);
        assert!(serde_json::from_str::<Upid>("\"nope\"").is_err());
    }
}
