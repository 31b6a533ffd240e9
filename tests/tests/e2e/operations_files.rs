//! The operations files, checked without a Prometheus server, Grafana or a
//! Docker engine (none runs on the development machines): the alert rules and
//! their unit tests (promtool), the Prometheus configuration, the Grafana
//! dashboard, the systemd units (systemd-analyze), the compose files and
//! Dockerfiles (YAML, referenced files, shellcheck), the compose's sidecar
//! settings (the sidecar's own validation).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use serde_json::Value;

fn repo() -> PathBuf {
    harness::crate_dir().join("..")
}

/// Runs `command`; its output, or an error carrying it.
fn run(command: &mut Command) -> anyhow::Result<String> {
    let output = command.output().with_context(|| format!("{command:?} did not start"))?;
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    anyhow::ensure!(output.status.success(), "{command:?} failed:\n{text}");
    Ok(text)
}

fn yaml(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    serde_yaml_ng::from_str(&text).with_context(|| format!("{} is not YAML", path.display()))
}

fn strings(value: &Value) -> Vec<&str> {
    value.as_array().map(|items| items.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

/// Every alert in rules.yml fires in one unit test and stays quiet in another,
/// links to its own section of the incident-response runbook, and the rules
/// pass `promtool check rules` and `promtool test rules`.
#[test]
fn alert_rules_pass_promtool_and_each_alert_is_tested_both_ways_with_a_runbook() -> anyhow::Result<()> {
    let dir = repo().join("deploy/prometheus");
    run(Command::new("promtool").args(["check", "rules", "rules.yml"]).current_dir(&dir))?;
    run(Command::new("promtool").args(["test", "rules", "rules.test.yml"]).current_dir(&dir))?;

    let rules = yaml(&dir.join("rules.yml"))?;
    let alerts: Vec<(String, String)> = rules["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|group| group["rules"].as_array().into_iter().flatten())
        .filter_map(|rule| {
            let alert = rule["alert"].as_str()?;
            Some((alert.to_owned(), rule["annotations"]["runbook"].as_str().unwrap_or_default().to_owned()))
        })
        .collect();
    assert!(alerts.len() >= 15, "{alerts:?}");
    let tests = yaml(&dir.join("rules.test.yml"))?;
    let cases: Vec<(&str, bool)> = tests["tests"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|test| test["alert_rule_test"].as_array().into_iter().flatten())
        .filter_map(|case| {
            let fires = case["exp_alerts"].as_array().is_some_and(|expected| !expected.is_empty());
            Some((case["alertname"].as_str()?, fires))
        })
        .collect();
    let runbook = std::fs::read_to_string(repo().join("docs/runbooks/incident-response.md"))?;
    for (alert, link) in &alerts {
        assert!(cases.contains(&(alert.as_str(), true)), "no unit test where {alert} fires");
        assert!(cases.contains(&(alert.as_str(), false)), "no unit test where {alert} stays quiet");
        assert_eq!(link, &format!("docs/runbooks/incident-response.md#{}", alert.to_lowercase()));
        assert!(
            runbook.contains(&format!("\n## {alert}\n")),
            "docs/runbooks/incident-response.md has no section {alert}"
        );
    }
    Ok(())
}

/// The shipped Prometheus configuration loads, rules included, and scrapes the
/// job the SidecarDown alert watches.
#[test]
fn the_prometheus_configuration_loads_with_its_rules() -> anyhow::Result<()> {
    let source = repo().join("deploy/prometheus");
    let dir = tempfile::tempdir()?;
    // promtool opens the credentials file: a stand-in for the service token.
    let token = dir.path().join("service_token");
    std::fs::write(&token, "stand-in")?;
    let config = std::fs::read_to_string(source.join("prometheus.yml"))?
        .replace("/run/secrets/service_token", &token.display().to_string());
    std::fs::write(dir.path().join("prometheus.yml"), &config)?;
    std::fs::copy(source.join("rules.yml"), dir.path().join("rules.yml"))?;
    let checked = run(Command::new("promtool").args(["check", "config", "prometheus.yml"]).current_dir(dir.path()))?;
    assert!(checked.contains("SUCCESS"), "{checked}");
    let parsed = yaml(&source.join("prometheus.yml"))?;
    assert_eq!(parsed["scrape_configs"][0]["job_name"], "parker-wallet-sidecar");
    let rules = std::fs::read_to_string(source.join("rules.yml"))?;
    assert!(rules.contains("up{job=\"parker-wallet-sidecar\"}"));
    Ok(())
}

/// The dashboard is valid JSON whose panels are the ones docs/operations.md
/// names, in order, and every query is PromQL that promtool parses.
#[test]
fn the_dashboard_has_the_documented_panels_and_its_queries_parse() -> anyhow::Result<()> {
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("deploy/grafana/parker-wallet.json"))?)?;
    let panels = dashboard["panels"].as_array().context("panels")?;
    let titles: Vec<&str> = panels.iter().filter_map(|panel| panel["title"].as_str()).collect();
    let docs = std::fs::read_to_string(repo().join("docs/operations.md"))?;
    let documented: Vec<&str> = docs
        .split("## The dashboard")
        .nth(1)
        .context("docs/operations.md has no '## The dashboard' section")?
        .lines()
        .filter_map(|line| line.strip_prefix("- **")?.split("**").next())
        .collect();
    assert_eq!(titles, documented);
    let ids: BTreeSet<i64> = panels.iter().filter_map(|panel| panel["id"].as_i64()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");

    let mut records = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (n, panel) in panels.iter().enumerate() {
        let targets = panel["targets"].as_array().context("targets")?;
        assert!(!targets.is_empty(), "{}", panel["title"]);
        for (t, target) in targets.iter().enumerate() {
            let expr = target["expr"].as_str().context("expr")?;
            records.push_str(&format!(
                "      - record: dashboard:panel_{n}_{t}\n        expr: {}\n",
                serde_json::json!(expr)
            ));
        }
    }
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("dashboard.yml"), records)?;
    run(Command::new("promtool").args(["check", "rules", "dashboard.yml"]).current_dir(dir.path()))?;
    Ok(())
}

/// Every job has its service and timer, and systemd accepts both (the binary
/// path pointed at the one built for these tests).
#[test]
fn the_systemd_units_verify() -> anyhow::Result<()> {
    let source = repo().join("deploy/systemd");
    let binary = std::env::var("PW_SIDECAR_BIN")?;
    let dir = tempfile::tempdir()?;
    let mut units = Vec::new();
    for entry in std::fs::read_dir(&source)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).context("unit name")?.to_owned();
        let text = std::fs::read_to_string(&path)?.replace("/usr/local/bin/kms-sidecar", &binary);
        std::fs::write(dir.path().join(&name), text)?;
        units.push(name);
    }
    units.sort();
    let services: BTreeSet<&str> = units.iter().filter_map(|u| u.strip_suffix(".service")).collect();
    let timers: BTreeSet<&str> = units.iter().filter_map(|u| u.strip_suffix(".timer")).collect();
    let jobs: BTreeSet<&str> = services.iter().copied().filter(|s| *s != "parker-wallet-sidecar").collect();
    assert_eq!(jobs, timers, "every job has a timer and every timer a job");
    assert_eq!(jobs.len(), 6, "{jobs:?}");
    let paths: Vec<PathBuf> = units.iter().map(|u| dir.path().join(u)).collect();
    run(Command::new("systemd-analyze").arg("verify").args(&paths))?;
    Ok(())
}

/// The compose file is YAML whose services, builds, mounts, configs and
/// secrets all resolve; the Dockerfiles copy only what exists; the entry
/// scripts pass shellcheck; the sidecar's compose settings pass its own checks.
#[test]
fn the_compose_stack_and_dockerfiles_are_complete() -> anyhow::Result<()> {
    let docker = repo().join("docker");
    let compose = yaml(&docker.join("compose.yaml"))?;
    let services = compose["services"].as_object().context("services")?;
    for expected in ["postgres", "migrate", "sidecar", "prometheus"] {
        assert!(services.contains_key(expected), "no service {expected}");
    }
    let secrets_readme = std::fs::read_to_string(docker.join("secrets/README.md"))?;
    let declared_secrets = compose["secrets"].as_object().context("secrets")?;
    for (name, secret) in declared_secrets {
        // Secret files are the operator's and never committed: each is documented.
        assert_eq!(secret["file"], format!("./secrets/{name}"), "{name}");
        assert!(secrets_readme.contains(&format!("`{name}`")), "docker/secrets/README.md does not describe {name}");
    }
    for (name, config) in compose["configs"].as_object().context("configs")? {
        let file = config["file"].as_str().context("config file")?;
        assert!(docker.join(file).is_file(), "config {name}: {file} is missing");
    }
    // Supabase's own image is built outside this compose file (self-hosted
    // Supabase's `db` service): its Dockerfile is checked all the same.
    let mut dockerfiles = vec![(repo(), docker.join("Dockerfile.supabase-postgres"))];
    let file = "compose.yaml";
    for (name, service) in compose["services"].as_object().context("services")? {
        if let Some(build) = service.get("build") {
            let context = docker.join(build["context"].as_str().context("build context")?);
            let dockerfile = context.join(build["dockerfile"].as_str().context("dockerfile")?);
            assert!(dockerfile.is_file(), "{file} {name}: {} is missing", dockerfile.display());
            dockerfiles.push((context, dockerfile));
        }
        for volume in strings(&service["volumes"]) {
            let host = volume.split(':').next().unwrap_or_default();
            if host.starts_with('.') {
                assert!(docker.join(host).exists(), "{file} {name}: mounts {host}, which is missing");
            }
        }
        let service_secrets = strings(&service["secrets"]);
        for secret in &service_secrets {
            assert!(declared_secrets.contains_key(*secret), "{file} {name}: secret {secret} is not declared");
        }
        for (variable, value) in service["environment"].as_object().into_iter().flatten() {
            if let Some(secret) = value.as_str().and_then(|v| v.strip_prefix("/run/secrets/")) {
                assert!(service_secrets.contains(&secret), "{file} {name}: {variable} reads {secret}, not mounted");
            }
        }
        for dependency in service["depends_on"].as_object().into_iter().flatten().map(|(d, _)| d) {
            assert!(services.contains_key(dependency), "{file} {name}: depends on unknown {dependency}");
        }
        if let Some(other) = service["network_mode"].as_str().and_then(|mode| mode.strip_prefix("service:")) {
            assert!(services.contains_key(other), "{file} {name}: shares the network of unknown {other}");
        }
    }
    for name in ["postgres", "sidecar"] {
        assert!(services[name]["healthcheck"]["test"].is_array(), "{name} has no healthcheck");
    }
    for (context, dockerfile) in &dockerfiles {
        for line in std::fs::read_to_string(dockerfile)?.lines() {
            let Some(arguments) = line.strip_prefix("COPY ") else { continue };
            if arguments.starts_with("--from") {
                continue;
            }
            let words: Vec<&str> = arguments.split_whitespace().collect();
            for source in &words[..words.len().saturating_sub(1)] {
                let pattern = context.join(source);
                let exists = match source.find('*') {
                    // parker_wallet--*.sql: at least one file by that pattern.
                    Some(_) => {
                        let (dir, file) = (pattern.parent().context("dir")?, pattern.file_name().context("file")?);
                        let (prefix, suffix) = file.to_str().context("name")?.split_once('*').context("glob")?;
                        std::fs::read_dir(dir)?.filter_map(Result::ok).any(|entry| {
                            let name = entry.file_name();
                            let name = name.to_string_lossy();
                            name.starts_with(prefix) && name.ends_with(suffix)
                        })
                    }
                    None => pattern.exists(),
                };
                assert!(exists, "{}: COPY {source}: nothing there", dockerfile.display());
            }
        }
    }
    let mut scripts = vec![docker.join("entrypoint.sh")];
    for entry in std::fs::read_dir(docker.join("postgres-init"))? {
        scripts.push(entry?.path());
    }
    run(Command::new("shellcheck").args(&scripts))?;

    let settings = kms_sidecar::config::Settings::load_with(Some(&docker.join("sidecar.toml")), &[])
        .map_err(|e| anyhow::anyhow!("docker/sidecar.toml: {e}"))?;
    assert_eq!(settings.socket.path, Path::new("/run/parker-wallet/sidecar.sock"));
    let callers = &settings.callers;
    assert!(callers.database.contains(&999), "the postgres image's uid is the database caller");
    Ok(())
}
