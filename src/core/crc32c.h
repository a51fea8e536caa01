// CRC-32C (Castagnoli), used to frame shard-log records.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tianhe::core {

/// CRC-32C of `size` bytes, continuing from `crc` (0 to start). SSE4.2 when the CPU has it.
uint32_t crc32c(const void* data, size_t size, uint32_t crc = 0) noexcept;

}  // namespace tianhe::core
