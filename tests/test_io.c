/* test_io.c — safetensors files and model checkpoints (io.h, tg_model_save/load). */
#define _POSIX_C_SOURCE 200809L /* fork, kill, mkdtemp, nanosleep, clock_gettime */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <tapegrad/io.h>
#include <tapegrad/nn.h>

#include "testutil.h"

static bool same_data(const tg_tensor *a, const tg_tensor *b) {
    return a->dtype == b->dtype && tg_same_shape(a, b) &&
           memcmp(a->data, b->data, (size_t)a->numel * tg_dtype_size(a->dtype)) == 0;
}

static unsigned char *slurp(const char *path, long *len) {
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    *len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)*len + 1);
    ck_assert_uint_eq(fread(buf, 1, (size_t)*len, f), (size_t)*len);
    fclose(f);
    buf[*len] = 0;
    return buf;
}

/* Writes a hand-made file: header length hlen (little-endian), the header text, then
 * ndata bytes of data. */
static void write_raw(const char *path, uint64_t hlen, const char *header, const void *data,
                      size_t ndata) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < 8; i++)
        fputc((int)((hlen >> (8 * i)) & 0xff), f);
    fwrite(header, 1, strlen(header), f);
    if (ndata) fwrite(data, 1, ndata, f);
    fclose(f);
}

static void write_st(const char *path, const char *header, const void *data, size_t ndata) {
    write_raw(path, strlen(header), header, data, ndata);
}

/* ---------------- round trips ---------------- */

START_TEST(roundtrip_all_dtypes) {
    tg_tensor *a = tgt_rand(TG_F32, TG_SHAPE(3, 4), -1, 1);
    tg_tensor *b = tgt_rand(TG_F64, TG_SHAPE(2, 1, 5), -1, 1);
    tg_tensor *c = tg_tensor_from(TG_I64, TG_SHAPE(3), (int64_t[]){-7, 0, INT64_MAX});
    tg_tensor *d = tg_scalar(TG_F64, 3.5);
    tg_tensor *e = tg_tensor_new(TG_F32, TG_SHAPE(0, 3));
    const char *names[] = {"a", "layer.b", "c", "scalar", "empty"};
    tg_tensor *src[] = {a, b, c, d, e};
    ck_assert_int_eq(tg_safetensors_save("test_io_rt.safetensors", 5, names, src), 0);

    tg_tensor *dst[5];
    for (int i = 0; i < 5; i++) {
        dst[i] = tg_tensor_new(src[i]->dtype, src[i]->ndim, src[i]->shape);
        tg_tensor_fill(dst[i], 42);
    }
    /* Load in another order than saved. */
    const char *rnames[] = {names[4], names[3], names[2], names[1], names[0]};
    tg_tensor *rdst[] = {dst[4], dst[3], dst[2], dst[1], dst[0]};
    ck_assert_int_eq(tg_safetensors_load("test_io_rt.safetensors", 5, rnames, rdst), 0);
    for (int i = 0; i < 5; i++)
        ck_assert_msg(same_data(src[i], dst[i]), "tensor %s", names[i]);

    /* The layout: u64 header length (a multiple of 8), a JSON object, then the data
     * packed in order: a at 0, b at 48, c at 128, the scalar at 152. */
    long len;
    unsigned char *buf = slurp("test_io_rt.safetensors", &len);
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++)
        hlen |= (uint64_t)buf[i] << (8 * i);
    ck_assert_uint_eq(hlen % 8, 0);
    ck_assert_int_eq(buf[8], '{');
    ck_assert_uint_eq((uint64_t)len, 8 + hlen + 48 + 80 + 24 + 8);
    const char *hdr = (const char *)buf + 8;
    ck_assert_ptr_nonnull(
        strstr(hdr, "\"a\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[0,48]}"));
    ck_assert_ptr_nonnull(
        strstr(hdr, "\"scalar\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[152,160]}"));
    ck_assert_ptr_nonnull(strstr(hdr, "\"c\":{\"dtype\":\"I64\",\"shape\":[3]"));
    ck_assert_ptr_nonnull(strstr(hdr, "\"__metadata__\":{"));
    ck_assert_int_eq(memcmp(buf + 8 + hlen, a->data, 48), 0);
    free(buf);

    remove("test_io_rt.safetensors");
    for (int i = 0; i < 5; i++) {
        tg_tensor_free(src[i]);
        tg_tensor_free(dst[i]);
    }
    tg_tape_reset();
}
END_TEST

START_TEST(save_is_atomic_and_overwrites) {
    mkdir("test_io_dir", 0755);
    tg_tensor *a = tg_tensor_from(TG_F64, TG_SHAPE(2), (double[]){1, 2});
    const char *names[] = {"a"};
    ck_assert_int_eq(tg_safetensors_save("test_io_dir/x.safetensors", 1, names, &a), 0);
    tg_tensor_set(a, 0, 10);
    ck_assert_int_eq(tg_safetensors_save("test_io_dir/x.safetensors", 1, names, &a), 0);
    tg_tensor *b = tg_tensor_new(TG_F64, TG_SHAPE(2));
    ck_assert_int_eq(tg_safetensors_load("test_io_dir/x.safetensors", 1, names, &b), 0);
    tgt_assert_tensor(b, (double[]){10, 2}, 0.0);
    /* No temporary file is left behind, after success or failure. */
    tg_tensor *bad[] = {a, NULL};
    ck_assert_int_error(
        tg_safetensors_save("test_io_dir/y.safetensors", 2, (const char *[]){"a", "b"}, bad),
        "tg_safetensors_save", "NULL");
    DIR *d = opendir("test_io_dir");
    ck_assert_ptr_nonnull(d);
    int files = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.') {
            files++;
            ck_assert_str_eq(e->d_name, "x.safetensors");
        }
    closedir(d);
    ck_assert_int_eq(files, 1);
    struct stat st;
    ck_assert_int_eq(stat("test_io_dir/x.safetensors", &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0644);
    remove("test_io_dir/x.safetensors");
    rmdir("test_io_dir");
    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_tape_reset();
}
END_TEST

START_TEST(save_errors) {
    tg_tensor *a = tg_scalar(TG_F32, 1), *b = tg_scalar(TG_F32, 2);
    tg_tensor *ab[] = {a, b};
    ck_assert_int_error(
        tg_safetensors_save("test_io_e.safetensors", 2, (const char *[]){"w", "w"}, ab),
        "tg_safetensors_save", "\"w\" appears twice");
    ck_assert_int_error(
        tg_safetensors_save("test_io_e.safetensors", 2, (const char *[]){"w", ""}, ab),
        "empty or reserved name");
    ck_assert_int_error(
        tg_safetensors_save("test_io_e.safetensors", 1, (const char *[]){"__metadata__"}, ab),
        "reserved name");
    ck_assert_int_error(
        tg_safetensors_save("test_io_no_such_dir/x.safetensors", 1, (const char *[]){"w"}, ab),
        "tg_safetensors_save", "test_io_no_such_dir/x.safetensors", "No such file or directory");
    ck_assert_int_error(tg_safetensors_save(NULL, 1, (const char *[]){"w"}, ab), "NULL");
    ck_assert_int_error(tg_safetensors_save("x", -1, NULL, NULL), "n >= 0");
    FILE *f = fopen("test_io_e.safetensors", "rb");
    ck_assert_ptr_null(f);
    /* n = 0 is a valid, empty file. */
    ck_assert_int_eq(tg_safetensors_save("test_io_e.safetensors", 0, NULL, NULL), 0);
    ck_assert_int_eq(tg_safetensors_load("test_io_e.safetensors", 0, NULL, NULL), 0);
    remove("test_io_e.safetensors");
    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_tape_reset();
}
END_TEST

/* ---------------- bad files ---------------- */

/* Every case loads {"w": F32 [2], "b": F32 [1]} into tensors holding 7, 8 and 9, and
 * must fail with the given fragment, leaving them untouched. */
static void check_bad(const char *what, const char *fragment) {
    tg_tensor *w = tg_tensor_from(TG_F32, TG_SHAPE(2), (float[]){7, 8});
    tg_tensor *b = tg_tensor_from(TG_F32, TG_SHAPE(1), (float[]){9});
    tg_clear_error();
    int rc = tg_safetensors_load("test_io_bad.safetensors", 2, (const char *[]){"w", "b"},
                                 (tg_tensor *[]){w, b});
    ck_assert_msg(rc == -1, "%s: load returned %d", what, rc);
    const char *frags[] = {"tg_safetensors_load", "test_io_bad.safetensors", fragment};
    tgt_assert_error_has(what, frags, 3);
    tgt_assert_tensor(w, (double[]){7, 8}, 0.0);
    tgt_assert_tensor(b, (double[]){9}, 0.0);
    tg_tensor_free(w);
    tg_tensor_free(b);
}

static const float DATA[3] = {1, 2, 3};
#define GOOD_W "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"
#define GOOD_B "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}"

START_TEST(load_bad_files) {
    const char *p = "test_io_bad.safetensors";
    /* The good file loads, so each case below fails for its own reason. */
    write_st(p, "{" GOOD_W "," GOOD_B "}", DATA, 12);
    tg_tensor *w = tg_tensor_new(TG_F32, TG_SHAPE(2)), *b = tg_tensor_new(TG_F32, TG_SHAPE(1));
    ck_assert_int_eq(tg_safetensors_load(p, 2, (const char *[]){"w", "b"}, (tg_tensor *[]){w, b}),
                     0);
    tgt_assert_tensor(w, (double[]){1, 2}, 0.0);
    tgt_assert_tensor(b, (double[]){3}, 0.0);
    tg_tensor_free(w);
    tg_tensor_free(b);

    remove(p);
    check_bad("missing file", "No such file");

    FILE *f = fopen(p, "wb");
    fwrite("\x10\x00\x00", 1, 3, f);
    fclose(f);
    check_bad("short length", "truncated");

    write_raw(p, 1ull << 40, "{}", NULL, 0);
    check_bad("absurd header length", "absurd");

    write_raw(p, 500, "{" GOOD_W "}", NULL, 0);
    check_bad("header past the end", "does not fit");

    write_st(p, "{\"w\":{\"dtype\":\"F32\",", DATA, 12);
    check_bad("invalid JSON", "not a valid JSON object");

    write_st(p, "[1, 2, 3]", DATA, 12);
    check_bad("JSON array", "not a valid JSON object");

    write_st(p, "{" GOOD_W "}", DATA, 8);
    check_bad("missing tensor", "no tensor named \"b\"");

    write_st(p,
             "{" GOOD_W "," GOOD_B ",\"c\":{\"dtype\":\"F32\",\"shape\":[1],"
             "\"data_offsets\":[12,16]}}",
             DATA, 12);
    check_bad("extra tensor, short data", "ends at byte 16");
    {
        float more[4] = {1, 2, 3, 4};
        write_st(p,
                 "{" GOOD_W "," GOOD_B ",\"c\":{\"dtype\":\"F32\",\"shape\":[1],"
                 "\"data_offsets\":[12,16]}}",
                 more, 16);
        check_bad("extra tensor", "\"c\" that was not asked for");
    }

    write_st(p, "{\"w\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}," GOOD_B "}", DATA,
             12);
    check_bad("wrong dtype", "\"w\" is f64 [1] in the file but the tensor is f32 [2]");

    write_st(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[0,8]}," GOOD_B "}",
             DATA, 12);
    check_bad("wrong shape", "\"w\" is f32 [1,2] in the file");

    write_st(p, "{\"w\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[0,8]}," GOOD_B "}",
             DATA, 12);
    check_bad("unsupported dtype", "dtype \"BF16\"");

    write_st(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}," GOOD_B "}", DATA, 12);
    check_bad("no offsets", "lacks");

    write_st(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}," GOOD_B "}",
             DATA, 12);
    check_bad("negative dim", "shape[0] is not a non-negative integer");

    write_st(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,9]}," GOOD_B "}",
             DATA, 12);
    check_bad("three offsets", "data_offsets must be");

    write_st(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}," GOOD_B "}", DATA,
             12);
    check_bad("reversed offsets", "data_offsets must be");

    write_st(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,12]}," GOOD_B "}",
             DATA, 12);
    check_bad("size mismatch", "span 12 bytes but dtype F32 and its shape need 8");

    write_st(p, "{" GOOD_W ",\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", DATA,
             12);
    check_bad("overlap", "data of \"b\" [4, 8) overlaps");

    write_st(p,
             "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
             "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]}}",
             DATA, 12);
    check_bad("gap", "gap");

    write_st(p,
             "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
             "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,1e30]}}",
             DATA, 12);
    check_bad("offset out of range", "data_offsets must be");

    write_st(p, "{" GOOD_W "," GOOD_B "}", DATA, 10);
    check_bad("truncated data", "truncated");

    {
        float more[4] = {1, 2, 3, 4};
        write_st(p, "{" GOOD_W "," GOOD_B "}", more, 16);
        check_bad("trailing bytes", "cover 12 bytes of data but the file holds 16");
    }

    write_st(p, "{" GOOD_W "," GOOD_B ",\"__metadata__\":{\"k\":1}}", DATA, 12);
    check_bad("metadata not strings", "__metadata__");

    write_st(p, "{" GOOD_W "," GOOD_W "," GOOD_B "}", DATA, 12);
    check_bad("duplicate key", "appears twice");

    remove(p);
    tg_tape_reset();
}
END_TEST

START_TEST(load_bad_arguments) {
    tg_tensor *w = tg_tensor_new(TG_F32, TG_SHAPE(2));
    ck_assert_int_error(tg_safetensors_load("x", 1, (const char *[]){"w"}, (tg_tensor *[]){NULL}),
                        "NULL");
    ck_assert_int_error(
        tg_safetensors_load("x", 2, (const char *[]){"w", "w"}, (tg_tensor *[]){w, w}),
        "requested twice");
    tg_tensor *t = tg_add(w, w);
    ck_assert_int_error(tg_safetensors_load("x", 1, (const char *[]){"w"}, &t), "tape tensor");
    /* A directory opens for reading but is not a file to load. */
    ck_assert_int_error(tg_safetensors_load(".", 1, (const char *[]){"w"}, &w),
                        "tg_safetensors_load", "not a regular file");
    tg_tape_reset();
    tg_tensor_free(w);
}
END_TEST

/* ---------------- models ---------------- */

static tg_model *small_model(uint64_t seed) {
    tg_seed(seed);
    tg_model *m = tg_model_new();
    tg_model_add(m, tg_nn_linear(3, 5, TG_F64));
    tg_model_add(m, tg_nn_batchnorm1d(5, TG_F64));
    tg_model_add(m, tg_nn_tanh());
    tg_model_add(m, tg_nn_linear(5, 2, TG_F64));
    return m;
}

START_TEST(model_roundtrip) {
    tg_model *m = small_model(1);
    tg_tensor *x = tgt_rand(TG_F64, TG_SHAPE(4, 3), -1, 1);
    tg_model_forward(m, x); /* moves batch norm's running statistics off their defaults */
    tg_tape_reset();
    tg_tensor *before = tg_model_predict(m, x);
    ck_assert_int_eq(tg_model_save(m, "test_io_model.safetensors"), 0);

    /* A different initialisation: the outputs differ until the checkpoint is loaded. */
    tg_model *m2 = small_model(2);
    tg_tensor *other = tg_model_predict(m2, x);
    ck_assert(!same_data(before, other));
    ck_assert_int_eq(tg_model_load(m2, "test_io_model.safetensors"), 0);
    tg_tensor *after = tg_model_predict(m2, x);
    ck_assert(same_data(before, after));

    /* Perturb the original and load it back: identical again. */
    tg_tensor *ps[8];
    int np = tg_model_params(m, ps, 8);
    ck_assert_int_eq(np, 6);
    for (int i = 0; i < np; i++)
        tg_tensor_fill(ps[i], 0.5);
    ck_assert_int_eq(tg_model_load(m, "test_io_model.safetensors"), 0);
    tg_tensor *again = tg_model_predict(m, x);
    ck_assert(same_data(before, again));

    /* The names are "<layer>.<state>". */
    long len;
    unsigned char *buf = slurp("test_io_model.safetensors", &len);
    const char *keys[] = {"\"0.weight\"",       "\"0.bias\"",        "\"1.weight\"", "\"1.bias\"",
                          "\"1.running_mean\"", "\"1.running_var\"", "\"3.weight\"", "\"3.bias\""};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        ck_assert_msg(strstr((char *)buf + 8, keys[i]), "no %s in the header", keys[i]);
    free(buf);

    tg_tensor *del[] = {x, before, other, after, again};
    for (int i = 0; i < 5; i++)
        tg_tensor_free(del[i]);
    tg_model_free(m);
    tg_model_free(m2);
    remove("test_io_model.safetensors");
    tg_tape_reset();
}
END_TEST

START_TEST(model_load_mismatch_leaves_model) {
    tg_model *m = small_model(1);
    ck_assert_int_eq(tg_model_save(m, "test_io_model2.safetensors"), 0);
    /* Another architecture: wider first layer. */
    tg_seed(3);
    tg_model *w = tg_model_new();
    tg_model_add(w, tg_nn_linear(3, 6, TG_F64));
    tg_model_add(w, tg_nn_batchnorm1d(6, TG_F64));
    tg_model_add(w, tg_nn_tanh());
    tg_model_add(w, tg_nn_linear(6, 2, TG_F64));
    tg_tensor *ps[8];
    int np = tg_model_params(w, ps, 8);
    tg_tensor *copies[8];
    for (int i = 0; i < np; i++)
        copies[i] = tg_tensor_clone(ps[i]);
    ck_assert_int_error(tg_model_load(w, "test_io_model2.safetensors"),
                        "tg_model_load:", "test_io_model2.safetensors",
                        "\"0.weight\" is f64 [3,5] in the file");
    /* Fewer layers: the file has tensors the model lacks. */
    tg_model *s = tg_model_new();
    tg_model_add(s, tg_nn_linear(3, 5, TG_F64));
    ck_assert_int_error(tg_model_load(s, "test_io_model2.safetensors"), "tg_model_load",
                        "not asked for");
    ck_assert_int_error(tg_model_load(w, "test_io_missing.safetensors"), "tg_model_load",
                        "No such file");
    for (int i = 0; i < np; i++) {
        ck_assert(same_data(ps[i], copies[i]));
        tg_tensor_free(copies[i]);
    }
    ck_assert_int_error(tg_model_save(m, "test_io_no_dir/m.safetensors"), "tg_model_save:");
    ck_assert_int_error(tg_model_load(NULL, "x"), "tg_model_load");
    tg_model_free(m);
    tg_model_free(w);
    tg_model_free(s);
    remove("test_io_model2.safetensors");
    tg_tape_reset();
}
END_TEST

/* ---------------- crash safety ---------------- */

/* Enough state (about 9k values, F64 and F32) that writing it takes a while. */
static tg_model *kill_model(uint64_t seed) {
    tg_seed(seed);
    tg_model *m = tg_model_new();
    tg_model_add(m, tg_nn_linear(64, 128, TG_F64));
    tg_model_add(m, tg_nn_batchnorm1d(128, TG_F64));
    tg_model_add(m, tg_nn_linear(128, 8, TG_F32));
    return m;
}

/* 1 when every parameter of a is bitwise equal to the matching one of b. */
static int same_params(tg_model *a, tg_model *b) {
    tg_tensor *pa[8], *pb[8];
    int na = tg_model_params(a, pa, 8), nb = tg_model_params(b, pb, 8);
    ck_assert_int_eq(na, nb);
    for (int i = 0; i < na; i++)
        if (!same_data(pa[i], pb[i])) return 0;
    return 1;
}

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

/* Removes the temporary files a killed save left in dir; returns how many there were. */
static int remove_leftovers(const char *dir) {
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    char path[512];
    for (struct dirent *e; (e = readdir(d));) {
        if (!strstr(e->d_name, ".tmp-")) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        ck_assert_int_eq(unlink(path), 0);
        n++;
    }
    closedir(d);
    return n;
}

/* A child process overwrites an existing checkpoint again and again, alternating two
 * models (starting with one or the other, round by round), and is killed with SIGKILL:
 * in half of the rounds after a random delay (up to about two saves, so the kill lands
 * anywhere in a save: writing, fsync, rename), in the other half as soon as it reports
 * that its first save has returned (so that both models are seen whatever the machine's
 * speed: under valgrind or on a loaded machine a save takes far longer in the child than
 * the parent measured). Each time the file must load, and load as one model or the
 * other in full: never an error, never a mix. */
START_TEST(model_save_killed) {
    enum { ROUNDS = 300 };
    char dir[] = "test_io_kill_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof path, "%s/ckpt.safetensors", dir);
    tg_model *old = kill_model(1), *fresh = kill_model(2), *loaded = kill_model(3);
    ck_assert(!same_params(old, fresh));
    ck_assert_int_eq(tg_model_save(old, path), 0);

    double t0 = now_us();
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(tg_model_save(i % 2 ? old : fresh, path), 0);
    double save_us = (now_us() - t0) / 4;

    int as_old = 0, as_fresh = 0, torn_saves = 0;
    srand(12345);
    for (int r = 0; r < ROUNDS; r++) {
        int ready[2];
        ck_assert_int_eq(pipe(ready), 0);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        tg_model *first = r % 2 ? old : fresh, *second = r % 2 ? fresh : old;
        if (pid == 0) {
            close(ready[0]);
            if (write(ready[1], "r", 1) != 1) _exit(3);
            for (;;) /* "s" after every save that returned */
                if (tg_model_save(first, path) != 0 || write(ready[1], "s", 1) != 1 ||
                    tg_model_save(second, path) != 0 || write(ready[1], "s", 1) != 1)
                    _exit(4);
        }
        close(ready[1]);
        char c;
        ck_assert_int_eq(read(ready[0], &c, 1), 1);
        if (r % 4 < 2) { /* right after the first save */
            ck_assert_int_eq(read(ready[0], &c, 1), 1);
            ck_assert_int_eq(c, 's');
        } else {
            long delay_ns = (long)((double)rand() / RAND_MAX * 2 * save_us * 1e3);
            nanosleep(&(struct timespec){.tv_sec = delay_ns / 1000000000L,
                                         .tv_nsec = delay_ns % 1000000000L},
                      NULL);
        }
        ck_assert_int_eq(kill(pid, SIGKILL), 0);
        int status;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        close(ready[0]); /* after the child's end: a write to a closed pipe would kill it */
        ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                      "round %d: the saving child ended by itself (status %d)", r, status);
        torn_saves += remove_leftovers(dir) > 0;

        tg_clear_error();
        ck_assert_msg(tg_model_load(loaded, path) == 0, "round %d: %s", r, tg_error());
        int is_old = same_params(loaded, old), is_fresh = same_params(loaded, fresh);
        ck_assert_msg(is_old || is_fresh, "round %d: the checkpoint mixes the two models", r);
        as_old += is_old;
        as_fresh += is_fresh;
    }
    /* Both outcomes occurred, and kills did interrupt saves (a temporary file was left). */
    ck_assert_int_eq(as_old + as_fresh, ROUNDS);
    ck_assert_int_gt(as_old, 0);
    ck_assert_int_gt(as_fresh, 0);
    ck_assert_int_gt(torn_saves, 0);
    fprintf(stderr,
            "model_save_killed: %d kills, %d during a write (temporary file left), %d "
            "loaded the old model, %d the new one; %.0f us a save\n",
            ROUNDS, torn_saves, as_old, as_fresh, save_us);
    remove(path);
    ck_assert_int_eq(rmdir(dir), 0);
    tg_model_free(old);
    tg_model_free(fresh);
    tg_model_free(loaded);
    tg_tape_reset();
}
END_TEST

static Suite *io_suite(void) {
    Suite *s = suite_create("io");
    TCase *t = tcase_create("safetensors");
    tcase_add_test(t, roundtrip_all_dtypes);
    tcase_add_test(t, save_is_atomic_and_overwrites);
    tcase_add_test(t, save_errors);
    tcase_add_test(t, load_bad_files);
    tcase_add_test(t, load_bad_arguments);
    suite_add_tcase(s, t);
    t = tcase_create("model");
    tcase_add_test(t, model_roundtrip);
    tcase_add_test(t, model_load_mismatch_leaves_model);
    suite_add_tcase(s, t);
    t = tcase_create("crash safety");
    tcase_add_test(t, model_save_killed);
    suite_add_tcase(s, t);
    return s;
}

int main(void) { return tgt_run(io_suite()); }
