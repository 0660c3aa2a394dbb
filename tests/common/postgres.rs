//! A throwaway PostgreSQL for tests: `initdb` in a temp dir and `postgres` on a free loopback
//! port, from Debian's `postgresql` package (`make sysdeps` installs it). PostgreSQL refuses
//! to run as root, so when the tests run as root the cluster belongs to `nobody`. Stopped on
//! drop, also when a test panics.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Postgres {
    child: Option<Child>,
    bin: PathBuf,
    data: PathBuf,
    pub port: u16,
    password: Option<String>,
    _dir: tempfile::TempDir,
}

/// The newest installed PostgreSQL's bin directory.
fn bin_dir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed: run `make sysdeps` (Debian's postgresql package)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    dirs.sort_by_key(|p| p.parent().and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok()).unwrap_or(0));
    dirs.pop().expect("no /usr/lib/postgresql/*/bin/initdb: run `make sysdeps`")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `nobody` when running as root (PostgreSQL will not run as root), else the current user.
fn as_unprivileged(command: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    if is_root() {
        command.uid(65534).gid(65534);
    }
    command
}

impl Postgres {
    pub fn start() -> Postgres {
        Self::start_with_tls(None)
    }

    /// As `start`, with TLS on (`ssl=on`) when given a PEM certificate and key.
    pub fn start_with_tls(tls: Option<(&Path, &Path)>) -> Postgres {
        Self::start_with(tls, None)
    }

    /// As `start_with_tls`; with `password`, TCP connections must authenticate (SCRAM) as
    /// `postgres` with it.
    pub fn start_with(tls: Option<(&Path, &Path)>, password: Option<&str>) -> Postgres {
        let bin = bin_dir();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        if is_root() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            std::os::unix::fs::chown(&data, Some(65534), Some(65534)).unwrap();
        }
        let mut initdb = Command::new(bin.join("initdb"));
        if let Some(p) = password {
            let file = dir.path().join("pwfile");
            std::fs::write(&file, p).unwrap();
            if is_root() {
                std::os::unix::fs::chown(&file, Some(65534), Some(65534)).unwrap();
            }
            initdb.arg("--auth-host=scram-sha-256").arg(format!("--pwfile={}", file.display()));
        }
        let out = as_unprivileged(initdb.env("HOME", &data))
            .args([
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth-local=trust",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .arg("--no-sync")
            .stdout(Stdio::null())
            .output()
            .expect("running initdb");
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        if let Some((cert, key)) = tls {
            use std::os::unix::fs::PermissionsExt;
            let mut conf =
                String::from("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
            for (from, to) in [(cert, "server.crt"), (key, "server.key")] {
                std::fs::copy(from, data.join(to)).unwrap();
                // PostgreSQL refuses a key others can read.
                std::fs::set_permissions(data.join(to), std::fs::Permissions::from_mode(0o600)).unwrap();
                if is_root() {
                    std::os::unix::fs::chown(data.join(to), Some(65534), Some(65534)).unwrap();
                }
            }
            conf.push_str("log_connections = on\n");
            let path = data.join("postgresql.conf");
            let mut text = std::fs::read_to_string(&path).unwrap();
            text.push_str(&conf);
            std::fs::write(&path, text).unwrap();
        }
        let mut pg = Postgres {
            child: None,
            bin,
            data,
            port: super::free_port(),
            password: password.map(String::from),
            _dir: dir,
        };
        pg.start_again();
        pg
    }

    /// Starts the server (again, after `stop`) on the same port and data.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::File::create(self.data.parent().unwrap().join("postgres.log")).unwrap();
        let child = as_unprivileged(&mut Command::new(self.bin.join("postgres")))
            .args(["-D", self.data.to_str().unwrap(), "-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="])
            // The tests never crash the machine, only PostgreSQL's processes: no fsync needed.
            .args(["-c", "fsync=off", "-c", "max_connections=50"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting postgres");
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() || !self.ready() {
            assert!(started.elapsed() < Duration::from_secs(60), "postgres did not start:\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn ready(&self) -> bool {
        Command::new(self.bin.join("pg_isready"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres"])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Stops the server (fast shutdown: sessions are ended) and waits for it to exit.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let started = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `pg_dump` of the whole database, as text.
    pub fn dump(&self) -> String {
        let out = Command::new(self.bin.join("pg_dump"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "postgres"])
            .envs(self.password.as_ref().map(|p| ("PGPASSWORD", p)))
            .output()
            .expect("running pg_dump");
        assert!(out.status.success(), "pg_dump failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs SQL with psql; returns its output.
    pub fn sql(&self, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-d", "postgres"])
            .args(["-v", "ON_ERROR_STOP=1", "-At", "-c", sql])
            .envs(self.password.as_ref().map(|p| ("PGPASSWORD", p)))
            .output()
            .expect("running psql");
        assert!(out.status.success(), "psql failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.data.parent().unwrap().join("postgres.log")).unwrap_or_default()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
