//! Reading pages: list and search, a repository's tags, a manifest; headers; hostile text.

use axum::http::StatusCode;

use super::support::{CSP, OCI_INDEX, OCI_MANIFEST, Ui};

#[tokio::test]
async fn every_ui_response_carries_the_csp_and_no_cors() {
    let ui = Ui::new(false).await;
    ui.image("app", &["v1"]).await;
    for uri in [
        "/",
        "/?q=app",
        "/-/search?q=a",
        "/r/app",
        "/r/app/-/v1",
        "/r/missing",
        "/-/login",
        "/-/static/app.css",
        "/-/static/app.js",
    ] {
        let r = ui.get(uri).await;
        assert_eq!(r.header("content-security-policy"), CSP, "{uri}");
        assert_eq!(r.header("x-content-type-options"), "nosniff", "{uri}");
        assert_eq!(r.header("referrer-policy"), "same-origin", "{uri}");
        assert_eq!(r.header("access-control-allow-origin"), "", "{uri}");
    }
    let page = ui.get("/").await;
    assert!(!page.has("<script>"), "no inline scripts");
    assert!(!page.has("style="), "no inline styles");
    let version = page.body.split("/-/static/app.js?v=").nth(1).unwrap();
    let version = &version[..version.find('"').unwrap()];
    let js = ui.get(&format!("/-/static/app.js?v={version}")).await;
    assert_eq!(js.status, StatusCode::OK);
    assert!(js.header("cache-control").contains("max-age=31536000"));
    assert!(js.header("content-type").starts_with("text/javascript"));
    assert_eq!(
        ui.get("/-/static/other.js").await.status,
        StatusCode::NOT_FOUND
    );
    // The API is untouched.
    let v2 = ui.get("/v2/").await;
    assert_eq!(v2.status, StatusCode::OK);
    assert_eq!(v2.header("content-security-policy"), "");
}

#[tokio::test]
async fn the_list_searches_by_substring_and_pages_by_fifty() {
    let ui = Ui::new(false).await;
    ui.image("team/web", &["1"]).await;
    ui.image("team/api", &["1"]).await;
    ui.image("tools/web-proxy", &["1"]).await;
    let r = ui.get("/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.has(r#"<p id="result-count">3 repositories</p>"#),
        "{}",
        r.body
    );
    assert!(r.has(r#"<li><a class="repo" href="/r/team/api">team/api</a></li>"#));
    assert!(r.has(r#"<form id="search-form" action="/" method="get""#));
    assert!(r.has(r#"<input id="search" name="q" type="search""#));
    let r = ui.get("/?q=WEB").await;
    assert!(r.has("2 repositories"), "{}", r.body);
    assert!(r.has("tools/web-proxy") && r.has(">team/web<") && !r.has(">team/api<"));
    let f = ui.get("/-/search?q=api").await;
    assert!(
        f.body.trim_start().starts_with(r#"<section id="results""#),
        "{}",
        f.body
    );
    assert!(f.has(">team/api<") && !f.has("<html"));
    let none = ui.get("/?q=zzz").await;
    assert!(none.has(r#"<p id="no-results">"#));
    for i in 0..55 {
        ui.image(&format!("many/r{i:02}"), &["t"]).await;
    }
    let first = ui.get("/?q=many").await;
    assert!(first.has("55 repositories"));
    assert_eq!(first.body.matches(r#"class="repo""#).count(), 50);
    assert!(
        first.has(r#"<a id="next-page" rel="next" href="/?q=many&#38;page=2">"#),
        "{}",
        first.body
    );
    assert!(!first.has("prev-page"));
    let second = ui.get("/?q=many&page=2").await;
    assert_eq!(second.body.matches(r#"class="repo""#).count(), 5);
    assert!(second.has(r#"id="prev-page" rel="prev""#) && !second.has("next-page"));
}

#[tokio::test]
async fn a_repository_page_summarises_each_tag() {
    let ui = Ui::new(false).await;
    let digest = ui.image("team/app", &["v1", "latest"]).await;
    let r = ui.get("/r/team/app").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.has(r#"<h1 id="repository">team/app</h1>"#));
    assert!(r.has(r#"<tr class="tag" data-tag="latest">"#));
    assert!(
        r.has(r#"<td class="tag-name" data-label="Tag"><a href="/r/team/app/-/v1">v1</a></td>"#)
    );
    assert!(r.has(&format!(r#"title="{digest}">{digest}</td>"#)));
    assert!(r.has(r#"<time datetime="2024-05-01T12:34:56Z">2024-05-01 12:34 UTC</time>"#));
    assert!(r.has(r#"<td class="platforms" data-label="Platforms">linux/amd64</td>"#));
    // The pull command names the host the browser used, as does the copy button.
    assert!(r.has(r#"<code class="pull-command">registry.test:5000/team/app:v1</code>"#));
    assert!(
        r.has(r#"<button class="copy" type="button" data-copy="registry.test:5000/team/app:v1""#)
    );
    let proxied = ui
        .get_as(
            "/r/team/app",
            &[("x-forwarded-host", "registry.example.com")],
        )
        .await;
    assert!(proxied.has(r#"<code class="pull-command">registry.example.com/team/app:v1</code>"#));
    assert_eq!(
        ui.get("/r/team/nothing").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn hostile_labels_annotations_and_tags_render_as_text() {
    let ui = Ui::new(true).await;
    let evil = "<script>alert(1)</script>";
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Labels":{{"x":"{evil}"}},"Env":["A=\"><img src=x onerror=alert(1)>"]}}}}"#
    );
    let c = ui.blob("app", config.as_bytes()).await;
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{c}","size":{}}},"layers":[],"annotations":{{"{evil}":"{evil}"}}}}"#,
        config.len()
    );
    ui.manifest("app", &["v1", "x-_.A9"], &manifest).await;
    let r = ui.get("/r/app/-/v1").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!r.has(evil), "{}", r.body);
    assert!(!r.has("<img src=x"), "{}", r.body);
    assert!(
        r.has("&#60;script&#62;alert(1)&#60;/script&#62;")
            || r.has("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        r.body
    );
    assert!(r.has(r#"<tr class="label"><th scope="row">x</th>"#));
    assert!(r.has(r#"<section id="annotations""#) && r.has(r#"<tr class="annotation">"#));
    let r = ui.get("/?q=%3Cscript%3E").await;
    assert!(!r.has(evil), "the query is echoed as text");
}

#[tokio::test]
async fn a_manifest_page_shows_config_layers_and_referrers() {
    let ui = Ui::new(false).await;
    let config = r#"{"created":"2024-05-01T12:34:56Z","architecture":"arm64","os":"linux","variant":"v8","config":{"Entrypoint":["/bin/app"],"Cmd":["--serve"],"Env":["PATH=/bin"]},"history":[{"created_by":"COPY app /bin/app"}]}"#;
    let image = ui.image_with("app", &["v1"], config, b"layer-bytes").await;
    // A signature-like artifact whose subject is the image: no image config.
    let empty = ui.blob("app", b"{}").await;
    let sig = ui.blob("app", b"signature").await;
    let artifact = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"application/vnd.example.sig","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{empty}","size":2}},"layers":[{{"mediaType":"application/octet-stream","digest":"{sig}","size":9}}],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{image}","size":1}}}}"#
    );
    let artifact = ui.manifest("app", &[], &artifact).await;
    let r = ui.get("/r/app/-/v1").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.has(r#"<h1 id="reference">v1</h1>"#));
    assert!(r.has(&format!(r#"<code id="digest">{image}</code>"#)));
    assert!(r.has(r#"<section id="config""#));
    assert!(
        r.has(r#"<code id="entrypoint">[&#34;/bin/app&#34;]</code>"#)
            || r.has(r#"<code id="entrypoint">[&quot;/bin/app&quot;]</code>"#),
        "{}",
        r.body
    );
    assert!(r.has(r#"<ul id="env">"#) && r.has("<code>PATH=/bin</code>"));
    assert!(r.has(r#"<ol id="history">"#) && r.has("COPY app /bin/app"));
    assert!(
        r.has(r#"<tr class="layer">"#)
            && r.has(r#"<td class="media-type">application/vnd.oci.image.layer.v1.tar+gzip</td>"#)
    );
    assert!(
        r.has(r#"<tr class="referrer"><td class="artifact-type">application/vnd.example.sig</td>"#),
        "{}",
        r.body
    );
    assert!(r.has(&format!(r#"href="/r/app/-/{artifact}""#)));
    // The artifact's own page renders without an image config.
    let a = ui.get(&format!("/r/app/-/{artifact}")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(!a.has(r#"id="config""#));
    assert!(a.has(r#"<dd id="artifact-type">application/vnd.example.sig</dd>"#));
    assert!(
        a.has(&format!(r#"<a href="/r/app/-/{image}">{image}</a>"#)),
        "links its subject"
    );
    assert_eq!(ui.get("/r/app/-/v2").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_index_shows_its_platforms_and_total_size() {
    let ui = Ui::new(false).await;
    let amd = ui
        .image_with(
            "multi",
            &[],
            r#"{"created":"2024-01-01T00:00:00Z","architecture":"amd64","os":"linux"}"#,
            &[1; 1000],
        )
        .await;
    let arm = ui
        .image_with("multi", &[], r#"{"created":"2024-02-01T00:00:00Z","architecture":"arm64","os":"linux","variant":"v8"}"#, &[2; 2000])
        .await;
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
        {{"mediaType":"{OCI_MANIFEST}","digest":"{amd}","size":400,"platform":{{"architecture":"amd64","os":"linux"}}}},
        {{"mediaType":"{OCI_MANIFEST}","digest":"{arm}","size":400,"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}}]}}"#
    );
    ui.manifest("multi", &["latest"], &index).await;
    let r = ui.get("/r/multi").await;
    assert!(
        r.has(r#"<td class="platforms" data-label="Platforms">linux/amd64, linux/arm64/v8</td>"#),
        "{}",
        r.body
    );
    // Children's configs (about 70 bytes each) and layers (1000 and 2000 bytes).
    let bytes: u64 = r
        .body
        .split(r#"data-bytes=""#)
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((3100..3200).contains(&bytes), "{bytes}");
    assert!(r.has("2024-02-01 00:00 UTC"), "the newest child's time");
    let m = ui.get("/r/multi/-/latest").await;
    assert!(m.has(r#"<table id="platforms">"#));
    assert!(
        m.has(r#"<tr class="platform"><td class="platform">linux/arm64/v8</td>"#),
        "{}",
        m.body
    );
    assert!(m.has(&format!(r#"<a href="/r/multi/-/{arm}">"#)));
    let child = ui.get(&format!("/r/multi/-/{arm}")).await;
    assert_eq!(child.status, StatusCode::OK);
}

#[tokio::test]
async fn the_ui_can_be_turned_off() {
    let ui = Ui::build(false, None, None, false).await;
    ui.image("app", &["v1"]).await;
    assert_eq!(ui.get("/").await.status, StatusCode::NOT_FOUND);
    assert_eq!(ui.get("/r/app").await.status, StatusCode::NOT_FOUND);
    assert_eq!(ui.get("/v2/app/tags/list").await.status, StatusCode::OK);
    let env = [("REGISTRY_UI_ENABLED".to_owned(), "false".to_owned())];
    let loaded = crate::config::Config::parse("", env).unwrap();
    assert!(!loaded.config.ui.enabled());
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let loaded = crate::config::Config::parse("ui:\n  enabled: true\n", []).unwrap();
    assert!(loaded.config.ui.enabled() && loaded.warnings.is_empty());
    assert!(
        crate::config::Config::parse("", [])
            .unwrap()
            .config
            .ui
            .enabled()
    );
}
