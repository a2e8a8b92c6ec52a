//! `Labels`: `{"labels":[{"key":"k","value":"v"}]}`.

use serde::{Deserialize, Serialize};

/// One label; `value` is optional in Mesos.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Label {
    /// The key.
    pub key: String,
    /// The value, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl Label {
    /// `key=value`.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: Some(value.into()),
        }
    }
}

/// A list of labels. Like Mesos, equality ignores order (labels compare as a multiset),
/// which matters when comparing reservations.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Labels {
    /// The labels, in wire order.
    #[serde(default)]
    pub labels: Vec<Label>,
}

impl Labels {
    /// No labels.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of the first label with this key (`Some(None)` for a key without value).
    pub fn get(&self, key: &str) -> Option<Option<&str>> {
        self.labels
            .iter()
            .find(|l| l.key == key)
            .map(|l| l.value.as_deref())
    }

    /// Appends a label.
    pub fn push(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.labels.push(Label::new(key, value));
    }

    /// Sets `key` to `value`, replacing every earlier label with that key.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        self.labels.retain(|l| l.key != key);
        self.labels.push(Label::new(key, value));
    }

    /// True when there are no labels.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Iterates over the labels.
    pub fn iter(&self) -> impl Iterator<Item = &Label> {
        self.labels.iter()
    }
}

impl PartialEq for Labels {
    fn eq(&self, other: &Self) -> bool {
        if self.labels.len() != other.labels.len() {
            return false;
        }
        let mut a: Vec<&Label> = self.labels.iter().collect();
        let mut b: Vec<&Label> = other.labels.iter().collect();
        a.sort();
        b.sort();
        a == b
    }
}

impl Eq for Labels {}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Labels {
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Self {
        Labels {
            labels: iter.into_iter().map(|(k, v)| Label::new(k, v)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_insensitive_eq_and_json() {
        let a: Labels = [("a", "1"), ("b", "2")].into_iter().collect();
        let b: Labels = [("b", "2"), ("a", "1")].into_iter().collect();
        assert_eq!(a, b);
        assert_ne!(a, [("a", "1")].into_iter().collect::<Labels>());
        let json = r#"{"labels":[{"key":"a","value":"1"},{"key":"flag"}]}"#;
        let l: Labels = serde_json::from_str(json).unwrap();
        assert_eq!(l.get("a"), Some(Some("1")));
        assert_eq!(l.get("flag"), Some(None));
        assert_eq!(l.get("x"), None);
        assert_eq!(serde_json::to_string(&l).unwrap(), json);
    }
}
