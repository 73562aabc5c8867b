//! `warrant-client`: a small typed HTTP client for the warrant API, used by the CLI, the
//! integration tests and the bench tool. Responses are JSON values; errors carry the
//! server's `{error, message}`.

// Indexing a `serde_json::Value` never panics (a missing key is `Null`).
#![allow(clippy::indexing_slicing)]

use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach warrant at {url}: {message}")]
    Connect { url: String, message: String },
    #[error("{message} (HTTP {status}, {code})")]
    Api {
        status: u16,
        code: String,
        message: String,
        details: Option<Value>,
    },
    #[error("unexpected response from warrant: {0}")]
    Decode(String),
}

impl ClientError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// Percent-encodes a path segment or query value.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Builds `?a=b&c=d` from the pairs whose value is present.
pub fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ClientError::Connect {
                url: base.to_owned(),
                message: e.to_string(),
            })?;
        Ok(Client {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub async fn request(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.http.request(method, &url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req.send().await.map_err(|e| ClientError::Connect {
            url: self.base.clone(),
            message: e.to_string(),
        })?;
        let status = res.status();
        let text = res
            .text()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        if status.is_success() {
            if text.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text).map_err(|e| ClientError::Decode(e.to_string()));
        }
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        Err(ClientError::Api {
            status: status.as_u16(),
            code: v["error"].as_str().unwrap_or("error").to_owned(),
            message: v["message"].as_str().map(str::to_owned).unwrap_or_else(|| {
                status
                    .canonical_reason()
                    .unwrap_or("request failed")
                    .to_owned()
            }),
            details: v.get("details").cloned(),
        })
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        self.request(Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.request(Method::POST, path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: &Value) -> Result<Value> {
        self.request(Method::PUT, path, Some(body)).await
    }
    pub async fn patch(&self, path: &str, body: &Value) -> Result<Value> {
        self.request(Method::PATCH, path, Some(body)).await
    }

    pub async fn create_identity(&self, body: &Value) -> Result<Value> {
        self.post("/v1/identities", body).await
    }
    pub async fn identity(&self, id: &str) -> Result<Value> {
        self.get(&format!("/v1/identities/{}", encode(id))).await
    }
    pub async fn list_identities(&self, q: &[(&str, Option<String>)]) -> Result<Value> {
        self.get(&format!("/v1/identities{}", query(q))).await
    }
    pub async fn update_identity(&self, id: &str, body: &Value) -> Result<Value> {
        self.patch(&format!("/v1/identities/{}", encode(id)), body)
            .await
    }
    /// `action` is `suspend`, `resume` or `retire`.
    pub async fn lifecycle(&self, id: &str, action: &str, reason: Option<&str>) -> Result<Value> {
        let body = serde_json::json!({ "reason": reason });
        self.post(&format!("/v1/identities/{}/{action}", encode(id)), &body)
            .await
    }
    pub async fn put_policy(
        &self,
        schema: Option<&str>,
        policies: &str,
        comment: Option<&str>,
    ) -> Result<Value> {
        let body =
            serde_json::json!({ "schema": schema, "policies": policies, "comment": comment });
        self.put("/v1/policies", &body).await
    }
    pub async fn policy(&self) -> Result<Value> {
        self.get("/v1/policies").await
    }
    pub async fn authorize(&self, body: &Value) -> Result<Value> {
        self.post("/v1/authorize", body).await
    }
    pub async fn authorize_batch(&self, requests: &[Value]) -> Result<Value> {
        self.post(
            "/v1/authorize/batch",
            &serde_json::json!({ "requests": requests }),
        )
        .await
    }
    pub async fn audit(&self, q: &[(&str, Option<String>)]) -> Result<Value> {
        self.get(&format!("/v1/audit{}", query(q))).await
    }
    pub async fn checkpoint(&self) -> Result<Value> {
        self.request(Method::POST, "/v1/audit/checkpoints", None)
            .await
    }
    /// Inclusion proof of `seq`; makes a checkpoint first when none covers it yet.
    pub async fn proof(&self, seq: u64) -> Result<Value> {
        let path = format!("/v1/audit/proof/{seq}");
        match self.get(&path).await {
            Err(ClientError::Api { status, .. }) if status == StatusCode::CONFLICT.as_u16() => {
                self.checkpoint().await?;
                self.get(&path).await
            }
            other => other,
        }
    }
}
