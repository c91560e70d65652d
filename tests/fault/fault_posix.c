/* fault_platform.h on POSIX. */
#define _GNU_SOURCE
#include "fault_platform.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int fault_make_stale_socket(char *path, size_t cap) {
  char dir[] = "/tmp/duct-fault-XXXXXX";
  if (!mkdtemp(dir))
    return 0;
  snprintf(path, cap, "%s/stale.sock", dir);
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
  int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
  if (fd < 0)
    return 0;
  /* Bound and listening, then closed without unlink: exactly what a
   * server killed with SIGKILL leaves behind. */
  int ok = bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(fd, 1) == 0;
  close(fd);
  struct stat st;
  return ok && lstat(path, &st) == 0 && S_ISSOCK(st.st_mode);
}

int fault_make_regular_file(const char *path, size_t cap) {
  (void)cap;
  unlink(path);
  FILE *f = fopen(path, "w");
  if (!f)
    return 0;
  fputs("not a socket\n", f);
  return fclose(f) == 0;
}

int fault_is_regular_file(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0 && S_ISREG(st.st_mode);
}

void fault_remove(const char *path) {
  unlink(path);
  char dir[256];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash) {
    *slash = '\0';
    rmdir(dir);
  }
}
