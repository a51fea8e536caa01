;; Refused: ABI version 2 (this gateway speaks version 1).
(module
  (memory (export "memory") 1)
  (func (export "tianhe_abi_version") (result i32) (i32.const 2))
  (func (export "alloc") (param i32) (result i32) (i32.const 0x1000))
  (func (export "decode") (param i32 i32 i32) (result i32) (i32.const 0))
)
