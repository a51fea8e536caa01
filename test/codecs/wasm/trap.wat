;; A codec that traps on purpose, by the payload's first byte: 01 unreachable, 02 a load past the
;; end of its memory, 03 an integer division by zero, 04 endless recursion (stack overflow).
;; Otherwise it returns "calls": how many calls this instance has seen (a trap leaves the
;; instance in an unknown state, so the gateway starts a fresh one: the count starts again).
(module
  (memory (export "memory") 2)
  (global $calls (mut i64) (i64.const 0))
  (data (i32.const 0x800) "\01\00\00\00\02\05calls")
  (func (export "tianhe_abi_version") (result i32) (i32.const 1))
  (func (export "alloc") (param $len i32) (result i32) (i32.const 0x10000))
  (func $down (param $n i32) (result i32)
    (i32.add (call $down (i32.add (local.get $n) (i32.const 1))) (i32.const 1)))
  (func (export "decode") (param $p i32) (param $len i32) (param $fport i32) (result i32)
    (local $b i32)
    (global.set $calls (i64.add (global.get $calls) (i64.const 1)))
    (local.set $b (i32.load8_u (local.get $p)))
    (if (i32.eq (local.get $b) (i32.const 1)) (then unreachable))
    (if (i32.eq (local.get $b) (i32.const 2))
      (then (drop (i32.load (i32.const 0xfffffffc)))))
    (if (i32.eq (local.get $b) (i32.const 3))
      (then (drop (i32.div_s (i32.const 1) (i32.sub (local.get $b) (i32.const 3))))))
    (if (i32.eq (local.get $b) (i32.const 4))
      (then (drop (call $down (i32.const 0)))))
    (i64.store (i32.const 0x80b) (global.get $calls))
    (i32.const 0x800)))
