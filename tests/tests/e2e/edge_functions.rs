//! The Edge Functions as the Supabase CLI lays them out (supabase/functions):
//! each type-checks and lints clean under Deno, and each is declared in
//! supabase/config.toml. (Their behaviour against a real sidecar is tested
//! with the routes they serve: wallet.rs, bookings.rs.)

use std::process::Command;

#[test]
fn every_function_type_checks_lints_clean_and_is_declared() -> anyhow::Result<()> {
    let functions = harness::crate_dir().join("../supabase/functions");
    let config = std::fs::read_to_string(functions.join("../config.toml"))?;
    let mut entry_points = Vec::new();
    for entry in std::fs::read_dir(&functions)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if path.is_dir() && !name.starts_with('_') {
            assert!(config.contains(&format!("[functions.{name}]")), "supabase/config.toml does not declare {name}");
            entry_points.push(format!("{name}/index.ts"));
        }
    }
    entry_points.sort();
    assert_eq!(entry_points, ["book-campaign/index.ts", "manage-payment-methods/index.ts", "stripe-webhooks/index.ts"]);
    let deno = format!("{}/.bin/deno", std::env::var("PW_NODE_MODULES")?);
    for step in [vec!["check"], vec!["lint"]] {
        let output = Command::new(&deno)
            .args(&step)
            .args(if step[0] == "check" { entry_points.clone() } else { Vec::new() })
            .current_dir(&functions)
            .env("NO_COLOR", "1")
            .output()?;
        assert!(
            output.status.success(),
            "deno {step:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
