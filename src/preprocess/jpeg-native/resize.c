/*
 * The rest of the fast path's resize after the shrink-on-load: what sharp 0.35 computes for
 * resize({ width, height, fit: "fill", kernel: "cubic" }) on 8-bit RGB, bit for bit, for a
 * reduction by less than 4 on each side (larger ones make libvips box-shrink first; those go
 * to sharp). sharp hands it to libvips 8.18's vips_resize, which runs vips_reducev and then
 * vips_reduceh; every detail below is theirs, because each one changes some output bytes:
 *
 * - the factor is in / out as sharp divides it, inverted twice (sharp passes the scale 1 / f,
 *   vips_resize hands the reducers 1 / scale);
 * - output pixel i samples the input at (i + 0.5) * f - 0.5, shifted by half the size
 *   rounding (zero here, but for the factor's last bits), rounded to the nearest 1/64 pixel:
 *   the masks are tabulated per 64th;
 * - the position advances by adding f from the first pixel of each region libvips computes
 *   (rows: blocks of region_rows output rows; columns: the whole row), so it carries the same
 *   floating-point rounding, which decides the 64th when a position falls half-way;
 * - a mask is the Catmull-Rom kernel (Mitchell-Netravali B = 0, C = 1/2) stretched by f over
 *   2 * rint(2 * f) + 1 taps, divided by its sum, each weight truncated to 12-bit fixed point;
 * - pixels past the edges repeat the edge pixel;
 * - each sum starts at 2048 (one half), is shifted right by 12 and clamped to 0..255; the
 *   vertical pass's 8-bit rows feed the horizontal pass.
 *
 * libvips' SIMD (Highway) paths compute the same integer sums, so it matches them too; the
 * tests in test/jpeg-native.test.ts compare with sharp over many sizes.
 */
#include "resize.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SUBPIXELS 64
#define WEIGHT_SHIFT 12
#define WEIGHT_ONE (1 << WEIGHT_SHIFT)
#define MAX_FACTOR 4
/* Taps of the widest mask: 2 * rint(2 * 4) + 1. */
#define MAX_TAPS 17

/* One side's sampling: which inputs and which mask each output pixel uses. */
typedef struct {
  int taps;
  /* Per output pixel: input index of the first tap (before clamping to the image). */
  int *first;
  /* Per output pixel: its mask, taps weights. */
  const short **weights;
  /* SUBPIXELS + 1 masks (the last for a position rounded up to the next pixel). */
  short *masks;
} axis_plan;

/* Mitchell-Netravali cubic with B = 0, C = 1/2, written as libvips evaluates it. */
static double catmull_rom(double x) {
  double ax = fabs(x);
  double ax2 = ax * ax;
  double ax3 = ax2 * ax;
  if (ax <= 1) return (9.0 * ax3 + -15.0 * ax2 + 6.0) / 6;
  if (ax <= 2) return (-3.0 * ax3 + 15.0 * ax2 + -24.0 * ax + 12.0) / 6;
  return 0.0;
}

/* The mask for a position `offset` (0..1) past the pixel the window is anchored on. */
static void make_mask(short *weights, int taps, double factor, double offset) {
  double values[MAX_TAPS];
  double half = offset + taps / 2.0 - 1;
  double sum = 0.0;
  for (int i = 0; i < taps; i++) {
    /* Divided, as libvips does: multiplying by 1 / factor rounds some masks differently. */
    values[i] = catmull_rom((i - half) / factor);
    sum += values[i];
  }
  for (int i = 0; i < taps; i++) weights[i] = (short)(values[i] / sum * WEIGHT_ONE);
}

static int side_supported(unsigned int size, unsigned int out) {
  return out >= 1 && (out == size || (out < size && size < (uint64_t)MAX_FACTOR * out));
}

int cubic_reduce_supported(unsigned int width, unsigned int height, unsigned int out_width,
                           unsigned int out_height) {
  return side_supported(width, out_width) && side_supported(height, out_height);
}

static void free_plan(axis_plan *plan) {
  free(plan->first);
  free(plan->weights);
  free(plan->masks);
}

/* 0, or -1 when out of memory or libvips would size the output differently. */
static int make_plan(axis_plan *plan, unsigned int size, unsigned int out,
                     unsigned int region) {
  memset(plan, 0, sizeof *plan);
  double factor = 1.0 / (1.0 / ((double)size / out));
  /* vips_reduce{h,v} round the output size to nearest; so does any sane factor. */
  if ((unsigned int)(size / factor + 0.5) != out) return -1;
  double extra = out * factor - size;
  double shift = (1 + extra) / 2.0 - 1;
  int taps = 2 * (int)rint(2 * factor) + 1;
  if (taps > MAX_TAPS) return -1;
  int before = (taps + 1) / 2 - 1;

  plan->taps = taps;
  plan->first = malloc(out * sizeof *plan->first);
  plan->weights = malloc(out * sizeof *plan->weights);
  plan->masks = malloc((SUBPIXELS + 1) * taps * sizeof *plan->masks);
  if (plan->first == NULL || plan->weights == NULL || plan->masks == NULL) {
    free_plan(plan);
    return -1;
  }
  /* The offsets are floats in libvips (exact for 64ths). */
  for (int k = 0; k <= SUBPIXELS; k++) {
    make_mask(plan->masks + k * taps, taps, factor, (float)k / SUBPIXELS);
  }
  /* Positions are in libvips' input, which has `before` edge copies added in front. */
  double position = 0;
  for (unsigned int i = 0; i < out; i++) {
    if (i % region == 0) position = (i + 0.5) * factor - 0.5 - shift;
    int whole = (int)position;
    int sub = ((int)(position * SUBPIXELS * 2) & (SUBPIXELS * 2 - 1)) + 1;
    plan->first[i] = whole - before;
    plan->weights[i] = plan->masks + (sub >> 1) * taps;
    position += factor;
  }
  return 0;
}

static unsigned char clamp_sum(int sum) {
  if (sum < 0) return 0;
  sum >>= WEIGHT_SHIFT;
  return sum > 255 ? 255 : (unsigned char)sum;
}

/*
 * The two passes are integer loops the compiler vectorises; on x86-64 it also builds them for
 * AVX2, picked at load time where the CPU has it (the sums are exact integers either way).
 */
/* target_clones needs GCC and glibc's ifunc (not musl): plain code elsewhere. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__GLIBC__)
#define VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define VECTOR_CLONES
#endif

/* One output row of the vertical pass: `count` bytes from the rows the plan names. */
VECTOR_CLONES
static void reduce_rows(const unsigned char *in, size_t stride, unsigned int height,
                        const axis_plan *plan, unsigned int y, int *sums, size_t count,
                        unsigned char *out) {
  const short *weights = plan->weights[y];
  for (size_t e = 0; e < count; e++) sums[e] = WEIGHT_ONE / 2;
  for (int t = 0; t < plan->taps; t++) {
    int row = plan->first[y] + t;
    row = row < 0 ? 0 : row >= (int)height ? (int)height - 1 : row;
    const unsigned char *source = in + (size_t)row * stride;
    int weight = weights[t];
    for (size_t e = 0; e < count; e++) sums[e] += weight * source[e];
  }
  for (size_t e = 0; e < count; e++) out[e] = clamp_sum(sums[e]);
}

/* One RGB output pixel of the horizontal pass, from `taps` pixels at `source`. */
static inline __attribute__((always_inline)) void reduce_pixel(const unsigned char *source,
                                                               const short *weights, int taps,
                                                               unsigned char *out) {
  int r = WEIGHT_ONE / 2, g = WEIGHT_ONE / 2, b = WEIGHT_ONE / 2;
  for (int t = 0; t < taps; t++, source += 3) {
    r += weights[t] * source[0];
    g += weights[t] * source[1];
    b += weights[t] * source[2];
  }
  out[0] = clamp_sum(r);
  out[1] = clamp_sum(g);
  out[2] = clamp_sum(b);
}

/*
 * The horizontal pass over one row: `padded` is the row with plan->taps pixels of margin
 * (edge copies) on both sides.
 * The common mask sizes get their own loop, fully unrolled by the compiler.
 */
VECTOR_CLONES
static void reduce_columns(const unsigned char *padded, const axis_plan *plan, unsigned int out_width,
                           unsigned char *out) {
  const int taps = plan->taps;
#define COLUMNS_WITH(n)                                                              \
  for (unsigned int x = 0; x < out_width; x++) {                                    \
    reduce_pixel(padded + (size_t)(plan->first[x] + taps) * 3, plan->weights[x], (n), \
                 out + (size_t)x * 3);                                               \
  }
  switch (taps) {
    case 5:
      COLUMNS_WITH(5);
      break;
    case 7:
      COLUMNS_WITH(7);
      break;
    case 9:
      COLUMNS_WITH(9);
      break;
    default:
      COLUMNS_WITH(taps);
      break;
  }
#undef COLUMNS_WITH
}

int cubic_reduce(const unsigned char *in, unsigned int width, unsigned int height,
                 unsigned char *out, unsigned int out_width, unsigned int out_height,
                 unsigned int region_rows) {
  if (!cubic_reduce_supported(width, height, out_width, out_height) || region_rows == 0) {
    return -1;
  }
  size_t stride = (size_t)width * 3;
  int vertical = out_height != height;
  int horizontal = out_width != width;
  if (!vertical && !horizontal) {
    memcpy(out, in, stride * height);
    return 0;
  }
  axis_plan rows, columns;
  memset(&rows, 0, sizeof rows);
  memset(&columns, 0, sizeof columns);
  int *sums = NULL;
  unsigned char *padded = NULL;
  int status = -1;
  /* Columns: libvips computes whole rows at once, so one region. */
  if ((vertical && make_plan(&rows, height, out_height, region_rows) != 0) ||
      (horizontal && make_plan(&columns, width, out_width, out_width) != 0)) {
    goto done;
  }
  /* One vertically reduced row, with a margin of edge copies for the horizontal taps. */
  int margin = horizontal ? columns.taps : 0;
  sums = malloc(stride * sizeof *sums);
  padded = malloc(stride + (size_t)margin * 2 * 3);
  if (sums == NULL || padded == NULL) goto done;

  unsigned char *row = padded + (size_t)margin * 3;
  for (unsigned int y = 0; y < out_height; y++) {
    unsigned char *target = out + (size_t)y * out_width * 3;
    if (!horizontal) {
      reduce_rows(in, stride, height, &rows, y, sums, stride, target);
      continue;
    }
    if (vertical) {
      reduce_rows(in, stride, height, &rows, y, sums, stride, row);
    } else {
      memcpy(row, in + (size_t)y * stride, stride);
    }
    for (int m = 0; m < margin; m++) {
      memcpy(padded + (size_t)m * 3, row, 3);
      memcpy(row + stride + (size_t)m * 3, row + stride - 3, 3);
    }
    reduce_columns(padded, &columns, out_width, target);
  }
  status = 0;

done:
  free_plan(&rows);
  free_plan(&columns);
  free(sums);
  free(padded);
  return status;
}
