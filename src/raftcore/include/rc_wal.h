/* Positional I/O for the write-ahead log: whole-buffer writes and reads that retry on EINTR
 * and short transfers, data syncs, and zero-filled preallocation. Every function returns 0
 * on success or a positive errno. They touch no Python object and run without the GIL. */
#ifndef RC_WAL_H
#define RC_WAL_H

#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

static int rc_pwrite_all(int fd, const unsigned char *buf, size_t len, int64_t offset) {
    while (len > 0) {
        ssize_t n = pwrite(fd, buf, len, (off_t)offset);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (n == 0) return EIO;
        buf += n;
        len -= (size_t)n;
        offset += n;
    }
    return 0;
}

/* Reads exactly len bytes; a file shorter than that is EIO (the index said they exist). */
static int rc_pread_all(int fd, unsigned char *buf, size_t len, int64_t offset) {
    while (len > 0) {
        ssize_t n = pread(fd, buf, len, (off_t)offset);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (n == 0) return EIO;
        buf += n;
        len -= (size_t)n;
        offset += n;
    }
    return 0;
}

static int rc_datasync(int fd) {
#if defined(__APPLE__)
    /* macOS fsync does not reach the platter; F_FULLFSYNC does. */
    if (fcntl(fd, F_FULLFSYNC) == 0) return 0;
    return fsync(fd) == 0 ? 0 : errno;
#else
    int r;
    do { r = fdatasync(fd); } while (r != 0 && errno == EINTR);
    return r == 0 ? 0 : errno;
#endif
}

/* Make [offset, offset + len) allocated and reading as zeros. */
static int rc_allocate(int fd, int64_t offset, int64_t len) {
#if defined(__linux__)
    int r = posix_fallocate(fd, (off_t)offset, (off_t)len);
    if (r == 0) return 0;
    if (r != EOPNOTSUPP && r != EINVAL) return r;
#endif
    /* Fallback: extending a file with ftruncate yields zeros (not reserved on disk). */
    {
        off_t end = (off_t)(offset + len);
        off_t size = lseek(fd, 0, SEEK_END);
        if (size < 0) return errno;
        if (size < end && ftruncate(fd, end) != 0) return errno;
    }
    return 0;
}

/* Write zeros over [offset, offset + len): used to pre-zero segments so that later writes
 * overwrite allocated blocks (no extent conversion on every sync). */
static int rc_write_zeros(int fd, int64_t offset, int64_t len) {
    static const unsigned char zeros[65536];
    while (len > 0) {
        size_t step = len < (int64_t)sizeof zeros ? (size_t)len : sizeof zeros;
        int r = rc_pwrite_all(fd, zeros, step, offset);
        if (r) return r;
        offset += (int64_t)step;
        len -= (int64_t)step;
    }
    return 0;
}

static int rc_truncate(int fd, int64_t size) {
    return ftruncate(fd, (off_t)size) == 0 ? 0 : errno;
}

/* True when every byte of buf[0:len) is zero. */
static int rc_all_zero(const unsigned char *buf, size_t len) {
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, buf + i, 8);
        if (w) return 0;
    }
    for (; i < len; i++)
        if (buf[i]) return 0;
    return 1;
}
#endif
