#ifndef CKPTD_CLINUX_SHIM_H
#define CKPTD_CLINUX_SHIM_H
/* Linux calls that Swift's Glibc module does not export (they need _GNU_SOURCE), wrapped once here. */
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
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

/* mincore(2) over a file range: which of its pages are in the page cache. `offset` must be page-aligned; `vec`
   gets one byte per page (bit 0 set: resident). Maps the range read-only for the call and unmaps it. */
static inline int ckptd_resident_pages(int fd, long long offset, size_t length, unsigned char *vec) {
  if (length == 0) return 0;
  void *map = mmap(NULL, length, PROT_READ, MAP_SHARED, fd, (off_t)offset);
  if (map == MAP_FAILED) return -1;
  int result = mincore(map, length, vec);
  int saved = errno;
  munmap(map, length);
  errno = saved;
  return result;
}

/* ioprio_set/ioprio_get(IOPRIO_WHO_PROCESS, tid): a thread's I/O scheduling class (1 realtime, 2 best effort,
   3 idle) and level, encoded as `class << 13 | level`; tid 0 is the calling thread. */
static inline int ckptd_ioprio_set_thread(int tid, int ioclass, int level) {
  return (int)syscall(SYS_ioprio_set, 1 /* IOPRIO_WHO_PROCESS */, tid, (ioclass << 13) | level);
}
static inline int ckptd_ioprio_get_thread(int tid) {
  return (int)syscall(SYS_ioprio_get, 1 /* IOPRIO_WHO_PROCESS */, tid);
}

/* A thread's nice value (Linux: PRIO_PROCESS with a thread id) and scheduling policy (SCHED_BATCH and SCHED_IDLE
   need _GNU_SOURCE in <sched.h>, hence the numbers). tid 0 is the calling thread. */
static inline int ckptd_set_nice_thread(int tid, int nice) { return setpriority(PRIO_PROCESS, (id_t)tid, nice); }
static inline int ckptd_get_nice_thread(int tid) {
  errno = 0;
  return getpriority(PRIO_PROCESS, (id_t)tid);
}
/* A policy without a static priority (3 SCHED_BATCH, 5 SCHED_IDLE) for one thread; its policy read back without
   the SCHED_RESET_ON_FORK flag (-1 with errno set on failure). */
static inline int ckptd_set_scheduler_thread(int tid, int policy) {
  int param[1] = {0}; /* struct sched_param: one int, sched_priority (0 for SCHED_BATCH and SCHED_IDLE) */
  return (int)syscall(SYS_sched_setscheduler, tid, policy, param);
}
static inline int ckptd_get_scheduler_thread(int tid) {
  int policy = (int)syscall(SYS_sched_getscheduler, tid);
  return policy < 0 ? policy : (policy & ~0x40000000 /* SCHED_RESET_ON_FORK */);
}
static inline int ckptd_gettid(void) { return (int)syscall(SYS_gettid); }
#endif
