/* duct_stop_signals_catch/wait on Windows: a console control handler sets
 * an event the main thread waits on. Returning TRUE for CTRL_CLOSE_EVENT
 * buys the process a few seconds (the system's grace period) to stop
 * gracefully before it is ended. */
#define WIN32_LEAN_AND_MEAN
#include <windows.h>

#include "duct/server.h"

static HANDLE stop_event;

static BOOL WINAPI on_ctrl(DWORD type) {
  switch (type) {
  case CTRL_C_EVENT:
  case CTRL_BREAK_EVENT:
  case CTRL_CLOSE_EVENT:
  case CTRL_SHUTDOWN_EVENT:
    SetEvent(stop_event);
    return TRUE;
  default:
    return FALSE;
  }
}

duct_code duct_stop_signals_catch(void) {
  if (!stop_event && !(stop_event = CreateEventW(NULL, TRUE, FALSE, NULL)))
    return DUCT_INTERNAL;
  return SetConsoleCtrlHandler(on_ctrl, TRUE) ? DUCT_OK : DUCT_INTERNAL;
}

void duct_stop_signals_wait(void) {
  if (!stop_event && duct_stop_signals_catch() != DUCT_OK)
    return;
  WaitForSingleObject(stop_event, INFINITE);
}

int duct_stop_signals_pending(void) {
  return stop_event && WaitForSingleObject(stop_event, 0) == WAIT_OBJECT_0;
}
