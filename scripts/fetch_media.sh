#!/usr/bin/env bash
# Fetch the packaged photos and videos that `mocha data media` builds its dataset from (docs/real_data.md):
# Debian's opencv-doc examples (OpenCV's samples/data: photos, vtest.avi, Megamind.avi) into
# .mocha-cache/media/opencv-doc/ (ignored by git), with the package's copyright file next to them.
# Idempotent (a complete copy is marked by .fetched, written last). Optional: with MOCHA_MEDIA=0, without
# apt-get/dpkg, or offline it says so and exits 0, and the tests that need the files skip.
set -euo pipefail
cd "$(dirname "$0")/.."
media=${MOCHA_MEDIA_DIR:-.mocha-cache/media}
dest="$media/opencv-doc"

# tests/test_track_vtest.py reads .mocha-cache/media/vtest.avi: a link into the copy, not a second file
link_vtest() { if [ -f "$dest/vtest.avi" ]; then ln -sfn opencv-doc/vtest.avi "$media/vtest.avi"; fi; }

if [ -f "$dest/.fetched" ]; then
  link_vtest
  echo "fetch_media: $dest is there ($(head -n 1 "$dest/.fetched"))"
  exit 0
fi
if [ "${MOCHA_MEDIA:-1}" = "0" ]; then
  echo "fetch_media: MOCHA_MEDIA=0, not fetching opencv-doc (the tests that need it skip)" >&2
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg >/dev/null 2>&1; then
  echo "fetch_media: apt-get/dpkg not found, not fetching opencv-doc (the tests that need it skip)" >&2
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! (cd "$tmp" && apt-get download -q opencv-doc >/dev/null 2>&1); then
  echo "fetch_media: 'apt-get download opencv-doc' failed (offline?); not fetched (the tests that need it skip)" >&2
  exit 0
fi
deb=$(ls "$tmp"/opencv-doc_*.deb)
dpkg -x "$deb" "$tmp/x"
src="$tmp/x/usr/share/doc/opencv-doc/examples/data"
if [ ! -f "$src/vtest.avi" ]; then
  echo "fetch_media: $(basename "$deb") has no examples/data/vtest.avi (package layout changed?); not fetched" >&2
  exit 0
fi
part="$dest.partial"
rm -rf "$part"
mkdir -p "$part"
# the top-level sample images and the two clips the dataset uses (mocha.data.media_sources decides what is a photo)
cp "$src"/*.jpg "$src"/*.png "$src/vtest.avi" "$src/Megamind.avi" "$part/"
cp "$tmp/x/usr/share/doc/opencv-doc/copyright" "$part/copyright"
echo "$(basename "$deb") sha256=$(sha256sum "$deb" | cut -d' ' -f1)" > "$part/.fetched"
rm -rf "$dest"
mv "$part" "$dest"
link_vtest
echo "fetch_media: $(ls "$dest" | wc -l) files from $(basename "$deb") in $dest"
