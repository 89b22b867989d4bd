//! A blob pushed whole in one request (`POST ?digest=`, or `PUT ?digest=` with the body) on
//! S3 is written straight to its final key and published only when its digest checks out:
//! a wrong digest leaves no object at either digest's key, a right one is served.

use dockyard_testkit::http;
use dockyard_testkit::minio::Minio;
use dockyard_testkit::server::Server;
use sha2::{Digest as _, Sha256};

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[test]
fn whole_blob_pushes_publish_only_verified_bytes() {
    if !Minio::available("s3 direct blob writes") {
        return;
    }
    let minio = Minio::start();
    minio.create_bucket("direct");
    let server = Server::builder()
        .envs(minio.registry_env("direct", None))
        .env("REGISTRY_STORAGE_REDIRECT_DISABLE", "true")
        .start();
    // Small (one PUT) and large (multipart: 12 MiB in 10 MiB parts).
    for size in [1000usize, 12 << 20] {
        let bytes: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
        let good = digest(&bytes);
        let wrong = digest(b"something else");
        let post = |d: &str| {
            http::request(
                &server.addr,
                "POST",
                &format!("/v2/app/blobs/uploads/?digest={d}"),
                &[("Content-Type", "application/octet-stream")],
                &bytes,
            )
            .unwrap()
        };
        let refused = post(&wrong);
        assert_eq!(refused.status, 400, "{}", refused.text());
        assert!(
            refused.text().contains("DIGEST_INVALID"),
            "{}",
            refused.text()
        );
        let keys = minio.list_keys("direct", "docker/registry/v2/blobs/");
        assert!(keys.is_empty(), "a refused blob left {keys:?}");
        let uploads = minio.list_keys("direct", "docker/registry/v2/repositories/app/_uploads/");
        assert!(
            uploads.is_empty(),
            "a refused blob left its session: {uploads:?}"
        );

        let stored = post(&good);
        assert_eq!(stored.status, 201, "{}", stored.text());
        let keys = minio.list_keys("direct", "docker/registry/v2/blobs/");
        let hex = good.trim_start_matches("sha256:");
        assert_eq!(
            keys,
            vec![format!(
                "docker/registry/v2/blobs/sha256/{}/{hex}/data",
                &hex[..2]
            )],
            "only the blob's data, no leftovers of the writer"
        );
        let got = http::request(
            &server.addr,
            "GET",
            &format!("/v2/app/blobs/{good}"),
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(got.status, 200);
        assert!(got.body == bytes, "the served bytes differ");
        assert_eq!(minio.get_object("direct", &keys[0]).unwrap().len(), size);
        minio.delete_object("direct", &keys[0]);
    }
}
