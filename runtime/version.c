/* The library's own version, for programs that check at run time which
 * duct they were linked or loaded with (duct/version.h). */
#include "duct/version.h"

unsigned duct_version(void) { return DUCT_VERSION_NUMBER; }

const char *duct_version_string(void) { return DUCT_VERSION_STRING; }
