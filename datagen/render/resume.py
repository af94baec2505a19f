"""When a run may resume into an existing RENDER_DIR: the one compatibility check.

The job driver asks before it starts workers, the renderer again before it writes run.json.
numpy-free (imported inside Blender's own Python).
"""

from __future__ import annotations

import json
from pathlib import Path

from datagen.config import canonical_dict


def config_fingerprint(cfg_dict: dict) -> dict:
    """The config parts that must agree between runs writing into one RENDER_DIR.

    Device and thread count may differ: they change how fast an item renders, not what it is.
    Keys newer than the run.json compare at their defaults (datagen.config.canonical_dict).
    """
    d = canonical_dict(cfg_dict)
    for k in ("device", "threads"):
        d.get("render", {}).pop(k, None)
    return d


def run_conflict(out: str | Path, config: dict, hdri_names: list[str], prepared_key: str | None = None,
                 background_names: list[str] | None = None) -> str | None:
    """Why OUT's run.json (if any) forbids rendering into OUT with this config, HDRI set and tables.

    The one compatibility check of a resumed run (the job driver asks before it starts workers,
    the renderer again before it writes run.json).  `prepared_key` None skips the table check.
    """
    run = Path(out) / "run.json"
    try:
        old = json.loads(run.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return f"{run} cannot be read ({exc}); move it away or use another --out"
    if config_fingerprint(old.get("config", {})) != config_fingerprint(config):
        return (f"{out} holds a render made with a different config (digest {old.get('config_digest')}); "
                f"use that config or another --out")
    names = [h.get("name") for h in old.get("hdris", [])]
    if names != list(hdri_names):
        return (f"{out} was rendered with a different HDRI set ({len(names)} files, now {len(hdri_names)}); "
                f"items would draw different environments - use another --out")
    if background_names is not None and [b.get("name") for b in old.get("backgrounds", [])] != list(background_names):
        return (f"{out} was rendered with a different set of background images "
                f"({len(old.get('backgrounds', []))} files, now {len(background_names)}); items would draw different "
                f"backgrounds - use another --out")
    if prepared_key is not None and old.get("prepared_key") != prepared_key:
        return (f"{out} was rendered from the hand/pose tables {old.get('prepared_key')}, this code builds "
                f"{prepared_key} (the hand or pose-space code changed): resuming would mix labels of two pose "
                f"tables - use another --out")
    return None
