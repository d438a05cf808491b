/* fuzz_input.h — hands a fuzz input to a loader that takes a path.
 *
 * The loaders of tapegrad read files by name, so each input is written to a memory
 * file (memfd) and the loader is given "/proc/self/fd/N"; that path is private to the
 * process, so several fuzzing jobs can run side by side, and nothing touches the disk.
 * Where memfd is missing a per-process file under /tmp is used instead. */
#ifndef TG_FUZZ_INPUT_H
#define TG_FUZZ_INPUT_H

#ifndef _GNU_SOURCE
#error "define _GNU_SOURCE before the first #include"
#endif
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>

static int fuzz_fd = -1;
static char fuzz_path[64];
static int fuzz_path_is_file; /* the /tmp fallback, removed at exit */

static void fuzz_input_remove(void) {
    if (fuzz_path_is_file) unlink(fuzz_path);
}

/* Writes the n bytes of data as the whole content of the input file and returns its
 * path. Aborts (a fuzzer setup failure, not a finding) if the file cannot be written. */
static const char *fuzz_input_path(const uint8_t *data, size_t n) {
    if (fuzz_fd < 0) {
#ifdef MFD_CLOEXEC
        fuzz_fd = memfd_create("tg_fuzz_input", MFD_CLOEXEC);
        if (fuzz_fd >= 0) snprintf(fuzz_path, sizeof fuzz_path, "/proc/self/fd/%d", fuzz_fd);
#endif
        if (fuzz_fd < 0) {
            snprintf(fuzz_path, sizeof fuzz_path, "/tmp/tg_fuzz_input.%ld", (long)getpid());
            fuzz_fd = open(fuzz_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
            if (fuzz_fd >= 0) {
                fuzz_path_is_file = 1;
                atexit(fuzz_input_remove);
            }
        }
        if (fuzz_fd < 0) {
            perror("fuzz: cannot create the input file");
            abort();
        }
    }
    if (ftruncate(fuzz_fd, 0) != 0) abort();
    size_t done = 0;
    while (done < n) {
        ssize_t w = pwrite(fuzz_fd, data + done, n - done, (off_t)done);
        if (w <= 0) abort();
        done += (size_t)w;
    }
    return fuzz_path;
}

#endif
