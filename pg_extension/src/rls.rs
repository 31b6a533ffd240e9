//! Row-level security as data: what an owner policy looks like, and what is wrong
//! with a table's protection. Pure functions; `pg::rls` feeds them catalog facts.

use serde::Deserialize;

use crate::security::DEFINER_ROLES;

/// The expression every owner policy compares against. Wrapped in a sub-select so
/// the planner runs it once per query (an initPlan), not once per row.
pub const OWNER_EXPRESSION: &str = "(select wallet.uid())";

/// Request-context functions that cost a call per row when not wrapped in `(select ...)`.
const PER_ROW_CALLS: &[&str] =
    &["wallet.uid()", "wallet.jwt()", "auth.uid()", "auth.jwt()", "auth.role()", "auth.email()", "current_setting("];

/// One policy as the catalog describes it.
#[derive(Debug, Clone, Deserialize)]
pub struct PolicyFacts {
    pub name: String,
    pub permissive: bool,
    /// Roles the policy applies to; `public` for every role.
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(rename = "using")]
    pub using_expr: Option<String>,
    #[serde(rename = "check")]
    pub check_expr: Option<String>,
    /// Columns of the table the policy's expressions reference.
    pub columns: Vec<String>,
}

/// One thing wrong with a table's protection: a stable code and an explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RlsFinding {
    pub code: &'static str,
    pub detail: String,
}

impl RlsFinding {
    fn new(code: &'static str, detail: String) -> Self {
        Self { code, detail }
    }
}

impl std::fmt::Display for RlsFinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

impl PolicyFacts {
    /// Whether the policy applies to the wallet's definer roles and nobody else.
    pub fn only_for_definer_roles(&self) -> bool {
        !self.roles.is_empty() && self.roles.iter().all(|r| DEFINER_ROLES.contains(&r.as_str()))
    }
}

/// One table as the catalog describes it.
#[derive(Debug, Clone)]
pub struct TableFacts {
    pub rls_enabled: bool,
    pub rls_forced: bool,
    pub policies: Vec<PolicyFacts>,
    /// Columns that lead at least one index.
    pub index_leading_columns: Vec<String>,
}

impl TableFacts {
    /// Columns referenced by any policy, sorted, each once.
    pub fn policy_columns(&self) -> Vec<String> {
        let mut columns: Vec<String> = self.policies.iter().flat_map(|p| p.columns.iter().cloned()).collect();
        columns.sort();
        columns.dedup();
        columns
    }

    pub fn unindexed_policy_columns(&self) -> Vec<String> {
        self.policy_columns().into_iter().filter(|column| !self.index_leading_columns.contains(column)).collect()
    }

    /// Everything worth fixing, each as `code: explanation`. Empty means protected.
    pub fn findings(&self) -> Vec<String> {
        self.rls_findings().iter().map(ToString::to_string).collect()
    }

    /// The same findings with their stable codes apart from their explanations.
    pub fn rls_findings(&self) -> Vec<RlsFinding> {
        let mut findings = Vec::new();
        if !self.rls_enabled {
            findings.push(RlsFinding::new(
                "rls_disabled",
                "row level security is not enabled, every role with a grant sees every row".to_owned(),
            ));
        } else if self.policies.is_empty() {
            findings.push(RlsFinding::new(
                "no_policies",
                "row level security is on but no policy exists, so only the owner and BYPASSRLS roles see rows"
                    .to_owned(),
            ));
        }
        if !self.rls_forced {
            findings.push(RlsFinding::new(
                "rls_not_forced",
                "the table owner bypasses the policies (ALTER TABLE ... FORCE ROW LEVEL SECURITY)".to_owned(),
            ));
        }
        for column in self.unindexed_policy_columns() {
            findings.push(RlsFinding::new(
                "unindexed_policy_column",
                format!("no index leads with {column}, so each policy check scans"),
            ));
        }
        for policy in &self.policies {
            let expressions = [&policy.using_expr, &policy.check_expr];
            let always_true =
                expressions.iter().any(|e| e.as_deref().is_some_and(|e| e.trim().eq_ignore_ascii_case("true")));
            // The wallet's own NOLOGIN definer roles get such policies on
            // purpose (each on the tables it alone writes or reads); anyone else's
            // lets every row through.
            if policy.permissive && always_true && !policy.only_for_definer_roles() {
                findings.push(RlsFinding::new(
                    "always_true_policy",
                    format!("policy {} lets every row through", policy.name),
                ));
            }
            // As splinter's 0015: travelers edit their own user_metadata.
            if expressions.iter().any(|e| e.as_deref().is_some_and(|e| e.contains("user_metadata"))) {
                findings.push(RlsFinding::new(
                    "policy_references_user_metadata",
                    format!("policy {} trusts user_metadata, which the user edits", policy.name),
                ));
            }
            let mut unwrapped: Vec<&str> =
                expressions.iter().filter_map(|e| e.as_deref()).flat_map(unwrapped_per_row_calls).collect();
            unwrapped.dedup();
            for call in unwrapped {
                findings.push(RlsFinding::new(
                    "per_row_call",
                    format!("policy {} calls {call} per row; wrap it as (select {call}...)", policy.name),
                ));
            }
        }
        findings
    }
}

/// Request-context calls in a deparsed policy expression that are not the direct
/// operand of a sub-select. Postgres deparses `(select wallet.uid())` as
/// `( SELECT wallet.uid() AS uid)`, so "wrapped" means `SELECT` right before the call.
pub fn unwrapped_per_row_calls(expression: &str) -> Vec<&'static str> {
    let lower = expression.to_ascii_lowercase();
    let mut found = Vec::new();
    for call in PER_ROW_CALLS {
        for (at, _) in lower.match_indices(call) {
            let before = lower[..at].trim_end();
            let qualified_elsewhere = before.ends_with('.');
            if !qualified_elsewhere && !before.ends_with("select") && !found.contains(call) {
                found.push(*call);
            }
        }
    }
    found
}

/// The policy name `enable_owner_rls` creates and replaces.
pub fn owner_policy_name(table: &str) -> String {
    truncate_identifier(&format!("{table}_owner"))
}

/// The index name `enable_owner_rls` uses when the owner column has none.
pub fn owner_index_name(table: &str, column: &str) -> String {
    truncate_identifier(&format!("{table}_{column}_idx"))
}

/// Postgres silently truncates identifiers to 63 bytes; do it ourselves, on a
/// character boundary, so the name we drop is the name we created.
fn truncate_identifier(name: &str) -> String {
    const MAX_IDENTIFIER_BYTES: usize = 63;
    let mut end = name.len().min(MAX_IDENTIFIER_BYTES);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_owned()
}

/// The statements that give `table` an owner policy; identifiers already quoted.
/// Idempotent: an existing policy of that name is replaced, so a re-run updates it.
pub fn owner_policy_statements(
    quoted_table: &str,
    quoted_policy: &str,
    quoted_column: &str,
    quoted_roles: &[String],
    policy_exists: bool,
) -> Vec<String> {
    let roles = if quoted_roles.is_empty() { "public".to_owned() } else { quoted_roles.join(", ") };
    let mut statements = vec![
        format!("ALTER TABLE {quoted_table} ENABLE ROW LEVEL SECURITY"),
        format!("ALTER TABLE {quoted_table} FORCE ROW LEVEL SECURITY"),
    ];
    if policy_exists {
        statements.push(format!("DROP POLICY {quoted_policy} ON {quoted_table}"));
    }
    statements.push(format!(
        "CREATE POLICY {quoted_policy} ON {quoted_table} AS PERMISSIVE FOR ALL TO {roles} \
             USING ({OWNER_EXPRESSION} = {quoted_column}) \
             WITH CHECK ({OWNER_EXPRESSION} = {quoted_column})"
    ));
    statements
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(using: &str, columns: &[&str]) -> PolicyFacts {
        PolicyFacts {
            name: "p".into(),
            permissive: true,
            roles: vec!["authenticated".into()],
            using_expr: Some(using.into()),
            check_expr: None,
            columns: columns.iter().map(|c| c.to_string()).collect(),
        }
    }

    fn protected_table() -> TableFacts {
        TableFacts {
            rls_enabled: true,
            rls_forced: true,
            policies: vec![policy("(( SELECT wallet.uid() AS uid) = user_id)", &["user_id"])],
            index_leading_columns: vec!["id".into(), "user_id".into()],
        }
    }

    #[test]
    fn a_protected_table_has_no_findings() {
        assert_eq!(protected_table().findings(), Vec::<String>::new());
    }

    #[test]
    fn an_unprotected_table_is_flagged() {
        let table =
            TableFacts { rls_enabled: false, rls_forced: false, policies: vec![], index_leading_columns: vec![] };
        let codes: Vec<String> = table.findings().iter().map(|f| f.split(':').next().unwrap().to_owned()).collect();
        assert_eq!(codes, ["rls_disabled", "rls_not_forced"]);
    }

    #[test]
    fn enabled_without_policies_is_flagged() {
        let mut table = protected_table();
        table.policies.clear();
        assert!(table.findings()[0].starts_with("no_policies:"));
    }

    #[test]
    fn unindexed_policy_column_is_flagged() {
        let mut table = protected_table();
        table.index_leading_columns = vec!["id".into()];
        assert_eq!(table.unindexed_policy_columns(), ["user_id"]);
        assert!(table.findings()[0].starts_with("unindexed_policy_column:"));
    }

    #[test]
    fn per_row_calls_are_found_and_wrapped_ones_are_not() {
        assert_eq!(unwrapped_per_row_calls("(auth.uid() = user_id)"), ["auth.uid()"]);
        assert_eq!(unwrapped_per_row_calls("(( SELECT auth.uid() AS uid) = user_id)"), Vec::<&str>::new());
        assert_eq!(
            unwrapped_per_row_calls("((wallet.uid() = user_id) OR (( SELECT auth.uid() AS uid) = owner))"),
            ["wallet.uid()"]
        );
        assert_eq!(unwrapped_per_row_calls("(user_id = (current_setting('x'::text))::uuid)"), ["current_setting("]);
        // A function of another schema that merely ends the same way is not ours.
        assert_eq!(unwrapped_per_row_calls("(myschema.auth.uid() = x)"), Vec::<&str>::new());
    }

    #[test]
    fn always_true_permissive_policy_is_flagged() {
        let mut table = protected_table();
        table.policies.push(policy("true", &[]));
        assert!(table.findings().iter().any(|f| f.starts_with("always_true_policy:")));
        table.policies.last_mut().unwrap().roles = vec!["parker_wallet_sidecar".into()];
        assert!(table.findings().iter().any(|f| f.starts_with("always_true_policy:")), "any other role");
        // The same policy for one of the wallet's own definer roles is how they work.
        table.policies.last_mut().unwrap().roles = vec!["parker_wallet_auditor".into()];
        assert!(table.findings().is_empty());
    }

    #[test]
    fn policies_trusting_user_metadata_are_flagged() {
        let mut table = protected_table();
        table.policies.push(policy("((auth.jwt() -> 'user_metadata'::text) ->> 'admin'::text) = 'yes'", &[]));
        assert!(table.findings().iter().any(|f| f.starts_with("policy_references_user_metadata:")));
    }

    #[test]
    fn names_fit_postgres_identifier_limit() {
        let long = "t".repeat(80);
        assert_eq!(owner_policy_name(&long).len(), 63);
        assert_eq!(owner_index_name("payment_methods", "user_id"), "payment_methods_user_id_idx");
        assert_eq!(owner_policy_name("é".repeat(40).as_str()).len(), 62);
    }

    #[test]
    fn policy_statements_force_rls_and_wrap_the_subject() {
        let statements =
            owner_policy_statements("public.cards", "cards_owner", "user_id", &["authenticated".to_owned()], true);
        assert_eq!(statements.len(), 4);
        assert_eq!(statements[2], "DROP POLICY cards_owner ON public.cards");
        assert!(statements[1].contains("FORCE ROW LEVEL SECURITY"));
        assert!(statements[3].contains("TO authenticated"));
        assert!(statements[3].contains("USING ((select wallet.uid()) = user_id)"));
        assert!(statements[3].contains("WITH CHECK ((select wallet.uid()) = user_id)"));
    }
}
