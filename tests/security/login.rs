//! Logging in as users see it: bcrypt variants ($2a$, $2b$, $2y$) accepted; failed logins
//! limited in cost, never locking out the right password (behind one NAT address, or during a
//! flood from many addresses); unknown users taking as long as wrong passwords;
//! htpasswd changes picked up without a restart, whether the file is renamed over or swapped
//! through symlinks the way a Kubernetes Secret volume does it, and a malformed file keeping
//! the previous users; `dockyard htpasswd` writing lines apache2-utils verifies; and startup
//! refused with the line number for MD5, SHA1 and plain-text lines.

use std::fs;
use std::io::Write;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::common::server::signal;
use super::common::{Server, Target, http};
use super::fixture::{
    Htpasswd, assert_challenge, auth_server, basic, bcrypt_line, describe, dockyard_only, get,
    lines,
};

/// The status `GET /v2/` answers with these credentials.
fn login(server: &Server, user: &str, password: &str) -> u16 {
    get(server, "/v2/", Some(&basic(user, password))).status
}

/// Polls `login` every 500 ms (at most ten failed logins, under the rate limit) for up to
/// 5 s until it answers `want`; returns how long that took.
fn wait_for_login(server: &Server, user: &str, password: &str, want: u16) -> Duration {
    let start = Instant::now();
    loop {
        let got = login(server, user, password);
        if got == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{user} still gets {got}, not {want}, 5 s after the htpasswd change"
        );
        thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn bcrypt_variants_2a_2b_and_2y_all_log_in() {
    let line = bcrypt_line("u2y", "pass-y");
    let hash = line.split_once(':').unwrap().1;
    let contents = format!(
        "{line}\nu2a:{}\nu2b:{}\n",
        hash.replacen("$2y$", "$2a$", 1),
        hash.replacen("$2y$", "$2b$", 1)
    );
    let users = Htpasswd::new(&[]);
    users.replace(&contents);
    let server = auth_server(&users.path, &[]);
    for user in ["u2y", "u2a", "u2b"] {
        assert_eq!(login(&server, user, "pass-y"), 200, "{user}");
    }
    let resp = get(&server, "/v2/", Some(&basic("u2a", "pass-Y")));
    assert_challenge(&resp, false, "u2a with a wrong password");
}

/// `GET /v2/` with Basic credentials from `source` (a 127.0.0.0/8 address): the status
/// and how long the answer took.
fn login_from(server: &Server, source: Ipv4Addr, user: &str, password: &str) -> (u16, Duration) {
    let started = Instant::now();
    let mut stream = http::connect_from(&server.addr, source).unwrap();
    http::write_head(
        &mut stream,
        &server.addr,
        "GET",
        "/v2/",
        &[("Authorization", &basic(user, password))],
        None,
    )
    .unwrap();
    let resp = http::read_response(&mut stream, false).unwrap();
    (resp.status, started.elapsed())
}

#[test]
fn failed_logins_never_lock_out_the_right_password() {
    let users = Htpasswd::new(&[("alice", "alice-pass"), ("bob", "bob-pass")]);
    let server = auth_server(&users.path, &[]);
    if dockyard_only(server.target, "bounded cost of failed logins") {
        return;
    }
    // Everyone behind one NAT address: an attacker's failures first...
    let nat = Ipv4Addr::new(127, 0, 0, 1);
    for attempt in 1..=14 {
        let (status, _) = login_from(&server, nat, "alice", &format!("guess{attempt}"));
        assert!(matches!(status, 401 | 429), "guess {attempt}: {status}");
    }
    // ...then the right passwords from the same address, for the user being guessed at and for
    // another one, both logging in for the first time: both get in, after at most a short wait.
    for (user, password) in [("alice", "alice-pass"), ("bob", "bob-pass")] {
        let (status, took) = login_from(&server, nat, user, password);
        assert_eq!(
            status, 200,
            "{user} after 14 failures (the budget spent) from the same address"
        );
        assert!(took < Duration::from_secs(5), "{user} waited {took:?}");
        let resp = get(
            &server,
            "/v2/any/repo/tags/list",
            Some(&basic(user, password)),
        );
        assert_ne!(resp.status, 429, "{user}: {}", describe(&resp));
    }
}

#[test]
fn unknown_users_and_wrong_passwords_take_the_same_time() {
    // htpasswd -B writes cost 5: the check of an unknown user must cost the same, not more.
    let users = Htpasswd::new(&[("alice", "alice-pass")]);
    let server = auth_server(&users.path, &[]);
    if dockyard_only(server.target, "login timing") {
        return;
    }
    let median = |user: &str, first: u8| {
        let mut times: Vec<Duration> = (0..9u8)
            .map(|i| {
                let source = Ipv4Addr::new(127, 0, 1, first + i);
                let (status, took) = login_from(&server, source, user, &format!("wrong{i}"));
                assert_eq!(status, 401, "{user}");
                took
            })
            .collect();
        times.sort();
        times[times.len() / 2]
    };
    let (unknown, wrong) = (median("mallory", 10), median("alice", 30));
    let ratio = unknown.as_secs_f64() / wrong.as_secs_f64();
    assert!(
        (0.5..=2.0).contains(&ratio),
        "unknown user {unknown:?} vs wrong password {wrong:?}: a timing oracle for user names"
    );
}

#[test]
fn a_first_login_during_a_flood_of_bad_logins_from_many_addresses_gets_in() {
    let users = Htpasswd::new(&[("alice", "alice-pass")]);
    let server = auth_server(&users.path, &[]);
    if dockyard_only(server.target, "fair bcrypt scheduling") {
        return;
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood: Vec<_> = (0..32u8)
        .map(|i| {
            let (addr, stop) = (server.addr.clone(), stop.clone());
            thread::spawn(move || {
                let source = Ipv4Addr::new(127, 0, 2, 10 + i);
                let mut n = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let Ok(mut stream) = http::connect_from(&addr, source) else {
                        continue;
                    };
                    let creds = basic(&format!("user{n}"), "guess");
                    let _ = http::write_head(
                        &mut stream,
                        &addr,
                        "GET",
                        "/v2/",
                        &[("Authorization", &creds)],
                        None,
                    );
                    let _ = http::read_response(&mut stream, false);
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    let (status, took) = login_from(&server, Ipv4Addr::new(127, 0, 3, 1), "alice", "alice-pass");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in flood {
        let _ = t.join();
    }
    assert_eq!(status, 200);
    assert!(
        took < Duration::from_secs(5),
        "first login during the flood took {took:?}"
    );
}

#[test]
fn htpasswd_changes_apply_without_restart_and_a_malformed_file_keeps_the_users() {
    let users = Htpasswd::new(&[("alice", "alice-pass")]);
    let server = auth_server(&users.path, &[]);
    let pid = server.pid();
    assert_eq!(login(&server, "alice", "alice-pass"), 200);
    assert_eq!(login(&server, "bob", "bob-pass"), 401);

    users.replace(&lines(&[("alice", "alice-pass"), ("bob", "bob-pass")]));
    let took = wait_for_login(&server, "bob", "bob-pass", 200);
    eprintln!("a new user could log in {took:?} after the htpasswd change");
    assert!(took <= Duration::from_millis(2500), "took {took:?}");
    assert_eq!(login(&server, "alice", "alice-pass"), 200);

    if server.target == Target::Distribution {
        eprintln!(
            "note: skipping the malformed-file check: distribution 2.8.2 fails the first \
             request after a malformed htpasswd file"
        );
    } else {
        let alice = lines(&[("alice", "alice-pass")]);
        users.replace(&format!("{alice}this line is not htpasswd\n"));
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            assert_eq!(
                login(&server, "bob", "bob-pass"),
                200,
                "after a malformed file"
            );
            assert_eq!(login(&server, "alice", "alice-pass"), 200);
            thread::sleep(Duration::from_millis(500));
        }
    }

    // A valid file after that still applies: bob is gone.
    users.replace(&lines(&[("alice", "alice-pass")]));
    wait_for_login(&server, "bob", "bob-pass", 401);
    assert_eq!(login(&server, "alice", "alice-pass"), 200);
    assert_eq!(server.pid(), pid, "the server was restarted");
}

/// Points `dir/..data` at a new `dir/<version>/htpasswd` in one rename, like the kubelet.
fn swap_secret(dir: &Path, version: &str, contents: &str) {
    fs::create_dir_all(dir.join(version)).unwrap();
    fs::write(dir.join(version).join("htpasswd"), contents).unwrap();
    let temp = dir.join("..data_tmp");
    symlink(version, &temp).unwrap();
    fs::rename(&temp, dir.join("..data")).unwrap();
}

#[test]
fn htpasswd_from_a_kubernetes_secret_volume_follows_symlink_swaps() {
    let dir = tempfile::Builder::new()
        .prefix("dockyard-secret-")
        .tempdir()
        .unwrap();
    swap_secret(dir.path(), "..v1", &lines(&[("alice", "alice-pass")]));
    symlink("..data/htpasswd", dir.path().join("htpasswd")).unwrap();
    let server = auth_server(&dir.path().join("htpasswd"), &[]);
    assert_eq!(login(&server, "alice", "alice-pass"), 200);

    let both = lines(&[("alice", "alice-pass"), ("bob", "bob-pass")]);
    swap_secret(dir.path(), "..v2", &both);
    fs::remove_dir_all(dir.path().join("..v1")).unwrap();
    let took = wait_for_login(&server, "bob", "bob-pass", 200);
    eprintln!("a new user could log in {took:?} after the Secret update");
    assert_eq!(login(&server, "alice", "alice-pass"), 200);

    swap_secret(dir.path(), "..v3", &lines(&[("bob", "bob-pass")]));
    fs::remove_dir_all(dir.path().join("..v2")).unwrap();
    wait_for_login(&server, "alice", "alice-pass", 401);
    assert_eq!(login(&server, "bob", "bob-pass"), 200);
}

#[test]
fn dockyard_htpasswd_prints_a_line_apache_htpasswd_verifies_and_dockyard_accepts() {
    if dockyard_only(Target::from_env(), "`dockyard htpasswd`") {
        return;
    }
    let password = "s3cret pass:with colon";
    let mut child = Command::new(env!("CARGO_BIN_EXE_dockyard"))
        .args(["htpasswd", "alice", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dockyard htpasswd");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{password}\n").as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}: {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.trim_end_matches('\n');
    assert_eq!(line.lines().count(), 1, "one line expected: {stdout:?}");
    assert!(
        line.starts_with("alice:$2y$") || line.starts_with("alice:$2b$"),
        "not a bcrypt htpasswd line: {line}"
    );

    let users = Htpasswd::new(&[]);
    users.replace(&format!("{line}\n"));
    let file = users.path.display().to_string();
    let verify = |pass: &str| {
        Command::new("htpasswd")
            .args(["-vb", &file, "alice", pass])
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(verify(password), "htpasswd -vb rejects the right password");
    assert!(
        !verify("s3cret pass"),
        "htpasswd -vb accepts a wrong password"
    );

    let server = auth_server(&users.path, &[]);
    assert_eq!(login(&server, "alice", password), 200);
    assert_eq!(login(&server, "alice", &format!("{password}\n")), 401);
}

/// Runs `dockyard serve` with `htpasswd` expecting it to exit; returns status and output.
fn serve_expecting_exit(htpasswd: &Path) -> (std::process::ExitStatus, String) {
    let data = tempfile::TempDir::new().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dockyard"))
        .arg("serve")
        .env("REGISTRY_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", data.path())
        .env("REGISTRY_AUTH", "htpasswd")
        .env("REGISTRY_AUTH_HTPASSWD_REALM", super::fixture::REALM)
        .env("REGISTRY_AUTH_HTPASSWD_PATH", htpasswd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dockyard serve");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            signal(child.id(), "KILL");
            let out = child.wait_with_output().unwrap();
            panic!(
                "dockyard started with a non-bcrypt htpasswd line:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status, text)
}

#[test]
fn md5_sha1_and_plain_htpasswd_lines_refuse_startup_naming_the_line() {
    if dockyard_only(Target::from_env(), "refusing non-bcrypt htpasswd lines") {
        return;
    }
    for (flag, kind) in [("-mbn", "MD5"), ("-sbn", "SHA1"), ("-pbn", "plain text")] {
        let out = Command::new("htpasswd")
            .args([flag, "carol", "carol-pass"])
            .output()
            .unwrap();
        let carol = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(carol.starts_with("carol:"), "htpasswd {flag}: {carol}");
        let users = Htpasswd::new(&[("alice", "a"), ("bob", "b")]);
        let mut contents = fs::read_to_string(&users.path).unwrap();
        contents.push_str(&format!("{carol}\n"));
        users.replace(&contents);
        let (status, output) = serve_expecting_exit(&users.path);
        assert!(!status.success(), "{kind}: exit {status}\n{output}");
        assert!(
            output.contains("line 3"),
            "{kind}: the error does not name line 3:\n{output}"
        );
        assert!(!output.contains("listening"), "{kind}: {output}");
    }
}
