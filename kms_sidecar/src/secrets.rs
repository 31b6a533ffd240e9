//! Secrets come from the environment, directly (`NAME`) or from a file named by
//! `NAME_FILE` (Docker and Kubernetes secrets). They live in `SecretString`, whose
//! `Debug` prints `[REDACTED]` and whose memory is zeroized on drop.

use secrecy::SecretString;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("{name} and {name}_FILE are both set; set one")]
    Ambiguous { name: String },
    #[error("{name}_FILE names {path}, which cannot be read: {reason}")]
    Unreadable { name: String, path: String, reason: String },
    #[error("{name} is empty")]
    Empty { name: String },
}

/// Reads secret `name` from `lookup` (the environment in production).
pub fn load_secret(name: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<Option<SecretString>, SecretError> {
    let direct = lookup(name);
    let file = lookup(&format!("{name}_FILE"));
    let value = match (direct, file) {
        (Some(_), Some(_)) => return Err(SecretError::Ambiguous { name: name.to_owned() }),
        (Some(value), None) => value,
        (None, Some(path)) => std::fs::read_to_string(&path).map_err(|e| SecretError::Unreadable {
            name: name.to_owned(),
            path,
            reason: e.kind().to_string(),
        })?,
        (None, None) => return Ok(None),
    };
    let trimmed = value.trim_end_matches(['\n', '\r']);
    if trimmed.is_empty() {
        return Err(SecretError::Empty { name: name.to_owned() });
    }
    Ok(Some(SecretString::from(trimmed.to_owned())))
}

pub fn from_env(name: &str) -> Result<Option<SecretString>, SecretError> {
    load_secret(name, |key| std::env::var(key).ok())
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn reads_direct_values_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cr3t\n").unwrap();
        let path_text = path.display().to_string();
        let from_file = load_secret("TOKEN", |k| (k == "TOKEN_FILE").then(|| path_text.clone())).unwrap().unwrap();
        assert_eq!(from_file.expose_secret(), "s3cr3t");
        let direct = load_secret("TOKEN", |k| (k == "TOKEN").then(|| "abc".to_owned())).unwrap().unwrap();
        assert_eq!(direct.expose_secret(), "abc");
        assert!(load_secret("TOKEN", |_| None).unwrap().is_none());
    }

    #[test]
    fn refuses_ambiguity_empty_values_and_missing_files() {
        assert_eq!(load_secret("T", |_| Some("x".into())).unwrap_err(), SecretError::Ambiguous { name: "T".into() });
        assert_eq!(
            load_secret("T", |k| (k == "T").then(String::new)).unwrap_err(),
            SecretError::Empty { name: "T".into() }
        );
        assert!(matches!(
            load_secret("T", |k| (k == "T_FILE").then(|| "/nonexistent/secret".into())),
            Err(SecretError::Unreadable { .. })
        ));
    }

    #[test]
    fn debug_never_shows_the_value() {
        let secret = load_secret("T", |k| (k == "T").then(|| "hunter2".to_owned())).unwrap();
        assert!(!format!("{secret:?}").contains("hunter2"));
    }
}
