/* Precompiled header of the torch-using translation units of mmt_core (and the targets that
 * reuse it). Deliberately NOT <torch/torch.h>: its 640 MB PCH takes ~9 s to load per TU on
 * these cores, about what parsing costs. torch/types.h + the nn modules we use loads in ~5 s.
 * Sources that do not touch torch skip the PCH altogether (CMakeLists.txt). */
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/types.h>

#include <nlohmann/json.hpp>
