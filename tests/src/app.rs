//! A wallet app for one test, as crates.io's `TestApp` and zero-to-production's
//! `spawn_app`: a migrated database, a sidecar on it (configured through the
//! sidecar's own settings type), Stripe and Duffel where asked for, and a
//! client that speaks as a traveler.
//!
//! ```ignore
//! let app = TestApp::wallet().with_stripe().start().await?;
//! let traveler = app.new_traveler().await?;
//! let added = app.traveler(&traveler).key("k1").post("/v1/wallet/payment-methods", body).await?;
//! ```

use anyhow::Result;
use serde_json::Value;

use crate::{traveler_token, wallet_sidecar_config, Emulators, Response, Sidecar, SidecarConfig, Template, TestDb};

/// A change to the sidecar's configuration, applied at start.
type Change = Box<dyn FnOnce(&mut SidecarConfig) + Send>;

/// What a test app is built from; see [`TestApp::wallet`].
pub struct TestAppBuilder {
    template: Template,
    stripe: Option<Option<String>>,
    duffel: Option<String>,
    twilio: Option<String>,
    configure: Vec<Change>,
}

/// A running app: its database, its sidecar, the configuration it runs with.
pub struct TestApp {
    pub db: TestDb,
    pub sidecar: Sidecar,
    pub config: SidecarConfig,
}

/// A traveler of the app's database and their access token.
#[derive(Debug, Clone)]
pub struct TestTraveler {
    pub id: String,
    pub token: String,
}

impl TestApp {
    /// The wallet routes for Edge Functions (we are the `edge` caller), on a
    /// fresh migrated database of the plain cluster.
    pub fn wallet() -> TestAppBuilder {
        TestAppBuilder { template: Template::Plain, stripe: None, duffel: None, twilio: None, configure: Vec::new() }
    }

    /// A new traveler in `auth.users`, with a token (whose `email` claim is theirs).
    pub async fn new_traveler(&self) -> Result<TestTraveler> {
        let id = crate::new_traveler(&self.db).await?;
        let token = traveler_token(&id, serde_json::json!({ "email": format!("{id}@example.com") }));
        Ok(TestTraveler { id, token })
    }

    /// Requests as `traveler` (their token in `Authorization`).
    pub fn traveler(&self, traveler: &TestTraveler) -> TravelerRequest<'_> {
        TravelerRequest { sidecar: &self.sidecar, token: traveler.token.clone(), key: None }
    }

    /// The Stripe emulator's base URL.
    pub fn localstripe(&self) -> Result<String> {
        Ok(Emulators::from_env()?.localstripe_url)
    }

    /// A profile for `traveler` with marketing consented (text `marketing-1`).
    pub async fn marketing_profile(&self, traveler: &TestTraveler, first: &str, last: &str, born: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO traveler_profiles (user_id, first_name, last_name, date_of_birth, notification_preferences)
             VALUES ($1::uuid, $2, $3, $4::date,
                     '{\"topics\": {\"marketing\": true}, \"marketing_consent_version\": \"marketing-1\"}')",
        )
        .bind(&traveler.id)
        .bind(first)
        .bind(last)
        .bind(born)
        .execute(&mut self.db.admin().await?)
        .await?;
        Ok(())
    }

    /// A campaign of `traveler`'s with their consent to off-session bookings;
    /// returns its id.
    pub async fn consented_campaign(&self, traveler: &TestTraveler, name: &str) -> Result<String> {
        Ok(sqlx::query_scalar(
            "INSERT INTO campaigns (user_id, name, consent_at, consent_text_version)
             VALUES ($1::uuid, $2, now(), 'campaign-mit-1') RETURNING id::text",
        )
        .bind(&traveler.id)
        .bind(name)
        .fetch_one(&mut self.db.admin().await?)
        .await?)
    }

    /// A card saved the way the app does it (Stripe.js, then the wallet);
    /// returns its row id.
    pub async fn saved_card(&self, traveler: &TestTraveler, number: &str) -> Result<String> {
        crate::wallet_card(&self.sidecar, &traveler.token, &self.localstripe()?, number).await
    }
}

impl TestAppBuilder {
    /// On the given cluster (the plain one by default).
    pub fn on(mut self, template: Template) -> Self {
        self.template = template;
        self
    }

    /// Stripe: localstripe.
    pub fn with_stripe(mut self) -> Self {
        self.stripe = Some(None);
        self
    }

    /// Stripe at another base URL (a fault proxy, a closed or silent port).
    pub fn with_stripe_at(mut self, api_base: impl Into<String>) -> Self {
        self.stripe = Some(Some(api_base.into()));
        self
    }

    /// Duffel at `api_base` (the fake).
    pub fn with_duffel(mut self, api_base: impl Into<String>) -> Self {
        self.duffel = Some(api_base.into());
        self
    }

    /// Twilio Verify at `api_base` (the fake).
    pub fn with_twilio(mut self, api_base: impl Into<String>) -> Self {
        self.twilio = Some(api_base.into());
        self
    }

    /// Any other change to the sidecar's configuration, applied last.
    pub fn configure(mut self, change: impl FnOnce(&mut SidecarConfig) + Send + 'static) -> Self {
        self.configure.push(Box::new(change));
        self
    }

    pub async fn start(self) -> Result<TestApp> {
        let db = TestDb::migrated_on(self.template).await?;
        let mut config = wallet_sidecar_config(&db)?;
        if let Some(api_base) = self.stripe {
            let api_base = match api_base {
                Some(api_base) => api_base,
                None => Emulators::from_env()?.localstripe_url,
            };
            config = config.with_stripe(&api_base);
        }
        if let Some(api_base) = self.duffel {
            config = config.with_duffel(&api_base);
        }
        if let Some(api_base) = self.twilio {
            config = config.with_twilio(&api_base);
        }
        for change in self.configure {
            change(&mut config);
        }
        let sidecar = Sidecar::start_with(config.clone()).await?;
        Ok(TestApp { db, sidecar, config })
    }
}

/// A booking request for `campaign`'s `offer_id`, as the scheduler sends it:
/// 420.00 EUR, LIS-JFK, one passenger with everything Duffel asks for.
pub fn booking_request(campaign: &str, offer_id: &str) -> Value {
    serde_json::json!({
        "campaign_id": campaign,
        "offer_id": offer_id,
        "amount": 42_000,
        "currency": "eur",
        "route": "LIS-JFK",
        "passengers": [{ "id": "pas_1", "given_name": "Ada", "family_name": "Lovelace", "born_on": "1990-12-10",
                         "title": "ms", "gender": "f", "email": "ada@example.com", "phone_number": "+442080160508" }],
    })
}

/// One request as a traveler; `key` adds an `Idempotency-Key`.
pub struct TravelerRequest<'a> {
    sidecar: &'a Sidecar,
    token: String,
    key: Option<String>,
}

impl TravelerRequest<'_> {
    pub fn key(mut self, key: &str) -> Self {
        self.key = Some(key.to_owned());
        self
    }

    pub async fn get(self, path: &str) -> Result<Response> {
        self.send("GET", path, None).await
    }

    pub async fn post(self, path: &str, body: Value) -> Result<Response> {
        self.send("POST", path, Some(body)).await
    }

    /// A POST without a body (`/default`, `/resume`, `/setup-intents`).
    pub async fn post_empty(self, path: &str) -> Result<Response> {
        self.send("POST", path, None).await
    }

    pub async fn delete(self, path: &str) -> Result<Response> {
        self.send("DELETE", path, None).await
    }

    /// A DELETE with a JSON body (an erasure's confirmation).
    pub async fn delete_with_body(self, path: &str, body: Value) -> Result<Response> {
        self.send("DELETE", path, Some(body)).await
    }

    async fn send(self, method: &str, path: &str, body: Option<Value>) -> Result<Response> {
        crate::call(self.sidecar, method, path, &self.token, self.key.as_deref(), body).await
    }
}

/// The whole stack an operator's commands need: the wallet app with Stripe,
/// the Duffel fake and moto's KMS (data keys, and the audit signing key with
/// its checkpoint log in `dir`), and the commands run as the operator runs them.
pub struct OperatedApp {
    pub app: TestApp,
    pub dir: tempfile::TempDir,
    pub duffel: crate::duffel_fake::FakeDuffel,
}

impl OperatedApp {
    pub async fn start(template: Template) -> Result<Self> {
        Self::start_with(template, |_| {}).await
    }

    /// With `change` applied to the sidecar's configuration last.
    pub async fn start_with(
        template: Template,
        change: impl FnOnce(&mut SidecarConfig) + Send + 'static,
    ) -> Result<Self> {
        let emulators = Emulators::from_env()?;
        let (data_key, _) = emulators.create_kms_key().await?;
        let signing_key_id = emulators.create_signing_key().await?;
        let kms = emulators.kms_sidecar_config(&data_key)?;
        let dir = tempfile::Builder::new().prefix("pw-operated-").tempdir()?;
        let log = dir.path().join("checkpoints.jsonl");
        let duffel = crate::duffel_fake::FakeDuffel::start().await?;
        let app = TestApp::wallet()
            .with_stripe()
            .on(template)
            .with_duffel(duffel.url.clone())
            .configure(move |config| {
                // KMS, not a keyring file: the operator's commands open what the sidecar sealed.
                config.settings.keys.provider = kms.settings.keys.provider;
                config.settings.keys.aws_kms = kms.settings.keys.aws_kms.clone();
                // /metrics, as Prometheus scrapes it.
                config.admin_port = kms.admin_port;
                config.env.extend(kms.env.iter().filter(|(k, _)| k.starts_with("AWS_")).cloned());
                config.settings.audit = Some(kms_sidecar::config::AuditSettings {
                    signing_key_id,
                    checkpoint_log: log,
                    checkpoint_interval_secs: 3_600,
                });
                change(config);
            })
            .start()
            .await?;
        Ok(Self { app, dir, duffel })
    }

    /// `kms-sidecar ARGS` with the app's settings and the operator's `DATABASE_URL`.
    pub fn command(&self, args: &[&str]) -> Result<std::process::Command> {
        let mut command = self.app.config.command(self.dir.path(), args)?;
        command.env("DATABASE_URL", self.app.db.url(crate::OPERATOR)?);
        Ok(command)
    }
}
