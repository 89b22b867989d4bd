//! Layout: phone width, dark mode, keyboard.

use super::*;

/// Relative luminance (WCAG) of a computed `rgb(...)`/`rgba(...)` colour.
fn luminance(css: &str) -> f64 {
    let inner = css
        .trim_start_matches("rgba(")
        .trim_start_matches("rgb(")
        .trim_end_matches(')');
    let parts: Vec<f64> = inner
        .split(',')
        .map(|p| p.trim().parse().unwrap_or(0.0))
        .collect();
    let lin = |c: f64| {
        let c = c / 255.0;
        if c <= 0.03928 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * lin(parts[0]) + 0.7152 * lin(parts[1]) + 0.0722 * lin(parts[2])
}

/// The page background (the body's, or the root's when the body is transparent) and text colour.
fn colours(b: &Browser) -> (String, String) {
    let v = b.eval(
        "const t = c => c === 'rgba(0, 0, 0, 0)' || c === 'transparent';
         let bg = getComputedStyle(document.body).backgroundColor;
         if (t(bg)) bg = getComputedStyle(document.documentElement).backgroundColor;
         if (t(bg)) bg = 'rgb(255, 255, 255)';
         return [bg, getComputedStyle(document.body).color, getComputedStyle(document.querySelector('main') || document.body).color]",
        vec![],
    );
    (js_str(&v[0]), js_str(&v[1]))
}

fn contrast(a: f64, b: f64) -> f64 {
    (a.max(b) + 0.05) / (a.min(b) + 0.05)
}

#[test]
fn pages_fit_a_phone_and_stay_legible_in_dark_mode() {
    let server = dockyard();
    let images = a_repo(&server);
    let delete = format!("/r/a.repo/-/{}/delete", images.v2.manifest_digest);
    let referrer = format!("/r/a.repo/-/{}", images.referrer);
    let pages = [
        "/",
        "/r/a.repo",
        "/r/a.repo/-/v1",
        "/r/a.repo/-/multi",
        &referrer,
        "/r/a.repo/-/v1/untag",
        &delete,
    ];

    // Every problem on every page, reported together.
    let mut problems = Vec::new();
    let mut phone = Browser::start_phone("phone");
    for path in pages {
        phone.goto(&url(&server, path));
        phone.screenshot(path);
        let v = phone.eval(
            "return [document.scrollingElement.scrollWidth, window.innerWidth]",
            vec![],
        );
        let (scroll, inner) = (v[0].as_i64().unwrap(), v[1].as_i64().unwrap());
        // Mobile chromium widens the layout viewport to fit content wider than the screen.
        if inner != 390 {
            problems.push(format!(
                "phone {path}: laid out {inner} px wide on a 390 px screen (content wider \
                 than the screen, or no viewport meta); scrollWidth {scroll}"
            ));
        } else if scroll > inner {
            problems.push(format!(
                "phone {path}: horizontal overflow: scrollWidth {scroll} > innerWidth {inner}"
            ));
        }
    }
    // The pull command is still on screen on a phone (not clipped away).
    phone.goto(&url(&server, "/r/a.repo"));
    let visible = phone.eval(
        "const r = document.querySelector('code.pull-command').getBoundingClientRect(); \
         return r.width > 0 && r.left >= 0 && r.right <= innerWidth + 1",
        vec![],
    );
    if visible != json!(true) {
        problems.push("phone /r/a.repo: the pull command is off screen".into());
    }
    drop(phone);

    // Light first (the default), then the browser's dark mode.
    let light = Browser::start("light");
    light.goto(&url(&server, "/r/a.repo/-/v1"));
    let (bg, fg) = colours(&light);
    if !(luminance(&bg) > 0.5 && luminance(&fg) < 0.3) {
        problems.push(format!("light mode: background {bg}, text {fg}"));
    }
    drop(light);
    let mut dark = Browser::with(
        "dark",
        BrowserOptions {
            dark: true,
            ..Default::default()
        },
    );
    for path in pages {
        dark.goto(&url(&server, path));
        dark.screenshot(path);
        let (bg, fg) = colours(&dark);
        let (lb, lf) = (luminance(&bg), luminance(&fg));
        if lb >= 0.2 || lf <= 0.4 || contrast(lb, lf) < 4.5 {
            problems.push(format!(
                "dark {path}: background {bg}, text {fg}: contrast {:.1}",
                contrast(lb, lf)
            ));
        }
        // Links, cells, code and headings too (WCAG's 3:1 at least).
        let v = dark.eval(
            "return Array.from(document.querySelectorAll('main a, main td, main th, main code, main h1, main button'))
               .filter(e => e.innerText.trim() !== '').slice(0, 60)
               .map(e => [e.tagName + '.' + e.className + ' ' + e.innerText.trim().slice(0, 20), getComputedStyle(e).color])",
            vec![],
        );
        for pair in v.as_array().unwrap() {
            let (what, colour) = (js_str(&pair[0]), js_str(&pair[1]));
            let c = contrast(lb, luminance(&colour));
            if c < 3.0 {
                problems.push(format!(
                    "dark {path}: {what:?} is {colour} on {bg}: contrast {c:.1}"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn keyboard_reaches_search_then_the_first_repository() {
    let server = dockyard();
    let tmp = TempDir::new().unwrap();
    let layout = tmp.path().join("layout");
    let image = small_image(&layout, "k");
    for repo in ["kb/first", "kb/second", "kb/third"] {
        push_raw(&server, None, &layout, &image, repo, "v1");
    }
    let mut b = Browser::start("keyboard");
    b.goto(&url(&server, "/"));
    let mut seen = Vec::new();
    for _ in 0..12 {
        b.tab(1);
        let v = b.eval(
            "const e = document.activeElement; return [e.id, e.tagName, e.className, e.getAttribute('href') || '']",
            vec![],
        );
        let what = format!(
            "{}#{}.{}[{}]",
            js_str(&v[1]),
            js_str(&v[0]),
            js_str(&v[2]),
            js_str(&v[3])
        );
        seen.push(what.clone());
        if js_str(&v[2]).split(' ').any(|c| c == "repo") {
            break;
        }
    }
    b.screenshot("focus-first-repo");
    let search = seen
        .iter()
        .position(|s| s.contains("#search."))
        .unwrap_or_else(|| panic!("Tab never reached #search: {seen:?}"));
    let repo = seen
        .iter()
        .position(|s| s.contains(".repo["))
        .unwrap_or_else(|| panic!("Tab never reached a repository: {seen:?}"));
    assert!(
        search < repo,
        "the search box comes before the list: {seen:?}"
    );
    assert!(
        seen[repo].ends_with("[/r/kb/first]"),
        "the first repository link first: {seen:?}"
    );
    assert!(
        repo - search <= 2,
        "only the search button between the box and the list: {seen:?}"
    );
    // The focus is visible (an outline or a box shadow).
    let styled = b.eval(
        "const s = getComputedStyle(document.activeElement); return s.outlineStyle !== 'none' && s.outlineWidth !== '0px' || s.boxShadow !== 'none'",
        vec![],
    );
    assert_eq!(styled, json!(true), "no visible focus on the focused link");
    // Enter opens it.
    b.press("\u{E007}");
    b.wait_until("the repository page", WAIT, |b| {
        b.try_text("#repository").as_deref() == Some("kb/first")
    });
    b.screenshot("opened-by-keyboard");
}
