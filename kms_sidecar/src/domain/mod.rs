//! Validated values the rest of the sidecar passes around. A value of one of
//! these types has already been checked: no handler re-validates it.

mod actor;
mod caller;
mod consent;
pub(crate) mod context;
mod money;
mod phone;
pub mod sealed;
mod subject;

pub use actor::{Actor, RequestMeta, Traveler};
pub use caller::CallerClass;
pub use consent::{ConsentVersion, InvalidConsentVersion};
pub use context::{EncryptionContext, Identifier, InvalidContext};
pub use money::{InvalidMoney, Money, MAX_AMOUNT};
pub use phone::{InvalidPhone, PhoneNumber, VerificationCode};
pub use sealed::{SealedColumn, SEALED_COLUMNS};
pub use subject::{Subject, SUBJECT_HEADER};
