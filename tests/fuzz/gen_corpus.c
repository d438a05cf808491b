/* gen_corpus.c — writes the seed inputs of the fuzz targets into corpus/.
 *
 * Usage: gen_corpus DIR   (writes DIR/safetensors/ *.safetensors, DIR/csv/ *.csv and
 * DIR/idx/ *; the subdirectories must exist). The IDX seeds are small valid files of
 * several element types, plain and gzip-compressed. The safetensors seeds are written by
 * tg_safetensors_save / tg_model_save, so they are valid files that fuzz_safetensors
 * loads successfully (ab, ba, model) or that exercise other parts of the reader
 * (empty, mixed); the CSV seeds cover a header, CRLF, blanks and label positions.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <tapegrad/io.h>
#include <tapegrad/nn.h>
#include <tapegrad/tape.h>

static const char *dir;

static const char *at(const char *name) {
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/%s", dir, name);
    return buf;
}

static void check(int rc) {
    if (rc != 0) {
        fprintf(stderr, "gen_corpus: %s\n", tg_error());
        exit(1);
    }
}

static void text(const char *name, const char *s) {
    FILE *f = fopen(at(name), "wb");
    if (!f || fputs(s, f) == EOF || fclose(f) != 0) {
        perror(name);
        exit(1);
    }
}

/* A hand-made safetensors file: the 8-byte length of header, header, ndata zero bytes. */
static void raw_safetensors(const char *name, const char *header, size_t ndata) {
    FILE *f = fopen(at(name), "wb");
    size_t hlen = strlen(header);
    for (int i = 0; f && i < 8; i++)
        fputc((int)((hlen >> (8 * i)) & 0xff), f);
    if (f) fputs(header, f);
    for (size_t i = 0; f && i < ndata; i++)
        fputc(0, f);
    if (!f || fclose(f) != 0) {
        perror(name);
        exit(1);
    }
}

/* An IDX file: 00 00 code ndim, the big-endian dims, then the n element bytes; written
 * gzip-compressed when gz. */
static void idx_file(const char *name, int code, int ndim, const unsigned *dims,
                     const unsigned char *elems, size_t n, int gz) {
    unsigned char buf[256];
    size_t len = 0;
    buf[len++] = 0;
    buf[len++] = 0;
    buf[len++] = (unsigned char)code;
    buf[len++] = (unsigned char)ndim;
    for (int i = 0; i < ndim; i++)
        for (int s = 24; s >= 0; s -= 8)
            buf[len++] = (unsigned char)(dims[i] >> s);
    memcpy(buf + len, elems, n);
    len += n;
    if (gz) {
        gzFile f = gzopen(at(name), "wb");
        if (!f || gzwrite(f, buf, (unsigned)len) != (int)len || gzclose(f) != Z_OK) {
            perror(name);
            exit(1);
        }
        return;
    }
    FILE *f = fopen(at(name), "wb");
    if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
        perror(name);
        exit(1);
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: gen_corpus DIR\n");
        return 2;
    }
    dir = argv[1];

    /* The tensors fuzz_safetensors loads into: "a" F32 [2, 3], "b" I64 [4]. */
    tg_tensor *a = tg_tensor_from(TG_F32, TG_SHAPE(2, 3), (float[]){1, -2, 0.5f, 3, 1e-3f, -7});
    tg_tensor *b = tg_tensor_from(TG_I64, TG_SHAPE(4), (int64_t[]){0, -1, 42, INT64_MAX});
    check(tg_safetensors_save(at("safetensors/ab.safetensors"), 2, (const char *[]){"a", "b"},
                              (tg_tensor *[]){a, b}));
    check(tg_safetensors_save(at("safetensors/ba.safetensors"), 2, (const char *[]){"b", "a"},
                              (tg_tensor *[]){b, a}));
    check(tg_safetensors_save(at("safetensors/empty.safetensors"), 0, NULL, NULL));

    /* Other dtypes and shapes: a 0-d F64, an empty [0, 3], a 3-d F64. */
    tg_tensor *s = tg_scalar(TG_F64, 2.5);
    tg_tensor *e = tg_tensor_new(TG_F32, TG_SHAPE(0, 3));
    tg_tensor *c = tg_tensor_new(TG_F64, TG_SHAPE(2, 1, 2));
    check(tg_safetensors_save(at("safetensors/mixed.safetensors"), 4,
                              (const char *[]){"scalar", "empty", "cube", "a"},
                              (tg_tensor *[]){s, e, c, a}));

    /* "a" and "b" plus an entry that was not asked for. */
    check(tg_safetensors_save(at("safetensors/abc.safetensors"), 3, (const char *[]){"a", "b", "c"},
                              (tg_tensor *[]){a, b, s}));
    /* Shapes the reader must refuse: nine dimensions, and a product that overflows. */
    raw_safetensors("safetensors/nine_dims.safetensors",
                    "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],"
                    "\"data_offsets\":[0,4]}}",
                    4);
    raw_safetensors("safetensors/huge_shape.safetensors",
                    "{\"a\":{\"dtype\":\"I64\",\"shape\":[4294967296,4294967296],"
                    "\"data_offsets\":[0,8]}}",
                    8);

    /* The model of fuzz_safetensors: Linear 3 -> 2, BatchNorm1d 2. */
    tg_seed(1);
    tg_model *m = tg_model_new();
    check(m ? 0 : -1);
    check(tg_model_add(m, tg_nn_linear(3, 2, TG_F32)));
    check(tg_model_add(m, tg_nn_batchnorm1d(2, TG_F32)));
    check(tg_model_save(m, at("safetensors/model.safetensors")));

    /* The seeds that should load do load, so the fuzzer starts from the success path. */
    tg_tensor *la = tg_tensor_new(TG_F32, TG_SHAPE(2, 3)), *lb = tg_tensor_new(TG_I64, TG_SHAPE(4));
    check(tg_safetensors_load(at("safetensors/ab.safetensors"), 2, (const char *[]){"a", "b"},
                              (tg_tensor *[]){la, lb}));
    check(tg_safetensors_load(at("safetensors/ba.safetensors"), 2, (const char *[]){"a", "b"},
                              (tg_tensor *[]){la, lb}));
    check(tg_model_load(m, at("safetensors/model.safetensors")));
    tg_tensor_free(la);
    tg_tensor_free(lb);

    text("csv/header_label_last.csv", "x1,x2,label\n0.5,-1.25,0\n1e3,2.5E-2,1\n-0,7,2\n");
    text("csv/no_header_crlf.csv", "3, 0.1 ,\t0.2\r\n\r\n1,-0.3,0.4\r\n  \r\n-2,5,6\r\n");
    text("csv/blank_lines_tabs.csv", "\n\n a , b \n\t1.0\t,\t2\t\n\n3.5,4\n");
    text("csv/wide.csv", "1,2,3,4,5,6,7,8\n-1,-2,-3,-4,-5,-6,-7,-8\n");

    static const unsigned char px[12] = {0, 17, 34, 51, 68, 85, 102, 119, 136, 153, 170, 255};
    idx_file("idx/images_3x2x2", 0x08, 3, (unsigned[]){3, 2, 2}, px, 12, 0);
    idx_file("idx/images_3x2x2.gz", 0x08, 3, (unsigned[]){3, 2, 2}, px, 12, 1);
    idx_file("idx/labels_3.gz", 0x08, 1, (unsigned[]){3}, (const unsigned char[]){9, 0, 4}, 3, 1);
    idx_file("idx/sbyte_4", 0x09, 2, (unsigned[]){2, 2}, (const unsigned char[]){0x80, 1, 0xff, 7},
             4, 0);
    idx_file("idx/int16_2", 0x0B, 1, (unsigned[]){2}, (const unsigned char[]){0xff, 0xfe, 1, 0}, 4,
             0);
    idx_file("idx/int32_1", 0x0C, 1, (unsigned[]){1}, (const unsigned char[]){0, 1, 0x86, 0xa0}, 4,
             0);
    idx_file("idx/float32_2.gz", 0x0D, 1, (unsigned[]){2},
             (const unsigned char[]){0x3f, 0xc0, 0, 0, 0xbe, 0x80, 0, 0}, 8, 1);
    idx_file("idx/float64_1", 0x0E, 1, (unsigned[]){1},
             (const unsigned char[]){0x3f, 0xb9, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a}, 8, 0);

    tg_model_free(m);
    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_tensor_free(s);
    tg_tensor_free(e);
    tg_tensor_free(c);
    tg_tape_reset();
    return 0;
}
