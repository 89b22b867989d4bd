//! The S3 driver's settings (registry:2's `storage.s3` keys, parsed in `config::s3`) and the
//! object store client they build. Without keys, credentials come from the default AWS chain:
//! `AWS_*` environment, web identity (IRSA), the container endpoint, then instance metadata.

use object_store::ClientOptions;
use object_store::aws::{AmazonS3, AmazonS3Builder};

/// Everything the driver needs to reach a bucket. Its `Debug` leaves the secrets out.
#[derive(Clone, Default, PartialEq)]
pub struct S3Options {
    pub bucket: String,
    pub region: Option<String>,
    /// `regionendpoint`: an S3-compatible endpoint (MinIO, Ceph RGW), with or without scheme.
    pub endpoint: Option<String>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    pub session_token: Option<String>,
    /// `rootdirectory`: the key prefix.
    pub root: String,
    /// `secure: false` reaches an endpoint without a scheme over plain HTTP.
    pub secure: bool,
    pub skip_verify: bool,
    /// Path-style URLs (`endpoint/bucket/key`) instead of virtual-hosted ones.
    pub force_path_style: bool,
    /// Multipart part size (`chunksize`).
    pub chunk_size: usize,
    /// Server-side encryption: with `keyid`, SSE-KMS; otherwise SSE-S3 (AES256).
    pub encrypt: bool,
    pub key_id: Option<String>,
    /// `storageclass`, e.g. STANDARD or REDUCED_REDUNDANCY (None: the bucket's default).
    pub storage_class: Option<String>,
    pub user_agent: Option<String>,
}

impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |v: &Option<String>| v.as_ref().map(|_| "<hidden>");
        f.debug_struct("S3Options")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("access_key", &self.access_key)
            .field("secret_key", &hidden(&self.secret_key))
            .field("session_token", &hidden(&self.session_token))
            .field("root", &self.root)
            .field("secure", &self.secure)
            .field("skip_verify", &self.skip_verify)
            .field("force_path_style", &self.force_path_style)
            .field("chunk_size", &self.chunk_size)
            .field("encrypt", &self.encrypt)
            .field("key_id", &self.key_id)
            .field("storage_class", &self.storage_class)
            .field("user_agent", &self.user_agent)
            .finish()
    }
}

impl S3Options {
    /// The endpoint URL with its scheme, if one is set.
    pub fn endpoint_url(&self) -> Option<String> {
        let endpoint = self.endpoint.as_deref()?.trim().trim_end_matches('/');
        Some(if endpoint.contains("://") {
            endpoint.to_owned()
        } else if self.secure {
            format!("https://{endpoint}")
        } else {
            format!("http://{endpoint}")
        })
    }

    pub(crate) fn build(&self) -> Result<AmazonS3, String> {
        // reqwest's rustls takes the process's crypto provider; Dockyard uses ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut client = ClientOptions::new()
            .with_allow_http(true)
            .with_timeout_disabled()
            .with_connect_timeout(std::time::Duration::from_secs(10))
            .with_pool_max_idle_per_host(64);
        if self.skip_verify {
            client = client.with_allow_invalid_certificates(true);
        }
        if let Some(agent) = &self.user_agent
            && let Ok(value) = agent.parse()
        {
            client = client.with_user_agent(value);
        }
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&self.bucket)
            .with_client_options(client)
            .with_virtual_hosted_style_request(!self.force_path_style);
        if let Some(region) = &self.region {
            b = b.with_region(region);
        }
        if let Some(url) = self.endpoint_url() {
            b = b.with_endpoint(url);
        }
        if let (Some(key), Some(secret)) = (&self.access_key, &self.secret_key) {
            b = b.with_access_key_id(key).with_secret_access_key(secret);
            if let Some(token) = &self.session_token {
                b = b.with_token(token);
            }
        }
        if self.encrypt {
            b = match &self.key_id {
                Some(id) => b.with_sse_kms_encryption(id),
                None => b.with_config(
                    "aws_server_side_encryption"
                        .parse()
                        .expect("object_store knows this key"),
                    "AES256",
                ),
            };
        }
        b.build().map_err(|e| format!("storage.s3: {e}"))
    }
}
