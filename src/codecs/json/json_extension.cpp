// Registration of the json codec (src/extensions.cmake: th_extension(codecs/json)).
#include <memory>

#include "codecs/json/json_codec.h"
#include "runtime/extensions.h"

namespace tianhe::codecs::json {

void register_extension(runtime::Extensions& extensions) {
  // One codec per shard, each with its own text storage.
  extensions.add_codec(
      {.name = "json", .create = [] { return std::unique_ptr<pipeline::Codec>(new JsonCodec()); }});
}

}  // namespace tianhe::codecs::json
