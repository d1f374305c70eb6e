//! JSON text from anything `Serialize`: the API's shapes (`api/shapes.rs`)
//! keep their derive, which `tsify` reads for the TypeScript declarations,
//! and are written by this small serializer instead of `serde_json`'s.
//!
//! It writes what `serde_json::to_string` writes for every shape the API
//! has. Floats are refused rather than written: no shape has one, and
//! formatting them would bring `f64`'s printing code into the wasm.

use serde::ser::{self, Serialize};

use super::write_string;

/// Why a value could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WriteError(String);

impl ser::Error for WriteError {
    fn custom<T: std::fmt::Display>(message: T) -> Self {
        WriteError(message.to_string())
    }
}

/// `value` as compact JSON text.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> Result<String, WriteError> {
    let mut out = String::new();
    value.serialize(Writer { out: &mut out })?;
    Ok(out)
}

struct Writer<'a> {
    out: &'a mut String,
}

/// An array or object under way: whether an item was written yet, and for
/// a variant's content, the brace that closes the wrapping object.
struct Compound<'a> {
    out: &'a mut String,
    first: bool,
    close: &'static str,
}

impl<'a> Compound<'a> {
    fn open(out: &'a mut String, prefix: &str, close: &'static str) -> Self {
        out.push_str(prefix);
        Compound {
            out,
            first: true,
            close,
        }
    }

    fn comma(&mut self) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
    }

    fn item<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WriteError> {
        self.comma();
        value.serialize(Writer { out: self.out })
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), WriteError> {
        self.comma();
        write_string(key, self.out);
        self.out.push(':');
        value.serialize(Writer { out: self.out })
    }

    fn end(self) -> Result<(), WriteError> {
        self.out.push_str(self.close);
        Ok(())
    }
}

/// `{"variant":` before a variant's content.
fn variant_prefix(variant: &str) -> String {
    let mut prefix = String::from("{");
    write_string(variant, &mut prefix);
    prefix.push(':');
    prefix
}

fn no_floats() -> WriteError {
    WriteError("a float cannot be written (no API shape has one)".into())
}

/// Integer methods that write their value as the widest of their sign does.
macro_rules! widened_to {
    ($wide:ident: $($method:ident($int:ty)),*) => {$(
        fn $method(self, v: $int) -> Result<(), WriteError> {
            self.$wide(v.into())
        }
    )*};
}

impl<'a> ser::Serializer for Writer<'a> {
    type Ok = ();
    type Error = WriteError;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), WriteError> {
        self.out.push_str(if v { "true" } else { "false" });
        Ok(())
    }

    widened_to!(serialize_i64: serialize_i8(i8), serialize_i16(i16), serialize_i32(i32));
    widened_to!(serialize_u64: serialize_u8(u8), serialize_u16(u16), serialize_u32(u32));

    fn serialize_i64(self, v: i64) -> Result<(), WriteError> {
        self.out.push_str(&v.to_string());
        Ok(())
    }

    fn serialize_u64(self, v: u64) -> Result<(), WriteError> {
        self.out.push_str(&v.to_string());
        Ok(())
    }

    fn serialize_f32(self, _: f32) -> Result<(), WriteError> {
        Err(no_floats())
    }

    fn serialize_f64(self, _: f64) -> Result<(), WriteError> {
        Err(no_floats())
    }

    fn serialize_char(self, v: char) -> Result<(), WriteError> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }

    fn serialize_str(self, v: &str) -> Result<(), WriteError> {
        write_string(v, self.out);
        Ok(())
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<(), WriteError> {
        let mut list = Compound::open(self.out, "[", "]");
        for byte in v {
            list.item(byte)?;
        }
        list.end()
    }

    fn serialize_none(self) -> Result<(), WriteError> {
        self.serialize_unit()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), WriteError> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), WriteError> {
        self.out.push_str("null");
        Ok(())
    }

    fn serialize_unit_struct(self, _: &'static str) -> Result<(), WriteError> {
        self.serialize_unit()
    }

    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<(), WriteError> {
        self.serialize_str(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Result<(), WriteError> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), WriteError> {
        self.out.push_str(&variant_prefix(variant));
        value.serialize(Writer { out: self.out })?;
        self.out.push('}');
        Ok(())
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Compound<'a>, WriteError> {
        Ok(Compound::open(self.out, "[", "]"))
    }

    fn serialize_tuple(self, _: usize) -> Result<Compound<'a>, WriteError> {
        self.serialize_seq(None)
    }

    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Compound<'a>, WriteError> {
        self.serialize_seq(None)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound<'a>, WriteError> {
        Ok(Compound::open(self.out, &(variant_prefix(variant) + "["), "]}"))
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Compound<'a>, WriteError> {
        Ok(Compound::open(self.out, "{", "}"))
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Compound<'a>, WriteError> {
        self.serialize_map(None)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound<'a>, WriteError> {
        Ok(Compound::open(self.out, &(variant_prefix(variant) + "{"), "}}"))
    }
}

macro_rules! items {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for Compound<'_> {
            type Ok = ();
            type Error = WriteError;

            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WriteError> {
                self.item(value)
            }

            fn end(self) -> Result<(), WriteError> {
                Compound::end(self)
            }
        }
    )*};
}

items!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

macro_rules! fields {
    ($($trait:ident),*) => {$(
        impl ser::$trait for Compound<'_> {
            type Ok = ();
            type Error = WriteError;

            fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), WriteError> {
                self.field(key, value)
            }

            fn end(self) -> Result<(), WriteError> {
                Compound::end(self)
            }
        }
    )*};
}

fields!(SerializeStruct, SerializeStructVariant);

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = WriteError;

    /// Keys are strings, as JSON's are (no API shape has a map).
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), WriteError> {
        self.comma();
        let key = to_string(key)?;
        if !key.starts_with('"') {
            return Err(WriteError(format!("a map key must be a string, not {key}")));
        }
        self.out.push_str(&key);
        self.out.push(':');
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WriteError> {
        value.serialize(Writer { out: self.out })
    }

    fn end(self) -> Result<(), WriteError> {
        Compound::end(self)
    }
}

impl Serialize for super::Value {
    fn serialize<S: ser::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use super::Value;
        use ser::{SerializeMap, SerializeSeq};
        match self {
            Value::Null => serializer.serialize_unit(),
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Number(n) => match (n.as_u64(), n.as_i64()) {
                (Some(n), _) => serializer.serialize_u64(n),
                (None, Some(n)) => serializer.serialize_i64(n),
                // Kept as written; only this module's writer takes it as it is.
                _ => Err(ser::Error::custom("a number beyond 64-bit integers cannot be written")),
            },
            Value::String(s) => serializer.serialize_str(s),
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Value::Object(map) => {
                let mut object = serializer.serialize_map(Some(map.len()))?;
                for (key, item) in map {
                    object.serialize_entry(key, item)?;
                }
                object.end()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;
    use std::collections::BTreeMap;

    #[derive(Serialize)]
    struct Shape {
        text: String,
        escaped: &'static str,
        count: u64,
        small: u8,
        negative: i32,
        absent: Option<u64>,
        present: Option<&'static str>,
        flags: Vec<String>,
        nested: Inner,
        unit: (),
        pair: (u8, bool),
        map: BTreeMap<String, u32>,
        kinds: Vec<Kind>,
    }

    #[derive(Serialize)]
    struct Inner {
        yes: bool,
    }

    #[derive(Serialize)]
    #[serde(rename_all = "snake_case")]
    enum Kind {
        Plain,
        Wrapped(u8),
        Pair(u8, u8),
        Named { a: u8 },
    }

    #[derive(Serialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    enum Tagged {
        StateChanged { channel_id: String, flags: Vec<String> },
        Gone {},
    }

    fn same_as_serde_json<T: Serialize>(value: &T) {
        assert_eq!(to_string(value).unwrap(), serde_json::to_string(value).unwrap());
    }

    #[test]
    fn writes_what_serde_json_writes() {
        same_as_serde_json(&Shape {
            text: "a\"b\\c\n\u{1}é😀".into(),
            escaped: "\u{8}\u{c}\t\r\u{1f}\u{7f}/",
            count: u64::MAX,
            small: 7,
            negative: -12,
            absent: None,
            present: Some("x"),
            flags: vec!["A".into(), "B".into()],
            nested: Inner { yes: true },
            unit: (),
            pair: (1, false),
            map: BTreeMap::from([("k".into(), 1), ("j".into(), 2)]),
            kinds: vec![Kind::Plain, Kind::Wrapped(3), Kind::Pair(4, 5), Kind::Named { a: 6 }],
        });
        same_as_serde_json(&Tagged::StateChanged {
            channel_id: "0x01".into(),
            flags: vec![],
        });
        same_as_serde_json(&Tagged::Gone {});
        same_as_serde_json(&Vec::<u8>::new());
        let value = super::super::parse(r#"{"a":[1,-2,null,"x",{"b":true}]}"#).unwrap();
        assert_eq!(to_string(&value).unwrap(), value.to_string());
    }

    #[test]
    fn refuses_floats_and_keys_that_are_not_strings() {
        assert!(to_string(&1.5f64).is_err());
        assert!(to_string(&BTreeMap::from([(1u8, 2u8)])).is_err());
    }
}
