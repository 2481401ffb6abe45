# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_livesync_global_optspecs
    string join \n W/watch-dir= D/destination-dir= M/mode= S/sync-handler= R/rules-file= xattrs acls exclude= include= dry-run t/delay-collect= T/delay-collect-bigfile= B/threshold-bigfile= w/delay-sync= r/retries= x/ignore-exitcode= l/label= L/lists-dir= U/dont-unlink-lists d/debug= q/quiet H/config-file= K/config-block= config-block-inherits= custom-signals= z/pid-file= status-file= dump-dir= socket= socket-own= socket-mod= standby-file= exit-on-no-events only-initialsync skip-initialsync max-iterations= sync-on-quit pre-exit-hook= exit-hook= ignore-hook-failures ignore-failures k/timeout-sync= b/background= Y/output= p/threading= threads= one-file-system X/exclude-mount-points modification-signature= cancel-syscalls= metrics-file= syslog-socket= progress= synclist-simplify have-recursive-sync rsync-inclimit= rsync-prefer-include F/full-initialsync u/uid= g/gid= privileged-uid= privileged-gid= sync-handler-uid= sync-handler-gid= C/preserve-capabilities= inherit-capabilities= permit-new-privs splitting= check-execvp-arguments secure-splitting seccomp-filter chroot= pivot-root= detach-network= detach-ipc detach-miscellanea forbid-devices monitor= poll-interval= h/help V/version
end

function __fish_livesync_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_livesync_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_livesync_using_subcommand
    set -l cmd (__fish_livesync_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c livesync -n "__fish_livesync_needs_command" -s W -l watch-dir -d 'Directory to watch and mirror (or `watch-dir` in the config file)' -r -F
complete -c livesync -n "__fish_livesync_needs_command" -s D -l destination-dir -d 'Destination: a local directory (created if missing), or for rsync modes also `host:path` or `rsync://host/module/path` (for unison `host:path` or `ssh://host//path`; csync2 takes none)' -r
complete -c livesync -n "__fish_livesync_needs_command" -s M -l mode -d 'Sync handler mode: what syncs each batch (default: `mirror`, the built-in engine; clsync\'s modes run the -S program or load it)' -r -f -a "mirror\t'the built-in engine (the default): no external program'
rsyncdirect\t'rsync with clsync\'s argv and include lists'
simple\t'the -S program once per changed path'
direct\t'the -S program once per batch, one argument per path'
shell\t'the -S program once per batch with a synclist file'
rsyncshell\t'the -S program once per batch with rsync include/exclude lists'
so\t'the -S shared object\'s clsyncapi_sync, in process'
rsyncso\t'the -S shared object\'s clsyncapi_rsync with lists, in process'
unison\t'unison per batch, as a mirror unless told otherwise'
csync2\t'csync2 to the peers of its own config (no -D)'"
complete -c livesync -n "__fish_livesync_needs_command" -s S -l sync-handler -d 'Sync handler program: for rsyncdirect the rsync binary (default `rsync` from PATH), for unison and csync2 their binary (default `unison` / `csync2` from PATH), for the command modes the program to run and for so/rsyncso the shared object to load (required there)' -r
complete -c livesync -n "__fish_livesync_needs_command" -s R -l rules-file -d 'Rules file: one `[+-][fdwmsW*]regex` rule per line' -r -F
complete -c livesync -n "__fish_livesync_needs_command" -l exclude -d 'rsync-style glob of paths to leave out (repeatable; with --include, the first that matches decides): `*` and `?` stay within one path component, `**` crosses `/`, a leading `/` anchors at the watch dir, a trailing `/` matches directories only; without a `/` the glob matches the last component. Put in front of the -R rules' -r
complete -c livesync -n "__fish_livesync_needs_command" -l include -d 'rsync-style glob of paths to keep even where a later --exclude (or rule) would leave them out (repeatable; see --exclude)' -r
complete -c livesync -n "__fish_livesync_needs_command" -s t -l delay-collect -d 'Seconds to collect events about ordinary files before syncing (fractions allowed)' -r
complete -c livesync -n "__fish_livesync_needs_command" -s T -l delay-collect-bigfile -d 'Seconds to collect events about big files (see -B)' -r
complete -c livesync -n "__fish_livesync_needs_command" -s B -l threshold-bigfile -d 'Size in bytes above which a file is "big" and waits -T instead of -t; 0 turns big-file detection off' -r
complete -c livesync -n "__fish_livesync_needs_command" -s w -l delay-sync -d 'Minimal seconds between the end of one sync and the start of the next' -r
complete -c livesync -n "__fish_livesync_needs_command" -s r -l retries -d 'How many times a batch is tried before livesync gives up and exits (0 = retry forever, with backoff)' -r
complete -c livesync -n "__fish_livesync_needs_command" -s x -l ignore-exitcode -d 'Exit code of the sync handler that counts as success (repeatable; rsyncdirect ignores 24, "files vanished", by default)' -r
complete -c livesync -n "__fish_livesync_needs_command" -s l -l label -d 'Label of this instance, passed to handlers as %label%' -r
complete -c livesync -n "__fish_livesync_needs_command" -s L -l lists-dir -d 'Directory for list files (default: a private 0700 temp dir); created (0700) if missing, refused if a symlink' -r -F
complete -c livesync -n "__fish_livesync_needs_command" -s d -l debug -d 'More log output; repeat (-dd) or give a level (-d3)' -r
complete -c livesync -n "__fish_livesync_needs_command" -s H -l config-file -d 'Config file to read instead of the default ones; `/NULL/` reads no config file at all' -r -F
complete -c livesync -n "__fish_livesync_needs_command" -s K -l config-block -d 'Block of the config file to use' -r
complete -c livesync -n "__fish_livesync_needs_command" -l config-block-inherits -d 'Parent block for the chosen block, instead of its own `config-block-inherits` line (an empty NAME: no parent)' -r
complete -c livesync -n "__fish_livesync_needs_command" -l custom-signals -d '`SIGNAL:BLOCK[,SIGNAL:BLOCK...]`: on SIGNAL (a number or a name such as USR1 or RTMIN+1), switch to that config block; `0` clears the list so far (repeatable)' -r
complete -c livesync -n "__fish_livesync_needs_command" -s z -l pid-file -d 'Write livesync\'s pid to FILE once it runs (after the fork with -b); refused if FILE names a running livesync (a stale pid or another program\'s is replaced); removed at exit if still ours' -r -F
complete -c livesync -n "__fish_livesync_needs_command" -l status-file -d 'Keep the current state in FILE (starting, initsync, running, synchandler error, hold on, rehashing, preexit, terminating, exiting), replaced atomically; removed at exit' -r -F
complete -c livesync -n "__fish_livesync_needs_command" -l dump-dir -d 'Where signal 29 (SIGIO) and the control socket\'s `dump` write the daemon\'s state (a 0600 file per dump); without it the state is logged. Created (0700) if missing, refused if a symlink' -r -F
complete -c livesync -n "__fish_livesync_needs_command" -l socket -d 'Control socket: a unix socket answering `livesync ctl` (status, resync, pause, resume, quit, …)' -r -F
complete -c livesync -n "__fish_livesync_needs_command" -l socket-own -d 'Owner of the control socket: USER[:GROUP], names or numbers' -r
complete -c livesync -n "__fish_livesync_needs_command" -l socket-mod -d 'Mode of the control socket, in octal' -r
complete -c livesync -n "__fish_livesync_needs_command" -l standby-file -d 'While FILE exists, hold every sync (events are still collected)' -r -F
complete -c livesync -n "__fish_livesync_needs_command" -l max-iterations -d 'Stop after the initial sync and N-1 handler runs after it (0 = no limit)' -r
complete -c livesync -n "__fish_livesync_needs_command" -l pre-exit-hook -d 'Program run as `PROGRAM LABEL` before the last sync of a soft exit (--exit-on-no-events, --max-iterations, SIGQUIT)' -r
complete -c livesync -n "__fish_livesync_needs_command" -l exit-hook -d 'Program run as `PROGRAM LABEL` when livesync exits after a completed initial sync' -r
complete -c livesync -n "__fish_livesync_needs_command" -s k -l timeout-sync -d 'Kill a sync handler or hook (its whole process group) that runs longer than SECS and count it as a failed try; 0 = no limit. The built-in mirror runs no child and is not limited' -r
complete -c livesync -n "__fish_livesync_needs_command" -s b -l background -d 'Run in the background as a daemon (fork, setsid, stdio to /dev/null, chdir /; log lines go to syslog unless -Y is given); -b0 or --background=off: stay in front' -r -f -a "true\t''
false\t''"
complete -c livesync -n "__fish_livesync_needs_command" -s Y -l output -d 'Where log lines go: stderr, stdout or syslog (with -b the default is syslog)' -r -f -a "stderr\t''
stdout\t''
syslog\t''"
complete -c livesync -n "__fish_livesync_needs_command" -s p -l threading -d 'How many batches run at once: `off` one at a time; `safe` several (up to --threads), but never two whose paths are the same or lie one inside the other, and renames in order; `full` several with no such exclusion (two runs may race on one path; a failed run is retried)' -r
complete -c livesync -n "__fish_livesync_needs_command" -l threads -d 'Most handler runs at once with -p safe|full (0: the number of CPUs, at least 2); -p off always runs one' -r
complete -c livesync -n "__fish_livesync_needs_command" -l modification-signature -d 'Don\'t sync a file or dir whose listed lstat fields did not change since it was last synced: a comma list of dev, ino, mode, uid, gid, rdev, size, atime, mtime, ctime, blksize, blocks, nlink (`*`: the first ten)' -r
complete -c livesync -n "__fish_livesync_needs_command" -l cancel-syscalls -d 'Syscalls to skip: `mon_stat` (no lstat of changed files: the big-file lane -B/-T is off, and a hard-linked file is synced only through the name that changed). Empty: none' -r
complete -c livesync -n "__fish_livesync_needs_command" -l metrics-file -d 'Write Prometheus text metrics to FILE (replaced atomically every 10 s and after each batch), e.g. for node_exporter\'s textfile collector; the control socket\'s `metrics` command gives the same' -r -F
complete -c livesync -n "__fish_livesync_needs_command" -l syslog-socket -d 'The unix datagram socket `-Y syslog` sends to' -r -F
complete -c livesync -n "__fish_livesync_needs_command" -l progress -d 'Progress bar (files, bytes, rate, ETA) on stderr during the built-in mirror\'s initial sync: auto (when stderr is a terminal and livesync stays in front) or never' -r -f -a "auto\t''
never\t''"
complete -c livesync -n "__fish_livesync_needs_command" -l rsync-inclimit -d 'rsync modes: at most about N include-list lines per rsync run; a longer list runs rsync once per part (0 = no limit)' -r
complete -c livesync -n "__fish_livesync_needs_command" -s u -l uid -d 'Run the daemon as USER (name or number) after its privileged setup' -r
complete -c livesync -n "__fish_livesync_needs_command" -s g -l gid -d 'Run the daemon with GROUP (default when root: nogroup)' -r
complete -c livesync -n "__fish_livesync_needs_command" -l privileged-uid -d 'User of the privileged helper (--splitting=process); default: the user livesync was started as' -r
complete -c livesync -n "__fish_livesync_needs_command" -l privileged-gid -d 'Group of the privileged helper; default: the group livesync was started with' -r
complete -c livesync -n "__fish_livesync_needs_command" -l sync-handler-uid -d 'Run sync handlers and hooks as USER; default: --privileged-uid' -r
complete -c livesync -n "__fish_livesync_needs_command" -l sync-handler-gid -d 'Run sync handlers and hooks with GROUP; default: the primary group of --sync-handler-uid, or else --privileged-gid' -r
complete -c livesync -n "__fish_livesync_needs_command" -s C -l preserve-capabilities -d 'Capabilities the daemon keeps besides CAP_DAC_READ_SEARCH and what its mode needs: a comma list such as CAP_KILL,CAP_SETUID' -r
complete -c livesync -n "__fish_livesync_needs_command" -l inherit-capabilities -d 'What handlers inherit of the daemon\'s capabilities: permitted, dont-touch, clsync or empty' -r -f -a "permitted\t''
dont-touch\t''
clsync\t''
empty\t''"
complete -c livesync -n "__fish_livesync_needs_command" -l splitting -d 'off or process: with process, a small privileged helper starts, kills and reaps handlers (and runs the built-in mirror), and the daemon keeps no capability to start them or to write' -r
complete -c livesync -n "__fish_livesync_needs_command" -l chroot -d 'Confine the daemon, its helper and its handlers to DIR as `/`' -r -F
complete -c livesync -n "__fish_livesync_needs_command" -l pivot-root -d 'How --chroot is entered: off (chroot(2)), auto (a mount namespace, DIR bind-mounted on itself, pivot_root(2), the old root unmounted), auto-ro (the same, DIR\'s mount read-only: bind-mount a local destination inside on itself so it stays writable) or direct (DIR must be a mount point already)' -r
complete -c livesync -n "__fish_livesync_needs_command" -l detach-network -d 'Take the network away: everywhere (daemon, helper and handlers), non-privileged (the daemon only, with --splitting=process) or off' -r
complete -c livesync -n "__fish_livesync_needs_command" -l monitor -d 'Which kernel API watches the tree: inotify (Linux default), fanotify (Linux, root; falls back to inotify where it cannot run), kqueue (FreeBSD/macOS default), bsm (FreeBSD\'s audit trail), poll (a periodic scan: NFS, FUSE) or notify (the notify crate\'s portable watcher). Any other backend that cannot start here ends livesync with one line and exit code 1' -r -f -a "inotify\t'Linux inotify: one watch per directory'
kqueue\t'FreeBSD/macOS kqueue: one open file per watched directory and file'
poll\t'A periodic scan of the watched directories (NFS, FUSE, anything the kernel does not report); see --poll-interval'
notify\t'The `notify` crate\'s recommended watcher (FSEvents on macOS, inotify on Linux)'
fanotify\t'Linux fanotify: one mark per filesystem, no per-directory kernel watch (needs CAP_SYS_ADMIN; falls back to inotify without it)'
bsm\t'FreeBSD\'s audit trail (/dev/auditpipe)'"
complete -c livesync -n "__fish_livesync_needs_command" -l poll-interval -d 'Seconds between two scans of --monitor poll (fractions allowed)' -r
complete -c livesync -n "__fish_livesync_needs_command" -l xattrs -d 'Copy extended attributes (rsync\'s -X): `user.*`, and as root every namespace but `system.*`. Off by default, as in clsync\'s rsync arguments. The built-in mirror copies them; rsync modes pass -X (in a `--` template, through %RSYNC-ARGS%)'
complete -c livesync -n "__fish_livesync_needs_command" -l acls -d 'Copy POSIX ACLs (rsync\'s -A): the access ACL, and a directory\'s default ACL. Off by default, as in clsync\'s rsync arguments. The built-in mirror copies them; rsync modes pass -A (in a `--` template, through %RSYNC-ARGS%)'
complete -c livesync -n "__fish_livesync_needs_command" -l dry-run -d 'Built-in mirror: log every operation it would do (copy, rename, delete, chmod, …) and write nothing to the destination'
complete -c livesync -n "__fish_livesync_needs_command" -s U -l dont-unlink-lists -d 'Keep list files after the handler ends (for debugging)'
complete -c livesync -n "__fish_livesync_needs_command" -s q -l quiet -d 'Only errors'
complete -c livesync -n "__fish_livesync_needs_command" -l exit-on-no-events -d 'After the initial sync, sync until nothing is pending, run the hooks and exit 0'
complete -c livesync -n "__fish_livesync_needs_command" -l only-initialsync -d 'Do the initial sync, run the hooks and exit 0, watching nothing'
complete -c livesync -n "__fish_livesync_needs_command" -l skip-initialsync -d 'Skip the initial sync: sync only what changes from now on'
complete -c livesync -n "__fish_livesync_needs_command" -l sync-on-quit -d 'On SIGQUIT, sync once more after the pre-exit hook'
complete -c livesync -n "__fish_livesync_needs_command" -l ignore-hook-failures -d 'Carry on when a hook fails, as clsync does: a failed --pre-exit-hook still runs --exit-hook, and livesync exits 0. Without it a failed pre-exit hook ends livesync at once with exit code 1 (no exit hook), and a failed exit hook makes the exit code 1'
complete -c livesync -n "__fish_livesync_needs_command" -l ignore-failures -d 'Don\'t exit when syncs keep failing past --retries: keep retrying the batch (with backoff); nothing is dropped'
complete -c livesync -n "__fish_livesync_needs_command" -l one-file-system -d 'Don\'t cross into other filesystems: the mount points under the watch dir (found at start and on SIGHUP) are synced as empty directories and not walked, watched or synced below'
complete -c livesync -n "__fish_livesync_needs_command" -s X -l exclude-mount-points -d 'Like --one-file-system, and leave the mount points themselves out'
complete -c livesync -n "__fish_livesync_needs_command" -l synclist-simplify -d 'Shell mode: list lines are the bare relative path instead of `sync LABEL MASK PATH`'
complete -c livesync -n "__fish_livesync_needs_command" -l have-recursive-sync -d 'Shell and so modes: hand a whole subtree (the initial sync, a new directory) over as one: in shell mode one `initialsync LABEL PATH` run, in so mode one entry flagged EVIF_RECURSIVELY, instead of one per entry below it (an rsyncso object sees it in its ctx flags)'
complete -c livesync -n "__fish_livesync_needs_command" -l rsync-prefer-include -d 'rsync modes: no exclude-list file; exclusions go into the include list as `- /path` lines'
complete -c livesync -n "__fish_livesync_needs_command" -s F -l full-initialsync -d 'The initial sync ignores the rules (later syncs follow them)'
complete -c livesync -n "__fish_livesync_needs_command" -l permit-new-privs -d 'Let handlers gain privileges through set-user-id programs and file capabilities (no PR_SET_NO_NEW_PRIVS)'
complete -c livesync -n "__fish_livesync_needs_command" -l check-execvp-arguments -d 'The privileged helper refuses any argv that the configured handler and hooks could not have produced (needs --splitting=process; every mode)'
complete -c livesync -n "__fish_livesync_needs_command" -l secure-splitting -d 'Shorthand for --splitting=process --check-execvp-arguments --seccomp-filter'
complete -c livesync -n "__fish_livesync_needs_command" -l seccomp-filter -d 'Confine the unprivileged daemon to a syscall allow-list (needs --splitting=process)'
complete -c livesync -n "__fish_livesync_needs_command" -l detach-ipc -d 'Give livesync and its handlers an IPC namespace of their own'
complete -c livesync -n "__fish_livesync_needs_command" -l detach-miscellanea -d 'Give livesync and its handlers their own UTS (host name) and cgroup namespaces'
complete -c livesync -n "__fish_livesync_needs_command" -l forbid-devices -d 'Hide every device but null, zero, random and urandom from the daemon (and, without --splitting, its handlers)'
complete -c livesync -n "__fish_livesync_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c livesync -n "__fish_livesync_needs_command" -s V -l version -d 'Print version'
complete -c livesync -n "__fish_livesync_needs_command" -a "status" -d 'Show what a running livesync is doing: state, queue, lag, last sync, counters'
complete -c livesync -n "__fish_livesync_needs_command" -a "resync" -d 'Make a running livesync rescan and sync the whole tree now'
complete -c livesync -n "__fish_livesync_needs_command" -a "pause" -d 'Hold every sync (changes are still collected) until `resume`'
complete -c livesync -n "__fish_livesync_needs_command" -a "resume" -d 'Start syncing again after `pause`'
complete -c livesync -n "__fish_livesync_needs_command" -a "metrics" -d 'Print the daemon\'s metrics in Prometheus text format'
complete -c livesync -n "__fish_livesync_needs_command" -a "ctl" -d 'Send COMMAND to the control socket at SOCKET and print the raw reply (version, info, status, metrics, help, resync, pause, resume, dump, set KEY VALUE, quit, die)'
complete -c livesync -n "__fish_livesync_using_subcommand status" -l socket -d 'The daemon\'s control socket (its --socket); without it, the `socket` key of the config file (-H/-K, or the default config files)' -r -F
complete -c livesync -n "__fish_livesync_using_subcommand status" -s H -l config-file -d 'Config file to take the socket path from' -r -F
complete -c livesync -n "__fish_livesync_using_subcommand status" -s K -l config-block -d 'Block of the config file' -r
complete -c livesync -n "__fish_livesync_using_subcommand status" -l json -d 'Print one JSON object (for scripts) instead of text for people'
complete -c livesync -n "__fish_livesync_using_subcommand status" -s h -l help -d 'Print help'
complete -c livesync -n "__fish_livesync_using_subcommand resync" -l socket -d 'The daemon\'s control socket (its --socket); without it, the `socket` key of the config file (-H/-K, or the default config files)' -r -F
complete -c livesync -n "__fish_livesync_using_subcommand resync" -s H -l config-file -d 'Config file to take the socket path from' -r -F
complete -c livesync -n "__fish_livesync_using_subcommand resync" -s K -l config-block -d 'Block of the config file' -r
complete -c livesync -n "__fish_livesync_using_subcommand resync" -l json -d 'Print one JSON object (for scripts) instead of text for people'
complete -c livesync -n "__fish_livesync_using_subcommand resync" -s h -l help -d 'Print help'
complete -c livesync -n "__fish_livesync_using_subcommand pause" -l socket -d 'The daemon\'s control socket (its --socket); without it, the `socket` key of the config file (-H/-K, or the default config files)' -r -F
complete -c livesync -n "__fish_livesync_using_subcommand pause" -s H -l config-file -d 'Config file to take the socket path from' -r -F
complete -c livesync -n "__fish_livesync_using_subcommand pause" -s K -l config-block -d 'Block of the config file' -r
complete -c livesync -n "__fish_livesync_using_subcommand pause" -l json -d 'Print one JSON object (for scripts) instead of text for people'
complete -c livesync -n "__fish_livesync_using_subcommand pause" -s h -l help -d 'Print help'
complete -c livesync -n "__fish_livesync_using_subcommand resume" -l socket -d 'The daemon\'s control socket (its --socket); without it, the `socket` key of the config file (-H/-K, or the default config files)' -r -F
complete -c livesync -n "__fish_livesync_using_subcommand resume" -s H -l config-file -d 'Config file to take the socket path from' -r -F
complete -c livesync -n "__fish_livesync_using_subcommand resume" -s K -l config-block -d 'Block of the config file' -r
complete -c livesync -n "__fish_livesync_using_subcommand resume" -l json -d 'Print one JSON object (for scripts) instead of text for people'
complete -c livesync -n "__fish_livesync_using_subcommand resume" -s h -l help -d 'Print help'
complete -c livesync -n "__fish_livesync_using_subcommand metrics" -l socket -d 'The daemon\'s control socket (its --socket); without it, the `socket` key of the config file' -r -F
complete -c livesync -n "__fish_livesync_using_subcommand metrics" -s H -l config-file -d 'Config file to take the socket path from' -r -F
complete -c livesync -n "__fish_livesync_using_subcommand metrics" -s K -l config-block -d 'Block of the config file' -r
complete -c livesync -n "__fish_livesync_using_subcommand metrics" -s h -l help -d 'Print help'
