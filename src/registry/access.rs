//! Who is calling and what each route needs: authentication happens before anything is
//! read from storage, so refusals never depend on whether a repository exists.

use std::net::IpAddr;
use std::sync::Arc;

use axum::http::{Method, header};

use super::Head;
use super::error::ApiError;
use crate::auth::{Action, AuthError, Authenticator, Identity};
use crate::oci::Route;

/// An authenticated (or anonymous) caller and the policy that applies to it.
pub struct Caller {
    identity: Identity,
    auth: Option<Arc<Authenticator>>,
}

impl Caller {
    /// Reads credentials from the request. Without auth configured everyone may do everything.
    pub async fn authenticate(
        auth: Option<&Arc<Authenticator>>,
        head: &Head,
        client: Option<IpAddr>,
    ) -> Result<Caller, ApiError> {
        let Some(auth) = auth else {
            return Ok(Caller {
                identity: Identity::Anonymous,
                auth: None,
            });
        };
        let header = head
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        let identity = auth
            .authenticate(header, client)
            .await
            .map_err(|e| refusal(auth, e))?;
        Ok(Caller {
            identity,
            auth: Some(auth.clone()),
        })
    }

    /// True if this caller may do `action` on `repository`.
    pub fn may(&self, action: Action, repository: &str) -> bool {
        self.auth
            .as_ref()
            .is_none_or(|a| a.authorize(&self.identity, action, repository).is_ok())
    }

    /// The refusal to give an anonymous caller who may do nothing at all (e.g. for a
    /// malformed path), so that nothing about the registry is revealed before login.
    pub fn require_any(&self) -> Result<(), ApiError> {
        match &self.auth {
            Some(auth)
                if self.identity == Identity::Anonymous && !auth.policy().anonymous_allowed() =>
            {
                Err(refusal(auth, AuthError::Unauthorized))
            }
            _ => Ok(()),
        }
    }

    /// Checks that the caller may use `route` with `method`.
    pub fn authorize(&self, route: &Route, method: &Method) -> Result<(), ApiError> {
        let Some(auth) = &self.auth else {
            return Ok(());
        };
        let (action, repository) = match (route, route.repository()) {
            // The base endpoint answers 200 only to valid credentials, so clients' logins are checked.
            (Route::Base, _) => {
                return match self.identity {
                    Identity::Anonymous => Err(refusal(auth, AuthError::Unauthorized)),
                    Identity::User(_) => Ok(()),
                };
            }
            (Route::Catalog, _) => return self.require_any(),
            (_, None) => return Ok(()),
            (route, Some(name)) => (required_action(route, method), name),
        };
        auth.authorize(&self.identity, action, repository.as_str())
            .map_err(|e| refusal(auth, e))
    }
}

/// The action a route needs on its repository.
fn required_action(route: &Route, method: &Method) -> Action {
    match (route, method) {
        (Route::Manifest { .. } | Route::Blob { .. }, &Method::DELETE) => Action::Delete,
        (Route::Manifest { .. }, &Method::PUT) => Action::Push,
        (Route::UploadStart { .. } | Route::Upload { .. }, _) => Action::Push,
        _ => Action::Pull,
    }
}

fn refusal(auth: &Authenticator, e: AuthError) -> ApiError {
    match e {
        AuthError::Unauthorized => ApiError::Unauthorized {
            realm: auth.realm().to_owned(),
        },
        AuthError::Denied => ApiError::Denied,
        AuthError::TooManyAttempts { retry_after } => ApiError::TooManyRequests { retry_after },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_by_route_and_method() {
        let name: crate::oci::RepoName = "a".parse().unwrap();
        let manifest = Route::Manifest {
            name: name.clone(),
            reference: "t".parse().unwrap(),
        };
        assert_eq!(required_action(&manifest, &Method::GET), Action::Pull);
        assert_eq!(required_action(&manifest, &Method::HEAD), Action::Pull);
        assert_eq!(required_action(&manifest, &Method::PUT), Action::Push);
        assert_eq!(required_action(&manifest, &Method::DELETE), Action::Delete);
        let upload = Route::Upload {
            name: name.clone(),
            id: "x".into(),
        };
        assert_eq!(required_action(&upload, &Method::GET), Action::Push);
        assert_eq!(
            required_action(&Route::UploadStart { name: name.clone() }, &Method::POST),
            Action::Push
        );
        assert_eq!(
            required_action(&Route::Tags { name }, &Method::GET),
            Action::Pull
        );
    }
}
