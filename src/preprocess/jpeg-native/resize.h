/* The cubic reduction of the fast path, as libvips does it for sharp: see resize.c. */
#ifndef LONGCLIP_JPEG_NATIVE_RESIZE_H
#define LONGCLIP_JPEG_NATIVE_RESIZE_H

/*
 * Rows libvips reduces per region: the tiles of the line cache it puts after its vertical
 * reduce when reading a JPEG (sequential input), and the strips it writes a memory image in.
 */
#define JPEG_REGION_ROWS 10
#define RAW_REGION_ROWS 16

/* Whether cubic_reduce reproduces libvips for this size change (each side kept or reduced by
 * a factor below 4). */
int cubic_reduce_supported(unsigned int width, unsigned int height, unsigned int out_width,
                           unsigned int out_height);

/*
 * Packed 8-bit RGB, width × height → out (out_width × out_height × 3 bytes). Returns 0, or -1
 * when the size change is not supported or memory ran out (out is then left unspecified).
 */
int cubic_reduce(const unsigned char *in, unsigned int width, unsigned int height,
                 unsigned char *out, unsigned int out_width, unsigned int out_height,
                 unsigned int region_rows);

#endif
