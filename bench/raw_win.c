/* bench/raw_win.c - the raw floor on Windows: message-mode named pipes
 * with the same 64 KiB buffers as duct (runtime/win/win.h), a blocking
 * server thread per pipe instance, and a client that sends its last
 * message and reads the first reply in one TransactNamedPipe, as duct's
 * client does. Only Win32 calls; no duct code. */
#define WIN32_LEAN_AND_MEAN
#include <windows.h>

#include "raw.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PIPE_BUF_SIZE 65536

struct raw_client {
  HANDLE h;
};

static const char *server_name;

const char *raw_transport(void) { return "npipe"; }

uint64_t bench_now_ns(void) {
  static LARGE_INTEGER freq;
  LARGE_INTEGER now;
  if (!freq.QuadPart)
    QueryPerformanceFrequency(&freq);
  QueryPerformanceCounter(&now);
  return (uint64_t)((double)now.QuadPart * 1e9 / (double)freq.QuadPart);
}

void raw_address(char *buf, size_t cap) {
  snprintf(buf, cap, "\\\\.\\pipe\\duct-bench-raw-%lu", (unsigned long)GetCurrentProcessId());
}

static int write_msg(HANDLE h, const uint8_t *p, size_t n) {
  DWORD wrote = 0;
  return WriteFile(h, p, (DWORD)n, &wrote, NULL) && wrote == n ? 0 : -1;
}

/* One-way mode (raw.h): the messages go out back to back from two buffers
 * laid out once (a first fragment, whose sequence number is rewritten per
 * message, and the others), so the server does nothing but write. */
static int serve_oneway(HANDLE h, uint8_t *buf, size_t len) {
  uint32_t count;
  size_t sizes[RAW_MAX_FRAGS], end;
  int n;
  if (raw_oneway_parse(buf, len, &count, sizes, &n, &end) != 0)
    return -1;
  uint8_t *first = buf, *rest = buf + RAW_MAX_MSG;
  raw_fill(first, RAW_MAX_MSG, 0);
  raw_fill(rest, RAW_MAX_MSG, 0);
  first[0] = rest[0] = 'D';
  for (uint64_t seq = 1; seq <= count; seq++) {
    memcpy(first + 1, &seq, 8);
    for (int i = 0; i < n; i++)
      if (write_msg(h, i ? rest : first, sizes[i]) != 0)
        return -1;
  }
  rest[0] = 'E';
  return write_msg(h, rest, end);
}

static DWORD WINAPI serve(void *arg) {
  HANDLE h = arg;
  uint8_t *buf = malloc(RAW_MAX_REQUEST);
  size_t sizes[64];
  while (buf) {
    size_t off = 0;
    int n = 0;
    for (;;) {
      DWORD got = 0;
      if (n == 64 || off + RAW_MAX_MSG > RAW_MAX_REQUEST)
        goto out;
      if (!ReadFile(h, buf + off, RAW_MAX_MSG, &got, NULL) || got == 0)
        goto out;
      if (buf[off] == 'Q')
        ExitProcess(0);
      if (n == 0 && buf[0] == 'S') {
        if (serve_oneway(h, buf, got) != 0)
          goto out;
        n = -1; /* nothing to echo */
        break;
      }
      sizes[n++] = got;
      off += got;
      if (buf[off - got] == 'L')
        break;
    }
    off = 0;
    for (int i = 0; i < n; i++) { /* n is -1 after a one-way run */
      if (write_msg(h, buf + off, sizes[i]) != 0)
        goto out;
      off += sizes[i];
    }
  }
out:
  free(buf);
  CloseHandle(h);
  return 0;
}

int raw_server_main(const char *addr) {
  server_name = addr;
  for (;;) {
    HANDLE h = CreateNamedPipeA(addr, PIPE_ACCESS_DUPLEX,
                                PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE | PIPE_WAIT |
                                    PIPE_REJECT_REMOTE_CLIENTS,
                                PIPE_UNLIMITED_INSTANCES, PIPE_BUF_SIZE, PIPE_BUF_SIZE, 0, NULL);
    if (h == INVALID_HANDLE_VALUE) {
      fprintf(stderr, "raw server: CreateNamedPipe error %lu\n", GetLastError());
      return 2;
    }
    if (!ConnectNamedPipe(h, NULL) && GetLastError() != ERROR_PIPE_CONNECTED) {
      CloseHandle(h);
      continue;
    }
    HANDLE t = CreateThread(NULL, 0, serve, h, 0, NULL);
    if (t)
      CloseHandle(t);
    else
      CloseHandle(h);
  }
}

raw_client *raw_connect(const char *addr, int timeout_ms) {
  uint64_t until = bench_now_ns() + (uint64_t)timeout_ms * 1000000u;
  for (;;) {
    HANDLE h = CreateFileA(addr, GENERIC_READ | GENERIC_WRITE, 0, NULL, OPEN_EXISTING, 0, NULL);
    if (h != INVALID_HANDLE_VALUE) {
      DWORD mode = PIPE_READMODE_MESSAGE;
      raw_client *c = malloc(sizeof *c);
      if (!c || !SetNamedPipeHandleState(h, &mode, NULL, NULL)) {
        free(c);
        CloseHandle(h);
        return NULL;
      }
      c->h = h;
      return c;
    }
    if (bench_now_ns() > until)
      return NULL;
    if (GetLastError() == ERROR_PIPE_BUSY)
      WaitNamedPipeA(addr, 100);
    else
      Sleep(2); /* the server process is still starting */
  }
}

int raw_echo(raw_client *c, const uint8_t *tx, const size_t *sizes, int n, uint8_t *rx) {
  size_t off = 0;
  DWORD got = 0, wrote = 0;
  for (int i = 0; i + 1 < n; i++) {
    if (!WriteFile(c->h, tx + off, (DWORD)sizes[i], &wrote, NULL) || wrote != sizes[i])
      return -1;
    off += sizes[i];
  }
  if (!TransactNamedPipe(c->h, (void *)(tx + off), (DWORD)sizes[n - 1], rx, RAW_MAX_MSG, &got,
                         NULL) ||
      got != sizes[0])
    return -1;
  off = sizes[0];
  for (int i = 1; i < n; i++) {
    if (!ReadFile(c->h, rx + off, RAW_MAX_MSG, &got, NULL) || got != sizes[i])
      return -1;
    off += sizes[i];
  }
  return 0;
}

long raw_oneway(raw_client *c, uint32_t count, const size_t *sizes, int n, size_t end_size,
                uint8_t *rx) {
  uint8_t req[13 + 4 * RAW_MAX_FRAGS];
  size_t len = raw_oneway_request(req, count, sizes, n, end_size);
  DWORD got = 0;
  if (write_msg(c->h, req, len) != 0)
    return -1;
  long bad = 0;
  for (uint64_t seq = 1; seq <= count; seq++) {
    int ok = 1, full = seq % RAW_FULL_CHECK == 0;
    for (int i = 0; i < n; i++) {
      if (!ReadFile(c->h, rx, RAW_MAX_MSG, &got, NULL) || got == 0)
        return -1;
      ok &= raw_frag_ok(rx, got, sizes[i], i, seq, full);
    }
    bad += !ok;
  }
  /* A lost or extra message shows here at the latest: the stream is out
   * of step with its end. */
  if (!ReadFile(c->h, rx, RAW_MAX_MSG, &got, NULL) || got != end_size || rx[0] != 'E')
    return -1;
  return bad;
}

void raw_close(raw_client *c, int quit_server) {
  if (!c)
    return;
  if (quit_server) {
    uint8_t q = 'Q';
    DWORD wrote;
    WriteFile(c->h, &q, 1, &wrote, NULL);
  }
  CloseHandle(c->h);
  free(c);
}
