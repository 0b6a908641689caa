//! A serde deserializer that makes up values: whatever type asks, it answers
//! from a seeded generator, with a bias to the absurd (NaN, infinities, huge
//! numbers, empty and very long strings, names of things that exist and things that
//! do not). The property tests feed the cores every message kind built this way.

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, VariantAccess, Visitor};

/// Strings the generator likes: valid UPIDs and ids the tests use, and junk.
pub const WORDS: &[&str] = &[
    "",
    "*",
    "ads",
    "agent@127.0.0.1:5051",
    "master@127.0.0.1:5050",
    "scheduler@127.0.0.1:6000",
    "executor@127.0.0.1:7000",
    "x@10.0.0.1:1",
    "M-7-S0",
    "M-7-F0",
    "M-7-O0",
    "F1",
    "S1",
    "t1",
    "E",
    "cpus",
    "mem",
    "cpus:1;mem:64",
    "cpus(ads,dynamic):1",
    "../../etc/passwd",
    "not a upid",
    "\u{0}\u{7f}",
];

/// The error a made-up value can carry.
#[derive(Debug)]
pub struct Error(String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

/// The deserializer.
#[derive(Debug)]
pub struct Arbitrary<'r> {
    rng: &'r mut fastrand::Rng,
    depth: u32,
}

impl<'r> Arbitrary<'r> {
    /// Values from `rng`.
    pub fn new(rng: &'r mut fastrand::Rng) -> Arbitrary<'r> {
        Arbitrary { rng, depth: 0 }
    }

    fn child(&mut self) -> Arbitrary<'_> {
        Arbitrary { rng: self.rng, depth: self.depth + 1 }
    }

    fn len(&mut self) -> usize {
        if self.depth > 4 {
            0
        } else {
            self.rng.usize(0..4)
        }
    }

    fn f64(&mut self) -> f64 {
        match self.rng.u8(0..10) {
            0 => f64::NAN,
            1 => f64::INFINITY,
            2 => -1e300,
            3 => 1e23,
            4 => 0.0,
            5 => -1.0,
            _ => self.rng.f64() * 100.0,
        }
    }

    fn u64(&mut self) -> u64 {
        match self.rng.u8(0..6) {
            0 => u64::MAX,
            1 => 0,
            _ => self.rng.u64(0..1000),
        }
    }

    fn string(&mut self) -> String {
        match self.rng.u8(0..10) {
            0 => "x".repeat(self.rng.usize(256..2048)),
            1 => (0..self.rng.usize(0..12)).map(|_| self.rng.char('\u{0}'..'\u{2ff}')).collect(),
            _ => WORDS[self.rng.usize(0..WORDS.len())].to_string(),
        }
    }
}

impl<'de> de::Deserializer<'de> for &mut Arbitrary<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.rng.u8(0..5) {
            0 => visitor.visit_bool(self.rng.bool()),
            1 => visitor.visit_u64(self.u64()),
            2 => visitor.visit_f64(self.f64()),
            3 => visitor.visit_string(self.string()),
            _ => visitor.visit_unit(),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_bool(self.rng.bool())
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_i8(self.rng.i8(..))
    }

    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_i16(self.rng.i16(..))
    }

    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let value = if self.rng.bool() { self.rng.i32(..) } else { self.rng.i32(-2..300) };
        visitor.visit_i32(value)
    }

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_i64(self.rng.i64(..))
    }

    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_u8(self.rng.u8(..))
    }

    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_u16(self.rng.u16(..))
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let value = if self.rng.bool() { u32::MAX } else { self.rng.u32(0..10) };
        visitor.visit_u32(value)
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_u64(self.u64())
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_f32(self.f64() as f32)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_f64(self.f64())
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_char(self.rng.char(..))
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_string(self.string())
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_string(self.string())
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let bytes: Vec<u8> = (0..self.rng.usize(0..64)).map(|_| self.rng.u8(..)).collect();
        visitor.visit_byte_buf(bytes)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.rng.bool() {
            visitor.visit_none()
        } else {
            visitor.visit_some(&mut self.child())
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(&mut self.child())
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let len = self.len();
        visitor.visit_seq(Seq { arbitrary: self.child(), left: len })
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_seq(Seq { arbitrary: self.child(), left: len })
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_seq(Seq { arbitrary: self.child(), left: len })
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let len = self.len();
        visitor.visit_map(Map { arbitrary: self.child(), fields: None, left: len, index: 0 })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_map(Map { arbitrary: self.child(), fields: Some(fields), left: fields.len(), index: 0 })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let variant = variants[self.rng.usize(0..variants.len().max(1))];
        visitor.visit_enum(Enum { arbitrary: self.child(), variant })
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_string(self.string())
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
}

struct Seq<'r> {
    arbitrary: Arbitrary<'r>,
    left: usize,
}

impl<'de> SeqAccess<'de> for Seq<'_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut self.arbitrary.child()).map(Some)
    }
}

struct Map<'r> {
    arbitrary: Arbitrary<'r>,
    fields: Option<&'static [&'static str]>,
    left: usize,
    index: usize,
}

impl<'de> MapAccess<'de> for Map<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        match self.fields {
            Some(fields) => {
                // Most fields present, some missing (defaults), in order.
                while self.index < fields.len() {
                    let field = fields[self.index];
                    self.index += 1;
                    if self.arbitrary.rng.u8(0..10) > 0 {
                        return seed.deserialize(field.into_deserializer()).map(Some);
                    }
                }
                Ok(None)
            }
            None => {
                if self.left == 0 {
                    return Ok(None);
                }
                self.left -= 1;
                seed.deserialize(&mut self.arbitrary.child()).map(Some)
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        seed.deserialize(&mut self.arbitrary.child())
    }
}

struct Enum<'r> {
    arbitrary: Arbitrary<'r>,
    variant: &'static str,
}

impl<'de, 'r> de::EnumAccess<'de> for Enum<'r> {
    type Error = Error;
    type Variant = Arbitrary<'r>;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Arbitrary<'r>), Error> {
        let value = seed.deserialize(self.variant.into_deserializer())?;
        Ok((value, self.arbitrary))
    }
}

impl<'de> VariantAccess<'de> for Arbitrary<'_> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(mut self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(&mut self)
    }

    fn tuple_variant<V: Visitor<'de>>(mut self, len: usize, visitor: V) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_tuple(&mut self, len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        mut self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_struct(&mut self, "", fields, visitor)
    }
}

/// A made-up message of `kind`, if the generator's values make one.
pub fn message(rng: &mut fastrand::Rng, kind: &str) -> Option<keel_proto::messages::Msg> {
    keel_proto::messages::Msg::deserialize_kind(kind, &mut Arbitrary::new(rng))?.ok()
}
