;; Refused: no tianhe_abi_version export.
(module
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 0x1000))
  (func (export "decode") (param i32 i32 i32) (result i32) (i32.const 0))
)
