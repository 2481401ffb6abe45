//! Event storms of 20,000 changes come out right. The time guard is
//! not a speed measurement (bench/run.sh measures speed): it is set far
//! above what a loaded debug build needs (tens of milliseconds here) and
//! only catches quadratic work per event, which takes minutes at this
//! size.
use super::*;

const N: usize = 20_000;
const BOUND: Duration = Duration::from_secs(60);

fn queue() -> Queue {
    Queue::new(QueueConfig {
        delay: Duration::from_millis(1000),
        delay_big: Duration::from_millis(5000),
        big_threshold: 1 << 20,
        interval: Duration::ZERO,
    })
}

fn name(dir: &str, i: usize) -> Vec<u8> {
    format!("{dir}/f{i}").into_bytes()
}

fn timed(what: &str, f: impl FnOnce()) {
    let t = std::time::Instant::now();
    f();
    let took = t.elapsed();
    assert!(took < BOUND, "{what}: {N} events took {took:?}");
}

#[test]
fn creating_writing_and_removing_a_tree_cancels_cheaply() {
    let mut q = queue();
    let now = Instant::now();
    timed("create+write+rm -r", || {
        q.push(
            now,
            Change::Created {
                path: b"d".to_vec(),
                is_dir: true,
                size: 0,
            },
        );
        for i in 0..N {
            q.push(
                now,
                Change::Created {
                    path: name("d", i),
                    is_dir: false,
                    size: 10,
                },
            );
            q.push(
                now,
                Change::Modified {
                    path: name("d", i),
                    is_dir: false,
                    size: 20,
                },
            );
        }
        assert_eq!(q.len(), N + 1);
        for i in 0..N {
            q.push(
                now,
                Change::Removed {
                    path: name("d", i),
                    is_dir: false,
                },
            );
        }
        q.push(
            now,
            Change::Removed {
                path: b"d".to_vec(),
                is_dir: true,
            },
        );
    });
    assert!(q.is_empty());
}

#[test]
fn writes_then_pop_then_removal_of_existing_files() {
    let mut q = queue();
    let t0 = Instant::now();
    timed("write, pop, rm -r", || {
        for i in 0..N {
            q.push(
                t0,
                Change::Modified {
                    path: name("d", i),
                    is_dir: false,
                    size: 10,
                },
            );
        }
        let b = q
            .pop_due(t0 + Duration::from_secs(1))
            .expect("normal lane due");
        assert_eq!(b.len(), N);
        q.finished(t0 + Duration::from_secs(1));
        let t1 = t0 + Duration::from_secs(2);
        for i in 0..N {
            q.push(
                t1,
                Change::Removed {
                    path: name("d", i),
                    is_dir: false,
                },
            );
        }
        q.push(
            t1,
            Change::Removed {
                path: b"d".to_vec(),
                is_dir: true,
            },
        );
    });
    assert_eq!(q.len(), 1, "one recursive sync covers the removed tree");
}

#[test]
fn many_renames_and_changes_under_a_subtree() {
    let mut q = queue();
    let now = Instant::now();
    timed("renames", || {
        for i in 0..N {
            q.push(
                now,
                Change::Moved {
                    from: name("a", i),
                    to: name("b", i),
                    is_dir: false,
                },
            );
        }
        q.push(
            now,
            Change::Subtree {
                path: b"c".to_vec(),
                instant: false,
            },
        );
        for i in 0..N {
            q.push(
                now,
                Change::Created {
                    path: name("c/x/y", i),
                    is_dir: false,
                    size: 1,
                },
            );
        }
        let b = q.pop_all().expect("pending");
        assert_eq!(b.len(), N + 1);
    });
}

#[test]
fn a_failed_storm_comes_back_cheaply() {
    let mut q = queue();
    let now = Instant::now();
    timed("requeue", || {
        for i in 0..N {
            q.push(
                now,
                Change::Modified {
                    path: name("d", i),
                    is_dir: false,
                    size: 1,
                },
            );
        }
        let b = q.pop_all().expect("pending");
        for i in 0..N {
            q.push(
                now,
                Change::Moved {
                    from: name("d", i),
                    to: name("e", i),
                    is_dir: false,
                },
            );
        }
        q.finished(now);
        q.requeue(now, b, now);
        let b = q.pop_due(now).expect("retry due");
        assert_eq!(b.attempt, 1);
        assert_eq!(b.len(), 2 * N);
    });
}
