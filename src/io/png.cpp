/* PNG writer (see png.h). */
#include "mmt/io/png.h"

#include <png.h>

#include <cstdio>
#include <memory>

#include "mmt/util/error.h"

namespace mmt {

void save_png_rgb(const std::string& path, const std::vector<uint8_t>& rgb, int width, int height) {
  if (rgb.size() != static_cast<size_t>(width) * height * 3) throw Error(path + ": pixel buffer has the wrong size");
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "wb"), &std::fclose);
  if (!f) throw Error("cannot write '" + path + "'");
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!info) throw Error(path + ": libpng initialisation failed");
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    throw Error(path + ": libpng failed while writing");
  }
  png_init_io(png, f.get());
  png_set_IHDR(png, info, width, height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int y = 0; y < height; ++y) png_write_row(png, const_cast<png_bytep>(&rgb[static_cast<size_t>(y) * width * 3]));
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
}

}  // namespace mmt
