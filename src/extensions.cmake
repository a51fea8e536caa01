# The one list of extensions (protocols, codecs, sinks, tools): one line each. Commenting a line out
# compiles that extension out; the rest builds and passes its tests. See docs/extending.md and
# cmake/tianhe.cmake (th_extension, th_write_extensions).
th_extension(protocols/report)
th_extension(protocols/mqtt_sn)
th_extension(protocols/lorawan)
th_extension(protocols/modbus)
th_extension(protocols/mqtt)
th_extension(codecs/json)
th_extension(codecs/cayenne_lpp)
th_extension(codecs/raw)
th_extension(codecs/js)
th_extension(codecs/wasm)
th_extension(sinks/store)
th_extension(sinks/jsonl)
th_extension(sinks/postgres)
th_extension(sinks/nats)
th_extension(sinks/redis_streams)
th_extension(sinks/mysql)
th_extension(sinks/webhook)
# Tools: commands of the executable (tools/bench drives protocols/report: keep them together).
th_extension(tools/bench)
th_extension(tools/codec)
