//! Row-level security, proven the way PostgREST uses it: a login role that may only
//! become `authenticated`, with the traveler's claims set per transaction.

use harness::{as_traveler, claims, sqlstate, Template, TestDb};
use sqlx::PgConnection;

const ALICE: &str = "a11ce000-0000-4000-8000-000000000001";
const BOB: &str = "b0b00000-0000-4000-8000-000000000002";
const CAROL: &str = "ca401000-0000-4000-8000-000000000003";

/// Every table a traveler has rows in, with the filter that selects Alice's rows.
const USER_TABLES: &[&str] = &[
    "traveler_profiles",
    "wallet_customers",
    "payment_methods",
    "profile_completion_tracking",
    "traveler_data_audit",
    "campaigns",
];

/// Alice and Bob each own rows in every user table (audit and completion rows come
/// from the triggers); Carol owns nothing.
async fn seeded(template: Template) -> anyhow::Result<TestDb> {
    let db = TestDb::migrated_on(template).await?;
    let mut admin = db.admin().await?;
    for (user, n) in [(ALICE, 1), (BOB, 2)] {
        sqlx::raw_sql(&format!(
            "INSERT INTO auth.users (id, email) VALUES ('{user}', 'u{n}@example.com');
             INSERT INTO traveler_profiles (user_id, first_name) VALUES ('{user}', 'Traveler {n}');
             INSERT INTO wallet_customers (user_id, stripe_customer_id) VALUES ('{user}', 'cus_{n}');
             INSERT INTO payment_methods (user_id, stripe_customer_id, stripe_payment_method_id,
                                          encrypted_card_data, brand, last4, exp_month, exp_year, is_default)
               VALUES ('{user}', 'cus_{n}', 'pm_{n}', '\\x02', 'visa', '424{n}', 12, 2030, true);
             INSERT INTO campaigns (user_id, name) VALUES ('{user}', 'Trip {n}');"
        ))
        .execute(&mut admin)
        .await?;
    }
    sqlx::raw_sql(&format!("INSERT INTO auth.users (id, email) VALUES ('{CAROL}', 'u3@example.com')"))
        .execute(&mut admin)
        .await?;
    Ok(db)
}

async fn visible_rows(conn: &mut PgConnection, table: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(&format!("SELECT user_id::text FROM public.{table}")).fetch_all(conn).await
}

async fn a_traveler_sees_only_their_own_rows_in_every_table(template: Template) -> anyhow::Result<()> {
    let db = seeded(template).await?;
    let mut conn = db.traveler().await?;
    for (user, table) in [ALICE, BOB].iter().flat_map(|u| USER_TABLES.iter().map(move |t| (*u, *t))) {
        let mut tx = as_traveler(&mut conn, &claims(user)).await?;
        let rows = visible_rows(&mut tx, table).await?;
        assert!(!rows.is_empty() && rows.iter().all(|owner| owner == user), "{user} in {table}: {rows:?}");
        tx.rollback().await?;
    }
    Ok(())
}

async fn a_traveler_cannot_write_another_travelers_rows(template: Template) -> anyhow::Result<()> {
    let db = seeded(template).await?;
    let mut conn = db.traveler().await?;

    // Inserting a row owned by someone else: the policy's WITH CHECK refuses it.
    for insert in [
        format!("INSERT INTO traveler_profiles (user_id, first_name) VALUES ('{CAROL}', 'x')"),
        format!("INSERT INTO campaigns (user_id, name) VALUES ('{BOB}', 'x')"),
    ] {
        let mut tx = as_traveler(&mut conn, &claims(ALICE)).await?;
        let error = sqlx::query(&insert).execute(&mut *tx).await.unwrap_err();
        assert_eq!(sqlstate(&error).as_deref(), Some("42501"), "{insert}: {error}");
        tx.rollback().await?;
    }

    // Updating or deleting someone else's row touches nothing; an unfiltered
    // update touches only one's own row.
    for (statement, expected) in [
        (format!("UPDATE traveler_profiles SET first_name = 'pwned' WHERE user_id = '{BOB}'"), 0),
        (format!("UPDATE campaigns SET name = 'pwned' WHERE user_id = '{BOB}'"), 0),
        (format!("DELETE FROM traveler_profiles WHERE user_id = '{BOB}'"), 0),
        (format!("DELETE FROM campaigns WHERE user_id = '{BOB}'"), 0),
        ("UPDATE traveler_profiles SET first_name = 'mine'".to_owned(), 1),
    ] {
        let mut tx = as_traveler(&mut conn, &claims(ALICE)).await?;
        let affected = sqlx::query(&statement).execute(&mut *tx).await?.rows_affected();
        assert_eq!(affected, expected, "{statement}");
        tx.rollback().await?;
    }

    // Moving one's own row to another owner, or writing what only the sidecar
    // writes, is not even granted.
    for statement in [
        format!("UPDATE traveler_profiles SET user_id = '{BOB}'"),
        format!("UPDATE campaigns SET user_id = '{BOB}'"),
        "UPDATE traveler_profiles SET phone_verified = true".to_owned(),
        format!("INSERT INTO payment_methods (user_id, stripe_customer_id, stripe_payment_method_id, encrypted_card_data) VALUES ('{ALICE}', 'cus_1', 'pm_x', '\\x02')"),
        "UPDATE payment_methods SET is_default = false".to_owned(),
        "DELETE FROM payment_methods".to_owned(),
        format!("INSERT INTO wallet_customers (user_id, stripe_customer_id) VALUES ('{ALICE}', 'cus_9')"),
        "UPDATE profile_completion_tracking SET completeness_score = 100".to_owned(),
        "DELETE FROM traveler_data_audit".to_owned(),
        format!("INSERT INTO traveler_data_audit (user_id, action, table_name) VALUES ('{ALICE}', 'DELETE', 'x')"),
        "SELECT count(*) FROM auth.users".to_owned(),
    ] {
        let mut tx = as_traveler(&mut conn, &claims(ALICE)).await?;
        let error = sqlx::query(&statement).execute(&mut *tx).await.unwrap_err();
        assert_eq!(sqlstate(&error).as_deref(), Some("42501"), "{statement}: {error}");
        tx.rollback().await?;
    }

    // Nothing of Bob's changed.
    let mut admin = db.admin().await?;
    let (name, campaigns): (String, i64) = sqlx::query_as(&format!(
        "SELECT first_name, (SELECT count(*) FROM campaigns WHERE user_id = '{BOB}')
           FROM traveler_profiles WHERE user_id = '{BOB}'"
    ))
    .fetch_one(&mut admin)
    .await?;
    assert_eq!((name.as_str(), campaigns), ("Traveler 2", 1));
    Ok(())
}

async fn a_traveler_can_edit_their_own_profile_and_consent(template: Template) -> anyhow::Result<()> {
    let db = seeded(template).await?;
    let mut conn = db.traveler().await?;
    let mut tx = as_traveler(&mut conn, &claims(ALICE)).await?;
    let updated = sqlx::query("UPDATE traveler_profiles SET last_name = 'Liddell', phone_number = '+447700900123'")
        .execute(&mut *tx)
        .await?;
    assert_eq!(updated.rows_affected(), 1);
    // Consent is stamped by the server clock, whatever the client sends.
    sqlx::query("UPDATE campaigns SET consent_at = '2001-01-01', consent_text_version = 'campaign-mit-1'")
        .execute(&mut *tx)
        .await?;
    let recent: bool = sqlx::query_scalar("SELECT consent_at > now() - interval '1 minute' FROM campaigns")
        .fetch_one(&mut *tx)
        .await?;
    assert!(recent);
    tx.commit().await?;

    let mut tx = as_traveler(&mut conn, &claims(ALICE)).await?;
    let error =
        sqlx::query("UPDATE traveler_profiles SET phone_number = '0770 090 0123'").execute(&mut *tx).await.unwrap_err();
    assert_eq!(sqlstate(&error).as_deref(), Some("23514"), "E.164 check: {error}");
    Ok(())
}

async fn missing_empty_or_garbage_claims_see_nothing(template: Template) -> anyhow::Result<()> {
    let db = seeded(template).await?;
    let mut conn = db.traveler().await?;
    for bad in [
        "",
        "   ",
        "garbage",
        "{",
        "[]",
        "null",
        r#"{"role":"authenticated"}"#,
        r#"{"sub":""}"#,
        r#"{"sub":"not-a-uuid"}"#,
        r#"{"sub":42}"#,
        r#"{"sub":"a11ce000-0000-4000-8000-000000000001' OR '1'='1"}"#,
    ] {
        for table in USER_TABLES {
            let mut tx = as_traveler(&mut conn, bad).await?;
            assert_eq!(visible_rows(&mut tx, table).await?, Vec::<String>::new(), "{bad:?} on {table}");
            tx.rollback().await?;
        }
    }
    // And with no claim set at all in the transaction.
    for table in USER_TABLES {
        let mut tx = sqlx::Connection::begin(&mut conn).await?;
        sqlx::query("SET LOCAL ROLE authenticated").execute(&mut *tx).await?;
        assert!(visible_rows(&mut tx, table).await?.is_empty(), "no claims on {table}");
        tx.rollback().await?;
    }
    Ok(())
}

async fn switching_subject_mid_transaction_is_refused(template: Template) -> anyhow::Result<()> {
    let db = seeded(template).await?;
    let mut conn = db.traveler().await?;
    let mut tx = as_traveler(&mut conn, &claims(ALICE)).await?;
    assert_eq!(visible_rows(&mut tx, "payment_methods").await?, [ALICE]);
    sqlx::query("SELECT set_config('request.jwt.claims', $1, true)").bind(claims(BOB)).execute(&mut *tx).await?;
    let error = visible_rows(&mut tx, "payment_methods").await.unwrap_err();
    assert_eq!(sqlstate(&error).as_deref(), Some("42501"), "{error}");
    tx.rollback().await?;

    // A traveler cannot switch the protection off: it is superuser-only.
    let mut tx = as_traveler(&mut conn, &claims(ALICE)).await?;
    let error = sqlx::query("SET LOCAL parker_wallet.pin_jwt_subject = off").execute(&mut *tx).await.unwrap_err();
    assert_eq!(sqlstate(&error).as_deref(), Some("42501"), "{error}");
    tx.rollback().await?;

    // Claims are transaction-local: the next transaction on the same pooled
    // connection starts with none and sees nothing.
    let tx = as_traveler(&mut conn, &claims(ALICE)).await?;
    tx.commit().await?;
    let mut tx = sqlx::Connection::begin(&mut conn).await?;
    sqlx::query("SET LOCAL ROLE authenticated").execute(&mut *tx).await?;
    assert!(visible_rows(&mut tx, "payment_methods").await?.is_empty());
    Ok(())
}

async fn set_role_cannot_escape_to_a_privileged_role(template: Template) -> anyhow::Result<()> {
    let db = seeded(template).await?;
    let mut conn = db.traveler().await?;
    for role in ["service_role", "postgres", "anon"] {
        let mut tx = as_traveler(&mut conn, &claims(ALICE)).await?;
        let error = sqlx::query(&format!("SET ROLE {role}")).execute(&mut *tx).await.unwrap_err();
        assert_eq!(sqlstate(&error).as_deref(), Some("42501"), "SET ROLE {role}: {error}");
        tx.rollback().await?;
    }
    // Dropping back to the login role loses access rather than gaining it.
    let mut tx = as_traveler(&mut conn, &claims(ALICE)).await?;
    sqlx::query("RESET ROLE").execute(&mut *tx).await?;
    let error = visible_rows(&mut tx, "payment_methods").await.unwrap_err();
    assert_eq!(sqlstate(&error).as_deref(), Some("42501"), "{error}");
    Ok(())
}

async fn rls_report_is_clean_for_the_shipped_schema_and_flags_a_leaky_table(template: Template) -> anyhow::Result<()> {
    let db = TestDb::migrated_on(template).await?;
    let mut admin = db.admin().await?;
    type ReportRow = (String, bool, bool, i32, Vec<String>, bool, Vec<String>);
    let report: Vec<ReportRow> = sqlx::query_as(
        "SELECT table_name, rls_enabled, rls_forced, policy_count, policy_columns, policy_columns_indexed, findings
           FROM wallet.rls_report(ARRAY['public'])",
    )
    .fetch_all(&mut admin)
    .await?;
    let mut tables: Vec<&str> = report.iter().map(|r| r.0.as_str()).collect();
    tables.sort_unstable();
    let mut expected = USER_TABLES.to_vec();
    expected.extend([
        "audit_checkpoint_heads",
        "audit_checkpoints",
        "audit_redaction_signatures",
        "booking_charge_events",
        "booking_charges",
        "feature_flags",
        "idempotency_keys",
        "consents",
        "erasures",
        "notification_outbox",
        "phone_verifications",
        "stripe_events",
    ]);
    expected.sort_unstable();
    assert_eq!(tables, expected);
    for (table, enabled, forced, policies, columns, indexed, findings) in &report {
        assert!(*enabled && *forced && *indexed, "{table}");
        // Deny-all tables (USING false), reached only through functions:
        // feature_flags through wallet.flag_enabled, stripe_events through the sidecar's;
        // the audit checkpoint tables are the operator's (who passes RLS).
        let deny_all = [
            "feature_flags",
            "stripe_events",
            "audit_checkpoints",
            "audit_checkpoint_heads",
            "audit_redaction_signatures",
        ]
        .contains(&table.as_str());
        let owner_columns: &[&str] = match table.as_str() {
            // The sidecar sees the kill switches by name (migration 0016).
            "feature_flags" => &["name"],
            _ if deny_all => &[],
            _ => &["user_id"],
        };
        // Besides the owner (or deny-all) policy, one for each of the wallet's
        // definer roles that reads or writes the table (migrations 0008, 0012, 0014, 0015, 0017).
        let definer_policies = match table.as_str() {
            // feature_flags: the flag reader's, and the sidecar's kill switches (0016);
            // booking_charges: the lookup's, and the operations figures' (0017).
            "payment_methods" | "feature_flags" | "booking_charges" => 2,
            "traveler_data_audit"
            | "traveler_profiles"
            | "profile_completion_tracking"
            | "stripe_events"
            | "wallet_customers"
            | "campaigns"
            | "booking_charge_events"
            | "phone_verifications"
            | "consents"
            | "erasures" => 1,
            _ => 0,
        };
        let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
        assert_eq!((*policies, columns.as_slice()), (1 + definer_policies, owner_columns), "{template}: {table}");
        assert!(findings.is_empty(), "{table}: {findings:?}");
    }

    sqlx::raw_sql("CREATE TABLE public.leaky (id int, user_id uuid); GRANT SELECT ON public.leaky TO authenticated;")
        .execute(&mut admin)
        .await?;
    let findings: Vec<String> =
        sqlx::query_scalar("SELECT findings FROM wallet.rls_report(ARRAY['public']) WHERE table_name = 'leaky'")
            .fetch_one(&mut admin)
            .await?;
    assert!(findings.iter().any(|f| f.starts_with("rls_disabled:")), "{findings:?}");
    assert!(findings.iter().any(|f| f.starts_with("rls_not_forced:")), "{findings:?}");
    Ok(())
}

harness::on_both_templates!(
    a_traveler_sees_only_their_own_rows_in_every_table,
    a_traveler_cannot_write_another_travelers_rows,
    a_traveler_can_edit_their_own_profile_and_consent,
    missing_empty_or_garbage_claims_see_nothing,
    switching_subject_mid_transaction_is_refused,
    set_role_cannot_escape_to_a_privileged_role,
    rls_report_is_clean_for_the_shipped_schema_and_flags_a_leaky_table,
);
