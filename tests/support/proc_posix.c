#define _GNU_SOURCE
#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

struct test_proc {
  pid_t pid;
  int reaped;
  int status;
};

const char *test_sibling_exe(const char *argv0, const char *name) {
  static char path[4096 + 256];
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) {
    snprintf(self, sizeof self, "%s", argv0);
    n = (ssize_t)strlen(self);
  }
  self[n] = '\0';
  char *slash = strrchr(self, '/');
  if (slash)
    *slash = '\0';
  snprintf(path, sizeof path, "%s/%.200s", slash ? self : ".", name);
  return path;
}

test_proc *test_proc_start(const char *exe, const char *const *args, int nargs) {
  return test_proc_start_out(exe, args, nargs, NULL);
}

int test_proc_can_term(void) { return 1; }

test_proc *test_proc_start_out(const char *exe, const char *const *args, int nargs,
                               const char *out_path) {
  return test_proc_start_io(exe, args, nargs, NULL, out_path, NULL);
}

int test_proc_interrupt(test_proc *p) {
  if (!p->reaped)
    kill(p->pid, SIGINT);
  return 1;
}

test_proc *test_proc_start_io(const char *exe, const char *const *args, int nargs,
                              const char *in_path, const char *out_path, const char *err_path) {
  test_proc *p = calloc(1, sizeof *p);
  char **argv = calloc((size_t)nargs + 2, sizeof *argv);
  if (!p || !argv) {
    free(p);
    free(argv);
    return NULL;
  }
  argv[0] = (char *)exe;
  for (int i = 0; i < nargs; i++)
    argv[i + 1] = (char *)args[i];
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (in_path)
    posix_spawn_file_actions_addopen(&fa, 0, in_path, O_RDONLY, 0);
  if (out_path)
    posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (err_path)
    posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  int rc = posix_spawn(&p->pid, exe, &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  free(argv);
  if (rc != 0) {
    fprintf(stderr, "spawn %s: %s\n", exe, strerror(rc));
    free(p);
    return NULL;
  }
  return p;
}

uint32_t test_proc_pid(const test_proc *p) { return (uint32_t)p->pid; }

void test_proc_kill(test_proc *p) {
  if (!p->reaped)
    kill(p->pid, SIGKILL);
}

void test_proc_term(test_proc *p) {
  if (!p->reaped)
    kill(p->pid, SIGTERM);
}

int test_proc_wait(test_proc *p, int timeout_ms) {
  struct timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  while (!p->reaped) {
    pid_t r = waitpid(p->pid, &p->status, WNOHANG);
    if (r == p->pid) {
      p->reaped = 1;
      break;
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    long ms = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
    if (ms >= timeout_ms) {
      kill(p->pid, SIGKILL);
      waitpid(p->pid, &p->status, 0);
      p->reaped = 1;
      return -1;
    }
    /* Polling a child's exit: POSIX has no waitpid with a timeout, and a
     * SIGCHLD handler would interfere with cmocka. 2 ms steps keep it cheap. */
    struct timespec step = {0, 2 * 1000 * 1000};
    nanosleep(&step, NULL);
  }
  if (WIFEXITED(p->status))
    return WEXITSTATUS(p->status);
  return -2;
}

void test_proc_free(test_proc *p) {
  if (!p)
    return;
  if (!p->reaped) {
    kill(p->pid, SIGKILL);
    waitpid(p->pid, &p->status, 0);
  }
  free(p);
}

const char *test_address(const char *tag) {
  static char buf[128];
  snprintf(buf, sizeof buf, "duct-e2e-%ld-%s", (long)getpid(), tag);
  return buf;
}
