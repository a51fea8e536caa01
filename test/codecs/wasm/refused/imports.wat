;; Refused: it imports a function (a codec may import nothing).
(module
  (import "env" "print" (func (param i32)))
  (memory (export "memory") 1)
  (func (export "tianhe_abi_version") (result i32) (i32.const 1))
  (func (export "alloc") (param i32) (result i32) (i32.const 0x1000))
  (func (export "decode") (param i32 i32 i32) (result i32) (i32.const 0))
)
