/* runtime/win/security.c - who may open the pipe, who opened it, and
 * (for a client) who serves it.
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

/* ---- who the server is (client side) ---- */

/* A SID as a UTF-8 string into buf ("?" if it cannot be converted). */
static void sid_text(PSID sid, char *buf, size_t cap) {
  wchar_t *ws = NULL;
  buf[0] = '\0';
  if (sid != NULL && ConvertSidToStringSidW(sid, &ws)) {
    duct__win_narrow(ws, buf, cap);
    LocalFree(ws);
  }
  if (buf[0] == '\0')
    snprintf(buf, cap, "?");
}

/* Token information of class `what` that holds one SID (TokenUser,
 * TokenOwner) into u; the SID pointer in *sid. */
typedef union sid_info {
  TOKEN_USER user;
  TOKEN_OWNER owner;
  BYTE b[SECURITY_MAX_SID_SIZE + sizeof(TOKEN_USER)];
} sid_info;

static BOOL token_sid(HANDLE tok, TOKEN_INFORMATION_CLASS what, sid_info *u,
                      PSID *sid) {
  DWORD n = 0;
  if (!GetTokenInformation(tok, what, u, (DWORD)sizeof *u, &n))
    return FALSE;
  *sid = what == TokenUser ? u->user.User.Sid : u->owner.Owner;
  return TRUE;
}

/* The expected user as a SID (*sid NULL for none; LocalFree it). The SID
 * string functions also take SDDL's two-letter names ("SY", "BA"). */
static duct_code expected_sid(const char *expect, PSID *sid, duct__err *err) {
  *sid = NULL;
  if (expect == NULL || expect[0] == '\0')
    return DUCT_OK;
  if (!ConvertStringSidToSidA(expect, sid)) {
    *sid = NULL;
    return duct__win_msg(err, DUCT_INVALID_ARGUMENT,
                         "expect_server_user \"%.60s\" is not a SID; on "
                         "this system it is a SID string, e.g. \"S-1-5-18\"",
                         expect);
  }
  return DUCT_OK;
}

duct_code duct__win_check_expect(const char *expect, duct__err *err) {
  PSID sid;
  duct_code rc = expected_sid(expect, &sid, err);
  if (sid != NULL)
    LocalFree(sid);
  return rc;
}

duct_code duct__win_check_server(HANDLE pipe, const char *pname,
                                 const char *expect, DWORD *pid,
                                 duct__err *err) {
  PSID want;
  *pid = 0;
  duct_code rc = expected_sid(expect, &want, err);
  if (rc != DUCT_OK)
    return rc;
  rc = DUCT_PERMISSION_DENIED;
  HANDLE proc = NULL, tok = NULL, self = NULL;
  ULONG spid = 0;
  /* The process that created this instance of the pipe. It holds the
   * server end open, so it is alive and its id is not yet reused while
   * we ask. Whoever answers on the pipe is judged by that process's
   * token, not by the pipe's security descriptor, which belongs to the
   * name and so would vouch for an instance another user created. */
  if (!GetNamedPipeServerProcessId(pipe, &spid)) {
    duct__win_fail(err, GetLastError(),
                   "%s: cannot tell which process serves it "
                   "(GetNamedPipeServerProcessId); refusing to send to it",
                   pname);
    goto out;
  }
  *pid = (DWORD)spid;
  proc = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, (DWORD)spid);
  if (proc == NULL || !OpenProcessToken(proc, TOKEN_QUERY, &tok)) {
    /* Not knowing is not allowing. */
    duct__win_fail(err, GetLastError(),
                   "%s: cannot verify who serves it (process %lu: %s); "
                   "refusing to send to it", pname, (unsigned long)spid,
                   proc == NULL ? "OpenProcess" : "OpenProcessToken");
    tok = NULL;
    goto out;
  }
  sid_info su, so, me;
  PSID user = NULL, owner = NULL, my = NULL;
  if (!token_sid(tok, TokenUser, &su, &user) ||
      !token_sid(tok, TokenOwner, &so, &owner)) {
    duct__win_fail(err, GetLastError(),
                   "%s: cannot verify who serves it (reading the token of "
                   "process %lu); refusing to send to it",
                   pname, (unsigned long)spid);
    goto out;
  }
  char us[SECURITY_MAX_SID_SIZE * 4], os[SECURITY_MAX_SID_SIZE * 4];
  sid_text(user, us, sizeof us);
  sid_text(owner, os, sizeof os);
  if (want != NULL) {
    if (EqualSid(user, want) || EqualSid(owner, want)) {
      rc = DUCT_OK;
      goto out;
    }
    char ws[SECURITY_MAX_SID_SIZE * 4];
    sid_text(want, ws, sizeof ws);
    duct__win_msg(err, DUCT_PERMISSION_DENIED,
                  "server at %s runs as %s (token owner %s); expected %s "
                  "(expect_server_user)", pname, us, os, ws);
    goto out;
  }
  /* The default rule: our own user, LocalSystem, or Administrators. An
   * elevated administrator's process has its own user but Administrators
   * as the token's owner, hence the owner too. */
  if (!OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &self) ||
      !token_sid(self, TokenUser, &me, &my)) {
    duct__win_fail(err, GetLastError(),
                   "%s: reading this process's own user", pname);
    goto out;
  }
  union {
    SID sid;
    BYTE b[SECURITY_MAX_SID_SIZE];
  } sys, admins;
  DWORD n1 = sizeof sys, n2 = sizeof admins;
  if (!CreateWellKnownSid(WinLocalSystemSid, NULL, &sys, &n1) ||
      !CreateWellKnownSid(WinBuiltinAdministratorsSid, NULL, &admins, &n2)) {
    duct__win_fail(err, GetLastError(), "%s: CreateWellKnownSid", pname);
    goto out;
  }
  if (EqualSid(user, my) || EqualSid(user, &sys) || EqualSid(user, &admins) ||
      EqualSid(owner, &admins)) {
    rc = DUCT_OK;
    goto out;
  }
  char mys[SECURITY_MAX_SID_SIZE * 4];
  sid_text(my, mys, sizeof mys);
  duct__win_msg(err, DUCT_PERMISSION_DENIED,
                "server at %s runs as %s (token owner %s); expected %s "
                "(this process), S-1-5-18 (LocalSystem) or S-1-5-32-544 "
                "(Administrators)", pname, us, os, mys);
out:
  if (self != NULL)
    CloseHandle(self);
  if (tok != NULL)
    CloseHandle(tok);
  if (proc != NULL)
    CloseHandle(proc);
  if (want != NULL)
    LocalFree(want);
  return rc;
}

/* ---- the pipe's security descriptor (server side) ---- */

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
