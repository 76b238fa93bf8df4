// The server's fuzz targets never use the network: an export body may name any host, and the
// export-time address check would resolve it. This getaddrinfo, which takes the place of the C
// library's in the fuzz executables, answers numeric hosts as the C library does and every name
// with EAI_NONAME (a name that does not resolve: the export is then stored, contract §10).
#include <dlfcn.h>
#include <netdb.h>

extern "C" int getaddrinfo(const char* node, const char* service, const struct addrinfo* hints,
                           struct addrinfo** result) {
  using Real = int (*)(const char*, const char*, const struct addrinfo*, struct addrinfo**);
  static const auto real = reinterpret_cast<Real>(::dlsym(RTLD_NEXT, "getaddrinfo"));
  struct addrinfo numeric {};
  if (hints != nullptr) numeric = *hints;
  numeric.ai_flags |= AI_NUMERICHOST;
  if (real == nullptr) return EAI_FAIL;
  return real(node, service, &numeric, result);
}
