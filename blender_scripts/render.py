"""Render dataset items into a RENDER_DIR (docs/ARCHITECTURE.md).

Two ways to run it, same arguments:

    .venv/bin/python blender_scripts/render.py --out out/render --poses 0-3 --views 0-215
    blender -b -P blender_scripts/render.py -- --out out/render --poses 0-3 --views 0-215

The first uses the bpy module of the venv and builds the prepared hand/pose cache if needed.
The second runs inside Blender's own Python (numpy only): the cache must exist - build it
once with ``.venv/bin/python blender_scripts/render.py --prepare-only [--config C]``.

Selections: --poses/--views (``all``, ``7``, ``0-31``, ``0-3,10``), --shard k/N on top, or
--items-file FILE (item ids, ``pose view`` pairs or JSON lines).  --stdin turns the process
into a long-lived worker: it reads one item per line from stdin (same syntax as an items
file) and answers each with one stdout line ``@@handsynth {"item_id": ..., "status": ...}``.

One process builds the scene once and renders all its items pose-major; a re-run skips items
whose label JSON exists; every file is checked and written atomically.  Before rendering, the
selected items' framing is checked: a camera that crops the hand is refused (--allow-cropped
renders anyway, with a warning).  A full disk stops the run at the first file that does not
fit (nothing partial is left under a final name).  Exit status: 0 all done, 1 some items
failed (logged in RENDER_DIR/failures.log) or the run stopped (disk full), 2 bad
arguments/config/inputs (nothing rendered), 130 interrupted.  Inside `blender -b -P` too:
Blender itself ignores a script's exceptions and exits 0, so this file runs main() - imports
included - under a guard that turns every failure into a status (`_run_as_script`).  Blender
3.4 .. 5.0 are supported; what differs between them is in blender_scripts/compat.py and
datagen/render/blender_versions.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import traceback
from pathlib import Path

# Blender runs this file as a script: put the repository on sys.path before importing datagen
# (which then provides REPO_ROOT itself).
_here = str(Path(__file__).resolve().parent.parent)
if _here not in sys.path:
    sys.path.insert(0, _here)


def _in_blender_binary() -> bool:
    try:
        import bpy
    except ImportError:
        return False
    return bool(bpy.app.binary_path)


def _import_error_message(exc: ImportError) -> str:
    name = exc.name or str(exc)
    if _in_blender_binary():
        import bpy

        if name.split(".")[0] == "numpy":
            return (f"Blender {bpy.app.version_string}'s Python ({sys.version.split()[0]}) has no numpy: "
                    f"install python3-numpy (apt-get install python3-numpy) or use a blender.org build, "
                    f"which bundles numpy")
        return (f"Blender {bpy.app.version_string}'s Python cannot import {name!r} ({exc}); the Blender route "
                f"needs only numpy and this repository")
    return f"cannot import {name!r} ({exc}); install the project first: make setup (or pip install -e .)"


def _run_as_script() -> None:
    """Run main() with every outcome turned into an exit status, then exit.

    Blender (`blender -b -P render.py`, 3.4 .. 5.0) prints a script's uncaught exception and
    exits with status 0 unless the script exits itself (or `--python-exit-code` is given), so
    the whole run - this file's imports included, which is where a Blender without numpy
    fails - happens in here: bad input or a missing module -> 2 (one line), an unexpected
    exception -> 1 (traceback), Ctrl-C -> 130.  Inside Blender the process ends with
    os._exit, as Blender would otherwise go on parsing its own command line.
    """
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    code = 1
    try:
        try:
            import blender_scripts.render as module  # this file as a module: imports under the guard
        except ImportError as exc:
            print(f"error: {_import_error_message(exc)}", file=sys.stderr)
            code = 2
        else:
            code = module.main()
    except SystemExit as exc:  # argparse (--help, bad arguments)
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    except ImportError as exc:
        print(f"error: {_import_error_message(exc)}", file=sys.stderr)
        code = 2
    except BaseException:  # noqa: BLE001 - reported, and the status says it failed
        traceback.print_exc()
        print("error: render.py failed with an unexpected exception (traceback above)", file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    if _in_blender_binary():
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    _run_as_script()

import numpy as np  # noqa: E402

from datagen import atomic  # noqa: E402
from datagen.config import DEVICES, REPO_ROOT  # noqa: E402
from datagen.poses.tables import PreparedMissing
from datagen.render.selection import SelectionError, parse_item_line, read_items_file, select
from datagen.render.layout import is_done

from datagen.render.layout import PROTOCOL_PREFIX, RUN_FORMAT, RUN_FORMAT_VERSION, RenderDirError, check_writable
from datagen.render.resume import run_conflict


def in_blender_binary() -> bool:
    """True inside a `blender` executable, False for the bpy module of a venv."""
    return _in_blender_binary()


def script_args(argv: list[str] | None = None) -> list[str]:
    argv = sys.argv if argv is None else argv
    if "--" in argv:
        return argv[argv.index("--") + 1:]
    return argv[1:] if argv and argv[0].endswith(".py") else list(argv)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="render.py", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=None, help="dataset config (TOML); default: configs/default.toml")
    ap.add_argument("--out", help="output RENDER_DIR")
    ap.add_argument("--poses", default="all", help="pose ids: all | N | A-B | lists (default all)")
    ap.add_argument("--views", default="all", help="view ids: all | N | A-B | lists (default all)")
    ap.add_argument("--shard", default=None, help="k/N: render the k-th of N contiguous slices of the selection")
    ap.add_argument("--items-file", default=None, help="file listing the items (replaces --poses/--views)")
    ap.add_argument("--stdin", action="store_true", help="worker mode: read items from stdin, answer on stdout")
    ap.add_argument("--limit", type=int, default=None, help="render at most this many (unfinished) items (>= 1)")
    ap.add_argument("--allow-cropped", action="store_true",
                    help="render even where the camera crops the hand (default: refuse; a warning either way)")
    ap.add_argument("--device", default=None, help=f"Cycles device: {', '.join(DEVICES)} (default from config)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (0 = all; default from config)")
    ap.add_argument("--cache", default=None, help="prepared-cache folder (default: cache/ at the repo root)")
    ap.add_argument("--prepare-only", action="store_true", help="build the prepared cache (venv) and exit")
    ap.add_argument("--fsync", action="store_true", help="flush every file to disk (survives power loss)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("--verbose", action="store_true", help="show Blender's own render log")
    return ap


class UsageError(Exception):
    """Bad arguments or inputs: reported in one line, exit status 2, nothing rendered."""


def say(msg: str) -> None:
    """A line on stderr; never raises (stderr may be a log file on a full disk)."""
    try:
        print(msg, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


# ----------------------------------------------------------------------------- helpers

@contextlib.contextmanager
def quiet_stdout(enabled: bool):
    """Silence C-level stdout (Blender's per-sample render log) while rendering."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


class Progress:
    """tqdm when available (venv); a plain printer with items/s and ETA otherwise (Blender)."""

    def __init__(self, total: int, enabled: bool, desc: str = "render"):
        self.total, self.n, self.t0, self.last = total, 0, time.time(), 0.0
        self.enabled = enabled
        self.bar = None
        self.desc = desc
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, desc=desc, unit="item", file=sys.stderr, smoothing=0.1)
            except ImportError:
                pass

    def update(self, status: str) -> None:
        self.n += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(status, refresh=False)
            self.bar.update(1)
            return
        now = time.time()
        if now - self.last < 2.0 and self.n < self.total:
            return
        self.last = now
        rate = self.n / max(now - self.t0, 1e-9)
        eta = (self.total - self.n) / rate if rate > 0 else float("inf")
        print(f"[{self.desc}] {self.n}/{self.total} items  {rate:.2f} it/s  ETA {_hms(eta)}  ({status})",
              file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _hms(s: float) -> str:
    if not np.isfinite(s):
        return "?"
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def run_record(cfg, tables, views, hdris, warnings, renderer) -> dict:
    """run.json's record (docs/ARCHITECTURE.md); `warnings` are the HDRI and background licence
    warnings; the background images (with licences) are listed when [backgrounds] is on."""
    from datagen.hand import hand_model_entry
    from datagen.labels.visibility import visibility_contract

    cfg_dict = json.loads(json.dumps(cfg.to_dict(), default=list))
    return {
        "format": RUN_FORMAT,
        "format_version": RUN_FORMAT_VERSION,
        "config": cfg_dict,
        "config_digest": cfg.digest(),
        "seed": cfg.seed,
        "n_poses": int(tables.n_poses),
        "n_views": len(views),
        "image_size": [views.width, views.height],
        "prepared_key": tables.key,
        "versions": renderer.versions,
        "hand": hand_model_entry(cfg.hand.model).record(),
        "hdris": [dict(h.record(), **renderer.hdri_stats[i]) for i, h in enumerate(hdris)],
        "hdri_warnings": warnings,
        "render": renderer.render_settings(),
        "visibility": visibility_contract(wrist_joint=tables.wrist_joint),
        **({"backgrounds": [b.record() for b in renderer.backgrounds]} if cfg.backgrounds.share > 0 else {}),
    }


def write_run_files(out: Path, record: dict, tables, views, fsync: bool) -> None:
    run = out / "run.json"
    conflict = run_conflict(out, record["config"], [h["name"] for h in record["hdris"]], record["prepared_key"],
                            [b["name"] for b in record.get("backgrounds", [])])
    if conflict:
        raise UsageError(conflict)
    if not run.exists():
        atomic.write_json(run, record, fsync=fsync, indent=1)
    if not (out / "hand.npz").exists():
        atomic.write_bytes(out / "hand.npz", Path(tables.hand_file).read_bytes(), fsync=fsync)
    if not (out / "poses.npz").exists():
        shape = {k: getattr(tables, k) for k in ("shape_names", "shape_values", "shape_measure_names",
                                                   "shape_measures") if getattr(tables, k) is not None}
        if tables.arm_offset_table is not None:  # [hand.shape] with a forearm: the per-item arm (pack)
            shape["arm_offsets"] = tables.arm_offset_table
        atomic.save_npz(out / "poses.npz", fsync=fsync, ids=tables.ids, pose_a=tables.pose_a, pose_b=tables.pose_b,
                        t=tables.t, rotations=tables.rotations, keypoints=tables.keypoints, **shape)
    if not (out / "views.npz").exists():
        # K, R, t, centres, the camera sampler's per-view columns, width, height
        atomic.save_npz(out / "views.npz", fsync=fsync, **views.arrays())


class Failures:
    def __init__(self, out: Path):
        self.path = out / "failures.log"
        self.count = 0

    def log(self, spec, exc: BaseException) -> str:
        """Append the failure (one line, then the traceback unless it is a write error that
        names its file); never raises - on a full disk the entry goes to stderr instead."""
        self.count += 1
        msg = f"{type(exc).__name__}: {exc}"
        entry = (f"{time.strftime('%Y-%m-%d %H:%M:%S')} pose {spec.pose_id} view {spec.view_id} "
                 f"(item {spec.item_id}): {msg}\n")
        if not isinstance(exc, atomic.WriteError):
            entry += "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        try:
            with open(self.path, "a") as f:
                f.write(entry)
        except OSError as err:
            say(f"warning: cannot append to {self.path} ({err.strerror or err}); the failure: {entry.rstrip()}")
        return msg


# ----------------------------------------------------------------------------- main

def setup(args):
    """Everything that can fail before rendering: config, cache, views, HDRIs, selection, output."""
    from datagen.cameras import views_for
    from datagen.config import ConfigError, load_config
    from datagen.scene.hdri import HdriError, discover

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        raise UsageError(f"config: {exc}") from None
    if args.device and args.device.upper() not in DEVICES:
        raise UsageError(f"--device {args.device!r}: use one of {', '.join(DEVICES)}")
    if args.threads is not None and args.threads < 0:
        raise UsageError("--threads must be >= 0")
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit {args.limit}: must be >= 1 (omit it to render every selected item)")
    from blender_scripts import compat

    try:  # values this Blender cannot honour, even with a fallback: before any work
        compat.check_config(cfg)
    except compat.UnsupportedSetting as exc:
        raise UsageError(f"config {args.config or 'configs/default.toml'}: {exc}") from None
    from datagen.poses.tables import ensure_tables

    # The command the "cache missing" message suggests must build the cache this run reads.
    import shlex

    config_arg = shlex.quote(args.config or "configs/default.toml")
    if args.cache:
        config_arg += f" --cache {shlex.quote(str(args.cache))}"
    try:
        tables = ensure_tables(cfg, args.cache, can_build=not in_blender_binary(), config_arg=config_arg)
    except PreparedMissing as exc:
        raise UsageError(str(exc)) from None
    except ConfigError as exc:  # a value only the hand model can check (e.g. the forearm's length)
        raise UsageError(f"config: {exc}") from None
    views = views_for(cfg.cameras, tables)
    if args.prepare_only:
        return cfg, tables, views, None, None, None, None
    try:
        hdris, warnings = discover(cfg.hdri.sources, REPO_ROOT)
    except HdriError as exc:
        raise UsageError(str(exc)) from None
    backgrounds = []
    if cfg.backgrounds.share > 0:  # every image decoded before any rendering (by the driver for its workers)
        from datagen.scene.backgrounds import BackgroundError
        from datagen.scene.backgrounds import discover as discover_backgrounds

        try:
            backgrounds, bg_warnings = discover_backgrounds(cfg.backgrounds.sources, REPO_ROOT, check=not args.stdin)
        except BackgroundError as exc:
            raise UsageError(str(exc)) from None
        warnings = warnings + bg_warnings
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    n_p, n_v = tables.n_poses, len(views)
    try:
        if args.stdin:
            items = None
        elif args.items_file:
            items = read_items_file(args.items_file, n_p, n_v)
            if args.shard:
                from datagen.render.selection import parse_shard, shard_slice

                items = shard_slice(items, *parse_shard(args.shard))
        else:
            items = select(n_p, n_v, args.poses, args.views, args.shard)
    except SelectionError as exc:
        raise UsageError(str(exc)) from None
    if not args.out:
        raise UsageError("--out RENDER_DIR is required")
    out = Path(args.out)
    try:
        check_writable(out)
    except RenderDirError as exc:
        raise UsageError(str(exc)) from None
    return cfg, tables, views, hdris, warnings, items, backgrounds


def protocol_reply(obj: dict) -> None:
    """One protocol line on stdout (worker mode); BrokenPipeError/OSError when the driver is gone."""
    sys.stdout.write(PROTOCOL_PREFIX + json.dumps(obj) + "\n")
    sys.stdout.flush()


def usage_error(args, msg: str) -> int:
    """Report a bad input (exit 2): on stderr, and in worker mode also on the protocol, so the
    driver can show it even when the worker's log cannot be written (a full disk)."""
    say(f"error: {msg}")
    if getattr(args, "stdin", False):
        try:
            protocol_reply({"status": "error", "fatal": True, "error": msg})
        except (OSError, ValueError):
            pass
    return 2


def check_framing(cfg, tables, views, items, allow: bool) -> None:
    """Refuse (UsageError) items whose camera crops the hand (with `allow`, warn instead) and
    items whose view leaves the per-item arm no way out (datagen.scene.arm.arm_problem)."""
    from datagen.cameras.framing import framing_problem

    from datagen.scene.arm import arm_problem

    stuck = arm_problem(cfg, tables, views, items)  # not overridable: such items cannot render
    if stuck:
        raise UsageError(stuck)
    problem = framing_problem(tables, views, items, cfg.cameras.sampler)
    if problem is None:
        return
    if not allow:
        raise UsageError(problem + "; or pass --allow-cropped to render them anyway")
    say(f"warning: {problem} (rendering anyway: --allow-cropped)")


def main(argv: list[str] | None = None) -> int:
    from datagen.console import setup_logging

    setup_logging(verbose=False)
    args = build_parser().parse_args(script_args(argv))
    try:
        cfg, tables, views, hdris, warnings, items, backgrounds = setup(args)
    except UsageError as exc:
        return usage_error(args, str(exc))
    if args.prepare_only:
        print(f"prepared tables ready: {tables.hand_file} {tables.poses_file}")
        return 0
    out = Path(args.out)
    from datagen.scene.hdri import HdriError

    from blender_scripts.scene import SceneRenderer

    todo = None
    if items is not None:
        todo = [(p, v) for p, v in items if not is_done(out, p, v)]
        skipped = len(items) - len(todo)
        if args.limit is not None:
            todo = todo[: args.limit]
        print(f"{len(items)} items selected, {skipped} already done, {len(todo)} to render -> {out}",
              file=sys.stderr, flush=True)
        try:
            check_framing(cfg, tables, views, todo, args.allow_cropped)
        except UsageError as exc:
            return usage_error(args, str(exc))
    try:
        renderer = SceneRenderer(cfg, tables, views, hdris, device=args.device, threads=args.threads,
                                 fsync=args.fsync, backgrounds=backgrounds)
        write_run_files(out, run_record(cfg, tables, views, hdris, warnings, renderer), tables, views, args.fsync)
    except atomic.WriteError as exc:  # the run files do not fit: nothing can be rendered here
        return usage_error(args, str(exc))
    except (HdriError, UsageError, RuntimeError, ValueError) as exc:
        return usage_error(args, str(exc))
    for folder in {out / "items" / f"{p:05d}" for p, _ in (todo or [])} | {out, out / "meshes"}:
        atomic.remove_stale_temps(folder)

    if args.stdin:
        return serve_stdin(cfg, renderer, tables, views, out, args)
    failures = Failures(out)
    progress = Progress(len(todo), enabled=not args.no_progress)
    rendered = 0
    t_start = time.time()
    interrupted = False
    stopped = None
    # Within a pose, group items by HDRI: switching the environment costs Cycles an
    # importance-map rebuild, the order does not change any item (each has its own seed).
    specs = sorted((renderer.spec(p, v) for p, v in todo),
                   key=lambda s: (s.pose_id, s.hdri_index, s.view_id))
    try:
        for spec in specs:
            p, v = spec.pose_id, spec.view_id
            try:
                with quiet_stdout(not args.verbose):
                    renderer.render_item(spec, out)
                rendered += 1
                progress.update(f"pose {p} view {v}")
            except KeyboardInterrupt:
                raise
            except atomic.DiskFullError as exc:  # every further item would fail the same way: stop
                failures.log(spec, exc)
                stopped = str(exc)
                progress.update("failed")
                break
            except Exception as exc:  # noqa: BLE001 - log, continue with the next item
                msg = failures.log(spec, exc)
                say(f"\nitem pose {p} view {v} failed: {msg}")
                progress.update("failed")
    except KeyboardInterrupt:
        interrupted = True
    finally:
        progress.close()
    dt = time.time() - t_start
    say(f"summary: rendered={rendered} skipped={skipped} failed={failures.count}"
        f"{' interrupted' if interrupted else ''}{' stopped' if stopped else ''} in {dt:.1f}s"
        f"{f' ({dt / rendered:.2f} s/item)' if rendered else ''}"
        f"{f'; see {failures.path}' if failures.count and not stopped else ''}")
    if stopped:
        say(f"error: {stopped}")
        say(f"stopped after {rendered} item(s); {len(specs) - rendered} not rendered - run the same command again "
            f"once there is space (finished items are kept, the rest is rendered)")
    if interrupted:
        return 130
    return 1 if failures.count else 0


class DriverGone(Exception):
    """The driver closed our stdout (it was killed): nobody reads the answers any more."""


def serve_stdin(cfg, renderer, tables, views, out: Path, args) -> int:
    """Worker mode: one item per stdin line, one protocol line per item on stdout.

    An item's answer is sent after its files are written and outside the item's error
    handling: a driver that died meanwhile (broken pipe) ends the worker quietly and never
    turns a finished item into a "failure".  A full disk answers "failed" with "stop": true
    and ends the worker (status 1): the driver stops the job instead of retrying.
    """
    failures = Failures(out)
    n_p, n_v = tables.n_poses, len(views)
    counts = {"rendered": 0, "skipped": 0, "failed": 0}
    framing_ok: set[tuple[int, int]] = set()

    def reply(obj):
        try:
            protocol_reply(obj)
        except (OSError, ValueError):
            raise DriverGone() from None

    try:
        reply({"status": "ready", "n_poses": n_p, "n_views": n_v})
        for line in sys.stdin:
            try:
                item = parse_item_line(line, n_p, n_v)
            except SelectionError as exc:
                reply({"status": "error", "error": str(exc), "line": line.strip()})
                continue
            if item is None:
                continue
            p, v = item
            spec = renderer.spec(p, v)
            ids = {"item_id": spec.item_id, "pose_id": p, "view_id": v}
            if is_done(out, p, v):
                counts["skipped"] += 1
                reply(dict(ids, status="skipped"))
                continue
            try:
                if (p, v) not in framing_ok:
                    check_framing(cfg, tables, views, [(p, v)], args.allow_cropped)
                    framing_ok.add((p, v))
                atomic.remove_stale_temps(out / "items" / f"{p:05d}")
                with quiet_stdout(not args.verbose):
                    t = renderer.render_item(spec, out)
            except atomic.DiskFullError as exc:
                counts["failed"] += 1
                failures.log(spec, exc)
                say(f"error: {exc}")
                reply(dict(ids, status="failed", error=str(exc), stop=True))
                reply(dict(status="done", **counts))
                return 1
            except Exception as exc:  # noqa: BLE001 - the item failed; the worker carries on
                counts["failed"] += 1
                reply(dict(ids, status="failed", error=failures.log(spec, exc)))
                continue
            counts["rendered"] += 1
            reply(dict(ids, status="ok", timings=t))
        reply(dict(status="done", **counts))
    except DriverGone:
        # Keep the interpreter from complaining about the dead pipe at exit.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        say(f"driver gone (stdout closed): worker stops after {counts['rendered']} rendered item(s)")
        return 1
    return 1 if counts["failed"] else 0


# Run as a script: see _run_as_script (at the top, so that it guards this file's imports too).
