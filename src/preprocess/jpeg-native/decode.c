/*
 * Optional JPEG decoder for src/preprocess: decodes a JPEG buffer to 8-bit RGB with the
 * system libjpeg(-turbo), optionally DCT-scaled by 1/2, 1/4 or 1/8, off the JS thread.
 *
 *   decode(buffer, scaleDenom, maxPixels[, outWidth, outHeight])
 *     -> Promise<{ data, width, height, channels }>
 *   resize(pixels, width, height, outWidth, outHeight, regionRows) -> Buffer
 *
 * Scaled images are cut to floor(size / scaleDenom) pixels (libjpeg rounds up) as libvips'
 * shrink-on-load cuts them, so that the caller can reproduce sharp's output. Given an output
 * size, decode also does the rest of sharp's cubic resize (./resize.c) in the same job when it
 * can reproduce it for that size change, and returns the image unresized otherwise. resize
 * does that resize alone, on the calling thread (for checks and tests).
 *
 * Only plain 8-bit YCbCr and greyscale JPEGs are decoded (greyscale as three equal channels);
 * anything else rejects with code "unsupported", and every libjpeg error or warning (corrupt
 * or truncated data) rejects with code "corrupt", so the caller can hand the image to sharp.
 * Decompression settings are libjpeg's defaults (JDCT_ISLOW, fancy upsampling), as libvips'.
 */
#include <node_api.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <jpeglib.h>

#include "resize.h"

typedef struct {
  struct jpeg_error_mgr base;
  jmp_buf escape;
} error_manager;

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref input_ref;
  const unsigned char *input;
  size_t input_length;
  unsigned int scale_denom;
  double max_pixels;
  /* Size to resize to, 0 for none */
  unsigned int out_width;
  unsigned int out_height;
  /* Result */
  unsigned char *pixels;
  size_t capacity;
  unsigned int width;
  unsigned int height;
  const char *error_code;
  char message[JMSG_LENGTH_MAX + 64];
} decode_job;

static void on_error(j_common_ptr cinfo) {
  error_manager *errors = (error_manager *)cinfo->err;
  longjmp(errors->escape, 1);
}

/* Warnings (level -1: corrupt or truncated data) end the decode like errors do. */
static void on_message(j_common_ptr cinfo, int level) {
  if (level < 0) on_error(cinfo);
}

/*
 * Output buffers. Fresh memory costs more than the decoding itself: the kernel faults in and
 * zeroes every page on first touch (measured in a VM: over a third of the CPU time of a full
 * decode). So buffers JavaScript no longer holds are kept for the next images, up to
 * POOL_SLOTS buffers and POOL_BYTES in all (as Pillow keeps its image blocks), and large ones
 * are asked for in transparent huge pages (one fault per 2 MiB). Shared by all threads.
 */
#define HUGE_PAGE ((size_t)2 << 20)
/*
 * Largest output handed to JavaScript: below every Node.js version's Buffer limit (Node 20:
 * 4 GiB), so napi_create_external_buffer never fails for size. Larger images go to sharp.
 */
#define MAX_OUTPUT_BYTES ((uint64_t)2 << 30)
#define POOL_SLOTS 4
#define POOL_BYTES ((size_t)96 << 20)

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned char *pool_data[POOL_SLOTS];
static size_t pool_capacity[POOL_SLOTS];
static size_t pool_bytes;

/* A buffer of at least `size` bytes; its real size goes to *capacity. */
static unsigned char *take_pixels(size_t size, size_t *capacity) {
  int best = -1;
  pthread_mutex_lock(&pool_lock);
  for (int i = 0; i < POOL_SLOTS; i++) {
    if (pool_data[i] != NULL && pool_capacity[i] >= size &&
        (best < 0 || pool_capacity[i] < pool_capacity[best])) {
      best = i;
    }
  }
  if (best >= 0) {
    unsigned char *data = pool_data[best];
    *capacity = pool_capacity[best];
    pool_data[best] = NULL;
    pool_bytes -= *capacity;
    pthread_mutex_unlock(&pool_lock);
    return data;
  }
  pthread_mutex_unlock(&pool_lock);
  if (size < HUGE_PAGE) {
    *capacity = size;
    return malloc(size);
  }
  void *memory = NULL;
  *capacity = (size + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
  if (posix_memalign(&memory, HUGE_PAGE, *capacity) != 0) return NULL;
#ifdef MADV_HUGEPAGE
  madvise(memory, *capacity, MADV_HUGEPAGE);
#endif
  return memory;
}

/* Keeps the buffer for a later image if the pool has room, else frees it. */
static void give_back_pixels(unsigned char *data, size_t capacity) {
  if (data == NULL) return;
  pthread_mutex_lock(&pool_lock);
  for (int i = 0; i < POOL_SLOTS; i++) {
    if (pool_data[i] == NULL && pool_bytes + capacity <= POOL_BYTES) {
      pool_data[i] = data;
      pool_capacity[i] = capacity;
      pool_bytes += capacity;
      pthread_mutex_unlock(&pool_lock);
      return;
    }
  }
  pthread_mutex_unlock(&pool_lock);
  free(data);
}

static void fail(decode_job *job, const char *code, const char *message) {
  job->error_code = code;
  snprintf(job->message, sizeof job->message, "%s", message);
}

/*
 * Replaces the job's pixels with their resize to the output size, as sharp would compute it
 * from the JPEG; keeps them unresized if that fails (the caller resizes with sharp).
 */
static void resize_result(decode_job *job) {
  size_t capacity = 0;
  unsigned char *resized =
      take_pixels((size_t)job->out_width * job->out_height * 3, &capacity);
  if (resized == NULL) return;
  if (cubic_reduce(job->pixels, job->width, job->height, resized, job->out_width,
                   job->out_height, JPEG_REGION_ROWS) != 0) {
    give_back_pixels(resized, capacity);
    return;
  }
  give_back_pixels(job->pixels, job->capacity);
  job->pixels = resized;
  job->capacity = capacity;
  job->width = job->out_width;
  job->height = job->out_height;
}

static void run_decode(napi_env env, void *data) {
  (void)env;
  decode_job *job = data;
  struct jpeg_decompress_struct cinfo;
  error_manager errors;
  /* volatile: read after longjmp */
  unsigned char *volatile pixels = NULL;
  volatile size_t capacity = 0;

  /* Zeroed, so that jpeg_destroy_decompress after an early error sees no stray pointers. */
  memset(&cinfo, 0, sizeof cinfo);
  cinfo.err = jpeg_std_error(&errors.base);
  errors.base.error_exit = on_error;
  errors.base.emit_message = on_message;
  if (setjmp(errors.escape)) {
    char text[JMSG_LENGTH_MAX];
    errors.base.format_message((j_common_ptr)&cinfo, text);
    fail(job, "corrupt", text);
    jpeg_destroy_decompress(&cinfo);
    give_back_pixels(pixels, capacity);
    return;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, job->input, (unsigned long)job->input_length);
  jpeg_read_header(&cinfo, TRUE);

  if (cinfo.data_precision != 8 ||
      !((cinfo.jpeg_color_space == JCS_YCbCr && cinfo.num_components == 3) ||
        (cinfo.jpeg_color_space == JCS_GRAYSCALE && cinfo.num_components == 1))) {
    fail(job, "unsupported", "not an 8-bit YCbCr or greyscale JPEG");
    jpeg_destroy_decompress(&cinfo);
    return;
  }
  if ((double)cinfo.image_width * (double)cinfo.image_height > job->max_pixels) {
    fail(job, "unsupported", "image exceeds pixel limit");
    jpeg_destroy_decompress(&cinfo);
    return;
  }
  if ((uint64_t)cinfo.image_width * cinfo.image_height * 3 > MAX_OUTPUT_BYTES) {
    fail(job, "unsupported", "image too large for one buffer");
    jpeg_destroy_decompress(&cinfo);
    return;
  }
  if (cinfo.image_width < job->scale_denom || cinfo.image_height < job->scale_denom) {
    fail(job, "unsupported", "image smaller than the scale");
    jpeg_destroy_decompress(&cinfo);
    return;
  }
  cinfo.out_color_space = JCS_RGB;
  cinfo.scale_num = 1;
  cinfo.scale_denom = job->scale_denom;
  jpeg_start_decompress(&cinfo);

  size_t stride = (size_t)cinfo.output_width * 3;
  size_t got = 0;
  pixels = take_pixels(stride * cinfo.output_height, &got);
  capacity = got;
  if (pixels == NULL) {
    fail(job, "corrupt", "out of memory");
    jpeg_destroy_decompress(&cinfo);
    return;
  }
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW rows[4];
    int count = 0;
    for (; count < 4 && cinfo.output_scanline + count < cinfo.output_height; count++) {
      rows[count] = pixels + stride * (cinfo.output_scanline + count);
    }
    jpeg_read_scanlines(&cinfo, rows, (JDIMENSION)count);
  }
  jpeg_finish_decompress(&cinfo);

  unsigned int width = cinfo.image_width / job->scale_denom;
  unsigned int height = cinfo.image_height / job->scale_denom;
  if (width < cinfo.output_width) {
    for (unsigned int y = 1; y < height; y++) {
      memmove(pixels + (size_t)y * width * 3, pixels + y * stride, (size_t)width * 3);
    }
  }
  jpeg_destroy_decompress(&cinfo);
  job->pixels = pixels;
  job->capacity = capacity;
  job->width = width;
  job->height = height;
  if (job->out_width != 0 && (job->out_width != width || job->out_height != height) &&
      cubic_reduce_supported(width, height, job->out_width, job->out_height)) {
    resize_result(job);
  }
}

/* Finalizer of the external buffer: the hint is the buffer's capacity. */
static void release_pixels(napi_env env, void *data, void *hint) {
  (void)env;
  give_back_pixels(data, (size_t)(uintptr_t)hint);
}

static napi_value make_error(napi_env env, const char *code, const char *message) {
  napi_value code_value, message_value, error;
  napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &code_value);
  napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &message_value);
  napi_create_error(env, code_value, message_value, &error);
  return error;
}

static void set_uint(napi_env env, napi_value object, const char *name, unsigned int value) {
  napi_value number;
  napi_create_uint32(env, value, &number);
  napi_set_named_property(env, object, name, number);
}

static void finish_decode(napi_env env, napi_status status, void *data) {
  decode_job *job = data;
  if (status != napi_ok && job->error_code == NULL) fail(job, "corrupt", "decode cancelled");
  if (job->error_code != NULL) {
    napi_reject_deferred(env, job->deferred, make_error(env, job->error_code, job->message));
  } else {
    napi_value result, buffer;
    size_t length = (size_t)job->width * job->height * 3;
    napi_status created = napi_create_external_buffer(
        env, length, job->pixels, release_pixels, (void *)(uintptr_t)job->capacity, &buffer);
    if (created != napi_ok) {
      /* Only these two fail before the finalizer is set up; after any other failure Node may
       * already have run it, and releasing here too would free the buffer twice. */
      if (created == napi_no_external_buffers_allowed || created == napi_pending_exception) {
        give_back_pixels(job->pixels, job->capacity);
      }
      napi_reject_deferred(env, job->deferred, make_error(env, "corrupt", "out of memory"));
    } else {
      napi_create_object(env, &result);
      napi_set_named_property(env, result, "data", buffer);
      set_uint(env, result, "width", job->width);
      set_uint(env, result, "height", job->height);
      set_uint(env, result, "channels", 3);
      napi_resolve_deferred(env, job->deferred, result);
    }
  }
  napi_delete_reference(env, job->input_ref);
  napi_delete_async_work(env, job->work);
  free(job);
}

static napi_value throw_type_error(napi_env env, const char *message) {
  napi_throw_type_error(env, NULL, message);
  return NULL;
}

static napi_value decode(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  bool is_buffer = false;
  if (argc < 3 || napi_is_buffer(env, argv[0], &is_buffer) != napi_ok || !is_buffer) {
    return throw_type_error(env, "decode(buffer, scaleDenom, maxPixels): buffer expected");
  }
  uint32_t scale_denom = 0;
  double max_pixels = 0;
  if (napi_get_value_uint32(env, argv[1], &scale_denom) != napi_ok ||
      (scale_denom != 1 && scale_denom != 2 && scale_denom != 4 && scale_denom != 8)) {
    return throw_type_error(env, "scaleDenom must be 1, 2, 4 or 8");
  }
  if (napi_get_value_double(env, argv[2], &max_pixels) != napi_ok) {
    return throw_type_error(env, "maxPixels must be a number");
  }
  uint32_t out_width = 0, out_height = 0;
  if (argc == 4 ||
      (argc >= 5 && (napi_get_value_uint32(env, argv[3], &out_width) != napi_ok ||
                     napi_get_value_uint32(env, argv[4], &out_height) != napi_ok ||
                     out_width == 0 || out_height == 0))) {
    return throw_type_error(env, "outWidth and outHeight must be positive integers");
  }

  decode_job *job = calloc(1, sizeof *job);
  if (job == NULL) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  void *input = NULL;
  napi_get_buffer_info(env, argv[0], &input, &job->input_length);
  job->input = input;
  job->scale_denom = scale_denom;
  job->max_pixels = max_pixels;
  job->out_width = out_width;
  job->out_height = out_height;
  napi_value promise, name;
  /* The buffer must outlive the work on the thread pool. */
  if (napi_create_reference(env, argv[0], 1, &job->input_ref) != napi_ok) {
    free(job);
    napi_throw_error(env, NULL, "could not start the decode");
    return NULL;
  }
  if (napi_create_promise(env, &job->deferred, &promise) != napi_ok) {
    napi_delete_reference(env, job->input_ref);
    free(job);
    napi_throw_error(env, NULL, "could not start the decode");
    return NULL;
  }
  bool queued =
      napi_create_string_utf8(env, "longclip:jpeg-decode", NAPI_AUTO_LENGTH, &name) == napi_ok &&
      napi_create_async_work(env, NULL, name, run_decode, finish_decode, job, &job->work) ==
          napi_ok;
  if (queued && napi_queue_async_work(env, job->work) != napi_ok) {
    napi_delete_async_work(env, job->work);
    queued = false;
  }
  if (!queued) {
    /* Rejected like a failed decode: the caller hands the image to sharp. */
    napi_reject_deferred(env, job->deferred,
                         make_error(env, "corrupt", "could not queue the decode"));
    napi_delete_reference(env, job->input_ref);
    free(job);
  }
  return promise;
}

/* resize(pixels, width, height, outWidth, outHeight, regionRows): see the top comment. */
static napi_value resize(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  bool is_buffer = false;
  uint32_t sizes[5];
  if (argc < 6 || napi_is_buffer(env, argv[0], &is_buffer) != napi_ok || !is_buffer) {
    return throw_type_error(
        env, "resize(pixels, width, height, outWidth, outHeight, regionRows): buffer expected");
  }
  for (int i = 0; i < 5; i++) {
    if (napi_get_value_uint32(env, argv[i + 1], &sizes[i]) != napi_ok || sizes[i] == 0) {
      return throw_type_error(env, "sizes and regionRows must be positive integers");
    }
  }
  void *input = NULL;
  size_t length = 0;
  napi_get_buffer_info(env, argv[0], &input, &length);
  if ((uint64_t)sizes[0] * sizes[1] * 3 != length) {
    napi_throw_range_error(env, NULL, "pixels must hold width × height RGB pixels");
    return NULL;
  }
  if (!cubic_reduce_supported(sizes[0], sizes[1], sizes[2], sizes[3])) {
    napi_throw_range_error(env, NULL, "not a size change this resize reproduces");
    return NULL;
  }
  napi_value output;
  void *data = NULL;
  if (napi_create_buffer(env, (size_t)sizes[2] * sizes[3] * 3, &data, &output) != napi_ok) {
    napi_throw_error(env, NULL, "could not allocate the output buffer");
    return NULL;
  }
  /* The size change was checked above, so a failure here is memory (or a region of 0 rows). */
  if (cubic_reduce(input, sizes[0], sizes[1], data, sizes[2], sizes[3], sizes[4]) != 0) {
    napi_throw_error(env, NULL, "resize failed: out of memory, or regionRows is 0");
    return NULL;
  }
  return output;
}

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  napi_value function;
  napi_create_function(env, "decode", NAPI_AUTO_LENGTH, decode, NULL, &function);
  napi_set_named_property(env, exports, "decode", function);
  napi_create_function(env, "resize", NAPI_AUTO_LENGTH, resize, NULL, &function);
  napi_set_named_property(env, exports, "resize", function);
  return exports;
}
