//! The sidecar's database connection over TLS: a throwaway cluster that refuses
//! plain connections and presents a certificate from a self-signed test CA;
//! `sslmode=require` and `verify-full` (with that CA as the root) connect, a
//! plain connection and a `verify-full` against another CA are refused.

use std::path::Path;
use std::process::Command;

use harness::own_uid;
use kms_sidecar::db::Database;
use secrecy::SecretString;

/// A PostgreSQL cluster of its own, stopped when dropped.
struct TlsCluster {
    dir: tempfile::TempDir,
    port: u16,
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let output = command.output()?;
    anyhow::ensure!(output.status.success(), "{command:?}: {}", String::from_utf8_lossy(&output.stderr));
    Ok(())
}

/// A self-signed certificate authority `{name}-ca` (webpki, rightly, refuses a
/// CA certificate presented as the server's own).
fn authority(dir: &Path, name: &str) -> anyhow::Result<()> {
    run(Command::new("openssl").current_dir(dir).args([
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        &format!("/CN={name}-ca"),
        "-keyout",
        &format!("{name}-ca.key"),
        "-out",
        &format!("{name}-ca.crt"),
    ]))
}

/// The server's key and certificate for `localhost` and 127.0.0.1, signed by `test-ca`.
fn server_certificate(dir: &Path) -> anyhow::Result<()> {
    run(Command::new("openssl").current_dir(dir).args([
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]))?;
    std::fs::write(dir.join("server.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")?;
    run(Command::new("openssl").current_dir(dir).args([
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "test-ca.crt",
        "-CAkey",
        "test-ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "server.ext",
        "-out",
        "server.crt",
    ]))
}

impl TlsCluster {
    fn start() -> anyhow::Result<Self> {
        let bin = std::env::var("PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
        let dir = tempfile::Builder::new().prefix("pw-tls-").tempdir()?;
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        authority(dir.path(), "test")?;
        authority(dir.path(), "stranger")?;
        server_certificate(dir.path())?;
        run(Command::new("chown").arg("postgres").arg(dir.path()).arg(dir.path().join("server.key")))?;
        let data = dir.path().join("data");
        let as_postgres = |program: &str| {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(Path::new(&bin).join(program));
            command
        };
        run(as_postgres("initdb").args(["-A", "trust", "-U", "postgres", "-D"]).arg(&data))?;
        std::fs::write(
            data.join("pg_hba.conf"),
            "hostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n",
        )?;
        let port = harness::free_port()?;
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={dir} -c ssl=on \
             -c ssl_cert_file={dir}/server.crt -c ssl_key_file={dir}/server.key -c fsync=off",
            dir = dir.path().display()
        );
        run(as_postgres("pg_ctl")
            .args(["-w", "-t", "30", "-l"])
            .arg(dir.path().join("log"))
            .arg("-D")
            .arg(&data)
            .args(["-o", &options, "start"]))?;
        Ok(Self { dir, port })
    }

    fn url(&self, params: &str) -> SecretString {
        SecretString::from(format!("postgres://postgres@localhost:{}/postgres?{params}", self.port))
    }
}

impl Drop for TlsCluster {
    fn drop(&mut self) {
        let bin = std::env::var("PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(Path::new(&bin).join("pg_ctl"))
            .args(["-m", "immediate", "-D"])
            .arg(self.dir.path().join("data"))
            .arg("stop")
            .output();
    }
}

#[tokio::test]
async fn the_database_connection_speaks_tls_and_verifies_the_server() -> anyhow::Result<()> {
    if own_uid() != 0 {
        eprintln!("skipped: needs root to run a cluster as the postgres OS user");
        return Ok(());
    }
    kms_sidecar::tls::ensure_provider();
    let cluster = TlsCluster::start()?;
    let root = cluster.dir.path().join("test-ca.crt");
    let stranger = cluster.dir.path().join("stranger-ca.crt");
    for params in ["sslmode=require".to_owned(), format!("sslmode=verify-full&sslrootcert={}", root.display())] {
        let database = Database::connect_lazy(&cluster.url(&params), 1)?;
        database.check().await.map_err(|e| anyhow::anyhow!("{params}: {e}"))?;
    }
    for (params, why) in [
        ("sslmode=disable".to_owned(), "the server refuses plain connections"),
        (format!("sslmode=verify-full&sslrootcert={}", stranger.display()), "a certificate from another root"),
    ] {
        let database = Database::connect_lazy(&cluster.url(&params), 1)?;
        assert!(database.check().await.is_err(), "{why}: connected with {params}");
    }
    Ok(())
}
