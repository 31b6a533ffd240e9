//! The Edge Functions and the reference wallet page, served by Deno the way
//! the demo serves them (`web/serve.ts`: `/functions/v1/<name>` runs that
//! function's handler, everything else is the page), against a running
//! sidecar. Requests go over loopback TCP, as a browser's would.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::{crate_dir, send_raw, Response};

/// The Stripe publishable key the page is served with (localstripe takes any).
pub const PUBLISHABLE_KEY: &str = "pk_test_parker_wallet";

/// How the functions reach the sidecar.
pub enum SidecarLink<'a> {
    Socket(&'a Path),
    /// The loopback TCP port and its service token.
    Tcp {
        url: String,
        service_token: String,
    },
}

/// What the gateway is started with.
pub struct GatewaySettings<'a> {
    pub sidecar: SidecarLink<'a>,
    /// localstripe's base URL: Stripe.js comes from it.
    pub localstripe: String,
    /// The token "Sign in as the demo traveler" hands out, when set.
    pub demo_token: Option<String>,
    /// The project's service key, for `book-campaign`.
    pub service_key: Option<String>,
    /// 0: any free port.
    pub port: u16,
}

/// A running gateway; stopped when dropped.
pub struct EdgeGateway {
    pub url: String,
    port: u16,
    child: tokio::process::Child,
    _bundle: tempfile::TempDir,
}

fn repo_dir() -> PathBuf {
    crate_dir().join("..")
}

/// The project's Deno (installed by scripts/bootstrap.sh).
pub fn deno() -> Result<PathBuf> {
    Ok(PathBuf::from(std::env::var("PW_NODE_MODULES").context("PW_NODE_MODULES (scripts/lib.sh sets it)")?)
        .join(".bin/deno"))
}

/// The page's TypeScript bundled for the browser (`deno bundle`) into `dir`.
pub fn bundle_page(dir: &Path) -> Result<PathBuf> {
    let out = dir.join("app.js");
    let output = std::process::Command::new(deno()?)
        .args(["bundle", "--quiet", "--platform=browser", "--minify"])
        .arg(format!("--output={}", out.display()))
        .arg(repo_dir().join("web/wallet/src/main.ts"))
        .env("NO_COLOR", "1")
        .output()?;
    anyhow::ensure!(output.status.success(), "deno bundle failed: {}", String::from_utf8_lossy(&output.stderr));
    Ok(out)
}

impl EdgeGateway {
    pub async fn start(settings: GatewaySettings<'_>) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("pw-page-").tempdir()?;
        let bundle = bundle_page(dir.path())?;
        let port = if settings.port == 0 { crate::free_port()? } else { settings.port };
        let repo = repo_dir();
        let mut env: Vec<(&str, String)> = vec![
            ("PW_STRIPE_JS_URL", format!("{}/js.stripe.com/v3/", settings.localstripe.trim_end_matches('/'))),
            ("PW_STRIPE_PUBLISHABLE_KEY", PUBLISHABLE_KEY.to_owned()),
        ];
        let mut net = vec![format!("127.0.0.1:{port}")];
        let mut read = vec![repo.join("web").display().to_string(), bundle.display().to_string()];
        // Deno asks for read and write on a Unix socket it connects to.
        let mut write = Vec::new();
        match &settings.sidecar {
            SidecarLink::Socket(socket) => {
                env.push(("PW_SIDECAR_SOCKET", socket.display().to_string()));
                net.extend([format!("unix:{}", socket.display()), "sidecar:80".to_owned()]);
                read.push(socket.display().to_string());
                write.push(socket.display().to_string());
            }
            SidecarLink::Tcp { url, service_token } => {
                env.push(("PW_SIDECAR_URL", url.clone()));
                env.push(("PW_SIDECAR_SERVICE_TOKEN", service_token.clone()));
                net.push(url.trim_start_matches("http://").trim_end_matches('/').to_owned());
            }
        }
        if let Some(token) = &settings.demo_token {
            env.push(("PW_DEMO_TRAVELER_TOKEN", token.clone()));
        }
        if let Some(key) = &settings.service_key {
            env.push(("SUPABASE_SERVICE_ROLE_KEY", key.clone()));
        }
        // Every variable the gateway and the functions read, set or not.
        let names = [
            "PW_STRIPE_JS_URL",
            "PW_STRIPE_PUBLISHABLE_KEY",
            "PW_DEMO_TRAVELER_TOKEN",
            "PW_SIDECAR_SOCKET",
            "PW_SIDECAR_URL",
            "PW_SIDECAR_SERVICE_TOKEN",
            "SUPABASE_SERVICE_ROLE_KEY",
        ];
        let mut command = tokio::process::Command::new(deno()?);
        command
            .args(["run", "--quiet", "--no-prompt"])
            .arg(format!("--config={}", repo.join("supabase/functions/deno.json").display()))
            .arg(format!("--allow-env={}", names.join(",")))
            .arg(format!("--allow-net={}", net.join(",")))
            .arg(format!("--allow-read={}", read.join(",")))
            .args((!write.is_empty()).then(|| format!("--allow-write={}", write.join(","))))
            .arg(repo.join("web/serve.ts"))
            .args(["--port", &port.to_string(), "--bundle"])
            .arg(&bundle)
            .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = command.spawn().context("starting web/serve.ts")?;
        let stdout = child.stdout.take().context("the gateway's stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .context("web/serve.ts did not start within 60 s")??
            .context("web/serve.ts exited during start-up")?;
        let listening: serde_json::Value = serde_json::from_str(&first)?;
        let url = listening["listening"].as_str().context("web/serve.ts announced no address")?.to_owned();
        Ok(Self { url, port, child, _bundle: dir })
    }

    /// One request to a function: `path` as the app calls it (`/functions/v1/...`).
    pub async fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Result<Response> {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
        send_raw(stream, method, path, headers, body).await
    }

    /// A function called as `token`'s traveler, with an Idempotency-Key when given.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        key: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> Result<Response> {
        let bearer = format!("Bearer {token}");
        let mut headers = vec![
            ("authorization", bearer.as_str()),
            ("content-type", "application/json"),
            ("user-agent", "parker-flight-app/1"),
            ("x-forwarded-for", "198.51.100.7"),
        ];
        if let Some(key) = key {
            headers.push(("idempotency-key", key));
        }
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        self.request(method, path, &headers, body).await
    }

    /// Leaves the gateway running after this process ends (the demo's
    /// `--keep`): its pid, and the directory of its bundle, for the stack to
    /// stop and remove.
    pub fn detach(self) -> (Option<u32>, PathBuf) {
        let this = std::mem::ManuallyDrop::new(self);
        (this.child.id(), this._bundle.path().to_owned())
    }
}
