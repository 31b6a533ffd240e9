//! Booking charges (issue 6, in progress): the saga's rules, pure. The route,
//! its table and the Duffel client come next; see docs/DESIGN-notes.md.

pub mod saga;
