//! Tests of the differ against an in-memory model filesystem: each check
//! applies the emitted events, in order, to a copy of the old tree the way
//! the tree and a state-based handler would, and requires the copy to end
//! equal to the new tree.

use super::*;
use proptest::prelude::*;

#[derive(Clone, Debug, PartialEq)]
struct Node {
    ino: u64,
    dir: bool,
    size: u64,
    mtime: i64,
    ctime: i64,
    perm: u32,
}

impl Node {
    fn meta(&self) -> Meta {
        let kind = if self.dir { S_IFDIR } else { S_IFREG };
        Meta {
            dev: 1,
            ino: self.ino,
            size: self.size,
            mtime: self.mtime,
            ctime: self.ctime,
            mode: kind | self.perm,
        }
    }
}

#[derive(Clone, Debug)]
struct Model {
    nodes: BTreeMap<Vec<u8>, Node>,
    next_ino: u64,
    clock: i64,
}

fn p(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

impl Model {
    fn new() -> Self {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            Vec::new(),
            Node {
                ino: 1,
                dir: true,
                size: 0,
                mtime: 0,
                ctime: 0,
                perm: 0o755,
            },
        );
        Model {
            nodes,
            next_ino: 2,
            clock: 1,
        }
    }

    fn tick(&mut self) -> i64 {
        self.clock += 1;
        self.clock
    }

    fn is_dir(&self, rel: &[u8]) -> bool {
        self.nodes.get(rel).is_some_and(|n| n.dir)
    }

    fn touch_dir(&mut self, rel: &[u8]) {
        let t = self.tick();
        if let Some(n) = self.nodes.get_mut(rel) {
            n.mtime = t;
            n.ctime = t;
        }
    }

    fn subtree(&self, rel: &[u8]) -> Vec<Vec<u8>> {
        self.nodes
            .keys()
            .filter(|k| path::is_under(k, rel))
            .cloned()
            .collect()
    }

    fn remove(&mut self, rel: &[u8]) {
        for k in self.subtree(rel) {
            self.nodes.remove(&k);
        }
    }

    fn add(&mut self, rel: Vec<u8>, dir: bool) {
        let t = self.tick();
        let ino = self.next_ino;
        self.next_ino += 1;
        self.touch_dir(path::parent(&rel));
        self.nodes.insert(
            rel,
            Node {
                ino,
                dir,
                size: 0,
                mtime: t,
                ctime: t,
                perm: 0o644,
            },
        );
    }

    fn paths(&self) -> Vec<Vec<u8>> {
        self.nodes.keys().cloned().collect()
    }

    fn dirs(&self) -> Vec<Vec<u8>> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.dir)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// One operation, picked by indices into what exists; ops that would
    /// be refused by the kernel are skipped.
    fn apply(&mut self, op: &Op) {
        let pick = |v: Vec<Vec<u8>>, i: usize| v[i % v.len()].clone();
        match *op {
            Op::Create { parent, name, dir } => {
                let at = path::join(&pick(self.dirs(), parent), NAMES[name].as_bytes());
                if !self.nodes.contains_key(&at) {
                    self.add(at, dir);
                }
            }
            Op::Write { target } => {
                let at = pick(self.paths(), target);
                let t = self.tick();
                if let Some(n) = self.nodes.get_mut(&at).filter(|n| !n.dir) {
                    n.size += 1;
                    n.mtime = t;
                    n.ctime = t;
                }
            }
            Op::Chmod { target } => {
                let at = pick(self.paths(), target);
                let t = self.tick();
                if let Some(n) = self.nodes.get_mut(&at).filter(|_| !at.is_empty()) {
                    n.perm ^= 0o100;
                    n.ctime = t;
                }
            }
            Op::Remove { target } => {
                let at = pick(self.paths(), target);
                if !at.is_empty() {
                    self.remove(&at);
                    self.touch_dir(path::parent(&at));
                }
            }
            Op::Rename {
                source,
                parent,
                name,
            } => {
                let from = pick(self.paths(), source);
                let to = path::join(&pick(self.dirs(), parent), NAMES[name].as_bytes());
                if from.is_empty() || from == to || path::is_under(&to, &from) {
                    return;
                }
                let src_dir = self.is_dir(&from);
                if let Some(old) = self.nodes.get(&to) {
                    let empty_dir = old.dir && self.subtree(&to).len() == 1;
                    if old.dir != src_dir || (old.dir && !empty_dir) {
                        return;
                    }
                }
                self.remove(&to);
                for k in self.subtree(&from) {
                    if let Some(mut n) = self.nodes.remove(&k) {
                        if k == from {
                            n.ctime = self.clock + 1;
                        }
                        self.nodes.insert(path::rebase(&k, &from, &to), n);
                    }
                }
                self.tick();
                self.touch_dir(path::parent(&from));
                self.touch_dir(path::parent(&to));
            }
            Op::Link {
                source,
                parent,
                name,
            } => {
                let from = pick(self.paths(), source);
                let to = path::join(&pick(self.dirs(), parent), NAMES[name].as_bytes());
                if self.is_dir(&from)
                    || self.nodes.contains_key(&to)
                    || !self.nodes.contains_key(&from)
                {
                    return;
                }
                let n = self.nodes[&from].clone();
                self.nodes.insert(to.clone(), n);
                self.touch_dir(path::parent(&to));
            }
        }
    }
}

struct ModelLister<'a>(&'a Model);

impl Lister for ModelLister<'_> {
    fn list(&mut self, rel: &[u8]) -> Option<(Meta, Listing)> {
        let n = self.0.nodes.get(rel).filter(|n| n.dir)?;
        let entries = self
            .0
            .nodes
            .iter()
            .filter(|(k, _)| !k.is_empty() && path::parent(k) == rel && k.as_slice() != rel)
            .map(|(k, n)| Entry {
                name: path::file_name(k).into(),
                meta: n.meta(),
            })
            .collect();
        Some((n.meta(), Listing::new(entries)))
    }
}

const NAMES: [&str; 5] = ["a", "b", "c", "d", "e"];

#[derive(Clone, Debug)]
enum Op {
    Create {
        parent: usize,
        name: usize,
        dir: bool,
    },
    Write {
        target: usize,
    },
    Chmod {
        target: usize,
    },
    Remove {
        target: usize,
    },
    Rename {
        source: usize,
        parent: usize,
        name: usize,
    },
    Link {
        source: usize,
        parent: usize,
        name: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let n = 0..NAMES.len();
    prop_oneof![
        3 => (any::<usize>(), n.clone(), any::<bool>()).prop_map(|(parent, name, dir)| Op::Create { parent, name, dir }),
        2 => any::<usize>().prop_map(|target| Op::Write { target }),
        1 => any::<usize>().prop_map(|target| Op::Chmod { target }),
        1 => any::<usize>().prop_map(|target| Op::Remove { target }),
        3 => (any::<usize>(), any::<usize>(), n.clone()).prop_map(|(source, parent, name)| Op::Rename { source, parent, name }),
        1 => (any::<usize>(), any::<usize>(), n).prop_map(|(source, parent, name)| Op::Link { source, parent, name }),
    ]
}

/// Applies `events` to `replica` as the tree, the queue and a state-based
/// handler would, keeping `snaps` watching what the tree would watch:
/// renames and removals act on the replica at once; what appeared or
/// changed is marked for a sync (the queue carries such marks along when a
/// directory above them is renamed), and the syncs copy the new state at
/// the end. Panics when an event cannot apply in order (a rename of
/// something not there, "created" over something that is, an entry
/// appearing in a directory that does not exist).
fn apply_events(replica: &mut Model, after: &Model, snaps: &mut Snapshots, events: &[RawEvent]) {
    let watch_below = |snaps: &mut Snapshots, at: &[u8]| {
        for d in after.dirs().into_iter().filter(|d| path::is_under(d, at)) {
            snaps.watch(&d, &mut ModelLister(after));
        }
    };
    let mut dirty: Vec<(Vec<u8>, bool)> = Vec::new();
    let mut i = 0;
    while i < events.len() {
        let e = &events[i];
        let shown = path::display(&e.path);
        match e.kind {
            EventKind::MovedFrom => {
                let next = events.get(i + 1);
                match next.filter(|n| {
                    n.kind == EventKind::MovedTo && n.cookie == e.cookie && e.cookie != 0
                }) {
                    Some(to) => {
                        assert!(
                            replica.nodes.contains_key(&e.path),
                            "move of a missing {shown}: {events:?}"
                        );
                        assert!(
                            replica.is_dir(path::parent(&to.path)),
                            "move into a missing dir: {events:?}"
                        );
                        let moved: Vec<(Vec<u8>, Node)> = replica
                            .subtree(&e.path)
                            .into_iter()
                            .map(|k| {
                                (
                                    path::rebase(&k, &e.path, &to.path),
                                    replica.nodes[&k].clone(),
                                )
                            })
                            .collect();
                        replica.remove(&e.path);
                        replica.remove(&to.path);
                        replica.nodes.extend(moved);
                        for (d, _) in dirty.iter_mut() {
                            if path::is_under(d, &e.path) {
                                *d = path::rebase(d, &e.path, &to.path);
                            }
                        }
                        if to.is_dir {
                            watch_below(snaps, &to.path);
                        }
                        i += 2;
                        continue;
                    }
                    None => {
                        replica.remove(&e.path);
                        snaps.forget_subtree(&e.path);
                    }
                }
            }
            EventKind::Removed => {
                replica.remove(&e.path);
                if e.is_dir {
                    snaps.forget_subtree(&e.path);
                }
            }
            EventKind::Created | EventKind::MovedTo => {
                if e.kind == EventKind::Created {
                    assert!(
                        !replica.nodes.contains_key(&e.path),
                        "created over an existing {shown}: {events:?}"
                    );
                }
                assert!(
                    replica.is_dir(path::parent(&e.path)),
                    "{shown} appeared in a missing dir: {events:?}"
                );
                assert_eq!(after.is_dir(&e.path), e.is_dir, "is_dir of {shown}");
                // The entry exists from now on (its content comes with the sync).
                replica.remove(&e.path);
                replica
                    .nodes
                    .insert(e.path.clone(), after.nodes[&e.path].clone());
                dirty.push((e.path.clone(), e.is_dir));
                if e.is_dir {
                    watch_below(snaps, &e.path);
                }
            }
            EventKind::Modified | EventKind::Attrib => {
                assert!(
                    replica.nodes.contains_key(&e.path),
                    "change of a missing {shown}: {events:?}"
                );
                assert_eq!(replica.is_dir(&e.path), e.is_dir, "is_dir of {shown}");
                dirty.push((e.path.clone(), false));
            }
            EventKind::Rescan | EventKind::WatchGone => panic!("unexpected {e:?}"),
        }
        i += 1;
    }
    for (d, whole) in dirty {
        if !after.nodes.contains_key(&d) {
            replica.remove(&d);
        } else if whole {
            replica.remove(&d);
            for k in after.subtree(&d) {
                replica.nodes.insert(k.clone(), after.nodes[&k].clone());
            }
        } else {
            replica.nodes.insert(d.clone(), after.nodes[&d].clone());
        }
    }
}

/// What a mirror must reproduce: types, file sizes and times, modes.
fn visible(m: &Model) -> BTreeMap<Vec<u8>, (bool, u64, i64, u32)> {
    m.nodes
        .iter()
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, n)| {
            (
                k.clone(),
                if n.dir {
                    (true, 0, 0, n.perm)
                } else {
                    (false, n.size, n.mtime, n.perm)
                },
            )
        })
        .collect()
}

fn run_rounds(setup: &[Op], rounds: &[Vec<Op>]) {
    let mut model = Model::new();
    for o in setup {
        model.apply(o);
    }
    let mut snaps = Snapshots::new();
    for d in model.dirs() {
        assert!(snaps.watch(&d, &mut ModelLister(&model)));
    }
    let mut replica = model.clone();
    for ops in rounds {
        for o in ops {
            model.apply(o);
        }
        let mut events = Vec::new();
        snaps.rescan_all(&mut ModelLister(&model), &mut events);
        apply_events(&mut replica, &model, &mut snaps, &events);
        assert_eq!(visible(&replica), visible(&model), "events: {events:?}");
        // Every directory is watched, under its current name.
        let watched: BTreeSet<Vec<u8>> = snaps.under(b"").into_iter().collect();
        assert_eq!(watched, model.dirs().into_iter().collect(), "watched dirs");
        // A second scan with nothing changed only echoes removals of what is
        // absent (see step 6 of `rescan`); a third says nothing.
        let mut again = Vec::new();
        snaps.rescan_all(&mut ModelLister(&model), &mut again);
        for e in &again {
            assert!(
                e.kind == EventKind::Removed && !model.nodes.contains_key(&e.path),
                "a quiet rescan: {again:?}"
            );
        }
        apply_events(&mut replica, &model, &mut snaps, &again);
        assert_eq!(visible(&replica), visible(&model));
        let mut third = Vec::new();
        snaps.rescan_all(&mut ModelLister(&model), &mut third);
        assert!(third.is_empty(), "a quiet rescan: {third:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]
    #[test]
    fn applying_the_events_in_order_converges_on_the_new_tree(
        setup in proptest::collection::vec(op(), 0..25),
        rounds in proptest::collection::vec(proptest::collection::vec(op(), 0..12), 1..4),
    ) {
        run_rounds(&setup, &rounds);
    }
}

fn mk(parent: usize, name: usize, dir: bool) -> Op {
    Op::Create { parent, name, dir }
}

fn events_after(
    setup: impl Fn(&mut Model),
    change: impl Fn(&mut Model),
) -> Vec<(EventKind, String, u32)> {
    let mut model = Model::new();
    setup(&mut model);
    let mut snaps = Snapshots::new();
    for d in model.dirs() {
        snaps.watch(&d, &mut ModelLister(&model));
    }
    let mut replica = model.clone();
    change(&mut model);
    let mut out = Vec::new();
    snaps.rescan_all(&mut ModelLister(&model), &mut out);
    apply_events(&mut replica, &model, &mut snaps, &out);
    assert_eq!(visible(&replica), visible(&model));
    out.iter()
        .map(|e| (e.kind, path::display(&e.path), e.cookie))
        .collect()
}

fn mv(m: &mut Model, from: &str, to: &str) {
    // Model names are a..e; find the indices.
    let paths = m.paths();
    let source = paths.iter().position(|x| x == &p(from)).expect("source");
    let dirs = m.dirs();
    let parent = dirs
        .iter()
        .position(|d| d.as_slice() == path::parent(&p(to)))
        .expect("parent");
    let name = NAMES
        .iter()
        .position(|n| n.as_bytes() == path::file_name(&p(to)))
        .expect("name");
    m.apply(&Op::Rename {
        source,
        parent,
        name,
    });
}

#[test]
fn a_swap_of_two_names_converges() {
    let evs = events_after(
        |m| {
            m.apply(&mk(0, 0, false));
            m.apply(&mk(0, 1, false));
            m.apply(&mk(0, 2, false));
        },
        |m| {
            mv(m, "a", "c");
            mv(m, "b", "a");
            mv(m, "c", "b");
        },
    );
    // One real move, one re-sync: a cycle cannot be all moves.
    assert_eq!(
        evs.iter().filter(|e| e.0 == EventKind::MovedFrom).count(),
        1,
        "{evs:?}"
    );
    assert!(
        evs.iter().any(|e| e.0 == EventKind::MovedTo && e.2 == 0),
        "{evs:?}"
    );
}

#[test]
fn a_chain_of_moves_vacates_each_name_before_filling_it() {
    let evs = events_after(
        |m| {
            m.apply(&mk(0, 0, false));
            m.apply(&mk(0, 1, false));
        },
        |m| {
            mv(m, "b", "c");
            mv(m, "a", "b");
        },
    );
    let moves: Vec<&str> = evs
        .iter()
        .filter(|e| e.0 == EventKind::MovedFrom)
        .map(|e| e.1.as_str())
        .collect();
    assert_eq!(moves, vec!["b", "a"], "{evs:?}");
}

#[test]
fn replacing_a_file_by_a_new_one_resyncs_the_name_without_removing_it() {
    let evs = events_after(
        |m| m.apply(&mk(0, 0, false)),
        |m| {
            m.apply(&Op::Remove { target: 1 });
            m.apply(&mk(0, 0, false));
        },
    );
    assert_eq!(evs, vec![(EventKind::MovedTo, "a".to_string(), 0)]);
}

#[test]
fn a_dir_replaced_by_a_file_is_removed_first() {
    let evs = events_after(
        |m| m.apply(&mk(0, 0, true)),
        |m| {
            m.apply(&Op::Remove { target: 1 });
            m.apply(&mk(0, 0, false));
        },
    );
    assert_eq!(evs[0].0, EventKind::Removed, "{evs:?}");
    assert_eq!(evs.len(), 2, "{evs:?}");
}

#[test]
fn a_moved_dir_is_followed_into_and_a_file_moved_out_of_it_comes_after() {
    let evs = events_after(
        |m| {
            m.apply(&mk(0, 0, true)); // a/
            m.apply(&mk(1, 1, false)); // a/b
        },
        |m| {
            mv(m, "a", "c");
            mv(m, "c/b", "d");
            m.apply(&mk(1, 4, false)); // c/e
        },
    );
    let names: Vec<(EventKind, &str)> = evs.iter().map(|e| (e.0, e.1.as_str())).collect();
    let dir_move = names
        .iter()
        .position(|e| *e == (EventKind::MovedFrom, "a"))
        .expect("dir move");
    let file_move = names
        .iter()
        .position(|e| *e == (EventKind::MovedFrom, "c/b"))
        .expect("file move");
    assert!(dir_move < file_move, "{names:?}");
    assert_eq!(names[file_move + 1], (EventKind::MovedTo, "d"));
    assert!(names.contains(&(EventKind::Created, "c/e")), "{names:?}");
}

#[test]
fn a_chmod_is_attrib_and_a_write_is_modified_and_a_hard_link_is_created() {
    let evs = events_after(
        |m| {
            m.apply(&mk(0, 0, false));
            m.apply(&mk(0, 1, false));
        },
        |m| {
            m.apply(&Op::Chmod { target: 1 });
            m.apply(&Op::Write { target: 2 });
            m.apply(&Op::Link {
                source: 1,
                parent: 0,
                name: 2,
            });
        },
    );
    assert!(
        evs.contains(&(EventKind::Attrib, "a".to_string(), 0)),
        "{evs:?}"
    );
    assert!(
        evs.contains(&(EventKind::Modified, "b".to_string(), 0)),
        "{evs:?}"
    );
    assert!(
        evs.contains(&(EventKind::Created, "c".to_string(), 0)),
        "{evs:?}"
    );
}

#[test]
fn cookies_are_never_zero_and_differ_between_pairs() {
    let mut s = Snapshots::new();
    s.last_cookie = u32::MAX;
    let (a, b) = (s.cookie(), s.cookie());
    assert!(a != 0 && b != 0 && a != b);
}

#[test]
fn a_real_listing_is_sorted_lstats_and_does_not_follow_symlinks() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("b"), b"12345").expect("write");
    std::fs::create_dir(dir.path().join("a")).expect("mkdir");
    std::os::unix::fs::symlink("a", dir.path().join("c")).expect("symlink");
    let l = Listing::read(dir.path()).expect("read");
    let names: Vec<&[u8]> = l.iter().map(|e| e.name.as_ref()).collect();
    assert_eq!(names, vec![&b"a"[..], b"b", b"c"]);
    assert!(l.get(b"a").expect("a").is_dir());
    assert_eq!(l.get(b"b").expect("b").size, 5);
    assert!(
        !l.get(b"c").expect("c").is_dir(),
        "a symlink is not its target"
    );
    assert!(l.heap_bytes() >= 3 * std::mem::size_of::<Entry>());
}
