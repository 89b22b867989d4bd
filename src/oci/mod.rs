//! Pure OCI domain types: digests, repository names, tags and references, manifest
//! media types and the descriptors a manifest references, and `/v2/...` path parsing.
//! No IO lives here; every layer above may use it.

pub mod digest;
pub mod host;
pub mod manifest;
pub mod name;
pub mod path;

pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use host::validate_host;
pub use manifest::{Descriptor, ManifestError, ManifestKind, ParsedManifest};
pub use name::{NameError, Reference, RepoName, Tag};
pub use path::{Route, RouteError};
