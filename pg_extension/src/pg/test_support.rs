//! What the `#[pg_test]`s beside each wrapper share: the request claims, two
//! travelers, and the wallet schema (the real migrations) installed inside the
//! test's transaction, which is rolled back afterwards.

use pgrx::prelude::*;

pub(crate) fn set_claims(json: &str) {
    Spi::run_with_args("SELECT set_config('request.jwt.claims', $1, true)", &[json.into()]).unwrap();
}

pub(crate) const ALICE: &str = "11111111-1111-4111-8111-111111111111";
pub(crate) const BOB: &str = "22222222-2222-4222-8222-222222222222";

// The wallet schema: the real migrations, applied inside the test's transaction.

pub(crate) const MIGRATIONS: [&str; 17] = [
    include_str!("../../../migrations/0001_auth_shim.up.sql"),
    include_str!("../../../migrations/0002_wallet_tables.up.sql"),
    include_str!("../../../migrations/0003_audit_completion_flags.up.sql"),
    include_str!("../../../migrations/0004_sidecar_role.up.sql"),
    include_str!("../../../migrations/0005_idempotency_keys.up.sql"),
    include_str!("../../../migrations/0006_stripe_events.up.sql"),
    include_str!("../../../migrations/0007_bookings.up.sql"),
    include_str!("../../../migrations/0008_least_privilege.up.sql"),
    include_str!("../../../migrations/0009_no_client_secrets_at_rest.up.sql"),
    include_str!("../../../migrations/0010_bookings_in_the_audit_chain.up.sql"),
    include_str!("../../../migrations/0011_signed_audit_checkpoints.up.sql"),
    include_str!("../../../migrations/0012_phone_verification.up.sql"),
    include_str!("../../../migrations/0013_notification_preferences.up.sql"),
    include_str!("../../../migrations/0014_consents.up.sql"),
    include_str!("../../../migrations/0015_erasures.up.sql"),
    include_str!("../../../migrations/0016_kill_switches.up.sql"),
    include_str!("../../../migrations/0017_operations.up.sql"),
];

pub(crate) fn install_schema() {
    for migration in MIGRATIONS {
        Spi::run(migration).unwrap();
    }
    Spi::run(&format!("INSERT INTO auth.users (id) VALUES ('{ALICE}'), ('{BOB}')")).unwrap();
}

pub(crate) fn add_card(user: &str, pm: &str, exp_year: i32) {
    Spi::run(&format!(
        "INSERT INTO wallet_customers (user_id, stripe_customer_id) VALUES ('{user}', 'cus_{pm}')
           ON CONFLICT (user_id) DO NOTHING;
         INSERT INTO payment_methods (user_id, stripe_customer_id, stripe_payment_method_id,
                                      encrypted_card_data, brand, last4, exp_month, exp_year)
         SELECT '{user}', stripe_customer_id, 'pm_{pm}', '\x02abcdef', 'visa', '4242', 12, {exp_year}
           FROM wallet_customers WHERE user_id = '{user}'"
    ))
    .unwrap();
}
