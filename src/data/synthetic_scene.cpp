/* Synthetic world: the lexicon, scene geometry predicates and the RGB renderer. */
#include <algorithm>
#include <cmath>

#include "mmt/data/synthetic_world.h"

namespace mmt::synth {

const std::vector<std::string>& shape_words() {
  static const std::vector<std::string> w = {"circle", "square", "triangle", "diamond",
                                             "cross",  "ring",   "star",     "hexagon"};
  return w;
}

const std::vector<std::string>& colour_words() {
  static const std::vector<std::string> w = {"red",    "green",  "blue",  "yellow",
                                             "purple", "orange", "white", "gray"};
  return w;
}

bool relation_holds(const Object& a, Relation rel, const Object& b) {
  constexpr float kTol = 0.05f;  // truth needs a visible offset; generation needs a clear one
  switch (rel) {
    case Relation::kLeftOf: return b.x - a.x > kTol;
    case Relation::kRightOf: return a.x - b.x > kTol;
    case Relation::kAbove: return b.y - a.y > kTol;
    case Relation::kBelow: return a.y - b.y > kTol;
  }
  return false;
}

bool place_holds(const Object& o, Place place) {
  switch (place) {
    case Place::kAny: return true;
    case Place::kLeft: return o.x < 0.4f;
    case Place::kRight: return o.x > 0.6f;
    case Place::kTop: return o.y < 0.4f;
    case Place::kBottom: return o.y > 0.6f;
  }
  return false;
}

std::string describe_scene(const Scene& scene) {
  std::vector<const Object*> order;
  for (const auto& o : scene.objects) order.push_back(&o);
  std::stable_sort(order.begin(), order.end(), [](const Object* a, const Object* b) { return a->x < b->x; });
  std::string out;
  for (const Object* o : order) {
    std::string where = place_holds(*o, Place::kTop) ? "top" : place_holds(*o, Place::kBottom) ? "bottom" : "";
    const char* side = place_holds(*o, Place::kLeft) ? "left" : place_holds(*o, Place::kRight) ? "right" : "";
    if (*side) where += (where.empty() ? "" : " ") + std::string(side);
    out += std::string(out.empty() ? "" : ", ") + (o->size ? "large " : "small ") + colour_words()[o->colour] + " " +
           shape_words()[o->shape] + " (" + (where.empty() ? "centre" : where) + ")";
  }
  return out;
}

namespace {

const uint8_t kColourRgb[8][3] = {{220, 40, 40},  {40, 170, 60},  {50, 90, 230},  {235, 215, 40},
                                  {150, 60, 190}, {245, 140, 30}, {245, 245, 245}, {135, 135, 135}};

bool inside(int shape, float u, float v) {  // (u, v) in units of the object's radius
  const float au = std::fabs(u), av = std::fabs(v);
  switch (shape) {
    case 0: return u * u + v * v <= 1.0f;                               // circle
    case 1: return au <= 0.82f && av <= 0.82f;                          // square
    case 2: return v >= -0.95f && v <= 0.8f && au <= 0.55f * (v + 0.95f);  // triangle
    case 3: return au + av <= 1.0f;                                     // diamond
    case 4: return (au <= 0.3f && av <= 0.95f) || (av <= 0.3f && au <= 0.95f);  // cross
    case 5: {                                                           // ring
      const float r2 = u * u + v * v;
      return r2 <= 1.0f && r2 >= 0.3f;
    }
    case 6: {  // five-pointed star
      const float rho = std::sqrt(u * u + v * v);
      const float theta = std::atan2(v, u) + 1.5707963f;
      return rho <= 0.5f + 0.5f * std::pow(0.5f + 0.5f * std::cos(5.0f * theta), 2.0f);
    }
    case 7: return av <= 0.87f && au + 0.577f * av <= 1.0f;             // hexagon
  }
  return false;
}

}  // namespace

std::vector<uint8_t> render(const Scene& scene, int size) {
  std::vector<uint8_t> rgb(static_cast<size_t>(size) * size * 3, 24);
  for (const auto& o : scene.objects) {
    const int x0 = std::max(0, static_cast<int>((o.x - o.radius) * size) - 1);
    const int x1 = std::min(size - 1, static_cast<int>((o.x + o.radius) * size) + 1);
    const int y0 = std::max(0, static_cast<int>((o.y - o.radius) * size) - 1);
    const int y1 = std::min(size - 1, static_cast<int>((o.y + o.radius) * size) + 1);
    for (int py = y0; py <= y1; ++py) {
      for (int px = x0; px <= x1; ++px) {
        const float u = ((px + 0.5f) / size - o.x) / o.radius;
        const float v = ((py + 0.5f) / size - o.y) / o.radius;
        if (!inside(o.shape, u, v)) continue;
        uint8_t* p = &rgb[(static_cast<size_t>(py) * size + px) * 3];
        for (int c = 0; c < 3; ++c) p[c] = kColourRgb[o.colour][c];
      }
    }
  }
  return rgb;
}

}  // namespace mmt::synth
