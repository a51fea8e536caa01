;; A codec that never returns for payloads starting 01 (a tight loop) or 02 (a loop that calls a
;; function): the time budget's watchdog stops it. Any other payload gives one metric, "ok".
(module
  (memory (export "memory") 2)
  (data (i32.const 0x800) "\01\00\00\00\02\02ok\01\00\00\00\00\00\00\00")
  (func (export "tianhe_abi_version") (result i32) (i32.const 1))
  (func (export "alloc") (param $len i32) (result i32) (i32.const 0x10000))
  (func $spin (param $n i32) (result i32) (i32.add (local.get $n) (i32.const 1)))
  (func (export "decode") (param $p i32) (param $len i32) (param $fport i32) (result i32)
    (local $n i32)
    (if (i32.eq (i32.load8_u (local.get $p)) (i32.const 1))
      (then (loop $forever (br $forever))))
    (if (i32.eq (i32.load8_u (local.get $p)) (i32.const 2))
      (then (loop $forever (local.set $n (call $spin (local.get $n))) (br $forever))))
    (i32.const 0x800)))
