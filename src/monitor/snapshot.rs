//! The directory-snapshot differ shared by the backends that cannot name
//! what changed: `poll` (a periodic scan) and `kqueue` (a directory's
//! `NOTE_WRITE` says only "something in here changed").
//!
//! [`Snapshots`] keeps, for every watched directory, its identity (device,
//! inode) and a sorted [`Listing`] of its entries (inode, size, mtime, ctime,
//! mode). [`Snapshots::rescan`] lists some of those directories again and
//! turns the difference into the same [`RawEvent`]s inotify gives: created,
//! modified, attributes, removed, and a rename found by inode as an adjacent
//! `MovedFrom`/`MovedTo` pair with a synthetic cookie. A watched directory
//! found under another name is re-labelled (with everything watched below
//! it) before anything is diffed, so the events inside it already carry the
//! new name. Events are ordered so that applying them one by one makes a
//! copy of the old tree equal to the new one: a name is vacated before it
//! is filled, and nothing below a moved directory's new name comes before
//! the move. The property test at the bottom checks exactly that.
//!
//! It reads the filesystem only through the lister it is given, never
//! follows symlinks (entries are lstat'ed), and decides nothing about which
//! directories to watch.

use super::{EventKind, RawEvent};
use crate::path;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// File type bits of `st_mode` (the same on Linux, the BSDs and macOS;
/// libc's constants differ in width between them).
pub const S_IFMT: u32 = 0o170000;
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFREG: u32 = 0o100000;

/// A directory's or an entry's identity: (device, inode).
pub type Id = (u64, u64);

/// What is compared of one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    /// Nanoseconds since the epoch.
    pub mtime: i64,
    pub ctime: i64,
    /// `st_mode`: type and permission bits.
    pub mode: u32,
}

impl Meta {
    pub fn from_metadata(m: &std::fs::Metadata) -> Self {
        Meta {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: m.mtime().saturating_mul(1_000_000_000) + m.mtime_nsec(),
            ctime: m.ctime().saturating_mul(1_000_000_000) + m.ctime_nsec(),
            mode: m.mode(),
        }
    }

    pub fn id(&self) -> Id {
        (self.dev, self.ino)
    }

    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }

    /// What changed between two looks at the same inode, if anything. A
    /// directory's times move whenever an entry comes or goes, which its
    /// entries' own events tell already; only its mode, or a ctime change
    /// without one of the mtime (chmod, chown), is news.
    fn change(&self, new: &Meta) -> Option<EventKind> {
        if self.is_dir() {
            let attrib =
                self.mode != new.mode || (self.ctime != new.ctime && self.mtime == new.mtime);
            return attrib.then_some(EventKind::Attrib);
        }
        if self.size != new.size || self.mtime != new.mtime {
            Some(EventKind::Modified)
        } else if self.ctime != new.ctime || self.mode != new.mode {
            Some(EventKind::Attrib)
        } else {
            None
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: Box<[u8]>,
    pub meta: Meta,
}

/// One directory's entries, sorted by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    entries: Vec<Entry>,
}

impl Listing {
    /// Sorts `entries` by name (a name given twice keeps the last).
    pub fn new(mut entries: Vec<Entry>) -> Self {
        entries.reverse();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        entries.dedup_by(|a, b| a.name == b.name);
        entries.shrink_to_fit();
        Listing { entries }
    }

    /// Lists the directory `dir` (absolute) and lstats every entry; an
    /// entry that vanishes between the two is left out.
    pub fn read(dir: &Path) -> io::Result<Listing> {
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            // DirEntry::metadata is fstatat(AT_SYMLINK_NOFOLLOW): lstat.
            let Ok(m) = entry.metadata() else { continue };
            entries.push(Entry {
                name: entry.file_name().as_bytes().into(),
                meta: Meta::from_metadata(&m),
            });
        }
        Ok(Listing::new(entries))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }

    pub fn get(&self, name: &[u8]) -> Option<&Meta> {
        self.entries
            .binary_search_by(|e| e.name.as_ref().cmp(name))
            .ok()
            .map(|i| &self.entries[i].meta)
    }

    /// Heap bytes this listing holds (for the memory figure in the bench).
    pub fn heap_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Entry>()
            + self.entries.iter().map(|e| e.name.len()).sum::<usize>()
    }
}

/// Lists the directory at a relative path: its own lstat and its entries,
/// or `None` when it is not a directory (any more).
pub trait Lister {
    fn list(&mut self, rel: &[u8]) -> Option<(Meta, Listing)>;
}

/// The real filesystem below `root`.
pub struct FsLister<'a>(pub &'a Path);

impl Lister for FsLister<'_> {
    fn list(&mut self, rel: &[u8]) -> Option<(Meta, Listing)> {
        let abs = path::abs(self.0, rel);
        let m = std::fs::symlink_metadata(&abs).ok()?;
        if !m.is_dir() {
            return None;
        }
        let listing = Listing::read(&abs).ok()?;
        Some((Meta::from_metadata(&m), listing))
    }
}

struct DirState {
    id: Id,
    /// The directory's own mtime when it was listed.
    mtime: i64,
    listing: Listing,
}

/// The last listing of every watched directory.
#[derive(Default)]
pub struct Snapshots {
    dirs: BTreeMap<Vec<u8>, DirState>,
    last_cookie: u32,
    /// A sync runs (see [`Snapshots::syncing`]): the paths it makes equal,
    /// and the mtimes, when it started, of the watched directories it syncs
    /// whole.
    running: Option<SyncCheck>,
    /// Syncs that finished since the last rescan, to check at the next.
    finished: SyncCheck,
    /// Paths a rescan reported removed after a sync (see
    /// [`Snapshots::report_after_sync`]),
    /// until a listing holds them again: the sync of that removal is not
    /// checked into another one (which looped forever).
    rereported: BTreeSet<Vec<u8>>,
}

/// What a sync read from the live state, to check after it.
#[derive(Default)]
struct SyncCheck {
    paths: BTreeSet<Vec<u8>>,
    dirs: BTreeMap<Vec<u8>, i64>,
}

/// One side of a name that changed: entry `name` of the `k`-th directory
/// diffed.
struct Cand {
    k: usize,
    name: Vec<u8>,
    meta: Meta,
    /// Something else is at this name on the other side of the diff.
    name_taken: bool,
}

/// A rename found by inode, before it is ordered.
struct Move {
    /// The source under the old names.
    from_old: Vec<u8>,
    /// The target's directory under the old names, and its name.
    to_dir_old: Vec<u8>,
    name: Vec<u8>,
    /// The target under the new names.
    to_final: Vec<u8>,
    is_dir: bool,
    /// Also written to, or else chmod'ed: the event after the pair.
    then: Option<EventKind>,
}

/// A path under the names as they are after `renames`, applied in order.
fn current(old: &[u8], renames: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut p = old.to_vec();
    for (from, to) in renames {
        if path::is_under(&p, from) {
            p = path::rebase(&p, from, to);
        }
    }
    p
}

impl Snapshots {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts tracking the directory `rel`; keeps the snapshot it has if it
    /// is tracked already. False when `rel` is not a directory.
    pub fn watch(&mut self, rel: &[u8], lister: &mut dyn Lister) -> bool {
        if self.dirs.contains_key(rel) {
            return true;
        }
        match lister.list(rel) {
            Some((meta, listing)) => {
                let state = DirState {
                    id: meta.id(),
                    mtime: meta.mtime,
                    listing,
                };
                self.dirs.insert(rel.to_vec(), state);
                true
            }
            None => false,
        }
    }

    pub fn forget_subtree(&mut self, rel: &[u8]) {
        for k in self.under(rel) {
            self.dirs.remove(&k);
        }
    }

    /// Every tracked directory at or below `rel`.
    pub fn under(&self, rel: &[u8]) -> Vec<Vec<u8>> {
        self.dirs
            .range(rel.to_vec()..)
            .take_while(|(k, _)| k.starts_with(rel))
            .filter(|(k, _)| path::is_under(k, rel))
            .map(|(k, _)| k.clone())
            .collect()
    }

    pub fn contains(&self, rel: &[u8]) -> bool {
        self.dirs.contains_key(rel)
    }

    pub fn len(&self) -> usize {
        self.dirs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }

    /// Every tracked directory by its identity.
    pub fn dir_ids(&self) -> HashMap<Id, Vec<u8>> {
        self.dirs.iter().map(|(k, d)| (d.id, k.clone())).collect()
    }

    /// Every entry of a tracked directory that `keep` selects, by identity
    /// (a hard-linked file keeps one of its names).
    pub fn entry_ids(&self, keep: impl Fn(&Meta) -> bool) -> HashMap<Id, Vec<u8>> {
        let mut out = HashMap::new();
        for (k, d) in &self.dirs {
            for e in d.listing.iter().filter(|e| keep(&e.meta)) {
                out.entry(e.meta.id())
                    .or_insert_with(|| path::join(k, &e.name));
            }
        }
        out
    }

    /// The entries of the tracked directory `rel`.
    pub fn listing(&self, rel: &[u8]) -> Option<&Listing> {
        self.dirs.get(rel).map(|d| &d.listing)
    }

    /// (tracked entries, heap bytes of the listings and their keys).
    pub fn footprint(&self) -> (usize, usize) {
        self.dirs.iter().fold((0, 0), |(n, b), (k, d)| {
            (
                n + d.listing.len(),
                b + d.listing.heap_bytes() + k.len() + std::mem::size_of::<DirState>(),
            )
        })
    }

    fn cookie(&mut self) -> u32 {
        self.last_cookie = self.last_cookie.wrapping_add(1).max(1);
        self.last_cookie
    }

    /// A sync of `paths` starts (`recursive`: each with everything below
    /// it): remembers what to check once it is done
    /// ([`Snapshots::report_after_sync`]).
    pub fn syncing(&mut self, paths: &[(Vec<u8>, bool)]) {
        let mut check = SyncCheck::default();
        for (p, recursive) in paths {
            check.paths.insert(p.clone());
            if *recursive {
                for d in self.under(p) {
                    let mtime = self.dirs[&d].mtime;
                    check.dirs.insert(d, mtime);
                }
            }
        }
        self.running = Some(check);
    }

    /// The sync announced by [`Snapshots::syncing`] is done: the next
    /// rescan checks what it read.
    pub fn synced(&mut self) {
        if let Some(c) = self.running.take() {
            self.finished.paths.extend(c.paths);
            for (d, m) in c.dirs {
                self.finished.dirs.entry(d).or_insert(m);
            }
        }
    }

    /// Lists every tracked directory again and appends what changed.
    pub fn rescan_all(&mut self, lister: &mut dyn Lister, out: &mut Vec<RawEvent>) {
        let all: Vec<Vec<u8>> = self.dirs.keys().cloned().collect();
        self.rescan(all, lister, out);
    }

    /// Lists the tracked directories `check` again (and any tracked
    /// directory found to have moved) and appends what changed.
    ///
    /// The phases, each its own function: list again (following moved
    /// directories), diff the listings and pair removals with creations by
    /// inode, then report 1. removals, 2. renames, 3. what appeared, 4. what
    /// a finished sync may have missed, 5. changes in place; last, keep the
    /// new listings under the new names.
    pub fn rescan(
        &mut self,
        check: impl IntoIterator<Item = Vec<u8>>,
        lister: &mut dyn Lister,
        out: &mut Vec<RawEvent>,
    ) {
        let first_event = out.len();
        let todo: Vec<Vec<u8>> = check
            .into_iter()
            .filter(|k| self.dirs.contains_key(k))
            .collect();
        let relisted = self.relist(todo, lister);
        // The root itself went away: nothing below means anything now.
        if relisted.gone.contains(&b""[..]) {
            out.push(ev(Vec::new(), EventKind::WatchGone, true, 0));
        }
        let (diff, moves) = self.diff(&relisted);
        diff.report_removals(out);
        let resync = self.report_renames(moves, out);
        let mut whole = diff.report_appeared(resync, out);
        self.report_after_sync(&relisted, first_event, &mut whole, out);
        diff.report_changes(&whole, out);
        self.keep(relisted);
    }

    /// Lists the directories `todo` again. A tracked directory listed under
    /// another name moved there: it is re-labelled, with everything tracked
    /// below it, and listed under its new name, until no more turn up.
    fn relist(&self, mut todo: Vec<Vec<u8>>, lister: &mut dyn Lister) -> Relisted {
        let mut moved_to: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut fresh: BTreeMap<Vec<u8>, (i64, Listing)> = BTreeMap::new();
        let mut gone: BTreeSet<Vec<u8>> = BTreeSet::new();
        let by_id: HashMap<Id, Vec<u8>> =
            self.dirs.iter().map(|(k, d)| (d.id, k.clone())).collect();
        // Bounded: every round re-labels at least one directory for good.
        for _ in 0..=self.dirs.len() {
            while let Some(k) = todo.pop() {
                if fresh.contains_key(&k) || gone.contains(&k) {
                    continue;
                }
                let Some(state) = self.dirs.get(&k) else {
                    continue;
                };
                let at = moved_to.get(&k).unwrap_or(&k);
                match lister.list(at) {
                    Some((meta, listing)) if meta.id() == state.id => {
                        fresh.insert(k, (meta.mtime, listing));
                    }
                    _ => {
                        gone.insert(k);
                    }
                }
            }
            // A tracked directory listed under another name moved there.
            let mut found: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            for (k, (_, listing)) in &fresh {
                let here = moved_to.get(k).unwrap_or(k);
                for e in listing.iter().filter(|e| e.meta.is_dir()) {
                    let Some(old) = by_id.get(&e.meta.id()) else {
                        continue;
                    };
                    let now = path::join(here, &e.name);
                    if fresh.contains_key(old) || moved_to.get(old).unwrap_or(old) == &now {
                        continue;
                    }
                    found.push((old.clone(), now));
                }
            }
            if found.is_empty() {
                break;
            }
            for (old, now) in found {
                let old_at = moved_to.get(&old).cloned().unwrap_or_else(|| old.clone());
                for d in self.under(&old) {
                    if fresh.contains_key(&d) && d != old {
                        continue;
                    }
                    let d_at = moved_to.get(&d).cloned().unwrap_or_else(|| d.clone());
                    let new_at = if path::is_under(&d_at, &old_at) {
                        path::rebase(&d_at, &old_at, &now)
                    } else {
                        continue;
                    };
                    moved_to.insert(d.clone(), new_at);
                    gone.remove(&d);
                    fresh.remove(&d);
                    todo.push(d);
                }
            }
        }
        // A move can only be told as a rename when the directory it left is
        // diffed too (its listing names the source). Otherwise it is gone,
        // with what was below it: its new name appears as a new directory,
        // synced whole.
        let mut undone: BTreeSet<Vec<u8>> = BTreeSet::new();
        for k in moved_to.keys() {
            let parent = path::parent(k);
            if k.is_empty() || !fresh.contains_key(parent) || undone.contains(parent) {
                undone.insert(k.clone());
            }
        }
        for k in undone {
            moved_to.remove(&k);
            fresh.remove(&k);
            gone.insert(k);
        }
        Relisted {
            moved_to,
            fresh,
            gone,
        }
    }

    /// Diffs every directory listed again against its last listing, and
    /// pairs what was removed with what was created by inode: a rename.
    fn diff(&self, relisted: &Relisted) -> (Diff, Vec<Move>) {
        let keys: Vec<(Vec<u8>, Vec<u8>)> = relisted
            .fresh
            .keys()
            .map(|k| (k.clone(), relisted.now_of(k)))
            .collect();
        let mut removed: Vec<Cand> = Vec::new();
        let mut created: Vec<Cand> = Vec::new();
        let mut changed: Vec<(usize, Vec<u8>, bool, EventKind)> = Vec::new();
        for (k, (_, after)) in relisted.fresh.values().enumerate() {
            let before = &self.dirs[&keys[k].0].listing;
            diff_listing(k, before, after, &mut removed, &mut created, &mut changed);
        }
        let mut diff = Diff {
            keys,
            paired: vec![false; removed.len()],
            removed,
            created,
            changed,
            unpaired_created: Vec::new(),
        };

        // Pair by inode: a rename.
        let mut by_id: HashMap<Id, Vec<usize>> = HashMap::new();
        for (i, r) in diff.removed.iter().enumerate().rev() {
            by_id.entry(r.meta.id()).or_default().push(i);
        }
        let mut moves: Vec<Move> = Vec::new();
        for (ci, c) in diff.created.iter().enumerate() {
            let hit = by_id.get_mut(&c.meta.id()).and_then(|v| {
                let pos = v
                    .iter()
                    .rposition(|&ri| diff.removed[ri].meta.is_dir() == c.meta.is_dir())?;
                Some(v.remove(pos))
            });
            let Some(ri) = hit else {
                diff.unpaired_created.push(ci);
                continue;
            };
            diff.paired[ri] = true;
            let r = &diff.removed[ri];
            let then = if !c.meta.is_dir()
                && (r.meta.size != c.meta.size || r.meta.mtime != c.meta.mtime)
            {
                Some(EventKind::Modified)
            } else if r.meta.mode != c.meta.mode {
                // (Not ctime: a rename itself moves it.)
                Some(EventKind::Attrib)
            } else {
                None
            };
            moves.push(Move {
                from_old: diff.old_path(r),
                to_dir_old: diff.keys[c.k].0.clone(),
                name: c.name.clone(),
                to_final: diff.final_path(c),
                is_dir: c.meta.is_dir(),
                then,
            });
        }
        (diff, moves)
    }

    /// Phase 2, renames, each under the names the ones before it left: a name
    /// is vacated before it is filled, and a directory never goes below
    /// itself. When no rename can go (a cycle), one source is removed and
    /// its target re-synced whole after the renames, and so is every
    /// rename from inside it. Returns those targets (path, is a directory).
    fn report_renames(
        &mut self,
        mut moves: Vec<Move>,
        out: &mut Vec<RawEvent>,
    ) -> Vec<(Vec<u8>, bool)> {
        let mut renames: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut resync: Vec<(Vec<u8>, bool)> = Vec::new();
        while !moves.is_empty() {
            let cur: Vec<(Vec<u8>, Vec<u8>)> = moves
                .iter()
                .map(|m| {
                    let to = path::join(&current(&m.to_dir_old, &renames), &m.name);
                    (current(&m.from_old, &renames), to)
                })
                .collect();
            let ready = (0..moves.len()).find(|&i| {
                let (from, to) = &cur[i];
                let blocked = cur
                    .iter()
                    .enumerate()
                    .any(|(j, (f, _))| j != i && path::is_under(f, to));
                !blocked && !path::is_under(path::parent(to), from)
            });
            match ready {
                Some(i) => {
                    let m = moves.remove(i);
                    let (from, to) = cur[i].clone();
                    let cookie = self.cookie();
                    out.push(ev(from.clone(), EventKind::MovedFrom, m.is_dir, cookie));
                    out.push(ev(to.clone(), EventKind::MovedTo, m.is_dir, cookie));
                    if let Some(kind) = m.then {
                        out.push(ev(to.clone(), kind, m.is_dir, 0));
                    }
                    if m.is_dir {
                        renames.push((from, to));
                    }
                }
                None => {
                    let (gone_from, _) = cur[0].clone();
                    out.push(ev(
                        gone_from.clone(),
                        EventKind::Removed,
                        moves[0].is_dir,
                        0,
                    ));
                    let mut k = 0;
                    moves.retain(|m| {
                        let inside = path::is_under(&cur[k].0, &gone_from);
                        k += 1;
                        if inside {
                            resync.push((m.to_final.clone(), m.is_dir));
                        }
                        !inside
                    });
                }
            }
        }
        resync
    }

    /// Phase 4, after a sync: it read the live state, which may have held a
    /// name that came and went between two scans (never in a listing)
    /// and is now copied. A directory it synced whole whose mtime moved
    /// since the sync started is synced whole again (and added to
    /// `whole`); a path it synced that is absent now is reported removed,
    /// unless this rescan reported it already (the events from
    /// `first_event` on).
    fn report_after_sync(
        &mut self,
        relisted: &Relisted,
        first_event: usize,
        whole: &mut Vec<Vec<u8>>,
        out: &mut Vec<RawEvent>,
    ) {
        let check = std::mem::take(&mut self.finished);
        for (k, (mtime, _)) in relisted.fresh.iter() {
            let p = relisted.now_of(k);
            let moved_since = check.dirs.get(k).is_some_and(|m| m != mtime);
            if moved_since && !whole.iter().any(|w| path::is_under(&p, w)) {
                out.push(ev(p.clone(), EventKind::MovedTo, true, 0));
                whole.push(p);
            }
        }
        let listed: HashMap<Vec<u8>, &Listing> = relisted
            .fresh
            .iter()
            .map(|(k, (_, l))| (relisted.now_of(k), l))
            .collect();
        let reported: BTreeSet<Vec<u8>> =
            out[first_event..].iter().map(|e| e.path.clone()).collect();
        let absent = |p: &[u8]| {
            listed
                .get(path::parent(p))
                .is_some_and(|l| l.get(path::file_name(p)).is_none())
        };
        // A path listed again may come and go again: it may be re-reported.
        self.rereported
            .retain(|p| absent(p) || !listed.contains_key(path::parent(p)));
        for p in check.paths {
            if absent(&p) && !p.is_empty() && !reported.contains(&p) {
                // Reported once already: this sync was that removal.
                if !self.rereported.remove(&p) {
                    self.rereported.insert(p.clone());
                    out.push(ev(p, EventKind::Removed, false, 0));
                }
            }
        }
    }

    /// Keeps the new listings, under the new names, and forgets the
    /// directories that are gone.
    fn keep(&mut self, relisted: Relisted) {
        let Relisted {
            moved_to,
            fresh,
            gone,
        } = relisted;
        let mut relabelled: Vec<(Vec<u8>, DirState)> = Vec::new();
        for k in &gone {
            self.dirs.remove(k);
        }
        for (k, (mtime, listing)) in fresh {
            let Some(mut state) = self.dirs.remove(&k) else {
                continue;
            };
            state.listing = listing;
            state.mtime = mtime;
            let now = moved_to.get(&k).cloned().unwrap_or(k);
            relabelled.push((now, state));
        }
        for (k, state) in relabelled {
            self.dirs.insert(k, state);
        }
    }
}

/// What listing the directories again found.
struct Relisted {
    /// Old key → where it is now, for the directories found moved.
    moved_to: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The directories listed again, by old key: their mtime and listing.
    fresh: BTreeMap<Vec<u8>, (i64, Listing)>,
    /// The directories that are gone (or moved where no rename can tell it).
    gone: BTreeSet<Vec<u8>>,
}

impl Relisted {
    /// Where the directory tracked as `k` is now.
    fn now_of(&self, k: &[u8]) -> Vec<u8> {
        self.moved_to.get(k).cloned().unwrap_or_else(|| k.to_vec())
    }
}

/// The difference between the old and the new listings of the directories
/// listed again.
struct Diff {
    /// The diffed directories: (old name, new name); a [`Cand`]'s `k`
    /// indexes this.
    keys: Vec<(Vec<u8>, Vec<u8>)>,
    removed: Vec<Cand>,
    created: Vec<Cand>,
    /// (directory index, name, is a directory, what changed in place).
    changed: Vec<(usize, Vec<u8>, bool, EventKind)>,
    /// Which of `removed` were paired with a creation (a rename).
    paired: Vec<bool>,
    /// The indexes in `created` that no removal was paired with.
    unpaired_created: Vec<usize>,
}

impl Diff {
    fn old_path(&self, c: &Cand) -> Vec<u8> {
        path::join(&self.keys[c.k].0, &c.name)
    }

    fn final_path(&self, c: &Cand) -> Vec<u8> {
        path::join(&self.keys[c.k].1, &c.name)
    }

    /// Phase 1, removals, under the old names. A name vacated only to be filled
    /// by an entry of the same type needs none: the move or the re-sync
    /// of the name replaces it.
    fn report_removals(&self, out: &mut Vec<RawEvent>) {
        let filled: HashMap<(usize, &[u8]), bool> = self
            .created
            .iter()
            .map(|c| ((c.k, c.name.as_slice()), c.meta.is_dir()))
            .collect();
        for (ri, r) in self.removed.iter().enumerate() {
            let same_type_fill = filled.get(&(r.k, r.name.as_slice())) == Some(&r.meta.is_dir());
            if !(self.paired[ri] || r.name_taken && same_type_fill) {
                out.push(ev(self.old_path(r), EventKind::Removed, r.meta.is_dir(), 0));
            }
        }
    }

    /// Phase 3, what appeared, under the new names, with the targets `resync`
    /// the renames could not make; parents first. Nothing below a
    /// directory that is re-synced whole needs saying. Returns those
    /// directories.
    fn report_appeared(
        &self,
        resync: Vec<(Vec<u8>, bool)>,
        out: &mut Vec<RawEvent>,
    ) -> Vec<Vec<u8>> {
        let vacated: BTreeSet<(usize, &[u8])> = self
            .removed
            .iter()
            .enumerate()
            .filter(|(ri, _)| self.paired[*ri])
            .map(|(_, r)| (r.k, r.name.as_slice()))
            .collect();
        let mut appeared: Vec<(Vec<u8>, bool, bool)> =
            resync.into_iter().map(|(p, d)| (p, d, false)).collect();
        for &ci in &self.unpaired_created {
            let c = &self.created[ci];
            let replaces = c.name_taken && !vacated.contains(&(c.k, c.name.as_slice()));
            appeared.push((self.final_path(c), c.meta.is_dir(), !replaces));
        }
        appeared.sort_by(|a, b| a.0.cmp(&b.0));
        let mut whole: Vec<Vec<u8>> = Vec::new();
        for (p, is_dir, fresh) in appeared {
            if whole.iter().any(|w| path::is_strictly_under(&p, w)) {
                continue;
            }
            // Unpaired MovedTo: the tree takes it as "appeared, replacing
            // whatever was there" and syncs a directory whole.
            let kind = if fresh {
                EventKind::Created
            } else {
                EventKind::MovedTo
            };
            if is_dir {
                whole.push(p.clone());
            }
            out.push(ev(p, kind, is_dir, 0));
        }
        whole
    }

    /// Phase 5, changes in place, except below a directory synced `whole`.
    fn report_changes(&self, whole: &[Vec<u8>], out: &mut Vec<RawEvent>) {
        for (k, name, is_dir, kind) in &self.changed {
            let p = path::join(&self.keys[*k].1, name);
            if !whole.iter().any(|w| path::is_strictly_under(&p, w)) {
                out.push(ev(p, *kind, *is_dir, 0));
            }
        }
    }
}

/// One event, as the phases of a rescan report it.
fn ev(path: Vec<u8>, kind: EventKind, is_dir: bool, cookie: u32) -> RawEvent {
    RawEvent {
        path,
        kind,
        is_dir,
        cookie,
    }
}

/// Merges two sorted listings of the `k`-th diffed directory.
fn diff_listing(
    k: usize,
    before: &Listing,
    after: &Listing,
    removed: &mut Vec<Cand>,
    created: &mut Vec<Cand>,
    changed: &mut Vec<(usize, Vec<u8>, bool, EventKind)>,
) {
    use std::cmp::Ordering;
    let cand = |e: &Entry, name_taken| Cand {
        k,
        name: e.name.to_vec(),
        meta: e.meta,
        name_taken,
    };
    let (mut i, mut j) = (0, 0);
    let (b, a) = (&before.entries, &after.entries);
    while i < b.len() || j < a.len() {
        let ord = match (b.get(i), a.get(j)) {
            (Some(x), Some(y)) => x.name.cmp(&y.name),
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        match ord {
            Ordering::Less => {
                removed.push(cand(&b[i], false));
                i += 1;
            }
            Ordering::Greater => {
                created.push(cand(&a[j], false));
                j += 1;
            }
            Ordering::Equal => {
                let (old, new) = (&b[i].meta, &a[j].meta);
                if old.id() != new.id() || old.is_dir() != new.is_dir() {
                    removed.push(cand(&b[i], true));
                    created.push(cand(&a[j], true));
                } else if let Some(kind) = old.change(new) {
                    changed.push((k, a[j].name.to_vec(), new.is_dir(), kind));
                }
                i += 1;
                j += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests;
