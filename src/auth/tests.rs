//! Tests of the authenticator: credentials, caching, reload and rate limiting.

use super::*;
use std::time::Instant;

fn basic(user: &str, password: &str) -> Vec<u8> {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
    .into_bytes()
}

fn setup(lines: &[String]) -> (tempfile::TempDir, Authenticator) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("htpasswd");
    std::fs::write(&path, lines.join("\n")).unwrap();
    let auth = Authenticator::load("test".into(), &path, Policy::default()).unwrap();
    (dir, auth)
}

#[tokio::test]
async fn verifies_basic_credentials() {
    let (_dir, auth) = setup(&[htpasswd_line("alice", "secret", 4).unwrap()]);
    let ip = Some("192.0.2.9".parse().unwrap());
    assert_eq!(
        auth.authenticate(Some(&basic("alice", "secret")), ip).await,
        Ok(Identity::User("alice".into()))
    );
    // The cached path gives the same answers.
    assert_eq!(
        auth.authenticate(Some(&basic("alice", "secret")), ip).await,
        Ok(Identity::User("alice".into()))
    );
    assert_eq!(
        auth.authenticate(Some(&basic("alice", "wrong")), ip).await,
        Err(AuthError::Unauthorized)
    );
    assert_eq!(
        auth.authenticate(Some(&basic("mallory", "secret")), ip)
            .await,
        Err(AuthError::Unauthorized)
    );
    assert_eq!(
        auth.authenticate(Some(b"Bearer abc"), ip).await,
        Err(AuthError::Unauthorized)
    );
    assert_eq!(
        auth.authenticate(Some(b"Basic !!!"), ip).await,
        Err(AuthError::Unauthorized)
    );
    assert_eq!(auth.authenticate(None, ip).await, Ok(Identity::Anonymous));
    // Empty Basic credentials (what skopeo sends without a login) are anonymous, not failures.
    for _ in 0..20 {
        assert_eq!(
            auth.authenticate(Some(b"Basic Og=="), ip).await,
            Ok(Identity::Anonymous)
        );
    }
    assert!(
        auth.authenticate(Some(&basic("alice", "secret")), ip)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn password_change_invalidates_the_cache_and_bad_files_keep_old_users() {
    let (dir, auth) = setup(&[htpasswd_line("alice", "old", 4).unwrap()]);
    let path = dir.path().join("htpasswd");
    assert!(
        auth.authenticate(Some(&basic("alice", "old")), None)
            .await
            .is_ok()
    );
    std::fs::write(&path, htpasswd_line("alice", "new", 4).unwrap()).unwrap();
    assert_eq!(auth.reload().unwrap(), 1);
    assert_eq!(
        auth.authenticate(Some(&basic("alice", "old")), None).await,
        Err(AuthError::Unauthorized)
    );
    assert!(
        auth.authenticate(Some(&basic("alice", "new")), None)
            .await
            .is_ok()
    );
    std::fs::write(&path, "alice:$apr1$md5$hash\n").unwrap();
    assert!(auth.reload().unwrap_err().to_string().contains("line 1"));
    assert!(
        auth.authenticate(Some(&basic("alice", "new")), None)
            .await
            .is_ok()
    );
}

/// A small budget so the tests run quickly: 3 runs at once, then one per 200 ms.
const BUDGET: Budget = Budget {
    burst: 3,
    refill: Duration::from_millis(200),
    max_wait: Duration::from_secs(2),
    max_queued: 4096,
};

fn setup_budget(lines: &[String], budget: Budget) -> (tempfile::TempDir, Arc<Authenticator>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("htpasswd");
    std::fs::write(&path, lines.join("\n")).unwrap();
    let auth = Authenticator::with_budget("test".into(), &path, Policy::default(), budget);
    (dir, Arc::new(auth.unwrap()))
}

fn addr(last: u8) -> Option<IpAddr> {
    Some(IpAddr::from([192, 0, 2, last]))
}

#[tokio::test]
async fn failed_logins_never_lock_out_a_right_password() {
    let (_dir, auth) = setup_budget(&[htpasswd_line("alice", "secret", 4).unwrap()], BUDGET);
    let nat = addr(66);
    for i in 0..10 {
        let guess = basic("alice", &format!("guess{i}"));
        let got = auth.authenticate(Some(&guess), nat).await;
        assert!(
            matches!(
                got,
                Err(AuthError::Unauthorized | AuthError::TooManyAttempts { .. })
            ),
            "{got:?}"
        );
    }
    // The budget is spent, yet the right password from the same address gets in after at
    // most one refill interval.
    let started = Instant::now();
    let got = auth
        .authenticate(Some(&basic("alice", "secret")), nat)
        .await;
    assert_eq!(got, Ok(Identity::User("alice".into())));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn simultaneous_failures_from_one_address_stay_within_its_bcrypt_budget() {
    let (_dir, auth) = setup_budget(&[htpasswd_line("alice", "secret", 4).unwrap()], BUDGET);
    let started = Instant::now();
    let attempts = (0..200).map(|i| {
        let auth = auth.clone();
        tokio::spawn(async move {
            let guess = basic("alice", &format!("guess{i}"));
            auth.authenticate(Some(&guess), addr(66)).await
        })
    });
    let answers = futures::future::join_all(attempts).await;
    let elapsed = started.elapsed();
    let throttled = answers
        .iter()
        .filter(|a| matches!(a, Ok(Err(AuthError::TooManyAttempts { .. }))))
        .count();
    assert!(
        answers.iter().all(|a| matches!(
            a,
            Ok(Err(
                AuthError::Unauthorized | AuthError::TooManyAttempts { .. }
            ))
        )),
        "every guess is refused"
    );
    // The burst, plus one per refill interval for as long as they waited.
    let allowed = u64::from(BUDGET.burst) + (elapsed.as_millis() / 200) as u64 + 1;
    assert!(
        auth.bcrypt_runs() <= allowed,
        "{} bcrypt runs for 200 guesses in {elapsed:?}, budget {allowed}",
        auth.bcrypt_runs()
    );
    assert!(throttled >= 150, "{throttled} of 200 answered 429");
    // Another address is not affected.
    let other = auth
        .authenticate(Some(&basic("alice", "secret")), addr(67))
        .await;
    assert_eq!(other, Ok(Identity::User("alice".into())));
}

#[tokio::test]
async fn a_first_login_during_a_flood_from_many_addresses_gets_in() {
    let (_dir, auth) = setup_budget(
        &[htpasswd_line("carol", "secret", 6).unwrap()],
        Budget::default(),
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood: Vec<_> = (0..40u8)
        .map(|a| {
            let (auth, stop) = (auth.clone(), stop.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    let guess = basic(&format!("user{i}"), "guess");
                    let _ = auth.authenticate(Some(&guess), addr(a)).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let got = auth
        .authenticate(Some(&basic("carol", "secret")), addr(200))
        .await;
    let waited = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for f in flood {
        let _ = f.await;
    }
    assert_eq!(got, Ok(Identity::User("carol".into())));
    assert!(
        waited < Duration::from_secs(3),
        "first login took {waited:?}"
    );
}

#[tokio::test]
async fn unknown_users_take_as_long_as_wrong_passwords() {
    // htpasswd -B writes cost 5; the dummy must not be slower or faster than the file.
    let (_dir, auth) = setup_budget(
        &[htpasswd_line("alice", "secret", 8).unwrap()],
        Budget::default(),
    );
    let time = |user: &'static str, salt: u8| {
        let auth = auth.clone();
        async move {
            let started = Instant::now();
            for i in 0..6u8 {
                let creds = basic(user, &format!("wrong{i}"));
                let got = auth.authenticate(Some(&creds), addr(salt + i)).await;
                assert_eq!(got, Err(AuthError::Unauthorized));
            }
            started.elapsed()
        }
    };
    let unknown = time("mallory", 10).await;
    let wrong = time("alice", 20).await;
    let ratio = unknown.as_secs_f64() / wrong.as_secs_f64();
    assert!(
        (0.5..2.0).contains(&ratio),
        "unknown user {unknown:?} vs wrong password {wrong:?}"
    );
}

#[tokio::test]
async fn a_repeated_wrong_password_costs_no_more_bcrypt_until_the_file_changes() {
    let (dir, auth) = setup_budget(&[htpasswd_line("alice", "old", 4).unwrap()], BUDGET);
    for _ in 0..5 {
        let got = auth
            .authenticate(Some(&basic("alice", "new")), addr(1))
            .await;
        assert_eq!(got, Err(AuthError::Unauthorized));
    }
    assert_eq!(auth.bcrypt_runs(), 1);
    std::fs::write(
        dir.path().join("htpasswd"),
        htpasswd_line("alice", "new", 4).unwrap(),
    )
    .unwrap();
    auth.reload().unwrap();
    let got = auth
        .authenticate(Some(&basic("alice", "new")), addr(1))
        .await;
    assert_eq!(got, Ok(Identity::User("alice".into())));
}

#[test]
fn htpasswd_lines_verify_with_bcrypt() {
    let line = htpasswd_line("ci", "p@ss:word", 4).unwrap();
    let (user, hash) = line.split_once(':').unwrap();
    assert_eq!(user, "ci");
    assert!(hash.starts_with("$2y$04$"));
    assert!(bcrypt::verify("p@ss:word", hash).unwrap());
    assert!(Htpasswd::parse(&line).is_ok());
    assert!(htpasswd_line("a:b", "x", 4).is_err());
    assert!(htpasswd_line("", "x", 4).is_err());
}

#[test]
fn load_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let e = Authenticator::load("r".into(), &missing, Policy::default())
        .err()
        .unwrap();
    assert!(e.to_string().contains("nope"), "{e}");
}
