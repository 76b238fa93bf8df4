// How a process that resolves tokens should set up the C allocator; called once at start by
// membraned and by the storage benchmark, so that the benchmark measures what the service does.
#pragma once

#include <malloc.h>

namespace membraned::storage {

// glibc gives freed memory back to the kernel as soon as 128 KiB lie free at the top of a heap.
// A token's first resolution (SQLite's temporary tables of the dependency walk) frees about that
// much each time, so every cold token paid for the trim and for faulting the pages back in: more
// than half of its cost (docs/benchmarks.md). Keeping up to 16 MiB free per heap costs at most
// that much resident memory per heap.
inline constexpr int kMallocTrimThreshold = 16 << 20;

inline void keep_freed_memory_for_reuse() { mallopt(M_TRIM_THRESHOLD, kMallocTrimThreshold); }

}  // namespace membraned::storage
