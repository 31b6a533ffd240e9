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

    #[pg_test(error = "request.jwt.claims changed its subject within a transaction; set the claims once, at the start of each transaction")]
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
        Spi::run(r#"SELECT set_config('request.headers', '{"user-agent":"curl/8","x-forwarded-for":"203.0.113.9"}', true)"#).unwrap();
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
        let index_count = Spi::get_one::<i64>(
            "SELECT count(*) FROM pg_index WHERE indrelid = 'public.notes'::regclass",
        )
        .unwrap();
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
        assert!(findings.iter().any(|f| f.starts_with("unindexed_policy_column: no index leads with owner")), "{findings:?}");
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
}
