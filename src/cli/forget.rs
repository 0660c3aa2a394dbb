//! `lethe forget`: the operator's client for a running server's ForgetAdmin API.
use crate::forget::{Action, Kind, TermType};
use crate::proto::forget_admin_client::ForgetAdminClient;
use crate::proto::{self, *};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use std::collections::BTreeMap;
use std::path::PathBuf;
use tonic::transport::Channel;

#[derive(Args)]
pub struct ForgetArgs {
    /// Server address (ForgetAdmin's listener).
    #[arg(long, env = "LETHE_ADDR", default_value = "http://127.0.0.1:50051")]
    addr: String,
    /// Admin bearer token.
    #[arg(long, env = "LETHE_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(flatten)]
    tls: ClientTls,
    #[command(subcommand)]
    command: ForgetCommand,
}

#[derive(Subcommand)]
enum ForgetCommand {
    /// Add (or replace) one entry in a set; TEXT "-" reads it from stdin.
    Add {
        #[arg(long)]
        set: String,
        #[arg(long)]
        id: String,
        /// document (verbatim, near-verbatim, paraphrase) or term (exact, with aliases).
        #[arg(long, value_enum, default_value_t = Kind::Document)]
        kind: Kind,
        #[arg(long = "alias")]
        aliases: Vec<String>,
        /// For terms: person, email, phone or id (the variants it is also matched in); unset:
        /// detected from the text.
        #[arg(long = "type", value_enum)]
        term_type: Option<TermType>,
        text: String,
    },
    /// Remove entries from a set by id.
    Remove {
        #[arg(long)]
        set: String,
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// List the sets with their source, policy and counts.
    List,
    /// Snapshot version, index sizes and the last reload.
    Status,
    /// Swap in another model file (on the server), e.g. the output of `lethe unlearn`.
    ReloadModel { path: String },
    /// Replace every set found in a JSON Lines forget file with that file's entries.
    Apply {
        file: PathBuf,
        /// Policy of the replaced sets.
        #[arg(long, value_enum, default_value_t = Action::Block)]
        action: Action,
    },
    /// Check or repair a durable store on disk (offline: stop the server that uses it first).
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Replay the store and report its records, sets and any damage or rollback; exits 1 if
    /// it would not open.
    Verify { data_dir: PathBuf },
    /// Keep the good records before the first damaged one and set the whole log aside
    /// (forget.log.damaged-<unix seconds>); the records from the damage on are dropped.
    Repair { data_dir: PathBuf },
}

/// TLS options of a client: the server's CA, and a client certificate for mTLS.
#[derive(Args, Default)]
pub struct ClientTls {
    /// PEM CA that signed the server's certificate (use an https:// address).
    #[arg(long, env = "LETHE_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// PEM client certificate for mTLS (with --client-key).
    #[arg(long, env = "LETHE_CLIENT_CERT", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// PEM key of --client-cert.
    #[arg(long, env = "LETHE_CLIENT_KEY", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
}

impl ClientTls {
    /// A channel to `addr`, over TLS when the address is https:// or a CA is given.
    pub async fn connect(&self, addr: &str) -> Result<Channel> {
        let mut endpoint = Channel::from_shared(addr.to_string())
            .context("--addr must be a URL such as http://127.0.0.1:50051 or https://lethe.internal:50051")?;
        if addr.starts_with("https://") || self.ca_cert.is_some() {
            let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
            let mut tls = tonic::transport::ClientTlsConfig::new();
            if let Some(ca) = &self.ca_cert {
                tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(read(ca)?));
            }
            if let (Some(cert), Some(key)) = (&self.client_cert, &self.client_key) {
                tls = tls.identity(tonic::transport::Identity::from_pem(read(cert)?, read(key)?));
            }
            endpoint = endpoint.tls_config(tls).context("the TLS options are not usable")?;
        }
        endpoint.connect().await.with_context(|| format!("connecting to {addr}"))
    }
}

pub async fn run(args: ForgetArgs) -> Result<()> {
    if let ForgetCommand::Store { command } = &args.command {
        return store(command);
    }
    let channel = args.tls.connect(&args.addr).await?;
    let bearer: Option<tonic::metadata::AsciiMetadataValue> = args
        .token
        .as_ref()
        .map(|t| format!("Bearer {t}").parse())
        .transpose()
        .context("the admin token is not a valid header value (printable ASCII only)")?;
    let mut client = ForgetAdminClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
        if let Some(value) = &bearer {
            req.metadata_mut().insert("authorization", value.clone());
        }
        Ok(req)
    });
    let status = |e: tonic::Status| anyhow::anyhow!("{}: {}", e.code(), e.message());
    match args.command {
        ForgetCommand::Add { set, id, kind, aliases, term_type, text } => {
            let text = if text == "-" { std::io::read_to_string(std::io::stdin())? } else { text };
            let term_type = term_type.map(|t| format!("{t:?}").to_lowercase()).unwrap_or_default();
            let entry = ForgetEntry { id, kind: entry_kind(kind) as i32, text, aliases, term_type };
            let r =
                client.add_entries(AddEntriesRequest { set, entries: vec![entry] }).await.map_err(status)?;
            print_mutation(r.get_ref());
        }
        ForgetCommand::Remove { set, ids } => {
            let r = client.remove_entries(RemoveEntriesRequest { set, ids }).await.map_err(status)?;
            print_mutation(r.get_ref());
        }
        ForgetCommand::ReloadModel { path } => {
            let r = client.reload_model(ReloadModelRequest { path }).await.map_err(status)?.into_inner();
            println!(
                "serving {} (sha256 {}, {}) in snapshot {}, swapped in {:.1} s",
                r.name, r.sha256, r.served_format, r.snapshot_version, r.seconds
            );
        }
        ForgetCommand::List => {
            let r = client.list_sets(ListSetsRequest {}).await.map_err(status)?;
            for s in &r.get_ref().sets {
                println!("{}", set_json(s));
            }
        }
        ForgetCommand::Status => {
            let s = client.status(StatusRequest {}).await.map_err(status)?.into_inner();
            let v = serde_json::json!({
                "snapshot_version": s.snapshot_version,
                "content_hash": s.content_hash,
                "store_sequence": s.store_sequence,
                "sets": s.sets.iter().map(set_json).collect::<Vec<_>>(),
                "ngram_fingerprints": s.ngram_fingerprints,
                "term_fingerprints": s.term_fingerprints,
                "token_prefixes": s.token_prefixes,
                "semantic_vectors": s.semantic_vectors,
                "index_bytes": s.index_bytes,
                "index_bytes_by_layer": {
                    "ngram": s.ngram_index_bytes, "term": s.term_index_bytes,
                    "token": s.token_index_bytes, "semantic": s.semantic_index_bytes,
                },
                "last_reload_unix_ms": s.last_reload_unix_ms,
                "last_reload_seconds": s.last_reload_seconds,
                "last_error": s.last_error,
            });
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        ForgetCommand::Apply { file, action } => {
            let action = crate::server::convert::action(action);
            let mut sets: BTreeMap<String, Vec<ForgetEntry>> = BTreeMap::new();
            for e in crate::forget::load(&file)? {
                sets.entry(e.set).or_default().push(ForgetEntry {
                    id: e.id,
                    kind: entry_kind(e.kind) as i32,
                    term_type: e.term_type.map(|t| format!("{t:?}").to_lowercase()).unwrap_or_default(),
                    text: e.text,
                    aliases: e.aliases,
                });
            }
            for (set, entries) in sets {
                let policy = Some(proto::SetPolicy { action: action as i32, ..Default::default() });
                let n = entries.len();
                let r = client
                    .put_set(PutSetRequest { set: set.clone(), policy, entries })
                    .await
                    .map_err(status)?;
                print!("{set}: {n} entries, ");
                print_mutation(r.get_ref());
            }
        }
        ForgetCommand::Store { .. } => unreachable!("handled offline above"),
    }
    Ok(())
}

/// `lethe forget store`: prints a JSON report (counts and record numbers, never content).
fn store(command: &StoreCommand) -> Result<()> {
    use crate::forget::store::{repair, verify, Verification};
    let report = |v: &Verification| {
        serde_json::json!({
            "good_records": v.good_records,
            "sets": v.sets,
            "entries": v.entries,
            "damaged_record": v.damage.as_ref().map(|(n, _)| n),
            "damage": v.damage.as_ref().map(|(_, d)| d.to_string()),
            "records_from_the_damage_on": v.records_after,
            "acknowledged_records": v.acknowledged,
            "rolled_back": v.rolled_back,
            "ok": v.ok(),
        })
    };
    match command {
        StoreCommand::Verify { data_dir } => {
            let v = verify(data_dir)?;
            println!("{}", serde_json::to_string_pretty(&report(&v))?);
            if !v.ok() {
                anyhow::bail!("the store would not open; `lethe forget store repair` keeps its good records");
            }
        }
        StoreCommand::Repair { data_dir } => {
            let (before, aside) = repair(data_dir)?;
            let mut out = report(&before);
            out["set_aside"] = serde_json::json!(aside.map(|p| p.display().to_string()));
            out["kept_records"] = serde_json::json!(before.good_records);
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
    }
    Ok(())
}

fn entry_kind(kind: Kind) -> EntryKind {
    match kind {
        Kind::Document => EntryKind::Document,
        Kind::Term => EntryKind::Term,
    }
}

fn print_mutation(r: &MutationResponse) {
    println!(
        "live in snapshot {} (store sequence {}, built in {:.3} s)",
        r.snapshot_version, r.store_sequence, r.build_seconds
    );
}

fn set_json(s: &SetInfo) -> serde_json::Value {
    let p = s.policy.unwrap_or_default();
    serde_json::json!({
        "name": s.name, "source": s.source, "entries": s.entries, "documents": s.documents, "terms": s.terms,
        "action": p.action().as_str_name(), "semantic_threshold": p.semantic_threshold,
        "hide_details": p.hide_details, "fail_open": p.fail_open,
        "ngram_fingerprints": s.ngram_fingerprints, "term_fingerprints": s.term_fingerprints,
        "token_prefixes": s.token_prefixes, "semantic_vectors": s.semantic_vectors,
        "index_bytes": s.index_bytes,
    })
}
