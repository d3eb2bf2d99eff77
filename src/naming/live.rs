//! Naming while the target runs (issue 13): addresses of ELF modules with a build id are named
//! through the cache on a thread of their own as samples first use them, so that little is left
//! to name after the target exits.
//!
//! While the target runs, the recorder's thread and the target's own threads share the CPUs with
//! this one; after the exit, whatever is left to name is all that runs, and the user waits for
//! it. The answers are the same either way: what this thread names goes into the module's
//! [`CachedNames`], and [`Live::finish`] names every wanted address from there, naming what the
//! thread had not come to (addresses first used at the very end, or a module it had not
//! reached), exactly as without it. Only modules named through the cache are named early:
//! the kernel comes from a kept table at little cost, and a JIT's map may still grow.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;

use rprof_namecache::NameCache;
use rprof_profile::{LookupSet, Module, ModuleId, ModuleKind, Record};
use rprof_record::Naming;
use rprof_symbols::ModuleSource;

use super::{name_with, symbolizer_for, Cached, CachedNames, Early};

/// Names a recording's addresses: early on a thread of its own where it can, the rest at the end.
pub struct Live {
    cache: Option<NameCache>,
    jobs: Option<Sender<Job>>,
    stop: Arc<AtomicBool>,
    worker: Option<JoinHandle<Early>>,
}

/// Addresses of one module to name.
struct Job {
    id: ModuleId,
    path: String,
    build_id: Vec<u8>,
    addresses: Vec<u64>,
}

impl Live {
    /// Starts the naming thread when names can be kept in the cache ([`NameCache::from_env`]);
    /// without a cache (or a thread) everything is named at the end, as before.
    pub fn start() -> Live {
        let cache = NameCache::from_env();
        let stop = Arc::new(AtomicBool::new(false));
        let mut live = Live {
            cache: cache.clone(),
            jobs: None,
            stop: Arc::clone(&stop),
            worker: None,
        };
        let Some(cache) = cache.filter(|c| c.namer().is_some()) else {
            return live;
        };
        let (jobs, queue) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("rprof-name".to_string())
            .spawn(move || work(&cache, &queue, &stop));
        if let Ok(worker) = spawned {
            live.jobs = Some(jobs);
            live.worker = Some(worker);
        }
        live
    }
}

impl Naming for Live {
    fn early(&self) -> bool {
        self.jobs.is_some()
    }

    fn seen(&mut self, modules: &[Module], new: &[(ModuleId, u64)]) {
        let Some(jobs) = &self.jobs else {
            return;
        };
        let mut by_module: BTreeMap<ModuleId, Vec<u64>> = BTreeMap::new();
        for &(id, address) in new {
            by_module.entry(id).or_default().push(address);
        }
        for (id, mut addresses) in by_module {
            let Some(module) = modules.iter().find(|m| m.id == id) else {
                continue;
            };
            let (ModuleKind::Elf, Some(build_id)) = (module.kind, &module.build_id) else {
                continue;
            };
            addresses.sort_unstable();
            let job = Job {
                id,
                path: module.path.clone(),
                build_id: build_id.clone(),
                addresses,
            };
            if jobs.send(job).is_err() {
                // The thread is gone: the rest is named at the end.
                self.jobs = None;
                return;
            }
        }
    }

    fn finish(mut self, modules: &[Module], wanted: &LookupSet) -> Vec<Record> {
        // What the thread has not come to is named here, the same way.
        self.stop.store(true, Ordering::Relaxed);
        drop(self.jobs.take());
        let early = self.worker.take().and_then(|worker| worker.join().ok());
        name_with(modules, wanted, self.cache.as_ref(), early)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The naming thread: names each job's addresses into its module's [`CachedNames`] until the
/// jobs end or `stop` is set, then hands everything over.
fn work(cache: &NameCache, jobs: &Receiver<Job>, stop: &AtomicBool) -> Early {
    let mut symbolizer = symbolizer_for(Some(cache));
    let mut modules: HashMap<ModuleId, CachedNames> = HashMap::new();
    'jobs: loop {
        let job = match jobs.try_recv() {
            Ok(job) => job,
            Err(TryRecvError::Empty) => {
                // Idle until the next round: the pages the names were read from need not
                // count in rprof's memory meanwhile (what was parsed is kept).
                symbolizer.release_pages();
                match jobs.recv() {
                    Ok(job) => job,
                    Err(_) => break,
                }
            }
            Err(TryRecvError::Disconnected) => break,
        };
        let source = ModuleSource::Elf {
            path: &job.path,
            build_id: Some(&job.build_id),
        };
        let names = modules.entry(job.id).or_insert_with(|| {
            CachedNames::read(&Cached {
                cache,
                build_id: &job.build_id,
                path: &job.path,
            })
        });
        for &address in &job.addresses {
            if stop.load(Ordering::Relaxed) {
                break 'jobs;
            }
            // An answer that cannot be kept (a module past its fresh pieces) is named again at
            // the end.
            let _ = names.name(&mut symbolizer, &source, address);
        }
    }
    Early {
        symbolizer,
        modules,
    }
}
