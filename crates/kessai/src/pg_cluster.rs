//! A throwaway PostgreSQL cluster for `kessai bench center --database
//! postgres`, made as `scripts/with-postgres` makes the tests': a fresh data
//! directory in a temporary directory, listening on 127.0.0.1 only on a free
//! port (never 5432), fsync on, its socket inside the directory; as root,
//! owned by and run as the `postgres` user. Stopped and removed on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_postgres: bool,
    pub port: u16,
}

/// The directory of `initdb`, `pg_ctl` and `pgbench`.
pub fn find_bin() -> anyhow::Result<PathBuf> {
    let from_config = Command::new("pg_config").arg("--bindir").output().ok().filter(|o| o.status.success());
    let mut candidates: Vec<PathBuf> =
        from_config.map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())).into_iter().collect();
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versions.sort();
    candidates.extend(versions.into_iter().rev());
    candidates
        .into_iter()
        .find(|dir| dir.join("initdb").exists() && dir.join("pg_ctl").exists())
        .context("PostgreSQL's binaries (initdb, pg_ctl) are not installed; `scripts/test` installs them")
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl PgCluster {
    /// Starts a cluster; with `statements`, it loads pg_stat_statements
    /// ([`PgCluster::top_statements`]).
    pub fn start(statements: bool) -> anyhow::Result<PgCluster> {
        let bin = find_bin()?;
        let as_postgres = is_root();
        let dir = tempfile::Builder::new().prefix("kessai-bench-pg").tempdir()?;
        if as_postgres {
            run(Command::new("chown").arg("postgres:").arg(dir.path()), "chown")?;
        }
        let cluster = PgCluster { dir, bin, as_postgres, port: 0 };
        let data = cluster.data();
        run(
            cluster.pg("initdb").arg("-D").arg(&data).args([
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
            ]),
            "initdb",
        )?;
        let mut cluster = cluster;
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            if port == 5432 {
                continue;
            }
            let mut options = format!(
                "-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={} -c fsync=on -c max_connections=200",
                cluster.dir.path().display()
            );
            if statements {
                options.push_str(" -c shared_preload_libraries=pg_stat_statements");
            }
            let log = cluster.dir.path().join("postgres.log");
            let started = cluster
                .pg("pg_ctl")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "60", "-o", &options, "start"])
                .output()?;
            if started.status.success() {
                cluster.port = port;
                return Ok(cluster);
            }
        }
        bail!(
            "the throwaway PostgreSQL did not start: {}",
            std::fs::read_to_string(cluster.dir.path().join("postgres.log")).unwrap_or_default()
        )
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn pg(&self, program: &str) -> Command {
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join(program));
            c
        } else {
            Command::new(self.bin.join(program))
        }
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// The URL of database `name` (created by [`PgCluster::create_database`]).
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    pub fn create_database(&self, name: &str) -> anyhow::Result<String> {
        let create = format!("CREATE DATABASE {name}");
        run(
            self.pg("psql")
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-d", "postgres"])
                .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", &create]),
            "createdb",
        )?;
        Ok(self.url(name))
    }

    /// Updates the planner's statistics of database `name` (what autovacuum
    /// keeps current on a running cluster; plans cached while its tables
    /// were nearly empty are made again), and with `reset_statements` starts
    /// pg_stat_statements' counts afresh.
    pub fn analyze(&self, name: &str, reset_statements: bool) -> anyhow::Result<()> {
        let mut sql = "ANALYZE;".to_owned();
        if reset_statements {
            sql.push_str(" CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset();");
        }
        run(
            self.pg("psql")
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-d", name])
                .args(["-v", "ON_ERROR_STOP=1", "-q", "-o", "/dev/null", "-c", &sql]),
            "analyze",
        )
    }

    /// The statements that took the most time in database `name`, with
    /// their calls per `per`, calls, total and mean time and rows a call
    /// (pg_stat_statements, loaded at start).
    pub fn top_statements(&self, name: &str, per: f64) -> anyhow::Result<String> {
        let query = format!(
            "CREATE EXTENSION IF NOT EXISTS pg_stat_statements; \
             SELECT to_char(s.calls / {per}, 'FM9990.00') AS per_settlement, s.calls, \
             round(s.total_exec_time::numeric, 0) AS ms, round(s.mean_exec_time::numeric, 3) AS mean_ms, \
             round(s.rows::numeric / greatest(s.calls, 1), 1) AS rows_per_call, \
             left(regexp_replace(s.query, '\\s+', ' ', 'g'), 110) AS query FROM pg_stat_statements s \
             JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = '{name}' ORDER BY s.total_exec_time DESC LIMIT 25"
        );
        let out = self
            .pg("psql")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-d", name, "-c", &query])
            .output()?;
        if !out.status.success() {
            anyhow::bail!("reading pg_stat_statements failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The postmaster and every process it started (backends, writers).
    pub fn pids(&self) -> Vec<u32> {
        let Some(main) = std::fs::read_to_string(self.data().join("postmaster.pid"))
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<u32>().ok()))
        else {
            return Vec::new();
        };
        let mut pids = vec![main];
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            let parent = std::fs::read_to_string(entry.path().join("stat")).ok().and_then(|stat| {
                stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
            });
            if parent == Some(main) {
                pids.push(pid);
            }
        }
        pids
    }
}

fn run(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let out = command.output().with_context(|| what.to_owned())?;
    if !out.status.success() {
        bail!("{what}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self.pg("pg_ctl").arg("-D").arg(&data).args(["-m", "immediate", "-w", "stop"]).output();
    }
}
