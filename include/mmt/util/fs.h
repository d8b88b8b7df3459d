/* File helpers: whole-file reads with errors that name the path, and atomic writes
 * (temporary file, fsync, rename) so a crash never leaves a half-written result. */
#pragma once

#include <string>
#include <vector>

namespace mmt {

/// Reads a whole file; throws Error naming the path if it cannot.
std::string read_file(const std::string& path);

/// Writes `data` to `path` atomically: path.tmp, fsync, rename, fsync of the directory.
void write_file_atomic(const std::string& path, const std::string& data);

/// Creates a directory and its parents; throws Error naming the path on failure.
void make_dirs(const std::string& path);

bool file_exists(const std::string& path);

/// A text file's lines (captions, one per line), Windows line ends taken off and blank lines left
/// out; throws Error naming the path if it cannot be read.
std::vector<std::string> read_lines(const std::string& path);

}  // namespace mmt
