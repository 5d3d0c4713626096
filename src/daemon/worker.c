/* Runs blocking jobs on threads of their own and reports their results on the event loop. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "worker.h"

struct Worker {
        sd_event_source *source;
        int pipe[2];
        unsigned n_jobs;
};

typedef struct Job {
        Worker *worker;
        JobFunc func;
        JobDone done;
        void *userdata;
        int result;
} Job;

/* Runs on the job's own thread. A pointer is written atomically to the pipe (smaller than
 * PIPE_BUF), so the loop sees whole Job pointers. */
static void *job_thread(void *p) {
        Job *j = p;
        ssize_t n;

        j->result = j->func(j->userdata);

        do
                n = write(j->worker->pipe[1], &j, sizeof(j));
        while (n < 0 && errno == EINTR);

        /* The pipe is never full in practice (one pointer per running job); losing a result
         * would leak a job forever, so make it loud. */
        if (n != (ssize_t) sizeof(j))
                abort();
        return NULL;
}

static int on_job_done(sd_event_source *s _unused_, int fd, uint32_t revents _unused_, void *userdata) {
        Worker *w = userdata;

        for (;;) {
                Job *j;
                ssize_t n = read(fd, &j, sizeof(j));

                if (n < 0 && errno == EINTR)
                        continue;
                if (n != (ssize_t) sizeof(j))
                        break;

                w->n_jobs--;
                j->done(j->result, j->userdata);
                free(j);
        }
        return 0;
}

int worker_new(sd_event *e, Worker **ret) {
        _cleanup_(freep) Worker *w = NULL;
        int r;

        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->pipe[0] = w->pipe[1] = -EBADF;

        if (pipe2(w->pipe, O_CLOEXEC | O_NONBLOCK) < 0)
                return -errno;

        r = sd_event_add_io(e, &w->source, w->pipe[0], EPOLLIN, on_job_done, w);
        if (r < 0) {
                (void) safe_close(w->pipe[0]);
                (void) safe_close(w->pipe[1]);
                return r;
        }
        (void) sd_event_source_set_description(w->source, "worker");

        *ret = TAKE_PTR(w);
        return 0;
}

Worker *worker_free(Worker *w) {
        if (!w)
                return NULL;

        assert(w->n_jobs == 0);
        sd_event_source_disable_unref(w->source);
        (void) safe_close(w->pipe[0]);
        (void) safe_close(w->pipe[1]);
        free(w);
        return NULL;
}

int worker_run(Worker *w, JobFunc func, JobDone done, void *userdata) {
        _cleanup_(freep) Job *j = NULL;
        pthread_attr_t attr;
        sigset_t all, old;
        pthread_t t;
        int r;

        j = malloc(sizeof(*j));
        if (!j)
                return -ENOMEM;
        *j = (Job) { .worker = w, .func = func, .done = done, .userdata = userdata };

        r = pthread_attr_init(&attr);
        if (r != 0)
                return -r;
        (void) pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        (void) pthread_attr_setstacksize(&attr, 256 * 1024);

        /* Signals belong to the loop thread (signalfd); job threads must not take them. */
        sigfillset(&all);
        (void) pthread_sigmask(SIG_BLOCK, &all, &old);
        r = pthread_create(&t, &attr, job_thread, j);
        (void) pthread_sigmask(SIG_SETMASK, &old, NULL);
        (void) pthread_attr_destroy(&attr);
        if (r != 0)
                return -r;

        TAKE_PTR(j);
        w->n_jobs++;
        return 0;
}

unsigned worker_n_jobs(Worker *w) {
        return w ? w->n_jobs : 0;
}
