//! The end-to-end test harness, shared by every test in `tests/tests/e2e/`.
//!
//! `scripts/test.sh` starts one stack per run (two throwaway PostgreSQL clusters,
//! localstripe, moto) and exports where it is (`PW_*` variables, see
//! `scripts/stack.sh`). Each test then takes what it needs from here:
//! - [`TestDb::migrated`]: a fresh database with the extension and all migrations,
//!   cloned from a template in milliseconds; [`TestDb::empty`]: one with nothing.
//! - [`TestDb::migrated_on`] / [`TestDb::empty_on`]: the same on either cluster,
//!   see [`Template`]; a test that should hold on both loops over [`Template::ALL`].
//! - [`Sidecar::start`]: a sidecar of its own on a temporary socket, killed on drop.
//! - [`TestApp::wallet`]: both, for the wallet and booking routes, with Stripe
//!   and Duffel where asked for, and a client that speaks as a traveler.
//! - [`Emulators::from_env`]: the localstripe and moto endpoints.
//!
//! The two clusters ([`Template`]):
//! - [`Template::Plain`], plain PostgreSQL: `postgres` is the superuser and
//!   migration 0001 stands in for Supabase's `auth` schema and roles. Empty
//!   databases are clones of `template0`. [`TestDb::migrated`] and
//!   [`TestDb::empty`] mean this one.
//! - [`Template::Supabase`], shaped like a Supabase project from Supabase's own
//!   files (`tests/supabase/README.md`): bootstrap superuser `supabase_admin`;
//!   `postgres` is not a superuser (CREATEROLE, BYPASSRLS) and owns the test
//!   databases; GoTrue's `auth` schema; Supabase's default grants to `anon`,
//!   `authenticated` and `service_role` in `public`; supautils in every session.
//!   Empty databases are clones of `supabase_base` (Supabase, no parker_wallet);
//!   migrated ones of `pw_template`, where `postgres` created the extension
//!   (through supautils) and ran the migrations.
//!
//! On both, [`TestDb::admin`] is `postgres`, the operator who owns the wallet's
//! tables (a superuser on Plain only) and [`TestDb::superuser`] the cluster's
//! superuser; [`TestDb::traveler`] and the test roles of `tests/support/roles.sql`
//! exist on both.
//!
//! Databases are left behind for post-mortems; the clusters are deleted with the run.

// Test code: a failed unwrap is a failed test (or benchmark), with its message.
#![allow(clippy::unwrap_used)]

pub mod app;
pub mod bench;
pub mod duffel_fake;
pub mod fake_http;
pub mod stripe_proxy;
pub mod twilio_fake;
pub mod web;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use kms_sidecar::config::{
    AuthSettings, AwsKmsConfig, CallerMap, DatabaseSettings, DuffelSettings, Environment, KeySettings, ProviderKind,
    Settings, SocketSettings, StripeSettings, TcpSettings, TwilioSettings,
};
use kms_sidecar::domain::CallerClass;
use sqlx::{Connection, PgConnection};

pub use app::{OperatedApp, TestApp, TestAppBuilder, TestTraveler};

/// The template every migrated test database is cloned from (prepared by scripts/test.sh).
pub const TEMPLATE_DB: &str = "pw_template";
/// A login role that can only become `authenticated`, like PostgREST's authenticator
/// minus the other roles: what a traveler's request runs as.
pub const TRAVELER_LOGIN: &str = "pw_test_traveler";

fn env(name: &str) -> Result<String> {
    std::env::var(name).with_context(|| {
        format!("{name} is not set: run the tests through scripts/test.sh, or export a stack's stack.env (scripts/stack.sh up DIR)")
    })
}

/// The login that runs the migrations and owns the wallet's tables and the test
/// databases, on both clusters (a superuser on [`Template::Plain`] only).
pub const OPERATOR: &str = "postgres";

/// Which cluster a test database lives in, and so which template it is cloned
/// from; see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Template {
    /// Plain PostgreSQL 15, `postgres` a superuser.
    Plain,
    /// Shaped like Supabase: superuser `supabase_admin`, `postgres` not one.
    Supabase,
}

impl Template {
    pub const ALL: [Template; 2] = [Template::Plain, Template::Supabase];

    /// For messages: `plain` or `supabase`.
    pub fn name(self) -> &'static str {
        match self {
            Template::Plain => "plain",
            Template::Supabase => "supabase",
        }
    }

    /// The cluster's superuser (its bootstrap user).
    pub fn superuser(self) -> &'static str {
        match self {
            Template::Plain => "postgres",
            Template::Supabase => "supabase_admin",
        }
    }

    /// What an empty test database is a clone of.
    fn empty_template(self) -> &'static str {
        match self {
            Template::Plain => "template0",
            Template::Supabase => "supabase_base",
        }
    }

    /// The cluster's port, from the stack's environment.
    pub fn port(self) -> Result<String> {
        env(match self {
            Template::Plain => "PW_PGPORT",
            Template::Supabase => "PW_SUPABASE_PGPORT",
        })
    }

    pub fn database_url(self, db: &str, user: &str) -> Result<String> {
        Ok(format!("postgres://{user}@{}:{}/{db}", env("PW_PGHOST")?, self.port()?))
    }
}

impl std::fmt::Display for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What `pw_template`'s comment says when it was built from the current
/// migrations and extension scripts: a digest of `migrations/` and `sql/`.
fn template_mark() -> Result<String> {
    use sha2::Digest;
    let mut digest = sha2::Sha256::new();
    for dir in [crate_dir().join("../migrations"), crate_dir().join("../sql")] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for file in files {
            digest.update(file.file_name().map(|n| n.as_encoded_bytes()).unwrap_or_default());
            digest.update(std::fs::read(&file)?);
        }
    }
    let hex: String = digest.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("parker-wallet test template {hex}"))
}

/// Builds the cluster's templates (and the test roles) the first time a test
/// of this process needs them, unless they are there already and current:
/// `cargo test` works against any stack named by the `PW_*` variables, as
/// crates.io's test database crate does. An advisory lock in the cluster
/// keeps two test processes from building them at once.
async fn ensure_templates(template: Template) -> Result<()> {
    static READY: [tokio::sync::OnceCell<()>; 2] =
        [tokio::sync::OnceCell::const_new(), tokio::sync::OnceCell::const_new()];
    let index = Template::ALL.iter().position(|t| *t == template).unwrap_or(0);
    READY[index]
        .get_or_try_init(|| async {
            let mark = template_mark()?;
            // The lock's session sits in a database that nothing is cloned
            // from meanwhile: Plain's templates come from template0 and
            // template1, Supabase's base from `postgres`.
            let lock_db = match template {
                Template::Plain => "postgres",
                Template::Supabase => "template1",
            };
            let mut superuser = PgConnection::connect(&template.database_url(lock_db, template.superuser())?).await?;
            sqlx::query("SELECT pg_advisory_lock(hashtext('parker_wallet.test_templates'))")
                .execute(&mut superuser)
                .await?;
            let current: Option<String> =
                sqlx::query_scalar("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1")
                    .bind(TEMPLATE_DB)
                    .fetch_optional(&mut superuser)
                    .await?
                    .flatten();
            let built = if current.as_deref() == Some(mark.as_str()) {
                Ok(())
            } else {
                let script = crate_dir().join("../scripts/templates.sh");
                let output = tokio::process::Command::new(&script).args([template.name(), &mark]).output().await?;
                if output.status.success() {
                    Ok(())
                } else {
                    Err(anyhow::anyhow!(
                        "{} {} failed: {}{}",
                        script.display(),
                        template.name(),
                        String::from_utf8_lossy(&output.stdout),
                        String::from_utf8_lossy(&output.stderr)
                    ))
                }
            };
            sqlx::query("SELECT pg_advisory_unlock(hashtext('parker_wallet.test_templates'))")
                .execute(&mut superuser)
                .await?;
            superuser.close().await?;
            built
        })
        .await
        .copied()
}

/// A database of its own for one test, on one of the two clusters.
pub struct TestDb {
    pub name: String,
    template: Template,
}

impl TestDb {
    /// A new database with `parker_wallet` installed and every migration applied (plain cluster).
    pub async fn migrated() -> Result<Self> {
        Self::migrated_on(Template::Plain).await
    }

    /// A new database with nothing in it: for migration and install tests (plain cluster).
    pub async fn empty() -> Result<Self> {
        Self::empty_on(Template::Plain).await
    }

    /// A new database with `parker_wallet` installed and every migration applied.
    pub async fn migrated_on(template: Template) -> Result<Self> {
        Self::create(template, TEMPLATE_DB).await
    }

    /// A new database without `parker_wallet`: `template0` on Plain, Supabase's
    /// base database (roles' grants, `auth`, ...) on Supabase.
    pub async fn empty_on(template: Template) -> Result<Self> {
        Self::create(template, template.empty_template()).await
    }

    async fn create(template: Template, source: &str) -> Result<Self> {
        ensure_templates(template).await?;
        let name = format!("pw_test_{}", uuid::Uuid::new_v4().simple());
        // Created by the superuser, owned by the operator (as Supabase's are).
        let mut superuser = PgConnection::connect(&template.database_url("postgres", template.superuser())?).await?;
        sqlx::raw_sql(&format!("CREATE DATABASE {name} TEMPLATE {source} OWNER {OPERATOR}"))
            .execute(&mut superuser)
            .await
            .with_context(|| format!("creating test database {name} from {source} ({template} cluster)"))?;
        // CREATE DATABASE copies a template's contents but not its privileges:
        // carry over what migration 0008 did to the migrated template's
        // (TEMPORARY taken from PUBLIC).
        let public_temp: bool = source != TEMPLATE_DB
            || sqlx::query_scalar(
                "SELECT EXISTS (SELECT FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
                             WHERE d.datname = $1 AND a.grantee = 0 AND a.privilege_type = 'TEMPORARY')",
            )
            .bind(source)
            .fetch_one(&mut superuser)
            .await?;
        if !public_temp {
            sqlx::raw_sql(&format!("REVOKE TEMPORARY ON DATABASE {name} FROM PUBLIC")).execute(&mut superuser).await?;
        }
        superuser.close().await?;
        Ok(Self { name, template })
    }

    /// Which cluster, and template, the database comes from.
    pub fn template(&self) -> Template {
        self.template
    }

    pub fn url(&self, user: &str) -> Result<String> {
        self.template.database_url(&self.name, user)
    }

    /// The operator, `postgres` (the migration runner's and the fixtures' view):
    /// a superuser on Plain; on Supabase not one, but it has BYPASSRLS and owns
    /// the wallet's tables.
    pub async fn admin(&self) -> Result<PgConnection> {
        Ok(PgConnection::connect(&self.url(OPERATOR)?).await?)
    }

    /// The cluster's superuser: `postgres` on Plain, `supabase_admin` on Supabase.
    pub async fn superuser(&self) -> Result<PgConnection> {
        Ok(PgConnection::connect(&self.url(self.template.superuser())?).await?)
    }

    /// A connection as the traveler login role; see [`as_traveler`].
    pub async fn traveler(&self) -> Result<PgConnection> {
        Ok(PgConnection::connect(&self.url(TRAVELER_LOGIN)?).await?)
    }
}

/// The JWT claims PostgREST sets for a traveler's request, as JSON text.
pub fn claims(sub: &str) -> String {
    format!(r#"{{"sub":"{sub}","role":"authenticated","aud":"authenticated"}}"#)
}

/// Starts a transaction the way PostgREST serves a request: role `authenticated`
/// and the verified JWT claims, both local to the transaction.
pub async fn as_traveler<'c>(
    conn: &'c mut PgConnection,
    claims: &str,
) -> Result<sqlx::Transaction<'c, sqlx::Postgres>> {
    as_role(conn, "authenticated", claims).await
}

/// Starts a transaction as `role` (anon, authenticated, service_role, ...) with
/// these claims (`""` for none), both local to the transaction.
pub async fn as_role<'c>(
    conn: &'c mut PgConnection,
    role: &str,
    claims: &str,
) -> Result<sqlx::Transaction<'c, sqlx::Postgres>> {
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true)")
        .bind(role)
        .bind(claims)
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// The Postgres error code of a failed query, if it was a database error.
pub fn sqlstate(error: &sqlx::Error) -> Option<String> {
    error.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned())
}

/// This crate's directory in the checkout being tested. Read at run time (cargo
/// sets it for tests): a path baked in at compile time could name another
/// checkout that shares the build cache.
pub fn crate_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).to_owned())
}

/// The migrations shipped in the repository.
pub fn migrations_dir() -> PathBuf {
    crate_dir().join("../migrations")
}

/// Where localstripe and moto listen for this run.
pub struct Emulators {
    pub localstripe_url: String,
    pub moto_url: String,
}

impl Emulators {
    pub fn from_env() -> Result<Self> {
        Ok(Self { localstripe_url: env("PW_LOCALSTRIPE_URL")?, moto_url: env("PW_MOTO_URL")? })
    }

    /// Calls moto's KMS JSON API (`TrentService.<operation>`); moto reads the
    /// service and region from the credential scope and checks no signature.
    pub async fn kms(&self, operation: &str, body: serde_json::Value) -> Result<serde_json::Value> {
        let stream = tokio::net::TcpStream::connect(self.moto_url.trim_start_matches("http://")).await?;
        let target = format!("TrentService.{operation}");
        let response = send_raw(
            stream,
            "POST",
            "/",
            &[
                ("x-amz-target", &target),
                ("content-type", "application/x-amz-json-1.1"),
                ("authorization", "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=0"),
            ],
            body.to_string().into_bytes(),
        )
        .await?;
        if !response.status.is_success() {
            bail!("moto {operation}: {} {}", response.status, response.text);
        }
        Ok(response.json)
    }

    /// A fresh KMS key with an alias of its own; returns (alias, key ARN).
    pub async fn create_kms_key(&self) -> Result<(String, String)> {
        let created = self.kms("CreateKey", serde_json::json!({ "Description": "parker-wallet test" })).await?;
        let arn = created["KeyMetadata"]["Arn"].as_str().context("CreateKey returned no Arn")?.to_owned();
        let alias = format!("alias/parker-test-{}", uuid::Uuid::new_v4().simple());
        self.kms("CreateAlias", serde_json::json!({ "AliasName": alias, "TargetKeyId": arn })).await?;
        Ok((alias, arn))
    }

    /// A fresh asymmetric signing key (ECC_NIST_P256, SIGN_VERIFY), as the audit
    /// checkpoints use; returns its ARN.
    pub async fn create_signing_key(&self) -> Result<String> {
        let created = self
            .kms(
                "CreateKey",
                serde_json::json!({ "Description": "parker-wallet audit test", "KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY" }),
            )
            .await?;
        Ok(created["KeyMetadata"]["Arn"].as_str().context("CreateKey returned no Arn")?.to_owned())
    }

    /// A sidecar on moto's KMS, serving the crypto routes to travelers' tokens
    /// (see [`SidecarConfig::traveler_crypto`]).
    pub fn kms_sidecar_config(&self, key_id: &str) -> Result<SidecarConfig> {
        let mut config = SidecarConfig::traveler_crypto()?;
        config.settings.keys.provider = ProviderKind::AwsKms;
        config.settings.keys.aws_kms = Some(AwsKmsConfig {
            key_id: key_id.to_owned(),
            region: "us-east-1".into(),
            endpoint_url: Some(self.moto_url.clone()),
            timeout_ms: 3000,
        });
        config.env.extend([
            ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
        ]);
        Ok(config)
    }
}

/// A loopback TCP port whose server accepts connections and never answers: a
/// hung upstream (KMS, Stripe). Lives as long as the test process.
pub fn silent_tcp_port() -> Result<u16> {
    let silent = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = silent.local_addr()?.port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().flatten() {
            held.push(stream);
        }
    });
    Ok(port)
}

/// The uid of an OS user (`id -u NAME`).
pub fn uid_of(user: &str) -> Result<u32> {
    let output = Command::new("id").args(["-u", user]).output()?;
    Ok(String::from_utf8(output.stdout)?.trim().parse()?)
}

/// Our own uid.
pub fn own_uid() -> u32 {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() }
}

/// What a test's sidecar runs with: the sidecar's own [`Settings`], written to
/// its TOML file at start (serialised, never glued together), and its
/// environment (the secrets). `Default`: we are `admin`, the `postgres` OS user
/// is `database`, keys from a local keyring in the sidecar's directory.
#[derive(Clone)]
pub struct SidecarConfig {
    /// An empty `socket.path` or `keys.local_key_file` is filled in at start
    /// with a path in the sidecar's temporary directory.
    pub settings: Settings,
    /// Environment of the process (secrets, for instance).
    pub env: Vec<(String, String)>,
    /// A loopback port where we are `admin` (for `/metrics`) when our uid is
    /// in another class.
    pub admin_port: Option<u16>,
}

impl Default for SidecarConfig {
    fn default() -> Self {
        let database = uid_of("postgres").ok().filter(|uid| *uid != own_uid());
        let callers = CallerMap { admin: vec![own_uid()], database: database.into_iter().collect(), edge: Vec::new() };
        let group = (own_uid() == 0 && uid_of("postgres").is_ok()).then(|| "postgres".to_owned());
        let settings = Settings {
            environment: Environment::Development,
            socket: SocketSettings { path: PathBuf::new(), mode: "660".into(), group },
            callers,
            tcp: None,
            keys: KeySettings {
                provider: ProviderKind::Local,
                epoch: 1,
                local_key_file: None,
                aws_kms: None,
                retired_key_refs: Vec::new(),
            },
            cache: Default::default(),
            limits: Default::default(),
            shutdown_grace_secs: 10,
            server_timing: false,
            database: None,
            auth: None,
            stripe: None,
            duffel: None,
            bookings: Default::default(),
            audit: None,
            twilio: None,
            phone: Default::default(),
        };
        Self { settings, env: Vec::new(), admin_port: None }
    }
}

/// The bearer token of the test's admin port.
const ADMIN_TOKEN: &str = "parker-wallet-test-admin-token";

/// A port nobody listens on now.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl SidecarConfig {
    /// Only these uids, in this class.
    pub fn callers(mut self, class: CallerClass, uids: Vec<u32>) -> Self {
        self.settings.callers = CallerMap::default();
        match class {
            CallerClass::Admin => self.settings.callers.admin = uids,
            CallerClass::Database => self.settings.callers.database = uids,
            CallerClass::Edge => self.settings.callers.edge = uids,
        }
        self
    }

    /// The environment variable `name` (a secret, say) set to `value`, in
    /// place of any earlier value.
    pub fn with_env(mut self, name: &str, value: &str) -> Self {
        self.env.retain(|(key, _)| key != name);
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Travelers' tokens verified with the test project's JWT secret.
    pub fn with_auth(self) -> Self {
        self.with_jwt_secret(JWT_SECRET)
    }

    /// Travelers' tokens verified with `secret` (see [`traveler_token_signed`]).
    pub fn with_jwt_secret(mut self, secret: &str) -> Self {
        self.settings.auth = Some(AuthSettings::default());
        self.env.push(("PW_JWT_SECRET".into(), secret.into()));
        self
    }

    /// The crypto routes as Edge Functions use them: we are `edge` and prove
    /// each request's traveler with their token (`Sidecar::crypto`); `/metrics`
    /// on an admin port.
    pub fn traveler_crypto() -> Result<Self> {
        let mut config = Self::default().callers(CallerClass::Edge, vec![own_uid()]).with_auth();
        config.admin_port = Some(free_port()?);
        Ok(config)
    }

    /// Stripe at `api_base` (localstripe, a fault proxy, a closed port).
    pub fn with_stripe(mut self, api_base: &str) -> Self {
        self.settings.stripe =
            Some(StripeSettings { api_base: Some(api_base.to_owned()), timeout_ms: 3000, ..Default::default() });
        self.env.push(("PW_STRIPE_SECRET_KEY".into(), STRIPE_KEY.into()));
        self.env.push(("PW_STRIPE_WEBHOOK_SECRETS".into(), format!("whsec_retired_one,{WEBHOOK_SECRET}")));
        self
    }

    /// Duffel at `api_base` (the fake), with its test token.
    pub fn with_duffel(mut self, api_base: &str) -> Self {
        self.settings.duffel = Some(DuffelSettings { api_base: api_base.to_owned(), timeout_ms: 3000 });
        self.env.push(("PW_DUFFEL_ACCESS_TOKEN".into(), duffel_fake::DUFFEL_TOKEN.into()));
        self
    }

    /// Twilio Verify at `api_base` (the fake), with its test credentials.
    pub fn with_twilio(mut self, api_base: &str) -> Self {
        self.settings.twilio = Some(TwilioSettings { api_base: api_base.to_owned(), timeout_ms: 3000 });
        self.env.push(("PW_TWILIO_ACCOUNT_SID".into(), twilio_fake::TWILIO_ACCOUNT_SID.into()));
        self.env.push(("PW_TWILIO_AUTH_TOKEN".into(), twilio_fake::TWILIO_AUTH_TOKEN.into()));
        self.env.push(("PW_TWILIO_VERIFY_SERVICE_SID".into(), twilio_fake::TWILIO_SERVICE_SID.into()));
        self
    }

    /// `kms-sidecar ARGS --config FILE` with these settings (written to `dir`)
    /// and environment: an operator command.
    pub fn command(&self, dir: &Path, args: &[&str]) -> Result<Command> {
        let config_path = dir.join("sidecar.toml");
        std::fs::write(&config_path, toml::to_string(&self.resolved(dir))?)?;
        let mut command = Command::new(env("PW_SIDECAR_BIN")?);
        command
            .args(args)
            .arg("--config")
            .arg(config_path)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(self.admin_port.map(|_| ("PW_SERVICE_TOKEN", ADMIN_TOKEN)));
        Ok(command)
    }

    /// The settings the sidecar in `dir` runs with: that directory filled in
    /// where a path was left empty, and the admin port's listener.
    fn resolved(&self, dir: &Path) -> Settings {
        let mut settings = self.settings.clone();
        if settings.socket.path.as_os_str().is_empty() {
            settings.socket.path = dir.join("sidecar.sock");
        }
        if settings.keys.provider == ProviderKind::Local && settings.keys.local_key_file.is_none() {
            settings.keys.local_key_file = Some(dir.join("local-keyring"));
        }
        if let Some(port) = self.admin_port {
            settings.tcp =
                Some(TcpSettings { listen: ([127, 0, 0, 1], port).into(), caller_class: CallerClass::Admin });
        }
        settings
    }
}

/// A sidecar process of the test's own; killed when dropped, even on panic.
pub struct Sidecar {
    child: Child,
    pub socket: PathBuf,
    dir: tempfile::TempDir,
    admin_port: Option<u16>,
}

impl Sidecar {
    pub async fn start() -> Result<Self> {
        Self::start_with(SidecarConfig::default()).await
    }

    pub async fn start_with(config: SidecarConfig) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("pw-sidecar-").tempdir()?;
        // Reachable by other local users (the postgres backends); the socket's
        // own mode and group still decide who may connect.
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        let settings = config.resolved(dir.path());
        let socket = settings.socket.path.clone();
        let config_path = dir.path().join("sidecar.toml");
        std::fs::write(&config_path, toml::to_string(&settings)?)?;
        let log = std::fs::File::create(dir.path().join("sidecar.log"))?;
        let child = Command::new(env("PW_SIDECAR_BIN")?)
            .args(["serve", "--config"])
            .arg(&config_path)
            .envs(config.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(config.admin_port.map(|_| ("PW_SERVICE_TOKEN", ADMIN_TOKEN)))
            .stdin(Stdio::null())
            .stderr(log)
            .spawn()
            .context("spawning kms-sidecar")?;
        let mut sidecar = Self { child, socket, dir, admin_port: config.admin_port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::UnixStream::connect(&sidecar.socket).await.is_err() {
            if let Some(status) = sidecar.child.try_wait()? {
                bail!("kms-sidecar exited during start-up ({status}): {}", sidecar.log());
            }
            if Instant::now() > deadline {
                bail!("kms-sidecar did not listen on {} within 20 s", sidecar.socket.display());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(sidecar)
    }

    /// Everything the sidecar logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sidecar.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Leaves the process running after this value is gone (the demo's
    /// `--keep`); returns its pid. Its directory is kept too.
    pub fn detach(self) -> u32 {
        let this = std::mem::ManuallyDrop::new(self);
        this.child.id()
    }

    /// SIGKILL: the process dies mid-step, as in a crash.
    pub fn kill(mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Sends SIGTERM and waits for the process to exit; returns its exit status.
    pub fn terminate(mut self) -> Result<std::process::ExitStatus> {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status()?;
        if !status.success() {
            bail!("kill -TERM failed");
        }
        Ok(self.child.wait()?)
    }

    pub async fn request(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> Result<Response> {
        let stream = tokio::net::UnixStream::connect(&self.socket).await?;
        send(stream, method, path, body).await
    }

    /// `/metrics`, on the admin port when there is one.
    pub async fn metrics(&self) -> Result<String> {
        let response = match self.admin_port {
            Some(port) => {
                let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
                send_raw(stream, "GET", "/metrics", &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))], Vec::new())
                    .await?
            }
            None => self.request("GET", "/metrics", None).await?,
        };
        anyhow::ensure!(response.status == StatusCode::OK, "/metrics: {}", response.text);
        Ok(response.text)
    }

    /// `POST /v1/crypto/{operation}` as Edge Functions call it: with the token
    /// of the traveler the context names.
    pub async fn crypto(&self, operation: &str, data: &str, context: &serde_json::Value) -> Result<Response> {
        let token = traveler_token(context["user_id"].as_str().unwrap_or_default(), serde_json::json!({}));
        let bearer = format!("Bearer {token}");
        let body = serde_json::json!({ "data": data, "context": context });
        self.request_with("POST", &format!("/v1/crypto/{operation}"), &[("authorization", &bearer)], Some(body)).await
    }

    /// A request with headers of the caller's choosing (a traveler's token, say).
    pub async fn request_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<serde_json::Value>,
    ) -> Result<Response> {
        let stream = tokio::net::UnixStream::connect(&self.socket).await?;
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        send_raw(stream, method, path, &all, body.map(|b| b.to_string()).unwrap_or_default().into_bytes()).await
    }
}

/// A Stripe event delivered to the sidecar's webhook route as Stripe sends it:
/// the raw body, signed with `secret` at `at` (seconds since the epoch).
pub async fn deliver_stripe_event(
    sidecar: &Sidecar,
    event: &serde_json::Value,
    secret: &str,
    at: i64,
) -> Result<Response> {
    let body = event.to_string().into_bytes();
    let signature = kms_sidecar::stripe::signature::sign(&body, secret, at);
    let stream = tokio::net::UnixStream::connect(&sidecar.socket).await?;
    let headers = [("stripe-signature", signature.as_str()), ("content-type", "application/json")];
    send_raw(stream, "POST", "/v1/webhooks/stripe", &headers, body).await
}

/// A sample's value in a `/metrics` scrape, or `u64::MAX` when the series
/// (name and labels, as rendered) is missing.
pub fn metric(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX)
}

/// The JWT secret of the test "Supabase project".
pub const JWT_SECRET: &str = "parker-wallet-test-jwt-secret-of-sufficient-length";

/// A Supabase-style access token for `user_id`, signed with [`JWT_SECRET`];
/// `patch` overrides claims (a JSON null removes one).
pub fn traveler_token(user_id: &str, patch: serde_json::Value) -> String {
    traveler_token_signed(JWT_SECRET, user_id, patch)
}

/// [`traveler_token`], signed with another project's secret (the demo's).
pub fn traveler_token_signed(secret: &str, user_id: &str, patch: serde_json::Value) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    // As Supabase Auth issues them: `amr` tells when the traveler signed in.
    let mut claims = serde_json::json!({
        "sub": user_id, "role": "authenticated", "aud": "authenticated",
        "iat": now, "exp": now + 3600, "email": "traveler@example.com",
        "aal": "aal1", "amr": [{ "method": "password", "timestamp": now }],
    });
    if let (Some(claims), Some(patch)) = (claims.as_object_mut(), patch.as_object()) {
        for (key, value) in patch {
            if value.is_null() {
                claims.remove(key);
            } else {
                claims.insert(key.clone(), value.clone());
            }
        }
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap_or_default()
}

/// The test Stripe secret key (localstripe accepts any `sk_test_` key).
pub const STRIPE_KEY: &str = "sk_test_parker_wallet_e2e";

/// The webhook endpoint secret the test sidecars accept (with an older one, as
/// during a rotation).
pub const WEBHOOK_SECRET: &str = "whsec_parker_wallet_e2e";

/// A form POST to localstripe, as Stripe.js or a server would send it.
pub async fn localstripe_post(localstripe_url: &str, path: &str, form: &[(&str, &str)]) -> Result<Response> {
    let stream = tokio::net::TcpStream::connect(localstripe_url.trim_start_matches("http://")).await?;
    let bearer = format!("Bearer {STRIPE_KEY}");
    let body = form.iter().map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v))).collect::<Vec<_>>().join("&");
    send_raw(
        stream,
        "POST",
        path,
        &[("authorization", &bearer), ("content-type", "application/x-www-form-urlencoded")],
        body.into_bytes(),
    )
    .await
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A card PaymentMethod at localstripe, as Stripe.js makes one from what the
/// traveler typed (expiry 12/2031); returns its id.
pub async fn localstripe_card(localstripe_url: &str, number: &str) -> Result<String> {
    let form = [
        ("type", "card"),
        ("card[number]", number),
        ("card[exp_month]", "12"),
        ("card[exp_year]", "2031"),
        ("card[cvc]", "123"),
    ];
    let method = localstripe_post(localstripe_url, "/v1/payment_methods", &form).await?;
    anyhow::ensure!(method.status.is_success(), "creating a card at localstripe: {}", method.text);
    Ok(method.json["id"].as_str().unwrap_or_default().to_owned())
}

/// A GET from localstripe, with the test key.
pub async fn localstripe_get(localstripe_url: &str, path: &str) -> Result<Response> {
    let stream = tokio::net::TcpStream::connect(localstripe_url.trim_start_matches("http://")).await?;
    let bearer = format!("Bearer {STRIPE_KEY}");
    send_raw(stream, "GET", path, &[("authorization", &bearer)], Vec::new()).await
}

/// Every customer localstripe holds whose metadata names `user_id`.
pub async fn stripe_customers_of(localstripe_url: &str, user_id: &str) -> Result<Vec<serde_json::Value>> {
    let mut found = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(id) => format!("/v1/customers?limit=100&starting_after={id}"),
            None => "/v1/customers?limit=100".to_owned(),
        };
        let page = localstripe_get(localstripe_url, &path).await?;
        let data = page.json["data"].as_array().cloned().unwrap_or_default();
        after = data.last().and_then(|c| c["id"].as_str()).map(str::to_owned);
        found.extend(data.into_iter().filter(|c| c["metadata"]["user_id"] == user_id));
        if page.json["has_more"] != true || after.is_none() {
            return Ok(found);
        }
    }
}

/// A sidecar for Edge Functions (we are the `edge` caller) with the wallet
/// routes on `db`, as the `pw_test_sidecar` login role.
pub fn wallet_sidecar_config(db: &TestDb) -> Result<SidecarConfig> {
    let mut config = SidecarConfig::default().callers(CallerClass::Edge, vec![own_uid()]).with_auth();
    config.settings.database = Some(DatabaseSettings { max_connections: 4 });
    config.env.push(("PW_DATABASE_URL".into(), db.url("pw_test_sidecar")?));
    Ok(config)
}

/// Every state a booking entered (its `booking_charge_events`) is in its
/// traveler's audit chain, in the same order, and the chain verifies. Returns
/// the states as the events list them.
pub async fn assert_booking_in_audit_chain(db: &TestDb, booking_id: uuid::Uuid) -> Result<Vec<String>> {
    let mut admin = db.admin().await?;
    let entered: Vec<String> =
        sqlx::query_scalar("SELECT state FROM booking_charge_events WHERE booking_id = $1 ORDER BY id")
            .bind(booking_id)
            .fetch_all(&mut admin)
            .await?;
    let chained: Vec<String> = sqlx::query_scalar(
        "SELECT new_data ->> 'state' FROM traveler_data_audit
          WHERE table_name = 'booking_charges' AND record_id = $1 AND action IN ('INSERT', 'UPDATE')
          ORDER BY chain_seq",
    )
    .bind(booking_id)
    .fetch_all(&mut admin)
    .await?;
    // The chain holds every write of the row (a card chosen, an order kept),
    // so the states entered must appear in it in order, among others.
    let mut rest = chained.iter();
    let in_order = entered.iter().all(|state| rest.any(|chained| chained == state));
    anyhow::ensure!(
        in_order,
        "booking {booking_id}: states {entered:?} are not in the audit chain {chained:?} in order"
    );
    let broken: i64 =
        sqlx::query_scalar("SELECT count(*) FROM wallet.verify_audit_chain()").fetch_one(&mut admin).await?;
    anyhow::ensure!(broken == 0, "the audit chain does not verify ({broken} broken)");
    Ok(entered)
}

/// Who wrote each audited change of a booking (the `actor` column), with the
/// state it left, in chain order.
pub async fn booking_audit_actors(db: &TestDb, booking_id: uuid::Uuid) -> Result<Vec<(String, String)>> {
    Ok(sqlx::query_as(
        "SELECT coalesce(new_data ->> 'state', ''), coalesce(actor, '') FROM traveler_data_audit
          WHERE table_name = 'booking_charges' AND record_id = $1 ORDER BY chain_seq",
    )
    .bind(booking_id)
    .fetch_all(&mut db.admin().await?)
    .await?)
}

/// A traveler in `auth.users`; returns the user id.
pub async fn new_traveler(db: &TestDb) -> Result<String> {
    let user = uuid::Uuid::new_v4().to_string();
    sqlx::query("INSERT INTO auth.users (id, email) VALUES ($1::uuid, $2)")
        .bind(&user)
        .bind(format!("{user}@example.com"))
        .execute(&mut db.admin().await?)
        .await?;
    Ok(user)
}

/// A request as the traveler (their token), with optional `Idempotency-Key`.
pub async fn call(
    sidecar: &Sidecar,
    method: &str,
    path: &str,
    token: &str,
    key: Option<&str>,
    body: Option<serde_json::Value>,
) -> Result<Response> {
    let bearer = format!("Bearer {token}");
    let mut headers = vec![("authorization", bearer.as_str())];
    if let Some(key) = key {
        headers.push(("idempotency-key", key));
    }
    sidecar.request_with(method, path, &headers, body).await
}

pub async fn setup_intent(sidecar: &Sidecar, token: &str) -> Result<Response> {
    let bearer = format!("Bearer {token}");
    sidecar
        .request_with(
            "POST",
            "/v1/wallet/setup-intents",
            &[("authorization", &bearer), ("user-agent", "edge-fn/1"), ("x-forwarded-for", "198.51.100.23")],
            None,
        )
        .await
}

/// What the browser does with Stripe.js: a card into a PaymentMethod, then the
/// SetupIntent confirmed with it. Returns the SetupIntent id.
pub async fn card_saved_through_stripe(
    sidecar: &Sidecar,
    token: &str,
    localstripe: &str,
    number: &str,
) -> Result<String> {
    let intent = setup_intent(sidecar, token).await?;
    anyhow::ensure!(intent.status == StatusCode::OK, "{}", intent.text);
    let id = intent.json["setup_intent_id"].as_str().unwrap_or_default().to_owned();
    let secret = intent.json["client_secret"].as_str().unwrap_or_default();
    confirm_setup_intent(localstripe, &id, secret, number).await?;
    Ok(id)
}

/// Stripe.js's part of saving a card: `number` into a PaymentMethod, and the
/// SetupIntent `id` confirmed with it (3-D Secure completed when asked).
pub async fn confirm_setup_intent(localstripe: &str, id: &str, secret: &str, number: &str) -> Result<()> {
    let pm = localstripe_card(localstripe, number).await?;
    let path = format!("/v1/setup_intents/{id}/confirm");
    let mut confirmed =
        localstripe_post(localstripe, &path, &[("payment_method", &pm), ("client_secret", secret)]).await?;
    if confirmed.json["status"] == "requires_action" {
        // A card that always asks for 3-D Secure: the traveler completes it, as Stripe.js would.
        confirmed = localstripe_post(localstripe, &path, &[("client_secret", secret)]).await?;
    }
    anyhow::ensure!(confirmed.json["status"] == "succeeded", "{}", confirmed.text);
    Ok(())
}

/// The project's service role key (what Supabase gives server-side code), signed
/// with the tests' JWT secret.
pub fn service_role_key() -> Result<String> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({ "role": "service_role", "iss": "supabase", "iat": now, "exp": now + 600 }),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )?)
}

/// The consent text the tests' travelers tick when they save a card.
pub const CARD_CONSENT_VERSION: &str = "card-mit-test";

/// A card saved the way the app does it, with the traveler's consent to
/// off-session charges; returns its row id.
pub async fn wallet_card(sidecar: &Sidecar, token: &str, localstripe: &str, number: &str) -> Result<String> {
    let setup_intent = card_saved_through_stripe(sidecar, token, localstripe, number).await?;
    let added = call(
        sidecar,
        "POST",
        "/v1/wallet/payment-methods",
        token,
        None,
        Some(serde_json::json!({
            "setup_intent_id": setup_intent,
            "off_session_consent": { "text_version": CARD_CONSENT_VERSION },
        })),
    )
    .await?;
    anyhow::ensure!(added.status.is_success(), "{}", added.text);
    Ok(added.json["data"]["id"].as_str().unwrap_or_default().to_owned())
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response with its body read and, when JSON, parsed.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub content_type: Option<String>,
    pub json: serde_json::Value,
    pub text: String,
}

/// One HTTP/1.1 request over any byte stream (Unix socket or TCP), JSON body.
pub async fn send<S>(stream: S, method: &str, path: &str, body: Option<serde_json::Value>) -> Result<Response>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let payload = body.map(|b| b.to_string()).unwrap_or_default().into_bytes();
    send_raw(stream, method, path, &[("content-type", "application/json")], payload).await
}

/// One HTTP/1.1 request with any headers and body bytes.
pub async fn send_raw<S>(
    stream: S,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<Response>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let mut request = Request::builder().method(method).uri(path).header("host", "localhost");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = sender.send_request(request.body(Full::new(Bytes::from(body)))?).await?;
    let status = response.status();
    let content_type =
        response.headers().get(hyper::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await?.to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Ok(Response { status, headers, content_type, json, text })
}

/// A textual description of every schema object the migrations own, sorted, for
/// comparing two databases (or one database at two moments). OIDs never appear,
/// so equal schemas give equal snapshots.
pub async fn schema_snapshot(conn: &mut PgConnection) -> Result<Vec<String>> {
    const SNAPSHOT_SQL: &str = r#"
    WITH ours AS (
      SELECT oid, nspname FROM pg_namespace
       WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', 'parker_migrations')
         AND nspname NOT LIKE 'pg_temp%' AND nspname NOT LIKE 'pg_toast_temp%'
    )
    SELECT format('schema %s acl=%s comment=%s', n.nspname, n.nspacl::text, obj_description(n.oid, 'pg_namespace'))
      FROM ours o JOIN pg_namespace n ON n.oid = o.oid
    UNION ALL
    SELECT format('relation %s.%s kind=%s rls=%s forced=%s acl=%s', n.nspname, c.relname, c.relkind,
                  c.relrowsecurity, c.relforcerowsecurity, c.relacl::text)
      FROM pg_class c JOIN ours n ON n.oid = c.relnamespace
    UNION ALL
    SELECT format('column %s.%s.%s %s notnull=%s default=%s acl=%s', n.nspname, c.relname, a.attname,
                  format_type(a.atttypid, a.atttypmod), a.attnotnull,
                  pg_get_expr(d.adbin, d.adrelid), a.attacl::text)
      FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN ours n ON n.oid = c.relnamespace
      LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE a.attnum > 0 AND NOT a.attisdropped
    UNION ALL
    SELECT format('constraint %s.%s %s %s', n.nspname, c.relname, k.conname, pg_get_constraintdef(k.oid))
      FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN ours n ON n.oid = c.relnamespace
    UNION ALL
    SELECT 'index ' || pg_get_indexdef(i.indexrelid)
      FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN ours n ON n.oid = c.relnamespace
    UNION ALL
    SELECT format('policy %s.%s %s permissive=%s cmd=%s roles=%s using=%s check=%s', n.nspname, c.relname,
                  p.polname, p.polpermissive, p.polcmd,
                  (SELECT string_agg(coalesce(r.rolname, 'public'), ',' ORDER BY r.rolname)
                     FROM unnest(p.polroles) AS pr(oid) LEFT JOIN pg_roles r ON r.oid = pr.oid),
                  pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid))
      FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN ours n ON n.oid = c.relnamespace
    UNION ALL
    SELECT 'trigger ' || pg_get_triggerdef(t.oid)
      FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN ours n ON n.oid = c.relnamespace
     WHERE NOT t.tgisinternal
    UNION ALL
    SELECT 'function ' || pg_get_functiondef(p.oid) || ' acl=' || coalesce(p.proacl::text, '')
      FROM pg_proc p JOIN ours n ON n.oid = p.pronamespace
     WHERE p.prokind IN ('f', 'p')
    UNION ALL
    SELECT 'extension ' || extname || ' ' || extversion FROM pg_extension
    "#;
    let mut lines: Vec<String> = sqlx::query_scalar::<_, String>(SNAPSHOT_SQL).fetch_all(&mut *conn).await?;
    lines.sort();
    Ok(lines)
}

/// Runs each named test on both templates: for every `async fn name(template:
/// Template) -> anyhow::Result<()>` it defines `plain::name` and `supabase::name`,
/// so each template's result is counted (and filtered) on its own.
#[macro_export]
macro_rules! on_both_templates {
    ($($name:ident),* $(,)?) => {
        mod plain {
            $(
                #[tokio::test]
                async fn $name() -> anyhow::Result<()> {
                    super::$name($crate::Template::Plain).await
                }
            )*
        }
        mod supabase {
            $(
                #[tokio::test]
                async fn $name() -> anyhow::Result<()> {
                    super::$name($crate::Template::Supabase).await
                }
            )*
        }
    };
}
