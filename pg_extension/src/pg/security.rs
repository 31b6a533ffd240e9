//! `wallet.security_report(schemas)`: the security lint a DBA runs (and the test
//! suite asserts empty). The rules are in `crate::security`; this reads the catalog.

use pgrx::prelude::*;

use super::rls::catalog_tables;
use super::spi_failed;
use crate::security::{
    database_findings, definer_role_findings, extension_schema_findings, system_decrypt_findings, Finding,
    FunctionFacts, MaterializedViewSecurity, SequenceSecurity, TableSecurity, ViewSecurity, API_ROLES,
    DANGEROUS_TABLE_PRIVILEGES, DEFINER_ROLES,
};

/// Functions and procedures of `$1`, with the API roles of `$2` that may execute them.
const FUNCTION_FACTS_SQL: &str = "
SELECT n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
       p.prosecdef, coalesce(p.proconfig, '{}'), o.rolname::text, o.rolsuper,
       ARRAY(SELECT r.rolname::text FROM pg_roles r
              WHERE r.rolname = ANY($2) AND has_function_privilege(r.oid, p.oid, 'EXECUTE') ORDER BY 1),
       EXISTS (SELECT FROM pg_depend d
                WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
  FROM pg_proc p
  JOIN pg_namespace n ON n.oid = p.pronamespace
  JOIN pg_roles o ON o.oid = p.proowner
 WHERE n.nspname = ANY($1) AND p.prokind IN ('f', 'p')
 ORDER BY 1";

/// Sequences of `$1`, with what `anon` and `authenticated` may do with each.
const SEQUENCE_FACTS_SQL: &str = "
SELECT n.nspname || '.' || c.relname,
       ARRAY(SELECT r.rolname || ':' || privilege
               FROM pg_roles r, unnest(ARRAY['USAGE', 'SELECT', 'UPDATE']) AS privilege
              WHERE r.rolname IN ('anon', 'authenticated') AND has_sequence_privilege(r.oid, c.oid, privilege)
              ORDER BY 1)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'S' AND n.nspname = ANY($1)
 ORDER BY 1";

/// Views of `$1` and their options.
const VIEW_FACTS_SQL: &str = "
SELECT n.nspname || '.' || c.relname, coalesce(c.reloptions, '{}')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'v' AND n.nspname = ANY($1)
 ORDER BY 1";

/// Materialized views of `$1`, with the traveler-facing roles that may read them.
const MATVIEW_FACTS_SQL: &str = "
SELECT n.nspname || '.' || c.relname,
       ARRAY(SELECT r.rolname::text FROM pg_roles r
              WHERE r.rolname IN ('anon', 'authenticated') AND has_table_privilege(r.oid, c.oid, 'SELECT') ORDER BY 1)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'm' AND n.nspname = ANY($1)
 ORDER BY 1";

/// Memberships (member, role) in which one of `$1` (the definer roles) takes part.
const DEFINER_MEMBERSHIPS_SQL: &str = "
SELECT pg_get_userbyid(m.member)::text, pg_get_userbyid(m.roleid)::text
  FROM pg_auth_members m
 WHERE pg_get_userbyid(m.roleid) = ANY($1) OR pg_get_userbyid(m.member) = ANY($1)
 ORDER BY 1, 2";

/// The API roles of `$1` that are members of the system decryption role.
const SYSTEM_DECRYPT_MEMBERS_SQL: &str = "
SELECT r.rolname::text
  FROM pg_roles r
 WHERE r.rolname = ANY($1)
   AND CASE WHEN EXISTS (SELECT FROM pg_roles s WHERE s.rolname = 'parker_wallet_system_decrypt')
            THEN pg_has_role(r.oid, 'parker_wallet_system_decrypt', 'MEMBER') ELSE false END
 ORDER BY 1";

/// parker_wallet's schema and whether a superuser owns it.
const EXTENSION_SCHEMA_SQL: &str = "
SELECT n.nspname::text, r.rolsuper
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace JOIN pg_roles r ON r.oid = n.nspowner
 WHERE e.extname = 'parker_wallet'";

/// Whether PUBLIC may create temporary objects in this database.
const TEMP_FOR_PUBLIC_SQL: &str = "
SELECT current_database()::text,
       EXISTS (SELECT FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) AS a
                WHERE d.datname = current_database() AND a.grantee = 0 AND a.privilege_type = 'TEMPORARY')";

fn catalog_findings(schemas: Vec<String>) -> Vec<Finding> {
    let mut findings: Vec<Finding> = catalog_tables(schemas.clone(), API_ROLES, DANGEROUS_TABLE_PRIVILEGES)
        .into_iter()
        .flat_map(|table| {
            TableSecurity {
                name: format!("{}.{}", table.schema, table.name),
                rls: table.rls,
                dangerous_grants: table.grants,
            }
            .findings()
        })
        .collect();
    let roles: Vec<String> = API_ROLES.iter().map(|r| (*r).to_owned()).collect();
    let more = Spi::connect(|client| {
        let mut found = Vec::new();
        for row in client.select(FUNCTION_FACTS_SQL, None, &[schemas.clone().into(), roles.clone().into()])? {
            let function = FunctionFacts {
                name: row.get(1)?.unwrap_or_default(),
                security_definer: row.get(2)?.unwrap_or(false),
                config: row.get(3)?.unwrap_or_default(),
                owner: row.get(4)?.unwrap_or_default(),
                owner_is_superuser: row.get(5)?.unwrap_or(false),
                executable_by: row.get(6)?.unwrap_or_default(),
                extension_member: row.get(7)?.unwrap_or(false),
            };
            found.extend(function.findings());
        }
        for row in client.select(SEQUENCE_FACTS_SQL, None, &[schemas.clone().into()])? {
            let sequence =
                SequenceSecurity { name: row.get(1)?.unwrap_or_default(), api_grants: row.get(2)?.unwrap_or_default() };
            found.extend(sequence.findings());
        }
        for row in client.select(VIEW_FACTS_SQL, None, &[schemas.clone().into()])? {
            let view = ViewSecurity { name: row.get(1)?.unwrap_or_default(), options: row.get(2)?.unwrap_or_default() };
            found.extend(view.findings());
        }
        for row in client.select(MATVIEW_FACTS_SQL, None, &[schemas.clone().into()])? {
            let matview = MaterializedViewSecurity {
                name: row.get(1)?.unwrap_or_default(),
                api_readers: row.get(2)?.unwrap_or_default(),
            };
            found.extend(matview.findings());
        }
        let definer_roles: Vec<String> = DEFINER_ROLES.iter().map(|r| (*r).to_owned()).collect();
        let mut memberships = Vec::new();
        for row in client.select(DEFINER_MEMBERSHIPS_SQL, None, &[definer_roles.into()])? {
            memberships.push((row.get::<String>(1)?.unwrap_or_default(), row.get::<String>(2)?.unwrap_or_default()));
        }
        found.extend(definer_role_findings(&memberships));
        let mut decrypting = Vec::new();
        for row in client.select(SYSTEM_DECRYPT_MEMBERS_SQL, None, &[roles.clone().into()])? {
            decrypting.push(row.get::<String>(1)?.unwrap_or_default());
        }
        found.extend(system_decrypt_findings(&decrypting));
        for row in client.select(EXTENSION_SCHEMA_SQL, None, &[])? {
            found.extend(extension_schema_findings(
                &row.get::<String>(1)?.unwrap_or_default(),
                row.get(2)?.unwrap_or(false),
            ));
        }
        let database = client.select(TEMP_FOR_PUBLIC_SQL, Some(1), &[])?;
        let database = database.first();
        found.extend(database_findings(
            &database.get::<String>(1)?.unwrap_or_default(),
            database.get(2)?.unwrap_or(false),
        ));
        Ok::<_, pgrx::spi::Error>(found)
    })
    .unwrap_or_else(|e| spi_failed(e));
    findings.extend(more);
    findings
}

/// Everything wrong with the security of `schemas` (and of the database itself):
/// one row per finding, `code` stable, `level` ERROR or WARN. Empty is the goal.
#[pg_extern(stable)]
#[search_path(pg_catalog, pg_temp)]
fn security_report(
    schemas: default!(Vec<Option<String>>, "ARRAY['public', 'wallet', 'wallet_internal']"),
) -> TableIterator<
    'static,
    (
        name!(code, String),
        name!(level, String),
        name!(object_type, String),
        name!(object_name, String),
        name!(detail, String),
    ),
> {
    let schemas: Vec<String> = schemas.into_iter().flatten().collect();
    TableIterator::new(
        catalog_findings(schemas).into_iter().map(|f| {
            (f.code.to_owned(), f.level.as_str().to_owned(), f.object_type.to_owned(), f.object_name, f.detail)
        }),
    )
}

/// SQL behaviour of these wrappers, inside a real backend (`cargo pgrx test`);
/// each test runs in its own transaction, rolled back afterwards.
#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use pgrx::prelude::*;

    use crate::pg::test_support::*;

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
