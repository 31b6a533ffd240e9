//! The local stack: a throwaway PostgreSQL 15 cluster, a second one shaped like
//! Supabase's, localstripe, moto (KMS), the Duffel fake and the sidecar, all
//! bound to loopback or to sockets inside one stack directory.
//!
//! `up` expects scripts/build.sh to have run (extension installed, binaries
//! built) and scripts/bootstrap.sh's tools (`PW_VENV`, `PG_BIN`, `PG_CONFIG`,
//! set by scripts/stack.sh from scripts/lib.sh). It writes `DIR/stack.env`,
//! which the tests, the demo and the benchmarks read. `PW_SUPABASE_CLUSTER=0`
//! leaves the Supabase-shaped cluster out (it is for the tests).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use harness::{free_port, own_uid, uid_of, SidecarConfig};
use kms_sidecar::domain::CallerClass;

fn env(name: &str) -> Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set: run the stack through scripts/stack.sh"))
}

fn say(text: &str) {
    eprintln!("\x1b[1m==>\x1b[0m {text}");
}

/// Who owns the clusters: initdb and the postmaster refuse root, so root hands
/// them to `postgres`; anyone else runs them as themselves.
struct ClusterUser {
    name: Option<String>,
    uid: u32,
    gid: u32,
}

impl ClusterUser {
    fn find() -> Result<Self> {
        if own_uid() != 0 {
            // SAFETY: getgid has no preconditions.
            return Ok(Self { name: None, uid: own_uid(), gid: unsafe { libc::getgid() } });
        }
        let uid =
            uid_of("postgres").context("running as root needs a 'postgres' OS user (apt-get install postgresql-15)")?;
        let gid = String::from_utf8(Command::new("id").args(["-g", "postgres"]).output()?.stdout)?.trim().parse()?;
        Ok(Self { name: Some("postgres".into()), uid, gid })
    }

    /// A command run as the cluster user.
    fn command(&self, program: &Path) -> Command {
        match &self.name {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(program);
                command
            }
            None => Command::new(program),
        }
    }

    fn own(&self, path: &Path) -> Result<()> {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
            .with_context(|| format!("chown {}", path.display()))
    }
}

fn run(command: &mut Command, log: &Path, what: &str) -> Result<()> {
    let file = std::fs::File::create(log)?;
    let status = command.stdout(file.try_clone()?).stderr(file).status()?;
    ensure!(status.success(), "{what} failed: see {}", log.display());
    Ok(())
}

/// A process that outlives this one; its pid in `DIR/NAME.pid` for `down`.
fn spawn(dir: &Path, name: &str, command: &mut Command) -> Result<()> {
    let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
    let child = command
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    std::fs::write(dir.join(format!("{name}.pid")), child.id().to_string())?;
    Ok(())
}

/// Waits until an HTTP server answers anything at all on `port`.
async fn wait_http(what: &str, port: u16, path: &str, dir: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            if harness::send(stream, "GET", path, None).await.is_ok() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{what} did not come up (logs in {})", dir.display());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

struct Cluster<'a> {
    dir: &'a Path,
    owner: &'a ClusterUser,
    pg_bin: PathBuf,
    /// `pgdata` or `supabase-pgdata`, and the same prefix for its other files.
    prefix: &'static str,
    superuser: &'static str,
    port: u16,
    sidecar_socket: &'a Path,
}

impl Cluster<'_> {
    fn pgdata(&self) -> PathBuf {
        self.dir.join(format!("{}pgdata", self.prefix))
    }

    fn socket_dir(&self) -> PathBuf {
        self.dir.join(format!("{}pgsocket", self.prefix))
    }

    fn initdb(&self) -> Result<()> {
        let socket_dir = self.socket_dir();
        std::fs::create_dir_all(&socket_dir)?;
        self.owner.own(&socket_dir)?;
        run(
            self.owner.command(&self.pg_bin.join("initdb")).args(["-D"]).arg(self.pgdata()).args([
                "-U",
                self.superuser,
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]),
            &self.dir.join(format!("{}initdb.log", self.prefix)),
            "initdb",
        )
    }

    fn start(&self) -> Result<()> {
        let mut options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -c unix_socket_directories={} -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=200 -c parker_wallet.sidecar_socket={}",
            self.port,
            self.socket_dir().display(),
            self.sidecar_socket.display()
        );
        // Benchmarks count the statements a request sends (the plain cluster only:
        // the Supabase-shaped one preloads supautils from its own configuration).
        if self.prefix.is_empty() && std::env::var_os("PW_STATEMENT_STATS").is_some_and(|v| v == "1") {
            options.push_str(" -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=top");
        }
        let log = self.dir.join(format!("{}postgres.log", self.prefix));
        let status = self
            .owner
            .command(&self.pg_bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.pgdata())
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "30", "start", "-o", &options])
            .stdout(Stdio::null())
            .status()?;
        ensure!(status.success(), "PostgreSQL did not start: see {}", log.display());
        // pg_ctl only pings the postmaster: a session proves the preloaded libraries load.
        let session = Command::new("psql")
            .args(["-X", "-q", "-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", self.superuser, "-d", "postgres"])
            .args(["-c", "SELECT"])
            .stdout(Stdio::null())
            .status()?;
        ensure!(session.success(), "no session on PostgreSQL on port {}: see {}", self.port, log.display());
        Ok(())
    }

    fn stop(pg_bin: &Path, owner: &ClusterUser, pgdata: &Path) {
        if pgdata.join("postmaster.pid").exists() {
            let _ = owner
                .command(&pg_bin.join("pg_ctl"))
                .arg("-D")
                .arg(pgdata)
                .args(["-m", "immediate", "-w", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The Supabase-shaped cluster: bootstrap superuser supabase_admin, as on
/// Supabase, and supautils in every session with Supabase's own settings, plus
/// parker_wallet as an extension the non-superuser `postgres` may create (its
/// after-create script, shipped in pg_extension/supautils/, then runs as
/// supabase_admin). Its databases are built by the test harness on first use
/// (scripts/templates.sh).
fn supabase_cluster_up(cluster: &Cluster<'_>, root: &Path) -> Result<()> {
    // A copy the backends (the cluster user) can read wherever the clone lives.
    let scripts = cluster.dir.join("supabase-extension-scripts");
    copy_readable(&root.join("pg_extension/supautils"), &scripts)?;
    say(&format!(
        "Supabase-shaped PostgreSQL 15 on 127.0.0.1:{} (data in {})",
        cluster.port,
        cluster.pgdata().display()
    ));
    cluster.initdb()?;

    // Supabase's supautils.conf as is, but for two settings: parker_wallet joins
    // the privileged extensions, and the custom scripts are ours.
    let vendored =
        root.join("tests/supabase/vendor/supabase-postgres/ansible/files/postgresql_config/supautils.conf.j2");
    let text = std::fs::read_to_string(&vendored)?;
    ensure!(!text.contains("{{") && !text.contains("{%"), "{} now has Jinja in it: render it here", vendored.display());
    let (mut extensions, mut scripts_path) = (false, false);
    let adapted: Vec<String> = text
        .lines()
        .map(|line| {
            if let Some(list) =
                line.strip_prefix("supautils.privileged_extensions = '").and_then(|l| l.strip_suffix('\''))
            {
                extensions = true;
                format!("supautils.privileged_extensions = '{list}, parker_wallet'")
            } else if line.starts_with("supautils.privileged_extensions_custom_scripts_path = ") {
                scripts_path = true;
                format!("supautils.privileged_extensions_custom_scripts_path = '{}'", scripts.display())
            } else {
                line.to_owned()
            }
        })
        .collect();
    ensure!(extensions && scripts_path, "could not adapt {} (did its format change?)", vendored.display());
    let pgdata = cluster.pgdata();
    std::fs::write(pgdata.join("supautils.conf"), adapted.join("\n") + "\n")?;
    cluster.owner.own(&pgdata.join("supautils.conf"))?;
    let mut conf = std::fs::OpenOptions::new().append(true).open(pgdata.join("postgresql.conf"))?;
    std::io::Write::write_all(
        &mut conf,
        b"\n# Supabase-shaped, for the tests (the dev stack). Logical WAL as on Supabase,\n\
          # whose init script creates the supabase_realtime publication.\n\
          wal_level = logical\nsession_preload_libraries = 'supautils'\ninclude 'supautils.conf'\n",
    )?;
    cluster.start()
}

/// `cp -R` with everything readable by others (the cluster user).
fn copy_readable(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755))?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_readable(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644))?;
        }
    }
    Ok(())
}

pub async fn up(dir: &Path) -> Result<()> {
    let root = harness::crate_dir().join("..");
    let pg_bin = PathBuf::from(env("PG_BIN")?);
    let venv = PathBuf::from(env("PW_VENV")?);
    ensure!(
        pg_bin.join("initdb").exists(),
        "PostgreSQL 15 server binaries not found in {} (run scripts/bootstrap.sh)",
        pg_bin.display()
    );
    ensure!(venv.join("bin/moto_server").exists(), "emulator venv missing (run scripts/bootstrap.sh)");
    let target = PathBuf::from(env("CARGO_TARGET_DIR")?).join("debug");
    let sidecar_bin = std::env::var("PW_SIDECAR_BIN").map(PathBuf::from).unwrap_or_else(|_| target.join("kms-sidecar"));
    ensure!(sidecar_bin.exists(), "sidecar not built (run scripts/build.sh)");
    let duffel_bin = target.join("duffel-fake");
    ensure!(duffel_bin.exists(), "Duffel fake not built (run scripts/build.sh)");
    let twilio_bin = target.join("twilio-fake");
    ensure!(twilio_bin.exists(), "Twilio fake not built (run scripts/build.sh)");

    std::fs::create_dir_all(dir)?;
    let owner = ClusterUser::find()?;
    owner.own(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    let socket = dir.join("sidecar.sock");
    let port = |name: &str| -> Result<u16> {
        match std::env::var(name) {
            Ok(port) => Ok(port.parse()?),
            Err(_) => free_port(),
        }
    };
    let plain = Cluster {
        dir,
        owner: &owner,
        pg_bin: pg_bin.clone(),
        prefix: "",
        superuser: "postgres",
        port: port("PW_PGPORT")?,
        sidecar_socket: &socket,
    };

    // In a thread of its own, so that its initdb overlaps the plain cluster's
    // and the emulators' start-up.
    let supabase = std::env::var("PW_SUPABASE_CLUSTER").map_or(true, |v| v != "0");
    let supabase_port = if supabase { Some(port("PW_SUPABASE_PGPORT")?) } else { None };
    let (plain_result, supabase_result) = std::thread::scope(|scope| {
        let supabase_thread = supabase_port.map(|port| {
            let (owner, pg_bin, root, socket) = (&owner, pg_bin.clone(), &root, &socket);
            scope.spawn(move || {
                let pkglib = Command::new(env("PG_CONFIG")?).arg("--pkglibdir").output()?.stdout;
                let pkglib = PathBuf::from(String::from_utf8(pkglib)?.trim());
                ensure!(pkglib.join("supautils.so").exists(), "supautils is not installed (run scripts/bootstrap.sh)");
                let cluster = Cluster {
                    dir,
                    owner,
                    pg_bin,
                    prefix: "supabase-",
                    superuser: "supabase_admin",
                    port,
                    sidecar_socket: socket,
                };
                supabase_cluster_up(&cluster, root)
            })
        });
        say(&format!("PostgreSQL 15 on 127.0.0.1:{} (data in {})", plain.port, plain.pgdata().display()));
        let plain_result = plain.initdb().and_then(|()| plain.start());
        let supabase_result = supabase_thread.map(|thread| thread.join().unwrap_or_else(|_| bail!("panicked")));
        (plain_result, supabase_result)
    });
    plain_result?;

    let (moto, stripe, duffel, twilio) = (free_port()?, free_port()?, free_port()?, free_port()?);
    spawn(dir, "moto", Command::new(venv.join("bin/moto_server")).args(["-H", "127.0.0.1", "-p", &moto.to_string()]))?;
    spawn(
        dir,
        "localstripe",
        Command::new(venv.join("bin/python"))
            .arg(root.join("tests/support/localstripe_server.py"))
            .args(["--port", &stripe.to_string()]),
    )?;
    // One offer the fake refuses as sold out, for the demo's failed booking.
    spawn(
        dir,
        "duffel",
        Command::new(&duffel_bin).args(["--port", &duffel.to_string(), "--refuse-offer", "off_0000DemoSoldOut"]),
    )?;
    spawn(dir, "twilio", Command::new(&twilio_bin).args(["--port", &twilio.to_string()]))?;
    wait_http(&format!("moto (KMS) on port {moto}"), moto, "/moto-api/", dir).await?;
    wait_http(&format!("localstripe on port {stripe}"), stripe, "/v1/customers", dir).await?;
    wait_http(&format!("Duffel fake on port {duffel}"), duffel, "/air/orders", dir).await?;
    wait_http(&format!("Twilio fake on port {twilio}"), twilio, "/_fake/codes/+1", dir).await?;
    say(&format!(
        "moto (KMS) on 127.0.0.1:{moto}, localstripe on 127.0.0.1:{stripe}, Duffel fake on 127.0.0.1:{duffel}, \
         Twilio Verify fake on 127.0.0.1:{twilio}"
    ));

    // The database's backends (the cluster user) may use the crypto routes; we,
    // who run the stack, are the operator. One uid cannot be both: alone, we are both.
    // The configuration is the harness's, the tests' own sidecars' one.
    let mut config = SidecarConfig::default().callers(CallerClass::Admin, vec![own_uid()]);
    if owner.uid != own_uid() {
        config.settings.callers.database = vec![owner.uid];
    }
    config.settings.socket.path = socket.clone();
    config.settings.socket.group = Some(owner.gid.to_string());
    config.settings.keys.local_key_file = Some(dir.join("local-keyring"));
    let settings_file = dir.join("sidecar.toml");
    std::fs::write(&settings_file, toml::to_string(&config.settings)?)?;
    spawn(
        dir,
        "sidecar",
        Command::new(&sidecar_bin).args(["serve", "--config"]).arg(&settings_file).env("PW_LOG_FORMAT", "json"),
    )?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !socket.exists() {
        ensure!(Instant::now() < deadline, "the sidecar did not come up (logs in {})", dir.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    say(&format!("sidecar on {}", socket.display()));
    if let Some(result) = supabase_result {
        result.context("the Supabase-shaped PostgreSQL did not come up")?;
    }

    let mut stack_env = format!(
        "PW_STACK_DIR={dir}\nPW_PGHOST=127.0.0.1\nPW_PGPORT={port}\nPW_PGSOCKET={pgsocket}\n\
         PW_MOTO_URL=http://127.0.0.1:{moto}\nPW_LOCALSTRIPE_URL=http://127.0.0.1:{stripe}\n\
         PW_DUFFEL_URL=http://127.0.0.1:{duffel}\nPW_TWILIO_URL=http://127.0.0.1:{twilio}\nPW_SIDECAR_SOCKET={socket}\nPW_SIDECAR_BIN={bin}\n\
         PW_NODE_MODULES={node}/node_modules\n",
        dir = dir.display(),
        port = plain.port,
        pgsocket = plain.socket_dir().display(),
        socket = socket.display(),
        bin = sidecar_bin.display(),
        node = env("PW_NODE")?,
    );
    if let Some(port) = supabase_port {
        stack_env +=
            &format!("PW_SUPABASE_PGPORT={port}\nPW_SUPABASE_PGSOCKET={}\n", dir.join("supabase-pgsocket").display());
    }
    std::fs::write(dir.join("stack.env"), stack_env)?;
    Ok(())
}

/// Stops everything started in `dir` (and the processes the demo started on
/// top of it), then removes `dir`.
pub fn down(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let mut pids: Vec<String> = Vec::new();
    if let Ok(extra) = std::fs::read_to_string(dir.join("sidecar.pid.extra")) {
        pids.extend(extra.split_whitespace().map(str::to_owned));
    }
    for service in ["sidecar", "localstripe", "moto", "duffel", "twilio"] {
        if let Ok(pid) = std::fs::read_to_string(dir.join(format!("{service}.pid"))) {
            pids.push(pid.trim().to_owned());
        }
    }
    if !pids.is_empty() {
        let _ = Command::new("kill").args(&pids).stderr(Stdio::null()).status();
    }
    let owner = ClusterUser::find()?;
    let pg_bin = PathBuf::from(env("PG_BIN")?);
    for pgdata in ["pgdata", "supabase-pgdata"] {
        Cluster::stop(&pg_bin, &owner, &dir.join(pgdata));
    }
    // Directories of processes started on top of the stack (the demo's wallet sidecar).
    for extra in std::fs::read_to_string(dir.join("dirs.extra")).unwrap_or_default().lines() {
        let _ = std::fs::remove_dir_all(extra);
    }
    std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))
}
