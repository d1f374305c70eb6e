//! Small ordered maps and sets over a sorted `Vec`.
//!
//! The node and the driver keep a handful of maps keyed by 32-byte ids, each a
//! few entries to a few thousand. `BTreeMap` compiles its node-balancing code
//! once per key/value pair: about 5 KB of wasm for each of the eleven maps the
//! browser build had. A sorted `Vec` with binary search is a few hundred
//! bytes per pair, keeps iteration in key order (so every decision that walks
//! a map stays deterministic), and is as fast at these sizes. Bulk loads go
//! through [`VecMap::from_iter`], which sorts once.

use std::borrow::Borrow;

/// A map kept sorted by key. Inserting a new key in the middle shifts the
/// entries after it; callers that load many at once use `collect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VecMap<K, V> {
    entries: Vec<(K, V)>,
}

impl<K, V> Default for VecMap<K, V> {
    fn default() -> Self {
        Self { entries: Vec::new() }
    }
}

impl<K: Ord, V> VecMap<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    fn position<Q: Ord + ?Sized>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
    {
        self.entries.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }

    /// Sets `key` to `value`; returns the value it replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.position(&key) {
            Ok(at) => Some(std::mem::replace(&mut self.entries[at].1, value)),
            Err(at) => {
                self.entries.insert(at, (key, value));
                None
            }
        }
    }

    pub fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.position(key).ok().map(|at| &self.entries[at].1)
    }

    pub fn get_mut<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        self.position(key).ok().map(|at| &mut self.entries[at].1)
    }

    pub fn contains_key<Q: Ord + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.position(key).is_ok()
    }

    pub fn remove<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.position(key).ok().map(|at| self.entries.remove(at).1)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.entries.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.entries.iter_mut().map(|(_, v)| v)
    }

    /// Keeps the entries `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        self.entries.retain_mut(|(k, v)| keep(k, v));
    }
}

impl<K: Ord, V> Extend<(K, V)> for VecMap<K, V> {
    /// Sorts once; of equal keys the last wins, as repeated `insert`s would.
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, items: I) {
        self.entries.extend(items);
        // Stable, so equal keys keep their order; reversed, the dedup keeps the last.
        self.entries.sort_by(|a, b| a.0.cmp(&b.0));
        self.entries.reverse();
        self.entries.dedup_by(|later, earlier| later.0 == earlier.0);
        self.entries.reverse();
    }
}

impl<K: Ord, V> FromIterator<(K, V)> for VecMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(items: I) -> Self {
        let mut map = Self::new();
        map.extend(items);
        map
    }
}

impl<K: Ord + Borrow<Q>, Q: Ord + ?Sized, V> std::ops::Index<&Q> for VecMap<K, V> {
    type Output = V;

    /// Panics when `key` is absent, as `BTreeMap`'s index does.
    fn index(&self, key: &Q) -> &V {
        self.get(key).expect("no entry for this key")
    }
}

/// A set kept sorted; see [`VecMap`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VecSet<K> {
    map: VecMap<K, ()>,
}

impl<K: Ord> VecSet<K> {
    pub fn new() -> Self {
        Self { map: VecMap::new() }
    }

    /// Adds `key`; true when it was not there yet.
    pub fn insert(&mut self, key: K) -> bool {
        self.map.insert(key, ()).is_none()
    }

    pub fn contains<Q: Ord + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.map.contains_key(key)
    }

    /// Removes `key`; true when it was there.
    pub fn remove<Q: Ord + ?Sized>(&mut self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.map.remove(key).is_some()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Members in order.
    pub fn iter(&self) -> impl Iterator<Item = &K> {
        self.map.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_keeps_key_order_and_replaces_on_a_repeated_insert() {
        let mut map = VecMap::new();
        for (k, v) in [(5, "e"), (1, "a"), (3, "c"), (1, "A")] {
            map.insert(k, v);
        }
        assert_eq!(map.iter().collect::<Vec<_>>(), [(&1, &"A"), (&3, &"c"), (&5, &"e")]);
        assert_eq!(map.insert(3, "C"), Some("c"));
        assert_eq!(map.remove(&1), Some("A"));
        assert_eq!(map.remove(&1), None);
        assert_eq!(map.get(&5), Some(&"e"));
        assert!(!map.contains_key(&2));
        assert_eq!(map[&3], "C");
        map.retain(|k, _| *k > 3);
        assert_eq!(map.keys().collect::<Vec<_>>(), [&5]);
    }

    #[test]
    fn collecting_sorts_once_and_the_last_of_equal_keys_wins() {
        let map: VecMap<u8, &str> = [(2, "b"), (1, "a"), (2, "B"), (0, "z")].into_iter().collect();
        assert_eq!(map.iter().collect::<Vec<_>>(), [(&0, &"z"), (&1, &"a"), (&2, &"B")]);
        let mut map = map;
        map.extend([(1, "A"), (3, "c")]);
        assert_eq!(
            map.iter().collect::<Vec<_>>(),
            [(&0, &"z"), (&1, &"A"), (&2, &"B"), (&3, &"c")]
        );
    }

    #[test]
    fn a_set_says_whether_it_changed() {
        let mut set = VecSet::new();
        assert!(set.insert(2));
        assert!(set.insert(1));
        assert!(!set.insert(2));
        assert_eq!(set.iter().collect::<Vec<_>>(), [&1, &2]);
        assert!(set.remove(&2));
        assert!(!set.remove(&2));
        assert!(set.contains(&1) && set.len() == 1);
    }
}
