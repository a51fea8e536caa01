;; A codec that asks for memory, by the payload's first byte: 01 grows a page at a time, touching
;; each, until memory.grow fails (at the gateway's memory budget), then traps, as a C allocator
;; that aborts would; 02 asks for 4 GiB at once and reports the failure (error code 2);
;; 03 grows by 4 pages and succeeds. It returns "pages": its memory size in pages.
(module
  (memory (export "memory") 2)
  (data (i32.const 0x800) "\01\00\00\00\02\05pages")
  (data (i32.const 0x900) "\ff\ff\ff\ff\02\00\00\00\0d\00out of memory")
  (func (export "tianhe_abi_version") (result i32) (i32.const 1))
  (func (export "alloc") (param $len i32) (result i32) (i32.const 0x10000))
  (func (export "decode") (param $p i32) (param $len i32) (param $fport i32) (result i32)
    (local $b i32) (local $page i32)
    (local.set $b (i32.load8_u (local.get $p)))
    (if (i32.eq (local.get $b) (i32.const 1))
      (then
        (loop $more
          (local.set $page (memory.grow (i32.const 1)))
          (if (i32.eq (local.get $page) (i32.const -1)) (then unreachable))
          (i32.store8 (i32.mul (local.get $page) (i32.const 65536)) (i32.const 1))
          (br $more))))
    (if (i32.eq (local.get $b) (i32.const 2))
      (then
        (if (i32.eq (memory.grow (i32.const 65535)) (i32.const -1))
          (then (return (i32.const 0x900))))))
    (if (i32.eq (local.get $b) (i32.const 3))
      (then (drop (memory.grow (i32.const 4)))))
    (i64.store (i32.const 0x80b) (i64.extend_i32_u (memory.size)))
    (i32.const 0x800)))
