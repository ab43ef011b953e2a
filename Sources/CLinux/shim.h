#ifndef CKPTD_CLINUX_SHIM_H
#define CKPTD_CLINUX_SHIM_H
/* Linux calls that Swift's Glibc module does not export (they need _GNU_SOURCE), wrapped once here. */
#include <errno.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/vfs.h> /* statfs: the file system's magic number (f_type), which statvfs lacks */
#include <sys/xattr.h> /* fsetxattr, lgetxattr: ckptd marks the files it wrote */
#include <unistd.h>

/* renameat2(RENAME_NOREPLACE): rename that fails with EEXIST instead of replacing. */
static inline int ckptd_rename_noreplace(const char *from, const char *to) {
  return (int)syscall(SYS_renameat2, AT_FDCWD, from, AT_FDCWD, to, 1u /* RENAME_NOREPLACE */);
}

/* copy_file_range(2): in-kernel copy between two descriptors at explicit offsets. */
static inline long ckptd_copy_file_range(int fd_in, long long *off_in, int fd_out, long long *off_out,
                                         size_t len) {
  return syscall(SYS_copy_file_range, fd_in, (loff_t *)off_in, fd_out, (loff_t *)off_out, len, 0u);
}

/* sync_file_range(SYNC_FILE_RANGE_WRITE): start writing back a range of dirty pages without waiting, so
   that the disk works while the next bytes are produced and the final fsync has little left to do. */
static inline int ckptd_start_writeback(int fd, long long offset, long long count) {
  return (int)syscall(SYS_sync_file_range, fd, (loff_t)offset, (loff_t)count, 2u /* SYNC_FILE_RANGE_WRITE */);
}

/* statfs(2) f_type of the file system holding `path`; -1 with errno set on failure. */
static inline long long ckptd_statfs_type(const char *path) {
  struct statfs info;
  if (statfs(path, &info) != 0) return -1;
  return (long long)(unsigned long)info.f_type;
}
#endif
