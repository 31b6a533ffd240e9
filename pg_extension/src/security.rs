//! The database security lint behind `wallet.security_report(schemas)`: what is
//! wrong with a schema's functions, tables, sequences and views, each finding
//! with a stable code. Pure functions over catalog facts that `pg::security`
//! gathers. The checks follow Supabase's own linter (splinter) where it applies
//! here, and add the ones a payments database needs (no superuser-owned definer
//! functions, no TRIGGER/TRUNCATE/REFERENCES for API roles).

use crate::rls::TableFacts;

/// The roles PostgREST and Supabase hand to the outside world.
pub const API_ROLES: &[&str] = &["anon", "authenticated", "service_role"];

/// Table privileges no API role needs, each a way around the wallet's controls:
/// TRIGGER attaches code to a table, TRUNCATE empties it past row triggers and
/// RLS, REFERENCES lets a foreign key probe for (and pin) rows.
pub const DANGEROUS_TABLE_PRIVILEGES: &[&str] = &["TRIGGER", "TRUNCATE", "REFERENCES"];

/// The NOLOGIN roles that own the wallet's SECURITY DEFINER functions. Nobody is
/// a member of them: a member would act as those functions (and could alter them).
pub const DEFINER_ROLES: &[&str] = &[
    "parker_wallet_auditor",
    "parker_wallet_scorer",
    "parker_wallet_flag_reader",
    "parker_wallet_lookup",
    "parker_wallet_event_recorder",
    // Created by migrations 0012 (phone verification), 0014 (consents), 0015
    // (erasures) and 0017 (operations), not by the extension.
    "parker_wallet_phone_gate",
    "parker_wallet_consent_recorder",
    "parker_wallet_erasure_guard",
    "parker_wallet_operations",
];

/// The wallet's SECURITY DEFINER functions and the role each must belong to. One
/// that stopped being SECURITY DEFINER, or changed hands, was altered by someone
/// (a SECURITY INVOKER audit trigger would run as whoever writes, superuser included).
pub const WALLET_DEFINERS: &[(&str, &str)] = &[
    ("wallet.audit_trigger()", "parker_wallet_auditor"),
    ("wallet.completion_trigger()", "parker_wallet_scorer"),
    ("wallet.flag_enabled(name text, user_id uuid)", "parker_wallet_flag_reader"),
    (
        "wallet_internal.record_stripe_event(event_id text, event_type text, event_payload jsonb)",
        "parker_wallet_event_recorder",
    ),
    ("wallet_internal.traveler_of_stripe_object(customer_id text, payment_method_id text)", "parker_wallet_lookup"),
    ("wallet_internal.bookings_to_reconcile(min_age interval)", "parker_wallet_lookup"),
    ("wallet_internal.campaign_owner(campaign uuid)", "parker_wallet_lookup"),
    ("wallet_internal.account_age_days(on_day date)", "parker_wallet_lookup"),
    ("wallet_internal.traveler_exists()", "parker_wallet_lookup"),
    (
        "wallet_internal.claim_phone_verification(to_number text, code_ttl interval, send_window interval, \
         per_traveler integer, per_number integer, min_gap interval)",
        "parker_wallet_phone_gate",
    ),
    ("wallet_internal.record_consent()", "parker_wallet_consent_recorder"),
    ("wallet_internal.refuse_erased_traveler()", "parker_wallet_erasure_guard"),
    (
        "wallet_internal.record_job_run(job_name text, started_at timestamp with time zone, exit_code integer)",
        "parker_wallet_operations",
    ),
    (
        "wallet_internal.operations_figures(capture_window_hours integer, alert_before_hours integer)",
        "parker_wallet_operations",
    ),
];

/// SECURITY DEFINER functions that API roles may call on purpose, because they
/// authorise the caller themselves. `wallet.flag_enabled` answers only about the
/// caller's own `wallet.uid()` (unless the caller may read the flags anyway).
pub const VETTED_DEFINER_ENTRY_POINTS: &[&str] = &["wallet.flag_enabled(name text, user_id uuid)"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warn,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "ERROR",
            Self::Warn => "WARN",
        }
    }
}

/// One thing to fix. `code` is stable: alerting and tests match on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub code: &'static str,
    pub level: Level,
    pub object_type: &'static str,
    pub object_name: String,
    pub detail: String,
}

impl Finding {
    fn new(code: &'static str, level: Level, object_type: &'static str, object_name: &str, detail: String) -> Self {
        Self { code, level, object_type, object_name: object_name.to_owned(), detail }
    }
}

/// One function as the catalog describes it.
#[derive(Debug, Clone, Default)]
pub struct FunctionFacts {
    /// `schema.name(identity arguments)`.
    pub name: String,
    pub security_definer: bool,
    /// `proconfig`: `name=value` settings attached to the function.
    pub config: Vec<String>,
    pub owner: String,
    pub owner_is_superuser: bool,
    /// API roles (or PUBLIC, which reaches them all) that may execute it.
    pub executable_by: Vec<String>,
    /// Created by an extension's script (its owner answers for it, as splinter assumes).
    pub extension_member: bool,
}

/// The schemas of a `search_path` setting, unquoted, in order.
pub fn search_path_schemas(config: &[String]) -> Option<Vec<String>> {
    let value = config.iter().find_map(|c| c.strip_prefix("search_path="))?;
    Some(value.split(',').map(|s| s.trim().trim_matches('"').to_owned()).filter(|s| !s.is_empty()).collect())
}

impl FunctionFacts {
    pub fn findings(&self) -> Vec<Finding> {
        let mut found = Vec::new();
        let path = search_path_schemas(&self.config);
        let finding = |code, level, detail: String| Finding::new(code, level, "function", &self.name, detail);
        if let Some((_, owner)) = WALLET_DEFINERS.iter().find(|(name, _)| *name == self.name) {
            if !self.security_definer || self.owner != *owner {
                found.push(finding(
                    "wallet_definer_altered",
                    Level::Error,
                    format!(
                        "must be SECURITY DEFINER owned by {owner}; it is {} owned by {}",
                        if self.security_definer { "SECURITY DEFINER" } else { "SECURITY INVOKER" },
                        self.owner
                    ),
                ));
            }
        }
        if self.security_definer {
            // pg_temp is searched first unless listed: a caller's temporary
            // table, type or operator would shadow the definer's own; and a
            // schema before pg_catalog could shadow a built-in.
            let pinned = path.as_ref().is_some_and(|p| {
                p.first().map(String::as_str) == Some("pg_catalog") && p.last().map(String::as_str) == Some("pg_temp")
            });
            if !pinned {
                found.push(finding(
                    "definer_search_path_unpinned",
                    Level::Error,
                    format!(
                        "SECURITY DEFINER with search_path {}: pin it to pg_catalog first and pg_temp last \
                         or a caller's objects run with the owner's rights",
                        path.map_or("unset".to_owned(), |p| p.join(", "))
                    ),
                ));
            }
            if self.owner_is_superuser {
                found.push(finding(
                    "definer_owned_by_superuser",
                    Level::Error,
                    format!(
                        "SECURITY DEFINER owned by superuser {}: any slip in it (or in a trigger on a table it \
                         writes) runs as superuser; give it to a NOLOGIN role holding only what it needs",
                        self.owner
                    ),
                ));
            }
            if !self.executable_by.is_empty() && !VETTED_DEFINER_ENTRY_POINTS.contains(&self.name.as_str()) {
                found.push(finding(
                    "definer_executable_by_api_role",
                    Level::Error,
                    format!(
                        "SECURITY DEFINER executable by {}: revoke EXECUTE, or make it SECURITY INVOKER",
                        self.executable_by.join(", ")
                    ),
                ));
            }
        } else if path.is_none() && !self.extension_member {
            found.push(finding(
                "function_search_path_mutable",
                Level::Warn,
                "search_path is not set: the function resolves names through its caller's path".to_owned(),
            ));
        }
        found
    }
}

/// One table: its RLS facts and the API roles' privileges on it.
#[derive(Debug, Clone)]
pub struct TableSecurity {
    /// `schema.name`.
    pub name: String,
    pub rls: TableFacts,
    /// `role:PRIVILEGE` for each of [`DANGEROUS_TABLE_PRIVILEGES`] an API role holds.
    pub dangerous_grants: Vec<String>,
}

impl TableSecurity {
    pub fn findings(&self) -> Vec<Finding> {
        let mut found: Vec<Finding> = self
            .rls
            .rls_findings()
            .into_iter()
            .map(|finding| {
                let level = match finding.code {
                    "rls_disabled" | "rls_not_forced" | "always_true_policy" | "policy_references_user_metadata" => {
                        Level::Error
                    }
                    _ => Level::Warn,
                };
                Finding::new(finding.code, level, "table", &self.name, finding.detail)
            })
            .collect();
        for grant in &self.dangerous_grants {
            found.push(Finding::new(
                "api_role_dangerous_privilege",
                Level::Error,
                "table",
                &self.name,
                format!("{grant} is granted: no API role needs TRIGGER, TRUNCATE or REFERENCES"),
            ));
        }
        found
    }
}

/// A sequence and what the traveler-facing roles may do with it.
#[derive(Debug, Clone)]
pub struct SequenceSecurity {
    pub name: String,
    /// `role:PRIVILEGE` held by `anon` or `authenticated`.
    pub api_grants: Vec<String>,
}

impl SequenceSecurity {
    pub fn findings(&self) -> Vec<Finding> {
        if self.api_grants.is_empty() {
            return Vec::new();
        }
        vec![Finding::new(
            "sequence_granted_to_api_role",
            Level::Warn,
            "sequence",
            &self.name,
            format!(
                "{} granted: travelers never need to draw or reset a sequence (it also counts rows they cannot see)",
                self.api_grants.join(", ")
            ),
        )]
    }
}

/// A view and its `reloptions`.
#[derive(Debug, Clone)]
pub struct ViewSecurity {
    pub name: String,
    pub options: Vec<String>,
}

impl ViewSecurity {
    pub fn findings(&self) -> Vec<Finding> {
        let invoker = self.options.iter().any(|o| {
            o.split_once('=').is_some_and(|(k, v)| {
                k == "security_invoker" && ["true", "on", "1", "yes"].contains(&v.to_ascii_lowercase().as_str())
            })
        });
        if invoker {
            return Vec::new();
        }
        vec![Finding::new(
            "view_not_security_invoker",
            Level::Error,
            "view",
            &self.name,
            "the view reads its tables with its owner's rights, past the caller's RLS: \
             ALTER VIEW ... SET (security_invoker = true)"
                .to_owned(),
        )]
    }
}

/// A materialized view and the traveler-facing roles that may read it (it has no RLS).
#[derive(Debug, Clone)]
pub struct MaterializedViewSecurity {
    pub name: String,
    pub api_readers: Vec<String>,
}

impl MaterializedViewSecurity {
    pub fn findings(&self) -> Vec<Finding> {
        if self.api_readers.is_empty() {
            return Vec::new();
        }
        vec![Finding::new(
            "materialized_view_in_api",
            Level::Warn,
            "materialized view",
            &self.name,
            format!("readable by {}: a materialized view has no row level security", self.api_readers.join(", ")),
        )]
    }
}

/// Memberships that involve a definer role (`member -> role`).
pub fn definer_role_findings(memberships: &[(String, String)]) -> Vec<Finding> {
    memberships
        .iter()
        .map(|(member, role)| {
            let definer = if DEFINER_ROLES.contains(&role.as_str()) { role } else { member };
            Finding::new(
                "definer_role_has_members",
                Level::Error,
                "role",
                definer,
                format!("{member} is a member of {role}: a definer role is nobody's, nor anybody's member"),
            )
        })
        .collect()
}

/// API roles holding system decryption: every traveler (or every holder of the
/// service key) could open every traveler's records through `wallet.decrypt`.
pub fn system_decrypt_findings(api_members: &[String]) -> Vec<Finding> {
    api_members
        .iter()
        .map(|role| {
            Finding::new(
                "system_decrypt_for_api_role",
                Level::Error,
                "role",
                role,
                format!(
                    "{role} is a member of {}: whoever reaches the API as {role} decrypts every traveler's records",
                    crate::decryption::SYSTEM_DECRYPT_ROLE
                ),
            )
        })
        .collect()
}

/// The extension's own schema must be a superuser's: its owner could otherwise
/// put functions there that the install script and every policy resolve first.
pub fn extension_schema_findings(schema: &str, owner_is_superuser: bool) -> Vec<Finding> {
    if owner_is_superuser {
        return Vec::new();
    }
    vec![Finding::new(
        "extension_schema_not_superuser_owned",
        Level::Error,
        "schema",
        schema,
        "parker_wallet's schema belongs to a role that is not a superuser".to_owned(),
    )]
}

/// The current database: whether every role may create temporary objects.
pub fn database_findings(database: &str, temp_for_public: bool) -> Vec<Finding> {
    if !temp_for_public {
        return Vec::new();
    }
    vec![Finding::new(
        "database_temp_for_public",
        Level::Warn,
        "database",
        database,
        "PUBLIC holds TEMPORARY: every role can create the temporary objects that shadow names in \
         functions without a pinned search_path; revoke it and grant TEMPORARY to the roles that need it"
            .to_owned(),
    )]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rls::PolicyFacts;

    fn definer(name: &str, path: &str) -> FunctionFacts {
        FunctionFacts {
            name: name.to_owned(),
            security_definer: true,
            config: vec![format!("search_path={path}")],
            owner: "parker_wallet_auditor".into(),
            ..Default::default()
        }
    }

    fn codes(findings: &[Finding]) -> Vec<&'static str> {
        findings.iter().map(|f| f.code).collect()
    }

    #[test]
    fn search_paths_parse_with_quotes_and_spaces() {
        let config = vec!["plan_cache_mode=force_generic_plan".into(), r#"search_path=pg_catalog, "pg_temp""#.into()];
        assert_eq!(search_path_schemas(&config), Some(vec!["pg_catalog".into(), "pg_temp".into()]));
        assert_eq!(search_path_schemas(&[]), None);
    }

    #[test]
    fn a_pinned_definer_owned_by_a_nologin_role_is_clean() {
        assert!(definer("wallet_internal.f()", "pg_catalog, pg_temp").findings().is_empty());
    }

    #[test]
    fn a_definer_without_pg_temp_last_is_flagged() {
        for path in ["pg_catalog", "pg_temp, pg_catalog", "public, pg_catalog", "public, pg_catalog, pg_temp"] {
            assert_eq!(codes(&definer("s.f()", path).findings()), ["definer_search_path_unpinned"], "{path}");
        }
        let mut unset = definer("s.f()", "");
        unset.config.clear();
        assert_eq!(codes(&unset.findings()), ["definer_search_path_unpinned"]);
    }

    #[test]
    fn superuser_owned_and_api_executable_definers_are_flagged() {
        let mut function = definer("s.f()", "pg_catalog, pg_temp");
        function.owner_is_superuser = true;
        function.executable_by = vec!["anon".into()];
        assert_eq!(codes(&function.findings()), ["definer_owned_by_superuser", "definer_executable_by_api_role"]);
        let mut vetted = definer(VETTED_DEFINER_ENTRY_POINTS[0], "pg_catalog, pg_temp");
        vetted.owner = "parker_wallet_flag_reader".into();
        vetted.executable_by = vec!["authenticated".into()];
        assert!(vetted.findings().is_empty());
    }

    #[test]
    fn invoker_functions_need_only_some_search_path_unless_an_extension_owns_them() {
        let mut invoker = FunctionFacts { name: "public.f()".into(), ..Default::default() };
        assert_eq!(codes(&invoker.findings()), ["function_search_path_mutable"]);
        invoker.extension_member = true;
        assert!(invoker.findings().is_empty());
        invoker.config = vec!["search_path=pg_catalog".into()];
        invoker.extension_member = false;
        assert!(invoker.findings().is_empty());
    }

    #[test]
    fn tables_report_rls_and_dangerous_grants() {
        let table = TableSecurity {
            name: "public.t".into(),
            rls: TableFacts { rls_enabled: false, rls_forced: false, policies: vec![], index_leading_columns: vec![] },
            dangerous_grants: vec!["service_role:TRIGGER".into()],
        };
        assert_eq!(codes(&table.findings()), ["rls_disabled", "rls_not_forced", "api_role_dangerous_privilege"]);
        let protected = TableSecurity {
            rls: TableFacts {
                rls_enabled: true,
                rls_forced: true,
                policies: vec![PolicyFacts {
                    name: "own".into(),
                    permissive: true,
                    roles: vec!["authenticated".into()],
                    using_expr: Some("(( SELECT wallet.uid() AS uid) = user_id)".into()),
                    check_expr: None,
                    columns: vec!["user_id".into()],
                }],
                index_leading_columns: vec!["user_id".into()],
            },
            dangerous_grants: vec![],
            ..table
        };
        assert!(protected.findings().is_empty());
    }

    #[test]
    fn an_altered_wallet_definer_is_flagged() {
        let (name, owner) = WALLET_DEFINERS[0];
        let mut audit = definer(name, "pg_catalog, pg_temp");
        audit.owner = owner.into();
        assert!(audit.findings().is_empty());
        audit.security_definer = false;
        assert_eq!(codes(&audit.findings()), ["wallet_definer_altered"]);
        let mut moved = definer(name, "pg_catalog, pg_temp");
        moved.owner = "postgres".into();
        assert_eq!(codes(&moved.findings()), ["wallet_definer_altered"]);
    }

    #[test]
    fn definer_role_members_matviews_and_the_extension_schema() {
        let found = definer_role_findings(&[("service_role".into(), "parker_wallet_auditor".into())]);
        assert_eq!(
            (codes(&found), found[0].object_name.as_str()),
            (vec!["definer_role_has_members"], "parker_wallet_auditor")
        );
        let matview = MaterializedViewSecurity { name: "public.m".into(), api_readers: vec!["anon".into()] };
        assert_eq!(codes(&matview.findings()), ["materialized_view_in_api"]);
        assert!(MaterializedViewSecurity { api_readers: vec![], ..matview }.findings().is_empty());
        assert_eq!(codes(&extension_schema_findings("wallet", false)), ["extension_schema_not_superuser_owned"]);
        assert!(extension_schema_findings("wallet", true).is_empty());
        let decrypting = system_decrypt_findings(&["authenticated".into()]);
        assert_eq!(
            (codes(&decrypting), decrypting[0].object_name.as_str()),
            (vec!["system_decrypt_for_api_role"], "authenticated")
        );
    }

    #[test]
    fn sequences_views_and_the_database() {
        let sequence = SequenceSecurity { name: "public.s".into(), api_grants: vec!["anon:USAGE".into()] };
        assert_eq!(codes(&sequence.findings()), ["sequence_granted_to_api_role"]);
        assert!(SequenceSecurity { api_grants: vec![], ..sequence }.findings().is_empty());
        let view = ViewSecurity { name: "public.v".into(), options: vec![] };
        assert_eq!(codes(&view.findings()), ["view_not_security_invoker"]);
        assert!(ViewSecurity { options: vec!["security_invoker=on".into()], ..view }.findings().is_empty());
        assert_eq!(codes(&database_findings("app", true)), ["database_temp_for_public"]);
        assert!(database_findings("app", false).is_empty());
    }
}
