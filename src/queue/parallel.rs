//! Several batches in flight (`-p safe` and `-p full`): which ops a pop
//! hands out while others run, and how a failed one comes back.
use super::tests::show;
use super::*;

fn queue(exclusive: bool) -> (Queue, Instant) {
    let mut q = Queue::new(QueueConfig {
        delay: Duration::ZERO,
        delay_big: Duration::ZERO,
        big_threshold: 0,
        interval: Duration::ZERO,
    });
    q.set_exclusive(exclusive);
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

fn pop(q: &mut Queue, now: Instant) -> (Option<BatchId>, String) {
    let popped = q.pop_due_with_id(now);
    let id = popped.as_ref().map(|(id, _)| *id);
    (id, show(&popped.map(|(_, b)| b)))
}

#[test]
fn safe_mode_holds_a_path_in_flight_and_pops_the_rest() {
    let (mut q, t) = queue(true);
    modify(&mut q, t, "a");
    let (first, got) = pop(&mut q, t);
    assert_eq!(got, "normal#0: sync a");
    modify(&mut q, t, "a");
    modify(&mut q, t, "a2");
    modify(&mut q, t, "b/c");
    let (second, got) = pop(&mut q, t);
    assert_eq!(got, "normal#0: sync a2, sync b/c");
    assert_eq!(q.in_flight(), 2);
    // `a` is due but waits for the batch that runs it.
    assert_eq!(q.next_due(), Some(t));
    assert_eq!(pop(&mut q, t).1, "none");
    q.finished_id(second.unwrap(), t);
    assert_eq!(pop(&mut q, t).1, "none");
    q.finished_id(first.unwrap(), t);
    assert_eq!(pop(&mut q, t).1, "normal#0: sync a");
}

#[test]
fn safe_mode_holds_ancestors_and_descendants_of_a_path_in_flight() {
    let (mut q, t) = queue(true);
    q.push(
        t,
        Change::Subtree {
            path: b"d/e".to_vec(),
            instant: false,
        },
    );
    let (_, got) = pop(&mut q, t);
    assert_eq!(got, "normal#0: sync* d/e");
    modify(&mut q, t, "d");
    modify(&mut q, t, "d/e/f");
    modify(&mut q, t, "d/x");
    modify(&mut q, t, "de");
    assert_eq!(pop(&mut q, t).1, "normal#0: sync d/x, sync de");
    q.push(
        t,
        Change::Subtree {
            path: Vec::new(),
            instant: true,
        },
    );
    assert_eq!(
        pop(&mut q, t).1,
        "none",
        "the root is related to everything"
    );
}

#[test]
fn safe_mode_keeps_a_rename_and_what_it_touches_behind_a_batch_in_flight() {
    let (mut q, t) = queue(true);
    modify(&mut q, t, "a/x");
    let (first, _) = pop(&mut q, t);
    q.push(
        t,
        Change::Moved {
            from: b"a".to_vec(),
            to: b"c".to_vec(),
            is_dir: true,
        },
    );
    q.push(
        t,
        Change::Moved {
            from: b"m".to_vec(),
            to: b"c/n".to_vec(),
            is_dir: false,
        },
    );
    q.push(
        t,
        Change::Moved {
            from: b"p".to_vec(),
            to: b"q".to_vec(),
            is_dir: false,
        },
    );
    modify(&mut q, t, "c/y");
    modify(&mut q, t, "z");
    // `m→c/n` must follow `a→c`; `p→q` is free.
    assert_eq!(pop(&mut q, t).1, "normal#0: move p q, sync z");
    q.finished_id(first.unwrap(), t);
    assert_eq!(
        pop(&mut q, t).1,
        "normal#0: move a c, move m c/n, sync* c/x, sync c/y"
    );
}

#[test]
fn full_mode_pops_a_path_that_is_in_flight() {
    let (mut q, t) = queue(false);
    modify(&mut q, t, "a");
    pop(&mut q, t);
    modify(&mut q, t, "a");
    assert_eq!(pop(&mut q, t).1, "normal#0: sync a");
    assert_eq!(q.in_flight(), 2);
}

#[test]
fn a_failed_batch_follows_renames_a_later_batch_took() {
    let (mut q, t) = queue(false);
    modify(&mut q, t, "a/x");
    let popped = q.pop_due_with_id(t);
    let Some((first, batch)) = popped else {
        panic!("nothing popped")
    };
    q.push(
        t,
        Change::Moved {
            from: b"a".to_vec(),
            to: b"c".to_vec(),
            is_dir: true,
        },
    );
    let (second, got) = pop(&mut q, t);
    assert_eq!(got, "normal#0: move a c, sync* c/x");
    q.finished_id(second.unwrap(), t);
    q.requeue_id(first, t, batch, t);
    assert_eq!(q.in_flight(), 0);
    assert_eq!(pop(&mut q, t).1, "instant#1: sync c/x");
}

#[test]
fn finished_without_an_id_ends_the_oldest_batch() {
    let (mut q, t) = queue(true);
    modify(&mut q, t, "a");
    pop(&mut q, t);
    modify(&mut q, t, "b");
    pop(&mut q, t);
    modify(&mut q, t, "a");
    q.finished(t);
    assert_eq!(q.in_flight(), 1);
    assert_eq!(pop(&mut q, t).1, "normal#0: sync a");
}
