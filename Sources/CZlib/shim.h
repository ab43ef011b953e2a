#ifndef CKPTD_CZLIB_SHIM_H
#define CKPTD_CZLIB_SHIM_H
#include <zlib.h>
#endif
