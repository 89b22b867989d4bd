//! A real browser for the UI tests: Debian's `chromium` (headless) driven over W3C WebDriver by
//! Debian's `chromium-driver` (`chromedriver`), through the `fantoccini` crate. Each
//! [`Browser`] starts its own chromedriver on a free loopback port (`--port=0`; it prints the
//! port it took), one headless chromium session with a temp profile, and stops both by PID when
//! dropped (chromium's processes are found as chromedriver's descendants in `/proc`).
//!
//! The API is blocking (a private current-thread tokio runtime drives fantoccini), like the rest
//! of the testkit. Screenshots go to `$DOCKYARD_ARTIFACTS/ui/` (default `target/artifacts/ui/`),
//! named `<test>-<NN>-<step>.png`, and stay after the run; when a test panics with a browser
//! open, the drop saves a `failure` screenshot, the page's HTML and the browser console log there.

use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tempfile::TempDir;

mod driver;
use driver::{Method, Raw, descendants, sanitize, start_chromedriver, strings};

/// The desktop window (CSS pixels).
pub const DESKTOP: (u32, u32) = (1280, 900);
/// A phone's viewport: an iPhone 12-14's CSS width.
pub const PHONE: (u32, u32) = (390, 844);

/// How to start a [`Browser`].
#[derive(Debug, Clone)]
pub struct BrowserOptions {
    pub width: u32,
    pub height: u32,
    /// Emulate `prefers-color-scheme: dark` (DevTools' media emulation, for the whole session).
    pub dark: bool,
    /// Emulate a phone (mobile viewport with touch and device-pixel ratio 3).
    pub mobile: bool,
}

impl Default for BrowserOptions {
    fn default() -> Self {
        BrowserOptions {
            width: DESKTOP.0,
            height: DESKTOP.1,
            dark: false,
            mobile: false,
        }
    }
}

/// Where screenshots and failure logs go: `$DOCKYARD_ARTIFACTS/ui`, else `<repo>/target/artifacts/ui`.
pub fn artifacts_dir() -> PathBuf {
    let base = std::env::var_os("DOCKYARD_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::repo().join("target/artifacts"));
    let dir = base.join("ui");
    std::fs::create_dir_all(&dir).expect("create the artifacts dir");
    dir
}

/// True when `chromium` and `chromedriver` are installed (tests/setup.sh installs them).
pub fn available() -> bool {
    crate::cmd::find_tool("chromium").is_some() && crate::cmd::find_tool("chromedriver").is_some()
}

/// A headless chromium session; everything stops when dropped.
pub struct Browser {
    rt: tokio::runtime::Runtime,
    client: Option<Client>,
    driver: Option<Child>,
    driver_log: PathBuf,
    _profile: TempDir,
    test: String,
    step: u32,
}

impl Browser {
    /// A desktop-sized browser for test `test` (the screenshots' name prefix).
    pub fn start(test: &str) -> Browser {
        Browser::with(test, BrowserOptions::default())
    }

    /// A phone-sized browser (390x844, mobile emulation).
    pub fn start_phone(test: &str) -> Browser {
        Browser::with(
            test,
            BrowserOptions {
                width: PHONE.0,
                height: PHONE.1,
                mobile: true,
                ..BrowserOptions::default()
            },
        )
    }

    pub fn with(test: &str, options: BrowserOptions) -> Browser {
        let profile = tempfile::Builder::new()
            .prefix("dockyard-chromium-")
            .tempdir()
            .expect("temp profile dir");
        let driver_log = profile.path().join("chromedriver.log");
        let (driver, port) = start_chromedriver(&driver_log);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let mut browser = Browser {
            rt,
            client: None,
            driver: Some(driver),
            driver_log,
            _profile: tempfile::TempDir::new().unwrap(),
            test: sanitize(test),
            step: 0,
        };
        // A failure's files from an earlier run of this test would mislead.
        let dir = artifacts_dir();
        for suffix in ["failure.png", "failure.html", "failure-console.json"] {
            let _ = std::fs::remove_file(dir.join(format!("{}-{suffix}", browser.test)));
        }
        let user_data = profile.path().join("profile");
        browser._profile = profile;
        let mut args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".to_string(),
            "--disable-gpu".to_string(),
            "--disable-dev-shm-usage".to_string(),
            "--no-first-run".to_string(),
            "--no-default-browser-check".to_string(),
            "--disable-extensions".to_string(),
            "--disable-background-networking".to_string(),
            "--disable-sync".to_string(),
            "--disable-component-update".to_string(),
            "--disable-features=Translate,MediaRouter,OptimizationHints".to_string(),
            "--hide-scrollbars".to_string(),
            format!("--user-data-dir={}", user_data.display()),
            format!("--window-size={},{}", options.width, options.height),
        ];
        if options.dark {
            args.push("--force-dark-mode".to_string());
        }
        let mut chrome = json!({
            "binary": crate::cmd::tool("chromium").display().to_string(),
            "args": args,
        });
        if options.mobile {
            chrome["mobileEmulation"] = json!({
                "deviceMetrics": {"width": options.width, "height": options.height, "pixelRatio": 3.0, "touch": true},
                "userAgent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Mobile Safari/537.36",
            });
        }
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert("goog:chromeOptions".into(), chrome);
        caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        caps.insert("unhandledPromptBehavior".into(), json!("ignore"));
        let url = format!("http://127.0.0.1:{port}");
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = browser
            .rt
            .block_on(
                ClientBuilder::new(connector)
                    .capabilities(caps)
                    .connect(&url),
            )
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start a chromium session: {e}\n--- chromedriver log ---\n{}",
                    std::fs::read_to_string(&browser.driver_log).unwrap_or_default()
                )
            });
        browser.client = Some(client);
        if !options.mobile {
            // --window-size sets the outer window; make the viewport itself the size asked for.
            browser.set_viewport(options.width, options.height);
        }
        if options.dark {
            browser.emulate_color_scheme("dark");
        }
        browser
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("browser session is open")
    }

    fn block<T>(
        &self,
        what: &str,
        f: impl std::future::Future<Output = Result<T, fantoccini::error::CmdError>>,
    ) -> T {
        self.rt
            .block_on(f)
            .unwrap_or_else(|e| panic!("browser: {what}: {e}"))
    }

    /// Resizes the window so that the layout viewport (`innerWidth` x `innerHeight`) is exactly
    /// `width` x `height`.
    pub fn set_viewport(&self, width: u32, height: u32) {
        let client = self.client();
        self.block("resize window", client.set_window_size(width, height));
        let inner = self.eval("return [window.innerWidth, window.innerHeight]", vec![]);
        let (iw, ih) = (
            inner[0].as_i64().unwrap_or(0),
            inner[1].as_i64().unwrap_or(0),
        );
        let (w, h) = (
            (i64::from(width) * 2 - iw).max(1) as u32,
            (i64::from(height) * 2 - ih).max(1) as u32,
        );
        if (iw, ih) != (i64::from(width), i64::from(height)) {
            self.block("resize window", client.set_window_size(w, h));
        }
    }

    /// Loads `url` and waits for the document to be complete.
    pub fn goto(&self, url: &str) {
        self.block(&format!("goto {url}"), self.client().goto(url));
    }

    /// The current URL.
    pub fn url(&self) -> String {
        self.block("current url", self.client().current_url())
            .to_string()
    }

    /// The page title.
    pub fn title(&self) -> String {
        self.block("title", self.client().title())
    }

    /// The page's HTML as the browser has it now.
    pub fn source(&self) -> String {
        self.block("page source", self.client().source())
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) in the page and returns its value.
    /// WebDriver's script injection is not subject to the page's Content-Security-Policy.
    pub fn eval(&self, script: &str, args: Vec<Value>) -> Value {
        self.block(
            &format!("execute {script}"),
            self.client().execute(script, args),
        )
    }

    /// Runs an async `script` whose last argument is the callback that returns its value.
    pub fn eval_async(&self, script: &str, args: Vec<Value>) -> Value {
        self.block(
            &format!("execute_async {script}"),
            self.client().execute_async(script, args),
        )
    }

    /// Whether an element matches `css`.
    pub fn exists(&self, css: &str) -> bool {
        self.eval(
            "return document.querySelector(arguments[0]) !== null",
            vec![json!(css)],
        )
        .as_bool()
        .unwrap_or(false)
    }

    /// How many elements match `css`.
    pub fn count(&self, css: &str) -> usize {
        self.eval(
            "return document.querySelectorAll(arguments[0]).length",
            vec![json!(css)],
        )
        .as_u64()
        .unwrap_or(0) as usize
    }

    /// The rendered text (`innerText`, trimmed) of the first element matching `css`; panics
    /// (with the page's URL) when none does.
    pub fn text(&self, css: &str) -> String {
        self.try_text(css)
            .unwrap_or_else(|| panic!("no element {css} on {}", self.url()))
    }

    /// [`Browser::text`], or None when nothing matches.
    pub fn try_text(&self, css: &str) -> Option<String> {
        let value = self.eval(
            "const e = document.querySelector(arguments[0]); return e === null ? null : e.innerText.trim()",
            vec![json!(css)],
        );
        value.as_str().map(str::to_string)
    }

    /// The rendered texts of every element matching `css`, in document order.
    pub fn texts(&self, css: &str) -> Vec<String> {
        let value = self.eval(
            "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.innerText.trim())",
            vec![json!(css)],
        );
        strings(&value)
    }

    /// The attribute `name` of every element matching `css`.
    pub fn attrs(&self, css: &str, name: &str) -> Vec<Option<String>> {
        let value = self.eval(
            "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.getAttribute(arguments[1]))",
            vec![json!(css), json!(name)],
        );
        value
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| v.as_str().map(str::to_string))
            .collect()
    }

    /// The attribute `name` of the first element matching `css` (None: no element or attribute).
    pub fn attr(&self, css: &str, name: &str) -> Option<String> {
        self.attrs(css, name).into_iter().next().flatten()
    }

    /// Clicks the first element matching `css` (a real WebDriver click: it scrolls the element
    /// into view and fails when something else covers it).
    pub fn click(&self, css: &str) {
        let client = self.client();
        let element = self.block(&format!("find {css}"), client.find(Locator::Css(css)));
        self.block(&format!("click {css}"), element.click());
    }

    /// Types `text` into the first element matching `css` (real key events).
    pub fn type_into(&self, css: &str, text: &str) {
        let client = self.client();
        let element = self.block(&format!("find {css}"), client.find(Locator::Css(css)));
        self.block(&format!("type into {css}"), element.send_keys(text));
    }

    /// Empties the text field matching `css`.
    pub fn clear(&self, css: &str) {
        let client = self.client();
        let element = self.block(&format!("find {css}"), client.find(Locator::Css(css)));
        self.block(&format!("clear {css}"), element.clear());
    }

    /// Sends keys to whatever has focus (`"\u{E004}"` is Tab, `"\u{E007}"` Enter).
    pub fn press(&self, keys: &str) {
        let client = self.client();
        let element = self.block("active element", client.active_element());
        self.block("send keys", element.send_keys(keys));
    }

    /// Presses Tab `times` times through the WebDriver actions API (from the document).
    pub fn tab(&self, times: usize) {
        use fantoccini::actions::{InputSource, KeyAction, KeyActions};
        let mut keys = KeyActions::new("keyboard".to_string());
        for _ in 0..times {
            keys = keys
                .then(KeyAction::Down { value: '\u{E004}' })
                .then(KeyAction::Up { value: '\u{E004}' });
        }
        self.block("tab", self.client().perform_actions(keys));
    }

    /// Waits (up to `timeout`) until `ready` holds, polling every 50 ms; panics with `what`.
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut ready: impl FnMut(&Browser) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            if ready(self) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "browser: timed out after {timeout:?} waiting for {what} on {}",
                self.url()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Marks the current document (a window property), so a later [`Browser::same_document`]
    /// tells whether a navigation happened in between.
    pub fn mark_document(&self) {
        self.eval("window.__dockyardTestMark = 'kept'; return null", vec![]);
    }

    /// True when the document marked by [`Browser::mark_document`] is still the one shown.
    pub fn same_document(&self) -> bool {
        self.eval("return window.__dockyardTestMark === 'kept'", vec![])
            .as_bool()
            .unwrap_or(false)
    }

    /// Saves a PNG of the viewport as `<artifacts>/ui/<test>-<NN>-<step>.png` and returns its path.
    pub fn screenshot(&mut self, step: &str) -> PathBuf {
        self.step += 1;
        let path = artifacts_dir().join(format!(
            "{}-{:02}-{}.png",
            self.test,
            self.step,
            sanitize(step)
        ));
        let png = self.block("screenshot", self.client().screenshot());
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// Sends a DevTools command through chromedriver (`goog/cdp/execute`) and returns its result.
    pub fn cdp(&self, command: &str, params: Value) -> Value {
        self.raw(
            Method::Post,
            "goog/cdp/execute",
            Some(json!({"cmd": command, "params": params})),
        )
    }

    /// Emulates `prefers-color-scheme: <scheme>` for the pages of this session.
    pub fn emulate_color_scheme(&self, scheme: &str) {
        self.cdp(
            "Emulation.setEmulatedMedia",
            json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]}),
        );
    }

    /// Grants `origin` (`http://127.0.0.1:PORT`) clipboard read and write (DevTools'
    /// `Browser.grantPermissions`), so a test can read what a Copy button put there.
    pub fn grant_clipboard(&self, origin: &str) {
        self.cdp(
            "Browser.grantPermissions",
            json!({"origin": origin, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]}),
        );
    }

    /// The clipboard's text (after [`Browser::grant_clipboard`]); Err with the page's error.
    pub fn clipboard_text(&self) -> Result<String, String> {
        let value = self.eval_async(
            "const done = arguments[arguments.length - 1];
             navigator.clipboard.readText().then(t => done({ok: t}), e => done({err: String(e)}));",
            vec![],
        );
        match (value["ok"].as_str(), value["err"].as_str()) {
            (Some(text), _) => Ok(text.to_string()),
            (_, Some(err)) => Err(err.to_string()),
            _ => Err(format!("unexpected answer {value}")),
        }
    }

    /// The browser console's entries since the last call (chromedriver's `se/log`), as
    /// `LEVEL message` lines.
    pub fn console_log(&self) -> Vec<String> {
        let value = self.raw(Method::Post, "se/log", Some(json!({"type": "browser"})));
        value
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                format!(
                    "{} {}",
                    e["level"].as_str().unwrap_or("?"),
                    e["message"].as_str().unwrap_or_default()
                )
            })
            .collect()
    }

    fn raw(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let cmd = Raw {
            method,
            path: path.to_string(),
            body,
        };
        self.block(path, self.client().issue_cmd(cmd))
    }

    fn save_failure(&mut self) {
        let dir = artifacts_dir();
        if let Some(client) = self.client.as_ref() {
            let png = self.rt.block_on(client.screenshot());
            if let Ok(png) = png {
                let path = dir.join(format!("{}-failure.png", self.test));
                let _ = std::fs::write(&path, png);
                eprintln!("browser: failure screenshot {}", path.display());
            }
            let url = self
                .rt
                .block_on(client.current_url())
                .map(|u| u.to_string())
                .unwrap_or_default();
            if let Ok(html) = self.rt.block_on(client.source()) {
                let _ = std::fs::write(dir.join(format!("{}-failure.html", self.test)), html);
            }
            let cmd = Raw {
                method: Method::Post,
                path: "se/log".into(),
                body: Some(json!({"type": "browser"})),
            };
            let log = match self.rt.block_on(client.issue_cmd(cmd)) {
                Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_default(),
                Err(e) => format!("(no console log: {e})"),
            };
            eprintln!("browser: at {url}; console log:\n{log}");
            let _ = std::fs::write(dir.join(format!("{}-failure-console.json", self.test)), log);
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.save_failure();
        }
        if let Some(client) = self.client.take() {
            // Ends the session: chromedriver quits chromium. Bounded, as a hung browser must
            // not hang the test.
            let _ = self.rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), client.close()).await
            });
        }
        if let Some(mut driver) = self.driver.take() {
            let pid = driver.id();
            // Whatever chromedriver started and is still alive (chromium and its helpers).
            let mut left = descendants(pid);
            left.reverse();
            for child in left {
                crate::server::signal(child, "KILL");
            }
            let _ = driver.kill();
            let _ = driver.wait();
        }
    }
}
