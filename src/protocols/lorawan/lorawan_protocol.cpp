#include "runtime/extensions.h"

namespace tianhe::protocols::lorawan {
void register_extension(runtime::Extensions&) {}
}  // namespace tianhe::protocols::lorawan
