# The one list of extensions (protocols, codecs, sinks). Each line adds the folder and registers
# the extension with the application (see cmake/tianhe.cmake: th_extension).
th_extension(protocols/report)
th_extension(sinks/store)
