//! Booking charges: authorize on a saved card, order at Duffel, capture only
//! once Duffel confirms; never charge twice. See docs/bookings.md.
//! - [`saga`]: the rules (states, transitions, decline classes), pure.
//! - [`store`]: the row, its history and the outbox; every state write.
//! - [`open`]: a request checked and its row written (or found again);
//! - [`flow`]: the steps and their external calls; [`reconcile`]: the operator pass.

pub mod flow;
pub mod open;
pub mod reconcile;
pub mod saga;
pub mod store;

pub use flow::{Actor, BookingLocks, Driver, Ports};
