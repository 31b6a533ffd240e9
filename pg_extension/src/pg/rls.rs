//! `wallet.enable_owner_rls(...)` and `wallet.rls_report(...)`.

use pgrx::prelude::*;
use pgrx::spi::{quote_identifier, quote_qualified_identifier};
use pgrx::PgRelation;

use super::{raise, spi_failed};
use crate::rls::{owner_index_name, owner_policy_name, owner_policy_statements, PolicyFacts, TableFacts};

/// Protects `target` so each row is visible and writable only to the user named by
/// its `owner_column`: RLS enabled and forced, one owner policy for `roles`, and an
/// index on the owner column if none leads with it. Safe to run again.
#[pg_extern]
fn enable_owner_rls(target: PgRelation, owner_column: &str, roles: default!(Vec<String>, "'{authenticated}'")) {
    // Keep only the oid: an open relation would make ALTER TABLE refuse ("in use").
    let target = {
        let oid = target.oid();
        drop(target);
        oid
    };
    let table = Spi::get_three_with_args::<String, String, String>(
        "SELECT n.nspname::text, c.relname::text, c.relkind::text
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1",
        &[target.into()],
    )
    .unwrap_or_else(|e| spi_failed(e));
    let (Some(schema), Some(name), Some(kind)) = table else {
        raise(PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE, "enable_owner_rls: no such table")
    };
    if kind != "r" && kind != "p" {
        raise(PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE, format!("enable_owner_rls: {schema}.{name} is not a table"));
    }
    let column_type = Spi::get_one_with_args::<String>(
        "SELECT (SELECT format_type(atttypid, atttypmod) FROM pg_attribute
                  WHERE attrelid = $1 AND attname = $2 AND attnum > 0 AND NOT attisdropped)",
        &[target.into(), owner_column.into()],
    )
    .unwrap_or_else(|e| spi_failed(e));
    match column_type.as_deref() {
        Some("uuid") => {}
        Some(other) => raise(
            PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
            format!("enable_owner_rls: owner column {owner_column} of {schema}.{name} is {other}, not uuid"),
        ),
        None => raise(
            PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
            format!("enable_owner_rls: {schema}.{name} has no column {owner_column}"),
        ),
    }

    let policy = owner_policy_name(&name);
    let policy_exists = Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT FROM pg_policy WHERE polrelid = $1 AND polname = $2)",
        &[target.into(), policy.as_str().into()],
    )
    .unwrap_or_else(|e| spi_failed(e))
    .unwrap_or(false);
    let quoted_table = quote_qualified_identifier(&schema, &name);
    let quoted_roles: Vec<String> = roles.iter().map(quote_identifier).collect();
    let statements = owner_policy_statements(
        &quoted_table,
        &quote_identifier(&policy),
        &quote_identifier(owner_column),
        &quoted_roles,
        policy_exists,
    );
    for statement in statements {
        Spi::run(&statement).unwrap_or_else(|e| spi_failed(e));
    }

    let indexed = Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT FROM pg_index i JOIN pg_attribute a
                          ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                         WHERE i.indrelid = $1 AND a.attname = $2)",
        &[target.into(), owner_column.into()],
    )
    .unwrap_or_else(|e| spi_failed(e));
    if indexed != Some(true) {
        let index = quote_identifier(owner_index_name(&name, owner_column));
        Spi::run(&format!("CREATE INDEX {index} ON {quoted_table} ({})", quote_identifier(owner_column)))
            .unwrap_or_else(|e| spi_failed(e));
    }
}

/// The catalog facts behind the reports, one row per table (partitions too: read
/// directly, a partition applies its own RLS, not its parent's), policies as JSON,
/// and which of `$2` (roles) hold which of `$3` (privileges) on the table.
/// Run with an empty search path so policy expressions deparse fully qualified.
const TABLE_FACTS_SQL: &str = "
SELECT n.nspname::text, c.relname::text, c.relrowsecurity, c.relforcerowsecurity,
       coalesce((
         SELECT jsonb_agg(jsonb_build_object(
                  'name', p.polname, 'permissive', p.polpermissive,
                  'roles', (SELECT coalesce(jsonb_agg(CASE WHEN r = 0 THEN 'public' ELSE r::regrole::text END), '[]')
                              FROM unnest(p.polroles) AS r),
                  'using', pg_get_expr(p.polqual, p.polrelid),
                  'check', pg_get_expr(p.polwithcheck, p.polrelid),
                  'columns', coalesce((
                     SELECT jsonb_agg(DISTINCT a.attname)
                       FROM pg_depend d
                       JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                      WHERE d.classid = 'pg_policy'::regclass AND d.objid = p.oid
                        AND d.refclassid = 'pg_class'::regclass AND d.refobjid = c.oid
                        AND d.refobjsubid > 0), '[]'::jsonb))
                ORDER BY p.polname)
           FROM pg_policy p WHERE p.polrelid = c.oid), '[]'::jsonb)::text,
       coalesce((
         SELECT array_agg(DISTINCT a.attname::text)
           FROM pg_index i
           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
          WHERE i.indrelid = c.oid), ARRAY[]::text[]),
       ARRAY(SELECT r.rolname || ':' || privilege
               FROM pg_roles r, unnest($3::text[]) AS privilege
              WHERE r.rolname = ANY($2)
                AND CASE privilege WHEN 'REFERENCES' THEN has_any_column_privilege(r.oid, c.oid, privilege)
                                   ELSE has_table_privilege(r.oid, c.oid, privilege) END
              ORDER BY 1)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY($1)
 ORDER BY 1, 2";

/// One table of the catalog: schema, name, its RLS facts, and `role:PRIVILEGE`
/// for each of `privileges` one of `roles` holds on it.
pub(crate) struct CatalogTable {
    pub schema: String,
    pub name: String,
    pub rls: TableFacts,
    pub grants: Vec<String>,
}

/// The tables of `schemas`, with the grants of `roles` among `privileges`.
pub(crate) fn catalog_tables(schemas: Vec<String>, roles: &[&str], privileges: &[&str]) -> Vec<CatalogTable> {
    let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
    let privileges: Vec<String> = privileges.iter().map(|p| (*p).to_owned()).collect();
    Spi::connect(|client| {
        let mut tables = Vec::new();
        for row in client.select(TABLE_FACTS_SQL, None, &[schemas.into(), roles.into(), privileges.into()])? {
            let policies_json: String = row.get(5)?.unwrap_or_default();
            let policies: Vec<PolicyFacts> = serde_json::from_str(&policies_json).unwrap_or_else(|e| {
                raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("parker_wallet: policy facts: {e}"))
            });
            tables.push(CatalogTable {
                schema: row.get::<String>(1)?.unwrap_or_default(),
                name: row.get::<String>(2)?.unwrap_or_default(),
                rls: TableFacts {
                    rls_enabled: row.get(3)?.unwrap_or(false),
                    rls_forced: row.get(4)?.unwrap_or(false),
                    policies,
                    index_leading_columns: row.get::<Vec<String>>(6)?.unwrap_or_default(),
                },
                grants: row.get::<Vec<String>>(7)?.unwrap_or_default(),
            });
        }
        Ok::<_, pgrx::spi::Error>(tables)
    })
    .unwrap_or_else(|e| spi_failed(e))
}

/// For every table in `schemas`: whether RLS is enabled and forced, how many
/// policies it has, which columns they use and whether those are indexed, and
/// what is wrong (`code: explanation`, empty when nothing is).
#[pg_extern(stable)]
#[search_path(pg_catalog, pg_temp)]
#[allow(clippy::type_complexity)] // pgrx reads the column names from this signature: no type alias
fn rls_report(
    schemas: Vec<Option<String>>,
) -> TableIterator<
    'static,
    (
        name!(schema_name, String),
        name!(table_name, String),
        name!(rls_enabled, bool),
        name!(rls_forced, bool),
        name!(policy_count, i32),
        name!(policy_columns, Vec<String>),
        name!(policy_columns_indexed, bool),
        name!(findings, Vec<String>),
    ),
> {
    let schemas: Vec<String> = schemas.into_iter().flatten().collect();
    let rows: Vec<_> = catalog_tables(schemas, &[], &[])
        .into_iter()
        .map(|table| {
            let facts = table.rls;
            (
                table.schema,
                table.name,
                facts.rls_enabled,
                facts.rls_forced,
                i32::try_from(facts.policies.len()).unwrap_or(i32::MAX),
                facts.policy_columns(),
                facts.unindexed_policy_columns().is_empty(),
                facts.findings(),
            )
        })
        .collect();
    TableIterator::new(rows)
}

/// SQL behaviour of these wrappers, inside a real backend (`cargo pgrx test`);
/// each test runs in its own transaction, rolled back afterwards.
#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use pgrx::prelude::*;

    use crate::pg::test_support::*;

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
}
