// Registration of the cayenne_lpp codec (src/extensions.cmake: th_extension(codecs/cayenne_lpp)).
#include <memory>

#include "codecs/cayenne_lpp/cayenne_lpp_codec.h"
#include "runtime/extensions.h"

namespace tianhe::codecs::cayenne_lpp {

void register_extension(runtime::Extensions& extensions) {
  extensions.add_codec({.name = "cayenne_lpp", .create = [] {
                          return std::unique_ptr<pipeline::Codec>(new CayenneLppCodec());
                        }});
}

}  // namespace tianhe::codecs::cayenne_lpp
