//! The traveler's profile as the app's home page shows it: the name it greets
//! them by, the phone, and how complete the profile is (scored by the
//! extension's `wallet.profile_completeness`, which runs with the traveler's
//! rights, so RLS holds it to their own row).

use super::{Wallet, WalletError};
use crate::domain::Actor;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Profile {
    pub first_name: Option<String>,
    pub phone_number: Option<String>,
    pub phone_verified: bool,
    pub completeness_score: i32,
    pub missing_fields: Vec<String>,
    pub recommendations: Vec<String>,
}

const PROFILE_SELECT: &str = "
    SELECT profile.first_name, profile.phone_number, coalesce(profile.phone_verified, false) AS phone_verified,
           completion.score AS completeness_score, completion.missing_fields, completion.recommendations
      FROM wallet.profile_completeness($1) AS completion
      LEFT JOIN public.traveler_profiles AS profile ON profile.user_id = $1";

impl Wallet<'_> {
    /// The profile (empty until the traveler writes one) and its completion.
    pub async fn profile(&self, actor: &Actor) -> Result<Profile, WalletError> {
        let mut tx = self.database.snapshot_as_traveler(&actor.traveler, &actor.meta).await?;
        let profile = sqlx::query_as(PROFILE_SELECT).bind(actor.traveler.user_id).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok(profile)
    }
}
