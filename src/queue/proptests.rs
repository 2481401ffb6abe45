//! The queue against a model: a source tree changed at random, events fed
//! to the queue, batches popped at random times and applied (op by op,
//! interleaved with more changes) by a state-based handler to a
//! destination tree, some of them failing and coming back. At the end,
//! after `pop_all`, the destination must equal the source, and every
//! batch must have respected its lane's window. With parallel runs
//! (`-p safe`), several batches are in flight at once, their ops
//! interleave at random and they finish or fail in any order; no two of
//! them may ever share a path.
use super::*;
use proptest::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    Dir(u32),
    File(u32),
}
type Tree = BTreeMap<Vec<u8>, Node>;

/// Metadata of a dir the handler had to create as a parent: only a sync
/// of that dir itself sets the real value.
const MADE_AS_PARENT: u32 = u32::MAX;

fn at_or_below(t: &Tree, p: &[u8]) -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = t.range(below(p)).map(|(k, _)| k.clone()).collect();
    if t.contains_key(p) {
        keys.push(p.to_vec());
    }
    keys
}

fn remove_tree(t: &mut Tree, p: &[u8]) {
    for k in at_or_below(t, p) {
        t.remove(&k);
    }
}

fn is_dir(t: &Tree, p: &[u8]) -> bool {
    p.is_empty() || matches!(t.get(p), Some(Node::Dir(_)))
}

/// How the model handler treats a move.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// A bare rename whenever the destination has `from` and the parent
    /// of `to`; otherwise full syncs of both paths. The strictest test
    /// of the queue: nothing is re-read after a rename.
    Bare,
    /// As `Bare`, but a missing parent of `to` is created.
    BareMakingParents,
    /// A rename (when possible) followed by full syncs of both paths,
    /// what batch.rs asks of handlers.
    Resync,
}

/// The state-based handler: every op reads the source as it is now.
fn apply(op: &Op, src: &Tree, dst: &mut Tree, mode: Mode) {
    match op {
        Op::Sync { path: p, recursive } => sync(p, *recursive, src, dst),
        Op::Move { from, to } => {
            let mut can = dst.contains_key(from) && !related(from, to);
            if matches!(mode, Mode::BareMakingParents) && can {
                make_parents(to, dst);
            }
            can = can && is_dir(dst, path::parent(to));
            if can {
                let moved: Vec<(Vec<u8>, Node)> = at_or_below(dst, from)
                    .into_iter()
                    .filter_map(|k| dst.remove(&k).map(|n| (path::rebase(&k, from, to), n)))
                    .collect();
                remove_tree(dst, to);
                dst.extend(moved);
            }
            if !can || matches!(mode, Mode::Resync) {
                sync(from, true, src, dst);
                sync(to, true, src, dst);
            }
        }
    }
}

fn sync(p: &[u8], recursive: bool, src: &Tree, dst: &mut Tree) {
    if p.is_empty() {
        if recursive {
            *dst = src.clone();
        }
        return;
    }
    let Some(&n) = src.get(p) else {
        remove_tree(dst, p);
        return;
    };
    make_parents(p, dst);
    if recursive {
        remove_tree(dst, p);
        for k in at_or_below(src, p) {
            dst.insert(k.clone(), src[&k]);
        }
    } else {
        let both_dirs = matches!((dst.get(p), n), (Some(Node::Dir(_)), Node::Dir(_)));
        if !both_dirs {
            remove_tree(dst, p);
        }
        dst.insert(p.to_vec(), n);
    }
}

/// mkdir -p for the parents of `p`, with metadata the handler does not know.
fn make_parents(p: &[u8], dst: &mut Tree) {
    for a in path::ancestors(p) {
        if !is_dir(dst, a) {
            remove_tree(dst, a);
            dst.insert(a.to_vec(), Node::Dir(MADE_AS_PARENT));
        }
    }
}

const NAMES: [&str; 3] = ["a", "b", "c"];

#[derive(Clone, Debug)]
enum Act {
    CreateFile {
        parent: usize,
        name: usize,
        big: bool,
    },
    CreateDir {
        parent: usize,
        name: usize,
        subtree: bool,
    },
    Write {
        target: usize,
        big: bool,
    },
    Chmod {
        target: usize,
    },
    Remove {
        target: usize,
    },
    MoveOut {
        target: usize,
    },
    /// Over a file: a file moved in from outside, over it. Where nothing
    /// is: a dir with `files`, made by `mkdir` and filled before its
    /// watch when `created`, else moved in. Over an empty dir, when not
    /// `created`: a dir moved in over it. Otherwise the mkdir or the
    /// rename fails and nothing changes.
    MoveIn {
        parent: usize,
        name: usize,
        files: usize,
        created: bool,
    },
    Rename {
        target: usize,
        parent: usize,
        name: usize,
    },
    Rescan {
        target: usize,
        instant: bool,
    },
    Wait {
        ms: u64,
    },
    Pop,
    /// Runs the next op of one batch in flight (`which`, modulo how many).
    Step {
        which: usize,
    },
    Finish {
        which: usize,
    },
    Fail {
        which: usize,
        keep: usize,
        backoff: u64,
    },
    /// One batch in flight ends; the ops not yet run whose bit is set
    /// in `failed` fail on their own (run anyway when their bit is set
    /// in `ran` too: a failure may come after the work), the others
    /// are done.
    FailPaths {
        which: usize,
        failed: u8,
        ran: u8,
        backoff: u64,
    },
}

fn act() -> impl Strategy<Value = Act> {
    let i = || 0usize..64;
    let n = || 0usize..NAMES.len();
    prop_oneof![
        3 => (i(), n(), any::<bool>()).prop_map(|(parent, name, big)| Act::CreateFile { parent, name, big }),
        2 => (i(), n(), any::<bool>()).prop_map(|(parent, name, subtree)| Act::CreateDir { parent, name, subtree }),
        3 => (i(), any::<bool>()).prop_map(|(target, big)| Act::Write { target, big }),
        1 => i().prop_map(|target| Act::Chmod { target }),
        2 => i().prop_map(|target| Act::Remove { target }),
        1 => i().prop_map(|target| Act::MoveOut { target }),
        1 => (i(), n(), 0usize..3, any::<bool>()).prop_map(|(parent, name, files, created)| Act::MoveIn { parent, name, files, created }),
        4 => (i(), i(), n()).prop_map(|(target, parent, name)| Act::Rename { target, parent, name }),
        1 => (i(), any::<bool>()).prop_map(|(target, instant)| Act::Rescan { target, instant }),
        4 => (0u64..1500).prop_map(|ms| Act::Wait { ms }),
        5 => Just(Act::Pop),
        2 => (0usize..3).prop_map(|which| Act::Step { which }),
        4 => (0usize..3).prop_map(|which| Act::Finish { which }),
        1 => (0usize..3, 0usize..4, 0u64..800).prop_map(|(which, keep, backoff)| Act::Fail { which, keep, backoff }),
    ]
}

/// [`act`], and batches that fail for a few paths only.
fn act_isolating() -> impl Strategy<Value = Act> {
    prop_oneof![
        6 => act(),
        1 => (0usize..3, any::<u8>(), any::<u8>(), 0u64..800)
            .prop_map(|(which, failed, ran, backoff)| Act::FailPaths { which, failed, ran, backoff }),
    ]
}

fn config() -> impl Strategy<Value = QueueConfig> {
    (
        prop_oneof![Just(0u64), Just(100), Just(300), Just(1000)],
        prop_oneof![Just(0u64), Just(200), Just(700)],
        prop_oneof![Just(0u64), Just(50)],
        prop_oneof![Just(0u64), Just(0), Just(250)],
    )
        .prop_map(|(d, db, big, w)| QueueConfig {
            delay: Duration::from_millis(d),
            delay_big: Duration::from_millis(db),
            big_threshold: big,
            interval: Duration::from_millis(w),
        })
}

struct World {
    q: Queue,
    cfg: QueueConfig,
    now: Instant,
    src: Tree,
    dst: Tree,
    version: u32,
    mode: Mode,
    /// Actions only touch what lies below this dir (root: everything).
    scope: Vec<u8>,
    /// Batches in flight, oldest first, with how many ops already ran.
    flights: Vec<(BatchId, Batch, usize)>,
    /// How many batches may be in flight at once (1: `-p off`).
    parallel: usize,
    // What the windows should be, tracked from the outside.
    start: [Option<Instant>; 3],
    last_finished: Option<Instant>,
    hold: Option<Instant>,
}

impl World {
    fn bump(&mut self) -> u32 {
        self.version += 1;
        self.version
    }

    fn new(cfg: QueueConfig, mode: Mode) -> Self {
        Self::parallel(cfg, mode, 1)
    }

    /// Up to `parallel` batches in flight, exclusive (`-p safe`) when more than one.
    fn parallel(cfg: QueueConfig, mode: Mode, parallel: usize) -> Self {
        let mut q = Queue::new(cfg.clone());
        q.set_exclusive(parallel > 1);
        World {
            q,
            cfg,
            now: Instant::now(),
            src: Tree::new(),
            dst: Tree::new(),
            version: 0,
            mode,
            scope: Vec::new(),
            flights: Vec::new(),
            parallel,
            start: [None; 3],
            last_finished: None,
            hold: None,
        }
    }

    /// Entries the actions may pick (strictly inside the scope).
    fn nodes(&self) -> Vec<Vec<u8>> {
        self.src
            .range(below(&self.scope))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Dirs inside the scope, the scope itself included.
    fn dirs(&self) -> Vec<Vec<u8>> {
        let mut v = vec![self.scope.clone()];
        v.extend(
            self.src
                .range(below(&self.scope))
                .filter(|(_, n)| matches!(n, Node::Dir(_)))
                .map(|(k, _)| k.clone()),
        );
        v
    }

    /// Dirs that may receive a child (depth limited).
    fn parents(&self) -> Vec<Vec<u8>> {
        let mut v = self.dirs();
        v.retain(|k| k.iter().filter(|&&b| b == b'/').count() < 2);
        v
    }

    fn size(&self, big: bool) -> u64 {
        if big {
            self.cfg.big_threshold.max(1) * 2
        } else {
            1
        }
    }

    fn push(&mut self, c: Change) {
        self.q.push(self.now, c);
        self.track();
    }

    /// A lane's window opens when it turns non-empty (after any single
    /// change: one action may empty a lane and fill it again).
    fn track(&mut self) {
        for l in Lane::ALL {
            let i = lane_index(l);
            if self.q.lane_len(l) == 0 {
                self.start[i] = None;
            } else if self.start[i].is_none() {
                self.start[i] = Some(self.now);
            }
        }
    }

    fn ref_due(&self, lane: Lane) -> Option<Instant> {
        let s = self.start[lane_index(lane)]?;
        let mut t = match lane {
            Lane::Instant => s,
            Lane::Normal => s + self.cfg.delay,
            Lane::Big => s + self.cfg.delay_big,
        };
        if lane != Lane::Instant && !self.cfg.interval.is_zero() {
            if let Some(f) = self.last_finished {
                t = t.max(f + self.cfg.interval);
            }
        }
        if let Some(h) = self.hold {
            t = t.max(h);
        }
        Some(t)
    }

    /// After every action: the public counters agree and each lane's
    /// due time follows from when its window opened.
    fn observe(&mut self) -> Result<(), TestCaseError> {
        self.track();
        let sum: usize = Lane::ALL.iter().map(|&l| self.q.lane_len(l)).sum();
        prop_assert_eq!(self.q.len(), sum);
        prop_assert_eq!(self.q.is_empty(), self.q.next_due().is_none());
        prop_assert_eq!(self.q.is_empty(), self.q.oldest().is_none());
        if let Some(o) = self.q.oldest() {
            prop_assert!(o <= self.now);
        }
        let want = Lane::ALL.iter().filter_map(|&l| self.ref_due(l)).min();
        if self.q.waiting() == 0 {
            // (Failed paths waiting for their retries are not modelled.)
            prop_assert_eq!(self.q.next_due(), want, "next_due against the windows");
        }
        // Without -w, a lane never waits longer than its delay after its
        // first change (or than a retry's hold).
        if self.cfg.interval.is_zero() {
            for l in [Lane::Normal, Lane::Big] {
                if let (Some(s), Some(d)) = (self.start[lane_index(l)], self.q.next_due()) {
                    let delay = if l == Lane::Normal {
                        self.cfg.delay
                    } else {
                        self.cfg.delay_big
                    };
                    let bound = self.hold.map_or(s + delay, |h| h.max(s + delay));
                    prop_assert!(d <= bound, "{:?} lane waits longer than its delay", l);
                }
            }
        }
        Ok(())
    }

    fn check_batch(&self, b: &Batch) -> Result<(), TestCaseError> {
        prop_assert!(!b.is_empty(), "empty batch");
        let mut seen = std::collections::HashSet::new();
        let mut syncs: Vec<(&[u8], bool)> = Vec::new();
        let mut in_syncs = false;
        for op in &b.ops {
            match op {
                Op::Move { from, to } => {
                    prop_assert!(!in_syncs, "move after a sync");
                    prop_assert!(
                        !from.is_empty() && !to.is_empty() && !related(from, to),
                        "not a rename a file system can do: {:?}",
                        op
                    );
                    // One rename is one move. The same names may be
                    // renamed again later (a new `b` over `c` once more),
                    // which is another op.
                }
                Op::Sync { path: p, recursive } => {
                    prop_assert!(seen.insert(op.clone()), "duplicate op {:?}", op);
                    in_syncs = true;
                    if let Some((last, _)) = syncs.last() {
                        prop_assert!(*last < &p[..], "syncs not sorted");
                    }
                    for (q, r) in &syncs {
                        prop_assert!(
                            !(*r && path::is_strictly_under(p, q)),
                            "sync below a recursive sync"
                        );
                    }
                    syncs.push((p, *recursive));
                }
            }
        }
        Ok(())
    }

    /// Runs `n` more ops of the batch in flight at index `i`.
    fn step(&mut self, i: usize, n: usize) {
        if let Some((_, b, done)) = self.flights.get_mut(i) {
            let end = done.saturating_add(n).min(b.ops.len());
            for op in &b.ops[*done..end] {
                apply(op, &self.src, &mut self.dst, self.mode);
            }
            *done = end;
        }
    }

    /// In exclusive mode no path of `b` is related to one in flight.
    fn check_exclusive(&self, b: &Batch) -> Result<(), TestCaseError> {
        for (_, other, _) in &self.flights {
            for op in &other.ops {
                for p in op.paths() {
                    for op2 in &b.ops {
                        for q in op2.paths() {
                            prop_assert!(
                                !related(p, q),
                                "{:?} popped while {:?} is in flight",
                                op2,
                                op
                            );
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn run(&mut self, a: &Act) -> Result<(), TestCaseError> {
        match *a {
            Act::CreateFile { parent, name, big } => {
                let ps = self.parents();
                let p = path::join(&ps[parent % ps.len()], NAMES[name].as_bytes());
                if !self.src.contains_key(&p) {
                    let v = self.bump();
                    self.src.insert(p.clone(), Node::File(v));
                    let size = self.size(big);
                    self.push(Change::Created {
                        path: p,
                        is_dir: false,
                        size,
                    });
                }
            }
            Act::CreateDir {
                parent,
                name,
                subtree,
            } => {
                let ps = self.parents();
                let p = path::join(&ps[parent % ps.len()], NAMES[name].as_bytes());
                if !self.src.contains_key(&p) {
                    let v = self.bump();
                    self.src.insert(p.clone(), Node::Dir(v));
                    self.push(Change::Created {
                        path: p.clone(),
                        is_dir: true,
                        size: 0,
                    });
                    if subtree {
                        self.push(Change::Subtree {
                            path: p,
                            instant: false,
                        });
                    }
                }
            }
            Act::Write { target, big } => {
                let ns = self.nodes();
                if let Some(p) = ns.get(target % ns.len().max(1)) {
                    if let Some(Node::File(_)) = self.src.get(p) {
                        let v = self.bump();
                        self.src.insert(p.clone(), Node::File(v));
                        let size = self.size(big);
                        self.push(Change::Modified {
                            path: p.clone(),
                            is_dir: false,
                            size,
                        });
                    }
                }
            }
            Act::Chmod { target } => {
                let ns = self.nodes();
                if let Some(p) = ns.get(target % ns.len().max(1)) {
                    let v = self.bump();
                    let (n, is_dir) = match self.src[p] {
                        Node::Dir(_) => (Node::Dir(v), true),
                        Node::File(_) => (Node::File(v), false),
                    };
                    self.src.insert(p.clone(), n);
                    self.push(Change::Modified {
                        path: p.clone(),
                        is_dir,
                        size: 1,
                    });
                }
            }
            Act::Remove { target } => {
                let ns = self.nodes();
                if let Some(p) = ns.get(target % ns.len().max(1)) {
                    // rm -r: children first, one event each.
                    let mut keys = at_or_below(&self.src, p);
                    keys.sort();
                    for k in keys.into_iter().rev() {
                        let is_dir = matches!(self.src.remove(&k), Some(Node::Dir(_)));
                        self.push(Change::Removed { path: k, is_dir });
                    }
                }
            }
            Act::MoveOut { target } => {
                let ns = self.nodes();
                if let Some(p) = ns.get(target % ns.len().max(1)) {
                    let is_dir = is_dir(&self.src, p);
                    remove_tree(&mut self.src, p);
                    self.push(Change::Removed {
                        path: p.clone(),
                        is_dir,
                    });
                }
            }
            Act::MoveIn {
                parent,
                name,
                files,
                created,
            } => {
                let ps = self.parents();
                let p = path::join(&ps[parent % ps.len()], NAMES[name].as_bytes());
                let old = self.src.get(&p).copied();
                let empty_dir = at_or_below(&self.src, &p).len() == 1;
                match old {
                    Some(Node::File(_)) => {
                        // A file moved in over a file: not a creation.
                        let v = self.bump();
                        self.src.insert(p.clone(), Node::File(v));
                        self.push(Change::Modified {
                            path: p,
                            is_dir: false,
                            size: 1,
                        });
                    }
                    // mkdir where nothing is, or a dir moved in (which
                    // may replace an empty dir): `Created` for the mkdir
                    // only, a subtree for both.
                    None | Some(Node::Dir(_)) if old.is_none() || (!created && empty_dir) => {
                        let v = self.bump();
                        self.src.insert(p.clone(), Node::Dir(v));
                        for f in &NAMES[..files] {
                            let v = self.bump();
                            self.src.insert(path::join(&p, f.as_bytes()), Node::File(v));
                        }
                        if created {
                            self.push(Change::Created {
                                path: p.clone(),
                                is_dir: true,
                                size: 0,
                            });
                        }
                        self.push(Change::Subtree {
                            path: p,
                            instant: false,
                        });
                    }
                    // mkdir over a dir, or a rename over a dir that is
                    // not empty: fails, nothing changes.
                    _ => {}
                }
            }
            Act::Rename {
                target,
                parent,
                name,
            } => {
                let ns = self.nodes();
                let ps = self.parents();
                let Some(from) = ns.get(target % ns.len().max(1)).cloned() else {
                    return Ok(());
                };
                let to = path::join(&ps[parent % ps.len()], NAMES[name].as_bytes());
                if related(&from, &to) {
                    return Ok(());
                }
                let from_dir = is_dir(&self.src, &from);
                let ok = match self.src.get(&to) {
                    None => true,
                    Some(Node::File(_)) => !from_dir,
                    Some(Node::Dir(_)) => from_dir && at_or_below(&self.src, &to).len() == 1,
                };
                if ok {
                    let moved: Vec<(Vec<u8>, Node)> = at_or_below(&self.src, &from)
                        .into_iter()
                        .filter_map(|k| {
                            self.src
                                .remove(&k)
                                .map(|n| (path::rebase(&k, &from, &to), n))
                        })
                        .collect();
                    remove_tree(&mut self.src, &to);
                    self.src.extend(moved);
                    self.push(Change::Moved {
                        from,
                        to,
                        is_dir: from_dir,
                    });
                }
            }
            Act::Rescan { target, instant } => {
                let ds = self.dirs();
                let p = ds[target % ds.len()].clone();
                self.push(Change::Subtree { path: p, instant });
            }
            Act::Wait { ms } => self.now += Duration::from_millis(ms),
            Act::Pop => {
                if self.flights.len() < self.parallel {
                    let due = self.q.next_due();
                    let popped = self.q.pop_due_with_id(self.now);
                    let is_due = due.is_some_and(|d| d <= self.now);
                    if self.flights.is_empty() {
                        prop_assert_eq!(popped.is_some(), is_due, "pop_due against next_due");
                    } else {
                        // Due ops may all wait for a batch in flight.
                        prop_assert!(popped.is_none() || is_due, "pop_due against next_due");
                    }
                    if let Some((id, b)) = popped {
                        let lane_due = self.ref_due(b.lane);
                        prop_assert!(
                            lane_due.is_some_and(|d| d <= self.now),
                            "{} batch popped before its window",
                            b.lane.name()
                        );
                        self.check_batch(&b)?;
                        self.check_exclusive(&b)?;
                        self.flights.push((id, b, 0));
                    }
                }
            }
            Act::Step { which } => {
                if !self.flights.is_empty() {
                    self.step(which % self.flights.len(), 1);
                }
            }
            Act::Finish { which } => {
                if !self.flights.is_empty() {
                    let i = which % self.flights.len();
                    self.step(i, usize::MAX);
                    let (id, _, _) = self.flights.remove(i);
                    self.q.finished_id(id, self.now);
                    self.last_finished = Some(self.now);
                }
            }
            Act::Fail {
                which,
                keep,
                backoff,
            } => {
                if !self.flights.is_empty() {
                    let i = which % self.flights.len();
                    let done = self.flights[i].2;
                    self.step(i, keep.saturating_sub(done));
                    let (id, b, _) = self.flights.remove(i);
                    self.last_finished = Some(self.now);
                    let nb = self.now + Duration::from_millis(backoff);
                    self.hold = Some(self.hold.map_or(nb, |h| h.max(nb)));
                    self.q.requeue_id(id, self.now, b, nb);
                }
            }
            Act::FailPaths {
                which,
                failed,
                ran,
                backoff,
            } => {
                if !self.flights.is_empty() {
                    let i = which % self.flights.len();
                    let (id, b, done) = self.flights.remove(i);
                    let mut paths = Vec::new();
                    for (k, op) in b.ops.iter().enumerate().skip(done) {
                        let bit = 1u8 << (k % 8);
                        let fails = failed & bit != 0;
                        if !fails || ran & bit != 0 {
                            apply(op, &self.src, &mut self.dst, self.mode);
                        }
                        if fails {
                            let rec = !matches!(
                                op,
                                Op::Sync {
                                    recursive: false,
                                    ..
                                }
                            );
                            paths.extend(op.paths().into_iter().map(|p| (p.to_vec(), rec)));
                        }
                    }
                    self.last_finished = Some(self.now);
                    let now = self.now;
                    let step = Duration::from_millis(backoff);
                    self.q.requeue_failed_id(id, now, paths, |n| now + step * n);
                }
            }
        }
        self.observe()
    }
}

fn initial() -> impl Strategy<Value = Vec<(usize, usize, bool)>> {
    proptest::collection::vec((0usize..64, 0usize..NAMES.len(), any::<bool>()), 0..10)
}

fn converge(
    cfg: QueueConfig,
    init: Vec<(usize, usize, bool)>,
    initial_sync: bool,
    mode: Mode,
    acts: Vec<Act>,
) -> Result<(), TestCaseError> {
    converge_parallel(cfg, init, initial_sync, mode, acts, 1)
}

/// `converge` with up to `parallel` batches in flight (`-p safe`).
fn converge_parallel(
    cfg: QueueConfig,
    init: Vec<(usize, usize, bool)>,
    initial_sync: bool,
    mode: Mode,
    acts: Vec<Act>,
    parallel: usize,
) -> Result<(), TestCaseError> {
    let mut w = World::parallel(cfg, mode, parallel);
    for (parent, name, dir) in init {
        let ps = w.parents();
        let p = path::join(&ps[parent % ps.len()], NAMES[name].as_bytes());
        if !w.src.contains_key(&p) {
            let v = w.bump();
            w.src
                .insert(p, if dir { Node::Dir(v) } else { Node::File(v) });
        }
    }
    if initial_sync {
        w.push(Change::Subtree {
            path: Vec::new(),
            instant: true,
        });
    } else {
        w.dst = w.src.clone();
    }
    w.observe()?;
    for a in &acts {
        w.run(a)?;
    }
    while !w.flights.is_empty() {
        w.run(&Act::Finish { which: 0 })?;
    }
    prop_assert_eq!(w.q.in_flight(), 0);
    if let Some(b) = w.q.pop_all() {
        w.check_batch(&b)?;
        for op in &b.ops {
            apply(op, &w.src, &mut w.dst, mode);
        }
        w.q.finished(w.now);
    }
    prop_assert!(w.q.is_empty());
    prop_assert_eq!(&w.dst, &w.src, "destination differs from source");
    Ok(())
}

proptest! {
    // PROPTEST_CASES=20000 for a deep run; the default keeps `cargo test` quick.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300),
        ..ProptestConfig::default()
    })]

    #[test]
    fn destination_converges_with_bare_renames(
        cfg in config(),
        init in initial(),
        initial_sync in any::<bool>(),
        acts in proptest::collection::vec(act(), 0..80),
    ) {
        converge(cfg, init, initial_sync, Mode::Bare, acts)?;
    }

    #[test]
    fn destination_converges_with_handlers_that_resync_moves(
        cfg in config(),
        init in initial(),
        initial_sync in any::<bool>(),
        acts in proptest::collection::vec(act(), 0..80),
    ) {
        converge(cfg, init, initial_sync, Mode::Resync, acts)?;
    }

    #[test]
    fn a_tree_created_and_destroyed_in_one_window_costs_nothing(
        acts in proptest::collection::vec(act(), 0..60),
        one_event in any::<bool>(),
    ) {
        let cfg = QueueConfig {
            delay: Duration::from_millis(1000),
            delay_big: Duration::from_millis(1000),
            big_threshold: 50,
            interval: Duration::ZERO,
        };
        let mut w = World::new(cfg, Mode::Bare);
        w.src.insert(b"n".to_vec(), Node::Dir(0));
        w.push(Change::Created { path: b"n".to_vec(), is_dir: true, size: 0 });
        w.scope = b"n".to_vec();
        for a in &acts {
            if !matches!(a, Act::Pop | Act::Step { .. } | Act::Finish { .. } | Act::Fail { .. }) {
                w.run(a)?;
            }
        }
        w.scope = Vec::new();
        if one_event {
            w.run(&Act::MoveOut { target: 0 })?;
        } else {
            w.run(&Act::Remove { target: 0 })?;
        }
        prop_assert!(w.src.is_empty());
        prop_assert!(w.q.is_empty(), "left behind: {}", tests::show(&w.q.pop_all()));
    }

    #[test]
    fn destination_converges_with_renames_that_make_parents(
        cfg in config(),
        init in initial(),
        initial_sync in any::<bool>(),
        acts in proptest::collection::vec(act(), 0..80),
    ) {
        converge(cfg, init, initial_sync, Mode::BareMakingParents, acts)?;
    }

    #[test]
    fn destination_converges_when_single_paths_fail(
        cfg in config(),
        init in initial(),
        initial_sync in any::<bool>(),
        acts in proptest::collection::vec(act_isolating(), 0..80),
        parallel in 1usize..3,
    ) {
        converge_parallel(cfg, init, initial_sync, Mode::Resync, acts, parallel)?;
    }

    #[test]
    fn parallel_safe_runs_converge_with_bare_renames(
        cfg in config(),
        init in initial(),
        initial_sync in any::<bool>(),
        acts in proptest::collection::vec(act(), 0..100),
        parallel in 2usize..4,
    ) {
        converge_parallel(cfg, init, initial_sync, Mode::Bare, acts, parallel)?;
    }

    #[test]
    fn parallel_safe_runs_converge_with_handlers_that_resync_moves(
        cfg in config(),
        init in initial(),
        initial_sync in any::<bool>(),
        acts in proptest::collection::vec(act(), 0..100),
        parallel in 2usize..4,
    ) {
        converge_parallel(cfg, init, initial_sync, Mode::Resync, acts, parallel)?;
    }

    #[test]
    fn parallel_safe_runs_converge_with_renames_that_make_parents(
        cfg in config(),
        init in initial(),
        initial_sync in any::<bool>(),
        acts in proptest::collection::vec(act(), 0..100),
        parallel in 2usize..4,
    ) {
        converge_parallel(cfg, init, initial_sync, Mode::BareMakingParents, acts, parallel)?;
    }
}
