//! Logging set-up. Logs go to stderr; `PW_LOG_FORMAT=json` for machines,
//! `PW_LOG` for the filter (default: info, with sqlx's per-statement noise off).

use tracing_subscriber::{fmt, EnvFilter};

pub fn init() {
    let filter = EnvFilter::try_from_env("PW_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second init (tests) is harmless: the first subscriber stays.
    let _ = if std::env::var("PW_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
