//! The shared forget store in PostgreSQL: one global change log that every replica writes
//! through and tails. Each change is one row of `lethe_forget_changes`, keyed by its sequence
//! and holding the same chained, checksummed record as the file log (`log.rs`), so a row that
//! is damaged, missing or out of place is an error naming its sequence, never skipped.
//!
//! Sequences are gapless and commit in order: a writer takes a transaction-scoped advisory
//! lock, reads the changes it has not applied yet, and appends `last + 1`. A PostgreSQL
//! `SEQUENCE` is not used for the key: its values are handed out before commit and commit out
//! of order, so a replica reading "everything after 41" could pass 42 while 42 is still being
//! committed and never see it. The lock also makes writers on different replicas check their
//! change against the latest state, so no update is lost.
//!
//! Connections: one per replica for writes (serialized by the live writer anyway) and one for
//! tailing (`LISTEN` needs a connection of its own); no pool, since nothing here runs queries
//! in parallel. TLS: `pg_tls.rs`.
use super::log;
use super::mutation::{apply, Mutation, Sets};
use super::pg_tls::MakeRustls;
use anyhow::{bail, Context, Result};
use std::time::Duration;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{AsyncMessage, Client, NoTls, Socket};

/// The channel writers notify and tailers listen on: a wake-up only, the rows are the truth.
const CHANNEL: &str = "lethe_forget_changes";
/// Advisory lock keys (arbitrary constants, "lethe" in ASCII, plus a purpose).
const MIGRATION_LOCK: i64 = 0x6c65_7468_6501;
const WRITE_LOCK: i64 = 0x6c65_7468_6502;
/// A write step (the lock wait, bounded by `lock_timeout` = 30 s, included) that takes longer
/// is given up, its connection dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// A tail read that takes longer is given up and the connection made again.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Versioned, append-only migrations, applied in order under an advisory lock at start. A
/// short list in code rather than a migration crate: one table, and the lock and version
/// check are a dozen lines.
const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    "CREATE TABLE lethe_forget_changes (
         seq bigint PRIMARY KEY CHECK (seq > 0),
         record text NOT NULL,
         committed_at timestamptz NOT NULL DEFAULT clock_timestamp()
     )",
)];

/// One change as stored: its sequence and its record (`log.rs` format, without the line end).
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub sequence: u64,
    pub record: String,
}

impl Change {
    pub fn encode(sequence: u64, prev: u64, m: &Mutation) -> Result<Self> {
        let e = log::encode(sequence, prev, m)?;
        Ok(Change { sequence, record: e.line.trim_end_matches('\n').to_string() })
    }
}

/// The change log as applied: the sets, and the last change's sequence and checksum.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    pub sets: Sets,
    pub sequence: u64,
    pub last_sum: u64,
}

impl Applied {
    /// Applies `changes` in order (those at or before `sequence` are already applied and
    /// skipped) and returns their mutations. The first change that fails its checksum, does not
    /// decode, does not follow the one before it or does not apply is an error, and `self`
    /// is left as it was.
    pub fn apply_changes(&mut self, changes: &[Change]) -> Result<Vec<Mutation>> {
        let mut next = self.clone();
        let mut mutations = Vec::new();
        for c in changes.iter().filter(|c| c.sequence > self.sequence) {
            let n = next.sequence + 1;
            if c.sequence != n {
                bail!("the shared forget store's change {n} is missing (the next one is {})", c.sequence);
            }
            let (sum, m) = log::decode(c.record.as_bytes(), n, next.last_sum)
                .map_err(|damage| anyhow::anyhow!("the shared forget store's change {n} {damage}"))?;
            apply(&mut next.sets, &m).map_err(|_| {
                anyhow::anyhow!("the shared forget store's change {n} {}", log::Damage::DoesNotApply)
            })?;
            next.sequence = n;
            next.last_sum = sum;
            mutations.push(m);
        }
        *self = next;
        Ok(mutations)
    }
}

/// How to reach the database: the parsed URL with the password from its file.
#[derive(Clone)]
pub struct Connector {
    config: tokio_postgres::Config,
    tls: Option<MakeRustls>,
}

impl Connector {
    /// Parses `url`; errors never quote it (it may hold a password). With `ca` (a PEM file),
    /// TLS is offered (`sslmode=prefer`, the default) or required (`sslmode=require`) and the
    /// server's certificate verified against it; without, connections are plaintext.
    pub fn new(url: &str, password: Option<&str>, ca: Option<&std::path::Path>) -> Result<Self> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|_| {
            anyhow::anyhow!("database_url is not a valid postgres:// URL or key=value connection string")
        })?;
        if let Some(p) = password {
            config.password(p);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        // Find a dead connection (a database host gone without a FIN) within about a minute.
        config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .keepalives_interval(Duration::from_secs(10))
            .keepalives_retries(3);
        config.application_name("lethe");
        let tls = ca.map(MakeRustls::new).transpose()?;
        if tls.is_none() && config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            bail!("database_url asks for sslmode=require: give the database's CA certificate (database_ca_file)");
        }
        Ok(Self { config, tls })
    }

    /// Connects; notifications are sent to `notify` when given. The connection runs on its
    /// own task until it breaks or the client is dropped.
    async fn connect(&self, notify: Option<tokio::sync::mpsc::Sender<()>>) -> Result<Client> {
        match &self.tls {
            Some(tls) => self.connect_with(tls.clone(), notify).await,
            None => self.connect_with(NoTls, notify).await,
        }
    }

    async fn connect_with<T>(&self, tls: T, notify: Option<tokio::sync::mpsc::Sender<()>>) -> Result<Client>
    where
        T: MakeTlsConnect<Socket>,
        T::Stream: Send + Unpin + 'static,
        T::TlsConnect: Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        let (client, mut connection) = self.config.connect(tls).await.map_err(describe)?;
        tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(_))) => {
                        if let Some(tx) = &notify {
                            let _ = tx.try_send(());
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break,
                }
            }
        });
        Ok(client)
    }
}

/// A database error as it may be shown: the server's message (never a row's content: rows
/// are only read, never quoted) or the client's.
fn describe(e: tokio_postgres::Error) -> anyhow::Error {
    match e.as_db_error() {
        Some(db) => anyhow::anyhow!("database error {}: {}", db.code().code(), db.message()),
        None => anyhow::anyhow!("database: {e}"),
    }
}

/// Applies the migrations this build knows, each once, under an advisory lock, so replicas
/// starting together do not race; a database migrated by a newer build is refused.
async fn migrate(client: &Client) -> Result<()> {
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await.map_err(describe)?;
    let result = async {
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS lethe_schema (
                     version integer PRIMARY KEY,
                     applied_at timestamptz NOT NULL DEFAULT now()
                 )",
            )
            .await
            .map_err(describe)?;
        let row = client.query_one("SELECT coalesce(max(version), 0) FROM lethe_schema", &[]).await.map_err(describe)?;
        let current: i32 = row.get(0);
        let known = MIGRATIONS.last().map_or(0, |m| m.0);
        if current > known {
            bail!("the database's schema is version {current}, newer than this build knows ({known}): run a newer lethe");
        }
        for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
            let batch = format!("BEGIN; {sql}; INSERT INTO lethe_schema (version) VALUES ({version}); COMMIT;");
            if let Err(e) = client.batch_execute(&batch).await {
                let _ = client.batch_execute("ROLLBACK").await;
                return Err(describe(e)).with_context(|| format!("applying database migration {version}"));
            }
            tracing::info!(version, "database migration applied");
        }
        Ok(())
    }
    .await;
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await;
    result
}

/// Checks that the log still holds change `sequence` with checksum `sum`, the last one applied
/// here. A log that lost it was restored from a backup or replaced: following it would serve
/// (and let writers build on) a history without changes this replica acknowledged, such as
/// removals, so that is an error until an operator decides.
async fn still_holds(client: &Client, sequence: u64, sum: u64) -> Result<()> {
    if sequence == 0 {
        return Ok(());
    }
    let seq = i64::try_from(sequence).context("sequence out of range")?;
    let row = client
        .query_opt("SELECT record FROM lethe_forget_changes WHERE seq = $1", &[&seq])
        .await
        .map_err(describe)?;
    let found = row.map(|r| r.try_get::<_, String>(0)).transpose().map_err(describe)?;
    let matches =
        found.as_deref().and_then(|r| r.get(..16)).and_then(|h| u64::from_str_radix(h, 16).ok()) == Some(sum);
    if !matches {
        return Err(RolledBack { sequence, missing: found.is_none() }.into());
    }
    Ok(())
}

/// The log no longer holds the last change applied here (see `still_holds`).
#[derive(Debug, thiserror::Error)]
#[error(
    "the shared forget store was rolled back or replaced: its change {sequence} is {} the one applied \
     here (a restored backup brings back entries removed since it was taken). This replica keeps \
     serving what it applied and refuses changes; re-apply the changes made since the backup, then \
     restart the replicas to follow the database as it is",
    if *missing { "missing, unlike" } else { "not" }
)]
pub struct RolledBack {
    pub sequence: u64,
    pub missing: bool,
}

async fn changes_after(client: &Client, after: u64, limit: Option<i64>) -> Result<Vec<Change>> {
    let after = i64::try_from(after).context("sequence out of range")?;
    let rows = client
        .query(
            "SELECT seq, record FROM lethe_forget_changes WHERE seq > $1 ORDER BY seq LIMIT $2",
            &[&after, &limit],
        )
        .await
        .map_err(describe)?;
    rows.iter()
        .map(|r| {
            let seq: i64 = r.try_get(0).map_err(describe)?;
            Ok(Change { sequence: seq.max(0) as u64, record: r.try_get(1).map_err(describe)? })
        })
        .collect()
}

/// The writing side: one connection, reconnected when it broke.
pub struct Db {
    connector: Connector,
    client: Option<Client>,
}

impl Db {
    /// Connects (the step worth retrying while the database comes up).
    pub async fn connect(connector: Connector) -> Result<Self> {
        let mut db = Self { connector, client: None };
        db.client().await?;
        Ok(db)
    }

    /// Migrates the schema and reads the whole log. A change that cannot be applied is an
    /// error naming it: a shorter list is never served.
    pub async fn load(&mut self) -> Result<Applied> {
        let client = self.client().await?;
        migrate(client).await?;
        let changes = changes_after(client, 0, None).await?;
        let mut applied = Applied::default();
        applied.apply_changes(&changes)?;
        Ok(applied)
    }

    async fn client(&mut self) -> Result<&Client> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            self.client = None;
            let client = self.connector.connect(None).await?;
            // A writer waiting for another replica's change (its snapshot build) gives up in
            // time rather than hanging a client's call.
            client.batch_execute("SET lock_timeout = '30s'").await.map_err(describe)?;
            self.client = Some(client);
        }
        Ok(self.client.as_ref().expect("connected above"))
    }

    /// Starts a write: a transaction holding the global write lock. Returns the changes after
    /// `after` (made through other replicas), which the new change must follow.
    pub async fn begin(&mut self, after: u64, last_sum: u64) -> Result<Vec<Change>> {
        let result = tokio::time::timeout(WRITE_TIMEOUT, self.begin_within(after, last_sum)).await;
        self.answered(result)
    }

    /// Appends `change`, wakes the tailers and commits. An error may leave the outcome
    /// unknown (the connection broke during COMMIT): the tail applies the change if it landed.
    pub async fn append(&mut self, change: &Change) -> Result<()> {
        let result = tokio::time::timeout(WRITE_TIMEOUT, self.append_within(change)).await;
        self.answered(result)
    }

    /// A write step's result; one that did not answer in time drops the connection (the
    /// database rolls back what it had not committed).
    fn answered<T>(&mut self, result: Result<Result<T>, tokio::time::error::Elapsed>) -> Result<T> {
        result.unwrap_or_else(|_| {
            self.client = None;
            bail!("the database did not answer within {} s", WRITE_TIMEOUT.as_secs())
        })
    }

    async fn begin_within(&mut self, after: u64, last_sum: u64) -> Result<Vec<Change>> {
        let client = self.client().await?;
        // READ COMMITTED whatever the database's default: the read after the lock must see
        // the change the previous holder committed (a snapshot from before the wait would not).
        client.batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED").await.map_err(describe)?;
        let result = async {
            client.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK]).await.map_err(describe)?;
            still_holds(client, after, last_sum).await?;
            changes_after(client, after, None).await
        }
        .await;
        if result.is_err() {
            self.abort().await;
        }
        result
    }

    async fn append_within(&mut self, change: &Change) -> Result<()> {
        let client = self.client.as_ref().context("the database connection was lost")?;
        let seq = i64::try_from(change.sequence).context("sequence out of range")?;
        let result = async {
            client
                .execute(
                    "INSERT INTO lethe_forget_changes (seq, record) VALUES ($1, $2)",
                    &[&seq, &change.record],
                )
                .await
                .map_err(describe)?;
            client
                .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &seq.to_string()])
                .await
                .map_err(describe)?;
            client.batch_execute("COMMIT").await.map_err(describe)
        }
        .await;
        if result.is_err() {
            self.abort().await;
        }
        result
    }

    /// Rolls back an open write (best effort: a broken connection has rolled back already).
    pub async fn abort(&mut self) {
        if let Some(c) = &self.client {
            if c.batch_execute("ROLLBACK").await.is_err() {
                self.client = None;
            }
        }
    }
}

/// The tailing side: a connection that LISTENs, woken by writers' notifications, and reads
/// by sequence, so a missed notification or a reconnect loses nothing.
pub struct Tail {
    client: Client,
    woken: tokio::sync::mpsc::Receiver<()>,
}

impl Tail {
    pub async fn connect(connector: &Connector) -> Result<Self> {
        let (tx, woken) = tokio::sync::mpsc::channel(1);
        let client = connector.connect(Some(tx)).await?;
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await.map_err(describe)?;
        Ok(Self { client, woken })
    }

    /// Up to `limit` changes after `after`, the last one applied here (checksum `last_sum`),
    /// which the log must still hold.
    pub async fn changes_after(&self, after: u64, last_sum: u64, limit: i64) -> Result<Vec<Change>> {
        let read = async {
            still_holds(&self.client, after, last_sum).await?;
            changes_after(&self.client, after, Some(limit)).await
        };
        tokio::time::timeout(READ_TIMEOUT, read)
            .await
            .unwrap_or_else(|_| bail!("the database did not answer within {} s", READ_TIMEOUT.as_secs()))
    }

    /// Waits for a notification or `at_most`; an error if the connection is gone.
    pub async fn wait(&mut self, at_most: Duration) -> Result<()> {
        if self.client.is_closed() {
            bail!("the database connection was lost");
        }
        let _ = tokio::time::timeout(at_most, self.woken.recv()).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(set: &str) -> Mutation {
        Mutation::PutSet { set: set.into(), policy: Default::default(), entries: vec![] }
    }

    #[test]
    fn changes_apply_in_order_and_a_bad_one_is_an_error_never_skipped() {
        let c1 = Change::encode(1, 0, &put("a")).unwrap();
        let s1 = log::decode(c1.record.as_bytes(), 1, 0).unwrap().0;
        let c2 = Change::encode(2, s1, &put("b")).unwrap();
        let mut a = Applied::default();
        assert_eq!(a.apply_changes(&[c1.clone(), c2.clone()]).unwrap().len(), 2);
        assert_eq!(a.sequence, 2);
        // Already applied: skipped, not an error.
        assert!(a.apply_changes(&[c1.clone()]).unwrap().is_empty());

        let mut fresh = Applied::default();
        let err = fresh.apply_changes(&[c2.clone()]).unwrap_err().to_string();
        assert!(err.contains("change 1 is missing"), "{err}");
        let mut flipped = c2.clone();
        flipped.record = flipped.record.replace("\"b\"", "\"c\"");
        let err = fresh.apply_changes(&[c1.clone(), flipped]).unwrap_err().to_string();
        assert!(err.contains("change 2 fails its checksum"), "{err}");
        assert_eq!(fresh.sequence, 0, "a failed batch changes nothing");
        let other = Change::encode(2, 7, &put("b")).unwrap();
        let err = fresh.apply_changes(&[c1, other]).unwrap_err().to_string();
        assert!(err.contains("out of order"), "{err}");
    }

    #[test]
    fn a_url_that_does_not_parse_is_not_quoted() {
        let err = Connector::new("postgres://u:hunter2@[bad", None, None).err().unwrap().to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }
}
