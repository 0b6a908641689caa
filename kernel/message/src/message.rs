//! Typed messages: a plain serde type with a stable kind name, encoded with rmp-serde.
//!
//! Bodies are MessagePack maps keyed by field name, so a decoder skips fields it
//! does not know and treats missing `Option` fields as `None`: nodes of adjacent
//! versions interoperate. Add `#[serde(default)]` to non-optional fields added later.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A message actors exchange. Implement it with [`message!`](crate::message).
pub trait Message: Serialize + DeserializeOwned + Send + 'static {
    /// The stable, unique kind name on the wire, e.g. `keel.agent.RunTask`.
    const KIND: &'static str;

    /// What the message is about, for its trace events: `add(label, id)` for each
    /// (e.g. `("task", "t1")`). The kernel records them without knowing what they
    /// mean; tools filter by them. None by default.
    fn subjects<'a>(&'a self, add: &mut dyn FnMut(&'static str, &'a str)) {
        let _ = add;
    }
}

/// Declares a serde type as a Keel message with its kind name, in one line, and
/// optionally what it is about (its trace subjects):
///
/// ```
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Serialize, Deserialize)]
/// pub struct Ping {
///     pub seq: u64,
/// }
/// keel_message::message!(Ping, "keel.example.Ping");
///
/// #[derive(Debug, Serialize, Deserialize)]
/// pub struct Launch {
///     pub task: String,
/// }
/// keel_message::message!(Launch, "keel.example.Launch", |m, add| add("task", &m.task));
///
/// use keel_message::Message;
/// assert_eq!(Ping::KIND, "keel.example.Ping");
/// let mut seen = Vec::new();
/// Launch { task: "t1".into() }.subjects(&mut |label, id| seen.push((label, id.to_string())));
/// assert_eq!(seen, [("task", "t1".to_string())]);
/// ```
#[macro_export]
macro_rules! message {
    ($ty:ty, $kind:expr) => {
        impl $crate::Message for $ty {
            const KIND: &'static str = $kind;
        }
    };
    ($ty:ty, $kind:expr, |$m:ident, $add:ident| $body:expr) => {
        impl $crate::Message for $ty {
            const KIND: &'static str = $kind;
            fn subjects<'a>(&'a self, $add: &mut dyn FnMut(&'static str, &'a str)) {
                let $m = self;
                $body
            }
        }
    };
}

/// Encodes a message body (MessagePack map with field names) onto `out`.
pub fn encode_into<M: Serialize, W: std::io::Write>(
    message: &M,
    out: &mut W,
) -> Result<(), rmp_serde::encode::Error> {
    message.serialize(&mut rmp_serde::Serializer::new(out).with_struct_map())
}

/// Encodes a message body into a fresh vector.
pub fn encode<M: Serialize>(message: &M) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    let mut out = Vec::with_capacity(64);
    encode_into(message, &mut out)?;
    Ok(out)
}

/// Decodes a message body.
pub fn decode<M: DeserializeOwned>(body: &[u8]) -> Result<M, rmp_serde::decode::Error> {
    rmp_serde::from_slice(body)
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    mod v1 {
        use super::*;
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        pub struct RegisterAgent {
            pub hostname: String,
            pub cpus: f64,
        }
        crate::message!(RegisterAgent, "keel.test.RegisterAgent");
    }

    mod v2 {
        use super::*;
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        pub struct RegisterAgent {
            pub hostname: String,
            pub cpus: f64,
            pub attributes: Option<Vec<String>>,
            #[serde(default)]
            pub gpus: u32,
        }
        crate::message!(RegisterAgent, "keel.test.RegisterAgent");
    }

    #[test]
    fn new_reader_accepts_old_message_with_missing_optional_fields() {
        let old = v1::RegisterAgent { hostname: "a1".into(), cpus: 4.0 };
        let decoded: v2::RegisterAgent = decode(&encode(&old).unwrap()).unwrap();
        assert_eq!(
            decoded,
            v2::RegisterAgent { hostname: "a1".into(), cpus: 4.0, attributes: None, gpus: 0 }
        );
    }

    #[test]
    fn old_reader_skips_unknown_fields_of_new_message() {
        let new = v2::RegisterAgent {
            hostname: "a2".into(),
            cpus: 2.0,
            attributes: Some(vec!["rack:1".into()]),
            gpus: 1,
        };
        let decoded: v1::RegisterAgent = decode(&encode(&new).unwrap()).unwrap();
        assert_eq!(decoded, v1::RegisterAgent { hostname: "a2".into(), cpus: 2.0 });
    }

    #[test]
    fn kinds_are_the_same_across_versions() {
        assert_eq!(<v1::RegisterAgent as Message>::KIND, <v2::RegisterAgent as Message>::KIND);
    }

    #[test]
    fn garbage_body_is_an_error_not_a_panic() {
        assert!(decode::<v1::RegisterAgent>(&[0xc1, 0xff, 0x00]).is_err());
        assert!(decode::<v1::RegisterAgent>(&[]).is_err());
    }
}
