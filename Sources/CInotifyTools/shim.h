#ifndef CKPTD_CINOTIFYTOOLS_SHIM_H
#define CKPTD_CINOTIFYTOOLS_SHIM_H
#include <sys/inotify.h>
#include <inotifytools/inotifytools.h>
#endif
