//! No path to superuser, proven on both templates (plain PostgreSQL and
//! Supabase-shaped): each attack that once worked, the privileges every API role
//! holds, the security lint, and the extension's upgrade from 0.1.0.

use harness::{as_traveler, claims, migrations_dir, schema_snapshot, sqlstate, Template, TestDb};
use kms_sidecar::migrate::Migrator;
use sqlx::{Connection, PgConnection};

const ALICE: &str = "a11ce000-0000-4000-8000-000000000001";
const BOB: &str = "b0b00000-0000-4000-8000-000000000002";

/// Every table the migrations create.
const TABLES: &[&str] = &[
    "booking_charge_events",
    "booking_charges",
    "campaigns",
    "consents",
    "erasures",
    "feature_flags",
    "idempotency_keys",
    "notification_outbox",
    "payment_methods",
    "phone_verifications",
    "profile_completion_tracking",
    "stripe_events",
    "traveler_data_audit",
    "traveler_profiles",
    "wallet_customers",
];

/// A login like PostgREST's authenticator: it may become anon, authenticated or service_role.
async fn api_login(db: &TestDb) -> anyhow::Result<PgConnection> {
    Ok(PgConnection::connect(&db.url("pw_test_api")?).await?)
}

/// A transaction as `role`, with a traveler's claims when given.
async fn as_role<'c>(
    conn: &'c mut PgConnection,
    role: &str,
    sub: Option<&str>,
) -> anyhow::Result<sqlx::Transaction<'c, sqlx::Postgres>> {
    harness::as_role(conn, role, &sub.map(claims).unwrap_or_default()).await
}

/// Alice and Bob in auth.users, each with a profile (so audit and completion rows).
async fn with_travelers(template: Template) -> anyhow::Result<TestDb> {
    seed(TestDb::migrated_on(template).await?).await
}

/// The same, on a database as it was before this fix: parker_wallet 0.1.0 and
/// migrations 0001-0007. Each attack is shown to work there, so each test is
/// known to reproduce what it guards against.
async fn before_the_fix(template: Template) -> anyhow::Result<TestDb> {
    let db = TestDb::empty_on(template).await?;
    let mut admin = db.admin().await?;
    sqlx::raw_sql("CREATE EXTENSION parker_wallet VERSION '0.1.0'").execute(&mut admin).await?;
    Migrator::from_dir(&migrations_dir())?.up(&mut admin, Some(7)).await?;
    seed(db).await
}

async fn seed(db: TestDb) -> anyhow::Result<TestDb> {
    let mut admin = db.admin().await?;
    for (user, n) in [(ALICE, 1), (BOB, 2)] {
        sqlx::raw_sql(&format!(
            "INSERT INTO auth.users (id, email, created_at) VALUES ('{user}', 'u{n}@example.com', now());
             INSERT INTO traveler_profiles (user_id, first_name) VALUES ('{user}', 'Traveler {n}');
             UPDATE traveler_profiles SET last_name = 'Last' WHERE user_id = '{user}';"
        ))
        .execute(&mut admin)
        .await?;
    }
    Ok(db)
}

/// The error code of a statement expected to fail.
async fn refused(tx: &mut PgConnection, statement: &str) -> anyhow::Result<Option<String>> {
    match sqlx::raw_sql(statement).execute(&mut *tx).await {
        Ok(_) => Ok(None),
        Err(error) => Ok(sqlstate(&error)),
    }
}

/// A temporary domain named `date` whose check calls a temporary function: a
/// definer function casting to `date`, with pg_temp searched first, used the
/// domain and so ran the function with the definer's rights.
const HIJACK: &str = "
    CREATE FUNCTION pg_temp.hijack(d pg_catalog.date) RETURNS boolean LANGUAGE plpgsql AS
      $$ BEGIN RAISE EXCEPTION 'hijacked as %', current_user; END $$;
    CREATE DOMAIN pg_temp.date AS pg_catalog.date CHECK (pg_temp.hijack(VALUE));";

/// As the sidecar's role with Alice's claims: plants the hijack and calls a
/// definer function that casts to `date`; its answer or error.
async fn hijack_account_age(db: &TestDb) -> anyhow::Result<Result<Option<i32>, String>> {
    let mut sidecar = PgConnection::connect(&db.url("pw_test_sidecar")?).await?;
    let mut tx = as_role(&mut sidecar, "parker_wallet_sidecar", Some(ALICE)).await?;
    sqlx::raw_sql(HIJACK).execute(&mut *tx).await?;
    Ok(sqlx::query_scalar("SELECT wallet_internal.account_age_days(current_date)")
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| e.to_string()))
}

async fn temp_objects_cannot_hijack_a_definer_function(template: Template) -> anyhow::Result<()> {
    let before = hijack_account_age(&before_the_fix(template).await?).await?;
    assert!(before.as_ref().is_err_and(|e| e.contains("hijacked as")), "{template}, before the fix: {before:?}");

    let db = with_travelers(template).await?;
    // The sidecar's role may not create temporary objects at all...
    let mut sidecar = PgConnection::connect(&db.url("pw_test_sidecar")?).await?;
    let mut tx = as_role(&mut sidecar, "parker_wallet_sidecar", Some(ALICE)).await?;
    assert_eq!(refused(&mut tx, HIJACK).await?.as_deref(), Some("42501"), "{template}: TEMP is not PUBLIC's");
    tx.rollback().await?;
    // ...and a role that may still finds every definer function's path pinned.
    let mut admin = db.admin().await?;
    sqlx::raw_sql(&format!("GRANT TEMPORARY ON DATABASE {} TO parker_wallet_sidecar", db.name))
        .execute(&mut admin)
        .await?;
    assert_eq!(hijack_account_age(&db).await?, Ok(Some(0)), "{template}");
    Ok(())
}

/// The statement that attaches a trigger as an API role.
fn attach_trigger(table: &str) -> String {
    format!(
        "CREATE TRIGGER t BEFORE UPDATE ON public.{table} FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()"
    )
}

async fn no_api_role_can_attach_triggers_truncate_or_reference(template: Template) -> anyhow::Result<()> {
    let before = before_the_fix(template).await?;
    let mut api = api_login(&before).await?;
    let mut tx = as_role(&mut api, "service_role", None).await?;
    assert_eq!(refused(&mut tx, &attach_trigger("traveler_profiles")).await?, None, "{template}, before the fix");
    tx.rollback().await?;

    let db = with_travelers(template).await?;
    let mut api = api_login(&db).await?;
    for role in ["anon", "authenticated", "service_role"] {
        for table in TABLES {
            for statement in [attach_trigger(table), format!("TRUNCATE public.{table}")] {
                let mut tx = as_role(&mut api, role, Some(ALICE)).await?;
                assert_eq!(
                    refused(&mut tx, &statement).await?.as_deref(),
                    Some("42501"),
                    "{template} {role}: {statement}"
                );
                tx.rollback().await?;
            }
            let references: bool =
                sqlx::query_scalar("SELECT has_any_column_privilege($1, $2::regclass, 'REFERENCES')")
                    .bind(role)
                    .bind(format!("public.{table}"))
                    .fetch_one(&mut api)
                    .await?;
            assert!(!references, "{template} {role} REFERENCES {table}");
        }
    }
    Ok(())
}

/// Who a trigger on the writer roles' tables runs as, and whether that role is a
/// superuser: the attack was a table owner (or a holder of TRIGGER) attaching one
/// to the audit table, which the audit trigger then fired as the superuser that
/// owned it.
async fn who_runs_triggers_on_the_written_tables(db: &TestDb) -> anyhow::Result<Vec<(String, bool)>> {
    let mut owner = db.admin().await?;
    if db.template() == Template::Plain {
        // Here the operator is a superuser: hand the tables to an owner who is not.
        sqlx::raw_sql(
            "ALTER TABLE traveler_data_audit OWNER TO pw_test_owner;
             ALTER TABLE profile_completion_tracking OWNER TO pw_test_owner;
             GRANT CREATE ON SCHEMA public TO pw_test_owner;
             SET ROLE pw_test_owner;",
        )
        .execute(&mut owner)
        .await?;
    }
    sqlx::raw_sql(
        "CREATE TABLE public.spied (who text, is_superuser boolean);
         GRANT INSERT ON public.spied TO PUBLIC;
         CREATE FUNCTION public.spy() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           INSERT INTO public.spied SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user;
           RETURN NULL;
         END $$;
         CREATE TRIGGER spy AFTER INSERT OR UPDATE ON public.traveler_data_audit FOR EACH ROW EXECUTE FUNCTION public.spy();
         CREATE TRIGGER spy AFTER INSERT OR UPDATE ON public.profile_completion_tracking
           FOR EACH ROW EXECUTE FUNCTION public.spy();",
    )
    .execute(&mut owner)
    .await?;

    let mut traveler = db.traveler().await?;
    let mut tx = as_traveler(&mut traveler, &claims(ALICE)).await?;
    sqlx::query("UPDATE traveler_profiles SET first_name = 'Ada'").execute(&mut *tx).await?;
    tx.commit().await?;

    let mut spied: Vec<(String, bool)> =
        sqlx::query_as("SELECT DISTINCT who, is_superuser FROM public.spied").fetch_all(&mut owner).await?;
    spied.sort();
    Ok(spied)
}

async fn definer_code_runs_as_its_nologin_role_never_a_superuser(template: Template) -> anyhow::Result<()> {
    let before = who_runs_triggers_on_the_written_tables(&before_the_fix(template).await?).await?;
    assert!(before.iter().any(|(_, is_superuser)| *is_superuser), "{template}, before the fix: {before:?}");
    let after = who_runs_triggers_on_the_written_tables(&with_travelers(template).await?).await?;
    assert_eq!(
        after,
        [("parker_wallet_auditor".to_owned(), false), ("parker_wallet_scorer".to_owned(), false)],
        "{template}"
    );
    Ok(())
}

/// The table-level privileges each API role holds on each table (column grants,
/// such as a traveler's INSERT of their profile's columns, are not table-level).
/// (table, role, table-level privileges) for every wallet table and API role.
async fn api_table_privileges(db: &TestDb) -> anyhow::Result<Vec<(String, String, Vec<String>)>> {
    Ok(sqlx::query_as(
        "SELECT c.relname::text, r.rolname::text,
                coalesce(array_agg(p ORDER BY p) FILTER (WHERE has_table_privilege(r.oid, c.oid, p)), '{}')
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
                pg_roles r, unnest(ARRAY['DELETE', 'INSERT', 'REFERENCES', 'SELECT', 'TRIGGER', 'TRUNCATE', 'UPDATE']) p
          WHERE n.nspname = 'public' AND c.relname = ANY($1) AND r.rolname IN ('anon', 'authenticated', 'service_role')
          GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .bind(TABLES)
    .fetch_all(&mut db.admin().await?)
    .await?)
}

async fn api_roles_hold_exactly_the_intended_privileges(template: Template) -> anyhow::Result<()> {
    let before = api_table_privileges(&before_the_fix(template).await?).await?;
    let too_much = |(table, role, held): &(String, String, Vec<String>)| {
        (role == "service_role" && table == "stripe_events" && held.iter().any(|p| p == "INSERT"))
            || held.iter().any(|p| p == "TRIGGER")
    };
    assert!(before.iter().any(too_much), "{template}, before the fix: {before:?}");

    let db = TestDb::migrated_on(template).await?;
    let mut admin = db.admin().await?;
    let held = api_table_privileges(&db).await?;
    let reads = ["SELECT"];
    let edits = ["DELETE", "INSERT", "SELECT", "UPDATE"];
    for (table, role, privileges) in &held {
        let expected: &[&str] = match (role.as_str(), table.as_str()) {
            ("anon", _) => &[],
            ("authenticated", "traveler_profiles" | "campaigns") => &["DELETE", "SELECT"],
            (
                "authenticated",
                "wallet_customers"
                | "payment_methods"
                | "profile_completion_tracking"
                | "traveler_data_audit"
                | "booking_charge_events"
                | "consents"
                | "erasures",
            ) => &reads,
            ("authenticated", _) => &[],
            ("service_role", "traveler_profiles" | "campaigns" | "feature_flags") => &edits,
            ("service_role", "idempotency_keys") => &[],
            ("service_role", _) => &reads,
            _ => unreachable!(),
        };
        assert_eq!(privileges, expected, "{template}: {role} on {table}");
    }
    assert_eq!(held.len(), TABLES.len() * 3, "{template}");

    let sequences: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname || ' ' || r.rolname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, pg_roles r
          WHERE n.nspname = 'public' AND c.relkind = 'S' AND r.rolname IN ('anon', 'authenticated', 'service_role')
            AND (has_sequence_privilege(r.oid, c.oid, 'USAGE') OR has_sequence_privilege(r.oid, c.oid, 'SELECT')
                 OR has_sequence_privilege(r.oid, c.oid, 'UPDATE'))",
    )
    .fetch_all(&mut admin)
    .await?;
    assert_eq!(sequences, Vec::<String>::new(), "{template}: sequences granted to API roles");

    let routines: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace, pg_roles r
          WHERE n.nspname IN ('wallet', 'wallet_internal') AND r.rolname IN ('anon', 'authenticated', 'service_role')
            AND has_function_privilege(r.oid, p.oid, 'EXECUTE') ORDER BY 1",
    )
    .fetch_all(&mut admin)
    .await?;
    assert_eq!(
        routines,
        [
            "wallet.check_notification_preferences(jsonb,boolean)",
            "wallet.client_ip()",
            "wallet.flag_bucket(uuid)",
            "wallet.flag_enabled(text,uuid)",
            "wallet.jwt()",
            "wallet.profile_completeness(uuid)",
            "wallet.request_header(text)",
            "wallet.rls_report(text[])",
            "wallet.security_report(text[])",
            "wallet.uid()",
        ],
        "{template}"
    );
    Ok(())
}

/// As service_role: appends a correctly chained audit row in Alice's name that
/// says her phone was verified, using the extension's own hash.
const FORGE_A_LINK: &str = "
    INSERT INTO traveler_data_audit (id, user_id, chain_seq, action, table_name, new_data, created_at,
                                     prev_hash, row_hash)
    SELECT f.id, f.user_id, f.chain_seq, 'UPDATE', 'traveler_profiles', '{\"phone_verified\": true}', f.at,
           f.prev_hash,
           wallet.audit_row_hash(f.prev_hash, f.id, f.user_id, f.chain_seq, 'UPDATE', 'traveler_profiles', NULL,
                                 NULL, '{\"phone_verified\": true}'::jsonb::text, NULL, NULL,
                                 (extract(epoch FROM f.at) * 1000000)::bigint)
      FROM (SELECT gen_random_uuid() AS id, a.user_id, a.chain_seq + 1 AS chain_seq, a.row_hash AS prev_hash,
                   date_trunc('second', now()) AS at
              FROM traveler_data_audit a WHERE a.user_id = 'a11ce000-0000-4000-8000-000000000001'
             ORDER BY a.chain_seq DESC LIMIT 1) AS f";

async fn api_roles_cannot_forge_the_audit_trail(template: Template) -> anyhow::Result<()> {
    let before = before_the_fix(template).await?;
    let mut api = api_login(&before).await?;
    let mut tx = as_role(&mut api, "service_role", None).await?;
    sqlx::raw_sql(FORGE_A_LINK).execute(&mut *tx).await?;
    tx.commit().await?;
    let broken: i64 = sqlx::query_scalar("SELECT count(*) FROM wallet.verify_audit_chain()")
        .fetch_one(&mut before.admin().await?)
        .await?;
    assert_eq!(broken, 0, "{template}, before the fix: the forged row verified as intact");

    let db = with_travelers(template).await?;
    let mut api = api_login(&db).await?;
    for role in ["anon", "authenticated", "service_role"] {
        for statement in [
            FORGE_A_LINK.to_owned(),
            format!(
                "SELECT wallet.audit_row_hash('\\x00', gen_random_uuid(), '{ALICE}', 3, 'UPDATE', 'traveler_profiles',
                                               NULL, NULL, NULL, NULL, NULL, 0)"
            ),
            "UPDATE traveler_data_audit SET user_agent = 'x'".to_owned(),
            "DELETE FROM traveler_data_audit".to_owned(),
        ] {
            let mut tx = as_role(&mut api, role, Some(ALICE)).await?;
            assert_eq!(refused(&mut tx, &statement).await?.as_deref(), Some("42501"), "{template} {role}: {statement}");
            tx.rollback().await?;
        }
    }
    Ok(())
}

/// Breaks Alice's chain (an edit) and Bob's (a deletion), as the table's owner
/// may (a redaction, say), and returns what verification reports.
async fn two_broken_chains(db: &TestDb) -> anyhow::Result<Vec<(String, i64, String)>> {
    let mut admin = db.admin().await?;
    sqlx::raw_sql(&format!(
        "UPDATE traveler_data_audit SET new_data = '{{}}' WHERE user_id = '{ALICE}' AND chain_seq = 1;
         DELETE FROM traveler_data_audit WHERE user_id = '{BOB}' AND chain_seq = 1;"
    ))
    .execute(&mut admin)
    .await?;
    let mut broken: Vec<(String, i64, String)> =
        sqlx::query_as("SELECT user_id::text, chain_seq, reason FROM wallet.verify_audit_chain()")
            .fetch_all(&mut admin)
            .await?;
    broken.sort();
    Ok(broken)
}

// Before the fix only the first of the two was reported; that lived in the
// extension's Rust code, which one server cannot load in two versions, so the
// old behaviour is not replayed here (see docs/roles.md).
async fn every_broken_chain_is_reported_not_only_the_first(template: Template) -> anyhow::Result<()> {
    let broken = two_broken_chains(&with_travelers(template).await?).await?;
    assert_eq!(
        broken,
        [(ALICE.to_owned(), 1, "content_changed".to_owned()), (BOB.to_owned(), 2, "sequence_gap".to_owned())],
        "{template}"
    );
    Ok(())
}

/// A flag whose allow list names Alice only.
async fn beta_flag_for_alice(db: &TestDb) -> anyhow::Result<()> {
    sqlx::raw_sql(&format!(
        "INSERT INTO feature_flags (name, enabled, allow_list) VALUES ('beta', true, '{{{ALICE}}}')"
    ))
    .execute(&mut db.admin().await?)
    .await?;
    Ok(())
}

async fn flags_answer_only_about_oneself_and_health_is_not_public(template: Template) -> anyhow::Result<()> {
    let ask = |user: &str| format!("SELECT wallet.flag_enabled('beta', '{user}')");
    // (The flag's check lives in the extension's Rust code: not replayable on
    // the old SQL, as for the chains above; sidecar_health's privilege is SQL.)
    let before = before_the_fix(template).await?;
    let mut api = api_login(&before).await?;
    let mut tx = as_role(&mut api, "anon", None).await?;
    assert_eq!(refused(&mut tx, "SELECT wallet.sidecar_health()").await?, None, "{template}, before the fix");
    tx.rollback().await?;

    let db = with_travelers(template).await?;
    beta_flag_for_alice(&db).await?;
    let mut api = api_login(&db).await?;

    let mut tx = as_role(&mut api, "authenticated", Some(BOB)).await?;
    let mine: bool = sqlx::query_scalar(&ask(BOB)).fetch_one(&mut *tx).await?;
    assert!(!mine, "{template}");
    tx.rollback().await?;
    for (role, sub) in [("authenticated", Some(BOB)), ("anon", None)] {
        let mut tx = as_role(&mut api, role, sub).await?;
        assert_eq!(refused(&mut tx, &ask(ALICE)).await?.as_deref(), Some("42501"), "{template} {role}");
        tx.rollback().await?;
    }
    // service_role may read the flags table anyway, allow lists included.
    let mut tx = as_role(&mut api, "service_role", None).await?;
    assert!(sqlx::query_scalar::<_, bool>(&ask(ALICE)).fetch_one(&mut *tx).await?, "{template}");
    tx.rollback().await?;

    for role in ["anon", "authenticated", "service_role"] {
        let mut tx = as_role(&mut api, role, None).await?;
        let code = refused(&mut tx, "SELECT wallet.sidecar_health()").await?;
        assert_eq!(code.as_deref(), Some("42501"), "{template} {role}: sidecar_health");
        tx.rollback().await?;
    }
    Ok(())
}

/// The report's (code, object) pairs, sorted.
async fn findings(conn: &mut PgConnection) -> anyhow::Result<Vec<(String, String)>> {
    let mut found: Vec<(String, String)> =
        sqlx::query_as("SELECT code, object_name FROM wallet.security_report()").fetch_all(conn).await?;
    found.sort();
    Ok(found)
}

async fn the_security_report_is_empty_and_finds_each_planted_defect(template: Template) -> anyhow::Result<()> {
    // The report needs 0.2.0; run on the old schema it names what this issue fixed.
    let before = before_the_fix(template).await?;
    let mut before_admin = before.admin().await?;
    update_extension(&before, &mut before_admin).await?;
    let before_findings = findings(&mut before_admin).await?;
    for code in ["definer_search_path_unpinned", "api_role_dangerous_privilege", "database_temp_for_public"] {
        assert!(
            before_findings.iter().any(|(c, _)| c == code),
            "{template}, before 0008: {code} in {before_findings:?}"
        );
    }

    let db = TestDb::migrated_on(template).await?;
    assert_eq!(findings(&mut db.admin().await?).await?, Vec::<(String, String)>::new(), "{template}");

    // Each defect planted in one transaction, rolled back: role memberships are
    // cluster-wide, and other tests' reports must not see them.
    let mut superuser = db.superuser().await?;
    let mut tx = superuser.begin().await?;
    sqlx::raw_sql(&format!(
        "CREATE FUNCTION public.unpinned() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1';
         REVOKE EXECUTE ON FUNCTION public.unpinned() FROM PUBLIC, anon, authenticated, service_role;
         GRANT EXECUTE ON FUNCTION public.unpinned() TO anon;
         CREATE FUNCTION public.mutable_path() RETURNS int LANGUAGE sql AS 'SELECT 1';
         CREATE TABLE public.leaky (id bigserial PRIMARY KEY, user_id uuid);
         ALTER TABLE public.leaky ENABLE ROW LEVEL SECURITY;
         CREATE POLICY leaky_owner ON public.leaky TO authenticated USING (user_id = (select wallet.uid()));
         CREATE POLICY leaky_vip ON public.leaky FOR SELECT TO authenticated
           USING (((select auth.jwt()) -> 'user_metadata' ->> 'vip') = 'yes');
         REVOKE ALL ON public.leaky, public.leaky_id_seq FROM anon, authenticated, service_role;
         GRANT TRIGGER ON public.leaky TO service_role;
         GRANT USAGE ON SEQUENCE public.leaky_id_seq TO anon;
         CREATE VIEW public.peek AS SELECT user_id FROM public.leaky;
         CREATE MATERIALIZED VIEW public.snapshot AS SELECT 1 AS one;
         GRANT SELECT ON public.snapshot TO anon;
         GRANT parker_wallet_auditor TO pw_test_owner;
         ALTER FUNCTION wallet_internal.campaign_owner(uuid) SECURITY INVOKER;
         GRANT TEMPORARY ON DATABASE {} TO PUBLIC;",
        db.name
    ))
    .execute(&mut *tx)
    .await?;
    let expected = [
        ("database_temp_for_public", db.name.as_str()),
        ("definer_role_has_members", "parker_wallet_auditor"),
        ("api_role_dangerous_privilege", "public.leaky"),
        ("policy_references_user_metadata", "public.leaky"),
        ("rls_not_forced", "public.leaky"),
        ("unindexed_policy_column", "public.leaky"),
        ("sequence_granted_to_api_role", "public.leaky_id_seq"),
        ("function_search_path_mutable", "public.mutable_path()"),
        ("view_not_security_invoker", "public.peek"),
        ("materialized_view_in_api", "public.snapshot"),
        ("definer_executable_by_api_role", "public.unpinned()"),
        ("definer_owned_by_superuser", "public.unpinned()"),
        ("definer_search_path_unpinned", "public.unpinned()"),
        ("wallet_definer_altered", "wallet_internal.campaign_owner(campaign uuid)"),
    ];
    let mut expected: Vec<(String, String)> = expected.iter().map(|(c, o)| (c.to_string(), o.to_string())).collect();
    expected.sort();
    assert_eq!(findings(&mut tx).await?, expected, "{template}");
    tx.rollback().await?;
    Ok(())
}

/// A schema named `wallet` that someone else made first could hold functions the
/// install script resolves before pg_catalog's (`format(text, text)`), run as the
/// installing superuser: the install refuses such a schema.
async fn a_squatted_wallet_schema_is_refused(template: Template) -> anyhow::Result<()> {
    let db = TestDb::empty_on(template).await?;
    let mut squatter = db.admin().await?;
    if template == Template::Plain {
        sqlx::raw_sql("CREATE SCHEMA wallet AUTHORIZATION pw_test_owner; SET ROLE pw_test_owner")
            .execute(&mut squatter)
            .await?;
    } else {
        sqlx::raw_sql("CREATE SCHEMA wallet").execute(&mut squatter).await?;
    }
    sqlx::raw_sql(
        "CREATE TABLE wallet.ran_as (who text);
         GRANT INSERT ON wallet.ran_as TO PUBLIC;
         CREATE FUNCTION wallet.format(text, text) RETURNS text LANGUAGE plpgsql AS
           $$ BEGIN INSERT INTO wallet.ran_as VALUES (current_user); RETURN pg_catalog.format($1, $2); END $$;",
    )
    .execute(&mut squatter)
    .await?;
    // The installer: the superuser, or on Supabase postgres through supautils.
    let mut installer = if template == Template::Plain { db.superuser().await? } else { db.admin().await? };
    let error = sqlx::raw_sql("CREATE EXTENSION parker_wallet").execute(&mut installer).await.unwrap_err();
    assert!(
        error.to_string().contains("schema wallet exists and belongs to a role that is not a superuser"),
        "{error}"
    );
    let ran: i64 = sqlx::query_scalar("SELECT count(*) FROM wallet.ran_as").fetch_one(&mut squatter).await?;
    assert_eq!(ran, 0, "{template}");
    Ok(())
}

/// supautils runs parker_wallet's after-create script as its superuser in the
/// caller's session, so with the caller's search_path: a function the caller put
/// first on it would run as the superuser.
#[tokio::test]
async fn supabase_after_create_ignores_the_callers_search_path() -> anyhow::Result<()> {
    let db = TestDb::empty_on(Template::Supabase).await?;
    let mut operator = db.admin().await?;
    sqlx::raw_sql(
        "CREATE TABLE public.ran_as (who text);
         GRANT INSERT ON public.ran_as TO PUBLIC;
         CREATE FUNCTION public.to_regclass(text) RETURNS regclass LANGUAGE plpgsql AS
           $$ BEGIN INSERT INTO public.ran_as VALUES (current_user); RETURN pg_catalog.to_regclass($1); END $$;
         CREATE FUNCTION public.to_regrole(text) RETURNS regrole LANGUAGE plpgsql AS
           $$ BEGIN INSERT INTO public.ran_as VALUES (current_user); RETURN pg_catalog.to_regrole($1); END $$;
         SET search_path = public, pg_catalog;
         CREATE EXTENSION parker_wallet;",
    )
    .execute(&mut operator)
    .await?;
    let ran_as: Vec<String> = sqlx::query_scalar("SELECT who FROM public.ran_as").fetch_all(&mut operator).await?;
    assert_eq!(ran_as, Vec::<String>::new());
    // The script did run (its grants are there) and gave the caller's path back.
    let granted: bool = sqlx::query_scalar("SELECT has_function_privilege('wallet.verify_audit_chain()', 'EXECUTE')")
        .fetch_one(&mut operator)
        .await?;
    let path: String = sqlx::query_scalar("SHOW search_path").fetch_one(&mut operator).await?;
    assert_eq!((granted, path.as_str()), (true, "public, pg_catalog"));
    Ok(())
}

/// The catalog of what the extension (and, migrated, the wallet) consists of,
/// with each function's owner: equal snapshots mean equal installations.
async fn catalog(conn: &mut PgConnection) -> anyhow::Result<Vec<String>> {
    let mut lines = schema_snapshot(conn).await?;
    lines.extend(
        sqlx::query_scalar::<_, String>(
            "SELECT format('owner %s %s', p.oid::regprocedure, pg_get_userbyid(p.proowner))
               FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname IN ('wallet', 'wallet_internal') ORDER BY 1",
        )
        .fetch_all(&mut *conn)
        .await?,
    );
    Ok(lines)
}

/// As a Supabase operator upgrades: ALTER EXTENSION (supautils runs it as its
/// superuser), then the after-create script by hand, since supautils has no
/// after-update hook.
async fn update_extension(db: &TestDb, conn: &mut PgConnection) -> anyhow::Result<()> {
    // The 0.1.0 -> 0.2.0 script alters the cluster's definer roles every time:
    // two updates at once in one cluster would update the same pg_authid rows.
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = ONE_AT_A_TIME.lock().await;
    sqlx::raw_sql("ALTER EXTENSION parker_wallet UPDATE").execute(&mut *conn).await?;
    if db.template() == Template::Supabase {
        let script = harness::crate_dir().join("../pg_extension/supautils/parker_wallet/after-create.sql");
        sqlx::raw_sql(&std::fs::read_to_string(script)?).execute(&mut db.superuser().await?).await?;
    }
    Ok(())
}

async fn updating_from_0_1_0_equals_a_fresh_install(template: Template) -> anyhow::Result<()> {
    let fresh = TestDb::empty_on(template).await?;
    let mut fresh_conn = fresh.admin().await?;
    sqlx::raw_sql("CREATE EXTENSION parker_wallet").execute(&mut fresh_conn).await?;

    let updated = TestDb::empty_on(template).await?;
    let mut updated_conn = updated.admin().await?;
    sqlx::raw_sql("CREATE EXTENSION parker_wallet VERSION '0.1.0'").execute(&mut updated_conn).await?;
    update_extension(&updated, &mut updated_conn).await?;
    assert_eq!(catalog(&mut updated_conn).await?, catalog(&mut fresh_conn).await?, "{template}");
    Ok(())
}

async fn a_live_0_1_0_database_updates_then_migrates(template: Template) -> anyhow::Result<()> {
    let db = TestDb::empty_on(template).await?;
    let mut conn = db.admin().await?;
    sqlx::raw_sql("CREATE EXTENSION parker_wallet VERSION '0.1.0'").execute(&mut conn).await?;
    let migrator = Migrator::from_dir(&migrations_dir())?;
    migrator.up(&mut conn, Some(7)).await?;
    let error = migrator.up(&mut conn, None).await.unwrap_err();
    assert!(error.to_string().contains("parker_wallet 0.2.0 or later is needed"), "{template}: {error}");

    update_extension(&db, &mut conn).await?;
    assert_eq!(migrator.up(&mut conn, None).await?, [8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]);
    let fresh = TestDb::migrated_on(template).await?;
    assert_eq!(catalog(&mut conn).await?, catalog(&mut fresh.admin().await?).await?, "{template}");
    Ok(())
}

harness::on_both_templates!(
    temp_objects_cannot_hijack_a_definer_function,
    no_api_role_can_attach_triggers_truncate_or_reference,
    definer_code_runs_as_its_nologin_role_never_a_superuser,
    api_roles_hold_exactly_the_intended_privileges,
    api_roles_cannot_forge_the_audit_trail,
    every_broken_chain_is_reported_not_only_the_first,
    flags_answer_only_about_oneself_and_health_is_not_public,
    the_security_report_is_empty_and_finds_each_planted_defect,
    a_squatted_wallet_schema_is_refused,
    updating_from_0_1_0_equals_a_fresh_install,
    a_live_0_1_0_database_updates_then_migrates,
);
