// SQL behaviour of the wrappers, inside a real backend (`cargo pgrx test`).
// Each test runs in its own transaction, rolled back afterwards.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn set_claims(json: &str) {
        Spi::run_with_args("SELECT set_config('request.jwt.claims', $1, true)", &[json.into()]).unwrap();
    }

    fn uid() -> Option<String> {
        Spi::get_one::<String>("SELECT wallet.uid()::text").unwrap()
    }

    const ALICE: &str = "11111111-1111-4111-8111-111111111111";
    const BOB: &str = "22222222-2222-4222-8222-222222222222";

    #[pg_test]
    fn uid_reads_postgrest_claims() {
        set_claims(&format!(r#"{{"sub":"{ALICE}","role":"authenticated"}}"#));
        assert_eq!(uid().as_deref(), Some(ALICE));
    }

    #[pg_test]
    fn uid_is_null_for_absent_empty_or_garbage_claims() {
        assert_eq!(uid(), None);
        for claims in ["", "garbage", r#"{"sub":"x'); drop table t; --"}"#, r#"{"sub":7}"#, "[1]"] {
            set_claims(claims);
            assert_eq!(uid(), None, "{claims}");
        }
    }

    #[pg_test(
        error = "request.jwt.claims changed its subject within a transaction; set the claims once, at the start of each transaction"
    )]
    fn uid_refuses_a_second_subject_in_one_transaction() {
        set_claims(&format!(r#"{{"sub":"{ALICE}"}}"#));
        assert_eq!(uid().as_deref(), Some(ALICE));
        set_claims(&format!(r#"{{"sub":"{BOB}"}}"#));
        uid();
    }

    #[pg_test]
    fn superuser_may_turn_the_pin_off() {
        Spi::run("SET LOCAL parker_wallet.pin_jwt_subject = off").unwrap();
        set_claims(&format!(r#"{{"sub":"{ALICE}"}}"#));
        assert_eq!(uid().as_deref(), Some(ALICE));
        set_claims(&format!(r#"{{"sub":"{BOB}"}}"#));
        assert_eq!(uid().as_deref(), Some(BOB));
    }

    #[pg_test]
    fn jwt_returns_the_claims_object_or_null() {
        set_claims(r#"{"sub":"x","app_metadata":{"provider":"email"}}"#);
        let provider = Spi::get_one::<String>("SELECT wallet.jwt() -> 'app_metadata' ->> 'provider'").unwrap();
        assert_eq!(provider.as_deref(), Some("email"));
        set_claims("not json");
        assert_eq!(Spi::get_one::<bool>("SELECT wallet.jwt() IS NULL").unwrap(), Some(true));
    }

    #[pg_test]
    fn request_header_reads_postgrest_headers() {
        Spi::run(
            r#"SELECT set_config('request.headers', '{"user-agent":"curl/8","x-forwarded-for":"203.0.113.9"}', true)"#,
        )
        .unwrap();
        let agent = Spi::get_one::<String>("SELECT wallet.request_header('User-Agent')").unwrap();
        assert_eq!(agent.as_deref(), Some("curl/8"));
        assert_eq!(Spi::get_one::<String>("SELECT wallet.request_header('nope')").unwrap(), None);
        Spi::run("SELECT set_config('request.headers', '{broken', true)").unwrap();
        assert_eq!(Spi::get_one::<String>("SELECT wallet.request_header('user-agent')").unwrap(), None);
    }

    /// A table with a uuid owner column, and the role the default owner policy names.
    fn make_table(name: &str) {
        Spi::run("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'authenticated') THEN CREATE ROLE authenticated NOLOGIN; END IF; END $$").unwrap();
        Spi::run(&format!("CREATE TABLE {name} (id int PRIMARY KEY, owner uuid NOT NULL, note text)")).unwrap();
    }

    fn findings_of(table: &str) -> Vec<String> {
        Spi::get_one_with_args::<Vec<String>>(
            "SELECT findings FROM wallet.rls_report(ARRAY['public']) WHERE table_name = $1",
            &[table.into()],
        )
        .unwrap()
        .unwrap_or_default()
    }

    #[pg_test]
    fn enable_owner_rls_protects_and_is_idempotent() {
        make_table("notes");
        assert!(findings_of("notes").iter().any(|f| f.starts_with("rls_disabled")));
        for _ in 0..2 {
            Spi::run("SELECT wallet.enable_owner_rls('public.notes', 'owner')").unwrap();
        }
        assert_eq!(findings_of("notes"), Vec::<String>::new());
        let (policies, indexed) = Spi::get_two::<i32, bool>(
            "SELECT policy_count, policy_columns_indexed FROM wallet.rls_report(ARRAY['public']) WHERE table_name = 'notes'",
        )
        .unwrap();
        assert_eq!((policies, indexed), (Some(1), Some(true)));
        let columns = Spi::get_one::<Vec<String>>(
            "SELECT policy_columns FROM wallet.rls_report(ARRAY['public']) WHERE table_name = 'notes'",
        )
        .unwrap();
        assert_eq!(columns, Some(vec!["owner".to_owned()]));
        let index_count =
            Spi::get_one::<i64>("SELECT count(*) FROM pg_index WHERE indrelid = 'public.notes'::regclass").unwrap();
        assert_eq!(index_count, Some(2), "primary key plus one owner index, not one per call");
    }

    #[pg_test]
    fn owner_policy_filters_rows_for_authenticated() {
        make_table("notes");
        Spi::run("SELECT wallet.enable_owner_rls('public.notes', 'owner')").unwrap();
        Spi::run(&format!("INSERT INTO notes VALUES (1, '{ALICE}', 'a'), (2, '{BOB}', 'b')")).unwrap();
        Spi::run("GRANT SELECT, INSERT ON notes TO authenticated").unwrap();
        set_claims(&format!(r#"{{"sub":"{ALICE}"}}"#));
        Spi::run("SET LOCAL ROLE authenticated").unwrap();
        assert_eq!(Spi::get_one::<i64>("SELECT count(*) FROM notes").unwrap(), Some(1));
        assert_eq!(Spi::get_one::<String>("SELECT note FROM notes").unwrap().as_deref(), Some("a"));
    }

    #[pg_test]
    fn report_flags_per_row_calls_and_unindexed_columns() {
        make_table("loose");
        Spi::run("ALTER TABLE loose ENABLE ROW LEVEL SECURITY").unwrap();
        Spi::run("ALTER TABLE loose FORCE ROW LEVEL SECURITY").unwrap();
        Spi::run("CREATE POLICY slow ON loose USING (wallet.uid() = owner)").unwrap();
        let findings = findings_of("loose");
        assert!(findings.iter().any(|f| f.starts_with("per_row_call: policy slow calls wallet.uid()")), "{findings:?}");
        assert!(
            findings.iter().any(|f| f.starts_with("unindexed_policy_column: no index leads with owner")),
            "{findings:?}"
        );
    }

    #[pg_test(error = "enable_owner_rls: public.notes has no column nobody")]
    fn enable_owner_rls_names_a_missing_column() {
        make_table("notes");
        Spi::run("SELECT wallet.enable_owner_rls('public.notes', 'nobody')").unwrap();
    }

    #[pg_test(error = "enable_owner_rls: owner column note of public.notes is text, not uuid")]
    fn enable_owner_rls_requires_a_uuid_owner() {
        make_table("notes");
        Spi::run("SELECT wallet.enable_owner_rls('public.notes', 'note')").unwrap();
    }

    // ---- The wallet schema: the real migrations, applied inside the test's transaction.

    const MIGRATIONS: [&str; 8] = [
        include_str!("../../../migrations/0001_auth_shim.up.sql"),
        include_str!("../../../migrations/0002_wallet_tables.up.sql"),
        include_str!("../../../migrations/0003_audit_completion_flags.up.sql"),
        include_str!("../../../migrations/0004_sidecar_role.up.sql"),
        include_str!("../../../migrations/0005_idempotency_keys.up.sql"),
        include_str!("../../../migrations/0006_stripe_events.up.sql"),
        include_str!("../../../migrations/0007_bookings.up.sql"),
        include_str!("../../../migrations/0008_least_privilege.up.sql"),
    ];

    fn install_schema() {
        for migration in MIGRATIONS {
            Spi::run(migration).unwrap();
        }
        Spi::run(&format!("INSERT INTO auth.users (id) VALUES ('{ALICE}'), ('{BOB}')")).unwrap();
    }

    fn tracked_score(user: &str) -> Option<i32> {
        Spi::get_one_with_args::<i32>(
            "SELECT (SELECT completeness_score FROM profile_completion_tracking WHERE user_id = $1::uuid)",
            &[user.into()],
        )
        .unwrap()
    }

    fn add_card(user: &str, pm: &str, exp_year: i32) {
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

    #[pg_test]
    fn tracking_follows_profile_and_card_changes() {
        install_schema();
        Spi::run(&format!(
            "INSERT INTO traveler_profiles (user_id, first_name, last_name) VALUES ('{ALICE}', 'Ada', 'Lovelace')"
        ))
        .unwrap();
        assert_eq!(tracked_score(ALICE), Some(20));
        Spi::run(
            "UPDATE traveler_profiles SET date_of_birth = '1990-12-10', notification_preferences = '{\"email\":true}'",
        )
        .unwrap();
        assert_eq!(tracked_score(ALICE), Some(45));
        add_card(ALICE, "expired", 2001);
        assert_eq!(tracked_score(ALICE), Some(45), "an expired card does not count");
        add_card(ALICE, "valid", 2099);
        assert_eq!(tracked_score(ALICE), Some(70));
        Spi::run("DELETE FROM payment_methods WHERE stripe_payment_method_id = 'pm_valid'").unwrap();
        assert_eq!(tracked_score(ALICE), Some(45), "removing the last valid card");
        Spi::run("DELETE FROM payment_methods").unwrap();
        Spi::run("DELETE FROM traveler_profiles").unwrap();
        assert_eq!(tracked_score(ALICE), Some(0));
        let missing = Spi::get_one::<Vec<String>>("SELECT missing_fields FROM profile_completion_tracking").unwrap();
        assert_eq!(missing.map(|m| m.len()), Some(7));
        assert_eq!(tracked_score(BOB), None, "only the changed traveler is touched");
    }

    #[pg_test]
    fn deleting_a_user_cascades_without_resurrecting_tracking() {
        install_schema();
        Spi::run(&format!("INSERT INTO traveler_profiles (user_id, first_name) VALUES ('{BOB}', 'Bob')")).unwrap();
        assert_eq!(tracked_score(BOB), Some(10));
        Spi::run(&format!("DELETE FROM auth.users WHERE id = '{BOB}'")).unwrap();
        assert_eq!(tracked_score(BOB), None);
    }

    #[pg_test]
    fn refresh_batch_backfills_users_in_id_order() {
        install_schema();
        Spi::run("ALTER TABLE traveler_profiles DISABLE TRIGGER traveler_profiles_completion").unwrap();
        Spi::run(&format!(
            "INSERT INTO traveler_profiles (user_id, first_name) VALUES ('{ALICE}', 'Ada'), ('{BOB}', 'Bob')"
        ))
        .unwrap();
        assert_eq!(tracked_score(ALICE), None);
        let (last, done) = Spi::get_two::<pgrx::Uuid, i32>(
            "SELECT * FROM wallet.refresh_completion_batch('00000000-0000-0000-0000-000000000000', 1)",
        )
        .unwrap();
        assert_eq!((last.map(|u| u.to_string()), done), (Some(ALICE.to_owned()), Some(1)));
        assert_eq!((tracked_score(ALICE), tracked_score(BOB)), (Some(10), None));
        let done =
            Spi::get_one::<i32>(&format!("SELECT refreshed FROM wallet.refresh_completion_batch('{ALICE}', 10)"))
                .unwrap();
        assert_eq!((done, tracked_score(BOB)), (Some(1), Some(10)));
        let done = Spi::get_one::<i32>(&format!("SELECT refreshed FROM wallet.refresh_completion_batch('{BOB}', 10)"))
            .unwrap();
        assert_eq!(done, Some(0));
    }

    fn audit_count(filter: &str) -> i64 {
        Spi::get_one::<i64>(&format!("SELECT count(*) FROM traveler_data_audit WHERE {filter}")).unwrap().unwrap()
    }

    #[pg_test]
    fn audit_records_each_change_with_request_context() {
        install_schema();
        Spi::run(r#"SELECT set_config('request.headers', '{"x-forwarded-for":"203.0.113.7, 10.0.0.1","user-agent":"parker-app/2.1"}', true)"#).unwrap();
        Spi::run(&format!("INSERT INTO traveler_profiles (user_id, first_name) VALUES ('{ALICE}', 'Ada')")).unwrap();
        Spi::run("UPDATE traveler_profiles SET first_name = 'Ada'").unwrap();
        assert_eq!(audit_count("true"), 1, "an update that changes nothing is not logged");
        Spi::run("UPDATE traveler_profiles SET first_name = 'Augusta'").unwrap();
        Spi::run("DELETE FROM traveler_profiles").unwrap();
        let actions =
            Spi::get_one::<Vec<String>>("SELECT array_agg(action ORDER BY chain_seq) FROM traveler_data_audit")
                .unwrap();
        assert_eq!(actions, Some(vec!["INSERT".into(), "UPDATE".into(), "DELETE".into()]));
        let (ip, agent) = Spi::get_two::<String, String>(
            "SELECT host(ip_address), user_agent FROM traveler_data_audit WHERE chain_seq = 2",
        )
        .unwrap();
        assert_eq!((ip.as_deref(), agent.as_deref()), (Some("203.0.113.7"), Some("parker-app/2.1")));
        let (old, new) = Spi::get_two::<String, String>(
            "SELECT old_data ->> 'first_name', new_data ->> 'first_name' FROM traveler_data_audit WHERE action = 'UPDATE'",
        )
        .unwrap();
        assert_eq!((old.as_deref(), new.as_deref()), (Some("Ada"), Some("Augusta")));
        assert_eq!(
            audit_count(&format!("user_id = '{ALICE}' AND record_id IS NOT NULL AND table_name = 'traveler_profiles'")),
            3
        );
        assert_eq!(Spi::get_one::<i64>("SELECT count(*) FROM wallet.verify_audit_chain()").unwrap(), Some(0));
    }

    #[pg_test]
    fn a_malformed_forwarded_for_is_stored_as_null_and_the_write_succeeds() {
        install_schema();
        Spi::run(r#"SELECT set_config('request.headers', '{"x-forwarded-for":"not-an-ip"}', true)"#).unwrap();
        Spi::run(&format!("INSERT INTO campaigns (user_id, name) VALUES ('{ALICE}', 'Lisbon')")).unwrap();
        assert_eq!(audit_count("table_name = 'campaigns' AND ip_address IS NULL"), 1);
        Spi::run(r#"SELECT set_config('request.headers', '{"x-real-ip":"198.51.100.4"}', true)"#).unwrap();
        Spi::run("UPDATE campaigns SET name = 'Porto'").unwrap();
        assert_eq!(audit_count("host(ip_address) = '198.51.100.4'"), 1);
    }

    #[pg_test]
    fn card_ciphertext_never_reaches_the_audit_trail() {
        install_schema();
        add_card(ALICE, "one", 2099);
        let (old, new) = Spi::get_two::<String, String>(
            "SELECT old_data::text, new_data ->> 'encrypted_card_data' FROM traveler_data_audit WHERE table_name = 'payment_methods'",
        )
        .unwrap();
        assert_eq!((old, new.as_deref()), (None, Some("[redacted]")));
        assert_eq!(audit_count("new_data::text LIKE '%abcdef%'"), 0);
    }

    /// Alice's campaign created and renamed twice: a chain of three audit rows.
    fn three_audited_changes() {
        install_schema();
        Spi::run(&format!("INSERT INTO campaigns (user_id, name) VALUES ('{ALICE}', 'a')")).unwrap();
        Spi::run("UPDATE campaigns SET name = 'b'").unwrap();
        Spi::run("UPDATE campaigns SET name = 'c'").unwrap();
    }

    #[pg_test]
    fn a_tampered_row_is_reported_by_the_chain_check() {
        three_audited_changes();
        // The superuser owns the table, so the append-only guard lets it through.
        Spi::run("UPDATE traveler_data_audit SET new_data = '{\"name\":\"forged\"}' WHERE chain_seq = 2").unwrap();
        let (seq, reason) =
            Spi::get_two::<i64, String>("SELECT chain_seq, reason FROM wallet.verify_audit_chain()").unwrap();
        assert_eq!((seq, reason.as_deref()), (Some(2), Some("content_changed")));
    }

    #[pg_test]
    fn a_deleted_audit_row_is_reported() {
        three_audited_changes();
        Spi::run("DELETE FROM traveler_data_audit WHERE chain_seq = 2").unwrap();
        let (seq, reason) =
            Spi::get_two::<i64, String>("SELECT chain_seq, reason FROM wallet.verify_audit_chain()").unwrap();
        assert_eq!((seq, reason.as_deref()), (Some(3), Some("sequence_gap")));
    }

    #[pg_test(error = "traveler_data_audit is append-only: DELETE refused")]
    fn the_audit_trail_is_append_only_for_other_roles() {
        install_schema();
        Spi::run(&format!("INSERT INTO campaigns (user_id, name) VALUES ('{ALICE}', 'a')")).unwrap();
        Spi::run("GRANT DELETE ON traveler_data_audit TO service_role").unwrap();
        Spi::run("SET LOCAL ROLE service_role").unwrap();
        Spi::run("DELETE FROM traveler_data_audit").unwrap();
    }

    #[pg_test]
    fn enable_audit_is_idempotent_and_disable_removes_it() {
        install_schema();
        for _ in 0..2 {
            Spi::run("SELECT wallet.enable_audit('public.campaigns', ARRAY['name'])").unwrap();
        }
        Spi::run(&format!("INSERT INTO campaigns (user_id, name) VALUES ('{ALICE}', 'secret trip')")).unwrap();
        assert_eq!(audit_count("new_data ->> 'name' = '[redacted]'"), 1);
        for _ in 0..2 {
            Spi::run("SELECT wallet.disable_audit('public.campaigns')").unwrap();
        }
        Spi::run("UPDATE campaigns SET name = 'x'").unwrap();
        assert_eq!(audit_count("table_name = 'campaigns'"), 1);
    }

    #[pg_test]
    fn rows_without_an_owner_column_are_attributed_to_the_caller() {
        install_schema();
        Spi::run("CREATE TABLE public.notes (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), body text)").unwrap();
        Spi::run("SELECT wallet.enable_audit('public.notes')").unwrap();
        set_claims(&format!(r#"{{"sub":"{BOB}"}}"#));
        Spi::run("INSERT INTO notes (body) VALUES ('x')").unwrap();
        assert_eq!(audit_count(&format!("table_name = 'notes' AND user_id = '{BOB}'")), 1);
    }

    fn flag(name: &str, user: &str) -> bool {
        Spi::get_one_with_args::<bool>("SELECT wallet.flag_enabled($1, $2::uuid)", &[name.into(), user.into()])
            .unwrap()
            .unwrap()
    }

    #[pg_test]
    fn flags_follow_kill_switch_allow_list_and_rollout() {
        install_schema();
        Spi::run(&format!(
            "INSERT INTO feature_flags (name, enabled, rollout_percent, allow_list) VALUES
               ('everyone', true, 100, '{{}}'), ('nobody', true, 0, '{{}}'),
               ('listed', true, 0, '{{{ALICE}}}'), ('killed', false, 100, '{{{ALICE}}}')"
        ))
        .unwrap();
        assert!(flag("everyone", BOB));
        assert!(!flag("nobody", BOB));
        assert!(flag("listed", ALICE) && !flag("listed", BOB));
        assert!(!flag("killed", ALICE));
        assert!(!flag("unknown-flag", ALICE));
        assert_eq!(Spi::get_one::<bool>("SELECT wallet.flag_enabled('everyone', NULL)").unwrap(), Some(false));
    }

    #[pg_test(error = "wallet.flag_enabled answers only about the requesting traveler (wallet.uid())")]
    fn a_traveler_cannot_ask_about_another_travelers_flags() {
        install_schema();
        Spi::run(&format!(
            "INSERT INTO feature_flags (name, enabled, allow_list) VALUES ('listed', true, '{{{ALICE}}}')"
        ))
        .unwrap();
        Spi::run("SET LOCAL ROLE authenticated").unwrap();
        set_claims(&format!(r#"{{"sub":"{BOB}"}}"#));
        assert!(!flag("listed", BOB), "about oneself: answered");
        flag("listed", ALICE);
    }

    #[pg_test]
    fn the_security_report_is_clean_for_the_wallet_schema() {
        install_schema();
        let findings = Spi::get_one::<i64>("SELECT count(*) FROM wallet.security_report()").unwrap();
        assert_eq!(findings, Some(0));
        Spi::run("CREATE FUNCTION public.leaky() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1'").unwrap();
        let code = Spi::get_one::<String>(
            "SELECT string_agg(code, ',' ORDER BY code) FROM wallet.security_report() WHERE object_name = 'public.leaky()'",
        )
        .unwrap();
        assert_eq!(
            code.as_deref(),
            Some("definer_executable_by_api_role,definer_owned_by_superuser,definer_search_path_unpinned")
        );
    }
}
