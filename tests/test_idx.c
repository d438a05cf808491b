/* test_idx.c — the IDX reader (tg_data_load_idx, tg_data_load_idx_pair) on small files
 * the tests write themselves, plain and gzip-compressed, good and broken. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include <tapegrad/data.h>

#include "testutil.h"

/* An IDX image in memory: header for type code and dims, then the element bytes. */
typedef struct {
    unsigned char b[4096];
    size_t n;
} blob;

static void put_be32(blob *o, uint32_t v) {
    for (int s = 24; s >= 0; s -= 8)
        o->b[o->n++] = (unsigned char)(v >> s);
}

static blob idx_header(unsigned char code, int ndim, const uint32_t *dims) {
    blob o = {.n = 0};
    o.b[o.n++] = 0;
    o.b[o.n++] = 0;
    o.b[o.n++] = code;
    o.b[o.n++] = (unsigned char)ndim;
    for (int i = 0; i < ndim; i++)
        put_be32(&o, dims[i]);
    return o;
}

static void put_bytes(blob *o, const void *p, size_t n) {
    memcpy(o->b + o->n, p, n);
    o->n += n;
}

static void write_plain(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(p, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

static void write_gz(const char *path, const void *p, size_t n) {
    gzFile f = gzopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(gzwrite(f, p, (unsigned)n), (int)n);
    ck_assert_int_eq(gzclose(f), Z_OK);
}

/* Reads path with dt; asserts failure with every fragment in the message. */
#define assert_idx_fails(path, dt, ...)                                                            \
    do {                                                                                           \
        tg_tensor *t_ = (tg_tensor *)1;                                                            \
        ck_assert_int_error(tg_data_load_idx(path, dt, &t_), "tg_data_load_idx", __VA_ARGS__);     \
        ck_assert_ptr_null(t_);                                                                    \
    } while (0)

/* A 3 x 2 x 2 unsigned-byte image set with values 0, 17, 34, ... (mod 256). */
static blob images_3x2x2(void) {
    blob o = idx_header(0x08, 3, (uint32_t[]){3, 2, 2});
    for (int i = 0; i < 12; i++)
        o.b[o.n++] = (unsigned char)(i * 17 + (i == 11 ? 68 : 0)); /* last one 255 */
    return o;
}

START_TEST(reads_plain_and_gzip) {
    blob img = images_3x2x2();
    write_plain("idx_img", img.b, img.n);
    write_gz("idx_img.gz", img.b, img.n);
    const char *paths[] = {"idx_img", "idx_img.gz"};
    for (int k = 0; k < 2; k++) {
        for (int d = 0; d < 2; d++) {
            tg_tensor *t = NULL;
            ck_assert_int_eq(tg_data_load_idx(paths[k], d ? TG_F64 : TG_F32, &t), 0);
            tgt_assert_shape(t, TG_SHAPE(3, 2, 2));
            ck_assert_int_eq(t->dtype, d ? TG_F64 : TG_F32);
            double want[12];
            for (int i = 0; i < 12; i++)
                want[i] = i * 17 + (i == 11 ? 68 : 0);
            tgt_assert_tensor(t, want, 0.0);
            tg_tensor_free(t);
        }
    }
    /* Labels as i64 and the pair reader. */
    blob lab = idx_header(0x08, 1, (uint32_t[]){3});
    put_bytes(&lab, (unsigned char[]){9, 0, 4}, 3);
    write_gz("idx_lab.gz", lab.b, lab.n);
    tg_tensor *X = NULL, *y = NULL;
    ck_assert_int_eq(tg_data_load_idx_pair("idx_img.gz", "idx_lab.gz", TG_F32, &X, &y), 0);
    tgt_assert_shape(X, TG_SHAPE(3, 2, 2));
    ck_assert_int_eq(y->dtype, TG_I64);
    tgt_assert_tensor(y, (double[]){9, 0, 4}, 0.0);
    tg_tensor_free(X);
    tg_tensor_free(y);
}
END_TEST

START_TEST(every_element_type) {
    /* signed byte */
    blob o = idx_header(0x09, 1, (uint32_t[]){3});
    put_bytes(&o, (unsigned char[]){0x80, 0xFF, 0x7F}, 3);
    write_plain("idx_t", o.b, o.n);
    tg_tensor *t;
    ck_assert_int_eq(tg_data_load_idx("idx_t", TG_I64, &t), 0);
    tgt_assert_tensor(t, (double[]){-128, -1, 127}, 0.0);
    tg_tensor_free(t);
    /* int16 */
    o = idx_header(0x0B, 2, (uint32_t[]){1, 2});
    put_bytes(&o, (unsigned char[]){0xFF, 0xFE, 0x01, 0x00}, 4);
    write_plain("idx_t", o.b, o.n);
    ck_assert_int_eq(tg_data_load_idx("idx_t", TG_F64, &t), 0);
    tgt_assert_tensor(t, (double[]){-2, 256}, 0.0);
    tg_tensor_free(t);
    /* int32 */
    o = idx_header(0x0C, 1, (uint32_t[]){2});
    put_bytes(&o, (unsigned char[]){0x80, 0, 0, 0, 0, 1, 0x86, 0xA0}, 8);
    write_plain("idx_t", o.b, o.n);
    ck_assert_int_eq(tg_data_load_idx("idx_t", TG_I64, &t), 0);
    tgt_assert_tensor(t, (double[]){-2147483648.0, 100000}, 0.0);
    tg_tensor_free(t);
    /* float32: 1.5 = 0x3FC00000, -0.25 = 0xBE800000 */
    o = idx_header(0x0D, 1, (uint32_t[]){2});
    put_bytes(&o, (unsigned char[]){0x3F, 0xC0, 0, 0, 0xBE, 0x80, 0, 0}, 8);
    write_plain("idx_t", o.b, o.n);
    ck_assert_int_eq(tg_data_load_idx("idx_t", TG_F32, &t), 0);
    tgt_assert_tensor(t, (double[]){1.5, -0.25}, 0.0);
    tg_tensor_free(t);
    assert_idx_fails("idx_t", TG_I64, "float32", "i64");
    /* float64: 0.1 = 0x3FB999999999999A */
    o = idx_header(0x0E, 1, (uint32_t[]){1});
    put_bytes(&o, (unsigned char[]){0x3F, 0xB9, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9A}, 8);
    write_plain("idx_t", o.b, o.n);
    ck_assert_int_eq(tg_data_load_idx("idx_t", TG_F64, &t), 0);
    tgt_assert_tensor(t, (double[]){0.1}, 0.0);
    tg_tensor_free(t);
}
END_TEST

START_TEST(bad_files) {
    tg_tensor *t = NULL;
    assert_idx_fails("no_such_dir/idx", TG_F32, "no_such_dir/idx", "No such file");
    mkdir("idx_dir", 0755);
    assert_idx_fails("idx_dir", TG_F32, "idx_dir", "not a regular file");
    write_plain("idx_bad", "", 0);
    assert_idx_fails("idx_bad", TG_F32, "idx_bad", "truncated");
    /* Wrong magic: an unknown type code, nonzero leading bytes, text. */
    blob o = idx_header(0x07, 1, (uint32_t[]){1});
    o.b[o.n++] = 1;
    write_plain("idx_bad", o.b, o.n);
    assert_idx_fails("idx_bad", TG_F32, "not an IDX file", "00 00 07 01");
    o.b[2] = 0x08;
    o.b[0] = 1;
    write_plain("idx_bad", o.b, o.n);
    assert_idx_fails("idx_bad", TG_F32, "not an IDX file", "01 00 08 01");
    write_gz("idx_bad", "label,x\n1,2\n", 12);
    assert_idx_fails("idx_bad", TG_F32, "not an IDX file");
    /* Dimensions: none, too many, a zero, too many elements. */
    o = idx_header(0x08, 0, NULL);
    write_plain("idx_bad", o.b, o.n);
    assert_idx_fails("idx_bad", TG_F32, "0 dimensions");
    o = idx_header(0x08, 9, (uint32_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1});
    o.b[o.n++] = 7;
    write_plain("idx_bad", o.b, o.n);
    assert_idx_fails("idx_bad", TG_F32, "9 dimensions");
    o = idx_header(0x08, 2, (uint32_t[]){3, 0});
    write_plain("idx_bad", o.b, o.n);
    assert_idx_fails("idx_bad", TG_F32, "dimension 1 is 0");
    o = idx_header(0x08, 3, (uint32_t[]){0xFFFFFFFFu, 0xFFFFFFFFu, 2});
    write_plain("idx_bad", o.b, o.n);
    assert_idx_fails("idx_bad", TG_F32, "too large");
    /* A header claiming 16 GB over 3 bytes of data: truncated, without allocating it. */
    o = idx_header(0x08, 2, (uint32_t[]){0x10000u, 0x40000u});
    put_bytes(&o, "abc", 3);
    write_gz("idx_bad", o.b, o.n);
    assert_idx_fails("idx_bad", TG_F32, "truncated", "found 3");
    /* Truncated header and data, plain and gzip; bytes after the data. */
    blob img = images_3x2x2();
    write_plain("idx_bad", img.b, 9);
    assert_idx_fails("idx_bad", TG_F32, "truncated in the header");
    write_plain("idx_bad", img.b, img.n - 1);
    assert_idx_fails("idx_bad", TG_F32, "truncated", "needs 12 data bytes, found 11");
    write_gz("idx_bad", img.b, img.n - 5);
    assert_idx_fails("idx_bad", TG_F32, "truncated", "found 7");
    img.b[img.n++] = 0;
    write_gz("idx_bad", img.b, img.n);
    assert_idx_fails("idx_bad", TG_F32, "continue past the 12 bytes");
    /* A cut gzip file and a gzip file with a flipped byte. */
    img = images_3x2x2();
    write_gz("idx_img.gz", img.b, img.n);
    FILE *f = fopen("idx_img.gz", "rb");
    unsigned char gz[512];
    size_t gn = fread(gz, 1, sizeof gz, f);
    fclose(f);
    ck_assert(gn > 30);
    write_plain("idx_bad", gz, gn - 6); /* inside the CRC / length trailer */
    assert_idx_fails("idx_bad", TG_F32, "idx_bad: cannot read", "gzip");
    write_plain("idx_bad", gz, 14); /* inside the deflate stream */
    assert_idx_fails("idx_bad", TG_F32, "idx_bad: cannot read", "gzip");
    gz[gn - 6] ^= 0x55; /* the stored CRC no longer matches */
    write_plain("idx_bad", gz, gn);
    assert_idx_fails("idx_bad", TG_F32, "idx_bad: cannot read", "gzip");
    gz[gn - 6] ^= 0x55;
    gz[12] ^= 0xFF; /* the compressed data */
    write_plain("idx_bad", gz, gn);
    assert_idx_fails("idx_bad", TG_F32, "idx_bad: cannot read", "gzip");
    /* Arguments. */
    ck_assert_int_error(tg_data_load_idx(NULL, TG_F32, &t), "tg_data_load_idx", "NULL");
    ck_assert_int_error(tg_data_load_idx("idx_img.gz", TG_F32, NULL), "tg_data_load_idx", "NULL");
    assert_idx_fails("idx_img.gz", (tg_dtype)7, "dtype");
    remove("idx_bad");
    rmdir("idx_dir");
}
END_TEST

START_TEST(bad_pairs) {
    blob img = images_3x2x2();
    write_gz("idx_img.gz", img.b, img.n);
    tg_tensor *X = (tg_tensor *)1, *y = (tg_tensor *)1;
    blob lab = idx_header(0x08, 1, (uint32_t[]){4});
    put_bytes(&lab, (unsigned char[]){1, 2, 3, 4}, 4);
    write_plain("idx_lab", lab.b, lab.n);
    ck_assert_int_error(tg_data_load_idx_pair("idx_img.gz", "idx_lab", TG_F32, &X, &y),
                        "tg_data_load_idx_pair", "3 images", "[4]");
    ck_assert_ptr_null(X);
    ck_assert_ptr_null(y);
    lab = idx_header(0x08, 2, (uint32_t[]){3, 1});
    put_bytes(&lab, (unsigned char[]){1, 2, 3}, 3);
    write_plain("idx_lab", lab.b, lab.n);
    ck_assert_int_error(tg_data_load_idx_pair("idx_img.gz", "idx_lab", TG_F32, &X, &y),
                        "tg_data_load_idx_pair", "[3,1]");
    lab = idx_header(0x0D, 1, (uint32_t[]){1});
    put_bytes(&lab, (unsigned char[]){0x3F, 0xC0, 0, 0}, 4);
    write_plain("idx_lab", lab.b, lab.n);
    ck_assert_int_error(tg_data_load_idx_pair("idx_img.gz", "idx_lab", TG_F32, &X, &y),
                        "tg_data_load_idx_pair", "i64", "idx_lab");
    ck_assert_int_error(tg_data_load_idx_pair("idx_img.gz", "missing_labels", TG_F32, &X, &y),
                        "tg_data_load_idx_pair", "missing_labels");
    ck_assert_int_error(tg_data_load_idx_pair("idx_img.gz", "idx_lab", TG_I64, &X, &y),
                        "tg_data_load_idx_pair", "dtype");
    ck_assert_int_error(tg_data_load_idx_pair(NULL, "idx_lab", TG_F32, &X, &y),
                        "tg_data_load_idx_pair", "NULL");
    remove("idx_lab");
    remove("idx_img.gz");
    remove("idx_img");
    remove("idx_lab.gz");
    remove("idx_t");
}
END_TEST

static Suite *idx_suite(void) {
    Suite *s = suite_create("idx");
    TCase *t = tcase_create("idx");
    tcase_add_test(t, reads_plain_and_gzip);
    tcase_add_test(t, every_element_type);
    tcase_add_test(t, bad_files);
    tcase_add_test(t, bad_pairs);
    suite_add_tcase(s, t);
    return s;
}

int main(void) { return tgt_run(idx_suite()); }
