//! The HTTP API's metrics, recorded by one middleware around the router: registry:2's
//! `registry_http_*` (the names, labels, buckets and handler names distribution's go-metrics
//! instrumentation gives them) and Dockyard's blob traffic (`dockyard_blob_bytes_total`,
//! `dockyard_uploads_in_progress`). `serve` adds it when `http.debug.prometheus.enabled`.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// An API endpoint, under the route name registry:2 labels its metrics with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    Base,
    Catalog,
    Tags,
    Manifest,
    Blob,
    /// `/v2/<name>/blobs/uploads/`: starting an upload.
    BlobUpload,
    /// `/v2/<name>/blobs/uploads/<id>`: a session's chunks, completion, status, cancel.
    BlobUploadChunk,
    /// Dockyard's (registry:2 2.8 has no referrers API).
    Referrers,
}

const HANDLERS: [Handler; 8] = [
    Handler::Base,
    Handler::Catalog,
    Handler::Tags,
    Handler::Manifest,
    Handler::Blob,
    Handler::BlobUpload,
    Handler::BlobUploadChunk,
    Handler::Referrers,
];

impl Handler {
    pub fn name(self) -> &'static str {
        match self {
            Handler::Base => "base",
            Handler::Catalog => "catalog",
            Handler::Tags => "tags",
            Handler::Manifest => "manifest",
            Handler::Blob => "blob",
            Handler::BlobUpload => "blob_upload",
            Handler::BlobUploadChunk => "blob_upload_chunk",
            Handler::Referrers => "referrers",
        }
    }

    /// The endpoint a request path addresses, by its shape only (names and references are
    /// validated later, by [`crate::oci::path`]); `None` outside the API, as registry:2 counts
    /// only requests its router matched.
    pub fn for_path(path: &str) -> Option<Handler> {
        let rest = path.strip_prefix("/v2")?;
        if rest.is_empty() || rest == "/" {
            return Some(Handler::Base);
        }
        let rest = rest.strip_prefix('/')?;
        if rest == "_catalog" {
            return Some(Handler::Catalog);
        }
        if rest.ends_with("/tags/list") {
            return Some(Handler::Tags);
        }
        if rest.ends_with("/blobs/uploads/") || rest.ends_with("/blobs/uploads") {
            return Some(Handler::BlobUpload);
        }
        let (head, _last) = rest.rsplit_once('/')?;
        let (head, kind) = head.rsplit_once('/')?;
        match kind {
            "manifests" => Some(Handler::Manifest),
            "blobs" => Some(Handler::Blob),
            "referrers" => Some(Handler::Referrers),
            "uploads" if head.ends_with("/blobs") => Some(Handler::BlobUploadChunk),
            _ => None,
        }
    }

    /// Whether a request of this handler with `method` carries blob data in.
    fn uploads(self, method: &Method) -> bool {
        matches!(self, Handler::BlobUpload | Handler::BlobUploadChunk)
            && matches!(*method, Method::POST | Method::PATCH | Method::PUT)
    }
}

/// The method as Prometheus's Go client labels it: lowercase, `unknown` for the unusual.
const METHODS: [&str; 11] = [
    "get", "head", "put", "post", "patch", "delete", "options", "connect", "trace", "notify",
    "unknown",
];

fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::PUT => 2,
        Method::POST => 3,
        Method::PATCH => 4,
        Method::DELETE => 5,
        Method::OPTIONS => 6,
        Method::CONNECT => 7,
        Method::TRACE => 8,
        _ if method.as_str() == "NOTIFY" => 9,
        _ => 10,
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    code: u16,
    handler: &'static str,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandlerMethodLabels {
    handler: &'static str,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandlerLabels {
    handler: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    /// `received` (pushed blob data) or `sent` (blob data served).
    direction: &'static str,
}

/// registry:2's request duration buckets (go-metrics' defaults).
fn duration_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 60.0,
    ])
}

/// registry:2's size buckets: 1 KiB to 4 GiB, doubling.
fn size_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1024.0, 2.0, 22))
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The server's HTTP metrics. Per-handler series are looked up once, then kept.
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    durations: HistogramFamily<HandlerMethodLabels>,
    request_sizes: HistogramFamily<HandlerLabels>,
    response_sizes: HistogramFamily<HandlerLabels>,
    in_flight: [Gauge; HANDLERS.len()],
    duration_of: [[OnceLock<Histogram>; METHODS.len()]; HANDLERS.len()],
    request_size_of: [OnceLock<Histogram>; HANDLERS.len()],
    response_size_of: [OnceLock<Histogram>; HANDLERS.len()],
    blob_bytes_received: Counter,
    blob_bytes_sent: Counter,
    uploads_in_progress: Gauge,
}

impl HttpMetrics {
    /// The metrics, registered in `registry`.
    pub fn new(registry: &mut Registry) -> HttpMetrics {
        let in_flight_family = Family::<HandlerLabels, Gauge>::default();
        let blob_bytes = Family::<DirectionLabels, Counter>::default();
        let metrics = HttpMetrics {
            requests: Family::default(),
            durations: Family::new_with_constructor(duration_histogram),
            request_sizes: Family::new_with_constructor(size_histogram),
            response_sizes: Family::new_with_constructor(size_histogram),
            in_flight: HANDLERS.map(|h| {
                in_flight_family.get_or_create_owned(&HandlerLabels { handler: h.name() })
            }),
            duration_of: Default::default(),
            request_size_of: Default::default(),
            response_size_of: Default::default(),
            blob_bytes_received: blob_bytes.get_or_create_owned(&DirectionLabels {
                direction: "received",
            }),
            blob_bytes_sent: blob_bytes.get_or_create_owned(&DirectionLabels { direction: "sent" }),
            uploads_in_progress: Gauge::default(),
        };
        let http = registry.sub_registry_with_prefix("registry_http");
        http.register(
            "requests",
            "Total number of HTTP requests made.",
            metrics.requests.clone(),
        );
        http.register(
            "request_duration_seconds",
            "The HTTP request latencies in seconds.",
            metrics.durations.clone(),
        );
        http.register(
            "request_size_bytes",
            "The HTTP request sizes in bytes.",
            metrics.request_sizes.clone(),
        );
        http.register(
            "response_size_bytes",
            "The HTTP response sizes in bytes.",
            metrics.response_sizes.clone(),
        );
        http.register(
            "in_flight_requests",
            "The in-flight HTTP requests",
            in_flight_family,
        );
        let dockyard = registry.sub_registry_with_prefix("dockyard");
        dockyard.register(
            "blob_bytes",
            "Bytes of blob data received (pushes) and sent (pulls)",
            blob_bytes,
        );
        dockyard.register(
            "uploads_in_progress",
            "Blob upload requests receiving data now",
            metrics.uploads_in_progress.clone(),
        );
        metrics
    }

    fn duration(&self, handler: Handler, method: usize) -> &Histogram {
        self.duration_of[handler as usize][method].get_or_init(|| {
            self.durations.get_or_create_owned(&HandlerMethodLabels {
                handler: handler.name(),
                method: METHODS[method],
            })
        })
    }

    fn size(
        family: &HistogramFamily<HandlerLabels>,
        slot: &OnceLock<Histogram>,
        handler: Handler,
    ) -> Histogram {
        slot.get_or_init(|| {
            family.get_or_create_owned(&HandlerLabels {
                handler: handler.name(),
            })
        })
        .clone()
    }
}

/// `router` with every API request measured into `metrics`.
pub fn instrument(router: Router, metrics: Arc<HttpMetrics>) -> Router {
    router.layer(middleware::from_fn_with_state(metrics, measure))
}

async fn measure(State(metrics): State<Arc<HttpMetrics>>, req: Request, next: Next) -> Response {
    let Some(handler) = Handler::for_path(req.uri().path()) else {
        return next.run(req).await;
    };
    let method = method_index(req.method());
    let started = Instant::now();
    metrics.in_flight[handler as usize].inc();
    let request_size = approximate_size(&req);
    HttpMetrics::size(
        &metrics.request_sizes,
        &metrics.request_size_of[handler as usize],
        handler,
    )
    .observe(request_size as f64);
    let uploading = handler.uploads(req.method());
    let req = if uploading {
        metrics.uploads_in_progress.inc();
        let received = metrics.blob_bytes_received.clone();
        req.map(|body| Body::new(Counted { body, received }))
    } else {
        req
    };
    let sends_blob = handler == Handler::Blob && *req.method() == Method::GET;
    let resp = next.run(req).await;
    let finish = Finish {
        metrics,
        handler,
        method,
        code: resp.status().as_u16(),
        started,
        uploading,
        sends_blob,
        sent: 0,
    };
    if hyper::body::Body::is_end_stream(resp.body()) {
        return resp;
    }
    resp.map(|body| {
        Body::new(Measured {
            body,
            finish: Some(finish),
        })
    })
}

/// The request's size as Prometheus's Go client approximates it: the request line and
/// headers as sent, plus the declared body length.
fn approximate_size(req: &Request) -> usize {
    let headers: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    let body = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .unwrap_or(0);
    let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    req.method().as_str().len() + target + headers + body
}

/// What is recorded once a response has been sent, or abandoned (when this is dropped).
struct Finish {
    metrics: Arc<HttpMetrics>,
    handler: Handler,
    method: usize,
    code: u16,
    started: Instant,
    uploading: bool,
    sends_blob: bool,
    sent: u64,
}

impl Drop for Finish {
    fn drop(&mut self) {
        let m = &self.metrics;
        let h = self.handler as usize;
        m.duration(self.handler, self.method)
            .observe(self.started.elapsed().as_secs_f64());
        m.requests
            .get_or_create(&RequestLabels {
                code: self.code,
                handler: self.handler.name(),
                method: METHODS[self.method],
            })
            .inc();
        HttpMetrics::size(&m.response_sizes, &m.response_size_of[h], self.handler)
            .observe(self.sent as f64);
        m.in_flight[h].dec();
        if self.uploading {
            m.uploads_in_progress.dec();
        }
    }
}

/// A response body that counts what it sends and records its request when done with.
struct Measured {
    body: Body,
    finish: Option<Finish>,
}

impl hyper::body::Body for Measured {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(finish)) = (frame.data_ref(), this.finish.as_mut()) {
                    let n = data.len() as u64;
                    finish.sent += n;
                    if finish.sends_blob {
                        finish.metrics.blob_bytes_sent.inc_by(n);
                    }
                }
            }
            Poll::Ready(_) => this.finish = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request body that counts the blob bytes it delivers.
struct Counted {
    body: Body,
    received: Counter,
}

impl hyper::body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.received.inc_by(data.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests;
