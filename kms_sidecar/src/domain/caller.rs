//! The caller classes: what a peer may ask for, decided from its uid (`server`, `peer`).

/// Who is on the other end of the socket, decided from the peer's uid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallerClass {
    /// The Postgres backends (the extension): crypto routes only.
    Database,
    /// Supabase Edge Functions: every user route.
    Edge,
    /// Operators and the CLI: administrative routes.
    Admin,
}

impl CallerClass {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Database => "database",
            Self::Edge => "edge",
            Self::Admin => "admin",
        }
    }
}
