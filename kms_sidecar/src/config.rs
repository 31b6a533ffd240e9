//! Start-up settings: a TOML file (`--config`, or `PW_CONFIG`) with environment
//! overrides (`PW__SECTION__KEY`, e.g. `PW__SOCKET__PATH`). Secrets are never in
//! the file: they come from the environment (see [`crate::secrets`]).
//! Every problem is reported at start, naming the setting.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::crypto::keys::AwsKmsSettings;
use crate::crypto::{CachePolicy, KeySchedule};
use crate::domain::CallerClass;
use crate::fairness::FairUse;
use crate::secrets;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Environment {
    #[default]
    Development,
    Production,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SocketSettings {
    pub path: PathBuf,
    /// Octal permission bits, e.g. "660"; never world-accessible.
    #[serde(default = "default_socket_mode")]
    pub mode: String,
    /// Group owning the socket (name or gid): its members may connect.
    pub group: Option<String>,
}

fn default_socket_mode() -> String {
    "660".to_owned()
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TcpSettings {
    /// Loopback only; every request needs `Authorization: Bearer <PW_SERVICE_TOKEN>`.
    pub listen: SocketAddr,
    #[serde(default = "default_tcp_class")]
    pub caller_class: CallerClass,
}

fn default_tcp_class() -> CallerClass {
    CallerClass::Edge
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    Local,
    AwsKms,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AwsKmsConfig {
    pub key_id: String,
    pub region: String,
    pub endpoint_url: Option<String>,
    #[serde(default = "default_kms_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_kms_timeout_ms() -> u64 {
    5_000
}

impl AwsKmsConfig {
    /// How to reach `key_id` (this key, or another in the same account and
    /// region, such as the audit signing key) with the sidecar's credentials.
    pub fn connection(&self, key_id: &str, secrets: &Secrets) -> AwsKmsSettings {
        AwsKmsSettings {
            key_id: key_id.to_owned(),
            region: self.region.clone(),
            endpoint_url: self.endpoint_url.clone(),
            credentials: secrets.aws_access_key_id.clone().zip(secrets.aws_secret_access_key.clone()),
            timeout: Duration::from_millis(self.timeout_ms),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeySettings {
    pub provider: ProviderKind,
    /// Part of every data key's KMS encryption context; raise it to retire all
    /// data keys at once (then run `rotate-keys`).
    #[serde(default = "default_epoch")]
    pub epoch: u32,
    pub local_key_file: Option<PathBuf>,
    pub aws_kms: Option<AwsKmsConfig>,
    /// Key references (KMS key ARNs, or `local:<id>`) of keys that no longer
    /// wrap new data keys but whose records are still read until `rotate-keys`
    /// has moved them. A record naming any other key is refused before KMS.
    #[serde(default)]
    pub retired_key_refs: Vec<String>,
}

fn default_epoch() -> u32 {
    1
}

/// Every table below is optional, and so is each of its settings: what is
/// not given is the `Default`, which the docs' sample configuration shows.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSettings {
    pub max_age_secs: u64,
    pub max_messages: u64,
    pub max_entries: usize,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self { max_age_secs: 300, max_messages: 100_000, max_entries: 1_000 }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_body_bytes: usize,
    /// Wallet and booking requests of one traveler running at once (each may
    /// hold a pooled connection); keep it well below `database.max_connections`.
    pub per_traveler_requests: usize,
    /// More of one traveler's requests wait their turn, holding no connection...
    pub per_traveler_queue: usize,
    /// ...for at most this long; beyond either, 429 `too_many_requests`.
    pub per_traveler_wait_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_body_bytes: 64 * 1024, per_traveler_requests: 2, per_traveler_queue: 32, per_traveler_wait_secs: 30 }
    }
}

/// Which peer uids belong to which caller class.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallerMap {
    pub database: Vec<u32>,
    pub edge: Vec<u32>,
    pub admin: Vec<u32>,
}

impl CallerMap {
    pub fn class_of(&self, uid: u32) -> Option<CallerClass> {
        [(CallerClass::Database, &self.database), (CallerClass::Edge, &self.edge), (CallerClass::Admin, &self.admin)]
            .into_iter()
            .find(|(_, uids)| uids.contains(&uid))
            .map(|(class, _)| class)
    }
}

/// The wallet database (its URL is the secret `PW_DATABASE_URL`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    pub max_connections: u32,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self { max_connections: 8 }
    }
}

/// How travelers' JWTs are verified: the project secret `PW_JWT_SECRET` (HS256)
/// and/or a JWKS file for Supabase's asymmetric keys.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    pub audience: String,
    pub jwks_file: Option<PathBuf>,
    /// Supabase Auth's issuer (`https://<project>.supabase.co/auth/v1`): when
    /// set, a traveler's token must name it in `iss`.
    pub issuer: Option<String>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self { audience: "authenticated".to_owned(), jwks_file: None, issuer: None }
    }
}

/// Stripe (its secret key is `PW_STRIPE_SECRET_KEY`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StripeSettings {
    /// Another API base than Stripe's (an emulator in tests).
    pub api_base: Option<String>,
    pub timeout_ms: u64,
    /// How far a webhook's signed timestamp may be from now.
    pub webhook_tolerance_secs: i64,
}

impl Default for StripeSettings {
    fn default() -> Self {
        Self { api_base: None, timeout_ms: 10_000, webhook_tolerance_secs: 300 }
    }
}

/// Duffel (its access token is `PW_DUFFEL_ACCESS_TOKEN`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DuffelSettings {
    pub api_base: String,
    pub timeout_ms: u64,
}

impl Default for DuffelSettings {
    fn default() -> Self {
        Self { api_base: "https://api.duffel.com".to_owned(), timeout_ms: 30_000 }
    }
}

/// Twilio Verify, for phone verification. Its credentials are secrets:
/// `PW_TWILIO_VERIFY_SERVICE_SID` (`VA…`) and either `PW_TWILIO_API_KEY_SID` and
/// `PW_TWILIO_API_KEY_SECRET` (preferred: a key that can be revoked alone) or
/// `PW_TWILIO_ACCOUNT_SID` and `PW_TWILIO_AUTH_TOKEN`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TwilioSettings {
    pub api_base: String,
    pub timeout_ms: u64,
}

impl Default for TwilioSettings {
    fn default() -> Self {
        Self { api_base: "https://verify.twilio.com".to_owned(), timeout_ms: 10_000 }
    }
}

/// The wallet's own limits on phone verification, on top of Twilio's: counted
/// in Postgres, so they hold across sidecar processes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PhoneSettings {
    /// How long a code may be checked (Twilio's default lifetime is 10 minutes).
    pub code_ttl_secs: u64,
    /// Wrong codes allowed per verification (Twilio's own limit is 5).
    pub max_checks: u16,
    /// The window the two send limits below count in.
    pub send_window_secs: u64,
    /// Codes sent for one traveler, whatever the number, per window.
    pub sends_per_traveler: u32,
    /// Codes sent to one number, whoever asks, per window.
    pub sends_per_number: u32,
    /// The shortest time between two codes for one traveler.
    pub resend_after_secs: u64,
}

impl Default for PhoneSettings {
    fn default() -> Self {
        Self {
            code_ttl_secs: 600,
            max_checks: 5,
            send_window_secs: 3_600,
            sends_per_traveler: 5,
            sends_per_number: 5,
            resend_after_secs: 30,
        }
    }
}

/// The booking saga's policy.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BookingSettings {
    /// The page where a traveler completes 3-D Secure; `{booking_id}` is
    /// replaced. Sent in the outbox email: it carries the booking, never a secret.
    pub authentication_url: String,
    /// How long an authorization may wait for capture. Visa's limit for
    /// merchant-initiated transactions is 5 days, the shortest of the networks.
    pub capture_window_hours: i64,
    /// The reconciler alerts on authorizations this close to the deadline.
    pub alert_before_hours: i64,
    /// The reconciler leaves a booking alone until it is this old (a live
    /// request may still be working on it).
    pub reconcile_after_secs: i64,
    /// An order that Duffel does not list this long after an ambiguous create
    /// is taken as not created, and the authorization is released.
    pub order_settle_secs: i64,
    /// A booking still waiting for 3-D Secure this long is declined and its
    /// PaymentIntent canceled by the reconciler (the offer is long gone).
    pub authentication_expiry_hours: i64,
}

impl Default for BookingSettings {
    fn default() -> Self {
        Self {
            authentication_url: "https://app.parkerflight.com/bookings/{booking_id}/authenticate".to_owned(),
            capture_window_hours: 120,
            alert_before_hours: 24,
            reconcile_after_secs: 120,
            order_settle_secs: 600,
            authentication_expiry_hours: 24,
        }
    }
}

/// The audit trail's signed checkpoints and redactions (`audit-checkpoint`,
/// `audit-verify`, `audit-redact`); KMS is reached as `keys.aws_kms` says.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    /// The ARN of an asymmetric KMS key (ECC_NIST_P256, SIGN_VERIFY), apart from the data key.
    pub signing_key_id: String,
    /// The append-only file every checkpoint is also written to: on storage the
    /// database's owner cannot write.
    pub checkpoint_log: PathBuf,
    /// How often `audit-checkpoint` runs: what can go unnoticed is what happens
    /// within one interval; `audit-verify` reports a newest checkpoint older than two.
    #[serde(default = "default_checkpoint_interval")]
    pub checkpoint_interval_secs: u64,
}

fn default_checkpoint_interval() -> u64 {
    3_600
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub environment: Environment,
    pub socket: SocketSettings,
    #[serde(default)]
    pub callers: CallerMap,
    pub tcp: Option<TcpSettings>,
    pub keys: KeySettings,
    #[serde(default)]
    pub cache: CacheSettings,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default = "default_grace")]
    pub shutdown_grace_secs: u64,
    /// Answers carry `Server-Timing: outbound;dur=<ms>`, the time the request
    /// waited on KMS, Stripe, Duffel, Twilio and the pool (the load test reads
    /// it). Off by default: callers need not learn the dependencies' timing.
    #[serde(default)]
    pub server_timing: bool,
    /// Needed by the wallet routes; without it they answer 503.
    pub database: Option<DatabaseSettings>,
    pub auth: Option<AuthSettings>,
    pub stripe: Option<StripeSettings>,
    /// Needed by the booking routes, with [stripe].
    pub duffel: Option<DuffelSettings>,
    #[serde(default)]
    pub bookings: BookingSettings,
    pub audit: Option<AuditSettings>,
    /// Needed by the phone verification routes, with [database] and [auth].
    pub twilio: Option<TwilioSettings>,
    #[serde(default)]
    pub phone: PhoneSettings,
}

fn default_grace() -> u64 {
    10
}

/// Secrets, kept apart from `Settings` so that printing settings never comes near them.
#[derive(Debug, Default)]
pub struct Secrets {
    pub database_url: Option<SecretString>,
    pub jwt_secret: Option<SecretString>,
    pub stripe_secret_key: Option<SecretString>,
    /// Webhook endpoint secrets (`whsec_...`), comma-separated: more than one
    /// while a secret is being rotated.
    pub stripe_webhook_secrets: Vec<SecretString>,
    pub service_token: Option<SecretString>,
    pub duffel_access_token: Option<SecretString>,
    pub aws_access_key_id: Option<SecretString>,
    pub aws_secret_access_key: Option<SecretString>,
    pub twilio: Option<TwilioCredentials>,
}

/// How the sidecar signs in to Twilio Verify (HTTP Basic) and which service it uses.
#[derive(Debug)]
pub struct TwilioCredentials {
    pub service_sid: String,
    /// An API key SID (`SK…`) or the account SID (`AC…`).
    pub username: String,
    pub password: SecretString,
}

impl TwilioCredentials {
    fn load() -> Result<Option<Self>, ConfigError> {
        let exposed =
            |secret: Option<SecretString>| secret.map(|s| secrecy::ExposeSecret::expose_secret(&s).to_owned());
        let service_sid = exposed(secrets::from_env("PW_TWILIO_VERIFY_SERVICE_SID")?);
        let api_key =
            (exposed(secrets::from_env("PW_TWILIO_API_KEY_SID")?), secrets::from_env("PW_TWILIO_API_KEY_SECRET")?);
        let account =
            (exposed(secrets::from_env("PW_TWILIO_ACCOUNT_SID")?), secrets::from_env("PW_TWILIO_AUTH_TOKEN")?);
        let sid_like = |sid: &str, prefix: &str| {
            sid.len() == 34 && sid.starts_with(prefix) && sid[2..].bytes().all(|b| b.is_ascii_hexdigit())
        };
        let (username, password) = match (api_key, account) {
            ((Some(sid), Some(secret)), _) => (sid, secret),
            ((None, None), (Some(sid), Some(token))) => (sid, token),
            ((None, None), (None, None)) if service_sid.is_none() => return Ok(None),
            ((Some(_), None) | (None, Some(_)), _) => {
                return Err(setting("PW_TWILIO_API_KEY_SECRET", "set both PW_TWILIO_API_KEY_SID and its secret"))
            }
            _ => {
                return Err(setting(
                    "PW_TWILIO_AUTH_TOKEN",
                    "set PW_TWILIO_API_KEY_SID and PW_TWILIO_API_KEY_SECRET, or PW_TWILIO_ACCOUNT_SID and PW_TWILIO_AUTH_TOKEN",
                ))
            }
        };
        if !(sid_like(&username, "SK") || sid_like(&username, "AC")) {
            return Err(setting("PW_TWILIO_API_KEY_SID", "must be an API key SID (SK…) or an account SID (AC…)"));
        }
        let Some(service_sid) = service_sid.filter(|sid| sid_like(sid, "VA")) else {
            return Err(setting("PW_TWILIO_VERIFY_SERVICE_SID", "required: the Verify service SID (VA…)"));
        };
        Ok(Some(Self { service_sid, username, password }))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Invalid(String),
    #[error("configuration: {setting}: {problem}")]
    Setting { setting: &'static str, problem: String },
    #[error("configuration: {0}")]
    Secret(#[from] secrets::SecretError),
}

fn setting(setting: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Setting { setting, problem: problem.into() }
}

impl Settings {
    /// Reads the file (if any), then the `PW__` environment overrides, then the
    /// command line's (`socket.path` from `--socket`, for instance).
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with(file, &[])
    }

    pub fn load_with(file: Option<&Path>, overrides: &[(&str, String)]) -> Result<Self, ConfigError> {
        let mut figment = Figment::new();
        if let Some(file) = file {
            if !file.is_file() {
                return Err(ConfigError::Invalid(format!("config file {} does not exist", file.display())));
            }
            figment = figment.merge(Toml::file(file));
        }
        figment = figment.merge(Env::prefixed("PW__").split("__").lowercase(true));
        for (key, value) in overrides {
            figment = figment.merge(figment::providers::Serialized::default(key, value));
        }
        let settings: Settings = figment.extract().map_err(|e| ConfigError::Invalid(e.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.socket_mode()?;
        if let Some(tcp) = &self.tcp {
            if !tcp.listen.ip().is_loopback() {
                return Err(setting("tcp.listen", format!("{} is not a loopback address", tcp.listen)));
            }
            // The database class is trusted to attest its subject; only the
            // Postgres OS user (its uid) can be that, never a bearer of a token.
            if tcp.caller_class == CallerClass::Database {
                return Err(setting("tcp.caller_class", "the database class is for the Postgres OS user's uid only"));
            }
        }
        if let Some(bad) = self.keys.retired_key_refs.iter().find(|r| r.is_empty() || r.len() > 255) {
            return Err(setting("keys.retired_key_refs", format!("{bad:?} is not a key reference (1 to 255 bytes)")));
        }
        match self.keys.provider {
            ProviderKind::Local if self.environment == Environment::Production => {
                return Err(setting(
                    "keys.provider",
                    "the local keyring is for development and demos; production needs aws-kms",
                ))
            }
            ProviderKind::Local if self.keys.local_key_file.is_none() => {
                return Err(setting("keys.local_key_file", "required with keys.provider = local"))
            }
            ProviderKind::AwsKms if self.keys.aws_kms.is_none() => {
                return Err(setting("keys.aws_kms", "required with keys.provider = aws-kms (key_id, region)"))
            }
            _ => {}
        }
        if self.limits.per_traveler_requests == 0 {
            return Err(setting("limits.per_traveler_requests", "must be at least 1"));
        }
        if self.cache.max_messages == 0 || self.cache.max_age_secs == 0 || self.cache.max_entries == 0 {
            return Err(setting("cache", "max_age_secs, max_messages and max_entries must be positive"));
        }
        // Random 96-bit nonces stay safe far below 2^32 messages per key.
        if self.cache.max_messages > 1 << 32 {
            return Err(setting("cache.max_messages", "at most 2^32 records per data key (AES-GCM nonce limit)"));
        }
        if let Some(audit) = &self.audit {
            // Records name the key that signed them; only an exact ARN can be compared.
            if !(audit.signing_key_id.starts_with("arn:") && audit.signing_key_id.contains(":key/")) {
                return Err(setting("audit.signing_key_id", "must be the signing key's ARN (not an alias or bare id)"));
            }
            if self.keys.aws_kms.is_none() {
                return Err(setting(
                    "keys.aws_kms",
                    "audit signing reaches KMS as keys.aws_kms says (region, endpoint)",
                ));
            }
            if audit.checkpoint_interval_secs == 0 {
                return Err(setting("audit.checkpoint_interval_secs", "must be positive"));
            }
        }
        let phone = &self.phone;
        if phone.code_ttl_secs == 0
            || phone.max_checks == 0
            || phone.send_window_secs == 0
            || phone.sends_per_traveler == 0
            || phone.sends_per_number == 0
        {
            return Err(setting(
                "phone",
                "code_ttl_secs, max_checks, send_window_secs and the send limits must be positive",
            ));
        }
        let mut seen = BTreeMap::new();
        for (class, uids) in
            [("database", &self.callers.database), ("edge", &self.callers.edge), ("admin", &self.callers.admin)]
        {
            for uid in uids {
                if let Some(other) = seen.insert(*uid, class) {
                    return Err(setting("callers", format!("uid {uid} is in both {other} and {class}")));
                }
            }
        }
        Ok(())
    }

    pub fn socket_mode(&self) -> Result<u32, ConfigError> {
        parse_octal_mode(&self.socket.mode).map_err(|problem| setting("socket.mode", problem))
    }

    pub fn fair_use(&self) -> FairUse {
        FairUse {
            running: self.limits.per_traveler_requests,
            queued: self.limits.per_traveler_queue,
            wait: Duration::from_secs(self.limits.per_traveler_wait_secs),
        }
    }

    pub fn key_schedule(&self) -> KeySchedule {
        KeySchedule { epoch: self.keys.epoch, retired_key_refs: self.keys.retired_key_refs.iter().cloned().collect() }
    }

    pub fn cache_policy(&self) -> CachePolicy {
        CachePolicy {
            max_age: Duration::from_secs(self.cache.max_age_secs),
            max_messages: self.cache.max_messages,
            max_entries: self.cache.max_entries,
        }
    }
}

impl Secrets {
    /// Reads the secrets the settings call for, failing on what is missing.
    pub fn load(settings: &Settings) -> Result<Self, ConfigError> {
        let secrets = Self {
            database_url: secrets::from_env("PW_DATABASE_URL")?,
            jwt_secret: secrets::from_env("PW_JWT_SECRET")?,
            stripe_secret_key: secrets::from_env("PW_STRIPE_SECRET_KEY")?,
            stripe_webhook_secrets: secrets::from_env("PW_STRIPE_WEBHOOK_SECRETS")?
                .map(|list| {
                    secrecy::ExposeSecret::expose_secret(&list)
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| SecretString::from(s.to_owned()))
                        .collect()
                })
                .unwrap_or_default(),
            service_token: secrets::from_env("PW_SERVICE_TOKEN")?,
            duffel_access_token: secrets::from_env("PW_DUFFEL_ACCESS_TOKEN")?,
            aws_access_key_id: secrets::from_env("AWS_ACCESS_KEY_ID")?,
            aws_secret_access_key: secrets::from_env("AWS_SECRET_ACCESS_KEY")?,
            twilio: TwilioCredentials::load()?,
        };
        if settings.tcp.is_some() && secrets.service_token.is_none() {
            return Err(setting("PW_SERVICE_TOKEN", "required when tcp.listen is set"));
        }
        if settings.database.is_some() && secrets.database_url.is_none() {
            return Err(setting("PW_DATABASE_URL", "required when [database] is configured"));
        }
        if settings.stripe.is_some() && secrets.stripe_secret_key.is_none() {
            return Err(setting("PW_STRIPE_SECRET_KEY", "required when [stripe] is configured"));
        }
        if settings.duffel.is_some() && secrets.duffel_access_token.is_none() {
            return Err(setting("PW_DUFFEL_ACCESS_TOKEN", "required when [duffel] is configured"));
        }
        if settings.twilio.is_some() && secrets.twilio.is_none() {
            return Err(setting(
                "PW_TWILIO_VERIFY_SERVICE_SID",
                "required when [twilio] is configured, with an API key or the account's auth token",
            ));
        }
        if let Some(auth) = &settings.auth {
            if secrets.jwt_secret.is_none() && auth.jwks_file.is_none() {
                return Err(setting("PW_JWT_SECRET", "set it or auth.jwks_file to verify travelers' tokens"));
            }
        }
        if secrets.aws_access_key_id.is_some() != secrets.aws_secret_access_key.is_some() {
            return Err(setting(
                "AWS_SECRET_ACCESS_KEY",
                "set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither",
            ));
        }
        Ok(secrets)
    }
}

fn parse_octal_mode(text: &str) -> Result<u32, String> {
    let mode = u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .map_err(|_| format!("must be octal like 660, got {text:?}"))?;
    if mode & !0o777 != 0 {
        return Err(format!("{text} has bits outside 0777"));
    }
    if mode & 0o007 != 0 {
        return Err(format!("{text} lets any local user connect; drop the 'other' bits"));
    }
    Ok(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> String {
        "[socket]\npath = \"/tmp/s.sock\"\n[keys]\nprovider = \"local\"\nlocal_key_file = \"/tmp/k\"\n".to_owned()
    }

    fn load(text: &str) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        Settings::load(Some(&path))
    }

    /// The test harness writes sidecar configurations by serialising `Settings`:
    /// what it writes must load back as the same settings.
    #[test]
    fn settings_serialised_to_toml_load_back_unchanged() {
        let mut settings = load(&minimal()).unwrap();
        settings.tcp = Some(TcpSettings { listen: "127.0.0.1:9".parse().unwrap(), caller_class: CallerClass::Admin });
        settings.callers.edge = vec![1000, 1001];
        settings.keys.retired_key_refs = vec!["local:old".into()];
        settings.database = Some(DatabaseSettings { max_connections: 3 });
        settings.stripe = Some(StripeSettings { api_base: Some("http://127.0.0.1:1/".into()), ..Default::default() });
        settings.bookings.order_settle_secs = 0;
        let text = toml::to_string(&settings).unwrap();
        let loaded = load(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(format!("{loaded:?}"), format!("{settings:?}"), "{text}");
    }

    #[test]
    fn accepts_owner_and_group_modes() {
        assert_eq!(parse_octal_mode("660"), Ok(0o660));
        assert_eq!(parse_octal_mode("0o600"), Ok(0o600));
    }

    #[test]
    fn refuses_world_access_and_garbage() {
        assert!(parse_octal_mode("666").is_err());
        assert!(parse_octal_mode("1777").is_err());
        assert!(parse_octal_mode("rw-rw----").is_err());
    }

    #[test]
    fn a_minimal_file_loads_with_defaults() {
        let settings = load(&minimal()).unwrap();
        assert_eq!(settings.environment, Environment::Development);
        assert_eq!(settings.cache.max_age_secs, 300);
        assert_eq!((settings.limits.max_body_bytes, settings.limits.per_traveler_requests), (64 * 1024, 2));
        assert_eq!(settings.bookings.capture_window_hours, 120);
        assert_eq!(settings.callers.class_of(0), None);
    }

    #[test]
    fn an_empty_table_takes_every_default_and_a_partial_one_the_rest() {
        let settings = load(&format!("{}[database]\n[stripe]\ntimeout_ms = 5\n[duffel]\n[auth]\n", minimal())).unwrap();
        assert_eq!(settings.database.map(|d| d.max_connections), Some(8));
        let stripe = settings.stripe.unwrap();
        assert_eq!((stripe.timeout_ms, stripe.webhook_tolerance_secs), (5, 300));
        assert_eq!(settings.duffel.map(|d| d.api_base), Some("https://api.duffel.com".to_owned()));
        assert_eq!(settings.auth.map(|a| a.audience), Some("authenticated".to_owned()));
    }

    #[test]
    fn misconfigurations_name_the_setting() {
        let cases = [
            (minimal().replace("\"local\"", "\"aws-kms\""), "keys.aws_kms"),
            (format!("environment = \"production\"\n{}", minimal()), "keys.provider"),
            (format!("{}[tcp]\nlisten = \"0.0.0.0:8080\"\n", minimal()), "tcp.listen"),
            (
                format!("{}[tcp]\nlisten = \"127.0.0.1:8080\"\ncaller_class = \"database\"\n", minimal()),
                "tcp.caller_class",
            ),
            (minimal().replace("[keys]", "[keys]\nretired_key_refs = [\"\"]"), "keys.retired_key_refs"),
            (format!("{}[callers]\nedge = [1]\nadmin = [1]\n", minimal()), "callers"),
            (minimal().replace("[keys]", "[socket2]\n[keys]"), "socket2"),
            (format!("{}[cache]\nmax_messages = 0\n", minimal()), "cache"),
        ];
        for (text, named) in cases {
            let error = load(&text).unwrap_err().to_string();
            assert!(error.contains(named), "{named}: {error}");
        }
    }

    #[test]
    fn caller_classes_map_by_uid() {
        let settings =
            load(&format!("{}[callers]\ndatabase = [105]\nedge = [1000]\nadmin = [0]\n", minimal())).unwrap();
        assert_eq!(settings.callers.class_of(105), Some(CallerClass::Database));
        assert_eq!(settings.callers.class_of(0), Some(CallerClass::Admin));
        assert_eq!(settings.callers.class_of(7), None);
    }
}
