//! The watched directories, stored once and compactly: one fixed-size node
//! per directory (parent, first child, siblings, the backend's handle) and
//! its name in one shared byte arena, with an open-addressing index from
//! (parent, name) to node. No node holds its full path; [`Nodes::path`]
//! rebuilds it from the names when an event needs one, and renaming a
//! directory moves one node, whatever lies below it.
//!
//! A node exists for every directory that has a value (a watch) and for the
//! ancestors that lead to one; a node with neither a value nor children is
//! removed at once, so the structure never holds more than the watched
//! directories and their parents. Names freed by removals are reclaimed by
//! compacting the arena once they make up half of it.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

/// A node id.
pub type Id = u32;
/// No node (a missing parent, child or sibling).
const NIL: Id = u32::MAX;
/// No value: a directory kept only because something below it has one.
pub const NONE: i32 = -1;
/// Index slots.
const EMPTY: u32 = u32::MAX;
const TOMB: u32 = u32::MAX - 1;

#[derive(Clone, Copy)]
struct Node {
    parent: Id,
    child: Id,
    next: Id,
    prev: Id,
    name_off: u32,
    val: i32,
    name_len: u8,
}

/// The name arena is full (4 GiB of live names).
#[derive(Debug)]
pub struct Full;

pub struct Nodes {
    nodes: Vec<Node>,
    /// Head of the free list (chained through `next`).
    free: Id,
    names: Vec<u8>,
    /// Bytes of `names` no live node uses.
    garbage: usize,
    /// (parent, name) → node; `EMPTY`, `TOMB` or an id.
    index: Vec<u32>,
    /// Slots that are not `EMPTY` (live and tombstones).
    index_used: usize,
    live: usize,
    hasher: RandomState,
}

impl Default for Nodes {
    fn default() -> Self {
        Self::new()
    }
}

impl Nodes {
    /// Only the root (the empty path), without a value.
    pub fn new() -> Self {
        Nodes {
            nodes: vec![Node {
                parent: NIL,
                child: NIL,
                next: NIL,
                prev: NIL,
                name_off: 0,
                val: NONE,
                name_len: 0,
            }],
            free: NIL,
            names: Vec::new(),
            garbage: 0,
            index: vec![EMPTY; 8],
            index_used: 0,
            live: 1,
            hasher: RandomState::new(),
        }
    }

    /// Live nodes, the root included.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Heap bytes held (for tests and figures).
    pub fn heap_bytes(&self) -> usize {
        self.nodes.capacity() * std::mem::size_of::<Node>()
            + self.names.capacity()
            + self.index.capacity() * 4
    }

    fn name(&self, id: Id) -> &[u8] {
        let n = &self.nodes[id as usize];
        &self.names[n.name_off as usize..n.name_off as usize + n.name_len as usize]
    }

    fn hash(&self, parent: Id, name: &[u8]) -> u64 {
        self.hasher.hash_one((parent, name))
    }

    /// The index slot holding `(parent, name)`, or `Err(slot)` where it would go.
    fn find_slot(&self, parent: Id, name: &[u8]) -> Result<usize, usize> {
        let mask = self.index.len() - 1;
        let mut i = self.hash(parent, name) as usize & mask;
        let mut tomb = None;
        loop {
            match self.index[i] {
                EMPTY => return Err(tomb.unwrap_or(i)),
                TOMB => {
                    tomb.get_or_insert(i);
                }
                id => {
                    if self.nodes[id as usize].parent == parent && self.name(id) == name {
                        return Ok(i);
                    }
                }
            }
            i = (i + 1) & mask;
        }
    }

    fn child(&self, parent: Id, name: &[u8]) -> Option<Id> {
        self.find_slot(parent, name).ok().map(|s| self.index[s])
    }

    /// Rebuilds the index with room for the live nodes (tombstones dropped).
    fn reindex(&mut self) {
        let cap = ((self.live + 1) * 2).next_power_of_two().max(8);
        self.index = vec![EMPTY; cap];
        self.index_used = 0;
        for id in 1..self.nodes.len() as Id {
            if self.is_live(id) {
                let parent = self.nodes[id as usize].parent;
                let slot = match self.find_slot(parent, self.name(id)) {
                    Ok(s) | Err(s) => s,
                };
                self.index[slot] = id;
                self.index_used += 1;
            }
        }
    }

    fn is_live(&self, id: Id) -> bool {
        id == 0 || self.nodes[id as usize].parent != NIL
    }

    /// The node of `rel` (the root for the empty path), if it exists.
    pub fn lookup(&self, rel: &[u8]) -> Option<Id> {
        let mut id = 0;
        for c in rel.split(|b| *b == b'/').filter(|c| !c.is_empty()) {
            id = self.child(id, c)?;
        }
        Some(id)
    }

    /// The node of `rel`, made with its missing ancestors (without values).
    pub fn ensure(&mut self, rel: &[u8]) -> Result<Id, Full> {
        let mut id = 0;
        for c in rel.split(|b| *b == b'/').filter(|c| !c.is_empty()) {
            id = match self.child(id, c) {
                Some(k) => k,
                None => self.add(id, c)?,
            };
        }
        Ok(id)
    }

    fn store_name(&mut self, name: &[u8]) -> Result<(u32, u8), Full> {
        let len = u8::try_from(name.len()).map_err(|_| Full)?;
        if self.names.len() + name.len() > u32::MAX as usize {
            self.compact();
            if self.names.len() + name.len() > u32::MAX as usize {
                return Err(Full);
            }
        }
        let off = self.names.len() as u32;
        self.names.extend_from_slice(name);
        Ok((off, len))
    }

    fn add(&mut self, parent: Id, name: &[u8]) -> Result<Id, Full> {
        let (name_off, name_len) = self.store_name(name)?;
        let first = self.nodes[parent as usize].child;
        let node = Node {
            parent,
            child: NIL,
            next: first,
            prev: NIL,
            name_off,
            val: NONE,
            name_len,
        };
        let id = if self.free != NIL {
            let id = self.free;
            self.free = self.nodes[id as usize].next;
            self.nodes[id as usize] = node;
            id
        } else {
            if self.nodes.len() >= (NIL - 1) as usize {
                return Err(Full);
            }
            self.nodes.push(node);
            (self.nodes.len() - 1) as Id
        };
        if first != NIL {
            self.nodes[first as usize].prev = id;
        }
        self.nodes[parent as usize].child = id;
        self.live += 1;
        self.insert_index(id);
        Ok(id)
    }

    fn insert_index(&mut self, id: Id) {
        if (self.index_used + 1) * 4 > self.index.len() * 3 {
            self.reindex();
        }
        let parent = self.nodes[id as usize].parent;
        match self.find_slot(parent, self.name(id)) {
            Ok(s) => self.index[s] = id,
            Err(s) => {
                if self.index[s] == EMPTY {
                    self.index_used += 1;
                }
                self.index[s] = id;
            }
        }
    }

    fn remove_index(&mut self, id: Id) {
        let parent = self.nodes[id as usize].parent;
        if let Ok(s) = self.find_slot(parent, self.name(id)) {
            self.index[s] = TOMB;
        }
    }

    /// Takes `id` out of its parent's child list (and the index).
    fn unlink(&mut self, id: Id) {
        self.remove_index(id);
        let n = self.nodes[id as usize];
        if n.prev != NIL {
            self.nodes[n.prev as usize].next = n.next;
        } else if n.parent != NIL {
            self.nodes[n.parent as usize].child = n.next;
        }
        if n.next != NIL {
            self.nodes[n.next as usize].prev = n.prev;
        }
    }

    /// Frees a childless, unlinked node.
    fn release(&mut self, id: Id) {
        self.garbage += self.nodes[id as usize].name_len as usize;
        let n = &mut self.nodes[id as usize];
        n.parent = NIL;
        n.child = NIL;
        n.prev = NIL;
        n.val = NONE;
        n.name_len = 0;
        n.next = self.free;
        self.free = id;
        self.live -= 1;
        if self.garbage > 4096 && self.garbage * 2 > self.names.len() {
            self.compact();
        }
    }

    /// Rewrites the arena with only the live names.
    fn compact(&mut self) {
        let mut names = Vec::with_capacity(self.names.len() - self.garbage);
        for id in 1..self.nodes.len() {
            if self.is_live(id as Id) {
                let n = self.nodes[id];
                let off = names.len() as u32;
                names.extend_from_slice(
                    &self.names[n.name_off as usize..n.name_off as usize + n.name_len as usize],
                );
                self.nodes[id].name_off = off;
            }
        }
        self.names = names;
        self.garbage = 0;
    }

    /// Removes `id` and then its ancestors while they have neither a value
    /// nor children (never the root).
    fn prune(&mut self, mut id: Id) {
        while id != 0 && id != NIL {
            let n = self.nodes[id as usize];
            if n.val != NONE || n.child != NIL {
                return;
            }
            self.unlink(id);
            self.release(id);
            id = n.parent;
        }
    }

    pub fn val(&self, id: Id) -> i32 {
        self.nodes[id as usize].val
    }

    pub fn set_val(&mut self, id: Id, val: i32) {
        self.nodes[id as usize].val = val;
    }

    /// Drops the value of `id`, and the node itself if nothing below needs it.
    pub fn clear(&mut self, id: Id) {
        self.nodes[id as usize].val = NONE;
        self.prune(id);
    }

    /// The full path of `id`, relative to the root.
    pub fn path(&self, id: Id) -> Vec<u8> {
        let mut parts = Vec::new();
        let mut len = 0;
        let mut at = id;
        while at != 0 && at != NIL {
            let name = self.name(at);
            len += name.len() + 1;
            parts.push(name);
            at = self.nodes[at as usize].parent;
        }
        let mut out = Vec::with_capacity(len);
        for (i, name) in parts.iter().rev().enumerate() {
            if i > 0 {
                out.push(b'/');
            }
            out.extend_from_slice(name);
        }
        out
    }

    /// Every node at or below `id`, `id` first, parents before children.
    pub fn subtree(&self, id: Id) -> Vec<Id> {
        let mut out = vec![id];
        let mut i = 0;
        while i < out.len() {
            let mut c = self.nodes[out[i] as usize].child;
            while c != NIL {
                out.push(c);
                c = self.nodes[c as usize].next;
            }
            i += 1;
        }
        out
    }

    /// Removes `id` and everything below it (the root only loses its value
    /// and children); returns the values they had.
    pub fn remove_subtree(&mut self, id: Id) -> Vec<i32> {
        let all = self.subtree(id);
        let vals = all
            .iter()
            .map(|&k| self.nodes[k as usize].val)
            .filter(|&v| v != NONE)
            .collect();
        let parent = self.nodes[id as usize].parent;
        for &k in all.iter().rev() {
            if k == 0 {
                self.nodes[0].val = NONE;
                self.nodes[0].child = NIL;
                continue;
            }
            if k == id {
                // The only one in a list that stays.
                self.unlink(k);
            } else {
                self.remove_index(k);
            }
            self.nodes[k as usize].child = NIL;
            self.release(k);
        }
        if parent != NIL {
            self.prune(parent);
        }
        vals
    }

    /// Moves `id` (with everything below it) to be `name` under `parent`.
    /// The caller makes sure no node of that name exists there and that
    /// `parent` is not below `id`.
    pub fn move_to(&mut self, id: Id, parent: Id, name: &[u8]) -> Result<(), Full> {
        let old_parent = self.nodes[id as usize].parent;
        let (name_off, name_len) = self.store_name(name)?;
        self.unlink(id);
        self.garbage += self.nodes[id as usize].name_len as usize;
        let first = self.nodes[parent as usize].child;
        {
            let n = &mut self.nodes[id as usize];
            n.parent = parent;
            n.name_off = name_off;
            n.name_len = name_len;
            n.prev = NIL;
            n.next = first;
        }
        if first != NIL {
            self.nodes[first as usize].prev = id;
        }
        self.nodes[parent as usize].child = id;
        self.insert_index(id);
        self.prune(old_parent);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths_with_vals(n: &Nodes) -> Vec<(String, i32)> {
        let mut v: Vec<(String, i32)> = n
            .subtree(0)
            .into_iter()
            .filter(|&id| n.val(id) != NONE)
            .map(|id| (String::from_utf8_lossy(&n.path(id)).into_owned(), n.val(id)))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn paths_are_rebuilt_from_names_and_empty_parents_go() {
        let mut n = Nodes::new();
        let a = n.ensure(b"a/b/c").expect("room");
        n.set_val(a, 3);
        let x = n.ensure(b"x").expect("room");
        n.set_val(x, 4);
        assert_eq!(n.path(a), b"a/b/c");
        assert_eq!(n.lookup(b"a/b/c"), Some(a));
        assert_eq!(n.len(), 5);
        n.clear(a);
        assert_eq!(n.lookup(b"a"), None, "unneeded ancestors removed");
        assert_eq!(n.len(), 2);
        assert_eq!(paths_with_vals(&n), [("x".to_string(), 4)]);
    }

    #[test]
    fn a_move_relabels_the_whole_subtree_and_removal_frees_it() {
        let mut n = Nodes::new();
        for (i, p) in ["a", "a/b", "a/b/c", "a/d", "e"].iter().enumerate() {
            let id = n.ensure(p.as_bytes()).expect("room");
            n.set_val(id, i as i32);
        }
        let a = n.lookup(b"a").expect("a");
        let dst = n.ensure(b"e/f").expect("room");
        let e = n.lookup(b"e").expect("e");
        assert_eq!(dst, n.lookup(b"e/f").expect("e/f"));
        n.clear(dst);
        n.move_to(a, e, b"g").expect("room");
        assert_eq!(
            paths_with_vals(&n),
            [
                ("e".to_string(), 4),
                ("e/g".to_string(), 0),
                ("e/g/b".to_string(), 1),
                ("e/g/b/c".to_string(), 2),
                ("e/g/d".to_string(), 3),
            ]
        );
        assert_eq!(n.lookup(b"a"), None);
        let g = n.lookup(b"e/g").expect("g");
        let mut vals = n.remove_subtree(g);
        vals.sort();
        assert_eq!(vals, [0, 1, 2, 3]);
        assert_eq!(paths_with_vals(&n), [("e".to_string(), 4)]);
        assert_eq!(n.len(), 2);
    }

    #[test]
    fn churn_reuses_nodes_and_reclaims_names() {
        let mut n = Nodes::new();
        for round in 0..50 {
            for i in 0..1000 {
                let p = format!("d{round}/sub-with-a-long-name-{i}");
                let id = n.ensure(p.as_bytes()).expect("room");
                n.set_val(id, i);
            }
            let d = n.lookup(format!("d{round}").as_bytes()).expect("d");
            assert_eq!(n.remove_subtree(d).len(), 1000);
        }
        assert_eq!(n.len(), 1);
        assert!(n.heap_bytes() < 200_000, "{} bytes", n.heap_bytes());
        for i in 0..1000 {
            let id = n.ensure(format!("x/{i}").as_bytes()).expect("room");
            n.set_val(id, i);
        }
        for i in 0..1000 {
            let id = n.lookup(format!("x/{i}").as_bytes()).expect("found");
            assert_eq!(n.val(id), i);
        }
    }
}
