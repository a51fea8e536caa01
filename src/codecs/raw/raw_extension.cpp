// Registration of the raw codec (src/extensions.cmake: th_extension(codecs/raw)).
#include <memory>

#include "codecs/raw/raw_codec.h"
#include "runtime/extensions.h"

namespace tianhe::codecs::raw {

void register_extension(runtime::Extensions& extensions) {
  extensions.add_codec(
      {.name = "raw", .create = [] { return std::unique_ptr<pipeline::Codec>(new RawCodec()); }});
}

}  // namespace tianhe::codecs::raw
