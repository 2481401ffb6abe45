/*
 * A clsync sync handler for tests/so.rs: it records every call it gets into
 * the file named by $LIVESYNC_SO_RECORD, one line per fact, and syncs
 * nothing. Built with `cc -shared -fPIC` against the headers of libclsync-dev.
 *
 *   $LIVESYNC_SO_FAIL_TIMES=N  the first N sync/rsync calls return EIO
 *   $LIVESYNC_SO_TOUCH=FILE    each sync call runs `touch FILE` through
 *                              clsyncapi_fork(), as clsync's examples run
 *                              their programs
 *   -DWANT_API=V               init refuses unless clsyncapi_getapiversion()
 *                              is V (default CLSYNC_API_VERSION)
 *   -DNO_SYNC / -DNO_RSYNC     leave that function out
 *
 * Lines:
 *   init api=2 mode=7 debug=0 threading=0 label=L watch=W dest=D
 *        watchslash=W/ destslash=D/ watchlen=N destlen=N lists=DIR
 *   sync n=N iteration=I
 *   touched status=S
 *   ev path=P len=N mask=0xM flags=F old=O new=N
 *   rsync inc=PATH exc=PATH incmode=600 dirmode=700
 *   inc LINE / exc LINE        the list files' lines
 *   fail rc=5
 *   deinit
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <clsync/configuration.h>
#include <clsync/clsync.h>
#include <clsync/ctx.h>

#ifndef WANT_API
#define WANT_API CLSYNC_API_VERSION
#endif

static struct ctx *ctx_p;
static int calls;

static FILE *rec(void)
{
	const char *p = getenv("LIVESYNC_SO_RECORD");
	return p ? fopen(p, "a") : NULL;
}

static const char *s(const char *v)
{
	return v ? v : "(null)";
}

/* Returns non-zero (and records it) while failures are asked for. */
static int failing(FILE *f)
{
	const char *t = getenv("LIVESYNC_SO_FAIL_TIMES");
	if (t && calls++ < atoi(t)) {
		fprintf(f, "fail rc=%d\n", EIO);
		return EIO;
	}
	return 0;
}

int clsyncapi_init(struct ctx *c, struct indexes *i)
{
	(void)i;
	ctx_p = c;
	FILE *f = rec();
	if (!f)
		return ENOENT;
	int api = clsyncapi_getapiversion();
	fprintf(f,
		"init api=%d mode=%d debug=%d threading=%d label=%s watch=%s dest=%s "
		"watchslash=%s destslash=%s watchlen=%zu destlen=%zu lists=%s\n",
		api, c->flags[MODE], c->flags[DEBUG], c->flags[THREADING], s(c->label),
		s(c->watchdir), s(c->destdir), s(c->watchdirwslash), s(c->destdirwslash),
		c->watchdirlen, c->destdirlen, s(c->listoutdir));
	fclose(f);
	if (api != WANT_API)
		return EINVAL;
	return 0;
}

#ifndef NO_SYNC
int clsyncapi_sync(int n, api_eventinfo_t *ei)
{
	FILE *f = rec();
	if (!f)
		return ENOENT;
	int rc = failing(f);
	if (!rc) {
		fprintf(f, "sync n=%d iteration=%u\n", n, ctx_p->iteration_num);
		for (int k = 0; k < n; k++)
			fprintf(f, "ev path=%s len=%zu mask=%#x flags=%u old=%d new=%d\n",
				ei[k].path, ei[k].path_len, ei[k].evmask, ei[k].flags,
				ei[k].objtype_old, ei[k].objtype_new);
		const char *touch = getenv("LIVESYNC_SO_TOUCH");
		if (touch) {
			pid_t pid = clsyncapi_fork(ctx_p);
			if (pid == 0) {
				execl("/usr/bin/touch", "touch", touch, (char *)NULL);
				_exit(127);
			}
			int status = -1;
			if (pid > 0 && waitpid(pid, &status, 0) == pid)
				fprintf(f, "touched status=%d\n", WEXITSTATUS(status));
			else
				fprintf(f, "touched fork failed\n");
		}
	}
	fclose(f);
	return rc;
}
#endif

#ifndef NO_RSYNC
static void dump(FILE *f, const char *tag, const char *path)
{
	FILE *l = fopen(path, "r");
	if (!l) {
		fprintf(f, "%s unreadable\n", tag);
		return;
	}
	char line[4096];
	while (fgets(line, sizeof line, l)) {
		line[strcspn(line, "\n")] = 0;
		fprintf(f, "%s %s\n", tag, line);
	}
	fclose(l);
}

static unsigned mode_of(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (unsigned)(st.st_mode & 07777) : 0;
}

int clsyncapi_rsync(const char *inclist, const char *exclist)
{
	FILE *f = rec();
	if (!f)
		return ENOENT;
	int rc = failing(f);
	if (!rc) {
		char dir[4096];
		snprintf(dir, sizeof dir, "%s", inclist);
		char *slash = strrchr(dir, '/');
		if (slash)
			*slash = 0;
		fprintf(f, "rsync inc=%s exc=%s incmode=%o dirmode=%o\n", inclist, s(exclist),
			mode_of(inclist), mode_of(dir));
		dump(f, "inc", inclist);
		if (exclist)
			dump(f, "exc", exclist);
	}
	fclose(f);
	return rc;
}
#endif

int clsyncapi_deinit(void)
{
	FILE *f = rec();
	if (f) {
		fprintf(f, "deinit\n");
		fclose(f);
	}
	return 0;
}
