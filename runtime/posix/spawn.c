/* runtime/sys.h's child programs on POSIX: posix_spawnp and waitpid. */
#define _GNU_SOURCE
#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/sys.h"

extern char **environ;

duct_code duct__spawn_wait(const char *const *argv, int *exit_code) {
  *exit_code = -1;
  pid_t pid;
  /* posix_spawnp's argv is char *const[] for historical reasons; it does
   * not write to the strings. */
  int err = posix_spawnp(&pid, argv[0], NULL, NULL, (char *const *)argv, environ);
  if (err != 0)
    return err == ENOENT ? DUCT_NOT_FOUND : DUCT_INTERNAL;
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR)
      return DUCT_INTERNAL;
  if (!WIFEXITED(st))
    return DUCT_INTERNAL;
  *exit_code = WEXITSTATUS(st);
  return DUCT_OK;
}

int duct__temp_file(char *buf, size_t cap) {
  const char *dir = getenv("TMPDIR");
  if (!dir || !*dir)
    dir = "/tmp";
  int n = snprintf(buf, cap, "%s/duct-XXXXXX", dir);
  if (n < 0 || (size_t)n >= cap)
    return -1;
  int fd = mkstemp(buf);
  if (fd < 0)
    return -1;
  close(fd);
  return 0;
}
