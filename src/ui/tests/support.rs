//! Test support: a registry with the web UI over the memory driver, content pushed
//! straight into it, and a request helper.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::auth::{AccessRule, Action, Authenticator, Policy, htpasswd_line};
use crate::config::{ProxyConfig, UpstreamConfig};
use crate::content::{Content, ContentOptions};
use crate::oci::{Algorithm, Digest, Reference, RepoName, Tag};
use crate::proxy::metrics::ProxyMetrics;
use crate::proxy::{Mirror, Settings};
use crate::registry::{AppState, http::UrlBase, router_with_pages};
use crate::storage::Driver;
use crate::storage::memory::MemoryDriver;
use crate::ui::{UiState, router};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
pub const HOST: &str = "registry.test:5000";
pub const ORIGIN: &str = "http://registry.test:5000";

pub struct Ui {
    router: axum::Router,
    pub content: Content,
    pub auth: Option<Arc<Authenticator>>,
    /// The UI's state, when it is enabled.
    pub state: Option<UiState>,
    _dir: Option<tempfile::TempDir>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The `name=value` of a cookie this reply sets.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(|v| v.split(';').next().unwrap().to_owned())
    }

    pub fn has(&self, needle: &str) -> bool {
        self.body.contains(needle)
    }
}

/// Users: admin (everything), reader (pull everything), alice (pull apps/**); anonymous
/// callers may pull public/** when `anonymous` is set.
pub fn authenticator(dir: &tempfile::TempDir, anonymous: bool) -> Arc<Authenticator> {
    let path = dir.path().join("htpasswd");
    let lines =
        ["admin", "reader", "alice"].map(|u| htpasswd_line(u, &format!("{u}-pw"), 4).unwrap());
    std::fs::write(&path, lines.join("\n")).unwrap();
    let rule = |users: &[&str], repos: &[&str], actions: &[Action]| AccessRule {
        users: users.iter().map(|s| s.to_string()).collect(),
        repositories: repos.iter().map(|s| s.to_string()).collect(),
        actions: actions.to_vec(),
    };
    let policy = Policy {
        anonymous_pull: if anonymous {
            vec!["public/**".into()]
        } else {
            vec![]
        },
        rules: Some(vec![
            rule(
                &["admin"],
                &["**"],
                &[Action::Pull, Action::Push, Action::Delete],
            ),
            rule(&["reader"], &["**"], &[Action::Pull]),
            rule(&["alice"], &["apps/**"], &[Action::Pull]),
        ]),
        pull_only: vec![],
    };
    Arc::new(Authenticator::load("test".into(), &path, policy).unwrap())
}

impl Ui {
    pub async fn new(delete_enabled: bool) -> Ui {
        Ui::build(delete_enabled, None, None, true).await
    }

    pub async fn with_auth(delete_enabled: bool, anonymous: bool) -> Ui {
        let dir = tempfile::tempdir().unwrap();
        let auth = authenticator(&dir, anonymous);
        Ui::build(delete_enabled, Some(auth), Some(dir), true).await
    }

    pub async fn build(
        delete_enabled: bool,
        auth: Option<Arc<Authenticator>>,
        dir: Option<tempfile::TempDir>,
        enabled: bool,
    ) -> Ui {
        let driver = Arc::new(MemoryDriver::new());
        Ui::build_on(driver, delete_enabled, auth, dir, enabled).await
    }

    /// A registry with delete enabled over `driver`, without auth.
    pub async fn on(driver: Arc<dyn Driver>) -> Ui {
        Ui::build_on(driver, true, None, None, true).await
    }

    pub async fn build_on(
        driver: Arc<dyn Driver>,
        delete_enabled: bool,
        auth: Option<Arc<Authenticator>>,
        dir: Option<tempfile::TempDir>,
        enabled: bool,
    ) -> Ui {
        let options = ContentOptions {
            delete_enabled,
            ..ContentOptions::default()
        };
        let content = Content::new(driver, options);
        content.load_names().await.unwrap();
        let state = AppState {
            store: Arc::new(content.clone()),
            urls: UrlBase::default(),
            auth: auth.clone(),
        };
        let ui =
            enabled.then(|| UiState::new(content.clone(), None, auth.clone(), Some("k"), false));
        let pages = match &ui {
            Some(ui) => router(ui.clone()),
            None => axum::Router::new(),
        };
        Ui {
            router: router_with_pages(state, pages),
            content,
            auth,
            state: ui,
            _dir: dir,
        }
    }

    /// A mirror of docker.io and ghcr.io (never contacted: the tests read what is cached).
    pub async fn mirror() -> (Ui, Arc<Mirror>, Arc<ProxyMetrics>) {
        Ui::mirror_on(Arc::new(MemoryDriver::new()), None).await
    }

    /// A mirror over `driver`, with `auth` (and the directory of its htpasswd file).
    pub async fn mirror_on(
        driver: Arc<dyn Driver>,
        auth: Option<(Arc<Authenticator>, tempfile::TempDir)>,
    ) -> (Ui, Arc<Mirror>, Arc<ProxyMetrics>) {
        let (auth, dir) = auth.unzip();
        let options = ContentOptions {
            delete_enabled: true,
            ..ContentOptions::default()
        };
        let content = Content::new(driver, options);
        content.load_names().await.unwrap();
        let upstream = |host: &str| UpstreamConfig {
            host: host.into(),
            ..UpstreamConfig::default()
        };
        let config = ProxyConfig {
            upstreams: Some(vec![upstream("docker.io"), upstream("ghcr.io")]),
            ..ProxyConfig::default()
        };
        let settings = Settings::from_config(Some(&config)).unwrap().unwrap();
        let metrics = Arc::new(ProxyMetrics::default());
        let mirror = Arc::new(Mirror::new(content.clone(), settings, metrics.clone()).unwrap());
        let state = AppState {
            store: mirror.clone(),
            urls: UrlBase::default(),
            auth: auth.clone(),
        };
        let ui = UiState::new(
            content.clone(),
            Some(mirror.clone()),
            auth.clone(),
            None,
            false,
        );
        let ui = Ui {
            router: router_with_pages(state, router(ui.clone())),
            content,
            auth,
            state: Some(ui),
            _dir: dir,
        };
        (ui, mirror, metrics)
    }

    pub async fn send(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", HOST);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .router
            .clone()
            .oneshot(req.body(Body::from(body.to_owned())).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// The htpasswd file of a UI with auth.
    pub fn htpasswd(&self) -> std::path::PathBuf {
        self._dir
            .as_ref()
            .expect("auth configured")
            .path()
            .join("htpasswd")
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.send(Method::GET, uri, &[], "").await
    }

    pub async fn get_as(&self, uri: &str, headers: &[(&str, &str)]) -> Reply {
        self.send(Method::GET, uri, headers, "").await
    }

    /// A form post from a page of this site.
    pub async fn post(&self, uri: &str, headers: &[(&str, &str)], form: &str) -> Reply {
        let mut all = vec![
            ("origin", ORIGIN),
            ("content-type", "application/x-www-form-urlencoded"),
        ];
        all.extend_from_slice(headers);
        self.send(Method::POST, uri, &all, form).await
    }

    /// Signs in through the form; returns the `Cookie` header value.
    pub async fn sign_in(&self, user: &str) -> String {
        let r = self
            .post(
                "/-/login",
                &[],
                &format!("username={user}&password={user}-pw"),
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        r.cookie("dockyard_session").expect("a session cookie")
    }

    pub async fn blob(&self, repo: &str, bytes: &[u8]) -> Digest {
        let name: RepoName = repo.parse().unwrap();
        let digest = Digest::of(Algorithm::Sha256, bytes);
        let body = Bytes::copy_from_slice(bytes);
        let stream = futures::stream::once(async move { Ok::<_, std::io::Error>(body) }).boxed();
        self.content.put_blob(&name, &digest, stream).await.unwrap();
        digest
    }

    pub async fn manifest(&self, repo: &str, tags: &[&str], manifest: &str) -> Digest {
        let name: RepoName = repo.parse().unwrap();
        let digest = Digest::of(Algorithm::Sha256, manifest.as_bytes());
        let extra: Vec<Tag> = tags.iter().skip(1).map(|t| t.parse().unwrap()).collect();
        let reference = match tags.first() {
            Some(t) => Reference::Tag(t.parse().unwrap()),
            None => Reference::Digest(digest.clone()),
        };
        let bytes = Bytes::from(manifest.to_owned());
        let mt = crate::oci::manifest::detect_media_type(&bytes);
        self.content
            .put_manifest(&name, &reference, &extra, bytes, mt.as_deref())
            .await
            .unwrap();
        digest
    }

    /// An image with `config` (JSON) and one layer of `layer`, under `tags`; its digest.
    pub async fn image_with(
        &self,
        repo: &str,
        tags: &[&str],
        config: &str,
        layer: &[u8],
    ) -> Digest {
        let c = self.blob(repo, config.as_bytes()).await;
        let l = self.blob(repo, layer).await;
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{c}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{l}","size":{}}}]}}"#,
            config.len(),
            layer.len()
        );
        self.manifest(repo, tags, &manifest).await
    }

    pub async fn image(&self, repo: &str, tags: &[&str]) -> Digest {
        let config = format!(
            r#"{{"created":"2024-05-01T12:34:56Z","architecture":"amd64","os":"linux","config":{{"Env":["REPO={repo}"]}}}}"#
        );
        self.image_with(repo, tags, &config, repo.as_bytes()).await
    }

    pub async fn tags(&self, repo: &str) -> Vec<String> {
        let name: RepoName = repo.parse().unwrap();
        match self.content.tags(&name).await {
            Ok(tags) => tags.iter().map(|t| t.to_string()).collect(),
            Err(_) => vec![],
        }
    }
}
