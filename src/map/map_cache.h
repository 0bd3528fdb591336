// The 2-D map of a database, cached next to its catalog: DB_DIR/map.bin.
//
// Data contract
//   load_or_compute_map() returns one point per image of the catalog, ids increasing,
//   coordinates in [0, 1] (see umap_layout). The layout is recomputed when map.bin is
//   missing, damaged, made for other options, or older than the catalog (its change_seq
//   differs), then written back atomically; otherwise map.bin is read (milliseconds).
//
// map.bin (little-endian, as in memory on x86-64 and arm64):
//   offset 0   char[8] "IMGSMAP\0"       magic
//          8   u32     1                  format version
//         12   u32     64                 header bytes
//         16   i64     change_seq         catalog change the layout reflects
//         24   u64     options fingerprint (options_fingerprint below)
//         32   u64     n                  points
//         40   u64     XXH3-64 of the payload
//         48   u8[16]  0                  reserved
//         64   n x {i64 id, f32 x, f32 y} payload, 16 bytes per point, ids increasing
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "common/result.h"
#include "database/database.h"
#include "map/umap.h"

namespace imgsearch::map {

struct MapLayout {
  int64_t change_seq = -1;    // the catalog change the layout reflects
  std::vector<int64_t> ids;   // n catalog image ids, increasing
  std::vector<float> coords;  // n x 2: image ids[i] at (coords[2i], coords[2i+1]), both in [0, 1]
  bool from_cache = false;    // true when read from map.bin
  std::string cache_note;     // why map.bin was not used or not written; empty when fine
};

std::filesystem::path map_cache_path(const std::filesystem::path& db_dir);  // DB_DIR/map.bin

// The map of every image in `db`, from map.bin when it is current, else computed with
// `options` and cached. Options that shape the layout (neighbours, min_dist, spread,
// epochs, seed, init, kNN settings) are part of the cache key; `threads` and `verbose` are
// not, and `metric` is always taken from the database's settings.
// Cost when computing: all vectors in memory (n x dim floats) plus the UMAP run, seconds
// for thousands of images, about a minute for 10^5 on two cores. A failure to write
// map.bin is not an error (the database may be read-only): it is reported in cache_note.
// Not thread-safe for one Database (its Catalog is not); each server thread needs its own.
Result<MapLayout> load_or_compute_map(database::Database& db, const UmapOptions& options = {});

// The pieces, for tests and tools.
uint64_t options_fingerprint(const UmapOptions& options);
Status write_map_cache(const std::filesystem::path& path, const MapLayout& layout, uint64_t fingerprint);
// Reads and checks (size, magic, version, checksum, ids increasing, coordinates in [0, 1]).
Result<MapLayout> read_map_cache(const std::filesystem::path& path, uint64_t* fingerprint);

}  // namespace imgsearch::map
