/* PNG writing through libpng (rendered synthetic images). */
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mmt {

/// Writes 8-bit RGB pixels (row-major, width x height x 3) as a PNG file.
void save_png_rgb(const std::string& path, const std::vector<uint8_t>& rgb, int width, int height);

}  // namespace mmt
