//! Test support: an in-memory registry app and a request helper.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use std::sync::Arc;

use crate::auth::Authenticator;
use crate::content::{Content, ContentOptions};
use crate::registry::{AppState, http::UrlBase, router};
use crate::storage::memory::MemoryDriver;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

pub fn digest_of(bytes: &[u8]) -> String {
    crate::oci::Digest::of(crate::oci::Algorithm::Sha256, bytes).to_string()
}

pub struct App {
    router: axum::Router,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The first OCI error code in the body.
    pub fn code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
}

impl App {
    pub fn new(delete_enabled: bool) -> App {
        App::with_options(ContentOptions {
            delete_enabled,
            ..ContentOptions::default()
        })
    }

    pub fn with_options(options: ContentOptions) -> App {
        App::with_auth(options, None)
    }

    pub fn with_auth(options: ContentOptions, auth: Option<Arc<Authenticator>>) -> App {
        let content = Content::new(Arc::new(MemoryDriver::new()), options);
        // Empty storage: the name index is complete as it is.
        content.names().mark_ready();
        let urls = UrlBase::default();
        App {
            router: router(AppState {
                store: Arc::new(content),
                urls,
                auth,
            }),
        }
    }

    pub async fn send(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "registry.test");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send_request(req.body(Body::from(body.to_vec())).unwrap())
            .await
    }

    pub async fn send_request(&self, req: Request<Body>) -> Reply {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.send(Method::GET, uri, &[], b"").await
    }

    /// Monolithic single-POST blob push; returns the digest.
    pub async fn push_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let d = digest_of(bytes);
        let r = self
            .send(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
                &[],
                bytes,
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        d
    }

    /// Pushes a config and one layer; returns (manifest JSON, config digest, layer digest).
    pub async fn push_image(&self, repo: &str, layer: &[u8]) -> (String, String, String) {
        let config = br#"{"architecture":"amd64","os":"linux"}"#;
        let c = self.push_blob(repo, config).await;
        let l = self.push_blob(repo, layer).await;
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{c}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{l}","size":{}}}]}}"#,
            config.len(),
            layer.len()
        );
        (manifest, c, l)
    }
}
