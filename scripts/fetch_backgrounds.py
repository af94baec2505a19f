"""Fetch the benchmark's background photos: scikit-image's bundled sample images (CC0 / public domain).

    .venv/bin/python scripts/fetch_backgrounds.py            # -> backgrounds/skimage/

Downloads the scikit-image wheel from PyPI with pip (`pip download --no-deps`; nothing is
installed), copies the photos listed in PHOTOS out of its `skimage/data/` folder and writes
each one's licence beside it as `<file>.license` (the first line is what run.json and the
manifest record; the rest names the source and scikit-image's own docstring for it).  The
folder is git-ignored (backgrounds/README.md); `[backgrounds] sources = ["backgrounds/skimage"]`
uses it (configs/backgrounds.toml).  Exit status 2 with a message when pip or the wheel fails.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SKIMAGE_VERSION = "0.26.0"
# file in skimage/data -> (licence line, provenance as skimage.data's docstring gives it)
PHOTOS = {
    "astronaut.png": ("public domain", "NASA, astronaut Eileen Collins; 'No known copyright restrictions, "
                      "released into the public domain' (skimage.data.astronaut)"),
    "camera.png": ("CC0-1.0", "Lav Varshney; 'No copyright restrictions. CC0 by the photographer' "
                   "(skimage.data.camera)"),
    "chelsea.png": ("CC0-1.0", "Stefan van der Walt; 'No copyright restrictions. CC0 by the photographer' "
                    "(skimage.data.chelsea)"),
    "coffee.png": ("CC0-1.0", "Rachel Michetti; 'No copyright restrictions. CC0 by the photographer' "
                   "(skimage.data.coffee)"),
    "rocket.jpg": ("public domain", "SpaceX; 'released in the public domain' (skimage.data.rocket)"),
    "hubble_deep_field.jpg": ("public domain", "NASA; 'may be freely used in the public domain' "
                              "(skimage.data.hubble_deep_field)"),
    "brick.png": ("CC0-1.0", "CC0Textures Bricks25; 'licensed under the Creative Commons CC0 License' "
                  "(skimage.data.brick)"),
    "grass.png": ("CC0-1.0", "CC0Textures; 'licensed under the Creative Commons CC0 License' (skimage.data.grass)"),
    "gravel.png": ("CC0-1.0", "CC0Textures Gravel04; 'licensed under the Creative Commons CC0 License' "
                   "(skimage.data.gravel)"),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "backgrounds" / "skimage")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", f"scikit-image=={SKIMAGE_VERSION}", "--no-deps",
               "--only-binary", ":all:", "-d", tmp, "-q"]
        if subprocess.run(cmd).returncode != 0:
            print(f"error: pip download of scikit-image=={SKIMAGE_VERSION} failed (command: {' '.join(cmd)})",
                  file=sys.stderr)
            return 2
        wheels = sorted(Path(tmp).glob("scikit_image-*.whl"))
        if not wheels:
            print(f"error: pip left no scikit-image wheel in {tmp}", file=sys.stderr)
            return 2
        args.out.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheels[0]) as z:
            names = set(z.namelist())
            for name, (licence, origin) in PHOTOS.items():
                member = f"skimage/data/{name}"
                if member not in names:
                    print(f"error: {wheels[0].name} has no {member}", file=sys.stderr)
                    return 2
                (args.out / name).write_bytes(z.read(member))
                (args.out / (name + ".license")).write_text(
                    f"{licence}\nsource: scikit-image {SKIMAGE_VERSION} wheel (PyPI), {member}\n{origin}\n")
    print(f"{len(PHOTOS)} background photos with licences -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
