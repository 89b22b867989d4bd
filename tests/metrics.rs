//! `/metrics` on the `http.debug` listener, as Prometheus scrapes it: after a skopeo push and
//! pull, Dockyard's request counters, latency histograms, storage action timings and blob
//! byte counters moved by what was sent, with registry:2's labels; and every name Dockyard
//! says it shares with registry:2 is one distribution 2.8.2 exports too, with the same labels,
//! under the same traffic.

use dockyard_testkit as common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::oci::{self, ImageInfo};
use common::registry::{push_layout, skopeo_copy};
use common::{Server, Target, http};
use dockyard::metrics::SHARED_WITH_REGISTRY2;
use tempfile::TempDir;

/// One sample of a scrape.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The samples of a Prometheus or OpenMetrics text scrape.
fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap();
                    (k.to_owned(), v.trim_matches('"').to_owned())
                })
                .collect();
            Sample {
                name: name.to_owned(),
                labels,
                value: value.parse().unwrap_or_else(|_| panic!("value of {line}")),
            }
        })
        .collect()
}

/// The family a sample belongs to: a histogram's without `_bucket`, `_sum` or `_count`.
fn family(sample: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| sample.strip_suffix(suffix))
        .unwrap_or(sample)
}

struct Scrape(Vec<Sample>);

impl Scrape {
    fn get(addr: &str) -> Scrape {
        let (status, _, body) = http::http_get(addr, "/metrics");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        Scrape(parse(&String::from_utf8_lossy(&body)))
    }

    /// A scrape once no request is in flight: a client can have read a response's last byte
    /// just before the server notes that the response is done.
    fn settled(addr: &str) -> Scrape {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let scrape = Scrape::get(addr);
            let busy = scrape.sum("registry_http_in_flight_requests", &[]);
            if busy == 0.0 || Instant::now() > deadline {
                return scrape;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The sum of the samples named `name` that have all of `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }

    /// The value of the one sample named `name` with exactly `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.0
            .iter()
            .find(|s| s.name == name && s.labels == wanted)
            .map(|s| s.value)
            .unwrap_or_else(|| panic!("no {name}{wanted:?} in\n{:#?}", self.names()))
    }

    /// Every family with the label names its samples carry (`le` aside).
    fn families(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut families: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for sample in &self.0 {
            let labels = families.entry(family(&sample.name).to_owned()).or_default();
            labels.extend(sample.labels.keys().filter(|k| *k != "le").cloned());
        }
        families
    }

    fn names(&self) -> BTreeSet<&str> {
        self.0.iter().map(|s| s.name.as_str()).collect()
    }

    /// The (handler, method, code) of every request counted.
    fn requests(&self) -> BTreeSet<(String, String, String)> {
        self.0
            .iter()
            .filter(|s| s.name == "registry_http_requests_total" && s.value > 0.0)
            .map(|s| {
                let label = |k: &str| s.labels.get(k).cloned().unwrap_or_default();
                (label("handler"), label("method"), label("code"))
            })
            .collect()
    }
}

fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// A server of `target` with its debug listener at `debug` serving `/metrics`.
fn server_with_metrics(target: Target, debug: &str) -> Server {
    Server::builder()
        .target(target)
        .env("REGISTRY_HTTP_DEBUG_ADDR", debug)
        .env("REGISTRY_HTTP_DEBUG_PROMETHEUS_ENABLED", "true")
        .start()
}

/// Bytes of the image's blobs: its config and layers.
fn blob_bytes(layout: &Path, image: &ImageInfo) -> u64 {
    std::iter::once(&image.config_digest)
        .chain(&image.layer_digests)
        .map(|digest| oci::layout_blob(layout, digest).len() as u64)
        .sum()
}

/// Pushes a two-layer image to `server` as `metrics/app:v1` and pulls it back.
fn push_and_pull(server: &Server, dir: &Path) -> (ImageInfo, u64) {
    let layout = dir.join("layout");
    let image = oci::write_oci_layout(&layout, "v1", &[300 << 10, 5000]);
    let remote = push_layout(server, &[], &layout, "v1", "metrics/app:v1");
    let out = dir.join("pulled");
    skopeo_copy(&[], &remote, &format!("oci:{}:v1", out.display()));
    oci::assert_same_image(&layout, &out, &image.manifest_digest);
    let bytes = blob_bytes(&layout, &image);
    (image, bytes)
}

#[test]
fn a_push_and_a_pull_move_the_counters_with_registry2_labels() {
    let debug = free_addr();
    let server = server_with_metrics(Target::Dockyard, &debug);
    let before = Scrape::get(&debug);
    let probes = BTreeSet::from([("base".into(), "get".into(), "200".into())]);
    assert_eq!(
        before.requests(),
        probes,
        "only the readiness probes so far"
    );
    let dir = TempDir::new().unwrap();
    let (image, bytes) = push_and_pull(&server, dir.path());
    let blobs = 1.0 + image.layer_digests.len() as f64;
    let s = Scrape::settled(&debug);

    // Every blob was created once (by a final PUT of a session, or one POST), and fetched once.
    let created = |handler: &str| {
        s.sum(
            "registry_http_requests_total",
            &[("handler", handler), ("code", "201")],
        )
    };
    assert_eq!(created("blob_upload") + created("blob_upload_chunk"), blobs);
    assert!(
        s.value(
            "registry_http_requests_total",
            &[
                ("code", "201"),
                ("handler", "blob_upload_chunk"),
                ("method", "put")
            ]
        ) >= 1.0,
        "skopeo completes uploads with a PUT"
    );
    assert_eq!(
        s.value(
            "registry_http_requests_total",
            &[("code", "201"), ("handler", "manifest"), ("method", "put")]
        ),
        1.0
    );
    assert_eq!(
        s.value(
            "registry_http_requests_total",
            &[("code", "200"), ("handler", "blob"), ("method", "get")]
        ),
        blobs
    );
    // Each request's latency is observed once, under its handler and method.
    for (handler, method) in [("manifest", "put"), ("blob", "get"), ("base", "get")] {
        let counted = s.sum(
            "registry_http_requests_total",
            &[("handler", handler), ("method", method)],
        );
        let timed = s.value(
            "registry_http_request_duration_seconds_count",
            &[("handler", handler), ("method", method)],
        );
        assert_eq!(timed, counted, "{handler} {method}");
        assert!(counted >= 1.0, "{handler} {method}");
    }
    assert_eq!(
        s.value(
            "registry_http_response_size_bytes_sum",
            &[("handler", "blob")]
        ),
        bytes as f64,
        "blob GETs sent the blobs"
    );
    // The blob byte counters are the image's blobs, once each way.
    assert_eq!(
        s.value("dockyard_blob_bytes_total", &[("direction", "received")]),
        bytes as f64
    );
    assert_eq!(
        s.value("dockyard_blob_bytes_total", &[("direction", "sent")]),
        bytes as f64
    );
    assert_eq!(s.value("dockyard_uploads_in_progress", &[]), 0.0);
    assert_eq!(s.sum("registry_http_in_flight_requests", &[]), 0.0);
    // The filesystem driver's actions were timed under registry:2's action names.
    for action in [
        "PutContent",
        "GetContent",
        "Stat",
        "Move",
        "Writer",
        "Reader",
    ] {
        let count = s.value(
            "registry_storage_action_seconds_count",
            &[("action", action), ("driver", "filesystem")],
        );
        assert!(count >= 1.0, "{action}: {count}");
    }
}

#[test]
fn names_shared_with_registry2_are_distributions_with_its_labels() {
    let dir = TempDir::new().unwrap();
    let mut scrapes = Vec::new();
    for target in [Target::Distribution, Target::Dockyard] {
        let debug = free_addr();
        let server = server_with_metrics(target, &debug);
        let work = dir.path().join(format!("{target:?}"));
        push_and_pull(&server, &work);
        scrapes.push(Scrape::settled(&debug));
    }
    let (distribution, dockyard) = (&scrapes[0], &scrapes[1]);
    let (theirs, ours) = (distribution.families(), dockyard.families());
    for name in SHARED_WITH_REGISTRY2 {
        let expected = theirs
            .get(*name)
            .unwrap_or_else(|| panic!("distribution 2.8.2 does not export {name}: {theirs:#?}"));
        let got = ours
            .get(*name)
            .unwrap_or_else(|| panic!("Dockyard does not export {name}: {ours:#?}"));
        assert_eq!(got, expected, "labels of {name}");
    }
    // The same client traffic is counted under the same handlers, methods and codes.
    assert_eq!(dockyard.requests(), distribution.requests());
}
