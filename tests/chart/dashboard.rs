//! The Grafana dashboard ConfigMap: rendered only when asked, labelled for Grafana's sidecar,
//! valid JSON, and querying only metrics `dockyard serve` exports.

use super::*;

use std::collections::BTreeSet;

use dockyard::metrics::EXPORTED;

/// Every PromQL expression of the dashboard: panel targets (rows' panels too) and variables.
fn expressions(dashboard: &serde_json::Value) -> Vec<String> {
    fn panels(list: &serde_json::Value, out: &mut Vec<String>) {
        for panel in list.as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                out.push(target["expr"].as_str().expect("a target's expr").to_owned());
            }
            panels(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    panels(&dashboard["panels"], &mut out);
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(query) = variable["definition"].as_str() {
            out.push(query.to_owned());
        }
    }
    out
}

/// The metric families an expression names (a histogram's, not its `_bucket` series).
fn metrics_in(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| word.starts_with("registry_") || word.starts_with("dockyard_"))
        .map(|word| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| word.strip_suffix(suffix))
                .unwrap_or(word)
                .to_owned()
        })
        .collect()
}

#[test]
fn chart_renders_a_grafana_dashboard_of_exported_metrics_only_when_asked() {
    let dashboard_of = |docs: &[Value]| {
        docs.iter()
            .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "dockyard-dashboard")
            .cloned()
    };
    assert!(
        dashboard_of(&documents(&render(&[]))).is_none(),
        "off by default"
    );

    let docs = documents(&render(&[
        "metrics.dashboard.enabled=true",
        "metrics.dashboard.namespace=monitoring",
        "metrics.dashboard.annotations.grafana_folder=Registries",
    ]));
    let config_map = dashboard_of(&docs).expect("the dashboard ConfigMap");
    let metadata = &config_map["metadata"];
    assert_eq!(metadata["labels"]["grafana_dashboard"], "1");
    assert_eq!(metadata["namespace"], "monitoring");
    assert_eq!(metadata["annotations"]["grafana_folder"], "Registries");
    let text = config_map["data"]["dockyard-registry.json"]
        .as_str()
        .expect("the dashboard JSON");
    let dashboard: serde_json::Value = serde_json::from_str(text).expect("the dashboard parses");
    assert_eq!(dashboard["uid"], "dockyard-registry");

    let exprs = expressions(&dashboard);
    let mut queried = BTreeSet::new();
    for expr in &exprs {
        let names = metrics_in(expr);
        assert!(!names.is_empty(), "{expr} queries no Dockyard metric");
        for name in names {
            assert!(
                EXPORTED.contains(&name.as_str()),
                "{expr} queries {name}, which Dockyard does not export"
            );
            queried.insert(name);
        }
    }
    for wanted in [
        "registry_http_requests_total",
        "registry_http_request_duration_seconds",
        "registry_http_in_flight_requests",
        "registry_storage_action_seconds",
        "dockyard_blob_bytes_total",
        "dockyard_uploads_in_progress",
        "dockyard_gc_runs_total",
        "dockyard_gc_freed_bytes_total",
    ] {
        assert!(queried.contains(wanted), "no panel shows {wanted}");
    }
}
