/* The standard zero-shot retrieval protocols, read from Karpathy split files:
 *   flickr30k-1k  dataset_flickr30k.json: the 1,000 `test` images, 5 captions each
 *   coco-5k       dataset_coco.json: the 5,000 `test` images, the first 5 captions each
 *   coco-1k       the same 5,000 in five folds of 1,000 consecutive images (results: the mean)
 *   test          any Karpathy file: all its `test` images with all their captions
 * In the standard protocols an image with fewer than 5 captions is an error naming it.
 * Torch-free. */
#pragma once

#include <string>
#include <vector>

#include "mmt/data/dataset.h"

namespace mmt {

struct RetrievalSplit {
  std::string name;                     // "coco-1k-fold2"
  std::vector<Record> images;           // in file order
  std::vector<std::string> captions;    // image-major (the standard protocols: image i owns [5i, 5i + 5))
  std::vector<int64_t> caption_image;   // image index of each caption
};

const std::vector<std::string>& protocol_names();

/// A record's image by file name (a shard member's own name): how test images are told apart
/// across datasets, and how results name them.
std::string image_file_name(const Record& r);

/// The protocol's evaluation splits (one, or five folds for coco-1k). `test`: all the file's test
/// images with all their captions; `val`: the same of its val images (train.eval_every chooses
/// weights on them). `images` is the image
/// folder (default: next to the file). Errors name the file and what does not fit the protocol.
std::vector<RetrievalSplit> load_protocol(const std::string& protocol, const std::string& karpathy_json,
                                          const std::string& images = "");

}  // namespace mmt
