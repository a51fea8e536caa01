;; Refused: its initial memory (1024 pages, 64 MiB) is over the default 16 MiB budget.
(module
  (memory (export "memory") 1024)
  (func (export "tianhe_abi_version") (result i32) (i32.const 1))
  (func (export "alloc") (param i32) (result i32) (i32.const 0x1000))
  (func (export "decode") (param i32 i32 i32) (result i32) (i32.const 0))
)
