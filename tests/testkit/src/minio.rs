//! A real S3 engine for the object-storage tests: a guard around one MinIO server (built by
//! `tests/setup.sh` from `tools/minio`) on a free loopback port with its own temp dir, either
//! on one drive ([`Minio::start`]) or as a 4-drive erasure set ([`Minio::start_erasure`]), or
//! on one drive at another address of this host ([`Minio::start_on`], e.g. a test cluster's
//! bridge, so that pods reach it).
//! Buckets and objects are handled with SigV4-signed requests made here (no `mc`, no SDK),
//! and [`Minio::registry_env`] / [`Minio::distribution_env`] give the `REGISTRY_STORAGE_S3_*`
//! environment that points a registry under test ([`crate::Server`]) at a bucket.
//!
//! MinIO runs with `MINIO_UPDATE=off` (it would otherwise ask dl.min.io for a newer release),
//! `MINIO_BROWSER=off`, `MINIO_CI_CD=1` (drives under /tmp sit on the root filesystem, which
//! an erasure set refuses otherwise; it also caps MinIO's buffer pool) and `--certs-dir` in
//! its temp dir (else it creates `~/.minio/certs`). It is killed by PID on drop.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use tempfile::TempDir;

use super::http::{self, Response};
use super::server::free_port;

const ACCESS_KEY: &str = "dockyard-minio";
const SECRET_KEY: &str = "dockyard-minio-secret";
const REGION: &str = "us-east-1";

/// A running MinIO server; killed (by PID) and its directory removed on drop.
pub struct Minio {
    /// `HOST:PORT` of the S3 API (`127.0.0.1:PORT` unless started with [`Minio::start_on`]).
    addr: String,
    dir: TempDir,
    drives: Vec<PathBuf>,
    child: Option<Child>,
}

impl Minio {
    /// Where the `minio` binary is (`$DOCKYARD_TOOLS/bin`, `<repo>/.tools/bin`, then `PATH`).
    pub fn binary() -> Option<PathBuf> {
        crate::cmd::find_tool("minio")
    }

    /// True when the `minio` binary is there. Without it: under CI (`CI` set to anything)
    /// this panics, so a CI run cannot pass by skipping; elsewhere it prints why `test` is
    /// skipped and returns false.
    pub fn available(test: &str) -> bool {
        if Self::binary().is_some() {
            return true;
        }
        let ci = std::env::var("CI").unwrap_or_default();
        assert!(
            ci.is_empty(),
            "{test}: no `minio` binary (CI={ci}): run tests/setup.sh, which builds it from tools/minio"
        );
        eprintln!("note: skipping {test}: no `minio` binary; run tests/setup.sh (tools/minio)");
        false
    }

    /// A single-drive server (`minio server DIR/data`).
    pub fn start() -> Minio {
        Self::launch(false, "127.0.0.1")
    }

    /// A single-drive server whose S3 API listens on `ip` (an address of this host, like a
    /// test cluster's bridge address, so that pods reach it) and nowhere else; the console
    /// stays on loopback. Requests made here go to `ip` too, signed for that `Host`.
    pub fn start_on(ip: &str) -> Minio {
        Self::launch(false, ip)
    }

    /// A 4-drive erasure set (`minio server DIR/d{1...4}`), 2 data + 2 parity shards.
    pub fn start_erasure() -> Minio {
        Self::launch(true, "127.0.0.1")
    }

    fn launch(erasure: bool, ip: &str) -> Minio {
        let bin = Self::binary().expect("no `minio` binary: run tests/setup.sh");
        let dir = tempfile::Builder::new()
            .prefix("dockyard-minio-")
            .tempdir()
            .expect("temp dir");
        let (arg, drives) = match erasure {
            true => (
                dir.path().join("d{1...4}").display().to_string(),
                (1..=4).map(|i| dir.path().join(format!("d{i}"))).collect(),
            ),
            false => {
                let data = dir.path().join("data");
                (data.display().to_string(), vec![data])
            }
        };
        for drive in &drives {
            fs::create_dir_all(drive).unwrap();
        }
        let mut minio = Minio {
            addr: String::new(),
            dir,
            drives,
            child: None,
        };
        for attempt in 1..=3 {
            minio.addr = format!("{ip}:{}", free_port_on(ip));
            let console = format!("127.0.0.1:{}", free_port());
            let log = File::create(minio.log_path()).unwrap();
            let mut command = Command::new(&bin);
            command
                .arg("server")
                .args(["--address", &minio.addr, "--console-address", &console])
                .arg("--certs-dir")
                .arg(minio.dir.path().join("certs"))
                .arg(&arg)
                .env("MINIO_ROOT_USER", ACCESS_KEY)
                .env("MINIO_ROOT_PASSWORD", SECRET_KEY)
                .env("MINIO_REGION", REGION)
                .env("MINIO_BROWSER", "off")
                .env("MINIO_UPDATE", "off")
                .env("MINIO_CI_CD", "1")
                .env_remove("MINIO_VOLUMES")
                .env_remove("MINIO_OPTS")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log);
            let started = Instant::now();
            minio.child = Some(
                command
                    .spawn()
                    .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}")),
            );
            if minio.wait_ready() {
                eprintln!(
                    "minio ({}) ready at {} in {:.2?} (attempt {attempt})",
                    if erasure {
                        "4-drive erasure"
                    } else {
                        "1 drive"
                    },
                    minio.addr,
                    started.elapsed()
                );
                return minio;
            }
            // Exited during startup: most likely the port was taken meanwhile; try another.
        }
        panic!("minio did not start:\n{}", minio.log());
    }

    /// Polls until a signed ListBuckets answers 200; false when the process exited first.
    /// (`/minio/health/ready` answers 200 before the object layer and IAM are up, while S3
    /// requests still get 503 `XMinioServerNotInitialized`, even while an erasure set waits
    /// for drives.)
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let child = self.child.as_mut().unwrap();
            if let Some(status) = child.try_wait().unwrap() {
                eprintln!("minio exited during startup ({status}):\n{}", self.log());
                self.child = None;
                return false;
            }
            let probe = http::request(&self.addr, "GET", "/minio/health/ready", &[], &[]);
            if matches!(probe, Ok(ref r) if r.status == 200)
                && self
                    .try_request("GET", "/", &[], b"")
                    .is_ok_and(|r| r.status == 200)
            {
                return true;
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "minio at {} not ready after 60 s:\n{}",
            self.addr,
            self.log()
        );
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("minio.log")
    }

    /// Everything MinIO wrote to stdout and stderr.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The process id of the server.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("minio is not running").id()
    }

    /// The drive directories (one, or four for an erasure set).
    pub fn drives(&self) -> &[PathBuf] {
        &self.drives
    }

    /// `127.0.0.1:PORT` (or `IP:PORT` for [`Minio::start_on`]).
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `http://127.0.0.1:PORT` (or `http://IP:PORT`), the S3 endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn access_key(&self) -> &str {
        ACCESS_KEY
    }

    pub fn secret_key(&self) -> &str {
        SECRET_KEY
    }

    pub fn region(&self) -> &str {
        REGION
    }

    /// The storage environment for a registry on bucket `bucket` (under `root`, if any),
    /// with every key distribution 2.8.2's S3 driver reads ([`Minio::distribution_env`])
    /// plus `REGISTRY_STORAGE_S3_FORCEPATHSTYLE=true`, which Dockyard and distribution v3
    /// read. Distribution 2.8.2 does not know that key and ignores it (it always uses path
    /// style when `regionendpoint` is set).
    pub fn registry_env(&self, bucket: &str, root: Option<&str>) -> Vec<(String, String)> {
        let mut env = self.distribution_env(bucket, root);
        env.push(("REGISTRY_STORAGE_S3_FORCEPATHSTYLE".into(), "true".into()));
        env
    }

    /// Exactly the keys distribution 2.8.2's S3 driver reads: `REGISTRY_STORAGE=s3` (which
    /// replaces the whole `storage` section of its config file, `delete` included;
    /// [`crate::server::ServerBuilder`] sets `REGISTRY_STORAGE_DELETE_ENABLED` again) and
    /// `REGISTRY_STORAGE_S3_{ACCESSKEY,SECRETKEY,REGION,REGIONENDPOINT,BUCKET,SECURE,V4AUTH}`,
    /// plus `ROOTDIRECTORY` when `root` is given (keys then start with `root` minus its
    /// leading `/`). The process must not see `AWS_CA_BUNDLE`: the driver panics on it
    /// (`Server` removes it for distribution).
    pub fn distribution_env(&self, bucket: &str, root: Option<&str>) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = [
            ("REGISTRY_STORAGE", "s3"),
            ("REGISTRY_STORAGE_S3_ACCESSKEY", ACCESS_KEY),
            ("REGISTRY_STORAGE_S3_SECRETKEY", SECRET_KEY),
            ("REGISTRY_STORAGE_S3_REGION", REGION),
            ("REGISTRY_STORAGE_S3_REGIONENDPOINT", &self.endpoint()),
            ("REGISTRY_STORAGE_S3_BUCKET", bucket),
            ("REGISTRY_STORAGE_S3_SECURE", "false"),
            ("REGISTRY_STORAGE_S3_V4AUTH", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        if let Some(root) = root {
            env.push(("REGISTRY_STORAGE_S3_ROOTDIRECTORY".into(), root.into()));
        }
        env
    }

    /// Creates bucket `name` (PUT Bucket); panics unless MinIO answers 200.
    pub fn create_bucket(&self, name: &str) {
        let resp = self.request("PUT", &format!("/{name}"), &[], b"");
        expect(&resp, &[200], &format!("create bucket {name}"));
    }

    /// Stores `bytes` at `key` in `bucket`.
    pub fn put_object(&self, bucket: &str, key: &str, bytes: &[u8]) {
        let resp = self.request("PUT", &format!("/{bucket}/{key}"), &[], bytes);
        expect(&resp, &[200], &format!("put {bucket}/{key}"));
    }

    /// The object at `key` in `bucket`, or None when there is none.
    pub fn get_object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let resp = self.request("GET", &format!("/{bucket}/{key}"), &[], b"");
        expect(&resp, &[200, 404], &format!("get {bucket}/{key}"));
        (resp.status == 200).then_some(resp.body)
    }

    /// Deletes `key` in `bucket` (S3 answers 204 whether or not it existed).
    pub fn delete_object(&self, bucket: &str, key: &str) {
        let resp = self.request("DELETE", &format!("/{bucket}/{key}"), &[], b"");
        expect(&resp, &[204], &format!("delete {bucket}/{key}"));
    }

    /// Every key in `bucket` that starts with `prefix`, in S3's (lexicographic) order.
    pub fn list_keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        self.list_keys_paged(bucket, prefix, 1000)
    }

    /// [`Minio::list_keys`] asking for `page` keys per ListObjectsV2 request, following
    /// continuation tokens.
    pub fn list_keys_paged(&self, bucket: &str, prefix: &str, page: usize) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        let page = page.to_string();
        loop {
            let mut query = vec![
                ("list-type", "2"),
                ("prefix", prefix),
                ("max-keys", page.as_str()),
            ];
            if let Some(t) = &token {
                query.push(("continuation-token", t));
            }
            let resp = self.request("GET", &format!("/{bucket}"), &query, b"");
            expect(&resp, &[200], &format!("list {bucket}/{prefix}"));
            let xml = resp.text();
            keys.extend(xml_values(&xml, "Key"));
            let truncated =
                xml_values(&xml, "IsTruncated").first().map(String::as_str) == Some("true");
            token = xml_values(&xml, "NextContinuationToken").into_iter().next();
            if !truncated {
                return keys;
            }
            assert!(
                token.is_some(),
                "truncated listing without a continuation token:\n{xml}"
            );
        }
    }

    /// The multipart uploads in progress (not completed, not aborted) in `bucket` whose key
    /// starts with `prefix`, as (key, upload id) (ListMultipartUploads, first 1000).
    pub fn multipart_uploads(&self, bucket: &str, prefix: &str) -> Vec<(String, String)> {
        let query = [("uploads", ""), ("prefix", prefix)];
        let resp = self.request("GET", &format!("/{bucket}"), &query, b"");
        expect(
            &resp,
            &[200],
            &format!("list multipart uploads {bucket}/{prefix}"),
        );
        let xml = resp.text();
        xml_values(&xml, "Upload")
            .iter()
            .map(|upload| {
                let field = |tag| {
                    xml_values(upload, tag)
                        .into_iter()
                        .next()
                        .unwrap_or_default()
                };
                (field("Key"), field("UploadId"))
            })
            .collect()
    }

    /// The part numbers uploaded so far to multipart upload `upload_id` of `key` (ListParts,
    /// first 1000).
    pub fn uploaded_parts(&self, bucket: &str, key: &str, upload_id: &str) -> Vec<u32> {
        let query = [("uploadId", upload_id)];
        let resp = self.request("GET", &format!("/{bucket}/{key}"), &query, b"");
        expect(&resp, &[200], &format!("list parts of {bucket}/{key}"));
        xml_values(&resp.text(), "PartNumber")
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect()
    }

    /// One SigV4-signed S3 request (path style). `path` is `/bucket[/key]`, not yet
    /// URI-encoded; `query` pairs are encoded and sorted here.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        self.try_request(method, path, query, body)
            .unwrap_or_else(|e| panic!("{method} {}{path}: {e}", self.endpoint()))
    }

    fn try_request(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Response> {
        let signed = sign(
            &SigningInput {
                method,
                host: &self.addr,
                path,
                query,
                body,
                access_key: ACCESS_KEY,
                secret_key: SECRET_KEY,
                region: REGION,
            },
            SystemTime::now(),
        );
        let headers: Vec<(&str, &str)> = signed
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        http::request(&self.addr, method, &signed.target, &headers, body)
    }
}

impl Drop for Minio {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Test data is disposable: SIGKILL (MinIO takes a second or more on SIGTERM).
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A port free on `ip` right now (MinIO may still lose it to someone else: `launch` retries).
fn free_port_on(ip: &str) -> u16 {
    if ip == "127.0.0.1" {
        return free_port();
    }
    let listener = std::net::TcpListener::bind((ip, 0))
        .unwrap_or_else(|e| panic!("bind a free port on {ip}: {e}"));
    listener.local_addr().unwrap().port()
}

fn expect(resp: &Response, statuses: &[u16], what: &str) {
    assert!(
        statuses.contains(&resp.status),
        "S3 {what}: status {} (wanted {statuses:?}):\n{}",
        resp.status,
        resp.text()
    );
}

/// The text of every `<tag>...</tag>` element in `xml`, entities decoded. Enough for
/// S3's flat ListObjectsV2 answer.
fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        rest = &rest[start + open.len()..];
        let Some(end) = rest.find(&close) else { break };
        out.push(xml_unescape(&rest[..end]));
        rest = &rest[end + close.len()..];
    }
    out
}

fn xml_unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let Some(semi) = rest.find(';') else { break };
        let entity = &rest[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .map(|hex| u32::from_str_radix(hex, 16))
                .or_else(|| entity.strip_prefix('#').map(str::parse))
                .and_then(Result::ok)
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// What to sign.
pub struct SigningInput<'a> {
    pub method: &'a str,
    /// The `Host` header exactly as sent (`127.0.0.1:PORT`).
    pub host: &'a str,
    /// `/bucket/key`, not URI-encoded.
    pub path: &'a str,
    pub query: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
    pub access_key: &'a str,
    pub secret_key: &'a str,
    pub region: &'a str,
}

/// A signed request: the request target to send and the headers to add (the `Host` header
/// is the caller's, as signed).
#[derive(Debug)]
pub struct Signed {
    /// Encoded path and sorted, encoded query.
    pub target: String,
    pub headers: Vec<(String, String)>,
    /// The canonical request that was signed, for debugging a signature mismatch.
    pub canonical_request: String,
}

/// AWS Signature Version 4 for service `s3` with a signed payload hash (headers `host`,
/// `x-amz-content-sha256`, `x-amz-date`).
pub fn sign(input: &SigningInput, now: SystemTime) -> Signed {
    let (amz_date, date) = amz_dates(now);
    let uri = uri_encode(input.path, false);
    let mut pairs: Vec<(String, String)> = input
        .query
        .iter()
        .map(|(k, v)| (uri_encode(k, true), uri_encode(v, true)))
        .collect();
    pairs.sort();
    let query = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let payload = hex::encode(Sha256::digest(input.body));
    let signed_headers = "host;x-amz-content-sha256;x-amz-date";
    let canonical_request = format!(
        "{}\n{uri}\n{query}\nhost:{}\nx-amz-content-sha256:{payload}\nx-amz-date:{amz_date}\n\n{signed_headers}\n{payload}",
        input.method, input.host
    );
    let scope = format!("{date}/{}/s3/aws4_request", input.region);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let mut key = hmac_sha256(
        format!("AWS4{}", input.secret_key).as_bytes(),
        date.as_bytes(),
    );
    for part in [input.region, "s3", "aws4_request"] {
        key = hmac_sha256(&key, part.as_bytes());
    }
    let signature = hex::encode(hmac_sha256(&key, string_to_sign.as_bytes()));
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        input.access_key
    );
    let target = match query.is_empty() {
        true => uri,
        false => format!("{uri}?{query}"),
    };
    Signed {
        target,
        headers: vec![
            ("x-amz-content-sha256".into(), payload),
            ("x-amz-date".into(), amz_date),
            ("Authorization".into(), authorization),
        ],
        canonical_request,
    }
}

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// SigV4's URI encoding: everything but `A-Za-z0-9-_.~` as `%XX`, and `/` too unless it
/// separates path segments (`encode_slash` false).
fn uri_encode(text: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            b'/' if !encode_slash => out.push('/'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// (`YYYYMMDDTHHMMSSZ`, `YYYYMMDD`) in UTC.
fn amz_dates(now: SystemTime) -> (String, String) {
    let secs = now
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let date = format!("{year:04}{month:02}{day:02}");
    let time = format!("{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60);
    (format!("{date}T{time}Z"), date)
}

/// Walks `dir` and returns the paths (relative, `/`-separated) of its files, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(rel) = path.strip_prefix(dir) {
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn hmac_hashes_long_keys_first() {
        // RFC 4231 test case 6: a 131-byte key.
        let mac = hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(
            hex::encode(mac),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn dates_are_utc_civil() {
        // 2013-05-24T00:00:00Z, the date of AWS's SigV4 S3 examples.
        let t = UNIX_EPOCH + Duration::from_secs(1_369_353_600);
        assert_eq!(amz_dates(t), ("20130524T000000Z".into(), "20130524".into()));
        let leap = UNIX_EPOCH + Duration::from_secs(951_827_696); // 2000-02-29T12:34:56Z
        assert_eq!(amz_dates(leap).0, "20000229T123456Z");
    }

    #[test]
    fn signs_the_aws_get_object_example() {
        // AWS's "GET Object" example for SigV4 in the S3 API reference, minus its Range
        // header (so a different signature): checks the canonical request's shape.
        let signed = sign(
            &SigningInput {
                method: "GET",
                host: "examplebucket.s3.amazonaws.com",
                path: "/test.txt",
                query: &[],
                body: b"",
                access_key: "AKIAIOSFODNN7EXAMPLE",
                secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                region: "us-east-1",
            },
            UNIX_EPOCH + Duration::from_secs(1_369_353_600),
        );
        assert_eq!(
            signed.canonical_request,
            "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\n\
             x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
             x-amz-date:20130524T000000Z\n\nhost;x-amz-content-sha256;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn signs_the_aws_list_objects_example() {
        // AWS's "GET Bucket (List Objects)" SigV4 example: same headers, known signature.
        let signed = sign(
            &SigningInput {
                method: "GET",
                host: "examplebucket.s3.amazonaws.com",
                path: "/",
                query: &[("max-keys", "2"), ("prefix", "J")],
                body: b"",
                access_key: "AKIAIOSFODNN7EXAMPLE",
                secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                region: "us-east-1",
            },
            UNIX_EPOCH + Duration::from_secs(1_369_353_600),
        );
        assert_eq!(signed.target, "/?max-keys=2&prefix=J");
        let auth = &signed.headers[2].1;
        assert!(
            auth.ends_with(
                "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
            ),
            "{auth}"
        );
    }

    #[test]
    fn uri_encoding_and_xml_unescaping() {
        assert_eq!(uri_encode("/b/a b+c~é", false), "/b/a%20b%2Bc~%C3%A9");
        assert_eq!(uri_encode("a/b", true), "a%2Fb");
        assert_eq!(
            xml_values("<R><Key>a&amp;b&#34;c&#x27;</Key><Key>d</Key></R>", "Key"),
            ["a&b\"c'", "d"]
        );
    }
}
