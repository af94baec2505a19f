"""Hand models behind one interface (`HandModel`) and the dense, capped mesh built on them."""

from .base import FINGERS, KEYPOINT_NAMES, HandModel, HandRig, forward_kinematics

HAND_MODELS = ("anny",)


def load_hand_model(name: str = "anny", phenotype: dict[str, float] | None = None) -> HandModel:
    """Instantiate a registered hand model by name."""
    if name == "anny":
        from .anny_hand import AnnyHand

        return AnnyHand(phenotype)
    raise ValueError(f"unknown hand model {name!r}; known: {', '.join(HAND_MODELS)}")


__all__ = ["FINGERS", "KEYPOINT_NAMES", "HandModel", "HandRig", "forward_kinematics", "load_hand_model"]
