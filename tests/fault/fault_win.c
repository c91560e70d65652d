/* fault_platform.h on Windows: a named pipe leaves nothing behind when its
 * server dies, so there is no stale address to test. */
#include "fault_platform.h"

int fault_make_stale_socket(char *path, size_t cap) {
  (void)path;
  (void)cap;
  return 0;
}

int fault_make_regular_file(const char *path, size_t cap) {
  (void)path;
  (void)cap;
  return 0;
}

int fault_is_regular_file(const char *path) {
  (void)path;
  return 0;
}

void fault_remove(const char *path) { (void)path; }
