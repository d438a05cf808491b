/* replay_main.c — runs a libFuzzer target's LLVMFuzzerTestOneInput on stored inputs,
 * without libFuzzer, so that the seeds (regression inputs among them) run as an
 * ordinary test in every build, sanitizer and valgrind runs included.
 *
 * Usage: <program> [file-or-directory...]   (default: TG_REPLAY_DIR, set at build time)
 * A directory's files are run in name order. A finding aborts (as under libFuzzer);
 * otherwise prints how many inputs ran and exits 0. */
#define _DEFAULT_SOURCE /* DT_REG */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad/tape.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    uint8_t buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    bool bad = ferror(f) || !feof(f);
    fclose(f);
    if (bad) {
        fprintf(stderr, "%s: unreadable or longer than %zu bytes\n", path, sizeof buf);
        return -1;
    }
    LLVMFuzzerTestOneInput(buf, n);
    return 0;
}

static int by_name(const struct dirent **a, const struct dirent **b) {
    return strcmp((*a)->d_name, (*b)->d_name);
}

/* Runs path, or every regular file in it; returns the count, or -1 on an I/O error. */
static int run_path(const char *path) {
    struct dirent **list;
    int n = scandir(path, &list, NULL, by_name);
    if (n < 0) return run_file(path) == 0 ? 1 : -1;
    int done = 0;
    for (int i = 0; i < n; i++) {
        char file[4096];
        snprintf(file, sizeof file, "%s/%s", path, list[i]->d_name);
        if (list[i]->d_type == DT_REG || list[i]->d_type == DT_UNKNOWN) {
            if (list[i]->d_name[0] != '.' && done >= 0) done = run_file(file) == 0 ? done + 1 : -1;
        }
        free(list[i]);
    }
    free(list);
    return done;
}

int main(int argc, char **argv) {
    LLVMFuzzerInitialize(&argc, &argv);
    char *fallback[] = {TG_REPLAY_DIR};
    char **paths = argc > 1 ? argv + 1 : fallback;
    int npaths = argc > 1 ? argc - 1 : 1, total = 0;
    for (int i = 0; i < npaths; i++) {
        int n = run_path(paths[i]);
        if (n < 0) return 1;
        total += n;
    }
    tg_tape_free();
    printf("replayed %d inputs\n", total);
    return total > 0 ? 0 : 1;
}
