//! The pinholes open now, each with the calls that want it: two calls may
//! want the same (local port, remote) and one's end must not close it for
//! the other.

use std::collections::BTreeMap;

use crate::Pinhole;

#[derive(Default)]
pub(crate) struct Holes {
    owners: BTreeMap<Pinhole, Vec<String>>,
}

impl Holes {
    /// Adds a call to the pinhole; true when this opened it.
    pub fn acquire(&mut self, p: Pinhole, call_id: &str) -> bool {
        let owners = self.owners.entry(p).or_default();
        if !owners.iter().any(|c| c == call_id) {
            owners.push(call_id.to_string());
        }
        owners.len() == 1
    }

    /// Removes a call from the pinhole; true when this closed it.
    pub fn release(&mut self, p: Pinhole, call_id: &str) -> bool {
        let Some(owners) = self.owners.get_mut(&p) else {
            return false;
        };
        let before = owners.len();
        owners.retain(|c| c != call_id);
        if owners.is_empty() {
            self.owners.remove(&p);
            return before > 0;
        }
        false
    }

    pub fn list(&self) -> Vec<(Pinhole, String)> {
        self.owners
            .iter()
            .filter_map(|(p, o)| o.first().map(|c| (*p, c.clone())))
            .collect()
    }
}
