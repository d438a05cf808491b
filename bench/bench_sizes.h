/* bench_sizes.h — the shapes and hyperparameters of the training benchmarks, shared by
 * the C programs (bench/spiral.c, bench/mlp.c, bench/conv.c) and the libtorch C++ peer
 * (bench/peers/libtorch.cpp), so that both sides train the same network on batches of
 * the same size. Plain C, valid C++. */
#ifndef TG_BENCH_SIZES_H
#define TG_BENCH_SIZES_H

/* Spiral: 3 classes of 100 points in 2-D, Linear(2,100) -> ReLU -> Linear(100,3),
 * batches of 20, SGD lr 0.1 momentum 0.9. */
enum {
    BENCH_SPIRAL_PER_CLASS = 100,
    BENCH_SPIRAL_CLASSES = 3,
    BENCH_SPIRAL_IN = 2,
    BENCH_SPIRAL_HID = 100,
    BENCH_SPIRAL_BATCH = 20
};
#define BENCH_SPIRAL_LR 0.1
#define BENCH_SPIRAL_MOMENTUM 0.9

/* MLP: Linear(784,512) -> ReLU -> Linear(512,512) -> ReLU -> Linear(512,10), batches of
 * 128, 8 batches used in turn, SGD lr 0.01 without momentum. */
enum {
    BENCH_MLP_BATCH = 128,
    BENCH_MLP_D0 = 784,
    BENCH_MLP_D1 = 512,
    BENCH_MLP_D2 = 512,
    BENCH_MLP_D3 = 10,
    BENCH_MLP_NBATCH = 8
};
#define BENCH_MLP_LR 0.01

/* CNN: Conv2d(1,8,k5,pad 2) -> ReLU -> MaxPool(2,2) -> Conv2d(8,16,k5) -> ReLU ->
 * MaxPool(2,2) -> Flatten -> Linear(400,10) on [32,1,28,28] batches, 8 batches used in
 * turn, SGD lr 0.01 momentum 0.9. */
enum {
    BENCH_CONV_BATCH = 32,
    BENCH_CONV_SIDE = 28,
    BENCH_CONV_C1 = 8,
    BENCH_CONV_C2 = 16,
    BENCH_CONV_K = 5,
    BENCH_CONV_PAD1 = 2,
    BENCH_CONV_FLAT = 16 * 5 * 5,
    BENCH_CONV_CLASSES = 10,
    BENCH_CONV_NBATCH = 8
};
#define BENCH_CONV_LR 0.01
#define BENCH_CONV_MOMENTUM 0.9

#endif
