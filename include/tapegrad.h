/*
 * tapegrad — tape-based reverse-mode automatic differentiation in C.
 *
 * Build a computation from primitive ops; each records a node on a per-thread
 * Wengert tape; tg_backward(y) sweeps the tape in reverse and fills the gradients.
 *
 *     #include <tapegrad.h>
 *
 *     tg_tensor *x1 = tg_scalar(TG_F64, 2.0), *x2 = tg_scalar(TG_F64, 5.0);
 *     tg_requires_grad(x1, true);
 *     tg_requires_grad(x2, true);
 *     tg_tensor *y = tg_add(tg_sin(x1), tg_mul(x1, x2));
 *     if (!y || tg_backward(y) != 0) fprintf(stderr, "%s\n", tg_error());
 *     printf("dy/dx1 = %g\n", tg_item(x1->grad));        // cos(2) + 5
 *     tg_tape_reset();
 *     tg_tensor_free(x1);
 *     tg_tensor_free(x2);
 *
 * Modules: tensor.h (tensors, memory), tape.h (tape, backward, errors), ops.h
 * (primitive ops), function.h (user-defined ops), transforms.h (jvp, Jacobian,
 * Hessian, checkpointing), gradcheck.h (finite-difference checks), nn.h (layers, losses,
 * initializers, the model), optim.h (optimizers, clipping, schedules), random.h (the
 * random generators), data.h (data sets), io.h (checkpoints), and, when the library
 * was built with MPI (config.h then defines TG_HAVE_DIST), dist.h (data-parallel
 * training over several processes).
 */
#ifndef TAPEGRAD_H
#define TAPEGRAD_H

#include "tapegrad/config.h"
#include "tapegrad/data.h"
#include "tapegrad/function.h"
#include "tapegrad/gradcheck.h"
#include "tapegrad/io.h"
#include "tapegrad/nn.h"
#include "tapegrad/ops.h"
#include "tapegrad/optim.h"
#include "tapegrad/random.h"
#include "tapegrad/tape.h"
#include "tapegrad/tensor.h"
#include "tapegrad/transforms.h"
#ifdef TG_HAVE_DIST
#include "tapegrad/dist.h"
#endif

#endif
