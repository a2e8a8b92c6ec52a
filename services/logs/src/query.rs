//! The query parameters of `/v1/range/` and `/v1/stream/`, as dcos-log reads them.
//!
//! | parameter | value | notes |
//! |---|---|---|
//! | `filter` | `FIELD:value`, repeatable | exactly one `:`; the field is upper-cased (as dcos-log does) and must be a journal field name (`[A-Z0-9_]`, not starting with a digit). Same field twice: either value; different fields: both (journal match semantics). |
//! | `limit` | unsigned integer | at most this many entries (`0`: no limit); not with `/stream/` |
//! | `skip_next` | unsigned integer | move forward from the position |
//! | `skip_prev` | unsigned integer | move backward from the position (from the journal's end without a `cursor`) |
//! | `cursor` | a journal cursor | the position just after that entry |
//! | `read_reverse` | `true`/`false` (Go's `ParseBool` words) | newest first; not with `/stream/` |
//!
//! Unknown parameters are ignored (dcos-log: "All other parameter is ignored"). Every
//! error names the parameter; the server answers it with 400.

use std::fmt;

/// One `filter=FIELD:value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// Upper-cased journal field name.
    pub field: String,
    /// The value (may be empty).
    pub value: String,
}

impl fmt::Display for Match {
    /// `FIELD=value`, the journalctl match argument.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.field, self.value)
    }
}

/// A parsed request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// Journal matches.
    pub matches: Vec<Match>,
    /// `limit` (0: none).
    pub limit: u64,
    /// `skip_next`.
    pub skip_next: u64,
    /// `skip_prev`.
    pub skip_prev: u64,
    /// `cursor`.
    pub cursor: Option<String>,
    /// `read_reverse`.
    pub read_reverse: bool,
}

/// A bad parameter (answered with 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// A number parameter that is not an unsigned integer.
    #[error("parameter `{param}`: {value:?} is not an unsigned integer")]
    NotANumber {
        /// The parameter.
        param: &'static str,
        /// What was given.
        value: String,
    },
    /// `filter` without exactly one `:`.
    #[error("parameter `filter`: {value:?} must be FIELD:value (exactly one `:`)")]
    FilterSyntax {
        /// What was given.
        value: String,
    },
    /// `filter` with a field that is no journal field name.
    #[error(
        "parameter `filter`: {field:?} is not a journal field name (A-Z, 0-9 and `_`, not starting with a digit)"
    )]
    FilterField {
        /// The field.
        field: String,
    },
    /// `read_reverse` that is not a boolean.
    #[error("parameter `read_reverse`: {value:?} is not a boolean")]
    NotABool {
        /// What was given.
        value: String,
    },
    /// `cursor` that cannot be a journal cursor.
    #[error("parameter `cursor`: {value:?} is not a journal cursor (`s=…;i=…;…`)")]
    CursorSyntax {
        /// What was given.
        value: String,
    },
    /// A parameter `/stream/` does not take.
    #[error("parameter `{param}`: cannot be used when streaming (/stream/)")]
    NotWithStream {
        /// The parameter.
        param: &'static str,
    },
    /// `read_reverse` with `skip_next`.
    #[error("parameter `skip_next`: cannot be used with read_reverse=true")]
    SkipNextReverse,
}

impl QueryError {
    /// The parameter the error is about.
    pub fn param(&self) -> &'static str {
        match self {
            QueryError::NotANumber { param, .. } | QueryError::NotWithStream { param } => param,
            QueryError::FilterSyntax { .. } | QueryError::FilterField { .. } => "filter",
            QueryError::NotABool { .. } => "read_reverse",
            QueryError::CursorSyntax { .. } => "cursor",
            QueryError::SkipNextReverse => "skip_next",
        }
    }
}

/// Is `s` a journal field name? (systemd: `[A-Z0-9_]`, not starting with a digit, at
/// most 64 bytes.)
pub fn is_field_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// Does `s` look like a journal cursor (`key=value;…`, printable ASCII)?
pub fn is_cursor(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 512
        && s.bytes().all(|b| b.is_ascii_graphic())
        && s.split(';').all(|part| {
            part.split_once('=')
                .is_some_and(|(k, v)| !k.is_empty() && !v.is_empty())
        })
}

fn number(param: &'static str, value: &str) -> Result<u64, QueryError> {
    value.parse::<u64>().map_err(|_| QueryError::NotANumber {
        param,
        value: value.to_owned(),
    })
}

/// Go's `strconv.ParseBool` words.
fn boolean(value: &str) -> Result<bool, QueryError> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(QueryError::NotABool {
            value: value.to_owned(),
        }),
    }
}

impl Query {
    /// Parses a raw query string (`None`: no query). `stream`: the `/stream/` endpoints,
    /// which take neither `limit` (non-zero) nor `read_reverse`.
    pub fn parse(raw: Option<&str>, stream: bool) -> Result<Query, QueryError> {
        let mut q = Query::default();
        for (key, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            match key.as_ref() {
                "filter" => {
                    let mut parts = value.split(':');
                    let (Some(field), Some(v), None) = (parts.next(), parts.next(), parts.next())
                    else {
                        return Err(QueryError::FilterSyntax {
                            value: value.into_owned(),
                        });
                    };
                    let field = field.to_ascii_uppercase();
                    if !is_field_name(&field) {
                        return Err(QueryError::FilterField { field });
                    }
                    q.matches.push(Match {
                        field,
                        value: v.to_owned(),
                    });
                }
                // Empty values count as absent, as in dcos-log (`Get(...) == ""`).
                _ if value.is_empty() => {}
                "limit" => q.limit = number("limit", &value)?,
                "skip_next" => q.skip_next = number("skip_next", &value)?,
                "skip_prev" => q.skip_prev = number("skip_prev", &value)?,
                "cursor" => {
                    if !is_cursor(&value) {
                        return Err(QueryError::CursorSyntax {
                            value: value.into_owned(),
                        });
                    }
                    q.cursor = Some(value.into_owned());
                }
                "read_reverse" => q.read_reverse = boolean(&value)?,
                _ => {}
            }
        }
        if stream && q.limit > 0 {
            return Err(QueryError::NotWithStream { param: "limit" });
        }
        if stream && q.read_reverse {
            return Err(QueryError::NotWithStream {
                param: "read_reverse",
            });
        }
        if q.read_reverse && q.skip_next > 0 {
            return Err(QueryError::SkipNextReverse);
        }
        Ok(q)
    }

    /// Applies a `Last-Event-ID` (streams only): it replaces `cursor` and clears both
    /// skips, so a reconnecting client sees no entry twice.
    pub fn resume_from(&mut self, last_event_id: &str) -> Result<(), QueryError> {
        if !is_cursor(last_event_id) {
            return Err(QueryError::CursorSyntax {
                value: last_event_id.to_owned(),
            });
        }
        self.cursor = Some(last_event_id.to_owned());
        self.skip_next = 0;
        self.skip_prev = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_parameter() {
        let q = Query::parse(
            Some("filter=_systemd_unit:basalt-gateway.service&filter=PRIORITY:3&limit=5&skip_prev=2&skip_next=1&cursor=s%3Dab%3Bi%3D1&x=y"),
            false,
        )
        .unwrap();
        assert_eq!(
            q.matches,
            vec![
                Match {
                    field: "_SYSTEMD_UNIT".into(),
                    value: "basalt-gateway.service".into()
                },
                Match {
                    field: "PRIORITY".into(),
                    value: "3".into()
                }
            ]
        );
        assert_eq!(
            q.matches[0].to_string(),
            "_SYSTEMD_UNIT=basalt-gateway.service"
        );
        assert_eq!((q.limit, q.skip_prev, q.skip_next), (5, 2, 1));
        assert_eq!(q.cursor.as_deref(), Some("s=ab;i=1"));
        assert_eq!(Query::parse(None, true).unwrap(), Query::default());
        assert!(
            Query::parse(Some("read_reverse=true"), false)
                .unwrap()
                .read_reverse
        );
        assert_eq!(Query::parse(Some("limit="), false).unwrap().limit, 0);
    }

    #[test]
    fn bad_input_names_the_parameter() {
        let err = |raw: &str, stream: bool| Query::parse(Some(raw), stream).unwrap_err();
        for (raw, param) in [
            ("limit=ten", "limit"),
            ("limit=-1", "limit"),
            ("skip_prev=1.5", "skip_prev"),
            ("skip_next=x", "skip_next"),
            ("filter=nocolon", "filter"),
            ("filter=A:b:c", "filter"),
            ("filter=1BAD:x", "filter"),
            ("filter=BAD-NAME:x", "filter"),
            ("filter=:x", "filter"),
            ("read_reverse=maybe", "read_reverse"),
            ("cursor=nonsense", "cursor"),
            ("cursor=a%3D1%0A", "cursor"),
            ("read_reverse=1&skip_next=2", "skip_next"),
        ] {
            let e = err(raw, false);
            assert_eq!(e.param(), param, "{raw}: {e}");
            assert!(e.to_string().contains(param), "{raw}: {e}");
        }
        assert_eq!(err("limit=3", true).param(), "limit");
        assert_eq!(err("read_reverse=true", true).param(), "read_reverse");
        // limit=0 is "no limit", allowed on streams
        assert!(Query::parse(Some("limit=0"), true).is_ok());
    }

    #[test]
    fn last_event_id_replaces_cursor_and_skips() {
        let mut q = Query::parse(Some("skip_prev=10&skip_next=3"), true).unwrap();
        q.resume_from("s=1;i=2").unwrap();
        assert_eq!(q.cursor.as_deref(), Some("s=1;i=2"));
        assert_eq!((q.skip_prev, q.skip_next), (0, 0));
        assert!(q.resume_from("garbage").is_err());
    }
}
