;; A codec that lies about its output, by the payload's first byte: the gateway must refuse each
;; result without reading outside the module's memory. 01 a pointer past the end of memory;
;; 02 a name that runs past the end; 03 a count of 2^31 - 1; 04 a string of 65535 bytes;
;; 05 an unknown value type; 06 an empty name; 07 sixty 1000-byte strings (over the output cap);
;; 08 an error message that runs past the end; 09 the pointer 0. Otherwise one metric, "ok".
(module
  (memory (export "memory") 4)
  (data (i32.const 0x800) "\01\00\00\00\02\02ok\01\00\00\00\00\00\00\00")
  (data (i32.const 0x3fffa) "\01\00\00\00\02\3c")
  (data (i32.const 0x900) "\ff\ff\ff\7f")
  (data (i32.const 0x920) "\01\00\00\00\04\01s\ff\ff")
  (data (i32.const 0x940) "\01\00\00\00\09\01x\00\00\00\00\00\00\00\00")
  (data (i32.const 0x960) "\01\00\00\00\02\00\00\00\00\00\00\00\00\00")
  (data (i32.const 0x3fff0) "\ff\ff\ff\ff\01\00\00\00\ff\ff")
  (func (export "tianhe_abi_version") (result i32) (i32.const 1))
  (func (export "alloc") (param $len i32) (result i32) (i32.const 0x10000))
  ;; Sixty string metrics "s" of 1000 bytes each at 0x20000 (the input buffer is at 0x10000).
  (func $big (result i32)
    (local $o i32) (local $k i32)
    (i32.store (i32.const 0x20000) (i32.const 60))
    (local.set $o (i32.const 0x20004))
    (loop $next
      (i32.store8 (local.get $o) (i32.const 4))
      (i32.store8 offset=1 (local.get $o) (i32.const 1))
      (i32.store8 offset=2 (local.get $o) (i32.const 0x73))
      (i32.store16 offset=3 (local.get $o) (i32.const 1000))
      (local.set $o (i32.add (local.get $o) (i32.const 1005)))
      (local.set $k (i32.add (local.get $k) (i32.const 1)))
      (br_if $next (i32.lt_u (local.get $k) (i32.const 60))))
    (i32.const 0x20000))
  (func (export "decode") (param $p i32) (param $len i32) (param $fport i32) (result i32)
    (block $b9 (block $b8 (block $b7 (block $b6 (block $b5 (block $b4 (block $b3 (block $b2
      (block $b1 (block $b0
        (br_table $b0 $b1 $b2 $b3 $b4 $b5 $b6 $b7 $b8 $b9 $b0 (i32.load8_u (local.get $p))))
        (return (i32.const 0x800)))
      (return (i32.const 0xfffffff0)))
      (return (i32.const 0x3fffa)))
      (return (i32.const 0x900)))
      (return (i32.const 0x920)))
      (return (i32.const 0x940)))
      (return (i32.const 0x960)))
      (return (call $big)))
      (return (i32.const 0x3fff0)))
    (i32.const 0)))
