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
      sizes[n++] = got;
      off += got;
      if (buf[off - got] == 'L')
        break;
    }
    off = 0;
    for (int i = 0; i < n; i++) {
      DWORD wrote = 0;
      if (!WriteFile(h, buf + off, (DWORD)sizes[i], &wrote, NULL) || wrote != sizes[i])
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
