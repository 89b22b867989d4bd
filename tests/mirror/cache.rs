//! The cache's size: `proxy.maxsize` evicts the least recently used, `proxy.ttl` frees what
//! went unused.

use super::*;

#[test]
fn the_cache_stays_within_maxsize_and_ttl_frees_storage() {
    let dir = TempDir::new().unwrap();
    let upstream = Server::builder().target(Target::Dockyard).start();
    let (la, lb) = (dir.path().join("a"), dir.path().join("b"));
    let image_a = write_oci_layout(&la, "a", &[2 << 20]);
    let image_b = write_oci_layout(&lb, "b", &[2 << 20]);
    for (layout, name) in [(&la, "a"), (&lb, "b")] {
        skopeo_copy(
            &[],
            &format!("oci:{}:{name}", layout.display()),
            &format!("docker://{}/library/{name}:v1", upstream.addr),
        );
    }
    let remote = format!("http://{}", upstream.addr);
    let pull = |mirror: &Server, name: &str, out: &str| {
        let out = dir.path().join(out);
        let tag = name.trim_start_matches("library/");
        skopeo_copy(
            &[],
            &format!("docker://{}/{name}:v1", mirror.addr),
            &format!("oci:{}:{tag}", out.display()),
        );
        out
    };

    // Room for one image: pulling the second evicts the first, least recently used.
    let data = dir.path().join("sized");
    std::fs::create_dir_all(&data).unwrap();
    let sized = Server::builder()
        .target(Target::Dockyard)
        .data_dir(&data)
        .env("REGISTRY_PROXY_REMOTEURL", &remote)
        .env("REGISTRY_PROXY_MAXSIZE", "3MiB")
        .start();
    pull(&sized, "library/a", "a1");
    assert!(stored(&data, &image_a.layer_digests[0]).1);
    pull(&sized, "library/b", "b1");
    eventually("image a is evicted to keep the cache under 3 MiB", || {
        let (bytes, a_there) = stored(&data, &image_a.layer_digests[0]);
        !a_there && bytes <= 3 << 20
    });
    assert!(
        stored(&data, &image_b.layer_digests[0]).1,
        "the recently used image stays"
    );
    assert!(sized.log().contains("evicted cached content"));
    // An evicted image is fetched again on demand.
    let again = pull(&sized, "library/a", "a2");
    assert_same_image(&la, &again, &image_a.manifest_digest);

    // proxy.ttl: content unused for that long is removed and its storage freed.
    let data = dir.path().join("ttl");
    std::fs::create_dir_all(&data).unwrap();
    let expiring = Server::builder()
        .target(Target::Dockyard)
        .data_dir(&data)
        .env("REGISTRY_PROXY_REMOTEURL", &remote)
        .env("REGISTRY_PROXY_TTL", "2s")
        .start();
    pull(&expiring, "library/b", "b2");
    assert!(stored(&data, &image_b.layer_digests[0]).1);
    eventually("unused content expires after proxy.ttl", || {
        stored(&data, &image_b.layer_digests[0]).0 == 0
    });
    let again = pull(&expiring, "library/b", "b3");
    assert_same_image(&lb, &again, &image_b.manifest_digest);
}
