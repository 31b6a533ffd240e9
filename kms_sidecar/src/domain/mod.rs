//! Validated values the rest of the sidecar passes around. A value of one of
//! these types has already been checked: no handler re-validates it.

mod caller;
pub(crate) mod context;

pub use caller::CallerClass;
pub use context::{EncryptionContext, Identifier, InvalidContext};
