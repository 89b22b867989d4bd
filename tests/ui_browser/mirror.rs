//! A mirror: what it cached per upstream, and the hit ratio.

use super::*;

#[test]
fn mirror_shows_what_it_cached_per_upstream() {
    let upstream = Server::builder().target(Target::Dockyard).start();
    let tmp = TempDir::new().unwrap();
    let layout = tmp.path().join("layout");
    let image = oci::write_oci_layout(&layout, "m", &[200_000, 5000]);
    push_layout(&upstream, &[], &layout, "m", "lib/app:1.0");
    push_layout(&upstream, &[], &layout, "m", "lib/other:1.0");
    let mirror = common::mirror::mirror(&[(
        "REGISTRY_PROXY_REMOTEURL",
        &format!("http://{}", upstream.addr),
    )]);
    // Two pulls of the same image: the second is served from the cache.
    for round in 0..2 {
        let out = tmp.path().join(format!("pulled-{round}"));
        common::registry::skopeo_copy(
            &[],
            &format!("docker://{}/lib/app:1.0", mirror.addr),
            &format!("oci:{}:1.0", out.display()),
        );
    }
    let mut b = Browser::start("mirror");
    b.goto(&url(&mirror, "/"));
    b.screenshot("mirror-home");
    assert_eq!(
        b.texts("#repositories a.repo"),
        ["lib/app"],
        "the mirror lists what it cached"
    );
    let row = format!("#upstreams tr.upstream[data-host='{}']", upstream.addr);
    assert!(
        b.exists(&row),
        "no row for upstream {} in {:?}",
        upstream.addr,
        b.try_text("#upstreams")
    );
    assert_eq!(b.count("#upstreams tr.upstream"), 1);
    assert_eq!(b.text(&format!("{row} .repositories")), "1");
    assert_eq!(b.text(&format!("{row} .tags")), "1");
    let bytes = b.text(&format!("{row} .bytes"));
    let cached: u64 = image.layer_sizes.iter().sum();
    let got = parse_size(&bytes).unwrap_or_else(|| panic!("bytes {bytes:?}"));
    assert!(
        got >= cached as f64 * 0.95,
        "bytes {bytes:?}: at least the layers ({cached}) are cached"
    );
    let last = b.text(&format!("{row} .last-pulled"));
    assert!(
        !last.is_empty() && last != "—" && last != "never",
        "last pulled: {last:?}"
    );
    let ratio = b.text(&format!("{row} .hit-ratio"));
    assert!(
        ratio.chars().any(|c| c.is_ascii_digit()),
        "hit ratio: {ratio:?}"
    );
    let overall = b.text("#hit-ratio");
    assert!(
        overall.chars().any(|c| c.is_ascii_digit()),
        "#hit-ratio: {overall:?}"
    );
    // No deleting on a mirror.
    b.goto(&url(&mirror, "/r/lib/app"));
    b.screenshot("mirror-repo");
    assert!(b.exists("#tags tr.tag[data-tag='1.0']"));
    assert_eq!(b.count("a.untag") + b.count("a.delete-manifest"), 0);
    let _ = OCI_INDEX;
}
