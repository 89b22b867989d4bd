//! Script injection in names, labels, annotations and the query renders as text.

use super::*;

#[test]
fn script_injection_in_labels_and_annotations_renders_as_text() {
    let server = dockyard();
    let tmp = TempDir::new().unwrap();
    let layout = tmp.path().join("layout");
    let img = "\"><img src=x onerror=\"window.__pwned=1;document.title='pwned'\">";
    let script = "<script>window.__pwned=2;document.title='pwned'</script>";
    let style = "</td></tr></table><style>body{display:none}</style>";
    let image = rich_image(
        &layout,
        "evil",
        &[1000],
        json!({"config": {
            "Labels": {"evil.img": img, "evil.script": script, "<b>key</b>": style},
            "Env": [format!("X={script}")],
            "Entrypoint": [img],
        }}),
        json!({"org.example.evil": script, "org.example.img": img}),
    );
    push_layout(&server, &[], &layout, "evil", "hostile/app:evil");
    push_referrer(&server, None, "hostile/app", &image);

    let mut b = Browser::start("hostile");
    b.goto(&url(&server, "/r/hostile/app/-/evil"));
    let title = b.title();
    b.screenshot("tag-page");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !title.contains("pwned") && !b.title().contains("pwned"),
        "a payload ran: title {:?}",
        b.title()
    );
    assert_eq!(
        b.eval("return typeof window.__pwned", vec![]),
        json!("undefined"),
        "a payload ran"
    );
    assert_eq!(
        b.count("img[onerror], img[src=x]"),
        0,
        "an <img> was injected"
    );
    assert_eq!(
        b.count("main script, main style"),
        0,
        "a <script>/<style> was injected"
    );
    let labels = b.text("#labels");
    for text in [img, script, "<b>key</b>", style] {
        assert!(
            labels.contains(text),
            "label {text:?} not shown verbatim in {labels:?}"
        );
    }
    assert!(b.text("#annotations").contains(script) && b.text("#annotations").contains(img));
    assert!(b.text("#env").contains(&format!("X={script}")));
    // Shown as a JSON array (quotes escaped), but as text: the markup is visible.
    let entrypoint = b.text("#entrypoint");
    assert!(
        entrypoint.contains("<img src=x onerror="),
        "entrypoint: {entrypoint:?}"
    );
    assert_eq!(
        b.eval("return getComputedStyle(document.body).display", vec![]),
        json!("block"),
        "an injected style applied"
    );
    // The repository page and the list too.
    b.goto(&url(&server, "/r/hostile/app"));
    assert_eq!(
        b.eval("return typeof window.__pwned", vec![]),
        json!("undefined")
    );
    b.goto(&url(
        &server,
        "/?q=%3Cscript%3Ewindow.__pwned%3D3%3C%2Fscript%3E",
    ));
    b.screenshot("search-payload");
    assert_eq!(
        b.eval("return typeof window.__pwned", vec![]),
        json!("undefined")
    );
    assert!(
        b.text("#no-results").contains("<script>"),
        "the query is shown as text: {}",
        b.text("#no-results")
    );

    // Even if markup got through, the policy forbids inline script: an inline handler the
    // test injects itself (as a payload would) does not run.
    b.goto(&url(&server, "/"));
    b.eval(
        "const d = document.createElement('div'); d.innerHTML = '<img src=\"data:,x\" onerror=\"window.__pwned=4\">'; document.body.appendChild(d); return null",
        vec![],
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        b.eval("return typeof window.__pwned", vec![]),
        json!("undefined"),
        "CSP let an inline handler run"
    );

    // Security headers on every UI response; no CORS even when asked.
    for path in [
        "/",
        "/?q=a",
        "/-/search?q=a",
        "/r/hostile/app",
        "/r/hostile/app/-/evil",
        "/-/login",
        "/r/nope",
        "/-/static/app.css",
        "/-/static/app.js",
    ] {
        let resp = send(
            &server,
            "GET",
            path,
            None,
            &[("Origin", "http://evil.test")],
            &[],
        );
        assert_eq!(
            resp.header("content-security-policy"),
            Some(CSP),
            "CSP of {path}"
        );
        assert_eq!(
            resp.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(
            resp.header("referrer-policy"),
            Some("same-origin"),
            "{path}"
        );
        assert_eq!(
            resp.header("access-control-allow-origin"),
            None,
            "CORS on {path}"
        );
    }
}
