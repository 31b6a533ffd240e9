//! Who the sidecar acts for: a traveler (proven by their token, or named by
//! another authority), and the request's audit metadata.

/// The verified traveler and the claims to hand to Postgres as `request.jwt.claims`.
#[derive(Debug, Clone)]
pub struct Traveler {
    pub user_id: uuid::Uuid,
    pub claims: serde_json::Value,
}

impl Traveler {
    /// The traveler a verified Stripe event concerns: the sidecar acts for them on
    /// Stripe's word (the event's signature), with claims that say so.
    pub fn named_by_stripe(user_id: uuid::Uuid) -> Self {
        Self::acting_for(user_id, "parker-wallet/stripe-webhook")
    }

    /// The sidecar acting for `user_id` on another authority than the traveler's
    /// own token (a signed webhook, the service key, the reconciler); `issuer`
    /// says which, in the claims RLS and the audit trail see.
    pub fn acting_for(user_id: uuid::Uuid, issuer: &str) -> Self {
        Self { user_id, claims: serde_json::json!({ "sub": user_id, "role": "authenticated", "iss": issuer }) }
    }
}

/// The caller's request as the audit trail should see it.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub forwarded_for: Option<String>,
    pub user_agent: Option<String>,
}

/// Who a piece of work runs for, and how they asked.
#[derive(Debug, Clone)]
pub struct Actor {
    pub traveler: Traveler,
    pub meta: RequestMeta,
}
