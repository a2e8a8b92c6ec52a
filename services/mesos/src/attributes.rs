//! Agent attributes: `{"name":"rack","type":"TEXT","text":{"value":"r1"}}`, parsed
//! from the agent `--attributes` flag `rack:r1;zone:a;cores:8;ports:[1-10];tags:{a,b}`.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::error::ParseError;
use crate::values::{Ranges, Scalar, Set, Text, Value, ValueType};

/// One attribute: a name and a TEXT, SCALAR, RANGES or SET value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attribute {
    /// The name, e.g. `rack`.
    pub name: String,
    /// The value.
    pub value: Value,
}

impl Attribute {
    /// A TEXT attribute.
    pub fn text(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: Value::Text(value.into()),
        }
    }

    /// The value type.
    pub fn value_type(&self) -> ValueType {
        self.value.value_type()
    }

    /// The text, for TEXT attributes.
    pub fn as_text(&self) -> Option<&str> {
        match &self.value {
            Value::Text(t) => Some(t),
            _ => None,
        }
    }

    /// The scalar, for SCALAR attributes.
    pub fn as_scalar(&self) -> Option<Scalar> {
        match &self.value {
            Value::Scalar(s) => Some(*s),
            _ => None,
        }
    }

    /// Parses one `name:value` token. Only the first `:` separates name and value.
    /// Values follow Mesos: `[..]` is RANGES, `{..}` is SET, text without letters that
    /// parses as a number is SCALAR, anything else TEXT. Spaces are removed from the
    /// value, as Mesos does.
    pub fn parse(token: &str) -> Result<Attribute, ParseError> {
        let (name, value) = token
            .split_once(':')
            .ok_or_else(|| ParseError::attribute(token, "expecting name:value"))?;
        let name = name.trim();
        if name.is_empty() {
            return Err(ParseError::attribute(token, "attribute name is empty"));
        }
        let value =
            Value::parse(value, true).map_err(|e| ParseError::attribute(token, e.to_string()))?;
        Ok(Attribute {
            name: name.to_owned(),
            value,
        })
    }

    /// The value as `/master/state` shows it in the flat `attributes` map: text as a
    /// string, scalar as a number, ranges as `"[1-10]"`, set as `"{a, b}"`.
    pub fn state_model_value(&self) -> Json {
        match &self.value {
            Value::Scalar(s) => Json::from(s.as_f64()),
            Value::Text(t) => Json::from(t.as_str()),
            other => Json::from(other.to_string()),
        }
    }
}

impl fmt::Display for Attribute {
    /// `name:value` (Mesos text form).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.value)
    }
}

#[derive(Deserialize)]
struct AttributeWire {
    name: String,
    #[serde(rename = "type", default)]
    kind: Option<ValueType>,
    #[serde(default)]
    scalar: Option<Scalar>,
    #[serde(default)]
    ranges: Option<Ranges>,
    #[serde(default)]
    set: Option<Set>,
    #[serde(default)]
    text: Option<Text>,
}

#[derive(Serialize)]
struct AttributeOut<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    kind: ValueType,
    #[serde(skip_serializing_if = "Option::is_none")]
    scalar: Option<&'a Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ranges: Option<&'a Ranges>,
    #[serde(skip_serializing_if = "Option::is_none")]
    set: Option<&'a Set>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<Text>,
}

impl Serialize for Attribute {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut out = AttributeOut {
            name: &self.name,
            kind: self.value_type(),
            scalar: None,
            ranges: None,
            set: None,
            text: None,
        };
        match &self.value {
            Value::Scalar(v) => out.scalar = Some(v),
            Value::Ranges(v) => out.ranges = Some(v),
            Value::Set(v) => out.set = Some(v),
            Value::Text(v) => out.text = Some(Text { value: v.clone() }),
        }
        out.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Attribute {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let w = AttributeWire::deserialize(d)?;
        let name = w.name;
        let err = |what: &str| D::Error::custom(format!("attribute '{name}': {what}"));
        let kind = match w.kind {
            Some(k) => k,
            None => match (&w.scalar, &w.ranges, &w.set, &w.text) {
                (Some(_), None, None, None) => ValueType::Scalar,
                (None, Some(_), None, None) => ValueType::Ranges,
                (None, None, Some(_), None) => ValueType::Set,
                (None, None, None, Some(_)) => ValueType::Text,
                _ => return Err(err("missing field 'type'")),
            },
        };
        let value = match kind {
            ValueType::Scalar => Value::Scalar(
                w.scalar
                    .ok_or_else(|| err("type SCALAR requires field 'scalar'"))?,
            ),
            ValueType::Ranges => Value::Ranges(
                w.ranges
                    .ok_or_else(|| err("type RANGES requires field 'ranges'"))?,
            ),
            ValueType::Set => {
                Value::Set(w.set.ok_or_else(|| err("type SET requires field 'set'"))?)
            }
            ValueType::Text => Value::Text(
                w.text
                    .ok_or_else(|| err("type TEXT requires field 'text'"))?
                    .value,
            ),
        };
        Ok(Attribute { name, value })
    }
}

/// The attributes of an agent, in order (names may repeat, as in Mesos).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Attributes(pub Vec<Attribute>);

impl Attributes {
    /// No attributes.
    pub const fn new() -> Self {
        Self(Vec::new())
    }

    /// Parses the agent `--attributes` flag: `;`- or newline-separated `name:value`
    /// tokens (see [`Attribute::parse`]); empty tokens are skipped.
    pub fn parse(text: &str) -> Result<Attributes, ParseError> {
        text.split([';', '\n'])
            .filter(|t| !t.trim().is_empty())
            .map(Attribute::parse)
            .collect::<Result<Vec<_>, _>>()
            .map(Attributes)
    }

    /// The first attribute with this name.
    pub fn get(&self, name: &str) -> Option<&Attribute> {
        self.0.iter().find(|a| a.name == name)
    }

    /// The text of the first TEXT attribute with this name.
    pub fn get_text(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(Attribute::as_text)
    }

    /// Appends an attribute.
    pub fn push(&mut self, attribute: Attribute) {
        self.0.push(attribute);
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of attributes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Iterates in order.
    pub fn iter(&self) -> impl Iterator<Item = &Attribute> {
        self.0.iter()
    }

    /// The flat `/master/state` model: name → value (see
    /// [`Attribute::state_model_value`]).
    pub fn to_state_model(&self) -> Map<String, Json> {
        self.0
            .iter()
            .map(|a| (a.name.clone(), a.state_model_value()))
            .collect()
    }
}

impl fmt::Display for Attributes {
    /// `rack:r1;cores:8` (the flag form).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

impl FromIterator<Attribute> for Attributes {
    fn from_iter<T: IntoIterator<Item = Attribute>>(iter: T) -> Self {
        Attributes(iter.into_iter().collect())
    }
}
