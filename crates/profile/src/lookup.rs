//! The set of addresses a profile needs names for, grouped by module.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{lookup_address, Address, ModuleId};

/// Lookup addresses (see [`lookup_address`]) per module, sorted and without duplicates: what a
/// symbolizer is asked to name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LookupSet {
    map: BTreeMap<ModuleId, BTreeSet<u64>>,
}

impl LookupSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the lookup address of every frame of a user and a kernel stack (leaf first) whose
    /// module is known: a sample's or an off-CPU block's.
    pub fn add_stack(&mut self, user: &[Address], kernel: &[Address]) {
        self.add_stack_noting(user, kernel, |_, _| {});
    }

    /// [`add_stack`](Self::add_stack), calling `new` with each (module, lookup address) the set
    /// did not hold before.
    pub fn add_stack_noting(
        &mut self,
        user: &[Address],
        kernel: &[Address],
        mut new: impl FnMut(ModuleId, u64),
    ) {
        for stack in [user, kernel] {
            for (index, address) in stack.iter().enumerate() {
                if let Some(module) = address.module {
                    let lookup = lookup_address(index, address.address);
                    if self.add(module, lookup) {
                        new(module, lookup);
                    }
                }
            }
        }
    }

    /// Adds one lookup address of `module`; whether the set did not hold it before.
    pub fn add(&mut self, module: ModuleId, lookup: u64) -> bool {
        self.map.entry(module).or_default().insert(lookup)
    }

    /// True when no address is wanted.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Number of addresses over all modules.
    pub fn len(&self) -> usize {
        self.map.values().map(BTreeSet::len).sum()
    }

    /// Each module with its sorted lookup addresses.
    pub fn iter(&self) -> impl Iterator<Item = (ModuleId, &BTreeSet<u64>)> {
        self.map.iter().map(|(&module, set)| (module, set))
    }
}
