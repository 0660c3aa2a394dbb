//! The live forget list: the serving snapshot (an immutable [`Guard`] behind `arc-swap`) and
//! the one writer that changes it. A change (an admin mutation, a changed forget file, SIGHUP)
//! builds a complete new snapshot in the background and swaps it in atomically; requests in
//! flight keep the snapshot they started with. A mutation is written to the durable store only
//! once its snapshot has built, and acknowledged only once it is durable and swapped in; a
//! failed build or a bad file leaves the serving snapshot as it was and is reported in status.
use crate::forget::mutation::{apply, Mutation, Sets, StoredSet};
use crate::forget::store::{Rollback, Store};
use crate::forget::{Entry, Kind, SetPolicy, StoreMode};
use crate::guard::derive::Deriver;
use crate::guard::semantic::Embedder;
use crate::guard::{Guard, GuardConfig};
use crate::model::Model;
use anyhow::{bail, Result};
use arc_swap::ArcSwap;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

#[derive(Debug, Clone, Default)]
pub struct ReloadStatus {
    pub at: Option<SystemTime>,
    pub seconds: f64,
    pub error: Option<String>,
}

/// Why a change was refused.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("{0}")]
    Invalid(String),
    #[error("set {0:?} is managed by the forget file or folder; change the file instead")]
    FileManaged(String),
    #[error("{0}")]
    Failed(String),
}

/// What one request is served with: the model and the forget index built for its tokenizer,
/// swapped together so a request never pairs a model with another model's token filter.
/// `model` is `None` on a server that only guards upstream engines (`Config::model_path`):
/// its index has no token filter, so decode-time masking does not exist there.
pub struct Snapshot {
    pub model: Option<Arc<Model>>,
    pub guard: Arc<Guard>,
}

pub struct Live {
    snapshot: ArcSwap<Snapshot>,
    cfg: GuardConfig,
    /// Derives fingerprints, caching them, so a rebuild derives and embeds only new entries.
    deriver: Deriver,
    store_mode: StoreMode,
    /// The single writer: store, file entries and the next version, changed together.
    writer: tokio::sync::Mutex<Writer>,
    status: Mutex<ReloadStatus>,
}

struct Writer {
    store: Option<Store>,
    file_entries: Vec<Entry>,
    version: u64,
}

impl Live {
    /// Loads the forget file (if configured) and the store (if a data directory is given)
    /// and builds the first snapshot. Any error here stops the server from starting.
    pub fn start(
        cfg: GuardConfig,
        model: Option<Arc<Model>>,
        embedder: Option<Arc<Embedder>>,
        data_dir: Option<&std::path::Path>,
        store_mode: StoreMode,
        rollback: Rollback,
    ) -> Result<Self> {
        let store = data_dir.map(|dir| Store::open(dir, rollback)).transpose()?;
        let file_entries = match &cfg.forget {
            Some(path) => crate::forget::load(path)?,
            None => Vec::new(),
        };
        let started = Instant::now();
        let deriver = Deriver::new(&cfg, embedder);
        let guard =
            build(&cfg, model.as_deref(), &deriver, &file_entries, store.as_ref().map(Store::sets), 1)?;
        let live = Self {
            snapshot: ArcSwap::from_pointee(Snapshot { model, guard: Arc::new(guard) }),
            cfg,
            deriver,
            store_mode,
            writer: tokio::sync::Mutex::new(Writer { store, file_entries, version: 1 }),
            status: Mutex::new(ReloadStatus::default()),
        };
        live.record(started, None);
        Ok(live)
    }

    /// The serving model and forget index; hold it for the whole request.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// The serving forget index.
    pub fn current(&self) -> Arc<Guard> {
        self.snapshot.load().guard.clone()
    }

    /// The served model; `None` when this server only forwards to upstreams.
    pub fn model(&self) -> Option<Arc<Model>> {
        self.snapshot.load().model.clone()
    }

    /// Swaps in a new forget index for the current model (callers hold the writer lock).
    fn swap_guard(&self, guard: Guard) {
        self.snapshot.store(Arc::new(Snapshot { model: self.model(), guard: Arc::new(guard) }));
    }

    /// Swaps in another model (on a server without one, the first): the forget index is
    /// rebuilt for its tokenizer first, then both are swapped at once; requests in flight
    /// finish on the old pair.
    pub async fn swap_model(self: &Arc<Self>, model: Arc<Model>) -> Result<u64, ChangeError> {
        let w = self.writer.lock().await;
        let started = Instant::now();
        let version = w.version + 1;
        let (this, file_entries) = (self.clone(), w.file_entries.clone());
        let store_sets = w.store.as_ref().map(|s| s.sets().clone());
        let new_model = model.clone();
        let built = tokio::task::spawn_blocking(move || {
            build(&this.cfg, Some(&new_model), &this.deriver, &file_entries, store_sets.as_ref(), version)
        })
        .await
        .map_err(|e| ChangeError::Failed(format!("snapshot build aborted: {e}")))?
        .map_err(|e| ChangeError::Failed(format!("building the snapshot for the new model failed: {e:#}")))?;
        let mut w = w;
        w.version = version;
        self.snapshot.store(Arc::new(Snapshot { model: Some(model), guard: Arc::new(built) }));
        self.record(started, None);
        Ok(version)
    }

    pub fn status(&self) -> ReloadStatus {
        self.status.lock().expect("status lock").clone()
    }

    pub fn config(&self) -> &GuardConfig {
        &self.cfg
    }

    /// Applies an admin mutation: build, then persist, then swap. Returns (version, sequence).
    pub async fn mutate(self: &Arc<Self>, m: Mutation) -> Result<(u64, u64, f64), ChangeError> {
        let mut w = self.writer.lock().await;
        let Some(store) = w.store.as_ref() else {
            return Err(ChangeError::Invalid(
                "this server has no data directory (data_dir), so it cannot store forget-list changes".into(),
            ));
        };
        if w.file_entries.iter().any(|e| e.set == m.set()) {
            return Err(ChangeError::FileManaged(m.set().to_string()));
        }
        let sets = store.sets().clone();
        apply(&mut sets.clone(), &m).map_err(|e| ChangeError::Invalid(format!("{e:#}")))?;
        let started = Instant::now();
        let version = w.version + 1;
        let this = self.clone();
        let model = self.model();
        let file_entries = w.file_entries.clone();
        let built = tokio::task::spawn_blocking(move || -> Result<(Mutation, Guard)> {
            let m = match this.store_mode {
                StoreMode::Text => m,
                StoreMode::Fingerprints => m.seal(|e| this.deriver.seal(e, model.as_deref()))?,
            };
            // Entries new to the list only need indexing of their own; anything else (a
            // replaced or removed entry, a policy change) rebuilds the snapshot whole.
            let added = match &m {
                Mutation::AddEntries { set, entries } if only_new(sets.get(set), entries) => {
                    Some(entries.clone())
                }
                _ => None,
            };
            let mut next = sets;
            apply(&mut next, &m)?;
            let cfg = effective_config(&this.cfg, Some(&next));
            let grown = match added {
                Some(added) => {
                    this.current().with_added(&added, &cfg, model.as_deref(), &this.deriver, version)?
                }
                None => None,
            };
            let guard = match grown {
                Some(guard) => guard,
                None => {
                    build(&this.cfg, model.as_deref(), &this.deriver, &file_entries, Some(&next), version)?
                }
            };
            Ok((m, guard))
        })
        .await
        .map_err(|e| ChangeError::Failed(format!("snapshot build aborted: {e}")))?;
        let (m, guard) = match built {
            Ok(built) => built,
            Err(e) => {
                let msg = format!("building the new snapshot failed: {e:#}");
                self.record(started, Some(msg.clone()));
                return Err(ChangeError::Failed(msg));
            }
        };
        let store = w.store.as_mut().expect("checked above");
        let sequence = store.commit(&m).map_err(|e| {
            let msg = format!("{e:#}");
            self.record(started, Some(msg.clone()));
            ChangeError::Failed(msg)
        })?;
        w.version = version;
        self.swap_guard(guard);
        let seconds = started.elapsed().as_secs_f64();
        self.record(started, None);
        Ok((version, sequence, seconds))
    }

    /// Reloads the forget file or folder (on a file change or SIGHUP). A bad file is reported
    /// and the serving snapshot kept.
    pub async fn reload_files(self: &Arc<Self>) -> Result<u64> {
        let Some(path) = self.cfg.forget.clone() else { bail!("no forget file is configured") };
        let mut w = self.writer.lock().await;
        let started = Instant::now();
        let this = self.clone();
        let model = self.model();
        let version = w.version + 1;
        let store_sets = w.store.as_ref().map(|s| s.sets().clone());
        let serving = w.file_entries.len();
        let result = tokio::task::spawn_blocking(move || -> Result<(Vec<Entry>, Guard)> {
            let entries = crate::forget::load(&path)?;
            if entries.is_empty() && serving > 0 && crate::forget::is_blank(&path)? {
                bail!(
                    "the forget file is now blank (the serving list has {serving} entries from it): kept the \
                     serving list, as a file truncated in place or half synced looks like this; to empty the \
                     list on purpose, leave a `#` comment line in the file"
                );
            }
            let guard =
                build(&this.cfg, model.as_deref(), &this.deriver, &entries, store_sets.as_ref(), version)?;
            Ok((entries, guard))
        })
        .await?;
        match result {
            Ok((entries, guard)) => {
                w.file_entries = entries;
                w.version = version;
                self.swap_guard(guard);
                self.record(started, None);
                tracing::info!(version, seconds = started.elapsed().as_secs_f64(), "forget list reloaded");
                Ok(version)
            }
            Err(e) => {
                let msg = format!("{e:#}");
                tracing::error!(error = %msg, "forget list reload failed; the previous snapshot keeps serving");
                self.record(started, Some(msg.clone()));
                Err(e)
            }
        }
    }

    /// Sets with their source and policy, for ListSets and Status.
    pub async fn sets(&self) -> (u64, Vec<SetSummary>) {
        let w = self.writer.lock().await;
        let mut out: BTreeMap<String, SetSummary> = BTreeMap::new();
        for e in &w.file_entries {
            let s = out
                .entry(e.set.clone())
                .or_insert_with(|| SetSummary::new(&e.set, "file", self.policy_for(&e.set, None)));
            s.count(e);
        }
        if let Some(store) = &w.store {
            for (name, set) in store.sets() {
                let s = out.entry(name.clone()).or_insert_with(|| {
                    SetSummary::new(name, "store", self.policy_for(name, set.policy.as_ref()))
                });
                set.entries.values().for_each(|e| s.count(e));
            }
        }
        (w.store.as_ref().map_or(0, Store::sequence), out.into_values().collect())
    }

    fn policy_for(&self, set: &str, stored: Option<&SetPolicy>) -> SetPolicy {
        stored
            .cloned()
            .or_else(|| self.cfg.sets.get(set).cloned())
            .unwrap_or_else(|| self.cfg.default_policy.clone())
    }

    fn record(&self, started: Instant, error: Option<String>) {
        let seconds = started.elapsed().as_secs_f64();
        let mut s = self.status.lock().expect("status lock");
        s.at = Some(SystemTime::now());
        s.seconds = seconds;
        match &error {
            None => {
                let guard = self.current();
                let stats = guard.stats();
                let entries = stats.iter().map(|(set, s)| (set.as_str(), s.entries));
                crate::metrics::reloaded(seconds, guard.version, &guard.content_hash, entries)
            }
            Some(_) => crate::metrics::reload_failed(),
        }
        s.error = error;
    }
}

#[derive(Debug, Clone)]
pub struct SetSummary {
    pub name: String,
    pub source: &'static str,
    pub policy: SetPolicy,
    pub entries: usize,
    pub documents: usize,
    pub terms: usize,
}

impl SetSummary {
    fn new(name: &str, source: &'static str, policy: SetPolicy) -> Self {
        Self { name: name.to_string(), source, policy, entries: 0, documents: 0, terms: 0 }
    }

    fn count(&mut self, e: &Entry) {
        self.entries += 1;
        match e.kind {
            Kind::Document => self.documents += 1,
            Kind::Term => self.terms += 1,
        }
    }
}

/// Builds a snapshot from file entries and stored sets; a set in both is an error.
fn build(
    cfg: &GuardConfig,
    model: Option<&Model>,
    deriver: &Deriver,
    file_entries: &[Entry],
    store: Option<&Sets>,
    version: u64,
) -> Result<Guard> {
    let mut entries = file_entries.to_vec();
    if let Some(sets) = store {
        let file_sets: BTreeSet<&str> = file_entries.iter().map(|e| e.set.as_str()).collect();
        for (name, set) in sets {
            if file_sets.contains(name.as_str()) {
                bail!("set {name:?} is both in the forget file and in the store");
            }
            entries.extend(set.entries.values().cloned());
        }
    }
    Guard::build_with(&entries, &effective_config(cfg, store), model, deriver, version)
}

/// The guard configuration with the policies of stored sets.
fn effective_config(cfg: &GuardConfig, store: Option<&Sets>) -> GuardConfig {
    let mut cfg = cfg.clone();
    for (name, set) in store.into_iter().flatten() {
        if let Some(policy) = &set.policy {
            cfg.sets.insert(name.clone(), policy.clone());
        }
    }
    cfg
}

/// Whether `entries` are all new to `set` (and distinct), so adding them changes no entry.
fn only_new(set: Option<&StoredSet>, entries: &[Entry]) -> bool {
    let mut ids = BTreeSet::new();
    entries.iter().all(|e| ids.insert(&e.id) && set.is_none_or(|s| !s.entries.contains_key(&e.id)))
}
