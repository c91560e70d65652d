/* runtime/win/win.h - what the files of the Windows transport share.
 * Internal to runtime/win/. */
#ifndef DUCT_RUNTIME_WIN_WIN_H
#define DUCT_RUNTIME_WIN_WIN_H

#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>

#include "runtime/transport.h"

/* The size each end of a pipe asks the system to buffer. The protocol's
 * default frame is 64 KiB; a buffer that holds one whole frame lets a
 * writer finish without waiting for the reader in the common case. The
 * system treats the number as a hint (it is charged to nonpaged pool). */
#define DUCT__WIN_PIPE_BUFFER 65536

/* The longest pipe name Windows accepts, in UTF-16 units, \\.\pipe\ included. */
#define DUCT__WIN_PIPE_NAME_MAX 256

/* ---- error.c: the one place Win32 errors become duct codes ---- */

/* The duct code for a Win32 error number. */
duct_code duct__win_code(DWORD e);
/* Fills err (may be NULL) with "<what>: <system text> (error N)" and
 * returns duct__win_code(e). `what` is printf-style. */
duct_code duct__win_fail(duct__err *err, DWORD e, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Fills err (may be NULL) with a message of our own and returns code. */
duct_code duct__win_msg(duct__err *err, duct_code code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Text for a Win32 error into buf, "<system text> (error N)". */
void duct__win_strerror(DWORD e, char *buf, size_t cap);

/* ---- addr.c ---- */

/* Maps a duct address (UTF-8) to a full pipe name (docs/GUIDE.md's
 * address table): "calc" becomes \\.\pipe\calc; "\\.\pipe\x" is kept.
 * *out is UTF-16 from duct__malloc (duct__free). DUCT_INVALID_ARGUMENT,
 * with err saying what to write instead, for an empty, malformed or too
 * long address, a POSIX path, a remote pipe or file path, a name with
 * '/' or '\\' or a control character, "." or "..". */
duct_code duct__win_pipe_name(const char *address, wchar_t **out,
                              duct__err *err);
/* UTF-16 to UTF-8 into buf (always terminated; "" on failure). */
void duct__win_narrow(const wchar_t *w, char *buf, size_t cap);

/* ---- security.c ---- */

/* Builds the security descriptor for the pipe from the listen options:
 * the default (own user + LocalSystem), an SDDL DACL, or an explicit NULL
 * DACL. *sd is freed with LocalFree. */
duct_code duct__win_pipe_sd(const duct__listen_opts *o, const wchar_t *name,
                            PSECURITY_DESCRIPTOR *sd, duct__err *err);
/* The SID string of the user a client pipe end belongs to, into buf
 * (UTF-8; "" if nothing worked). Impersonates the client on the calling
 * thread and reverts; falls back to the client process's token. */
void duct__win_client_user(HANDLE pipe, DWORD pid, char *buf, size_t cap);
/* The SID string of this process's user (UTF-8) into buf; 0 on success. */
int duct__win_self_user(char *buf, size_t cap);
/* Client side: checks who serves the connected pipe handle, before
 * anything is sent (duct/client.h, expect_server_user). The server
 * process (GetNamedPipeServerProcessId) is opened and its token's user
 * and owner read: with `expect` NULL or "" the user must be this
 * process's own, LocalSystem or Administrators (or the owner
 * Administrators); otherwise the user or owner must be the SID `expect`
 * names. DUCT_PERMISSION_DENIED with both SIDs in err when it is not, and
 * when the process or its token cannot be read (never allowed unseen);
 * DUCT_INVALID_ARGUMENT when `expect` is not a SID. *pid gets the server
 * process id. `pname` names the pipe in messages. */
duct_code duct__win_check_server(HANDLE pipe, const char *pname,
                                 const char *expect, DWORD *pid,
                                 duct__err *err);
/* DUCT_INVALID_ARGUMENT (err says why) unless `expect` is NULL, "" or a
 * SID string duct__win_check_server accepts. */
duct_code duct__win_check_expect(const char *expect, duct__err *err);

#endif /* DUCT_RUNTIME_WIN_WIN_H */
