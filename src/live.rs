//! The live forget list: the serving snapshot (an immutable [`Guard`] behind `arc-swap`) and
//! the one writer that changes it. A change (an admin mutation, a changed forget file, SIGHUP)
//! builds a complete new snapshot in the background and swaps it in atomically; requests in
//! flight keep the snapshot they started with. A mutation is written to the durable store only
//! once its snapshot has built, and acknowledged only once it is durable and swapped in; a
//! failed build or a bad file leaves the serving snapshot as it was and is reported in status.
//! With the shared store (PostgreSQL), a mutation is acknowledged once committed to the global
//! change log and live here; changes made through other replicas arrive by `apply_shared`.
use crate::forget::mutation::{apply, Mutation, Sets, StoredSet};
use crate::forget::pg::{Applied, Change, Db, RolledBack};
use crate::forget::store::Store;
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
    /// The shared store cannot be reached: nothing was changed (or, if the connection broke
    /// during the commit, the change arrives through the tail like any other).
    #[error("the shared forget store is unavailable, so the change was not made: {0}")]
    Unavailable(String),
}

/// Where admin changes are kept.
pub enum Backend {
    /// The embedded file log in the data directory (one server).
    File(Store),
    /// The PostgreSQL change log shared by every replica, as applied here.
    Shared { db: Db, log: Applied },
}

impl Backend {
    fn sets(&self) -> &Sets {
        match self {
            Backend::File(s) => s.sets(),
            Backend::Shared { log, .. } => &log.sets,
        }
    }

    fn sequence(&self) -> u64 {
        match self {
            Backend::File(s) => s.sequence(),
            Backend::Shared { log, .. } => log.sequence,
        }
    }
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
    /// Why the shared store cannot be reached or read, while it cannot.
    store_error: Mutex<Option<String>>,
}

struct Writer {
    store: Option<Backend>,
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
        store: Option<Backend>,
        store_mode: StoreMode,
    ) -> Result<Self> {
        let file_entries = match &cfg.forget {
            Some(path) => crate::forget::load(path)?,
            None => Vec::new(),
        };
        let started = Instant::now();
        let deriver = Deriver::new(&cfg, embedder);
        let guard =
            build(&cfg, model.as_deref(), &deriver, &file_entries, store.as_ref().map(Backend::sets), 1)?;
        crate::metrics::store_sequence(store.as_ref().map_or(0, Backend::sequence));
        let live = Self {
            snapshot: ArcSwap::from_pointee(Snapshot { model, guard: Arc::new(guard) }),
            cfg,
            deriver,
            store_mode,
            writer: tokio::sync::Mutex::new(Writer { store, file_entries, version: 1 }),
            status: Mutex::new(ReloadStatus::default()),
            store_error: Mutex::new(None),
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
        let mut status = self.status.lock().expect("status lock").clone();
        if status.error.is_none() {
            status.error = self.store_error.lock().expect("status lock").clone();
        }
        status
    }

    /// The shared store answered (again): clears its error.
    pub fn store_reachable(&self) {
        *self.store_error.lock().expect("status lock") = None;
        crate::metrics::store_up(true);
    }

    /// The shared store cannot be reached or read: the serving snapshot stays as it is.
    pub fn store_failed(&self, error: String) {
        *self.store_error.lock().expect("status lock") = Some(error);
        crate::metrics::store_up(false);
    }

    pub fn config(&self) -> &GuardConfig {
        &self.cfg
    }

    /// Applies an admin mutation: build, then persist, then swap. Returns (version, sequence).
    /// With the shared store the global write lock is taken first and the changes other
    /// replicas made are applied before this one is checked, so no update is lost.
    pub async fn mutate(self: &Arc<Self>, m: Mutation) -> Result<(u64, u64, f64), ChangeError> {
        let mut w = self.writer.lock().await;
        let Some(store) = w.store.as_mut() else {
            return Err(ChangeError::Invalid(
                "this server has neither a data directory (data_dir) nor a database (database_url), so it \
                 cannot store forget-list changes"
                    .into(),
            ));
        };
        let started = Instant::now();
        let caught_up = match store {
            Backend::File(_) => None,
            Backend::Shared { db, log } => {
                let pending = match db.begin(log.sequence, log.last_sum).await {
                    Ok(pending) => pending,
                    Err(e) if e.is::<RolledBack>() => {
                        let msg = format!("{e:#}");
                        self.store_failed(msg.clone());
                        return Err(ChangeError::Failed(msg));
                    }
                    Err(e) => return Err(self.unavailable(e)),
                };
                let mut next = log.clone();
                if let Err(e) = next.apply_changes(&pending) {
                    db.abort().await;
                    let msg = format!("{e:#}");
                    self.store_failed(msg.clone());
                    return Err(ChangeError::Failed(msg));
                }
                Some((next, pending.is_empty()))
            }
        };
        let sets = match &caught_up {
            Some((next, _)) => next.sets.clone(),
            None => store.sets().clone(),
        };
        let incremental = caught_up.as_ref().is_none_or(|(_, none_pending)| *none_pending);
        let shared = caught_up.is_some();
        let built = self.build_change(&w.file_entries, sets, m, w.version + 1, incremental, shared).await;
        let store = w.store.as_mut().expect("checked above");
        let (m, guard) = match built {
            Ok(built) => built,
            Err(e) => {
                if let Backend::Shared { db, .. } = store {
                    db.abort().await;
                }
                if let ChangeError::Failed(msg) = &e {
                    self.record(started, Some(msg.clone()));
                }
                return Err(e);
            }
        };
        let sequence = match store {
            Backend::File(store) => store.commit(&m).map_err(|e| {
                let msg = format!("{e:#}");
                self.record(started, Some(msg.clone()));
                ChangeError::Failed(msg)
            })?,
            Backend::Shared { db, log } => {
                let (mut next, _) = caught_up.expect("set for the shared store");
                let change = match Change::encode(next.sequence + 1, next.last_sum, &m) {
                    Ok(change) => change,
                    Err(e) => {
                        db.abort().await;
                        return Err(ChangeError::Failed(format!("{e:#}")));
                    }
                };
                if let Err(e) = db.append(&change).await {
                    return Err(self.unavailable(e));
                }
                next.apply_changes(&[change]).map_err(|e| ChangeError::Failed(format!("{e:#}")))?;
                *log = next;
                self.store_reachable();
                log.sequence
            }
        };
        w.version += 1;
        self.swap_guard(guard);
        crate::metrics::store_sequence(sequence);
        let seconds = started.elapsed().as_secs_f64();
        self.record(started, None);
        Ok((w.version, sequence, seconds))
    }

    fn unavailable(&self, e: anyhow::Error) -> ChangeError {
        let msg = format!("{e:#}");
        self.store_failed(msg.clone());
        ChangeError::Unavailable(msg)
    }

    /// Checks `m` against `sets` and builds the snapshot with it applied (sealing its entries
    /// first in the fingerprint-only mode, attaching their fingerprints to the text for the
    /// `shared` store). `incremental`: the serving snapshot is `sets`, so entries new to the
    /// list can be indexed on their own.
    async fn build_change(
        self: &Arc<Self>,
        file_entries: &[Entry],
        sets: Sets,
        m: Mutation,
        version: u64,
        incremental: bool,
        shared: bool,
    ) -> Result<(Mutation, Guard), ChangeError> {
        if file_entries.iter().any(|e| e.set == m.set()) {
            return Err(ChangeError::FileManaged(m.set().to_string()));
        }
        apply(&mut sets.clone(), &m).map_err(|e| ChangeError::Invalid(format!("{e:#}")))?;
        let this = self.clone();
        let model = self.model();
        let file_entries = file_entries.to_vec();
        let built = tokio::task::spawn_blocking(move || -> Result<(Mutation, Guard)> {
            let m = match this.store_mode {
                StoreMode::Fingerprints => m.map_entries(|e| this.deriver.seal(e, model.as_deref()))?,
                // Derived once here, loaded by every other replica (no embedding there). The
                // file store keeps the text alone: one server has no one to share with, and its
                // derivation cache already spares it rebuilding what it derived.
                StoreMode::Text if shared => m.map_entries(|e| this.deriver.attach(e, model.as_deref()))?,
                StoreMode::Text => m,
            };
            // Entries new to the list only need indexing of their own; anything else (a
            // replaced or removed entry, a policy change) rebuilds the snapshot whole.
            let added = match &m {
                Mutation::AddEntries { set, entries } if incremental && only_new(sets.get(set), entries) => {
                    Some(entries.clone())
                }
                _ => None,
            };
            let mut next = sets;
            apply(&mut next, &m)?;
            let guard = this.build_next(model.as_deref(), &file_entries, &next, added, version)?;
            Ok((m, guard))
        })
        .await
        .map_err(|e| ChangeError::Failed(format!("snapshot build aborted: {e}")))?;
        built.map_err(|e| ChangeError::Failed(format!("building the new snapshot failed: {e:#}")))
    }

    /// The snapshot for `next`: the serving one grown by `added` when that is all that changed,
    /// otherwise built whole.
    fn build_next(
        &self,
        model: Option<&Model>,
        file_entries: &[Entry],
        next: &Sets,
        added: Option<Vec<Entry>>,
        version: u64,
    ) -> Result<Guard> {
        let cfg = effective_config(&self.cfg, Some(next));
        let grown = match added {
            Some(added) => self.current().with_added(&added, &cfg, model, &self.deriver, version)?,
            None => None,
        };
        match grown {
            Some(guard) => Ok(guard),
            None => build(&self.cfg, model, &self.deriver, file_entries, Some(next), version),
        }
    }

    /// Applies changes read from the shared store's log (made through any replica) and swaps
    /// the snapshot; returns the applied sequence. A change that does not decode or apply is
    /// an error and nothing of the batch is applied.
    pub async fn apply_shared(self: &Arc<Self>, changes: Vec<Change>) -> Result<u64> {
        let mut w = self.writer.lock().await;
        let Some(Backend::Shared { log, .. }) = w.store.as_ref() else { bail!("no shared store") };
        let base = log.clone();
        if changes.iter().all(|c| c.sequence <= base.sequence) {
            return Ok(base.sequence);
        }
        let started = Instant::now();
        let mut next = base.clone();
        let mutations = next.apply_changes(&changes)?;
        let added = match mutations.as_slice() {
            [Mutation::AddEntries { set, entries }] if only_new(base.sets.get(set), entries) => {
                Some(entries.clone())
            }
            _ => None,
        };
        let (this, model, file_entries, version) =
            (self.clone(), self.model(), w.file_entries.clone(), w.version + 1);
        let sets = next.sets.clone();
        let built = tokio::task::spawn_blocking(move || {
            this.build_next(model.as_deref(), &file_entries, &sets, added, version)
        })
        .await?;
        let guard = match built {
            Ok(guard) => guard,
            Err(e) => {
                let msg = format!("building the snapshot for the shared store's changes failed: {e:#}");
                self.record(started, Some(msg.clone()));
                bail!(msg);
            }
        };
        let sequence = next.sequence;
        if let Some(Backend::Shared { log, .. }) = w.store.as_mut() {
            *log = next;
        }
        w.version = version;
        self.swap_guard(guard);
        crate::metrics::store_sequence(sequence);
        self.record(started, None);
        Ok(sequence)
    }

    /// The last change of the shared store applied here: its sequence and checksum.
    pub async fn shared_position(&self) -> (u64, u64) {
        match self.writer.lock().await.store.as_ref() {
            Some(Backend::Shared { log, .. }) => (log.sequence, log.last_sum),
            _ => (0, 0),
        }
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
        (w.store.as_ref().map_or(0, Backend::sequence), out.into_values().collect())
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
