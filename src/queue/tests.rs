//! Data-driven cases: each script is a list of timed lines (`<ms> <what>`)
//! and the batches expected from pops, read like a spec:
//!
//! ```text
//! config delay=1000 big=100 delay_big=5000 interval=0
//! 0    create f            # also: modify P [dir] [big], remove P [dir],
//! 10   remove f            #       move A B [dir], subtree P [instant] (`.` = root)
//! 2000 pop => none         # pop => LANE#ATTEMPT: op, op   (op: move A B | sync P | sync* P)
//! 2000 due => none         # due => MS, len => N, oldest => MS, inflight => N, popall => …,
//!                          # finished, fail NOT_BEFORE (requeue the last popped batch)
//! ```
use super::*;

fn bytes(s: &str) -> Vec<u8> {
    if s == "." {
        Vec::new()
    } else {
        s.as_bytes().to_vec()
    }
}

pub(super) fn show(b: &Option<Batch>) -> String {
    let Some(b) = b else { return "none".into() };
    let ops: Vec<String> = b
        .ops
        .iter()
        .map(|op| match op {
            Op::Move { from, to } => {
                format!("move {} {}", path::display(from), path::display(to))
            }
            Op::Sync { path: p, recursive } => {
                let star = if *recursive { "*" } else { "" };
                format!("sync{star} {}", path::display(p))
            }
        })
        .collect();
    format!("{}#{}: {}", b.lane.name(), b.attempt, ops.join(", "))
}

fn run(script: &str) {
    let mut cfg = QueueConfig {
        delay: Duration::from_millis(1000),
        delay_big: Duration::from_millis(5000),
        big_threshold: 100,
        interval: Duration::ZERO,
    };
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let mut q: Option<Queue> = None;
    let mut last: Option<Batch> = None;
    for (n, raw) in script.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        let line = if raw.contains("=>") { raw.trim() } else { line };
        if line.is_empty() {
            continue;
        }
        let (cmd, want) = match line.split_once("=>") {
            Some((c, w)) => (c.trim(), Some(w.trim())),
            None => (line, None),
        };
        let w: Vec<&str> = cmd.split_whitespace().collect();
        let ctx = format!("line {}: {raw}", n + 1);
        if w[0] == "config" {
            for kv in &w[1..] {
                let (k, v) = kv.split_once('=').expect("key=value");
                let v: u64 = v.parse().expect("number");
                match k {
                    "delay" => cfg.delay = Duration::from_millis(v),
                    "delay_big" => cfg.delay_big = Duration::from_millis(v),
                    "big" => cfg.big_threshold = v,
                    "interval" => cfg.interval = Duration::from_millis(v),
                    _ => panic!("{ctx}: unknown key"),
                }
            }
            continue;
        }
        let q = q.get_or_insert_with(|| Queue::new(cfg.clone()));
        let now = at(w[0].parse().expect("time in ms"));
        let flag = |f: &str| w.iter().skip(2).any(|x| *x == f);
        let size = if flag("big") { 1000 } else { 10 };
        match w[1] {
            "create" => q.push(
                now,
                Change::Created {
                    path: bytes(w[2]),
                    is_dir: flag("dir"),
                    size,
                },
            ),
            "modify" => q.push(
                now,
                Change::Modified {
                    path: bytes(w[2]),
                    is_dir: flag("dir"),
                    size,
                },
            ),
            "remove" => q.push(
                now,
                Change::Removed {
                    path: bytes(w[2]),
                    is_dir: flag("dir"),
                },
            ),
            "move" => q.push(
                now,
                Change::Moved {
                    from: bytes(w[2]),
                    to: bytes(w[3]),
                    is_dir: flag("dir"),
                },
            ),
            "subtree" => q.push(
                now,
                Change::Subtree {
                    path: bytes(w[2]),
                    instant: flag("instant"),
                },
            ),
            "pop" | "popall" => {
                let b = if w[1] == "pop" {
                    q.pop_due(now)
                } else {
                    q.pop_all()
                };
                assert_eq!(show(&b), want.expect("=> expected batch"), "{ctx}");
                if b.is_some() {
                    last = b;
                }
            }
            "due" => {
                let got = q
                    .next_due()
                    .map_or("none".to_string(), |t| (t - t0).as_millis().to_string());
                assert_eq!(got, want.expect("=> expected time"), "{ctx}");
            }
            "oldest" => {
                let got = q
                    .oldest()
                    .map_or("none".to_string(), |t| (t - t0).as_millis().to_string());
                assert_eq!(got, want.expect("=> expected time"), "{ctx}");
            }
            "len" => {
                assert_eq!(
                    q.len().to_string(),
                    want.expect("=> expected length"),
                    "{ctx}"
                )
            }
            "inflight" => assert_eq!(
                q.in_flight().to_string(),
                want.expect("=> expected count"),
                "{ctx}"
            ),
            "finished" => q.finished(now),
            "fail" => {
                let nb = at(w[2].parse().expect("not_before in ms"));
                let b = last.take().expect("a popped batch to fail");
                q.requeue(now, b, nb);
            }
            other => panic!("{ctx}: unknown command {other}"),
        }
    }
}

// ----- 1. coalescing per path ---------------------------------------

#[test]
fn created_then_removed_in_one_window_emits_nothing() {
    run("
        0    create f
        10   remove f
        10   len => 0
        2000 pop => none
        2000 due => none
    ");
}

#[test]
fn removing_a_file_that_existed_is_one_sync() {
    run("
        0    modify f
        10   remove f
        1000 pop => normal#0: sync f
    ");
}

#[test]
fn recreated_then_removed_again_still_deletes() {
    run("
        0    remove f
        10   create f
        20   remove f
        1000 pop => normal#0: sync f
    ");
}

#[test]
fn repeated_writes_are_one_op() {
    run("
        0    create f
        100  modify f
        200  modify f
        300  modify f
        300  len => 1
        1000 pop => normal#0: sync f
        5000 pop => none
    ");
}

#[test]
fn created_dir_syncs_itself_not_its_subtree() {
    run("
        0    create d dir
        1    create d/f
        1000 pop => normal#0: sync d, sync d/f
    ");
}

#[test]
fn atomic_save_replaces_target_and_a_later_delete_still_deletes_it() {
    // `f` existed before the rename replaced it: not a pure create.
    run("
        0    create f.tmp
        1    modify f.tmp
        2    move f.tmp f
        1000 pop => normal#0: sync f
        1100 create g.tmp
        1101 move g.tmp g
        1102 remove g
        2200 pop => normal#0: sync g
    ");
}

// ----- 2. subtrees ----------------------------------------------------

#[test]
fn subtree_absorbs_pending_and_later_changes_below_it() {
    run("
        0    modify d/a
        1    modify d/b/c
        2    modify e
        3    subtree d
        4    modify d/x
        5    remove d/b dir
        6    create d/new big
        6    len => 2
        1000 pop => normal#0: sync* d, sync e
    ");
}

#[test]
fn root_subtree_covers_the_whole_tree() {
    run("
        0    modify a
        1    modify b/c
        2    subtree .
        3    create z
        3    len => 1
        1000 pop => normal#0: sync* .
    ");
}

#[test]
fn a_change_below_a_subtree_may_speed_it_up() {
    run("
        0    subtree d
        10   subtree d/x instant
        10   pop => instant#0: sync* d
        10   len => 0
    ");
}

// ----- 3. deleting a directory ----------------------------------------

#[test]
fn removed_dir_is_recursive_and_covers_pending_children() {
    run("
        0    modify d/a
        1    create d/b
        2    modify d/c/e
        3    remove d dir
        3    len => 1
        1000 pop => normal#0: sync* d
    ");
}

#[test]
fn dir_created_filled_and_removed_in_one_window_emits_nothing() {
    run("
        0    create d dir
        1    create d/f
        2    subtree d
        3    create d/g
        4    remove d/f
        5    remove d dir
        5    len => 0
        2000 pop => none
    ");
}

#[test]
fn anything_inside_a_new_dir_vanishes_with_it() {
    // Renames and moves-in below a dir the destination does not hold
    // cannot reach the destination either.
    run("
        0    create d dir
        1    create d/tmp
        2    move d/tmp d/f
        3    modify d/in
        4    subtree d/sub
        5    remove d/f
        6    remove d/in
        7    remove d/sub dir
        8    remove d dir
        8    len => 0
        2000 pop => none
    ");
}

#[test]
fn removed_new_dir_that_a_rename_filled_still_syncs() {
    // `x` moved into the new dir: the destination renames it there, so
    // the dir can no longer vanish without an op.
    run("
        0    create d dir
        1    move x d/x
        2    remove d/x
        3    remove d dir
        1000 pop => normal#0: move x d/x, sync* d
    ");
}

// ----- 4. lanes ---------------------------------------------------------

#[test]
fn big_files_wait_in_their_own_lane() {
    run("
        0    create small
        0    create big big
        1000 pop => normal#0: sync small
        1000 due => 5000
        4999 pop => none
        5000 pop => big#0: sync big
    ");
}

#[test]
fn big_lane_is_off_when_threshold_is_zero() {
    run("
        config big=0
        0    create big big
        0    due => 1000
        1000 pop => normal#0: sync big
    ");
}

#[test]
fn an_entry_moves_to_a_faster_lane_never_to_a_slower_one() {
    run("
        0    modify f big
        500  modify f
        500  due => 1500
        1000 pop => none
        1500 pop => normal#0: sync f
        2000 modify g
        2100 modify g big
        3000 pop => normal#0: sync g
    ");
}

#[test]
fn removal_of_a_big_file_goes_to_the_normal_lane() {
    run("
        0    modify big big
        200  remove big
        1200 pop => normal#0: sync big
        1200 len => 0
    ");
}

#[test]
fn instant_subtree_skips_window_and_interval() {
    run("
        config interval=3000
        0    modify a
        1000 pop => normal#0: sync a
        1100 finished
        1200 subtree d instant
        1200 pop => instant#0: sync* d
        1300 modify b
        2300 pop => none
        2300 due => 4100
        4100 pop => normal#0: sync b
    ");
}

#[test]
fn fastest_lane_pops_first() {
    run("
        0    modify f
        0    modify b big
        0    subtree d instant
        6000 pop => instant#0: sync* d
        6000 pop => normal#0: sync f
        6000 pop => big#0: sync b
        6000 pop => none
    ");
}

// ----- 5. renames -------------------------------------------------------

#[test]
fn rename_of_an_existing_file_is_one_move() {
    run("
        0    move a b
        0    len => 1
        1000 pop => normal#0: move a b
    ");
}

#[test]
fn rename_carries_pending_changes_to_the_new_name() {
    run("
        0    modify d/f
        1    create d/g
        2    modify d
        3    move d e dir
        1000 pop => normal#0: move d e, sync e, sync e/f, sync e/g
    ");
}

#[test]
fn renamed_new_file_is_a_create_at_the_target() {
    run("
        0    create tmp
        1    modify tmp
        2    move tmp f
        1000 pop => normal#0: sync f
    ");
}

#[test]
fn renamed_new_dir_is_a_subtree_at_the_target() {
    run("
        0    create d dir
        1    create d/f
        2    move d e dir
        1000 pop => normal#0: sync* e
    ");
}

#[test]
fn renamed_new_file_then_removed_at_its_new_name_leaves_the_old_target_deleted() {
    run("
        0    create tmp
        1    move tmp f
        2    remove f
        1000 pop => normal#0: sync f
    ");
}

#[test]
fn rename_chain_stays_one_move() {
    // The destination's old `b` (replaced by a→b) must go too.
    run("
        0    move a b
        1    move b c
        1000 pop => normal#0: move a c, sync* b
    ");
}

#[test]
fn rename_there_and_back_leaves_only_the_replaced_target() {
    run("
        0    modify a
        1    move a b
        2    move b a
        1000 pop => normal#0: sync a, sync* b
    ");
}

#[test]
fn rename_chain_is_not_taken_across_a_related_rename() {
    // `sync* c`: a handler that cannot replay `move a b` syncs b from the
    // source as it is then (a new `b`, maybe), which `move b c` carries.
    run("
        0    move a b
        1    move x a
        2    move b c
        1000 pop => normal#0: move a b, move x a, move b c, sync* c
    ");
}

#[test]
fn regression_rename_chain_is_not_taken_when_it_would_move_a_dir_onto_its_parent() {
    // Proptest (bare renames): `a/b/a→b, b→a/b` chained into `a/b/a→a/b`,
    // which no file system can do. The handler then synced both sides
    // from a source in which `move a b` had already carried `a/b` off to
    // `b/b`: the dir was deleted and the later rename had nothing to take.
    run("
        0    move a/b/a b dir
        1    move b a/b dir
        2    move a b dir
        1000 pop => normal#0: move a/b/a b, move b a/b, move a b, sync* b/b
    ");
}

#[test]
fn regression_a_renamed_dir_carries_what_a_pending_moves_fallback_put_there() {
    // Proptest (bare renames): the destination may hold a/x (moved in),
    // so `move a/x y` is a move; the destination lacks it after all, and
    // the handler falls back to syncing a/x from the source as it is
    // then: the new a/x, inside the old `a`, which `move a z` carries to
    // z/x. The rename of `a` must sync z/x whole.
    run("
        0    subtree a/x
        1    move a/x y dir
        2    move a z dir
        3    subtree a
        1000 pop => normal#0: move a/x y, move a z, sync* a, sync* y, sync* z/x
    ");
}

#[test]
fn regression_a_subtree_that_absorbs_what_the_destination_may_hold_cannot_vanish() {
    // Proptest (renames that make parents): `move a b` syncs b/a/a/a
    // whole (where the pending `move b a/a/a` lands); the new subtree
    // b/a then absorbed that entry and forgot that the destination may
    // hold it, so removing b/a cancelled everything and left b/a/a/a
    // (and the parents made for it) at the destination.
    run("
        0    create a/a dir
        0    subtree a/a
        1    move b a/a/a dir
        2    move a b dir
        3    remove b/a dir
        1000 pop => normal#0: move b a/a/a, move a b, sync* b/a
    ");
}

#[test]
fn a_rename_below_a_pending_rename_syncs_where_it_lands() {
    // A handler that cannot replay `move d e` syncs e whole from the
    // source as it is then, a new e/f included, which `move e/f e/g`
    // then puts at e/g.
    run("
        0    move d e dir
        1    move e/f e/g
        2    create e/f
        1000 pop => normal#0: move d e, move e/f e/g, sync e/f, sync* e/g
    ");
}

#[test]
fn rename_chain_is_not_taken_when_it_would_move_a_dir_into_itself() {
    run("
        0    move x z dir
        1    create x dir
        2    move z x/w dir
        1000 pop => normal#0: move x z, move z x/w, sync x, sync* x/w
    ");
}

#[test]
fn rename_over_a_pending_target_replaces_it() {
    run("
        0    modify b
        1    modify b2/x
        2    move a b
        3    move a2 b2 dir
        1000 pop => normal#0: move a b, move a2 b2
    ");
}

#[test]
fn moves_come_first_in_order_then_parents_before_children() {
    // Byte order: parents come before children (`a.b` sorts before `a/b`).
    run("
        0    modify z
        1    modify a/b
        2    modify a
        3    move m n
        4    move k l
        5    modify a.b
        1000 pop => normal#0: move m n, move k l, sync a, sync a.b, sync a/b, sync z
    ");
}

#[test]
fn rename_out_of_a_pending_subtree_syncs_the_target_whole() {
    run("
        0    subtree d
        1    modify d/x/f
        2    move d/x y dir
        1000 pop => normal#0: move d/x y, sync* d, sync* y
    ");
}

#[test]
fn rename_inside_a_new_subtree_is_no_move() {
    run("
        0    create d dir
        1    subtree d
        2    move d/f g
        1000 pop => normal#0: sync* d, sync g
    ");
}

#[test]
fn moves_ride_with_any_batch_so_renamed_paths_exist_first() {
    run("
        config delay_big=500
        0    modify d/big big
        1    move d e dir
        500  pop => big#0: move d e, sync e/big
        1001 pop => none
        1001 len => 0
    ");
}

// ----- 6. windows ---------------------------------------------------------

#[test]
fn later_events_do_not_extend_the_window() {
    run("
        0    modify a
        900  modify b
        999  modify a
        999  due => 1000
        999  pop => none
        1000 pop => normal#0: sync a, sync b
    ");
}

#[test]
fn a_window_opens_at_the_first_event_after_the_lane_emptied() {
    run("
        0    modify a
        1000 pop => normal#0: sync a
        1500 modify b
        1500 due => 2500
        1000 oldest => 1500
    ");
}

#[test]
fn interval_counts_from_the_end_of_the_last_sync() {
    run("
        config interval=2000
        0    modify a
        1000 pop => normal#0: sync a
        1000 modify b
        1500 finished
        2000 due => 3500
        3499 pop => none
        3500 pop => normal#0: sync b
    ");
}

#[test]
fn next_due_is_the_earliest_lane() {
    run("
        config delay_big=500
        0    modify b big
        100  modify f
        100  due => 500
        500  pop => big#0: sync b
        500  due => 1100
    ");
}

#[test]
fn oldest_reports_the_oldest_pending_change() {
    run("
        0    oldest => none
        100  modify a big
        500  modify b
        600  modify a
        600  oldest => 100
        1500 pop => normal#0: sync a, sync b
        1500 oldest => none
    ");
}

#[test]
fn pop_all_ignores_every_window() {
    run("
        config interval=10000
        0    modify f big
        0    modify g
        0    move a b
        0    subtree d instant
        1    popall => instant#0: move a b, sync* d, sync f, sync g
        1    popall => none
        1    len => 0
    ");
}

// ----- 7. failures ----------------------------------------------------------

#[test]
fn failed_batch_comes_back_first_with_attempt_plus_one() {
    run("
        0    modify a
        0    move m n
        1000 pop => normal#0: move m n, sync a
        1100 modify b
        1100 move p q
        1200 finished
        1200 fail 3000
        1200 due => 3000
        2999 pop => none
        3000 pop => instant#1: move m n, move p q, sync a, sync* m, sync* n
        3000 pop => normal#0: sync b
        3100 finished
        3100 fail 3200
        3200 pop => instant#1: sync b
    ");
}

#[test]
fn requeued_paths_follow_renames_made_while_the_batch_ran() {
    run("
        0    modify d/f
        0    modify d
        1000 pop => normal#0: sync d, sync d/f
        1100 move d e dir
        1200 finished
        1200 fail 1200
        1200 pop => instant#1: move d e, sync* e
    ");
}

#[test]
fn requeued_subtree_also_syncs_what_was_renamed_out_of_it() {
    run("
        0    subtree d instant
        0    pop => instant#0: sync* d
        10   finished
        20   move d/x y dir
        30   fail 30
        30   pop => instant#1: move d/x y, sync* d, sync* y
    ");
}

#[test]
fn requeue_merges_with_pending_entry_and_it_can_no_longer_vanish() {
    run("
        0    remove f
        1000 pop => normal#0: sync f
        1100 create f
        1200 finished
        1200 fail 1500
        1300 remove f
        1500 pop => instant#1: sync f
    ");
}

#[test]
fn failed_attempts_keep_counting() {
    run("
        0    modify a
        1000 pop => normal#0: sync a
        1000 finished
        1000 fail 1100
        1100 pop => instant#1: sync a
        1100 finished
        1100 fail 1300
        1300 pop => instant#2: sync a
    ");
}

#[test]
fn regression_retried_rename_may_move_a_new_file_so_both_sides_resync() {
    // The failed run renamed a→b, then a new `a` appeared: replaying the
    // bare rename would put the new file at b.
    run("
        0    move a b
        1000 pop => normal#0: move a b
        1100 create a
        1200 finished
        1200 fail 1200
        1200 pop => instant#1: move a b, sync* a, sync* b
    ");
}

#[test]
fn regression_new_dir_made_as_a_parent_by_another_lane_is_not_cancelled() {
    // The handler of `sync* b/x` creates b at the destination, so b can
    // no longer vanish without an op.
    run("
        0    create b dir
        0    subtree b/x instant
        0    pop => instant#0: sync* b/x
        10   finished
        20   remove b/x dir
        20   remove b dir
        1000 pop => normal#0: sync* b
    ");
}

// ----- batches in flight ----------------------------------------------------

#[test]
fn a_path_created_while_a_batch_may_copy_it_is_not_cancelled() {
    // The handler of `sync* d` may run after `d/f` appears and copy it.
    run("
        0    remove d dir
        1000 pop => normal#0: sync* d
        1001 create d dir
        1002 create d/f
        1003 remove d/f
        1004 remove d dir
        2004 pop => normal#0: sync* d
        2004 inflight => 2
        2100 finished
        2100 finished
        2100 inflight => 0
        2200 create g
        2201 remove g
        5000 pop => none
    ");
}

#[test]
fn a_rename_while_a_batch_is_in_flight_resyncs_what_it_touched() {
    // `sync d/f` may run after the rename and delete the destination's
    // d/f, which the later `move d e` then cannot bring to e/f.
    run("
        0    modify d/f
        1000 pop => normal#0: sync d/f
        1100 move d e dir
        2100 pop => normal#0: move d e, sync* e/f
    ");
}
