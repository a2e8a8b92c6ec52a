//! Errors for parsing and validating Mesos values, resources and attributes.

/// A text or JSON form that could not be turned into a Mesos value, or a value that
/// breaks a Mesos validation rule. Every variant names the offending text or field.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// A value in the Mesos text form (`4`, `[1-10]`, `{a,b}`, `r1`) is malformed.
    #[error("invalid value '{text}': {reason}")]
    Value {
        /// The offending text, as given.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A resource (text token such as `disk(slave_public):100`, or a JSON resource
    /// named by its name) is malformed or invalid.
    #[error("invalid resource '{text}': {reason}")]
    Resource {
        /// The offending token or resource.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An attribute token such as `rack:r1` is malformed.
    #[error("invalid attribute '{text}': {reason}")]
    Attribute {
        /// The offending token.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A role name breaks the Mesos role naming rules.
    #[error("invalid role '{role}': {reason}")]
    Role {
        /// The offending role.
        role: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A task state name is not one of the Mesos `TaskState` names.
    #[error("unknown task state '{text}'")]
    TaskState {
        /// The offending text.
        text: String,
    },
    /// A JSON document (named by `what`) does not have the Mesos JSON form.
    #[error("invalid {what} JSON: {source}")]
    Json {
        /// What was being parsed, e.g. `resources`.
        what: &'static str,
        /// The serde_json error, with line and column.
        #[source]
        source: serde_json::Error,
    },
}

impl ParseError {
    pub(crate) fn value(text: &str, reason: impl Into<String>) -> Self {
        Self::Value {
            text: text.to_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn resource(text: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Resource {
            text: text.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn attribute(text: &str, reason: impl Into<String>) -> Self {
        Self::Attribute {
            text: text.to_owned(),
            reason: reason.into(),
        }
    }
}
