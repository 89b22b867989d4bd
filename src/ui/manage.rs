//! Untag and delete, each a confirmation page (GET) and a form post (POST). Untag removes
//! only the tag; deleting a manifest removes every tag that points at it, and the page says
//! which. Both need `storage.delete.enabled`, a writable registry that is not a mirror, and
//! the viewer's delete right; a repository the viewer may not pull is "not found". The
//! caller ([`super::repository_post`]) has checked that a post comes from this site.

use axum::http::StatusCode;
use axum::response::Response;

use super::pages::{DeletePage, UntagPage, render};
use super::session::flash_cookie;
use super::viewer::Viewer;
use super::{UiError, UiState, html, see_other};
use crate::auth::Action;
use crate::oci::{Digest, Reference, RepoName, Tag};

/// Tags named in the flash message of a delete; the rest are counted.
const TAGS_NAMED: usize = 10;

/// Refuses a viewer who may not delete in `name`.
fn check(ui: &UiState, viewer: &Viewer, name: &RepoName) -> Result<(), UiError> {
    if !viewer.may(Action::Pull, name.as_str()) {
        return Err(UiError::NotFound);
    }
    let options = &ui.0.content.options;
    if ui.0.mirror.is_some() {
        return Err(UiError::Denied(
            "This registry is a pull-through cache: nothing is deleted through it.".to_owned(),
        ));
    }
    if options.read_only {
        return Err(UiError::Denied("This registry is read-only.".to_owned()));
    }
    if !options.delete_enabled {
        return Err(UiError::Denied(
            "Deleting is disabled on this registry (storage.delete.enabled).".to_owned(),
        ));
    }
    if !viewer.may(Action::Delete, name.as_str()) {
        return Err(UiError::Denied(format!(
            "You may not delete anything in {name}."
        )));
    }
    Ok(())
}

/// The tags of `name` that point at `digest`, sorted: one listing and a link read per tag.
async fn tags_of(ui: &UiState, name: &RepoName, digest: &Digest) -> Result<Vec<String>, UiError> {
    let tags = ui.0.content.tags_pointing_at(name, digest).await?;
    Ok(tags.iter().map(ToString::to_string).collect())
}

/// The flash message of a delete: at most [`TAGS_NAMED`] tags by name, so the cookie stays
/// small whatever the count.
fn deleted_message(name: &RepoName, digest: &Digest, tags: &[String]) -> String {
    let named = tags
        .iter()
        .take(TAGS_NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    match tags.len() {
        0 => format!("Deleted the manifest {digest} from {name}."),
        n if n <= TAGS_NAMED => {
            format!("Deleted the manifest {digest} from {name}, with the tags {named}.")
        }
        n => format!(
            "Deleted the manifest {digest} from {name}, with the tags {named} and {} more.",
            n - TAGS_NAMED
        ),
    }
}

pub(super) async fn untag_form(
    ui: &UiState,
    viewer: &Viewer,
    name: &RepoName,
    tag: &Tag,
) -> Result<Response, UiError> {
    check(ui, viewer, name)?;
    let digest =
        ui.0.content
            .resolve(name, &Reference::Tag(tag.clone()))
            .await?;
    let others: Vec<String> = tags_of(ui, name, &digest)
        .await?
        .into_iter()
        .filter(|t| t != tag.as_str())
        .collect();
    let chrome = ui.chrome(viewer, format!("Untag {name}:{tag}"));
    let page = UntagPage {
        chrome: &chrome,
        name: name.to_string(),
        tag: tag.to_string(),
        digest: digest.to_string(),
        others: others.join(", "),
    };
    Ok(html(StatusCode::OK, render(&page)))
}

pub(super) async fn untag(
    ui: &UiState,
    viewer: &Viewer,
    name: &RepoName,
    tag: &Tag,
) -> Result<Response, UiError> {
    check(ui, viewer, name)?;
    ui.0.content
        .delete_manifest(name, &Reference::Tag(tag.clone()))
        .await?;
    tracing::info!(repository = %name, tag = %tag, user = viewer.user().unwrap_or("-"), "untagged in the web UI");
    Ok(done(
        ui,
        viewer,
        name,
        &format!("Removed the tag {tag} from {name}."),
    ))
}

pub(super) async fn delete_form(
    ui: &UiState,
    viewer: &Viewer,
    name: &RepoName,
    digest: &Digest,
) -> Result<Response, UiError> {
    check(ui, viewer, name)?;
    ui.0.content
        .resolve(name, &Reference::Digest(digest.clone()))
        .await?;
    let tags = tags_of(ui, name, digest).await?;
    let chrome = ui.chrome(viewer, format!("Delete from {name}"));
    let page = DeletePage {
        chrome: &chrome,
        name: name.to_string(),
        digest: digest.to_string(),
        tags,
    };
    Ok(html(StatusCode::OK, render(&page)))
}

pub(super) async fn delete(
    ui: &UiState,
    viewer: &Viewer,
    name: &RepoName,
    digest: &Digest,
) -> Result<Response, UiError> {
    check(ui, viewer, name)?;
    let tags: Vec<String> =
        ui.0.content
            .delete_manifest_and_tags(name, digest)
            .await?
            .iter()
            .map(ToString::to_string)
            .collect();
    tracing::info!(repository = %name, digest = %digest, tags = tags.len(), user = viewer.user().unwrap_or("-"), "deleted a manifest in the web UI");
    Ok(done(
        ui,
        viewer,
        name,
        &deleted_message(name, digest, &tags),
    ))
}

/// Back to the repository page, with a flash message.
fn done(ui: &UiState, viewer: &Viewer, name: &RepoName, message: &str) -> Response {
    let mut resp = see_other(&format!("/r/{name}"));
    ui.set_cookie(&mut resp, &flash_cookie(&ui.0.key, message, viewer.secure));
    resp
}
