/* runtime/win/security.c - who may open the pipe, and who opened it.
 *
 * The default DACL grants GENERIC_ALL to the server's own user (read from
 * the process token) and to LocalSystem, and to nobody else; "P" protects
 * it from inheritance. Generic rights in an SDDL ACE are mapped to the
 * pipe's specific rights when the pipe is created, so reading the DACL
 * back shows FILE_ALL_ACCESS (0x1F01FF), which includes
 * FILE_CREATE_PIPE_INSTANCE - the right the server itself needs for every
 * instance after the first. A NULL DACL (anyone, from anywhere) is built
 * only when the caller asks for it by name. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/win/win.h"
/* After <windows.h>, which it needs but does not include. */
#include <sddl.h>
#include "runtime/alloc.h"

/* The user SID of a token as a UTF-8 string ("S-1-5-21-..."). */
static int token_user(HANDLE token, char *buf, size_t cap) {
  union {
    TOKEN_USER tu;
    BYTE b[SECURITY_MAX_SID_SIZE + sizeof(TOKEN_USER)];
  } u;
  DWORD n = 0;
  wchar_t *ws = NULL;
  if (!GetTokenInformation(token, TokenUser, &u, (DWORD)sizeof u, &n))
    return -1;
  if (!ConvertSidToStringSidW(u.tu.User.Sid, &ws))
    return -1;
  duct__win_narrow(ws, buf, cap);
  LocalFree(ws);
  return buf[0] != '\0' ? 0 : -1;
}

int duct__win_self_user(char *buf, size_t cap) {
  HANDLE tok;
  buf[0] = '\0';
  if (!OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &tok))
    return -1;
  int rc = token_user(tok, buf, cap);
  CloseHandle(tok);
  return rc;
}

void duct__win_client_user(HANDLE pipe, DWORD pid, char *buf, size_t cap) {
  HANDLE tok = NULL;
  buf[0] = '\0';
  /* duct's clients open the pipe with SECURITY_SQOS_PRESENT |
   * SECURITY_IDENTIFICATION and static context tracking (no
   * SECURITY_CONTEXT_TRACKING), so the pipe captures their identity at
   * CreateFile time and the server can read it as soon as it accepts.
   * Impersonating places the client's token on this thread; OpenAsSelf =
   * TRUE opens it with the process's own rights, which an
   * identification-level token requires. */
  if (ImpersonateNamedPipeClient(pipe)) {
    if (!OpenThreadToken(GetCurrentThread(), TOKEN_QUERY, TRUE, &tok))
      tok = NULL;
    /* Revert before anything else can run on this thread: the worker must
     * never call the core while wearing the client's identity. */
    RevertToSelf();
    if (tok != NULL) {
      int rc = token_user(tok, buf, cap);
      CloseHandle(tok);
      if (rc == 0)
        return;
    }
  }
  /* Fallback: the token of the client's process. A foreign client that
   * opened the pipe with dynamic tracking (the default without
   * SECURITY_SQOS_PRESENT) cannot be impersonated until it has written
   * (ERROR_CANNOT_IMPERSONATE). This is weaker - a client thread may be
   * impersonating someone else, and a process id can be reused after
   * the client exits - so it is only a fallback. */
  if (pid == 0)
    return;
  HANDLE proc = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, pid);
  if (proc == NULL)
    return;
  if (OpenProcessToken(proc, TOKEN_QUERY, &tok)) {
    token_user(tok, buf, cap);
    CloseHandle(tok);
  }
  CloseHandle(proc);
}

static duct_code wide(const char *s, wchar_t **out, duct__err *err) {
  int n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, NULL, 0);
  if (n <= 0)
    return duct__win_msg(err, DUCT_INVALID_ARGUMENT,
                         "sddl option is not valid UTF-8");
  *out = duct__malloc((size_t)n * sizeof **out);
  if (*out == NULL)
    return duct__win_msg(err, DUCT_RESOURCE_EXHAUSTED, "out of memory");
  MultiByteToWideChar(CP_UTF8, 0, s, -1, *out, n);
  return DUCT_OK;
}

duct_code duct__win_pipe_sd(const duct__listen_opts *o, const wchar_t *name,
                            PSECURITY_DESCRIPTOR *sd, duct__err *err) {
  char pname[DUCT__WIN_PIPE_NAME_MAX * 3 + 1];
  duct__win_narrow(name, pname, sizeof pname);
  *sd = NULL;
  if (o->null_dacl && o->sddl != NULL)
    return duct__win_msg(err, DUCT_INVALID_ARGUMENT,
                         "%s: sddl and null_dacl are exclusive", pname);
  if (o->null_dacl) {
    /* A descriptor whose DACL is present but NULL grants everyone
     * everything. Asked for by name only (see duct/server.h). */
    *sd = LocalAlloc(LPTR, SECURITY_DESCRIPTOR_MIN_LENGTH);
    if (*sd == NULL)
      return duct__win_msg(err, DUCT_RESOURCE_EXHAUSTED, "out of memory");
    if (!InitializeSecurityDescriptor(*sd, SECURITY_DESCRIPTOR_REVISION) ||
        !SetSecurityDescriptorDacl(*sd, TRUE, NULL, FALSE)) {
      DWORD e = GetLastError();
      LocalFree(*sd);
      *sd = NULL;
      return duct__win_fail(err, e, "%s: null DACL", pname);
    }
    return DUCT_OK;
  }

  wchar_t *sddl = NULL;
  if (o->sddl != NULL) {
    duct_code rc = wide(o->sddl, &sddl, err);
    if (rc != DUCT_OK)
      return rc;
  } else {
    char me[SECURITY_MAX_SID_SIZE * 4];
    if (duct__win_self_user(me, sizeof me) != 0)
      return duct__win_fail(err, GetLastError(),
                            "%s: reading this process's user SID", pname);
    char text[64 + sizeof me];
    snprintf(text, sizeof text, "D:P(A;;GA;;;SY)(A;;GA;;;%s)", me);
    duct_code rc = wide(text, &sddl, err);
    if (rc != DUCT_OK)
      return rc;
  }
  BOOL ok = ConvertStringSecurityDescriptorToSecurityDescriptorW(
      sddl, SDDL_REVISION_1, sd, NULL);
  DWORD e = GetLastError();
  duct__free(sddl);
  if (!ok) {
    *sd = NULL;
    if (o->sddl != NULL) {
      char why[160];
      duct__win_strerror(e, why, sizeof why);
      return duct__win_msg(err, DUCT_INVALID_ARGUMENT,
                           "%s: invalid sddl \"%.60s\": %s", pname, o->sddl,
                           why);
    }
    return duct__win_fail(err, e, "%s: building the default DACL", pname);
  }
  /* An SDDL string without "D:" (or with D:NO_ACCESS_CONTROL) yields no
   * DACL or a NULL one, which would silently mean "everyone". Refuse it:
   * that is what null_dacl is for. */
  BOOL present = FALSE, defaulted = FALSE;
  PACL dacl = NULL;
  if (!GetSecurityDescriptorDacl(*sd, &present, &dacl, &defaulted) ||
      !present || dacl == NULL) {
    LocalFree(*sd);
    *sd = NULL;
    return duct__win_msg(err, DUCT_INVALID_ARGUMENT,
                         "%s: sddl \"%.60s\" has no DACL (\"D:...\"); a "
                         "missing DACL would let anyone connect",
                         pname, o->sddl != NULL ? o->sddl : "");
  }
  return DUCT_OK;
}
