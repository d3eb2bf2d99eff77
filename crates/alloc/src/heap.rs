//! The heap as the probes saw it: every block from its allocation to its free, in time order,
//! with the totals the reports need. No I/O: calls in, numbers out (tested on its own).
//!
//! - A block is keyed by (process, address). An allocation at an address that is still live
//!   (a free rprof did not see) replaces the old block, which then counts as freed.
//! - **Temporary**: a block freed by the thread that allocated it with no other allocation of
//!   that thread in between (heaptrack's definition; `malloc` then `free` in one function is
//!   the common case). `realloc` of the thread's last block counts too: its old block was
//!   temporary.
//! - **Leaked**: live when the recording ends (the process exited without freeing it, or rprof
//!   stopped). A process's blocks at its `execve` are dropped, not leaked.
//! - **Peak**: the largest sum of live bytes, its time, and each call site's live blocks at
//!   that moment. Kept exactly at O(1) a call: a site's live numbers are copied into its "at
//!   the peak" numbers only when a new peak is reached, and only for the sites that changed
//!   since the previous one.
//! - **Sampled stacks**: an allocation that came with a stack carries its weight (bytes it
//!   stands for); its life (temporary, freed before or after the peak, leaked) is kept, so
//!   the stacks' estimates cover the same questions as the exact call sites.

use std::collections::HashMap;

/// One allocation's block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    /// Bytes asked for.
    pub size: u64,
    /// Call site index.
    pub site: u32,
    /// Index of its sampled allocation, when it came with a stack.
    pub sample: Option<u32>,
}

/// Exact numbers of one call site (every call).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SiteStats {
    /// Allocation calls.
    pub calls: u64,
    /// Bytes asked for.
    pub bytes: u64,
    /// Calls whose block was temporary.
    pub temporary_calls: u64,
    /// Blocks live now.
    pub live_calls: u64,
    /// Their bytes.
    pub live_bytes: u64,
    /// Blocks live at the peak.
    pub peak_calls: u64,
    /// Their bytes.
    pub peak_bytes: u64,
    /// Blocks live at the end (filled by [`Heap::finish`]).
    pub leaked_calls: u64,
    /// Their bytes.
    pub leaked_bytes: u64,
}

/// One allocation that came with a stack.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampled {
    /// Index of its stack (the caller's numbering).
    pub stack: u32,
    /// Bytes asked for.
    pub size: u64,
    /// Bytes it stands for: `max(size, R)` (`size` when every call has a stack).
    pub weight: u64,
    /// When it was allocated.
    pub time: u64,
    /// When it was freed (None: never).
    pub freed: Option<u64>,
    /// It was temporary.
    pub temporary: bool,
}

impl Sampled {
    /// The calls it stands for: `weight / size` (at least 1).
    pub fn calls(&self) -> f64 {
        (self.weight as f64 / self.size.max(1) as f64).max(1.0)
    }
}

/// The heap and its totals.
#[derive(Debug, Default)]
pub struct Heap {
    live: HashMap<(u32, u64), Block>,
    sites: Vec<SiteStats>,
    /// Sites whose live numbers changed since the last peak, and a flag per site.
    touched: Vec<u32>,
    is_touched: Vec<bool>,
    /// The last block each thread allocated.
    last: HashMap<u32, u64>,
    /// Sampled allocations.
    pub sampled: Vec<Sampled>,
    /// Allocation calls.
    pub alloc_calls: u64,
    /// Their bytes.
    pub alloc_bytes: u64,
    /// Frees of known blocks.
    pub free_calls: u64,
    /// Frees of NULL or of addresses never seen allocated.
    pub unknown_frees: u64,
    /// Temporary allocations.
    pub temporary_calls: u64,
    /// Live bytes now.
    pub live_bytes: u64,
    /// The peak of `live_bytes`, and when.
    pub peak_bytes: u64,
    /// When the peak was reached.
    pub peak_time: u64,
    /// Blocks live at the end, and their bytes (filled by [`Heap::finish`]).
    pub leaked_calls: u64,
    /// Bytes of those.
    pub leaked_bytes: u64,
}

impl Heap {
    /// An empty heap.
    pub fn new() -> Heap {
        Heap::default()
    }

    /// The exact numbers of every call site, indexed by site.
    pub fn sites(&self) -> &[SiteStats] {
        &self.sites
    }

    fn site(&mut self, site: u32) -> &mut SiteStats {
        let i = site as usize;
        if self.sites.len() <= i {
            self.sites.resize(i + 1, SiteStats::default());
            self.is_touched.resize(i + 1, false);
        }
        if !self.is_touched[i] {
            self.is_touched[i] = true;
            self.touched.push(site);
        }
        &mut self.sites[i]
    }

    /// Thread `tid` of process `pid` got block `ptr` of `size` bytes from call site `site` at
    /// `time`; `sample`: the stack index and weight when it came with a stack.
    #[allow(clippy::too_many_arguments)]
    pub fn alloc(
        &mut self,
        pid: u32,
        tid: u32,
        time: u64,
        ptr: u64,
        size: u64,
        site: u32,
        sample: Option<(u32, u64)>,
    ) {
        self.alloc_calls += 1;
        self.alloc_bytes = self.alloc_bytes.saturating_add(size);
        let sample = sample.map(|(stack, weight)| {
            self.sampled.push(Sampled {
                stack,
                size,
                weight,
                time,
                freed: None,
                temporary: false,
            });
            (self.sampled.len() - 1) as u32
        });
        {
            let s = self.site(site);
            s.calls += 1;
            s.bytes = s.bytes.saturating_add(size);
        }
        if ptr == 0 {
            // A failed allocation: counted as a call, nothing to free, never live.
            if let Some(s) = sample.and_then(|i| self.sampled.get_mut(i as usize)) {
                s.freed = Some(time);
            }
            return;
        }
        if let Some(old) = self.live.remove(&(pid, ptr)) {
            // Its free was not seen.
            self.release(old, time);
        }
        self.live.insert((pid, ptr), Block { size, site, sample });
        self.last.insert(tid, ptr);
        self.live_bytes = self.live_bytes.saturating_add(size);
        let s = self.site(site);
        s.live_calls += 1;
        s.live_bytes = s.live_bytes.saturating_add(size);
        if self.live_bytes > self.peak_bytes {
            self.peak_bytes = self.live_bytes;
            self.peak_time = time;
            for site in self.touched.drain(..) {
                let i = site as usize;
                self.is_touched[i] = false;
                let s = &mut self.sites[i];
                s.peak_calls = s.live_calls;
                s.peak_bytes = s.live_bytes;
            }
        }
    }

    fn release(&mut self, block: Block, time: u64) {
        self.live_bytes = self.live_bytes.saturating_sub(block.size);
        let s = self.site(block.site);
        s.live_calls = s.live_calls.saturating_sub(1);
        s.live_bytes = s.live_bytes.saturating_sub(block.size);
        if let Some(sample) = block.sample.and_then(|i| self.sampled.get_mut(i as usize)) {
            sample.freed = Some(time);
        }
    }

    /// Thread `tid` of `pid` freed `ptr` at `time`; the block, if it was known (a failed
    /// `realloc` gives it back with [`Heap::restore`]).
    pub fn free(&mut self, pid: u32, tid: u32, time: u64, ptr: u64) -> Option<Block> {
        let Some(block) = (ptr != 0).then(|| self.live.remove(&(pid, ptr))).flatten() else {
            self.unknown_frees += 1;
            return None;
        };
        self.free_calls += 1;
        self.release(block, time);
        if self.last.get(&tid) == Some(&ptr) {
            self.last.remove(&tid);
            self.temporary_calls += 1;
            self.site(block.site).temporary_calls += 1;
            if let Some(s) = block.sample.and_then(|i| self.sampled.get_mut(i as usize)) {
                s.temporary = true;
            }
        }
        Some(block)
    }

    /// A `realloc` that failed: its old block, freed at its entry, is live again.
    pub fn restore(&mut self, pid: u32, ptr: u64, block: Block, was_temporary: bool) {
        self.free_calls = self.free_calls.saturating_sub(1);
        if was_temporary {
            self.temporary_calls = self.temporary_calls.saturating_sub(1);
            let s = self.site(block.site);
            s.temporary_calls = s.temporary_calls.saturating_sub(1);
        }
        self.live_bytes = self.live_bytes.saturating_add(block.size);
        let s = self.site(block.site);
        s.live_calls += 1;
        s.live_bytes = s.live_bytes.saturating_add(block.size);
        if let Some(sample) = block.sample.and_then(|i| self.sampled.get_mut(i as usize)) {
            sample.freed = None;
            sample.temporary = false;
        }
        self.live.insert((pid, ptr), block);
    }

    /// The temporary count now (to tell whether a `free` counted one).
    pub fn temporaries(&self) -> u64 {
        self.temporary_calls
    }

    /// Process `pid` called `execve`: its blocks are gone with its address space.
    pub fn exec(&mut self, pid: u32, time: u64) {
        let gone: Vec<(u64, Block)> = self
            .live
            .iter()
            .filter(|((p, _), _)| *p == pid)
            .map(|((_, ptr), b)| (*ptr, *b))
            .collect();
        for (ptr, block) in gone {
            self.live.remove(&(pid, ptr));
            self.release(block, time);
        }
    }

    /// The end: what is still live is leaked.
    pub fn finish(&mut self) {
        let live: Vec<Block> = self.live.drain().map(|(_, b)| b).collect();
        for block in live {
            self.leaked_calls += 1;
            self.leaked_bytes = self.leaked_bytes.saturating_add(block.size);
            let i = block.site as usize;
            if let Some(s) = self.sites.get_mut(i) {
                s.leaked_calls += 1;
                s.leaked_bytes = s.leaked_bytes.saturating_add(block.size);
            }
        }
    }

    /// A sampled allocation was live at the peak.
    pub fn live_at_peak(&self, s: &Sampled) -> bool {
        self.peak_bytes > 0
            && s.time <= self.peak_time
            && s.freed.is_none_or(|f| f > self.peak_time)
    }
}

/// Bytes a sampled allocation of `size` stands for at rate `rate` (0: every call sampled).
pub fn weight(size: u64, rate: u64) -> u64 {
    size.max(rate).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaks_temporaries_and_the_peak() {
        let mut h = Heap::new();
        // Site 0 leaks 3 × 100 B; site 1 allocates and frees 5 × 10 B at once.
        for i in 0..3u64 {
            h.alloc(1, 1, 10 + i, 0x1000 + i * 0x100, 100, 0, None);
        }
        for i in 0..5u64 {
            h.alloc(1, 1, 20 + 2 * i, 0x9000, 10, 1, None);
            h.free(1, 1, 21 + 2 * i, 0x9000);
        }
        // Site 2: a 1000 B block, the peak, freed later by another thread (not temporary).
        h.alloc(1, 1, 40, 0x5000, 1000, 2, None);
        h.alloc(1, 1, 41, 0x6000, 1, 3, None);
        h.free(1, 2, 42, 0x5000);
        h.free(1, 2, 43, 0);
        h.finish();
        assert_eq!(h.alloc_calls, 10);
        assert_eq!(h.temporary_calls, 5);
        assert_eq!(h.leaked_bytes, 301);
        assert_eq!(h.peak_bytes, 1301);
        assert_eq!(h.peak_time, 41);
        assert_eq!(h.unknown_frees, 1);
        let s = h.sites();
        assert_eq!((s[0].leaked_calls, s[0].leaked_bytes), (3, 300));
        assert_eq!((s[1].temporary_calls, s[1].leaked_bytes), (5, 0));
        assert_eq!(
            (s[0].peak_bytes, s[1].peak_bytes, s[2].peak_bytes),
            (300, 0, 1000)
        );
        assert_eq!(s[3].peak_bytes, 1);
    }

    #[test]
    fn peak_sites_are_those_of_the_peak_moment() {
        let mut h = Heap::new();
        h.alloc(1, 1, 1, 0x10, 500, 0, None);
        h.free(1, 1, 2, 0x10);
        h.alloc(1, 1, 3, 0x20, 300, 1, None);
        h.alloc(1, 1, 4, 0x30, 300, 2, None);
        // Peak 600 at time 4: sites 1 and 2, not site 0 (whose 500 was an earlier maximum).
        h.free(1, 1, 5, 0x20);
        h.finish();
        assert_eq!(h.peak_bytes, 600);
        let s = h.sites();
        assert_eq!(
            (s[0].peak_bytes, s[1].peak_bytes, s[2].peak_bytes),
            (0, 300, 300)
        );
    }

    #[test]
    fn failed_realloc_gives_the_block_back_and_exec_drops_blocks() {
        let mut h = Heap::new();
        h.alloc(1, 1, 1, 0x10, 64, 0, None);
        let t = h.temporaries();
        let old = h.free(1, 1, 2, 0x10).unwrap();
        let was_temporary = h.temporaries() > t;
        h.alloc(1, 1, 3, 0, 1 << 40, 1, None);
        h.restore(1, 0x10, old, was_temporary);
        assert_eq!((h.live_bytes, h.temporary_calls), (64, 0));
        h.alloc(2, 2, 4, 0x10, 8, 0, None);
        h.exec(1, 5);
        h.finish();
        assert_eq!((h.leaked_calls, h.leaked_bytes), (1, 8));
    }

    #[test]
    fn sampled_lives() {
        let mut h = Heap::new();
        h.alloc(1, 1, 1, 0x10, 100, 0, Some((7, weight(100, 1000))));
        h.alloc(1, 1, 2, 0x20, 5000, 0, Some((8, weight(5000, 1000))));
        h.free(1, 1, 3, 0x20);
        h.finish();
        assert_eq!(h.sampled[0].weight, 1000);
        assert_eq!(h.sampled[0].calls(), 10.0);
        assert!(h.live_at_peak(&h.sampled[0]) && h.live_at_peak(&h.sampled[1]));
        assert!(h.sampled[1].temporary && h.sampled[0].freed.is_none());
        // A failed allocation's sample is never live, never leaked.
        h.alloc(1, 1, 4, 0, 1 << 40, 0, Some((9, weight(1 << 40, 1000))));
        assert_eq!(h.sampled[2].freed, Some(4));
    }
}
