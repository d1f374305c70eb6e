//! JSON values: parsed from text, walked by hand, written back as text.
//!
//! The module reads JSON in four places — a CKB node's answers, a page's
//! arguments (as `JSON.stringify` gives them), the wallet's signed tx, and
//! the records of schemas 1 and 2 — and walks every one of them by hand. It
//! needs a value type, a parser and a writer, not a serialization framework:
//! `serde_json`'s `Value` and its serde machinery were about 30 KB of the
//! browser package, so the wasm carries this instead (the native tools and
//! the tests still use `serde_json`, and the tests check this module against
//! it).
//!
//! What it accepts is RFC 8259 JSON, nested at most [`MAX_DEPTH`] levels deep. Object
//! keys are kept sorted and a repeated key keeps its last value, as
//! `serde_json` does; a number is kept as an integer when it is one that
//! fits 64 bits, and as its text otherwise (nothing here computes with
//! fractions).

use std::collections::BTreeMap;
use std::fmt;

mod text;

pub use text::{to_string, WriteError};

/// How deep arrays and objects may nest: `serde_json`'s limit, so nothing
/// that read before is refused, and a hostile answer cannot exhaust the stack.
pub const MAX_DEPTH: usize = 127;

/// An object's members, sorted by key.
pub type Map<K = String, V = Value> = BTreeMap<K, V>;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Value>),
    Object(Map),
}

/// A JSON number: an integer that fits 64 bits, or the text of any other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Number(Repr);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Repr {
    Unsigned(u64),
    Negative(i64),
    /// A fraction, an exponent, or an integer beyond 64 bits, as written.
    Text(String),
}

impl Number {
    pub fn as_u64(&self) -> Option<u64> {
        match self.0 {
            Repr::Unsigned(n) => Some(n),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self.0 {
            Repr::Unsigned(n) => i64::try_from(n).ok(),
            Repr::Negative(n) => Some(n),
            Repr::Text(_) => None,
        }
    }

    /// The number as a `u64` if its value is whole and fits, however it is
    /// written: `300`, `300.0` and `3e2` are all 300 (a page's number may
    /// come as any of them).
    pub fn as_whole_u64(&self) -> Option<u64> {
        match &self.0 {
            Repr::Unsigned(n) => Some(*n),
            Repr::Negative(_) => None,
            Repr::Text(text) => whole_from_text(text),
        }
    }
}

/// The whole value of a number written with a fraction or an exponent
/// (already checked to be JSON), computed exactly from its digits.
fn whole_from_text(text: &str) -> Option<u64> {
    if let Some(magnitude) = text.strip_prefix('-') {
        // A negative zero is zero; any other negative is not a u64.
        return whole_from_text(magnitude).filter(|&n| n == 0);
    }
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], text[at + 1..].parse::<i64>().ok()?),
        None => (text, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: Vec<u8> = whole.bytes().chain(fraction.bytes()).map(|b| b - b'0').collect();
    // The value is digits × 10^(exponent − fraction's length).
    let shift = exponent.checked_sub(i64::try_from(fraction.len()).ok()?)?;
    let significant = digits.iter().rposition(|&d| d != 0).map_or(0, |last| last + 1);
    let kept = if shift >= 0 {
        digits.len()
    } else {
        let dropped = usize::try_from(shift.unsigned_abs()).ok()?;
        let kept = digits.len().checked_sub(dropped)?;
        if significant > kept {
            return None; // a fraction is left
        }
        kept
    };
    let mut value: u64 = 0;
    for &digit in &digits[..kept] {
        value = value.checked_mul(10)?.checked_add(digit.into())?;
    }
    if value == 0 {
        return Some(0);
    }
    for _ in 0..shift.max(0) {
        value = value.checked_mul(10)?;
    }
    Some(value)
}

impl Value {
    /// The member `key` of an object (`None` for anything else).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_object()?.get(key)
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Number(n) => n.as_u64(),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Number(n) => n.as_i64(),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&Vec<Value>> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Map> {
        match self {
            Value::Object(map) => Some(map),
            _ => None,
        }
    }

    pub fn as_array_mut(&mut self) -> Option<&mut Vec<Value>> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_object_mut(&mut self) -> Option<&mut Map> {
        match self {
            Value::Object(map) => Some(map),
            _ => None,
        }
    }
}

/// `value["key"]` and `value[0]`, as in `serde_json`: `Null` for what is not
/// there. For tests and tools; the module's readers use [`Value::get`].
impl std::ops::Index<&str> for Value {
    type Output = Value;

    fn index(&self, key: &str) -> &Value {
        const NULL: &Value = &Value::Null;
        self.get(key).unwrap_or(NULL)
    }
}

impl std::ops::Index<usize> for Value {
    type Output = Value;

    fn index(&self, index: usize) -> &Value {
        const NULL: &Value = &Value::Null;
        self.as_array().and_then(|items| items.get(index)).unwrap_or(NULL)
    }
}

/// Sets a member, adding it if it is not there. Panics on anything but an
/// object (or `Null`, which becomes one), as `serde_json` does.
impl std::ops::IndexMut<&str> for Value {
    fn index_mut(&mut self, key: &str) -> &mut Value {
        if self.is_null() {
            *self = Value::Object(Map::new());
        }
        match self {
            Value::Object(map) => map.entry(key.to_owned()).or_default(),
            other => panic!("cannot index {other} with a key"),
        }
    }
}

/// Panics unless the item exists, as `serde_json` does.
impl std::ops::IndexMut<usize> for Value {
    fn index_mut(&mut self, index: usize) -> &mut Value {
        match self {
            Value::Array(items) => {
                let len = items.len();
                items
                    .get_mut(index)
                    .unwrap_or_else(|| panic!("index {index} of a list of {len}"))
            }
            other => panic!("cannot index {other} with {index}"),
        }
    }
}

impl From<&str> for Value {
    fn from(text: &str) -> Self {
        Value::String(text.to_owned())
    }
}

impl From<&String> for Value {
    fn from(text: &String) -> Self {
        Value::String(text.clone())
    }
}

impl From<String> for Value {
    fn from(text: String) -> Self {
        Value::String(text)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<u64> for Value {
    fn from(n: u64) -> Self {
        Value::Number(Number(Repr::Unsigned(n)))
    }
}

impl From<u32> for Value {
    fn from(n: u32) -> Self {
        u64::from(n).into()
    }
}

impl From<Vec<Value>> for Value {
    fn from(items: Vec<Value>) -> Self {
        Value::Array(items)
    }
}

impl From<Map> for Value {
    fn from(map: Map) -> Self {
        Value::Object(map)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(value: Option<T>) -> Self {
        value.map_or(Value::Null, Into::into)
    }
}

/// Builds a [`Value`]: `json!({ "key": value, … })`, `json!([a, b])` or
/// `json!(value)`, each value anything with `Into<Value>` (nest with `json!`).
macro_rules! json {
    ({ $($key:literal : $value:expr),* $(,)? }) => {
        $crate::json::Value::Object($crate::json::Map::from([$(($key.to_owned(), $crate::json::Value::from($value))),*]))
    };
    ([ $($value:expr),* $(,)? ]) => {
        $crate::json::Value::Array(vec![$($crate::json::Value::from($value)),*])
    };
    ($value:expr) => {
        $crate::json::Value::from($value)
    };
}
pub(crate) use json;

/// Why a text is not JSON, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} at byte {at}")]
pub struct ParseError {
    pub what: &'static str,
    pub at: usize,
}

/// Parses one JSON value, with nothing but whitespace around it.
pub fn parse(text: &str) -> Result<Value, ParseError> {
    let mut parser = Parser {
        bytes: text.as_bytes(),
        at: 0,
    };
    let value = parser.value(0)?;
    parser.whitespace();
    if parser.at < parser.bytes.len() {
        return Err(parser.error("trailing characters"));
    }
    Ok(value)
}

/// [`parse`], for bytes that must also be UTF-8.
pub fn parse_bytes(bytes: &[u8]) -> Result<Value, ParseError> {
    let text = std::str::from_utf8(bytes).map_err(|e| ParseError {
        what: "not UTF-8",
        at: e.valid_up_to(),
    })?;
    parse(text)
}

struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn error(&self, what: &'static str) -> ParseError {
        ParseError { what, at: self.at }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        if found {
            self.at += 1;
        }
        found
    }

    fn literal(&mut self, word: &'static [u8], value: Value) -> Result<Value, ParseError> {
        if self.bytes[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(value)
        } else {
            Err(self.error("expected a value"))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, ParseError> {
        self.whitespace();
        match self.peek() {
            None => Err(self.error("unexpected end of input")),
            Some(b'n') => self.literal(b"null", Value::Null),
            Some(b't') => self.literal(b"true", Value::Bool(true)),
            Some(b'f') => self.literal(b"false", Value::Bool(false)),
            Some(b'"') => self.string().map(Value::String),
            Some(b'-' | b'0'..=b'9') => self.number().map(Value::Number),
            Some(b'[') => {
                let depth = self.deeper(depth)?;
                let mut items = Vec::new();
                if !self.closes(b']') {
                    loop {
                        items.push(self.value(depth)?);
                        if self.separator(b']')? {
                            break;
                        }
                    }
                }
                Ok(Value::Array(items))
            }
            Some(b'{') => {
                let depth = self.deeper(depth)?;
                let mut map = Map::new();
                if !self.closes(b'}') {
                    loop {
                        self.whitespace();
                        if self.peek() != Some(b'"') {
                            return Err(self.error("expected a key"));
                        }
                        let key = self.string()?;
                        self.whitespace();
                        if !self.eat(b':') {
                            return Err(self.error("expected `:`"));
                        }
                        map.insert(key, self.value(depth)?);
                        if self.separator(b'}')? {
                            break;
                        }
                    }
                }
                Ok(Value::Object(map))
            }
            Some(_) => Err(self.error("expected a value")),
        }
    }

    /// Steps past an opening bracket, one level deeper.
    fn deeper(&mut self, depth: usize) -> Result<usize, ParseError> {
        if depth >= MAX_DEPTH {
            return Err(self.error("nested too deep"));
        }
        self.at += 1;
        Ok(depth + 1)
    }

    /// Whether the container closes at once (`[]`, `{}`).
    fn closes(&mut self, close: u8) -> bool {
        self.whitespace();
        self.eat(close)
    }

    /// After an item: `,` (false) or the closing bracket (true).
    fn separator(&mut self, close: u8) -> Result<bool, ParseError> {
        self.whitespace();
        if self.eat(b',') {
            Ok(false)
        } else if self.eat(close) {
            Ok(true)
        } else {
            Err(self.error(if close == b']' {
                "expected `,` or `]`"
            } else {
                "expected `,` or `}`"
            }))
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        self.at - start
    }

    fn number(&mut self) -> Result<Number, ParseError> {
        let start = self.at;
        let negative = self.eat(b'-');
        let integer_start = self.at;
        match self.digits() {
            0 => return Err(self.error("expected a digit")),
            1 => {}
            _ if self.bytes[integer_start] == b'0' => return Err(self.error("a number may not start with 0")),
            _ => {}
        }
        let mut whole = true;
        if self.eat(b'.') {
            whole = false;
            if self.digits() == 0 {
                return Err(self.error("expected a digit after `.`"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            whole = false;
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if self.digits() == 0 {
                return Err(self.error("expected a digit in the exponent"));
            }
        }
        // Only ASCII was consumed.
        let text = std::str::from_utf8(&self.bytes[start..self.at]).map_err(|_| self.error("not UTF-8"))?;
        let repr = match (whole, negative) {
            (true, false) => text.parse().map(Repr::Unsigned).ok(),
            // `-0` is not a negative integer: kept as written, like a fraction.
            (true, true) => text.parse().ok().filter(|n: &i64| *n < 0).map(Repr::Negative),
            _ => None,
        };
        Ok(Number(repr.unwrap_or_else(|| Repr::Text(text.to_owned()))))
    }

    fn hex4(&mut self) -> Result<u16, ParseError> {
        let digits = self
            .bytes
            .get(self.at..self.at + 4)
            .ok_or_else(|| self.error("unexpected end of input"))?;
        let mut value = 0u16;
        for &digit in digits {
            let nibble = (digit as char)
                .to_digit(16)
                .ok_or_else(|| self.error("invalid \\u escape"))?;
            value = value << 4 | nibble as u16;
        }
        self.at += 4;
        Ok(value)
    }

    fn string(&mut self) -> Result<String, ParseError> {
        self.at += 1; // the opening quote
        let mut out = String::new();
        loop {
            let run = self.at;
            while matches!(self.peek(), Some(byte) if byte != b'"' && byte != b'\\' && byte >= 0x20) {
                self.at += 1;
            }
            // The input is a str and the run stops only at ASCII bytes, so it is whole characters.
            out.push_str(std::str::from_utf8(&self.bytes[run..self.at]).map_err(|_| self.error("not UTF-8"))?);
            match self.peek() {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => {
                    self.at += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.at += 1;
                    let escape = self.peek().ok_or_else(|| self.error("unterminated string"))?;
                    self.at += 1;
                    match escape {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => out.push(self.unicode_escape()?),
                        _ => return Err(self.error("invalid escape")),
                    }
                }
                Some(_) => return Err(self.error("control character in a string")),
            }
        }
    }

    /// The character of a `\u` escape, with the second half of a surrogate pair.
    fn unicode_escape(&mut self) -> Result<char, ParseError> {
        let first = self.hex4()?;
        let code = match first {
            0xd800..=0xdbff => {
                if !(self.eat(b'\\') && self.eat(b'u')) {
                    return Err(self.error("lone leading surrogate"));
                }
                let second = self.hex4()?;
                if !(0xdc00..=0xdfff).contains(&second) {
                    return Err(self.error("lone leading surrogate"));
                }
                0x10000 + ((u32::from(first) - 0xd800) << 10 | (u32::from(second) - 0xdc00))
            }
            0xdc00..=0xdfff => return Err(self.error("lone trailing surrogate")),
            code => code.into(),
        };
        char::from_u32(code).ok_or_else(|| self.error("invalid \\u escape"))
    }
}

impl fmt::Display for Value {
    /// Compact JSON text, as `serde_json::to_string` writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        write_value(self, &mut out);
        f.write_str(&out)
    }
}

fn write_value(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(Number(Repr::Unsigned(n))) => out.push_str(&n.to_string()),
        Value::Number(Number(Repr::Negative(n))) => out.push_str(&n.to_string()),
        Value::Number(Number(Repr::Text(text))) => out.push_str(text),
        Value::String(text) => write_string(text, out),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_value(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (index, (key, item)) in map.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_value(item, out);
            }
            out.push('}');
        }
    }
}

/// A JSON string, escaped as `serde_json` escapes it.
pub fn write_string(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(HEX[(c as usize) >> 4] as char);
                out.push(HEX[(c as usize) & 0xf] as char);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The same value as `serde_json` holds it: natively, for the tools and the
/// tests, which build values with `serde_json::json!`.
#[cfg(any(test, not(target_arch = "wasm32")))]
impl From<&serde_json::Value> for Value {
    fn from(value: &serde_json::Value) -> Self {
        parse(&value.to_string()).expect("serde_json writes JSON")
    }
}

#[cfg(any(test, not(target_arch = "wasm32")))]
impl From<serde_json::Value> for Value {
    fn from(value: serde_json::Value) -> Self {
        (&value).into()
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    /// What `serde_json` makes of `text`: the value written back, or an error.
    fn by_serde(text: &str) -> Result<String, ()> {
        serde_json::from_str::<serde_json::Value>(text)
            .map(|v| v.to_string())
            .map_err(|_| ())
    }

    fn by_us(text: &str) -> Result<String, ()> {
        parse(text).map(|v| v.to_string()).map_err(|_| ())
    }

    #[test]
    fn reads_and_writes_as_serde_json_does() {
        let texts = [
            r#"{"b":[1,-2,true,false,null],"a":{"x":"y"}}"#,
            r#" { "a" : "\"\\\/\b\f\n\r\t\u0001\u001f\u007f\u00e9\ud83d\ude00é" } "#,
            "18446744073709551615",
            "-9223372036854775808",
            "0",
            "[[],{},\"\"]",
            r#"{"k":1,"k":2}"#,
        ];
        for text in texts {
            assert_eq!(by_us(text), by_serde(text), "{text}");
        }
        // Other numbers keep their text here (serde_json makes them f64 and
        // writes them its way, `1000.0` for `1e3`).
        for text in ["12.50", "1e3", "-1.5E-7", "-0", "18446744073709551616"] {
            assert_eq!(parse(text).unwrap(), Value::Number(Number(Repr::Text(text.into()))));
            assert!(by_serde(text).is_ok());
        }
    }

    #[test]
    fn refuses_what_serde_json_refuses() {
        let texts = [
            "",
            " ",
            "nul",
            "tru",
            "[1,]",
            "{\"a\":1,}",
            "{a:1}",
            "[1 2]",
            "01",
            "-",
            "1.",
            ".5",
            "1e",
            "+1",
            "\"\\x\"",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"\\ud800\\u0041\"",
            "\"a\u{1}\"",
            "\"open",
            "[",
            "{\"a\"",
            "{\"a\" 1}",
            "1 2",
            "[1]]",
            "NaN",
            "Infinity",
            "\"\\u12\"",
        ];
        for text in texts {
            assert!(by_serde(text).is_err(), "serde_json takes {text:?}");
            assert!(parse(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn nesting_is_bounded_as_in_serde_json() {
        let at_limit = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(&at_limit).is_ok());
        assert!(by_serde(&at_limit).is_ok());
        let over = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(parse(&over).unwrap_err().what, "nested too deep");
        assert!(by_serde(&over).is_err());
        // Far deeper is refused the same way, without exhausting the stack.
        assert!(parse(&"[".repeat(1_000_000)).is_err());
    }

    #[test]
    fn numbers_read_as_serde_json_reads_them() {
        for text in [
            "0",
            "7",
            "18446744073709551615",
            "-1",
            "-9223372036854775808",
            "1.5",
            "1e2",
            "99999999999999999999",
        ] {
            let ours = parse(text).unwrap();
            let theirs: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(ours.as_u64(), theirs.as_u64(), "{text}");
            assert_eq!(ours.as_i64(), theirs.as_i64(), "{text}");
        }
    }

    #[test]
    fn whole_numbers_are_read_however_they_are_written() {
        let whole = |text: &str| match parse(text).unwrap() {
            Value::Number(n) => n.as_whole_u64(),
            _ => unreachable!(),
        };
        for (text, expected) in [
            ("300", Some(300)),
            ("300.0", Some(300)),
            ("3e2", Some(300)),
            ("3.00E+2", Some(300)),
            ("30000e-2", Some(300)),
            ("0.0", Some(0)),
            ("-0", Some(0)),
            ("-0.0e5", Some(0)),
            ("0e999999999999", Some(0)),
            ("1.5", None),
            ("-1", None),
            ("-1.0", None),
            ("1e-1", None),
            ("18446744073709551615", Some(u64::MAX)),
            ("18446744073709551616", None),
            ("1.8446744073709551615e19", Some(u64::MAX)),
            ("1e20", None),
            ("1e99999999999999999999", None),
            ("1.7976931348623157e308", None),
        ] {
            assert_eq!(whole(text), expected, "{text}");
        }
    }

    #[test]
    fn a_value_converts_from_serde_jsons() {
        let theirs = serde_json::json!({ "a": [1, "x", null, { "b": true }], "c": -5 });
        let ours = Value::from(&theirs);
        assert_eq!(ours.to_string(), theirs.to_string());
        assert_eq!(
            ours,
            json!({ "a": json!([1u64, "x", Value::Null, json!({ "b": true })]), "c": parse("-5").unwrap() })
        );
    }
}
