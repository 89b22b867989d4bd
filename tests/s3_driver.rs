//! The storage driver conformance suite (`dockyard::storage::conformance`) against the S3
//! driver on a real MinIO: every named case, each on its own server and bucket, with 5 MiB
//! parts so that resumed writes cross part boundaries.

use dockyard::storage::Driver;
use dockyard::storage::conformance::UnderTest;
use dockyard::storage::s3::{S3Driver, S3Options};
use dockyard_testkit::minio::Minio;

struct OnMinio {
    driver: S3Driver,
    _minio: Minio,
}

impl UnderTest for OnMinio {
    fn driver(&self) -> &dyn Driver {
        &self.driver
    }
}

pub fn options(minio: &Minio, bucket: &str, root: &str) -> S3Options {
    S3Options {
        bucket: bucket.into(),
        region: Some(minio.region().into()),
        endpoint: Some(minio.endpoint()),
        access_key: Some(minio.access_key().into()),
        secret_key: Some(minio.secret_key().into()),
        root: root.into(),
        secure: false,
        force_path_style: true,
        chunk_size: 5 << 20,
        ..Default::default()
    }
}

fn on_minio() -> OnMinio {
    assert!(
        Minio::available("s3 driver conformance") || std::env::var_os("CI").is_none(),
        "minio is required under CI"
    );
    let minio = Minio::start();
    minio.create_bucket("conformance");
    let driver = S3Driver::new(&options(&minio, "conformance", "/root/dir")).unwrap();
    OnMinio {
        driver,
        _minio: minio,
    }
}

dockyard::driver_conformance!(on_minio());
