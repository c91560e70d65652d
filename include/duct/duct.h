/* duct/duct.h - everything public in one include. */
#ifndef DUCT_DUCT_H
#define DUCT_DUCT_H
#include "duct/version.h"
#include "duct/status.h"
#include "duct/service.h"
#include "duct/client.h"
#include "duct/server.h"
#endif
