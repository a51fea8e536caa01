;; The Cayenne LPP subset decoder of lpp_subset.c, written by hand in WebAssembly text (ABI
;; version 1, docs/codecs/wasm.md): the same types, names and values, table-driven.
;; Build: wat2wasm lpp_subset.wat -o lpp_subset.wasm
(module
  (memory (export "memory") 1)
  ;; 0x000: name stems, then error messages.
  (data (i32.const 0x000) "digital_inputdigital_outputanalog_inputluminositytemperature")
  (data (i32.const 0x03c) "relative_humiditybarometric_pressure")
  (data (i32.const 0x060) "truncated readingunsupported LPP typetoo many readings")
  ;; 0x100: type id -> entry number (0: unsupported).
  (data (i32.const 0x100) "\01\02\03")
  (data (i32.const 0x165) "\04")
  (data (i32.const 0x167) "\05\06")
  (data (i32.const 0x173) "\07")
  ;; 0x200: entries of 16 bytes: name offset (u32), name length, value bytes, signed, 0,
  ;; divisor (f64; 0: an integer metric).
  (data (i32.const 0x200)
    "\00\00\00\00\0d\01\00\00\00\00\00\00\00\00\00\00"
    "\0d\00\00\00\0e\01\00\00\00\00\00\00\00\00\00\00"
    "\1b\00\00\00\0c\02\01\00\00\00\00\00\00\00\59\40"
    "\27\00\00\00\0a\02\00\00\00\00\00\00\00\00\00\00"
    "\31\00\00\00\0b\02\01\00\00\00\00\00\00\00\24\40"
    "\3c\00\00\00\11\01\00\00\00\00\00\00\00\00\00\40"
    "\4d\00\00\00\13\02\00\00\00\00\00\00\00\00\24\40")
  (global $heap (mut i32) (i32.const 0x2000))

  (func (export "tianhe_abi_version") (result i32) (i32.const 1))

  ;; Bump allocation above the output buffer, growing the memory by whole pages.
  (func (export "alloc") (param $len i32) (result i32)
    (local $p i32) (local $end i32) (local $have i32)
    (local.set $p (global.get $heap))
    (local.set $end (i32.add (local.get $p) (local.get $len)))
    (local.set $have (i32.mul (memory.size) (i32.const 65536)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.eq (memory.grow (i32.shr_u (i32.add (i32.sub (local.get $end) (local.get $have))
                                                     (i32.const 65535))
                                            (i32.const 16)))
                    (i32.const -1))
          (then (return (i32.const 0))))))
    (global.set $heap (i32.and (i32.add (local.get $end) (i32.const 15)) (i32.const -16)))
    (local.get $p))

  ;; The error form at 0x1000: 0xffffffff, code 1 (malformed), message length, message.
  (func $error (param $msg i32) (param $len i32) (result i32)
    (local $k i32)
    (i32.store (i32.const 0x1000) (i32.const -1))
    (i32.store (i32.const 0x1004) (i32.const 1))
    (i32.store16 (i32.const 0x1008) (local.get $len))
    (block $end
      (loop $copy
        (br_if $end (i32.ge_u (local.get $k) (local.get $len)))
        (i32.store8 (i32.add (i32.const 0x100a) (local.get $k))
                    (i32.load8_u (i32.add (local.get $msg) (local.get $k))))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br $copy)))
    (i32.const 0x1000))

  (func (export "decode") (param $p i32) (param $len i32) (param $fport i32) (result i32)
    (local $i i32) (local $end i32) (local $o i32) (local $count i32) (local $ch i32)
    (local $e i32) (local $nb i32) (local $raw i32) (local $n i32) (local $k i32)
    (local $div f64)
    (local.set $i (local.get $p))
    (local.set $end (i32.add (local.get $p) (local.get $len)))
    (local.set $o (i32.const 0x1004))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (if (i32.lt_u (i32.sub (local.get $end) (local.get $i)) (i32.const 2))
          (then (return (call $error (i32.const 0x060) (i32.const 17)))))
        (local.set $ch (i32.load8_u (local.get $i)))
        (local.set $e (i32.load8_u (i32.add (i32.const 0x100)
                                            (i32.load8_u offset=1 (local.get $i)))))
        (if (i32.eqz (local.get $e))
          (then (return (call $error (i32.const 0x071) (i32.const 20)))))
        (local.set $e (i32.add (i32.const 0x1f0) (i32.shl (local.get $e) (i32.const 4))))
        (local.set $nb (i32.load8_u offset=5 (local.get $e)))
        (local.set $i (i32.add (local.get $i) (i32.const 2)))
        (if (i32.lt_u (i32.sub (local.get $end) (local.get $i)) (local.get $nb))
          (then (return (call $error (i32.const 0x060) (i32.const 17)))))
        ;; The value: big-endian, 1 or 2 bytes, sign-extended when the type is signed.
        (local.set $raw (i32.load8_u (local.get $i)))
        (if (i32.eq (local.get $nb) (i32.const 2))
          (then (local.set $raw (i32.or (i32.shl (local.get $raw) (i32.const 8))
                                        (i32.load8_u offset=1 (local.get $i))))))
        (if (i32.load8_u offset=6 (local.get $e))
          (then (local.set $raw
                  (if (result i32) (i32.eq (local.get $nb) (i32.const 2))
                    (then (i32.extend16_s (local.get $raw)))
                    (else (i32.extend8_s (local.get $raw)))))))
        (local.set $i (i32.add (local.get $i) (local.get $nb)))
        ;; A metric takes at most 2 + 23 + 8 bytes; the buffer ends at 0x1800.
        (if (i32.gt_u (i32.add (local.get $o) (i32.const 40)) (i32.const 0x1800))
          (then (return (call $error (i32.const 0x085) (i32.const 17)))))
        ;; The name: stem, '_', channel in decimal.
        (local.set $n (i32.load8_u offset=4 (local.get $e)))
        (local.set $k (i32.const 0))
        (block $stem_done
          (loop $stem
            (br_if $stem_done (i32.ge_u (local.get $k) (local.get $n)))
            (i32.store8 offset=2 (i32.add (local.get $o) (local.get $k))
                        (i32.load8_u (i32.add (i32.load (local.get $e)) (local.get $k))))
            (local.set $k (i32.add (local.get $k) (i32.const 1)))
            (br $stem)))
        (i32.store8 offset=2 (i32.add (local.get $o) (local.get $n)) (i32.const 0x5f))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (if (i32.ge_u (local.get $ch) (i32.const 100))
          (then
            (i32.store8 offset=2 (i32.add (local.get $o) (local.get $n))
                        (i32.add (i32.const 0x30) (i32.div_u (local.get $ch) (i32.const 100))))
            (local.set $n (i32.add (local.get $n) (i32.const 1)))))
        (if (i32.ge_u (local.get $ch) (i32.const 10))
          (then
            (i32.store8 offset=2 (i32.add (local.get $o) (local.get $n))
                        (i32.add (i32.const 0x30)
                                 (i32.rem_u (i32.div_u (local.get $ch) (i32.const 10))
                                            (i32.const 10))))
            (local.set $n (i32.add (local.get $n) (i32.const 1)))))
        (i32.store8 offset=2 (i32.add (local.get $o) (local.get $n))
                    (i32.add (i32.const 0x30) (i32.rem_u (local.get $ch) (i32.const 10))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (i32.store8 offset=1 (local.get $o) (local.get $n))
        ;; Type and value: an i64 (2) when the divisor is 0, else an f64 (1) of raw / divisor.
        (local.set $div (f64.load offset=8 (local.get $e)))
        (local.set $k (i32.add (i32.add (local.get $o) (i32.const 2)) (local.get $n)))
        (if (f64.eq (local.get $div) (f64.const 0))
          (then
            (i32.store8 (local.get $o) (i32.const 2))
            (i64.store (local.get $k) (i64.extend_i32_s (local.get $raw))))
          (else
            (i32.store8 (local.get $o) (i32.const 1))
            (f64.store (local.get $k) (f64.div (f64.convert_i32_s (local.get $raw))
                                               (local.get $div)))))
        (local.set $o (i32.add (local.get $k) (i32.const 8)))
        (local.set $count (i32.add (local.get $count) (i32.const 1)))
        (br $next)))
    (i32.store (i32.const 0x1000) (local.get $count))
    (i32.const 0x1000)))
