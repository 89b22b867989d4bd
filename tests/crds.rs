//! `crds/` must be exactly what `dockyard crd` prints, so the manifests users install match
//! the code's types and CEL rules.

use std::process::Command;

#[test]
fn crds_directory_is_generated_from_the_code() {
    let out = Command::new(env!("CARGO_BIN_EXE_dockyard"))
        .arg("crd")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated = String::from_utf8(out.stdout).unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/dockyard.dev.yaml");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        generated == committed,
        "crds/dockyard.dev.yaml is stale: regenerate it with `cargo run -- crd > crds/dockyard.dev.yaml`"
    );
    assert!(
        generated.contains("kind: Registry"),
        "the Registry CRD is missing"
    );
}
