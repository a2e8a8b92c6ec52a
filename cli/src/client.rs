//! HTTP to the gateway: `Authorization: token=<jwt>` on every request, TLS verified
//! against the pinned cluster CA only (no public roots), no redirects (a token never
//! follows one), and errors turned into [`CliError`]s that say what to do next:
//! unreachable gateway, TLS failure, 401 → `basalt auth login`, 403, and the service's
//! own message (Marathon `message`, IAM/gateway `description`) for everything else.

use crate::config::StoredCluster;
use crate::error::{CliError, Result};
use base64::Engine;
use reqwest::Method;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// How the server certificate is checked.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Only this CA (PEM).
    Pinned(String),
    /// No verification (`--insecure`).
    Insecure,
    /// The public web roots.
    Public,
}

/// A client for one cluster.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
    timeout: Duration,
}

/// A response, read completely.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Method sent.
    pub method: Method,
    /// URL requested.
    pub url: String,
    /// HTTP status.
    pub status: u16,
    /// `Marathon-Deployment-Id`, when present.
    pub deployment_id: Option<String>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON (`null` for an empty body).
    pub fn json(&self) -> Result<Value> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body).map_err(|e| CliError::BadResponse {
            url: self.url.clone(),
            detail: format!("not JSON ({e}): {}", self.text_excerpt()),
        })
    }

    fn text_excerpt(&self) -> String {
        let t = String::from_utf8_lossy(&self.body);
        let t = t.trim();
        if t.chars().count() > 300 {
            format!("{}…", t.chars().take(300).collect::<String>())
        } else {
            t.to_owned()
        }
    }

    /// The error text of the body: Marathon's `message` (with `details`), else
    /// `description`, else `title`, else the text itself.
    pub fn message(&self) -> String {
        if let Ok(v) = serde_json::from_slice::<Value>(&self.body) {
            if let Some(m) = v.get("message").and_then(Value::as_str) {
                let mut m = m.to_owned();
                if let Some(details) = v.get("details").and_then(Value::as_array) {
                    let parts: Vec<String> = details
                        .iter()
                        .map(|d| {
                            let path = d.get("path").and_then(Value::as_str).unwrap_or("/");
                            let errs: Vec<&str> = d
                                .get("errors")
                                .and_then(Value::as_array)
                                .map(|e| e.iter().filter_map(Value::as_str).collect())
                                .unwrap_or_default();
                            format!("{path}: {}", errs.join(", "))
                        })
                        .collect();
                    if !parts.is_empty() {
                        m.push_str(&format!(" ({})", parts.join("; ")));
                    }
                }
                return m;
            }
            for k in ["description", "title"] {
                if let Some(m) = v.get(k).and_then(Value::as_str) {
                    return m.to_owned();
                }
            }
        }
        let t = self.text_excerpt();
        if t.is_empty() {
            "(empty answer)".to_owned()
        } else {
            t
        }
    }

    /// Whether the body is JSON with a `message`/`description` (a service's own error,
    /// as opposed to a bare 404 from a router that does not know the path).
    pub fn has_service_message(&self) -> bool {
        serde_json::from_slice::<Value>(&self.body)
            .map(|v| v.get("message").is_some() || v.get("description").is_some())
            .unwrap_or(false)
    }

    /// Turns error statuses into [`CliError`]s.
    pub fn check(self) -> Result<Answer> {
        match self.status {
            200..=399 => Ok(self),
            401 => Err(CliError::Unauthorized {
                detail: self.message(),
                url: self.url,
            }),
            403 => Err(CliError::Forbidden {
                detail: self.message(),
                url: self.url,
            }),
            _ => Err(CliError::Api {
                method: self.method.to_string(),
                status: self.status,
                message: self.message(),
                url: self.url,
            }),
        }
    }
}

/// Decodes the first `CERTIFICATE` block of a PEM text.
pub fn pem_certificate_der(pem: &str) -> Option<Vec<u8>> {
    let start = pem.find("-----BEGIN CERTIFICATE-----")? + "-----BEGIN CERTIFICATE-----".len();
    let end = start + pem[start..].find("-----END CERTIFICATE-----")?;
    let b64: String = pem[start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// `sha256:<64 lower-case hex>` of a DER certificate (what `openssl x509 -fingerprint
/// -sha256` prints, without colons).
pub fn fingerprint(der: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(der)))
}

/// Normalises a fingerprint as users paste it: `sha256:` prefix optional, colons and
/// spaces ignored, any case.
pub fn normalize_fingerprint(input: &str) -> Result<String> {
    let t = input.trim();
    let t = t
        .strip_prefix("sha256:")
        .or_else(|| t.strip_prefix("SHA256:"))
        .or_else(|| t.strip_prefix("sha256="))
        .unwrap_or(t);
    let hexed: String = t
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    if hexed.len() != 64 || !hexed.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(CliError::Usage(format!(
            "--ca-fingerprint {input:?}: expected a SHA-256 fingerprint, `sha256:` and 64 hex digits (colons allowed)"
        )));
    }
    Ok(format!("sha256:{hexed}"))
}

/// The `exp` claim of a JWT, if readable.
pub fn token_expiry(token: &str) -> Option<u64> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.get("exp").and_then(Value::as_u64)
}

/// Seconds since the epoch.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn transport_error(url: &str, e: &reqwest::Error) -> CliError {
    let mut chain = Vec::new();
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(c) = cur {
        chain.push(c.to_string());
        cur = c.source();
    }
    let detail = chain
        .iter()
        .rev()
        .find(|m| !m.is_empty())
        .cloned()
        .unwrap_or_else(|| e.to_string());
    let tls = chain.iter().any(|m| {
        let m = m.to_ascii_lowercase();
        m.contains("certificate") || m.contains("tls") || m.contains("handshake")
    });
    if tls {
        CliError::Tls {
            url: url.to_owned(),
            detail,
        }
    } else if e.is_timeout() {
        CliError::Unreachable {
            url: url.to_owned(),
            detail: "timed out".into(),
        }
    } else {
        CliError::Unreachable {
            url: url.to_owned(),
            detail,
        }
    }
}

/// Normalises a cluster URL: `https://` added when no scheme, trailing `/` removed.
pub fn normalize_url(url: &str) -> Result<String> {
    let u = url.trim().trim_end_matches('/');
    if u.is_empty() {
        return Err(CliError::Usage("the cluster URL is empty".into()));
    }
    let u = if u.contains("://") {
        u.to_owned()
    } else {
        format!("https://{u}")
    };
    let parsed = reqwest::Url::parse(&u)
        .map_err(|e| CliError::Usage(format!("cluster URL {url:?} is not a URL: {e}")))?;
    if parsed.scheme() != "https" && parsed.scheme() != "http" {
        return Err(CliError::Usage(format!(
            "cluster URL {url:?}: use https://<master address>"
        )));
    }
    Ok(u)
}

impl Client {
    /// A client for `base` (`https://host[:port]`).
    pub fn new(base: &str, trust: &Trust, token: Option<String>) -> Result<Client> {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("basalt-cli/", env!("CARGO_PKG_VERSION")));
        match trust {
            Trust::Pinned(pem) => {
                let cert = reqwest::Certificate::from_pem(pem.as_bytes()).map_err(|e| {
                    CliError::Usage(format!("the pinned CA is not a PEM certificate: {e}"))
                })?;
                b = b.tls_built_in_root_certs(false).add_root_certificate(cert);
            }
            Trust::Insecure => b = b.danger_accept_invalid_certs(true),
            Trust::Public => {}
        }
        let http = b
            .build()
            .map_err(|e| CliError::Usage(format!("HTTP client: {e}")))?;
        Ok(Client {
            base: base.trim_end_matches('/').to_owned(),
            http,
            token,
            timeout: Duration::from_secs(60),
        })
    }

    /// The client for a configured cluster: its URL, pinned CA (checked against the
    /// pinned fingerprint) and token (refused locally once expired).
    pub fn for_cluster(c: &StoredCluster) -> Result<Client> {
        let core = &c.config.core;
        let trust = match core.ssl_verify.as_str() {
            "false" | "False" => Trust::Insecure,
            "true" | "True" | "" => Trust::Public,
            path => {
                let path = std::path::PathBuf::from(path);
                let pem = std::fs::read_to_string(&path).map_err(|source| CliError::Io {
                    what: "reading the pinned CA",
                    path: path.clone(),
                    source,
                })?;
                if let Some(expected) = &core.ca_fingerprint {
                    let actual = pem_certificate_der(&pem)
                        .map(|d| fingerprint(&d))
                        .unwrap_or_else(|| "(not a certificate)".into());
                    if &actual != expected {
                        return Err(CliError::PinnedCaChanged {
                            path,
                            expected: expected.clone(),
                            actual,
                        });
                    }
                }
                Trust::Pinned(pem)
            }
        };
        if let Some(exp) = core.dcos_acs_token.as_deref().and_then(token_expiry)
            && exp <= now_unix()
        {
            return Err(CliError::TokenExpired {
                cluster: c.name().to_owned(),
                expired: exp,
            });
        }
        let mut client = Client::new(&core.dcos_url, &trust, core.dcos_acs_token.clone())?;
        if let Some(t) = core.timeout {
            client.timeout = Duration::from_secs(t);
        }
        Ok(client)
    }

    /// The same client with another token.
    pub fn with_token(mut self, token: Option<String>) -> Client {
        self.token = token;
        self
    }

    /// The cluster URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `base + path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> reqwest::RequestBuilder {
        let mut rb = self.http.request(method, self.url(path));
        if !query.is_empty() {
            rb = rb.query(query);
        }
        if let Some(t) = &self.token {
            rb = rb.header("Authorization", format!("token={t}"));
        }
        if let Some(b) = body {
            rb = rb.json(b);
        }
        rb
    }

    /// Sends a request and reads the whole answer, whatever its status.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Answer> {
        let url = self.url(path);
        tracing::debug!(%method, %url, "request");
        let resp = self
            .request(method.clone(), path, query, body)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| transport_error(&url, &e))?;
        let status = resp.status().as_u16();
        let deployment_id = resp
            .headers()
            .get("Marathon-Deployment-Id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp
            .bytes()
            .await
            .map_err(|e| transport_error(&url, &e))?
            .to_vec();
        tracing::debug!(%url, status, bytes = body.len(), "answer");
        Ok(Answer {
            method,
            url,
            status,
            deployment_id,
            body,
        })
    }

    /// Sends a request; error statuses become errors.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Answer> {
        self.raw(method, path, query, body).await?.check()
    }

    /// GET without a timeout, for streams (`--follow`); error statuses become errors
    /// (the body of an error answer is read for its message).
    pub async fn stream(
        &self,
        path: &str,
        query: &[(&str, String)],
        accept: &str,
    ) -> Result<reqwest::Response> {
        self.stream_with(path, query, accept, &[]).await
    }

    /// [`Client::stream`] with more request headers (`Last-Event-ID`).
    pub async fn stream_with(
        &self,
        path: &str,
        query: &[(&str, String)],
        accept: &str,
        headers: &[(&str, &str)],
    ) -> Result<reqwest::Response> {
        let url = self.url(path);
        let mut rb = self
            .request(Method::GET, path, query, None)
            .header("Accept", accept);
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        let resp = rb.send().await.map_err(|e| transport_error(&url, &e))?;
        let status = resp.status().as_u16();
        if status < 300 {
            return Ok(resp);
        }
        let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
        let a = Answer {
            method: Method::GET,
            url,
            status,
            deployment_id: None,
            body,
        };
        Err(match a.clone().check() {
            Err(e) => e,
            Ok(_) => CliError::Api {
                method: a.method.to_string(),
                url: a.url,
                status,
                message: "unexpected redirect".into(),
            },
        })
    }

    /// GET → JSON.
    pub async fn get(&self, path: &str) -> Result<Value> {
        self.call(Method::GET, path, &[], None).await?.json()
    }

    /// GET with a query → JSON.
    pub async fn get_query(&self, path: &str, query: &[(&str, String)]) -> Result<Value> {
        self.call(Method::GET, path, query, None).await?.json()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn fingerprints_normalise() {
        let hexs = "ab".repeat(32);
        let want = format!("sha256:{hexs}");
        assert_eq!(normalize_fingerprint(&want).unwrap(), want);
        assert_eq!(
            normalize_fingerprint(&hexs.to_ascii_uppercase()).unwrap(),
            want
        );
        let colons: Vec<&str> = (0..32).map(|_| "AB").collect();
        assert_eq!(normalize_fingerprint(&colons.join(":")).unwrap(), want);
        let e = normalize_fingerprint("sha256:xyz").unwrap_err().to_string();
        assert!(e.contains("--ca-fingerprint"), "{e}");
    }

    #[test]
    fn urls_and_tokens() {
        assert_eq!(
            normalize_url("master.example/").unwrap(),
            "https://master.example"
        );
        assert!(normalize_url("ftp://x").is_err());
        assert!(normalize_url(" ").is_err());
        let claims =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"uid":"a","exp":42}"#);
        assert_eq!(token_expiry(&format!("h.{claims}.s")), Some(42));
        assert_eq!(token_expiry("garbage"), None);
    }

    #[test]
    fn messages_from_marathon_and_iam() {
        let a = |body: &str| Answer {
            method: Method::GET,
            url: "u".into(),
            status: 404,
            deployment_id: None,
            body: body.as_bytes().to_vec(),
        };
        assert_eq!(
            a(r#"{"message":"App '/x' does not exist"}"#).message(),
            "App '/x' does not exist"
        );
        assert_eq!(
            a(r#"{"message":"Object is not valid","details":[{"path":"/cpus","errors":["must be >= 0"]}]}"#)
                .message(),
            "Object is not valid (/cpus: must be >= 0)"
        );
        assert_eq!(
            a(r#"{"title":"Unauthorized","description":"token expired","code":"ERR"}"#).message(),
            "token expired"
        );
        assert_eq!(a("").message(), "(empty answer)");
        assert!(!a("").has_service_message());
    }
}
