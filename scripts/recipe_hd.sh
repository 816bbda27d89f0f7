#!/usr/bin/env bash
# The recipe for an HD style file, from the teacher and the data folders to weights/<style>.onnx:
#   1. the teacher at short side 480 on every training picture brought to 720 (the HD look), cached;
#   2. a gain head trained on it (faces first, shifted-twin temporal loss) on top of the style's
#      student, which stays frozen; the file written holds both and also runs as a plain student.
# Usage, from the repository root with ../shared beside it:  bash scripts/recipe_hd.sh hayao
# MINUTES sets the training budget (75 made the shipped file). Both steps resume where they stopped.
set -euo pipefail
style=${1:-hayao}
minutes=${MINUTES:-75}
case "$style" in
    hayao) teacher=animeganv2_hayao ;;
    shinkai) teacher=animeganv3_shinkai ;;
    cute) teacher=animeganv3_tiny_cute ;;
    *) echo "recipe_hd: error: unknown style '$style' (hayao, shinkai or cute)" >&2; exit 2 ;;
esac
shared=../shared
data=(--photos "$shared/data/photos/faces" "$shared/data/photos/scenes" --clips "$shared/data/clips")
python -m livefilter.train.hdcache --teacher "$shared/teachers/$teacher.onnx" "${data[@]}" --cache runs/cache
python -m livefilter.train.hdtrain --teacher "$shared/teachers/$teacher.onnx" "${data[@]}" --cache runs/cache \
    --faces "$shared/models/face_detection_yunet_2026may.onnx" \
    --init "weights/$style.onnx" --out "weights/$style.onnx" --work "runs/hd/$style" \
    --freeze-student --crop 225 --minutes "$minutes"
