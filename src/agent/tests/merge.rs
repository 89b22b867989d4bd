//! The daemon.json merge: whole expected files, values that were already there, invalid
//! JSON, and a property test that merging then removing (two merges: values, then the
//! emptied keys Dockyard created) gives the original back.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use crate::agent::docker::DockerRecord;
use crate::agent::merge_daemon_json;

fn want(pairs: &[(&str, &str)]) -> BTreeMap<String, BTreeSet<String>> {
    let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (k, v) in pairs {
        m.entry((*k).into()).or_default().insert((*v).into());
    }
    m
}

const USER: &str = "{\n    \"log-level\": \"warn\",\n    \"insecure-registries\": [\n        \"old.example:5000\"\n    ],\n    \"data-root\": \"/srv/docker\"\n}\n";

#[test]
fn values_are_merged_into_the_users_file_keeping_its_keys_order_and_layout() {
    let wanted = want(&[
        ("registry-mirrors", "http://10.96.0.50:5000"),
        ("insecure-registries", "10.96.0.50:5000"),
    ]);
    let edit = merge_daemon_json(Some(USER), &DockerRecord::default(), &wanted).unwrap();
    let merged = edit.text.clone().unwrap();
    assert_eq!(
        merged,
        "{\n    \"log-level\": \"warn\",\n    \"insecure-registries\": [\n        \"old.example:5000\",\n        \"10.96.0.50:5000\"\n    ],\n    \"data-root\": \"/srv/docker\",\n    \"registry-mirrors\": [\"http://10.96.0.50:5000\"]\n}\n"
    );
    assert!(edit.problems.is_empty());
    // Merging again changes nothing.
    let again = merge_daemon_json(Some(&merged), &edit.record, &wanted).unwrap();
    assert_eq!(again.text.as_deref(), Some(merged.as_str()));
    assert_eq!(again.record, edit.record);
    assert!(!again.values_changed);
    // Wanting nothing any more: the values go at once (a key Dockyard created stays empty,
    // so that dockerd's reload clears it), then the key, giving back the user's bytes.
    let emptied = merge_daemon_json(Some(&merged), &edit.record, &BTreeMap::new()).unwrap();
    assert!(emptied.values_changed);
    let text = emptied.text.unwrap();
    assert_eq!(
        text,
        USER.replace(
            "\"/srv/docker\"\n",
            "\"/srv/docker\",\n    \"registry-mirrors\": []\n"
        )
    );
    let removed = merge_daemon_json(Some(&text), &emptied.record, &BTreeMap::new()).unwrap();
    assert!(!removed.values_changed);
    assert_eq!(removed.text.as_deref(), Some(USER));
    assert_eq!(removed.record, DockerRecord::default());
}

#[test]
fn a_value_already_there_is_neither_added_nor_ever_removed() {
    let wanted = want(&[("insecure-registries", "old.example:5000")]);
    let edit = merge_daemon_json(Some(USER), &DockerRecord::default(), &wanted).unwrap();
    assert_eq!(edit.text.as_deref(), Some(USER));
    assert!(edit.record.added.is_empty());
    let removed = merge_daemon_json(Some(USER), &edit.record, &BTreeMap::new()).unwrap();
    assert_eq!(removed.text.as_deref(), Some(USER));
}

#[test]
fn a_file_dockyard_created_goes_again_and_broken_json_is_never_overwritten() {
    let wanted = want(&[("registry-mirrors", "https://m:5000")]);
    let edit = merge_daemon_json(None, &DockerRecord::default(), &wanted).unwrap();
    assert_eq!(
        edit.text.as_deref(),
        Some("{\"registry-mirrors\": [\"https://m:5000\"]}\n")
    );
    assert!(edit.record.created_file);
    let emptied = merge_daemon_json(edit.text.as_deref(), &edit.record, &BTreeMap::new()).unwrap();
    assert_eq!(
        emptied.text.as_deref(),
        Some("{\"registry-mirrors\": []}\n")
    );
    let removed =
        merge_daemon_json(emptied.text.as_deref(), &emptied.record, &BTreeMap::new()).unwrap();
    assert_eq!(removed.text, None);

    for broken in ["{\"debug\": true,}", "[1]", "{\"a\": 1", "\"x\""] {
        let e = merge_daemon_json(Some(broken), &DockerRecord::default(), &wanted).unwrap_err();
        assert!(e.contains("daemon.json is not"), "{e}");
    }
    let e = merge_daemon_json(
        Some("{\"registry-mirrors\": \"x\"}"),
        &DockerRecord::default(),
        &wanted,
    )
    .unwrap();
    assert_eq!(e.text.as_deref(), Some("{\"registry-mirrors\": \"x\"}"));
    assert!(e.problems[0].2.contains("is not a list of strings"));
}

#[test]
fn dockerd_flags_that_daemon_json_must_not_repeat_are_found() {
    let args: Vec<String> = [
        "/usr/bin/dockerd",
        "-H",
        "fd://",
        "--registry-mirror=https://m.example",
        "--insecure-registry",
        "10.0.0.1:5000",
        "--config-file",
        "/etc/docker/other.json",
    ]
    .map(String::from)
    .into();
    let flags = crate::agent::docker::DockerdFlags::parse(&args);
    assert_eq!(
        flags.keys.keys().collect::<Vec<_>>(),
        ["insecure-registries", "registry-mirrors"]
    );
    assert_eq!(flags.config_file.as_deref(), Some("/etc/docker/other.json"));
    assert_eq!(
        crate::agent::docker::DockerdFlags::parse(&["dockerd".to_owned()]),
        Default::default()
    );

    // A key dockerd has as a flag is left out of daemon.json and the owner is told.
    let mut node = super::node(Some("{}"));
    node.docker.as_mut().unwrap().flag_keys = flags.keys;
    let e = super::mirror(
        "RegistryMirror/ns/hub",
        "docker.io",
        "http://10.0.0.1:5000",
        false,
    );
    let r = crate::agent::render(&[e], &node);
    assert!(r.daemon_json.is_empty(), "{:?}", r.daemon_json);
    let problems = &r.problems["RegistryMirror/ns/hub"];
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("dockerd runs with --registry-mirror")),
        "{problems:?}"
    );
}

/// A JSON object text in one of several layouts, with arbitrary members (some of them the
/// keys Dockyard edits).
fn daemon_json() -> impl Strategy<Value = String> {
    let scalar = prop_oneof![
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i32>().prop_map(|i| i.to_string()),
        "[a-z/:.\\\\\"é ]{0,12}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        Just("null".to_owned()),
    ];
    let value = prop_oneof![
        scalar.clone(),
        prop::collection::vec(scalar, 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
        prop::collection::vec("[a-z0-9.:/]{1,10}", 0..4).prop_map(|v| {
            let items: Vec<String> = v
                .iter()
                .map(|s| serde_json::to_string(s).unwrap())
                .collect();
            format!("[\n    {}\n  ]", items.join(",\n    "))
        }),
    ];
    let key = prop_oneof![
        Just("registry-mirrors".to_owned()),
        Just("insecure-registries".to_owned()),
        "[a-z-]{1,8}",
    ];
    let layout = prop_oneof![
        Just(("{", ", ", "}")),
        Just(("{\n  ", ",\n  ", "\n}\n")),
        Just(("{ ", ",", " }"))
    ];
    (prop::collection::btree_map(key, value, 0..5), layout).prop_map(
        |(members, (open, sep, close))| {
            let items: Vec<String> = members
                .iter()
                .map(|(k, v)| format!("{}: {v}", serde_json::to_string(k).unwrap()))
                .collect();
            format!("{open}{}{close}", items.join(sep))
        },
    )
}

proptest! {
    #[test]
    fn merging_then_removing_gives_the_original_back(
        original in daemon_json(),
        mirrors in prop::collection::btree_set("https://[a-z]{1,5}:50[0-9]{2}", 0..3),
        insecure in prop::collection::btree_set("[a-z]{1,5}:50[0-9]{2}", 0..3),
    ) {
        let mut wanted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        if !mirrors.is_empty() { wanted.insert("registry-mirrors".into(), mirrors); }
        if !insecure.is_empty() { wanted.insert("insecure-registries".into(), insecure); }
        let merged = merge_daemon_json(Some(&original), &DockerRecord::default(), &wanted).unwrap();
        let text = merged.text.clone().unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        // Every wanted value is there (unless the key is not a list, which is reported).
        for (key, values) in &wanted {
            let strings = value.get(key).and_then(|v| v.as_array()).filter(|l| l.iter().all(|x| x.is_string()));
            match strings {
                Some(list) => for v in values {
                    prop_assert!(list.iter().any(|x| x.as_str() == Some(v.as_str())), "{v} missing in {text}");
                },
                None => prop_assert!(!merged.problems.is_empty()),
            }
        }
        // Every other member is unchanged.
        let before: serde_json::Value = serde_json::from_str(&original).unwrap();
        for (k, v) in before.as_object().unwrap() {
            if !wanted.contains_key(k) {
                prop_assert_eq!(value.get(k), Some(v));
            }
        }
        let emptied = merge_daemon_json(Some(&text), &merged.record, &BTreeMap::new()).unwrap();
        let emptied_text = emptied.text.unwrap();
        let removed = merge_daemon_json(Some(&emptied_text), &emptied.record, &BTreeMap::new()).unwrap();
        let back = removed.text.unwrap();
        prop_assert_eq!(serde_json::from_str::<serde_json::Value>(&back).unwrap(), before);
        if merged.record.added.is_empty() {
            prop_assert_eq!(&text, &original);
        }
        // Text edits only ever append and cut what they added: the bytes come back too.
        prop_assert_eq!(back, original);
    }
}
