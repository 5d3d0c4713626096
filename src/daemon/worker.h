/* Runs blocking jobs on threads of their own and reports their results on the event loop. */
#pragma once

#include <systemd/sd-event.h>

typedef struct Worker Worker;

/* Runs on a worker thread: may block, touches only what its userdata owns. Returns a result
 * (-errno or >= 0) that is handed to the JobDone callback. */
typedef int (*JobFunc)(void *userdata);

/* Runs on the event loop thread once the job has finished. */
typedef void (*JobDone)(int result, void *userdata);

/* Creates the worker attached to the event loop e. */
int worker_new(sd_event *e, Worker **ret);

/* Frees the worker. Must not be called while jobs are in flight (see worker_n_jobs()). */
Worker *worker_free(Worker *w);

/* Starts func(userdata) on a new thread and calls done(result, userdata) on the loop thread when
 * it has returned. userdata must stay valid until done runs. A thread per job: jobs are rare
 * (mount, loop configuration, unmount) and one that hangs in the kernel must never hold up
 * another. Returns 0 or -errno (then neither callback runs). */
int worker_run(Worker *w, JobFunc func, JobDone done, void *userdata);

/* Number of jobs started but not yet reported. */
unsigned worker_n_jobs(Worker *w);
