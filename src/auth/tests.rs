//! Tests of the authenticator: credentials, caching, reload and rate limiting.

use super::*;

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
    for _ in 0..MAX_FAILURES + 1 {
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

#[tokio::test]
async fn failed_logins_are_rate_limited_per_client() {
    let (_dir, auth) = setup(&[htpasswd_line("alice", "secret", 4).unwrap()]);
    let attacker = Some("192.0.2.66".parse().unwrap());
    for _ in 0..MAX_FAILURES {
        assert_eq!(
            auth.authenticate(Some(&basic("alice", "guess")), attacker)
                .await,
            Err(AuthError::Unauthorized)
        );
    }
    let locked = auth
        .authenticate(Some(&basic("alice", "secret")), attacker)
        .await;
    assert!(
        matches!(locked, Err(AuthError::TooManyAttempts { .. })),
        "{locked:?}"
    );
    let other = Some("192.0.2.67".parse().unwrap());
    assert!(
        auth.authenticate(Some(&basic("alice", "secret")), other)
            .await
            .is_ok()
    );
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
