//! The web UI's pages as askama templates (`src/ui/templates`, HTML-escaped, so names, tags,
//! labels and annotations render as text) and the plain view structs they show. Pure:
//! handlers fill the structs, [`render`] turns one into HTML. Formatting helpers (sizes,
//! times, pagination links) live here too.

use std::time::SystemTime;

use askama::Template;

/// What every page shows around its content.
pub(crate) struct Chrome {
    pub(crate) title: String,
    /// Who is signed in.
    pub(crate) user: Option<String>,
    /// Offer to sign in (auth is configured and nobody is).
    pub(crate) sign_in: bool,
    /// Offer to sign out (signed in with the session cookie, not Basic credentials).
    pub(crate) sign_out: bool,
    pub(crate) flash: Option<String>,
    /// The assets' version, for their URLs (they are cached for a year).
    pub(crate) assets: &'static str,
}

/// Renders a page; a template error (there are no fallible filters) becomes a short text.
pub(crate) fn render(page: &impl Template) -> String {
    page.render()
        .unwrap_or_else(|e| format!("<!doctype html><title>Error</title><p>Cannot render: {e}"))
}

/// One page of repository names, with its count and links.
pub(crate) struct Results {
    pub(crate) query: String,
    pub(crate) count_text: String,
    pub(crate) names: Vec<String>,
    pub(crate) prev: Option<String>,
    pub(crate) next: Option<String>,
}

impl Results {
    /// Page `page` (1-based) of `total` matches of `query`, `per_page` at a time.
    pub(crate) fn new(
        query: &str,
        page: usize,
        per_page: usize,
        total: usize,
        names: Vec<String>,
    ) -> Results {
        let link = |n: usize| {
            let mut href = String::from("/?");
            if !query.is_empty() {
                href.push_str(&format!("q={}&", query_encode(query)));
            }
            href.push_str(&format!("page={n}"));
            href
        };
        let noun = if total == 1 {
            "repository"
        } else {
            "repositories"
        };
        let count_text = match query.is_empty() {
            true => format!("{total} {noun}"),
            false => format!("{total} {noun} matching “{query}”"),
        };
        Results {
            query: query.to_owned(),
            count_text,
            names,
            prev: (page > 1).then(|| link(page - 1)),
            next: (page * per_page < total).then(|| link(page + 1)),
        }
    }
}

#[derive(Template)]
#[template(path = "list.html", config = "src/ui/askama.toml")]
pub(crate) struct ListPage<'a> {
    pub(crate) chrome: &'a Chrome,
    pub(crate) results: Results,
    pub(crate) mirror: Option<MirrorView>,
}

/// The search results alone, for instant search.
#[derive(Template)]
#[template(path = "fragment.html", config = "src/ui/askama.toml")]
pub(crate) struct ResultsFragment {
    pub(crate) results: Results,
}

/// What a mirror caches, per upstream. The hit ratios count every repository's requests:
/// `None` (no column either) unless the viewer may pull every repository.
pub(crate) struct MirrorView {
    pub(crate) hit_ratio: Option<String>,
    pub(crate) upstreams: Vec<UpstreamRow>,
}

pub(crate) struct UpstreamRow {
    pub(crate) host: String,
    pub(crate) repositories: usize,
    pub(crate) tags: usize,
    pub(crate) bytes: u64,
    pub(crate) bytes_text: String,
    pub(crate) last_pulled: String,
    pub(crate) hit_ratio: Option<String>,
}

#[derive(Template)]
#[template(path = "repo.html", config = "src/ui/askama.toml")]
pub(crate) struct RepoPage<'a> {
    pub(crate) chrome: &'a Chrome,
    pub(crate) name: String,
    pub(crate) tag_count_text: String,
    pub(crate) tags: Vec<TagRow>,
    pub(crate) can_delete: bool,
    pub(crate) prev: Option<String>,
    pub(crate) next: Option<String>,
}

/// One tag of a repository page.
pub(crate) struct TagRow {
    pub(crate) tag: String,
    /// Empty when the tag's manifest cannot be read.
    pub(crate) digest: String,
    pub(crate) size: String,
    pub(crate) bytes: Option<u64>,
    pub(crate) created: Option<Timestamp>,
    pub(crate) platforms: String,
    pub(crate) pull: String,
}

/// A time as shown (`human`) and as `<time datetime>` (`machine`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Timestamp {
    pub(crate) machine: String,
    pub(crate) human: String,
}

#[derive(Template)]
#[template(path = "manifest.html", config = "src/ui/askama.toml")]
pub(crate) struct ManifestPage<'a> {
    pub(crate) chrome: &'a Chrome,
    pub(crate) name: String,
    /// The tag or digest asked for.
    pub(crate) reference: String,
    /// The tag, when a tag was asked for.
    pub(crate) tag: Option<String>,
    pub(crate) pull: String,
    pub(crate) can_delete: bool,
    pub(crate) d: Detail,
    pub(crate) referrers: Vec<ReferrerRow>,
}

/// What a manifest says, ready to show.
#[derive(Debug, Default)]
pub(crate) struct Detail {
    pub(crate) digest: String,
    pub(crate) media_type: String,
    pub(crate) artifact_type: Option<String>,
    pub(crate) total_size: String,
    pub(crate) subject: Option<String>,
    /// Why something is missing (an unknown type, a config not stored here).
    pub(crate) note: Option<String>,
    pub(crate) platforms: Vec<PlatformRow>,
    pub(crate) config: Option<ConfigView>,
    pub(crate) layers_title: String,
    pub(crate) layers: Vec<LayerRow>,
    pub(crate) annotations: Vec<(String, String)>,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ConfigView {
    pub(crate) platform: Option<String>,
    pub(crate) created: Option<Timestamp>,
    pub(crate) entrypoint: String,
    pub(crate) cmd: String,
    pub(crate) working_dir: Option<String>,
    pub(crate) user: Option<String>,
    pub(crate) env: Vec<String>,
    pub(crate) labels: Vec<(String, String)>,
    pub(crate) history: Vec<HistoryRow>,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct HistoryRow {
    pub(crate) created_by: String,
    pub(crate) created: Option<String>,
    pub(crate) comment: Option<String>,
    pub(crate) empty_layer: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct LayerRow {
    pub(crate) digest: String,
    pub(crate) bytes: u64,
    pub(crate) size: String,
    pub(crate) media_type: String,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PlatformRow {
    pub(crate) platform: String,
    pub(crate) digest: String,
    pub(crate) bytes: u64,
    pub(crate) size: String,
}

pub(crate) struct ReferrerRow {
    pub(crate) artifact_type: String,
    pub(crate) digest: String,
    pub(crate) bytes: u64,
    pub(crate) size: String,
}

#[derive(Template)]
#[template(path = "untag.html", config = "src/ui/askama.toml")]
pub(crate) struct UntagPage<'a> {
    pub(crate) chrome: &'a Chrome,
    pub(crate) name: String,
    pub(crate) tag: String,
    pub(crate) digest: String,
    /// The manifest's other tags, listed.
    pub(crate) others: String,
}

#[derive(Template)]
#[template(path = "delete.html", config = "src/ui/askama.toml")]
pub(crate) struct DeletePage<'a> {
    pub(crate) chrome: &'a Chrome,
    pub(crate) name: String,
    pub(crate) digest: String,
    pub(crate) tags: Vec<String>,
}

#[derive(Template)]
#[template(path = "login.html", config = "src/ui/askama.toml")]
pub(crate) struct LoginPage<'a> {
    pub(crate) chrome: &'a Chrome,
    pub(crate) error: Option<String>,
    /// Where to go after signing in.
    pub(crate) next: String,
    pub(crate) username: String,
}

/// A page that only says something: not found, refused, sign in first.
#[derive(Template)]
#[template(path = "message.html", config = "src/ui/askama.toml")]
pub(crate) struct MessagePage<'a> {
    pub(crate) chrome: &'a Chrome,
    pub(crate) heading: String,
    /// The element id of the message (`not-found`, `denied`, ...).
    pub(crate) id: &'static str,
    pub(crate) text: String,
    pub(crate) sign_in: bool,
}

/// Bytes as people read them, in SI units as the docker CLI shows sizes.
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1000.0;
    let mut unit = 0;
    while value >= 999.95 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// An RFC 3339 time from an image config (`2024-05-01T12:34:56.789Z`) as
/// `2024-05-01 12:34 UTC`; other offsets keep their offset, unparseable text stays as it is.
pub(crate) fn timestamp(rfc3339: &str) -> Timestamp {
    let s = rfc3339.trim();
    let b = s.as_bytes();
    let shaped = b.len() >= 16
        && b[4] == b'-'
        && b[7] == b'-'
        && matches!(b[10], b'T' | b't' | b' ')
        && b[13] == b':'
        && s.is_char_boundary(16);
    let human = if shaped {
        let zone = if s.ends_with(['Z', 'z']) {
            "UTC".to_owned()
        } else {
            let offset = s.rfind(['+', '-']).filter(|&i| i > 16).map(|i| &s[i..]);
            offset.map_or_else(String::new, |o| format!("UTC{o}"))
        };
        format!("{} {} {zone}", &s[..10], &s[11..16])
            .trim_end()
            .to_owned()
    } else {
        s.to_owned()
    };
    Timestamp {
        machine: s.to_owned(),
        human,
    }
}

/// A point in time as `2026-11-29 21:40 UTC`.
pub(crate) fn system_time(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// `hits / (hits + misses)` as a percentage, or a dash before any request.
pub(crate) fn ratio(hits: u64, misses: u64) -> String {
    match hits + misses {
        0 => "—".to_owned(),
        all => format!("{:.0}% ({hits} of {all})", hits as f64 * 100.0 / all as f64),
    }
}

/// Percent-encodes a query parameter value.
pub(crate) fn query_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chrome() -> Chrome {
        Chrome {
            title: "T".into(),
            user: None,
            sign_in: true,
            sign_out: false,
            flash: Some("<b>flash</b>".into()),
            assets: "v1",
        }
    }

    #[test]
    fn sizes_times_and_ratios() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(999), "999 B");
        assert_eq!(human_size(1000), "1.0 kB");
        assert_eq!(human_size(28_567_000), "28.6 MB");
        assert_eq!(human_size(999_999_999), "1.0 GB");
        let t = timestamp("2024-05-01T12:34:56.123456789Z");
        assert_eq!(t.human, "2024-05-01 12:34 UTC");
        assert_eq!(t.machine, "2024-05-01T12:34:56.123456789Z");
        assert_eq!(
            timestamp("2024-05-01T12:34:56+02:00").human,
            "2024-05-01 12:34 UTC+02:00"
        );
        assert_eq!(timestamp("yesterday").human, "yesterday");
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(86_400 * 365 + 3661);
        assert_eq!(system_time(at), "1971-01-01 01:01 UTC");
        assert_eq!(ratio(0, 0), "—");
        assert_eq!(ratio(3, 1), "75% (3 of 4)");
    }

    #[test]
    fn result_pages_link_to_their_neighbours() {
        let r = Results::new("a b&c", 2, 50, 120, vec!["x".into()]);
        assert_eq!(r.prev.as_deref(), Some("/?q=a%20b%26c&page=1"));
        assert_eq!(r.next.as_deref(), Some("/?q=a%20b%26c&page=3"));
        assert_eq!(r.count_text, "120 repositories matching “a b&c”");
        let last = Results::new("", 3, 50, 120, vec![]);
        assert_eq!(last.next, None);
        assert_eq!(last.prev.as_deref(), Some("/?page=2"));
        assert_eq!(
            Results::new("", 1, 50, 1, vec![]).count_text,
            "1 repository"
        );
    }

    #[test]
    fn hostile_text_is_escaped_everywhere_it_is_shown() {
        let chrome = chrome();
        let evil = "<script>alert(1)</script>";
        let page = ManifestPage {
            chrome: &chrome,
            name: "app".into(),
            reference: "\"><img src=x>".into(),
            tag: None,
            pull: "h/app@sha256:1".into(),
            can_delete: false,
            d: Detail {
                digest: "sha256:1".into(),
                config: Some(ConfigView {
                    labels: vec![("evil".into(), evil.into())],
                    env: vec![format!("X={evil}")],
                    ..ConfigView::default()
                }),
                annotations: vec![(evil.into(), evil.into())],
                ..Detail::default()
            },
            referrers: vec![],
        };
        let html = render(&page);
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(!html.contains("<img src=x>"), "{html}");
        assert!(
            html.contains("&#60;script&#62;alert(1)&#60;/script&#62;")
                || html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(!html.contains("<b>flash</b>"));
        assert!(html.contains(r#"<tr class="label"><th scope="row">evil</th>"#));
        assert_eq!(html.matches("<script").count(), 1, "only app.js: {html}");
    }

    #[test]
    fn header_shows_who_is_signed_in_or_how_to_sign_in() {
        let mut c = chrome();
        let page = |c: &Chrome| {
            render(&MessagePage {
                chrome: c,
                heading: "H".into(),
                id: "not-found",
                text: "gone".into(),
                sign_in: false,
            })
        };
        let html = page(&c);
        assert!(html.contains(r#"<a id="sign-in" href="/-/login">"#));
        assert!(html.contains(r#"<p id="not-found">gone</p>"#));
        assert!(html.contains(r#"<meta name="color-scheme" content="light dark">"#));
        c.user = Some("alice".into());
        c.sign_in = false;
        let html = page(&c);
        assert!(html.contains(r#"<span id="user">alice</span>"#));
        assert!(!html.contains("sign-out"), "Basic credentials: no sign-out");
        c.sign_out = true;
        let html = page(&c);
        assert!(html.contains(r#"<button id="sign-out" type="submit">"#));
        assert!(!html.contains("id=\"sign-in\""));
        c.user = None;
        c.sign_in = false;
        assert!(!page(&c).contains("sign-in"));
    }
}
