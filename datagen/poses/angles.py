"""The joint-angle tables of the two finger states (standard library only).

They are anatomical angles (datagen.poses.construction explains the conventions), but how far
a given rig can bend before its skin folds into itself depends on the rig, so a hand model may
bring its own `PoseAngles` (datagen.hand.register_hand_model(pose_angles=...)).  The default
tables below were tuned on the anny hand.  This module imports nothing heavy: a hand model's
registration - which Blender's Python imports too - may build a `PoseAngles`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FINGER_NAMES = ("index", "middle", "ring", "little")

# Anatomical flexion angles in degrees, proximal to distal.
EXTENDED = {f: (0.0, 0.0, 0.0) for f in FINGER_NAMES}
BENT = {
    "index": (65.0, 85.0, 65.0),
    "middle": (70.0, 95.0, 70.0),
    "ring": (75.0, 85.0, 70.0),
    "little": (65.0, 80.0, 60.0),
}
# Thumb (degrees): CMC flexion, CMC palmar abduction and CMC axial rotation (about the
# metacarpal's long axis, right-hand rule), relative to the rest pose; MCP and IP flexion,
# anatomical like the fingers' (0 = straight).  The bent thumb folds across the front of the
# fist, over the middle phalanges of the bent index and middle fingers, like a real fist -
# with 3.8 mm of clearance: the interpolated poses in which a finger bends while the thumb
# stays bent move that finger's middle phalanx outwards through the thumb's place, and the
# clearance is the smallest that keeps all of them under 1 mm (found by search; docs/POSES.md).
THUMB_EXTENDED = (0.0, 0.0, 0.0, 0.0, 0.0)
THUMB_BENT = (45.0, 25.0, -20.0, 40.0, 60.0)
# Human active range limits used to validate the tables (degrees).
LIMITS = {"mcp": 90.0, "pip": 110.0, "dip": 80.0, "thumb_mcp": 60.0, "thumb_ip": 80.0}


@dataclass(frozen=True)
class PoseAngles:
    """The extended and bent state of every finger (degrees; see the tables above)."""

    extended: dict[str, tuple[float, float, float]] = field(default_factory=lambda: dict(EXTENDED))
    bent: dict[str, tuple[float, float, float]] = field(default_factory=lambda: dict(BENT))
    thumb_extended: tuple[float, ...] = THUMB_EXTENDED
    thumb_bent: tuple[float, ...] = THUMB_BENT

    def __post_init__(self):
        for name in ("extended", "bent"):
            table = getattr(self, name)
            if set(table) != set(FINGER_NAMES) or any(len(v) != 3 for v in table.values()):
                raise ValueError(f"PoseAngles.{name} needs (MCP, PIP, DIP) degrees for each of {FINGER_NAMES}, "
                                 f"got {table!r}")
        for name in ("thumb_extended", "thumb_bent"):
            if len(getattr(self, name)) != 5:
                raise ValueError(f"PoseAngles.{name} needs 5 angles (CMC flexion, abduction, rotation, MCP, IP)")

    def key(self) -> dict:
        """What the prepared-cache key hashes (the same payload the tables always had)."""
        return {"extended": self.extended, "bent": self.bent, "thumb": [self.thumb_extended, self.thumb_bent]}


DEFAULT_ANGLES = PoseAngles()

# Pose families beyond the paper's construction (datagen.poses.families), in id order: a
# config's `[poses.families]` table lists some of them with a number of poses each, and their
# ids follow the paper's in this order whatever order the file lists them in.
FAMILY_NAMES = ("curl", "spread", "pinch", "grasp")
