//! A Docker token issuer for distribution 2.8.2's `auth.token`: an HTTP server on loopback
//! that answers `GET /token?scope=...&service=...` with an ES256 JWT (its certificate in the
//! `x5c` header, the same certificate in distribution's `rootcertbundle`) granting what the
//! scope asks. This is Docker Hub's flow. It records whether each request carried Basic
//! credentials, so a test can tell the mirror's own credentials from a client's.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use rcgen::{CertificateParams, KeyPair, SigningKey};

pub const SERVICE: &str = "dockyard-test-registry";
pub const ISSUER: &str = "dockyard-test-issuer";

pub struct TokenIssuer {
    pub realm: String,
    pub cert_path: PathBuf,
    /// The Authorization header of every token request ("" when none).
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl TokenIssuer {
    pub fn start(dir: &Path) -> TokenIssuer {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["token-issuer".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let cert_path = dir.join("token-cert.pem");
        std::fs::write(&cert_path, cert.pem()).unwrap();
        let x5c = base64::engine::general_purpose::STANDARD.encode(cert.der());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let realm = format!("http://{}/token", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let target = line.split(' ').nth(1).unwrap_or_default().to_string();
                let mut auth = String::new();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("authorization:") {
                        auth = v.trim().to_string();
                    }
                }
                seen.lock().unwrap().push(auth);
                let token = jwt(&key, &x5c, &scopes(&target));
                let body = format!("{{\"token\":\"{token}\",\"expires_in\":300}}");
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        TokenIssuer {
            realm,
            cert_path,
            requests,
        }
    }

    /// distribution's `auth.token` settings for this issuer, as environment overrides.
    pub fn registry_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("REGISTRY_AUTH", "token".to_string()),
            ("REGISTRY_AUTH_TOKEN_REALM", self.realm.clone()),
            ("REGISTRY_AUTH_TOKEN_SERVICE", SERVICE.to_string()),
            ("REGISTRY_AUTH_TOKEN_ISSUER", ISSUER.to_string()),
            (
                "REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE",
                self.cert_path.display().to_string(),
            ),
        ]
    }
}

/// The `scope` parameters of a token request: (repository, actions).
fn scopes(target: &str) -> Vec<(String, Vec<String>)> {
    let query = target.split_once('?').map_or("", |(_, q)| q);
    query
        .split('&')
        .filter_map(|p| p.strip_prefix("scope="))
        .map(|s| {
            s.replace("%3A", ":")
                .replace("%2F", "/")
                .replace("%2C", ",")
        })
        .filter_map(|s| {
            let mut parts = s.splitn(3, ':');
            let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
            (kind == "repository").then(|| {
                (
                    name.to_string(),
                    actions.split(',').map(str::to_string).collect(),
                )
            })
        })
        .collect()
}

fn jwt(key: &KeyPair, x5c: &str, access: &[(String, Vec<String>)]) -> String {
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({ "alg": "ES256", "typ": "JWT", "x5c": [x5c] });
    let access: Vec<_> = access
        .iter()
        .map(|(name, actions)| serde_json::json!({ "type": "repository", "name": name, "actions": actions }))
        .collect();
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": "mirror", "aud": SERVICE,
        "exp": now + 300, "nbf": now - 10, "iat": now,
        "jti": format!("{now}-{}", access.len()), "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let der = key.sign(signing_input.as_bytes()).unwrap();
    format!("{signing_input}.{}", b64(&der_to_fixed(&der)))
}

/// An ASN.1 DER ECDSA signature (SEQUENCE of r and s) as JWS wants it: r || s, 32 bytes each.
fn der_to_fixed(der: &[u8]) -> Vec<u8> {
    let mut pos = 2;
    let mut out = Vec::new();
    for _ in 0..2 {
        assert_eq!(der[pos], 0x02, "INTEGER expected");
        let len = der[pos + 1] as usize;
        let int = &der[pos + 2..pos + 2 + len];
        let int = &int[int.len().saturating_sub(32)..];
        out.extend(std::iter::repeat_n(0, 32 - int.len()));
        out.extend_from_slice(int);
        pos += 2 + len;
    }
    out
}
