//! The processes and raw commands behind [`super::Browser`]: chromedriver started on a port
//! it picks, chromium's processes found as its descendants in `/proc`, and the session
//! commands fantoccini has no method for.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use fantoccini::wd::WebDriverCompatibleCommand;
use serde_json::Value;

/// Starts `chromedriver --port=0` and returns it with the port it printed.
pub(super) fn start_chromedriver(log: &std::path::Path) -> (Child, u16) {
    let mut child = Command::new(crate::cmd::tool("chromedriver"))
        .args(["--port=0", "--allowed-ips=", "--log-level=WARNING"])
        .arg(format!("--log-path={}", log.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver (Debian's chromium-driver, installed by tests/setup.sh)");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                let port = rest.trim_end_matches('.').trim().parse::<u16>().ok();
                let _ = tx.send(port);
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Some(port)) => (child, port),
        other => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromedriver did not report its port ({other:?}):\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
    }
}

/// Every descendant of `pid` (children first-level first), from `/proc/*/stat`.
pub(super) fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(p) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid ...: comm may hold spaces and parentheses.
            let Some(after) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
                continue;
            };
            if let Some(ppid) = after.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
                parents.push((p, ppid));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for &(p, pp) in &parents {
            if pp == parent && !out.contains(&p) {
                out.push(p);
                frontier.push(p);
            }
        }
    }
    out
}

pub(super) fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

pub(super) fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| v.as_str().unwrap_or_default().to_string())
        .collect()
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Method {
    Post,
}

/// A session command fantoccini has no method for (chromedriver's extensions).
#[derive(Debug)]
pub(super) struct Raw {
    pub(super) method: Method,
    pub(super) path: String,
    pub(super) body: Option<Value>,
}

impl WebDriverCompatibleCommand for Raw {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        let session = session_id.unwrap_or_default();
        base_url.join(&format!("session/{session}/{}", self.path))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        let method = match self.method {
            Method::Post => http::Method::POST,
        };
        let body = self
            .body
            .as_ref()
            .map(|b| b.to_string())
            .or(Some("{}".into()));
        (method, body)
    }
}
