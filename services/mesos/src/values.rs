//! Mesos `Value` types: fixed-point [`Scalar`], normalised [`Ranges`], [`Set`] and text,
//! with their JSON forms (`{"value":1.5}`, `{"range":[{"begin":1,"end":2}]}`,
//! `{"item":["a"]}`, `{"value":"x"}`) and the Mesos text form (`1.5`, `[1-2,5-9]`,
//! `{a,b}`, `x`).

use std::collections::BTreeSet;
use std::fmt;
use std::ops::{Add, AddAssign, Neg, Sub, SubAssign};

use serde::{Deserialize, Serialize};

use crate::error::ParseError;

// ---------------------------------------------------------------------------------------
// Scalar

/// A Mesos scalar with Mesos' fixed-point semantics: every value is rounded to the
/// nearest 0.001 (half away from zero, like Mesos' `llround(v * 1000)`), and all
/// arithmetic and comparison is exact on those thousandths, so `0.1 + 0.2 == 0.3`.
///
/// Stored as a signed count of thousandths. Resource scalars are never negative
/// ([`crate::Resource::validate`]); attribute scalars may be.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Scalar {
    milli: i64,
}

/// The largest magnitude (in thousandths) a [`Scalar`] can be built from a float with:
/// 2^53, so that every such value round-trips exactly through `f64`.
pub const SCALAR_MAX_MILLI: i64 = 1 << 53;

impl Scalar {
    /// Zero.
    pub const ZERO: Scalar = Scalar { milli: 0 };

    /// A scalar of `milli` thousandths.
    pub const fn from_milli(milli: i64) -> Self {
        Self { milli }
    }

    /// A whole-number scalar.
    pub const fn from_int(v: i32) -> Self {
        Self {
            milli: v as i64 * 1000,
        }
    }

    /// Rounds `v` to the Mesos precision of 0.001. Fails for NaN, infinities and values
    /// beyond ±2^53 thousandths (about ±9·10^12).
    pub fn try_from_f64(v: f64) -> Result<Self, ParseError> {
        if !v.is_finite() {
            return Err(ParseError::value(&v.to_string(), "scalar must be finite"));
        }
        let scaled = (v * 1000.0).round();
        if scaled.abs() > SCALAR_MAX_MILLI as f64 {
            return Err(ParseError::value(
                &v.to_string(),
                "scalar is too large for Mesos fixed-point precision",
            ));
        }
        Ok(Self {
            milli: scaled as i64,
        })
    }

    /// The value in thousandths.
    pub const fn milli(self) -> i64 {
        self.milli
    }

    /// The value as a double, as Mesos puts it on the wire.
    pub fn as_f64(self) -> f64 {
        self.milli as f64 / 1000.0
    }

    /// True for zero.
    pub const fn is_zero(self) -> bool {
        self.milli == 0
    }

    /// True for values above zero.
    pub const fn is_positive(self) -> bool {
        self.milli > 0
    }

    /// True for values below zero.
    pub const fn is_negative(self) -> bool {
        self.milli < 0
    }

    /// True for whole numbers (e.g. GPUs must be whole).
    pub const fn is_whole(self) -> bool {
        self.milli % 1000 == 0
    }

    /// Addition, `None` on `i64` overflow.
    pub fn checked_add(self, other: Scalar) -> Option<Scalar> {
        self.milli.checked_add(other.milli).map(Scalar::from_milli)
    }

    /// Subtraction, `None` on `i64` overflow.
    pub fn checked_sub(self, other: Scalar) -> Option<Scalar> {
        self.milli.checked_sub(other.milli).map(Scalar::from_milli)
    }

    /// `self - other`, but never below zero.
    pub fn saturating_sub_to_zero(self, other: Scalar) -> Scalar {
        Scalar::from_milli(self.milli.saturating_sub(other.milli).max(0))
    }

    /// The smaller of the two.
    pub fn min(self, other: Scalar) -> Scalar {
        if self <= other { self } else { other }
    }

    /// The larger of the two.
    pub fn max(self, other: Scalar) -> Scalar {
        if self >= other { self } else { other }
    }
}

impl From<i32> for Scalar {
    fn from(v: i32) -> Self {
        Scalar::from_int(v)
    }
}

impl From<u32> for Scalar {
    fn from(v: u32) -> Self {
        Scalar::from_milli(i64::from(v) * 1000)
    }
}

impl TryFrom<f64> for Scalar {
    type Error = ParseError;
    fn try_from(v: f64) -> Result<Self, ParseError> {
        Scalar::try_from_f64(v)
    }
}

/// Saturating at the `i64` bounds (never panics).
impl Add for Scalar {
    type Output = Scalar;
    fn add(self, rhs: Scalar) -> Scalar {
        Scalar::from_milli(self.milli.saturating_add(rhs.milli))
    }
}

/// Saturating at the `i64` bounds (never panics); may go below zero.
impl Sub for Scalar {
    type Output = Scalar;
    fn sub(self, rhs: Scalar) -> Scalar {
        Scalar::from_milli(self.milli.saturating_sub(rhs.milli))
    }
}

impl AddAssign for Scalar {
    fn add_assign(&mut self, rhs: Scalar) {
        *self = *self + rhs;
    }
}

impl SubAssign for Scalar {
    fn sub_assign(&mut self, rhs: Scalar) {
        *self = *self - rhs;
    }
}

impl Neg for Scalar {
    type Output = Scalar;
    fn neg(self) -> Scalar {
        Scalar::from_milli(self.milli.saturating_neg())
    }
}

impl std::iter::Sum for Scalar {
    fn sum<I: Iterator<Item = Scalar>>(iter: I) -> Scalar {
        iter.fold(Scalar::ZERO, |a, b| a + b)
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.as_f64(), f)
    }
}

impl fmt::Debug for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scalar({})", self.as_f64())
    }
}

#[derive(Serialize, Deserialize)]
struct ScalarWire {
    value: f64,
}

impl Serialize for Scalar {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ScalarWire {
            value: self.as_f64(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = ScalarWire::deserialize(d)?;
        Scalar::try_from_f64(w.value).map_err(serde::de::Error::custom)
    }
}

// ---------------------------------------------------------------------------------------
// Ranges

/// One inclusive range `[begin, end]` (`{"begin":31000,"end":32000}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Range {
    /// First value, inclusive.
    pub begin: u64,
    /// Last value, inclusive.
    pub end: u64,
}

impl Range {
    /// `[begin, end]`; fails when `begin > end`.
    pub fn new(begin: u64, end: u64) -> Result<Self, ParseError> {
        if begin > end {
            return Err(ParseError::value(
                &format!("{begin}-{end}"),
                "range begin is greater than its end",
            ));
        }
        Ok(Self { begin, end })
    }

    /// The single value `[v, v]`.
    pub const fn single(v: u64) -> Self {
        Self { begin: v, end: v }
    }

    /// How many values the range holds (saturating for the full `u64` span).
    pub fn count(&self) -> u64 {
        (self.end - self.begin).saturating_add(1)
    }

    /// True when `v` is in the range.
    pub fn contains(&self, v: u64) -> bool {
        self.begin <= v && v <= self.end
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.begin, self.end)
    }
}

/// A set of integers as Mesos ranges, always normalised: sorted, overlapping and
/// adjacent ranges merged (`[1-2],[3-4]` is `[1-4]`). JSON:
/// `{"range":[{"begin":31000,"end":32000}]}`. Text: `[31000-32000, 33000-34000]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Ranges {
    ranges: Vec<Range>,
}

impl Ranges {
    /// The empty set.
    pub const fn empty() -> Self {
        Self { ranges: Vec::new() }
    }

    /// Normalises any list of ranges.
    pub fn from_ranges(ranges: impl IntoIterator<Item = Range>) -> Self {
        let mut v: Vec<Range> = ranges.into_iter().collect();
        Self::coalesce(&mut v);
        Self { ranges: v }
    }

    /// One range `[begin, end]`; fails when `begin > end`.
    pub fn from_range(begin: u64, end: u64) -> Result<Self, ParseError> {
        Ok(Self {
            ranges: vec![Range::new(begin, end)?],
        })
    }

    /// The given single values.
    pub fn from_values(values: impl IntoIterator<Item = u64>) -> Self {
        Self::from_ranges(values.into_iter().map(Range::single))
    }

    fn coalesce(v: &mut Vec<Range>) {
        if v.len() <= 1 {
            return;
        }
        v.sort_unstable();
        let mut out: Vec<Range> = Vec::with_capacity(v.len());
        for r in v.drain(..) {
            match out.last_mut() {
                Some(last) if r.begin <= last.end.saturating_add(1) => {
                    last.end = last.end.max(r.end);
                }
                _ => out.push(r),
            }
        }
        *v = out;
    }

    /// The normalised ranges, sorted.
    pub fn ranges(&self) -> &[Range] {
        &self.ranges
    }

    /// True when no value is in the set.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// How many values the set holds (saturating).
    pub fn count(&self) -> u64 {
        self.ranges
            .iter()
            .fold(0u64, |acc, r| acc.saturating_add(r.count()))
    }

    /// Every value, ascending (beware of huge ranges).
    pub fn values(&self) -> impl Iterator<Item = u64> + '_ {
        self.ranges.iter().flat_map(|r| r.begin..=r.end)
    }

    /// True when `v` is in the set.
    pub fn contains_value(&self, v: u64) -> bool {
        self.find(v).is_some()
    }

    fn find(&self, v: u64) -> Option<&Range> {
        let idx = self.ranges.partition_point(|r| r.end < v);
        self.ranges.get(idx).filter(|r| r.begin <= v)
    }

    /// True when every value of `other` is in `self`.
    pub fn is_superset(&self, other: &Ranges) -> bool {
        other
            .ranges
            .iter()
            .all(|r| self.find(r.begin).is_some_and(|mine| r.end <= mine.end))
    }

    /// True when every value of `self` is in `other`.
    pub fn is_subset(&self, other: &Ranges) -> bool {
        other.is_superset(self)
    }

    /// The union.
    pub fn union(&self, other: &Ranges) -> Ranges {
        let mut v = Vec::with_capacity(self.ranges.len() + other.ranges.len());
        v.extend_from_slice(&self.ranges);
        v.extend_from_slice(&other.ranges);
        Self::from_ranges(v)
    }

    /// The values of `self` not in `other`.
    pub fn difference(&self, other: &Ranges) -> Ranges {
        let mut out = Vec::with_capacity(self.ranges.len());
        let mut j = 0;
        for a in &self.ranges {
            while j < other.ranges.len() && other.ranges[j].end < a.begin {
                j += 1;
            }
            let mut cur = Some(a.begin);
            let mut k = j;
            while let Some(start) = cur {
                let Some(b) = other.ranges.get(k) else { break };
                if b.begin > a.end {
                    break;
                }
                if b.begin > start {
                    out.push(Range {
                        begin: start,
                        end: b.begin - 1,
                    });
                }
                cur = b.end.checked_add(1).filter(|n| *n <= a.end);
                if b.end >= a.end {
                    cur = None;
                }
                k += 1;
            }
            if let Some(start) = cur {
                out.push(Range {
                    begin: start,
                    end: a.end,
                });
            }
        }
        Ranges { ranges: out }
    }

    /// The values in both.
    pub fn intersection(&self, other: &Ranges) -> Ranges {
        self.difference(&self.difference(other))
    }

    /// Adds the values of `other`.
    pub fn add(&mut self, other: &Ranges) {
        *self = self.union(other);
    }

    /// Removes the values of `other`.
    pub fn remove(&mut self, other: &Ranges) {
        *self = self.difference(other);
    }

    /// Parses the Mesos text form `[1-10, 20-30]` (spaces ignored; `[]` is empty).
    pub fn parse(text: &str) -> Result<Ranges, ParseError> {
        let compact: String = text.chars().filter(|c| *c != ' ').collect();
        let inner = compact
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .ok_or_else(|| ParseError::value(text, "ranges must look like [begin-end, ...]"))?;
        let mut out = Vec::new();
        for item in inner.split([',', '\n']).filter(|s| !s.is_empty()) {
            let (b, e) = item.split_once('-').ok_or_else(|| {
                ParseError::value(text, format!("range '{item}' must be begin-end"))
            })?;
            let parse = |n: &str| {
                n.parse::<u64>().map_err(|_| {
                    ParseError::value(
                        text,
                        format!("expecting a non-negative integer, got '{n}' in range '{item}'"),
                    )
                })
            };
            let (begin, end) = (parse(b)?, parse(e)?);
            if begin > end {
                return Err(ParseError::value(
                    text,
                    format!("range '{item}' has begin greater than end"),
                ));
            }
            out.push(Range { begin, end });
        }
        Ok(Ranges::from_ranges(out))
    }
}

impl fmt::Display for Ranges {
    /// Mesos' form, e.g. `[1025-2180, 2182-3887]` (also used by `/master/state`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, r) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{r}")?;
        }
        f.write_str("]")
    }
}

impl FromIterator<Range> for Ranges {
    fn from_iter<T: IntoIterator<Item = Range>>(iter: T) -> Self {
        Ranges::from_ranges(iter)
    }
}

#[derive(Serialize)]
struct RangesOut<'a> {
    range: &'a [Range],
}

#[derive(Deserialize)]
struct RangesIn {
    #[serde(default)]
    range: Vec<Range>,
}

impl Serialize for Ranges {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        RangesOut {
            range: &self.ranges,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Ranges {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = RangesIn::deserialize(d)?;
        if let Some(bad) = w.range.iter().find(|r| r.begin > r.end) {
            return Err(serde::de::Error::custom(format!(
                "range {{\"begin\":{},\"end\":{}}} has begin greater than end",
                bad.begin, bad.end
            )));
        }
        Ok(Ranges::from_ranges(w.range))
    }
}

// ---------------------------------------------------------------------------------------
// Set

/// A Mesos set of strings (`{"item":["a","b"]}`; text `{a,b}`), kept sorted and
/// without duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Set {
    items: BTreeSet<String>,
}

impl Set {
    /// The empty set.
    pub const fn empty() -> Self {
        Self {
            items: BTreeSet::new(),
        }
    }

    /// The items, sorted.
    pub fn items(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.items.iter().map(String::as_str)
    }

    /// True when there are no items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when `item` is in the set.
    pub fn contains_item(&self, item: &str) -> bool {
        self.items.contains(item)
    }

    /// Adds one item.
    pub fn insert(&mut self, item: impl Into<String>) {
        self.items.insert(item.into());
    }

    /// True when every item of `other` is in `self`.
    pub fn is_superset(&self, other: &Set) -> bool {
        self.items.is_superset(&other.items)
    }

    /// True when every item of `self` is in `other`.
    pub fn is_subset(&self, other: &Set) -> bool {
        self.items.is_subset(&other.items)
    }

    /// The union.
    pub fn union(&self, other: &Set) -> Set {
        Set {
            items: self.items.union(&other.items).cloned().collect(),
        }
    }

    /// The items of `self` not in `other`.
    pub fn difference(&self, other: &Set) -> Set {
        Set {
            items: self.items.difference(&other.items).cloned().collect(),
        }
    }

    /// Parses the Mesos text form `{a,b}` (spaces ignored; `{}` is empty).
    pub fn parse(text: &str) -> Result<Set, ParseError> {
        let compact: String = text.chars().filter(|c| *c != ' ').collect();
        let inner = compact
            .strip_prefix('{')
            .and_then(|s| s.strip_suffix('}'))
            .ok_or_else(|| ParseError::value(text, "sets must look like {a,b,...}"))?;
        Ok(inner
            .split([',', '\n'])
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect())
    }
}

impl<S: Into<String>> FromIterator<S> for Set {
    fn from_iter<T: IntoIterator<Item = S>>(iter: T) -> Self {
        Set {
            items: iter.into_iter().map(Into::into).collect(),
        }
    }
}

impl fmt::Display for Set {
    /// Mesos' form, e.g. `{a, b}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, item) in self.items.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(item)?;
        }
        f.write_str("}")
    }
}

#[derive(Serialize)]
struct SetOut<'a> {
    item: Vec<&'a str>,
}

#[derive(Deserialize)]
struct SetIn {
    #[serde(default)]
    item: Vec<String>,
}

impl Serialize for Set {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        SetOut {
            item: self.items().collect(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Set {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(SetIn::deserialize(d)?.item.into_iter().collect())
    }
}

// ---------------------------------------------------------------------------------------
// Text and Value

/// A Mesos text value (`{"value":"r1"}`), used by attributes only.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Text {
    /// The text.
    pub value: String,
}

/// The `type` of a Mesos value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ValueType {
    /// `SCALAR`
    #[serde(rename = "SCALAR")]
    Scalar,
    /// `RANGES`
    #[serde(rename = "RANGES")]
    Ranges,
    /// `SET`
    #[serde(rename = "SET")]
    Set,
    /// `TEXT`
    #[serde(rename = "TEXT")]
    Text,
}

impl ValueType {
    /// The proto/JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            ValueType::Scalar => "SCALAR",
            ValueType::Ranges => "RANGES",
            ValueType::Set => "SET",
            ValueType::Text => "TEXT",
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed Mesos value of any type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    /// A fixed-point number.
    Scalar(Scalar),
    /// Integer ranges.
    Ranges(Ranges),
    /// A set of strings.
    Set(Set),
    /// Free text (attributes only).
    Text(String),
}

impl Value {
    /// The value's type.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::Scalar(_) => ValueType::Scalar,
            Value::Ranges(_) => ValueType::Ranges,
            Value::Set(_) => ValueType::Set,
            Value::Text(_) => ValueType::Text,
        }
    }

    /// Parses the Mesos text form the way Mesos' `values::parse` does: spaces are
    /// removed; `[..]` is RANGES, `{..}` is SET; text without ASCII letters is a SCALAR
    /// (and must parse as a number); anything else is TEXT.
    ///
    /// Unlike Mesos, which rejects letter-free text that is not a number (e.g. the
    /// IP `10.0.0.1`), `lenient_text` makes such text TEXT (used for attributes).
    pub fn parse(text: &str, lenient_text: bool) -> Result<Value, ParseError> {
        let compact: String = text.chars().filter(|c| *c != ' ').collect();
        if compact.is_empty() {
            return Err(ParseError::value(text, "expecting a non-empty value"));
        }
        if compact.starts_with('[') {
            return Ranges::parse(&compact).map(Value::Ranges);
        }
        if compact.starts_with('{') {
            return Set::parse(&compact).map(Value::Set);
        }
        if !compact.chars().any(|c| c.is_ascii_alphabetic()) {
            match compact.parse::<f64>() {
                Ok(v) => return Scalar::try_from_f64(v).map(Value::Scalar),
                Err(_) if lenient_text => {}
                Err(_) => {
                    return Err(ParseError::value(text, "not a valid scalar number"));
                }
            }
        }
        Ok(Value::Text(compact))
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Scalar(s) => write!(f, "{s}"),
            Value::Ranges(r) => write!(f, "{r}"),
            Value::Set(s) => write!(f, "{s}"),
            Value::Text(t) => f.write_str(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: f64) -> Scalar {
        Scalar::try_from_f64(v).unwrap()
    }

    #[test]
    fn fixed_point_sum() {
        assert_eq!(s(0.1) + s(0.2), s(0.3));
        assert_eq!((s(0.1) + s(0.2)).as_f64(), 0.3);
        assert_eq!(s(0.0004), Scalar::ZERO);
        assert_eq!(s(0.0005), Scalar::from_milli(1));
        assert_eq!(s(-0.0005), Scalar::from_milli(-1));
        assert_eq!(s(1.2345).to_string(), "1.235");
        assert_eq!(s(4.0).to_string(), "4");
    }

    #[test]
    fn scalar_rejects_nan_and_huge() {
        assert!(Scalar::try_from_f64(f64::NAN).is_err());
        assert!(Scalar::try_from_f64(f64::INFINITY).is_err());
        assert!(Scalar::try_from_f64(1e300).is_err());
        let e = serde_json::from_str::<Scalar>(r#"{"value":1e300}"#).unwrap_err();
        assert!(e.to_string().contains("too large"), "{e}");
    }

    #[test]
    fn scalar_json() {
        assert_eq!(serde_json::to_string(&s(1.5)).unwrap(), r#"{"value":1.5}"#);
        assert_eq!(
            serde_json::from_str::<Scalar>(r#"{"value":4}"#).unwrap(),
            s(4.0)
        );
    }

    #[test]
    fn ranges_normalise() {
        let r = Ranges::from_ranges([
            Range::new(3, 4).unwrap(),
            Range::new(1, 2).unwrap(),
            Range::new(10, 12).unwrap(),
            Range::new(11, 20).unwrap(),
        ]);
        assert_eq!(
            r.ranges(),
            &[Range::new(1, 4).unwrap(), Range::new(10, 20).unwrap()]
        );
        assert_eq!(r.to_string(), "[1-4, 10-20]");
        assert_eq!(r.count(), 15);
    }

    #[test]
    fn ranges_difference_and_edges() {
        let a = Ranges::from_range(0, u64::MAX).unwrap();
        let b = Ranges::from_range(5, 10).unwrap();
        let d = a.difference(&b);
        assert_eq!(d.to_string(), format!("[0-4, 11-{}]", u64::MAX));
        assert!(a.is_superset(&b));
        assert!(!b.is_superset(&a));
        assert_eq!(d.union(&b), a);
        assert!(b.difference(&a).is_empty());
        assert_eq!(a.intersection(&b), b);
    }

    #[test]
    fn ranges_text() {
        assert_eq!(
            Ranges::parse("[31000-32000, 1-2,3-4]").unwrap().to_string(),
            "[1-4, 31000-32000]"
        );
        assert_eq!(Ranges::parse("[]").unwrap(), Ranges::empty());
        for bad in ["[5]", "[1-2", "1-2]", "[a-b]", "[5-1]", "[-1-3]", "[1-2-3]"] {
            assert!(Ranges::parse(bad).is_err(), "{bad} should fail");
        }
        let e = Ranges::parse("[5-1]").unwrap_err().to_string();
        assert!(e.contains("[5-1]") && e.contains("begin greater"), "{e}");
    }

    #[test]
    fn ranges_json_rejects_inverted() {
        let e = serde_json::from_str::<Ranges>(r#"{"range":[{"begin":9,"end":1}]}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("begin greater than end"), "{e}");
        assert_eq!(
            serde_json::from_str::<Ranges>("{}").unwrap(),
            Ranges::empty()
        );
    }

    #[test]
    fn set_text_and_json() {
        let set = Set::parse("{b, a,a}").unwrap();
        assert_eq!(set.to_string(), "{a, b}");
        assert_eq!(
            serde_json::to_string(&set).unwrap(),
            r#"{"item":["a","b"]}"#
        );
        assert!(Set::parse("{a").is_err());
    }

    #[test]
    fn value_parse_rules() {
        assert_eq!(Value::parse("8", false).unwrap(), Value::Scalar(s(8.0)));
        assert_eq!(Value::parse(" 1.5 ", false).unwrap(), Value::Scalar(s(1.5)));
        assert_eq!(Value::parse("r1", false).unwrap(), Value::Text("r1".into()));
        assert_eq!(
            Value::parse("1e5", false).unwrap(),
            Value::Text("1e5".into())
        );
        assert_eq!(
            Value::parse("[1-10]", false).unwrap().value_type(),
            ValueType::Ranges
        );
        assert_eq!(
            Value::parse("{a,b}", false).unwrap().value_type(),
            ValueType::Set
        );
        assert!(Value::parse("10.0.0.1", false).is_err());
        assert_eq!(
            Value::parse("10.0.0.1", true).unwrap(),
            Value::Text("10.0.0.1".into())
        );
        assert!(Value::parse("   ", true).is_err());
    }
}
