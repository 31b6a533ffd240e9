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

    /// Whether the traveler proved who they are (password, OTP, OAuth...)
    /// within `window` of `now`: Supabase Auth's `amr` claim says when each
    /// method was last used. A refreshed token keeps those times, so an
    /// hour-old theft of a token does not pass.
    pub fn signed_in_within(&self, window: std::time::Duration, now: chrono::DateTime<chrono::Utc>) -> bool {
        let newest =
            self.claims["amr"].as_array().into_iter().flatten().filter_map(|method| method["timestamp"].as_i64()).max();
        let window = i64::try_from(window.as_secs()).unwrap_or(i64::MAX);
        newest.is_some_and(|at| (now.timestamp() - window..=now.timestamp() + 60).contains(&at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed_in(amr: serde_json::Value) -> Traveler {
        Traveler { user_id: uuid::Uuid::nil(), claims: serde_json::json!({ "sub": "x", "amr": amr }) }
    }

    #[test]
    fn a_recent_sign_in_is_told_by_the_newest_amr_timestamp() {
        let now = chrono::Utc::now();
        let window = std::time::Duration::from_secs(600);
        let t = now.timestamp();
        let recent = serde_json::json!([{ "method": "password", "timestamp": t - 3_600 }, { "method": "otp", "timestamp": t - 60 }]);
        assert!(signed_in(recent).signed_in_within(window, now));
        let stale = serde_json::json!([{ "method": "password", "timestamp": t - 3_600 }]);
        assert!(!signed_in(stale).signed_in_within(window, now));
        // No claim, a malformed one, or a time in the future (beyond clock skew): not proven.
        assert!(!signed_in(serde_json::Value::Null).signed_in_within(window, now));
        assert!(!signed_in(serde_json::json!([{ "method": "password" }])).signed_in_within(window, now));
        assert!(!signed_in(serde_json::json!([{ "timestamp": t + 3_600 }])).signed_in_within(window, now));
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
