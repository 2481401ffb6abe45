//! A batch that did everything but a few paths: only those come back,
//! each waiting for its own retry, while everything else flows.
use super::tests::show;
use super::*;

fn queue() -> (Queue, Instant) {
    let q = Queue::new(QueueConfig {
        delay: Duration::from_millis(100),
        delay_big: Duration::from_millis(100),
        big_threshold: 0,
        interval: Duration::ZERO,
    });
    (q, Instant::now())
}

fn modify(q: &mut Queue, now: Instant, p: &str) {
    let path = p.as_bytes().to_vec();
    q.push(
        now,
        Change::Modified {
            path,
            is_dir: false,
            size: 1,
        },
    );
}

fn ms(t0: Instant, n: u64) -> Instant {
    t0 + Duration::from_millis(n)
}

#[test]
fn a_failed_path_waits_alone_and_the_rest_keeps_flowing() {
    let (mut q, t0) = queue();
    for p in ["a", "big", "c"] {
        modify(&mut q, t0, p);
    }
    let (id, b) = q.pop_due_with_id(ms(t0, 100)).expect("due");
    assert_eq!(show(&Some(b)), "normal#0: sync a, sync big, sync c");
    let tries = q.requeue_failed_id(id, ms(t0, 150), vec![(b"big".to_vec(), false)], |n| {
        ms(t0, 150 + 1000 * u64::from(n))
    });
    assert_eq!(tries, 1);
    assert_eq!((q.len(), q.waiting(), q.in_flight()), (1, 1, 0));
    assert_eq!(
        q.next_due(),
        Some(ms(t0, 1150)),
        "only the retry is pending"
    );
    assert_eq!(show(&q.pop_due(ms(t0, 1149))), "none");
    // Other changes are not held behind it (a whole-batch failure
    // would hold every lane until the retry).
    modify(&mut q, ms(t0, 200), "d");
    assert_eq!(q.next_due(), Some(ms(t0, 300)));
    assert_eq!(show(&q.pop_due(ms(t0, 300))), "normal#0: sync d");
    q.finished(ms(t0, 310));
    assert_eq!(q.next_ready(ms(t0, 400)), Some(ms(t0, 1150)));
    assert!(q.pop_ready_with_id(ms(t0, 400)).is_none());
    // Due: retried alone, and a second failure waits longer.
    let (id, b) = q.pop_due_with_id(ms(t0, 1150)).expect("retry due");
    assert_eq!(show(&Some(b)), "instant#1: sync big");
    let tries = q.requeue_failed_id(id, ms(t0, 1160), vec![(b"big".to_vec(), false)], |n| {
        ms(t0, 1160 + 1000 * u64::from(n))
    });
    assert_eq!(tries, 2);
    assert_eq!(q.next_due(), Some(ms(t0, 3160)));
    assert_eq!(q.next_ready(ms(t0, 3200)), Some(ms(t0, 3200)));
    let (_, b) = q.pop_ready_with_id(ms(t0, 3200)).expect("ready");
    assert_eq!(show(&Some(b)), "instant#2: sync big");
}

#[test]
fn a_new_change_to_a_failed_path_retries_it_at_once() {
    let (mut q, t0) = queue();
    modify(&mut q, t0, "f");
    let (id, _) = q.pop_due_with_id(ms(t0, 100)).expect("due");
    q.requeue_failed_id(id, ms(t0, 100), vec![(b"f".to_vec(), false)], |_| {
        ms(t0, 60_000)
    });
    q.push(
        ms(t0, 200),
        Change::Removed {
            path: b"f".to_vec(),
            is_dir: false,
        },
    );
    assert_eq!(q.waiting(), 0);
    assert_eq!(show(&q.pop_due(ms(t0, 300))), "instant#1: sync f");
    // A subtree above it takes it along, without the wait, too.
    let (mut q, t0) = queue();
    modify(&mut q, t0, "d/f");
    let (id, _) = q.pop_due_with_id(ms(t0, 100)).expect("due");
    q.requeue_failed_id(id, ms(t0, 100), vec![(b"d/f".to_vec(), false)], |_| {
        ms(t0, 60_000)
    });
    q.push(
        ms(t0, 200),
        Change::Subtree {
            path: Vec::new(),
            instant: true,
        },
    );
    assert_eq!(show(&q.pop_due(ms(t0, 200))), "instant#1: sync* .");
}

#[test]
fn failed_paths_follow_renames_and_keep_their_own_count() {
    let (mut q, t0) = queue();
    modify(&mut q, t0, "d/f");
    modify(&mut q, t0, "g");
    let (id, _) = q.pop_due_with_id(ms(t0, 100)).expect("due");
    let tries = q.requeue_failed_id(
        id,
        ms(t0, 120),
        vec![(b"d/f".to_vec(), false), (b"g".to_vec(), false)],
        |n| ms(t0, 120 + 500 * u64::from(n)),
    );
    assert_eq!(tries, 1);
    q.push(
        ms(t0, 130),
        Change::Moved {
            from: b"d".to_vec(),
            to: b"e".to_vec(),
            is_dir: true,
        },
    );
    // The rename goes now; the failed paths wait, where they are now.
    assert_eq!(show(&q.pop_due(ms(t0, 230))), "normal#0: move d e");
    q.finished(ms(t0, 240));
    assert_eq!(show(&q.pop_due(ms(t0, 619))), "none");
    let (id, b) = q.pop_due_with_id(ms(t0, 620)).expect("retry due");
    assert_eq!(show(&Some(b)), "instant#1: sync e/f, sync g");
    // Only g fails again: its count goes on, e/f is done.
    let tries = q.requeue_failed_id(id, ms(t0, 630), vec![(b"g".to_vec(), false)], |n| {
        ms(t0, 630 + 500 * u64::from(n))
    });
    assert_eq!((tries, q.len()), (2, 1));
    // A path that fails inside a whole-tree sync counts the tries of
    // that sync.
    let (mut q, t0) = queue();
    q.push(
        t0,
        Change::Subtree {
            path: Vec::new(),
            instant: true,
        },
    );
    for n in 1..=2 {
        let (_, b) = q.pop_due_with_id(ms(t0, 1000 * n)).expect("due");
        q.requeue(ms(t0, 1000 * n), b, ms(t0, 1000 * n));
        q.finished(ms(t0, 1000 * n));
    }
    let (id, b) = q.pop_due_with_id(ms(t0, 5000)).expect("due");
    assert_eq!(show(&Some(b)), "instant#2: sync* .");
    let tries = q.requeue_failed_id(id, ms(t0, 5000), vec![(b"d/f".to_vec(), true)], |_| {
        ms(t0, 9000)
    });
    assert_eq!(tries, 3);
    // A rename in flight makes the failed path's destination uncertain:
    // synced again at once.
    let (mut q, t0) = queue();
    modify(&mut q, t0, "d/f");
    let (id, _) = q.pop_due_with_id(ms(t0, 100)).expect("due");
    q.push(
        ms(t0, 110),
        Change::Moved {
            from: b"d".to_vec(),
            to: b"e".to_vec(),
            is_dir: true,
        },
    );
    q.requeue_failed_id(id, ms(t0, 120), vec![(b"d/f".to_vec(), false)], |_| {
        ms(t0, 60_000)
    });
    assert_eq!(
        show(&q.pop_due(ms(t0, 210))),
        "instant#1: move d e, sync* e/f"
    );
}
