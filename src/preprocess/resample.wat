;; The two passes of the Pillow-exact bicubic resampler (./resample.ts) with WebAssembly SIMD.
;; Same arithmetic as the JavaScript passes and Pillow's C loops: int32 products of 8-bit
;; pixels and 22-bit fixed-point weights, wrapping int32 sums on top of a 2^21 rounding bias,
;; an arithmetic shift right by 22, then clipping to 0..255 (two saturating narrows). Each
;; lane computes one output value, so the bytes are those of the scalar loops.
;;
;; Build: npm run gen:wasm (writes resample-wasm.ts). The caller leaves at least 16 bytes of
;; slack after every buffer: a pass reads and writes whole 4- or 16-byte vectors and the
;; lanes past the end are ignored or overwritten later.
(module
  (memory (export "memory") 1)

  ;; Horizontal pass over `rows` rows of `channels` (1..4) interleaved bytes. Per output
  ;; column xx: taps start[xx] .. start[xx] + count[xx] - 1 (source pixels), weights at
  ;; weights + 4 * ksize * xx. One vector holds the (up to 4) channels of a pixel.
  (func (export "horizontal")
    (param $src i32) (param $srcStride i32) (param $rows i32) (param $channels i32)
    (param $outWidth i32) (param $start i32) (param $count i32) (param $weights i32)
    (param $ksize i32) (param $dst i32)
    (local $y i32) (local $xx i32) (local $k i32) (local $n i32) (local $q i32)
    (local $w i32) (local $o i32) (local $rowBase i32) (local $acc v128)
    (local.set $o (local.get $dst))
    (block $rowsDone
      (loop $rowsLoop
        (br_if $rowsDone (i32.ge_u (local.get $y) (local.get $rows)))
        (local.set $rowBase
          (i32.add (local.get $src) (i32.mul (local.get $y) (local.get $srcStride))))
        (local.set $xx (i32.const 0))
        (block $colsDone
          (loop $colsLoop
            (br_if $colsDone (i32.ge_u (local.get $xx) (local.get $outWidth)))
            (local.set $n
              (i32.load (i32.add (local.get $count) (i32.shl (local.get $xx) (i32.const 2)))))
            (local.set $q
              (i32.add (local.get $rowBase)
                (i32.mul (local.get $channels)
                  (i32.load (i32.add (local.get $start) (i32.shl (local.get $xx) (i32.const 2)))))))
            (local.set $w
              (i32.add (local.get $weights)
                (i32.shl (i32.mul (local.get $xx) (local.get $ksize)) (i32.const 2))))
            (local.set $acc (i32x4.splat (i32.const 2097152)))
            (local.set $k (i32.const 0))
            (block $tapsDone
              (loop $tapsLoop
                (br_if $tapsDone (i32.ge_u (local.get $k) (local.get $n)))
                (local.set $acc
                  (i32x4.add (local.get $acc)
                    (i32x4.mul
                      (i32x4.extend_low_i16x8_u
                        (i16x8.extend_low_i8x16_u (v128.load32_zero (local.get $q))))
                      (i32x4.splat (i32.load (local.get $w))))))
                (local.set $q (i32.add (local.get $q) (local.get $channels)))
                (local.set $w (i32.add (local.get $w) (i32.const 4)))
                (local.set $k (i32.add (local.get $k) (i32.const 1)))
                (br $tapsLoop)))
            (v128.store32_lane 0 (local.get $o)
              (i8x16.narrow_i16x8_u
                (i16x8.narrow_i32x4_s
                  (i32x4.shr_s (local.get $acc) (i32.const 22)) (v128.const i32x4 0 0 0 0))
                (v128.const i32x4 0 0 0 0)))
            (local.set $o (i32.add (local.get $o) (local.get $channels)))
            (local.set $xx (i32.add (local.get $xx) (i32.const 1)))
            (br $colsLoop)))
        (local.set $y (i32.add (local.get $y) (i32.const 1)))
        (br $rowsLoop))))

  ;; Vertical pass: output row yy sums rows start[yy] - rowOffset .. + count[yy] - 1 of the
  ;; source, 16 bytes of a row at a time (four vectors of four int32 sums).
  (func (export "vertical")
    (param $src i32) (param $rowStride i32) (param $rowOffset i32) (param $outHeight i32)
    (param $start i32) (param $count i32) (param $weights i32) (param $ksize i32)
    (param $dst i32)
    (local $yy i32) (local $i i32) (local $k i32) (local $n i32) (local $q i32) (local $w i32)
    (local $srcBase i32) (local $outBase i32) (local $wBase i32)
    (local $v v128) (local $lo v128) (local $hi v128) (local $weight v128)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128)
    (block $rowsDone
      (loop $rowsLoop
        (br_if $rowsDone (i32.ge_u (local.get $yy) (local.get $outHeight)))
        (local.set $n
          (i32.load (i32.add (local.get $count) (i32.shl (local.get $yy) (i32.const 2)))))
        (local.set $srcBase
          (i32.add (local.get $src)
            (i32.mul (local.get $rowStride)
              (i32.sub
                (i32.load (i32.add (local.get $start) (i32.shl (local.get $yy) (i32.const 2))))
                (local.get $rowOffset)))))
        (local.set $outBase
          (i32.add (local.get $dst) (i32.mul (local.get $yy) (local.get $rowStride))))
        (local.set $wBase
          (i32.add (local.get $weights)
            (i32.shl (i32.mul (local.get $yy) (local.get $ksize)) (i32.const 2))))
        (local.set $i (i32.const 0))
        (block $chunksDone
          (loop $chunksLoop
            (br_if $chunksDone (i32.ge_u (local.get $i) (local.get $rowStride)))
            (local.set $a0 (i32x4.splat (i32.const 2097152)))
            (local.set $a1 (local.get $a0))
            (local.set $a2 (local.get $a0))
            (local.set $a3 (local.get $a0))
            (local.set $q (i32.add (local.get $srcBase) (local.get $i)))
            (local.set $w (local.get $wBase))
            (local.set $k (i32.const 0))
            (block $tapsDone
              (loop $tapsLoop
                (br_if $tapsDone (i32.ge_u (local.get $k) (local.get $n)))
                (local.set $v (v128.load (local.get $q)))
                (local.set $weight (i32x4.splat (i32.load (local.get $w))))
                (local.set $lo (i16x8.extend_low_i8x16_u (local.get $v)))
                (local.set $hi (i16x8.extend_high_i8x16_u (local.get $v)))
                (local.set $a0
                  (i32x4.add (local.get $a0)
                    (i32x4.mul (i32x4.extend_low_i16x8_u (local.get $lo)) (local.get $weight))))
                (local.set $a1
                  (i32x4.add (local.get $a1)
                    (i32x4.mul (i32x4.extend_high_i16x8_u (local.get $lo)) (local.get $weight))))
                (local.set $a2
                  (i32x4.add (local.get $a2)
                    (i32x4.mul (i32x4.extend_low_i16x8_u (local.get $hi)) (local.get $weight))))
                (local.set $a3
                  (i32x4.add (local.get $a3)
                    (i32x4.mul (i32x4.extend_high_i16x8_u (local.get $hi)) (local.get $weight))))
                (local.set $q (i32.add (local.get $q) (local.get $rowStride)))
                (local.set $w (i32.add (local.get $w) (i32.const 4)))
                (local.set $k (i32.add (local.get $k) (i32.const 1)))
                (br $tapsLoop)))
            (v128.store (i32.add (local.get $outBase) (local.get $i))
              (i8x16.narrow_i16x8_u
                (i16x8.narrow_i32x4_s
                  (i32x4.shr_s (local.get $a0) (i32.const 22))
                  (i32x4.shr_s (local.get $a1) (i32.const 22)))
                (i16x8.narrow_i32x4_s
                  (i32x4.shr_s (local.get $a2) (i32.const 22))
                  (i32x4.shr_s (local.get $a3) (i32.const 22)))))
            (local.set $i (i32.add (local.get $i) (i32.const 16)))
            (br $chunksLoop)))
        (local.set $yy (i32.add (local.get $yy) (i32.const 1)))
        (br $rowsLoop))))
)
