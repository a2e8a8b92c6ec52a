//! Validation of `config.toml`: every problem in one run, each with its TOML
//! path and `line:column`.
//!
//! The text is parsed with `toml_edit` (which keeps byte spans), then walked
//! by hand against the schema in [`SCHEMA`] instead of through serde, so that
//! one wrong type does not hide the next problem. Rules:
//!
//! * syntax errors (bad TOML, duplicate keys) stop early: [`ConfigError::Syntax`];
//! * everything else is collected into [`ConfigError::Invalid`], sorted by
//!   position: unknown keys (with a "did you mean" hint from `strsim`, also
//!   across tables and from DC/OS `config.yaml` names), wrong types, bad values,
//!   cross-field rules (quorum size, duplicate IPs, resolvers pointing back at
//!   the cluster, VIP range overlaps, auth needs exactly one credential, etcd
//!   timing rules) and, when loading from disk, the scripts (missing, not a
//!   regular file, not executable, no shebang);
//! * a problem about a value points at the value; about an unknown key at the
//!   key; about a missing key at its table's header, or `1:1` for the root or an
//!   absent table.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::ops::Range;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use toml_edit::{Array, Item, Key, TableLike, Value};

use crate::config::{
    AgentConfig, AuthConfig, BUILTIN_NO_PROXY, Config, ConfigError, DurationSpec, EtcdConfig,
    ImageConfig, MASK, NODE_LOCAL_DNS, PortRanges, ProxyConfig, Resolver, Script, Scripts,
    defaults,
};

/// Known keys per table (`""` is the root). `agent.attributes` and
/// `dns_forward_zones` are free-form maps.
pub const SCHEMA: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "cluster_name",
            "masters",
            "bootstrap_url",
            "ip_detect",
            "ip_detect_public",
            "fault_domain_detect",
            "resolvers",
            "dns_search",
            "dns_forward_zones",
            "vip_range",
            "check_time",
            "agent",
            "auth",
            "proxy",
            "etcd",
            "image",
        ],
    ),
    (
        "agent",
        &[
            "private_ports",
            "public_ports",
            "reserved_memory_mb",
            "attributes",
            "gpu_isolation",
            "gpus_are_scarce",
            "public_role",
        ],
    ),
    (
        "auth",
        &[
            "enabled",
            "superuser_uid",
            "superuser_password_hash",
            "superuser_public_key",
            "token_lifetime",
        ],
    ),
    ("proxy", &["http_proxy", "https_proxy", "no_proxy"]),
    ("etcd", &["heartbeat_interval_ms", "election_timeout_ms"]),
    ("image", &["channel", "version"]),
];

/// Keys that must be present.
pub const REQUIRED: &[&str] = &["cluster_name", "masters", "bootstrap_url", "resolvers"];

/// Every leaf key path of the schema (`"agent.reserved_memory_mb"`, ...), in schema order.
pub fn leaf_keys() -> Vec<String> {
    let tables: Vec<&str> = SCHEMA.iter().map(|(t, _)| *t).collect();
    let mut out = Vec::new();
    for (table, keys) in SCHEMA {
        for k in *keys {
            if table.is_empty() && tables.contains(k) {
                continue;
            }
            out.push(join(table, k));
        }
    }
    out
}

/// DC/OS `config.yaml` names an operator may carry over, with what to use instead.
const DCOS_NAMES: &[(&str, &str)] = &[
    ("master_list", "did you mean `masters`?"),
    ("ip_detect_filename", "did you mean `ip_detect`?"),
    (
        "ip_detect_public_filename",
        "did you mean `ip_detect_public`?",
    ),
    (
        "fault_domain_detect_filename",
        "did you mean `fault_domain_detect`?",
    ),
    (
        "enable_gpu_isolation",
        "did you mean `agent.gpu_isolation`?",
    ),
    (
        "use_proxy",
        "set `proxy.http_proxy` / `proxy.https_proxy` instead",
    ),
    (
        "master_discovery",
        "Basalt only supports a static master list: use `masters`",
    ),
    (
        "exhibitor_storage_backend",
        "not needed: Basalt keeps its state in etcd on the masters",
    ),
    ("oauth_enabled", "did you mean `auth.enabled`?"),
    ("security", "did you mean `auth.enabled`?"),
    ("dns_search_domains", "did you mean `dns_search`?"),
];

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// TOML path of the offending key (`masters[1]`, `agent.reserved_memory_mb`).
    pub path: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong (and, where possible, what to write instead).
    pub message: String,
}

impl Problem {
    /// A problem at `line:column`.
    pub fn new(path: &str, line: usize, column: usize, message: &str) -> Self {
        Self {
            path: path.to_owned(),
            line,
            column,
            message: message.to_owned(),
        }
    }

    /// `file:line:column: path: message`.
    pub fn display_in(&self, file: &str) -> String {
        format!("{file}:{self}")
    }
}

impl fmt::Display for Problem {
    /// `line:column: path: message` (prefix with the file name for the full form,
    /// see [`Problem::display_in`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.line, self.column, self.path, self.message
        )
    }
}

type Span = Option<Range<usize>>;

/// Joins a table path and a key, quoting keys that are not bare TOML keys.
fn join(table: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare {
        key.to_owned()
    } else {
        format!("\"{}\"", key.replace('\\', "\\\\").replace('"', "\\\""))
    };
    if table.is_empty() {
        key
    } else {
        format!("{table}.{key}")
    }
}

fn type_name(item: &Item) -> &'static str {
    match item {
        Item::None => "nothing",
        Item::Table(_) => "a table",
        Item::ArrayOfTables(_) => "an array of tables",
        Item::Value(v) => value_type_name(v),
    }
}

fn value_type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "an array",
        Value::InlineTable(_) => "a table",
    }
}

/// Walk state: the source (for positions) and the problems found so far.
struct Ctx<'s> {
    src: &'s str,
    line_starts: Vec<usize>,
    problems: Vec<Problem>,
    /// Reading a node's installed `cluster.toml` (no config folder): agents' copies carry
    /// [`MASK`] instead of the superuser's password hash, and that is accepted there.
    node_view: bool,
}

impl<'s> Ctx<'s> {
    fn new(src: &'s str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        Self {
            node_view: false,
            src,
            line_starts,
            problems: Vec::new(),
        }
    }

    /// 1-based (line, column) of a byte offset; column counts characters.
    fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.src.len());
        let line_idx = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let start = self.line_starts.get(line_idx).copied().unwrap_or(0);
        let column = self
            .src
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line_idx + 1, column + 1)
    }

    fn report(&mut self, path: &str, span: &Span, message: impl Into<String>) {
        let (line, column) = span.as_ref().map_or((1, 1), |s| self.position(s.start));
        self.problems.push(Problem {
            path: path.to_owned(),
            line,
            column,
            message: message.into(),
        });
    }

    fn wrong_type(&mut self, path: &str, span: &Span, expected: &str, found: &str) {
        self.report(path, span, format!("expected {expected}, found {found}"));
    }
}

/// A table as seen by the walker: its path, its keys, and where it starts.
#[derive(Clone, Copy)]
struct Tbl<'d> {
    path: &'d str,
    t: &'d dyn TableLike,
    span: &'d Span,
}

/// A present key: its path, value and best span (value, else key).
struct Entry<'d> {
    path: String,
    item: &'d Item,
    span: Span,
}

fn entry_span(key: &Key, item: &Item) -> Span {
    item.span().or_else(|| key.span())
}

impl<'d> Tbl<'d> {
    fn get(&self, key: &str) -> Option<Entry<'d>> {
        let (k, item) = self.t.get_key_value(key)?;
        if item.is_none() {
            return None;
        }
        Some(Entry {
            path: join(self.path, key),
            item,
            span: entry_span(k, item),
        })
    }
}

/// Reports every key of `t` not in `known`, with a hint.
fn check_unknown_keys(cx: &mut Ctx<'_>, t: Tbl<'_>, known: &[&str]) {
    for (name, item) in t.t.iter() {
        if known.contains(&name) {
            continue;
        }
        let span =
            t.t.key(name)
                .and_then(Key::span)
                .or_else(|| item.span())
                .or_else(|| t.span.clone());
        let path = join(t.path, name);
        let hint = hint_for(t.path, name, known);
        cx.report(&path, &span, format!("unknown key `{name}`; {hint}"));
    }
}

/// The "did you mean" hint for an unknown key `name` in table `table`.
fn hint_for(table: &str, name: &str, known: &[&str]) -> String {
    if table.is_empty()
        && let Some((_, h)) = DCOS_NAMES.iter().find(|(n, _)| *n == name)
    {
        return (*h).to_owned();
    }
    if let Some(best) = closest(name, known.iter().copied()) {
        let full = join(table, best);
        return format!("did you mean `{full}`?");
    }
    // The exact key (or a near one) lives in another table.
    let elsewhere = SCHEMA
        .iter()
        .filter(|(t, _)| *t != table)
        .flat_map(|(t, keys)| keys.iter().map(move |k| (*t, *k)))
        .filter(|(t, k)| !(t.is_empty() && SCHEMA.iter().any(|(tt, _)| tt == k)));
    let mut best: Option<(f64, String)> = None;
    for (t, k) in elsewhere {
        let score = similarity(name, k);
        if score >= 0.85 && best.as_ref().is_none_or(|(s, _)| score > *s) {
            best = Some((score, join(t, k)));
        }
    }
    if let Some((_, full)) = best {
        return format!("did you mean `{full}`?");
    }
    let shown: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
    format!("known keys here: {}", shown.join(", "))
}

fn similarity(a: &str, b: &str) -> f64 {
    strsim::jaro_winkler(a, b).max(strsim::normalized_damerau_levenshtein(a, b))
}

fn closest<'k>(name: &str, candidates: impl Iterator<Item = &'k str>) -> Option<&'k str> {
    let mut best: Option<(f64, &str)> = None;
    for c in candidates {
        let score = similarity(name, c);
        if score >= 0.8 && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| c)
}

// ---------------------------------------------------------------------------
// Typed accessors: each reports a wrong type and returns None.
// ---------------------------------------------------------------------------

fn as_str<'d>(cx: &mut Ctx<'_>, e: &Entry<'d>) -> Option<&'d str> {
    match e.item.as_str() {
        Some(s) => Some(s),
        None => {
            cx.wrong_type(&e.path, &e.span, "a string", type_name(e.item));
            None
        }
    }
}

fn as_bool(cx: &mut Ctx<'_>, e: &Entry<'_>) -> Option<bool> {
    match e.item.as_bool() {
        Some(b) => Some(b),
        None => {
            cx.wrong_type(&e.path, &e.span, "a boolean", type_name(e.item));
            None
        }
    }
}

fn as_u64(cx: &mut Ctx<'_>, e: &Entry<'_>) -> Option<u64> {
    match e.item.as_integer() {
        Some(i) => match u64::try_from(i) {
            Ok(u) => Some(u),
            Err(_) => {
                cx.report(&e.path, &e.span, format!("{i} must not be negative"));
                None
            }
        },
        None => {
            cx.wrong_type(&e.path, &e.span, "an integer", type_name(e.item));
            None
        }
    }
}

fn as_array<'d>(cx: &mut Ctx<'_>, e: &Entry<'d>, of: &str) -> Option<&'d Array> {
    match e.item.as_array() {
        Some(a) => Some(a),
        None => {
            cx.wrong_type(
                &e.path,
                &e.span,
                &format!("an array of {of}"),
                type_name(e.item),
            );
            None
        }
    }
}

fn as_table<'d>(cx: &mut Ctx<'_>, e: &'d Entry<'d>) -> Option<Tbl<'d>> {
    match e.item.as_table_like() {
        Some(t) => Some(Tbl {
            path: &e.path,
            t,
            span: &e.span,
        }),
        None => {
            cx.wrong_type(&e.path, &e.span, "a table", type_name(e.item));
            None
        }
    }
}

/// Strings of an array, each with its path and span; non-strings are reported.
fn string_elems<'d>(cx: &mut Ctx<'_>, path: &str, a: &'d Array) -> Vec<(String, &'d str, Span)> {
    let mut out = Vec::new();
    for (i, v) in a.iter().enumerate() {
        let p = format!("{path}[{i}]");
        match v.as_str() {
            Some(s) => out.push((p, s, v.span())),
            None => cx.wrong_type(&p, &v.span(), "a string", value_type_name(v)),
        }
    }
    out
}

fn missing(cx: &mut Ctx<'_>, t: Tbl<'_>, key: &str, message: &str) {
    let path = join(t.path, key);
    cx.report(&path, t.span, message);
}

// ---------------------------------------------------------------------------
// Value rules
// ---------------------------------------------------------------------------

fn valid_domain(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty domain name".to_owned());
    }
    if name.len() > 253 {
        return Err(format!("`{name}` is longer than 253 characters"));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(format!("`{name}` has an empty label"));
        }
        if label.len() > 63 {
            return Err(format!(
                "`{name}`: label `{label}` is longer than 63 characters"
            ));
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            || label.starts_with('-')
            || label.ends_with('-')
        {
            return Err(format!(
                "`{name}` is not a valid domain name (labels: letters, digits, inner `-`)"
            ));
        }
    }
    Ok(())
}

/// Why an address can never be a master or resolver, if it cannot.
fn unusable_ip(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) if NODE_LOCAL_DNS.contains(&v4) => Some(
            "is a node-local DNS address (198.51.100.1–3); pointing there would loop back into the cluster's own DNS",
        ),
        ip if ip.is_loopback() => Some("is a loopback address; it points back at the node itself"),
        ip if ip.is_unspecified() => Some("is the unspecified address"),
        ip if ip.is_multicast() => Some("is a multicast address"),
        IpAddr::V4(v4) if v4.is_broadcast() => Some("is the broadcast address"),
        _ => None,
    }
}

fn check_url(s: &str, schemes: &[&str]) -> Result<(), String> {
    if s.chars().any(char::is_whitespace) {
        return Err(format!("`{s}` contains whitespace"));
    }
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err(format!(
            "`{s}` is not a URL; it must start with {}",
            schemes
                .iter()
                .map(|x| format!("`{x}://`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    };
    if !schemes.contains(&scheme) {
        return Err(format!(
            "scheme `{scheme}://` is not supported; use {}",
            schemes
                .iter()
                .map(|x| format!("`{x}://`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if scheme == "file" {
        if !rest.starts_with('/') {
            return Err(format!(
                "`{s}`: a file URL needs an absolute path (`file:///srv/basalt`)"
            ));
        }
    } else {
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
        if host.is_empty() || host.starts_with(':') {
            return Err(format!("`{s}` has no host"));
        }
    }
    Ok(())
}

fn check_attribute_name(n: &str) -> Result<(), String> {
    if n.is_empty()
        || !n
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
    {
        return Err(format!(
            "attribute name `{n}` may only use letters, digits, `_`, `-`, `.`, `/`"
        ));
    }
    if n == "public_ip" {
        return Err(
            "`public_ip` is set by the agent's role (public agents get `public_ip:true`)"
                .to_owned(),
        );
    }
    Ok(())
}

/// Mesos attribute value: text, scalar, range list `[a-b,...]` or set `{a,b}`.
fn check_attribute_value(v: &str) -> Result<(), String> {
    let text = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
    };
    let ok = if let Some(inner) = v.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
        inner.split(',').all(|r| {
            r.trim().split_once('-').is_some_and(|(a, b)| {
                matches!((a.trim().parse::<u64>(), b.trim().parse::<u64>()), (Ok(a), Ok(b)) if a <= b)
            })
        })
    } else if let Some(inner) = v.strip_prefix('{').and_then(|x| x.strip_suffix('}')) {
        inner.split(',').all(|x| text(x.trim()))
    } else {
        text(v)
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{v}` is not a Mesos attribute value (text of letters, digits, `_-./`; a number; `[1-10,20-30]`; or `{{a,b}}`)"
        ))
    }
}

fn check_role(r: &str) -> Result<(), String> {
    if r.is_empty() || r == "." || r == ".." || r == "*" {
        return Err(format!("`{r}` is not a usable Mesos role name"));
    }
    if r.starts_with('-') || r.starts_with('.') {
        return Err(format!("role `{r}` must not start with `-` or `.`"));
    }
    if !r
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(format!(
            "role `{r}` may only use letters, digits, `_`, `-`, `.`"
        ));
    }
    Ok(())
}

fn check_password_hash(h: &str) -> Result<(), String> {
    let parsed = argon2::PasswordHash::new(h).map_err(|e| {
        format!("not an argon2 PHC string ({e}); create one with `basalt-installer hash-password`")
    })?;
    let alg = parsed.algorithm.as_str();
    if !matches!(alg, "argon2id" | "argon2i" | "argon2d") {
        return Err(format!(
            "algorithm `{alg}` is not argon2; create a hash with `basalt-installer hash-password`"
        ));
    }
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err("argon2 PHC string has no salt or no hash".to_owned());
    }
    argon2::Params::try_from(&parsed).map_err(|e| format!("bad argon2 parameters: {e}"))?;
    Ok(())
}

fn check_public_key_pem(pem: &str) -> Result<(), String> {
    use base64::Engine as _;
    let t = pem.trim();
    let body = t
        .strip_prefix("-----BEGIN PUBLIC KEY-----")
        .and_then(|b| b.strip_suffix("-----END PUBLIC KEY-----"))
        .ok_or_else(|| {
            "must be a PEM block from `-----BEGIN PUBLIC KEY-----` to `-----END PUBLIC KEY-----`"
                .to_owned()
        })?;
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("PEM body is not base64: {e}"))?;
    if der.len() < 16 || der.first() != Some(&0x30) {
        return Err("PEM body is not a DER SubjectPublicKeyInfo".to_owned());
    }
    Ok(())
}

fn check_semverish(v: &str) -> Result<(), String> {
    let bad = || format!("`{v}` is not a version like `1.2.3`, `1.2.3-rc.1` or `1.2.3+build.5`");
    let (core, build) = match v.split_once('+') {
        Some((c, b)) => (c, Some(b)),
        None => (v, None),
    };
    let (core, pre) = match core.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (core, None),
    };
    let nums: Vec<&str> = core.split('.').collect();
    if nums.len() != 3
        || nums
            .iter()
            .any(|n| n.is_empty() || !n.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(bad());
    }
    for extra in [pre, build].into_iter().flatten() {
        if extra.is_empty()
            || extra
                .split('.')
                .any(|p| p.is_empty() || !p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        {
            return Err(bad());
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The walk
// ---------------------------------------------------------------------------

/// A value read from the document with where it came from.
#[derive(Clone)]
struct At<T> {
    v: T,
    path: String,
    span: Span,
}

fn read_script_path(cx: &mut Ctx<'_>, e: &Entry<'_>) -> Option<At<PathBuf>> {
    let s = as_str(cx, e)?;
    if s.trim().is_empty() {
        cx.report(&e.path, &e.span, "empty path");
        return None;
    }
    Some(At {
        v: PathBuf::from(s),
        path: e.path.clone(),
        span: e.span.clone(),
    })
}

fn read_resolver_list(
    cx: &mut Ctx<'_>,
    path: &str,
    a: &Array,
    masters: &[At<Ipv4Addr>],
) -> Vec<At<Resolver>> {
    let mut out: Vec<At<Resolver>> = Vec::new();
    for (p, s, span) in string_elems(cx, path, a) {
        let r = match s.parse::<Resolver>() {
            Ok(r) => r,
            Err(msg) => {
                cx.report(&p, &span, msg);
                continue;
            }
        };
        if let Some(why) = unusable_ip(r.ip) {
            cx.report(&p, &span, format!("{} {why}", r.ip));
            continue;
        }
        if let Some(m) = masters.iter().find(|m| IpAddr::V4(m.v) == r.ip) {
            cx.report(
                &p,
                &span,
                format!(
                    "{} is a master ({}); a resolver must be outside the cluster, this one would point back at the cluster's own DNS",
                    r.ip, m.path
                ),
            );
            continue;
        }
        if let Some(prev) = out.iter().find(|x| x.v == r) {
            let msg = format!("{r} is listed twice (also {})", prev.path);
            cx.report(&p, &span, msg);
            continue;
        }
        out.push(At {
            v: r,
            path: p,
            span,
        });
    }
    out
}

/// Reads and checks `text`; with `dir`, also checks and reads the scripts.
pub(crate) fn parse_and_validate(
    text: &str,
    file: &Path,
    dir: Option<&Path>,
) -> Result<(Config, Option<Scripts>), ConfigError> {
    let doc = toml_edit::Document::parse(text).map_err(|e| {
        let cx = Ctx::new(text);
        let (line, column) = e.span().map_or((1, 1), |s| cx.position(s.start));
        ConfigError::Syntax {
            path: file.to_path_buf(),
            line,
            column,
            message: e.message().trim().to_owned(),
        }
    })?;
    let mut cx = Ctx::new(text);
    cx.node_view = dir.is_none();
    let root_span: Span = None;
    let root = Tbl {
        path: "",
        t: doc.as_table(),
        span: &root_span,
    };
    let (draft, script_refs) = walk(&mut cx, root);
    // Scripts are checked even when other keys are wrong: every problem at once.
    let scripts = dir.and_then(|dir| read_scripts(&mut cx, dir, &script_refs));
    let mut problems = cx.problems;
    problems.sort_by_key(|p| (p.line, p.column));
    match draft {
        Some(config) if problems.is_empty() => Ok((config, scripts)),
        _ => {
            if problems.is_empty() {
                // Cannot happen: a draft is only missing when a problem was reported.
                problems.push(Problem::new("", 1, 1, "invalid configuration"));
            }
            Err(ConfigError::Invalid {
                file: file.to_path_buf(),
                problems,
            })
        }
    }
}

/// A script path named by the config (`key` is `ip_detect`, ...); `span` is
/// `None` when the default applies.
struct ScriptRef {
    key: &'static str,
    configured: PathBuf,
    span: Span,
}

fn walk(cx: &mut Ctx<'_>, root: Tbl<'_>) -> (Option<Config>, Vec<ScriptRef>) {
    let mut script_refs = Vec::new();
    let config = walk_config(cx, root, &mut script_refs);
    (config, script_refs)
}

fn walk_config(
    cx: &mut Ctx<'_>,
    root: Tbl<'_>,
    script_refs: &mut Vec<ScriptRef>,
) -> Option<Config> {
    let known = SCHEMA.first().map_or(&[][..], |(_, k)| *k);
    check_unknown_keys(cx, root, known);
    let mut ok = true;

    // cluster_name
    let cluster_name = match root.get("cluster_name") {
        None => {
            missing(
                cx,
                root,
                "cluster_name",
                "required; name this cluster (e.g. `cluster_name = \"prod-eu\"`)",
            );
            None
        }
        Some(e) => as_str(cx, &e).and_then(|s| {
            let msg = if s.trim().is_empty() {
                Some("must not be empty".to_owned())
            } else if s.chars().count() > 64 {
                Some(format!("{} characters; at most 64", s.chars().count()))
            } else if s.chars().any(char::is_control) {
                Some("must not contain control characters".to_owned())
            } else if s.trim() != s {
                Some("must not start or end with whitespace".to_owned())
            } else {
                None
            };
            match msg {
                Some(m) => {
                    cx.report(&e.path, &e.span, m);
                    None
                }
                None => Some(s.to_owned()),
            }
        }),
    };
    ok &= cluster_name.is_some();

    // masters
    let mut masters: Vec<At<Ipv4Addr>> = Vec::new();
    let mut masters_ok = false;
    match root.get("masters") {
        None => missing(
            cx,
            root,
            "masters",
            "required; list 1, 3, 5 or 7 master IPv4 addresses",
        ),
        Some(e) => {
            if let Some(a) = as_array(cx, &e, "IPv4 address strings") {
                masters_ok = true;
                let n = a.len();
                if !matches!(n, 1 | 3 | 5 | 7) {
                    let entries = if n == 1 { "entry" } else { "entries" };
                    cx.report(
                        &e.path,
                        &e.span,
                        format!("{n} {entries}; a quorum needs 1, 3, 5 or 7"),
                    );
                    masters_ok = false;
                }
                let elems = string_elems(cx, &e.path, a);
                masters_ok &= elems.len() == n;
                for (p, s, span) in elems {
                    let ip = match s.parse::<IpAddr>() {
                        Ok(IpAddr::V4(ip)) => ip,
                        Ok(IpAddr::V6(_)) => {
                            cx.report(&p, &span, format!("{s} is IPv6; masters must be IPv4"));
                            masters_ok = false;
                            continue;
                        }
                        Err(_) => {
                            cx.report(&p, &span, format!("`{s}` is not an IPv4 address"));
                            masters_ok = false;
                            continue;
                        }
                    };
                    if let Some(why) = unusable_ip(IpAddr::V4(ip)) {
                        let why = why.replace(
                            "; it points back at the node itself",
                            "; other nodes cannot reach it",
                        );
                        cx.report(&p, &span, format!("{ip} {why}"));
                        masters_ok = false;
                        continue;
                    }
                    if let Some(prev) = masters.iter().find(|m| m.v == ip) {
                        let msg = format!("{ip} is listed twice (also {})", prev.path);
                        cx.report(&p, &span, msg);
                        masters_ok = false;
                        continue;
                    }
                    masters.push(At {
                        v: ip,
                        path: p,
                        span,
                    });
                }
            }
        }
    }
    ok &= masters_ok;

    // bootstrap_url
    let bootstrap_url = match root.get("bootstrap_url") {
        None => {
            missing(
                cx,
                root,
                "bootstrap_url",
                "required; where nodes fetch bundles (`http://`, `https://` or `file://`)",
            );
            None
        }
        Some(e) => as_str(cx, &e).and_then(|s| {
            let r = if s.ends_with('/') {
                Err("must not end with '/'".to_owned())
            } else {
                check_url(s, &["http", "https", "file"])
            };
            match r {
                Ok(()) => Some(s.to_owned()),
                Err(m) => {
                    cx.report(&e.path, &e.span, m);
                    None
                }
            }
        }),
    };
    ok &= bootstrap_url.is_some();

    // scripts
    let ip_detect = match root.get("ip_detect") {
        None => Some(At {
            v: defaults::ip_detect(),
            path: "ip_detect".to_owned(),
            span: None,
        }),
        Some(e) => read_script_path(cx, &e),
    };
    ok &= ip_detect.is_some();
    let optional_script = |cx: &mut Ctx<'_>, key: &str, ok: &mut bool| match root.get(key) {
        None => None,
        Some(e) => {
            let r = read_script_path(cx, &e);
            *ok &= r.is_some();
            r
        }
    };
    let ip_detect_public = optional_script(cx, "ip_detect_public", &mut ok);
    let fault_domain_detect = optional_script(cx, "fault_domain_detect", &mut ok);
    for (key, s) in [
        ("ip_detect", &ip_detect),
        ("ip_detect_public", &ip_detect_public),
        ("fault_domain_detect", &fault_domain_detect),
    ] {
        if let Some(s) = s {
            script_refs.push(ScriptRef {
                key,
                configured: s.v.clone(),
                span: s.span.clone(),
            });
        }
    }

    // resolvers
    let mut resolvers: Vec<At<Resolver>> = Vec::new();
    match root.get("resolvers") {
        None => {
            missing(
                cx,
                root,
                "resolvers",
                "required; list upstream DNS servers (`ip` or `ip:port`), or write `resolvers = []` for a cluster without upstream DNS",
            );
            ok = false;
        }
        Some(e) => match as_array(cx, &e, "`ip` or `ip:port` strings") {
            Some(a) => {
                let before = cx.problems.len();
                resolvers = read_resolver_list(cx, &e.path, a, &masters);
                ok &= cx.problems.len() == before;
            }
            None => ok = false,
        },
    }

    // dns_search
    let mut dns_search: Vec<String> = Vec::new();
    if let Some(e) = root.get("dns_search") {
        match as_array(cx, &e, "domain name strings") {
            Some(a) => {
                if a.len() > 6 {
                    cx.report(
                        &e.path,
                        &e.span,
                        format!("{} domains; resolv.conf allows at most 6", a.len()),
                    );
                    ok = false;
                }
                let elems = string_elems(cx, &e.path, a);
                ok &= elems.len() == a.len();
                let mut seen: HashMap<String, String> = HashMap::new();
                for (p, s, span) in elems {
                    let d = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
                    if let Err(m) = valid_domain(&d) {
                        cx.report(&p, &span, m);
                        ok = false;
                    } else if let Some(prev) = seen.get(&d) {
                        cx.report(&p, &span, format!("`{d}` is listed twice (also {prev})"));
                        ok = false;
                    } else {
                        seen.insert(d.clone(), p.clone());
                        dns_search.push(d);
                    }
                }
            }
            None => ok = false,
        }
    }

    // dns_forward_zones
    let mut dns_forward_zones: BTreeMap<String, Vec<Resolver>> = BTreeMap::new();
    let mut zone_resolvers: Vec<At<Resolver>> = Vec::new();
    if let Some(e) = root.get("dns_forward_zones") {
        match as_table(cx, &e) {
            Some(t) => {
                for (zone, _) in t.t.iter() {
                    let Some(ze) = t.get(zone) else { continue };
                    let z = zone.strip_suffix('.').unwrap_or(zone).to_ascii_lowercase();
                    let zone_span =
                        t.t.key(zone)
                            .and_then(Key::span)
                            .or_else(|| ze.span.clone());
                    if let Err(m) = valid_domain(&z) {
                        cx.report(&ze.path, &zone_span, format!("zone {m}"));
                        ok = false;
                        continue;
                    }
                    if ["mesos", "thisdcos.directory", "dcos.directory", "localhost"]
                        .iter()
                        .any(|internal| z == *internal || z.ends_with(&format!(".{internal}")))
                    {
                        cx.report(
                            &ze.path,
                            &zone_span,
                            format!(
                                "zone `{z}` is served by the cluster itself and cannot be forwarded"
                            ),
                        );
                        ok = false;
                        continue;
                    }
                    if dns_forward_zones.contains_key(&z) {
                        cx.report(&ze.path, &zone_span, format!("zone `{z}` is listed twice"));
                        ok = false;
                        continue;
                    }
                    let Some(a) = as_array(cx, &ze, "`ip` or `ip:port` strings") else {
                        ok = false;
                        continue;
                    };
                    if a.is_empty() {
                        cx.report(&ze.path, &ze.span, "needs at least one resolver");
                        ok = false;
                        continue;
                    }
                    let before = cx.problems.len();
                    let rs = read_resolver_list(cx, &ze.path, a, &masters);
                    ok &= cx.problems.len() == before;
                    dns_forward_zones.insert(z, rs.iter().map(|r| r.v).collect());
                    zone_resolvers.extend(rs);
                }
            }
            None => ok = false,
        }
    }

    // vip_range
    let vip_range = match root.get("vip_range") {
        None => Some(At {
            v: defaults::vip_range(),
            path: "vip_range".to_owned(),
            span: None,
        }),
        Some(e) => as_str(cx, &e).and_then(|s| match s.parse::<Ipv4Net>() {
            Ok(net) if net.trunc() != net => {
                cx.report(
                    &e.path,
                    &e.span,
                    format!("{net} has host bits set; did you mean {}?", net.trunc()),
                );
                None
            }
            Ok(net) if net.prefix_len() > 30 => {
                cx.report(
                    &e.path,
                    &e.span,
                    format!("{net} is too small for VIPs; use a prefix of /30 or shorter"),
                );
                None
            }
            Ok(net) => Some(At {
                v: net,
                path: e.path.clone(),
                span: e.span.clone(),
            }),
            Err(_) => {
                cx.report(
                    &e.path,
                    &e.span,
                    format!("`{s}` is not an IPv4 CIDR range like `11.0.0.0/8`"),
                );
                None
            }
        }),
    };
    match &vip_range {
        None => ok = false,
        Some(vip) => {
            let default_note = if vip.span.is_none() {
                " (the default)"
            } else {
                ""
            };
            for m in &masters {
                if vip.v.contains(&m.v) {
                    cx.report(&m.path, &m.span, format!("{} is inside vip_range {}{default_note}; VIPs must not overlap masters", m.v, vip.v));
                    ok = false;
                }
            }
            for r in resolvers.iter().chain(&zone_resolvers) {
                if let IpAddr::V4(ip) = r.v.ip
                    && vip.v.contains(&ip)
                {
                    cx.report(&r.path, &r.span, format!("{ip} is inside vip_range {}{default_note}; VIPs must not overlap resolvers", vip.v));
                    ok = false;
                }
            }
            let node_dns = Ipv4Net::new(Ipv4Addr::new(198, 51, 100, 0), 24).unwrap_or_default();
            let loopback = Ipv4Net::new(Ipv4Addr::new(127, 0, 0, 0), 8).unwrap_or_default();
            for (other, what) in [
                (node_dns, "the node-local DNS network"),
                (loopback, "loopback"),
            ] {
                if vip.v.contains(&other.network()) || other.contains(&vip.v.network()) {
                    cx.report(
                        &vip.path,
                        &vip.span,
                        format!("{} overlaps {what} ({other})", vip.v),
                    );
                    ok = false;
                }
            }
        }
    }

    // check_time
    let check_time = match root.get("check_time") {
        None => Some(defaults::check_time()),
        Some(e) => as_bool(cx, &e),
    };
    ok &= check_time.is_some();

    let agent = read_agent(cx, root);
    let auth = read_auth(cx, root);
    let proxy = read_proxy(cx, root);
    let etcd = read_etcd(cx, root);
    let image = read_image(cx, root);

    if !ok {
        return None;
    }
    Some(Config {
        cluster_name: cluster_name?,
        masters: masters.into_iter().map(|m| m.v).collect(),
        bootstrap_url: bootstrap_url?,
        ip_detect: ip_detect?.v,
        ip_detect_public: ip_detect_public.map(|s| s.v),
        fault_domain_detect: fault_domain_detect.map(|s| s.v),
        resolvers: resolvers.into_iter().map(|r| r.v).collect(),
        dns_search,
        dns_forward_zones,
        vip_range: vip_range?.v,
        check_time: check_time?,
        agent: agent?,
        auth: auth?,
        proxy: proxy?,
        etcd: etcd?,
        image: image?,
    })
}

/// Looks up `[name]` under the root; `Err(())` if present but not a table.
fn sub_table<'d>(cx: &mut Ctx<'_>, root: Tbl<'d>, name: &str) -> Result<Option<Entry<'d>>, ()> {
    match root.get(name) {
        None => Ok(None),
        Some(e) if e.item.is_table_like() => Ok(Some(e)),
        Some(e) => {
            cx.wrong_type(&e.path, &e.span, "a table", type_name(e.item));
            Err(())
        }
    }
}

fn known_keys(table: &str) -> &'static [&'static str] {
    SCHEMA
        .iter()
        .find(|(t, _)| *t == table)
        .map_or(&[][..], |(_, k)| *k)
}

fn read_agent(cx: &mut Ctx<'_>, root: Tbl<'_>) -> Option<AgentConfig> {
    let entry = sub_table(cx, root, "agent").ok()?;
    let mut out = AgentConfig::default();
    let Some(entry) = entry else { return Some(out) };
    let t = as_table(cx, &entry)?;
    check_unknown_keys(cx, t, known_keys("agent"));
    let mut ok = true;
    for (key, slot) in [
        ("private_ports", &mut out.private_ports),
        ("public_ports", &mut out.public_ports),
    ] {
        let Some(e) = t.get(key) else { continue };
        match as_str(cx, &e).map(|s| s.parse::<PortRanges>()) {
            Some(Ok(p)) if p.contains(5051) => {
                cx.report(&e.path, &e.span, "includes 5051, the agent's own API port");
                ok = false;
            }
            Some(Ok(p)) => *slot = p,
            Some(Err(m)) => {
                cx.report(&e.path, &e.span, m);
                ok = false;
            }
            None => ok = false,
        }
    }
    if let Some(e) = t.get("reserved_memory_mb") {
        match as_u64(cx, &e) {
            Some(v) if v > 1 << 20 => {
                cx.report(
                    &e.path,
                    &e.span,
                    format!("{v} MiB is more than 1 TiB; the value is in MiB"),
                );
                ok = false;
            }
            Some(v) => out.reserved_memory_mb = v,
            None => ok = false,
        }
    }
    if let Some(e) = t.get("attributes") {
        match as_table(cx, &e) {
            Some(at) => {
                for (name, _) in at.t.iter() {
                    let Some(ae) = at.get(name) else { continue };
                    let key_span =
                        at.t.key(name)
                            .and_then(Key::span)
                            .or_else(|| ae.span.clone());
                    if let Err(m) = check_attribute_name(name) {
                        cx.report(&ae.path, &key_span, m);
                        ok = false;
                        continue;
                    }
                    let value = match ae.item.as_value() {
                        Some(Value::String(s)) => s.value().clone(),
                        Some(Value::Integer(i)) => i.value().to_string(),
                        Some(Value::Float(f)) => f.value().to_string(),
                        Some(Value::Boolean(b)) => b.value().to_string(),
                        _ => {
                            cx.wrong_type(
                                &ae.path,
                                &ae.span,
                                "a string or number",
                                type_name(ae.item),
                            );
                            ok = false;
                            continue;
                        }
                    };
                    if let Err(m) = check_attribute_value(&value) {
                        cx.report(&ae.path, &ae.span, m);
                        ok = false;
                        continue;
                    }
                    out.attributes.insert(name.to_owned(), value);
                }
            }
            None => ok = false,
        }
    }
    for (key, slot) in [
        ("gpu_isolation", &mut out.gpu_isolation),
        ("gpus_are_scarce", &mut out.gpus_are_scarce),
    ] {
        if let Some(e) = t.get(key) {
            match as_bool(cx, &e) {
                Some(b) => *slot = b,
                None => ok = false,
            }
        }
    }
    if let Some(e) = t.get("public_role") {
        match as_str(cx, &e).map(|s| check_role(s).map(|()| s)) {
            Some(Ok(s)) => out.public_role = s.to_owned(),
            Some(Err(m)) => {
                cx.report(&e.path, &e.span, m);
                ok = false;
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn read_auth(cx: &mut Ctx<'_>, root: Tbl<'_>) -> Option<AuthConfig> {
    let entry = sub_table(cx, root, "auth").ok()?;
    let mut out = AuthConfig::default();
    let no_span: Span = None;
    let empty = toml_edit::Table::new();
    let t = match &entry {
        Some(e) => as_table(cx, e)?,
        None => Tbl {
            path: "auth",
            t: &empty,
            span: &no_span,
        },
    };
    check_unknown_keys(cx, t, known_keys("auth"));
    let mut ok = true;
    if let Some(e) = t.get("enabled") {
        match as_bool(cx, &e) {
            Some(b) => out.enabled = b,
            None => ok = false,
        }
    }
    if let Some(e) = t.get("superuser_uid") {
        match as_str(cx, &e) {
            Some(s)
                if !s.is_empty()
                    && s.len() <= 96
                    && s.chars().all(|c| {
                        c.is_ascii_alphanumeric() || matches!(c, '@' | '.' | '_' | '-')
                    }) =>
            {
                out.superuser_uid = Some(s.to_owned());
            }
            Some(s) => {
                cx.report(
                    &e.path,
                    &e.span,
                    format!("`{s}` is not a valid uid (1–96 of letters, digits, `@._-`)"),
                );
                ok = false;
            }
            None => ok = false,
        }
    }
    let hash = t.get("superuser_password_hash");
    if let Some(e) = &hash {
        let node_view = cx.node_view;
        match as_str(cx, e).map(|s| {
            if node_view && s == MASK {
                Ok(s)
            } else {
                check_password_hash(s).map(|()| s)
            }
        }) {
            Some(Ok(s)) => out.superuser_password_hash = Some(s.to_owned()),
            Some(Err(m)) => {
                cx.report(&e.path, &e.span, m);
                ok = false;
            }
            None => ok = false,
        }
    }
    let key = t.get("superuser_public_key");
    if let Some(e) = &key {
        match as_str(cx, e).map(|s| check_public_key_pem(s).map(|()| s)) {
            Some(Ok(s)) => out.superuser_public_key = Some(s.trim().to_owned() + "\n"),
            Some(Err(m)) => {
                cx.report(&e.path, &e.span, m);
                ok = false;
            }
            None => ok = false,
        }
    }
    if let Some(e) = t.get("token_lifetime") {
        match as_str(cx, &e).map(str::parse::<DurationSpec>) {
            Some(Ok(d)) if d.as_secs() < 60 || d.as_secs() > 365 * 86_400 => {
                cx.report(&e.path, &e.span, format!("{d} is outside 1m..365d"));
                ok = false;
            }
            Some(Ok(d)) => out.token_lifetime = d,
            Some(Err(m)) => {
                cx.report(&e.path, &e.span, m);
                ok = false;
            }
            None => ok = false,
        }
    }
    if out.enabled {
        let why = if entry.as_ref().and_then(|e| e.item.get("enabled")).is_some() {
            "auth.enabled is true"
        } else {
            "auth is enabled by default"
        };
        if t.get("superuser_uid").is_none() {
            missing(
                cx,
                t,
                "superuser_uid",
                &format!(
                    "required because {why}; name the first superuser, or set `auth.enabled = false`"
                ),
            );
            ok = false;
        }
        match (&hash, &key) {
            (Some(_), Some(k)) => {
                cx.report(
                    &k.path,
                    &k.span,
                    "set only one of `superuser_password_hash` and `superuser_public_key`",
                );
                ok = false;
            }
            (None, None) => {
                missing(
                    cx,
                    t,
                    "superuser_password_hash",
                    &format!(
                        "required because {why}: set `superuser_password_hash` (from `basalt-installer hash-password`) or `superuser_public_key`"
                    ),
                );
                ok = false;
            }
            _ => {}
        }
    }
    ok.then_some(out)
}

fn read_proxy(cx: &mut Ctx<'_>, root: Tbl<'_>) -> Option<ProxyConfig> {
    let entry = sub_table(cx, root, "proxy").ok()?;
    let mut out = ProxyConfig::default();
    let mut ok = true;
    if let Some(entry) = &entry {
        let t = as_table(cx, entry)?;
        check_unknown_keys(cx, t, known_keys("proxy"));
        for (key, slot) in [
            ("http_proxy", &mut out.http_proxy),
            ("https_proxy", &mut out.https_proxy),
        ] {
            let Some(e) = t.get(key) else { continue };
            match as_str(cx, &e).map(|s| check_url(s, &["http", "https"]).map(|()| s)) {
                Some(Ok(s)) => *slot = Some(s.to_owned()),
                Some(Err(m)) => {
                    cx.report(&e.path, &e.span, m);
                    ok = false;
                }
                None => ok = false,
            }
        }
        if let Some(e) = t.get("no_proxy") {
            match as_array(cx, &e, "host or domain strings") {
                Some(a) => {
                    let elems = string_elems(cx, &e.path, a);
                    ok &= elems.len() == a.len();
                    for (p, s, span) in elems {
                        if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c == ',') {
                            cx.report(&p, &span, format!("`{s}` must be one non-empty host, domain or address without spaces or commas"));
                            ok = false;
                        } else if !out.no_proxy.iter().any(|x| x == s)
                            && !BUILTIN_NO_PROXY.contains(&s)
                        {
                            // Built-ins are appended below in their fixed order, so
                            // writing one (or not) gives the same canonical config.
                            out.no_proxy.push(s.to_owned());
                        }
                    }
                }
                None => ok = false,
            }
        }
    }
    out.no_proxy
        .extend(BUILTIN_NO_PROXY.iter().map(|b| (*b).to_owned()));
    ok.then_some(out)
}

fn read_etcd(cx: &mut Ctx<'_>, root: Tbl<'_>) -> Option<EtcdConfig> {
    let entry = sub_table(cx, root, "etcd").ok()?;
    let mut out = EtcdConfig::default();
    let Some(entry) = entry else { return Some(out) };
    let t = as_table(cx, &entry)?;
    check_unknown_keys(cx, t, known_keys("etcd"));
    let mut ok = true;
    let hb = t.get("heartbeat_interval_ms");
    if let Some(e) = &hb {
        match as_u64(cx, e) {
            Some(0) => {
                cx.report(&e.path, &e.span, "must be at least 1 ms");
                ok = false;
            }
            Some(v) => out.heartbeat_interval_ms = v,
            None => ok = false,
        }
    }
    let el = t.get("election_timeout_ms");
    if let Some(e) = &el {
        match as_u64(cx, e) {
            Some(v) => out.election_timeout_ms = v,
            None => ok = false,
        }
    }
    if ok {
        // etcd's own rules (embed/config.go): election >= 5 * heartbeat, election <= 50000.
        let (path, span) = match (&el, &hb) {
            (Some(e), _) | (None, Some(e)) => (e.path.clone(), e.span.clone()),
            (None, None) => ("etcd.election_timeout_ms".to_owned(), entry.span.clone()),
        };
        let (h, e) = (out.heartbeat_interval_ms, out.election_timeout_ms);
        if e > 50_000 {
            cx.report(
                &path,
                &span,
                format!("{e} ms is above etcd's maximum election timeout of 50000 ms"),
            );
            ok = false;
        } else if e < h.saturating_mul(5) {
            cx.report(&path, &span, format!(
                "election_timeout_ms ({e} ms) must be at least 5 × heartbeat_interval_ms ({h} ms) = {} ms; etcd refuses to start otherwise",
                h.saturating_mul(5)
            ));
            ok = false;
        }
    }
    ok.then_some(out)
}

fn read_image(cx: &mut Ctx<'_>, root: Tbl<'_>) -> Option<ImageConfig> {
    let entry = sub_table(cx, root, "image").ok()?;
    let mut out = ImageConfig::default();
    let Some(entry) = entry else { return Some(out) };
    let t = as_table(cx, &entry)?;
    check_unknown_keys(cx, t, known_keys("image"));
    let mut ok = true;
    if let Some(e) = t.get("channel") {
        match as_str(cx, &e) {
            Some(s)
                if !s.is_empty()
                    && s.len() <= 32
                    && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                    && s.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') =>
            {
                out.channel = s.to_owned();
            }
            Some(s) => {
                cx.report(
                    &e.path,
                    &e.span,
                    format!("`{s}` is not a channel name (1–32 of lowercase letters, digits, `-`)"),
                );
                ok = false;
            }
            None => ok = false,
        }
    }
    if let Some(e) = t.get("version") {
        match as_str(cx, &e).map(|s| check_semverish(s).map(|()| s)) {
            Some(Ok(s)) => out.version = s.to_owned(),
            Some(Err(m)) => {
                cx.report(&e.path, &e.span, m);
                ok = false;
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

// ---------------------------------------------------------------------------
// Scripts
// ---------------------------------------------------------------------------

fn read_scripts(cx: &mut Ctx<'_>, dir: &Path, refs: &[ScriptRef]) -> Option<Scripts> {
    let mut ip_detect = None;
    let mut ip_detect_public = None;
    let mut fault_domain_detect = None;
    let mut ok = true;
    for r in refs {
        let Some(script) = read_script(cx, dir, r.key, &r.configured, &r.span) else {
            ok = false;
            continue;
        };
        match r.key {
            "ip_detect" => ip_detect = Some(script),
            "ip_detect_public" => ip_detect_public = Some(script),
            _ => fault_domain_detect = Some(script),
        }
    }
    if !ok {
        return None;
    }
    Some(Scripts {
        ip_detect: ip_detect?,
        ip_detect_public,
        fault_domain_detect,
    })
}

/// Checks one script: exists, regular file, executable, starts with `#!`.
pub fn check_script(path: &Path) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("script not found at {shown}"),
        _ => format!("cannot read script {shown}: {e}"),
    })?;
    if !meta.is_file() {
        return Err(format!("{shown} is not a regular file"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if meta.permissions().mode() & 0o111 == 0 {
            return Err(format!(
                "{shown} is not executable (run `chmod +x {shown}`)"
            ));
        }
    }
    let contents = std::fs::read(path).map_err(|e| format!("cannot read script {shown}: {e}"))?;
    if !contents.starts_with(b"#!") {
        return Err(format!(
            "{shown} has no shebang; its first line must start with `#!` (e.g. `#!/bin/sh`)"
        ));
    }
    Ok(contents)
}

fn read_script(
    cx: &mut Ctx<'_>,
    dir: &Path,
    key: &str,
    configured: &Path,
    span: &Span,
) -> Option<Script> {
    let path = if configured.is_absolute() {
        configured.to_path_buf()
    } else {
        dir.join(configured)
    };
    match check_script(&path) {
        Ok(contents) => Some(Script {
            configured: configured.to_path_buf(),
            path,
            contents,
        }),
        Err(m) => {
            let m = if span.is_none() {
                format!("{m} (`{key}` defaults to `{}`)", configured.display())
            } else {
                m
            };
            cx.report(key, span, m);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_characters() {
        let cx = Ctx::new("a = 1\nbé = 2\n");
        assert_eq!(cx.position(0), (1, 1));
        assert_eq!(cx.position(6), (2, 1));
        // 'é' is two bytes: offset of " =" after it is 6 + 3.
        assert_eq!(cx.position(9), (2, 3));
    }

    #[test]
    fn join_quotes_non_bare_keys() {
        assert_eq!(join("", "masters"), "masters");
        assert_eq!(
            join("dns_forward_zones", "corp.example"),
            "dns_forward_zones.\"corp.example\""
        );
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            closest("mastres", known_keys("").iter().copied()),
            Some("masters")
        );
        assert!(
            hint_for("", "heartbeat_interval_ms", known_keys(""))
                .contains("etcd.heartbeat_interval_ms")
        );
        assert!(hint_for("", "master_list", known_keys("")).contains("`masters`"));
        assert!(hint_for("", "zzzz", known_keys("")).starts_with("known keys here"));
    }

    #[test]
    fn leaf_keys_cover_schema() {
        let keys = leaf_keys();
        assert!(keys.contains(&"agent.attributes".to_owned()));
        assert!(keys.contains(&"masters".to_owned()));
        assert!(!keys.contains(&"agent".to_owned()));
    }

    #[test]
    fn semver() {
        for ok in ["0.1.0", "1.2.3-rc.1", "1.2.3+b.5", "10.0.0-alpha-1+x"] {
            assert!(check_semverish(ok).is_ok(), "{ok}");
        }
        for bad in ["1.2", "1.2.x", "v1.2.3", "1.2.3-", "1.2.3+", "1..3"] {
            assert!(check_semverish(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn attribute_values() {
        for ok in ["rack-1", "1.5", "[1-10,20-30]", "{a,b}", "eu/west"] {
            assert!(check_attribute_value(ok).is_ok(), "{ok}");
        }
        for bad in ["a b", "x:y", "a;b", "[10-1]", "", "{a,,b}"] {
            assert!(check_attribute_value(bad).is_err(), "{bad}");
        }
    }
}
