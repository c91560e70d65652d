/* A stand-in for protoc, for the duct tool's --proto path where no real
 * protoc can be waited for: under Wine, a Linux protoc starts without a
 * process handle, and Debian has no Windows protoc. It checks what duct
 * asks of it the way protoc would (the flags duct must pass, the .proto
 * files existing) and writes the descriptor set that the real protoc made
 * at build time (FAKE_PROTOC_SET). Exit codes as protoc's: 0, or 1 with a
 * message on stderr. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
  const char *out = NULL;
  int imports = 0, files = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--include_imports") == 0)
      imports = 1;
    else if (strncmp(a, "--descriptor_set_out=", 21) == 0)
      out = a + 21;
    else if (strncmp(a, "-I", 2) == 0 && a[2])
      continue;
    else if (a[0] == '-') {
      fprintf(stderr, "Unknown flag: %s\n", a);
      return 1;
    } else {
      FILE *f = fopen(a, "rb");
      if (!f) {
        fprintf(stderr, "%s: File not found.\n", a);
        return 1;
      }
      fclose(f);
      files++;
    }
  }
  if (!out || !imports || !files) {
    fprintf(stderr, "fake protoc: duct must pass --include_imports, --descriptor_set_out=F "
                    "and at least one .proto file\n");
    return 1;
  }
  FILE *in = fopen(FAKE_PROTOC_SET, "rb"), *o = fopen(out, "wb");
  if (!in || !o) {
    fprintf(stderr, "fake protoc: cannot copy %s to %s\n", FAKE_PROTOC_SET, out);
    return 1;
  }
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, in)) > 0)
    fwrite(buf, 1, n, o);
  fclose(in);
  return fclose(o) == 0 ? 0 : 1;
}
