"""The configuration schemas of ``python -m train`` and ``python -m pretrain``.

Every default is the paper's / the released training's value unless the help says "ours"
(see ../shared/reference/mobrecon-network-facts.md and docs/TRAINING.md).
"""
from __future__ import annotations

from .config import Opt

_pos = (lambda v: v > 0), "must be > 0"
_nonneg = (lambda v: v >= 0), "must be >= 0"
_prob = (lambda v: 0 <= v <= 1), "must be in [0, 1]"


def _o(section, key, default, kind, help, check=None, **kw):
    if check is not None:
        kw["check"], kw["check_msg"] = check
    return Opt(section, key, default, kind, help, **kw)


def _fractions_ok(v):
    return len(v) == 3 and all(x >= 0 for x in v) and abs(sum(v) - 1) < 1e-6


DATA = [
    _o("data", "datasets", ["out/dataset"], "strs",
       "packed datasets (OUT_DIR of python -m datagen.pack); several are concatenated", flag="--data",
       metavar="DIR"),
    _o("data", "freihand", "", "str",
       "FreiHAND root in its official layout (training/rgb, training_K.json, ...); \"\" = not used. "
       "Needs datasets packed with --topology mano (same 778-vertex topology)", metavar="DIR"),
    _o("data", "weights", [], "floats",
       "mixing weight per source (the datasets in order, then FreiHAND): each epoch draws "
       "samples_per_epoch * w / sum(w) samples of a source (with replacement only when it is smaller); "
       "empty = concatenate (weight = size)", check=((lambda v: all(x >= 0 for x in v)), "must be >= 0")),
    _o("data", "samples_per_epoch", 0, "int", "samples per epoch; 0 = the sum of the source sizes",
       check=_nonneg),
    _o("data", "split_by", "pose", "str",
       "how our datasets are split: held-out poses, views, both, or whole interpolation chains (pose pairs)",
       choices=("pose", "view", "both", "chain")),
    _o("data", "split_fractions", [0.8, 0.1, 0.1], "floats", "train/val/test fractions of poses (or views)",
       check=(_fractions_ok, "must be three non-negative numbers summing to 1"), metavar="F"),
    _o("data", "split_seed", 0, "int", "seed of the (stable, hash-based) split"),
    _o("data", "train_split", "train", "str", "split of our datasets to train on",
       choices=("train", "val", "test", "all")),
    _o("data", "val_split", "val", "str", "split used for the per-epoch validation",
       choices=("train", "val", "test", "all")),
    _o("data", "freihand_versions", [0, 1, 2, 3], "ints",
       "FreiHAND training image versions to use (0 green screen, 1-3 composited backgrounds)", metavar="V"),
    _o("data", "left_hands", "flip", "str",
       "left-hand samples of our datasets: flip = mirror them into right hands (image about its vertical "
       "centre line, K's principal point, 3D labels x -> -x; MobRecon's convention: the network sees right "
       "hands only), keep = train on them as they are", choices=("flip", "keep")),
    _o("data", "crop_size", 128, "int", "network input size in pixels (the paper: 128)", check=_pos),
    _o("data", "workers", 2, "int", "DataLoader worker processes per training process", check=_nonneg),
]

AUGMENT = [
    _o("augment", "scale", 1.3, "float", "crop side = silhouette bbox side (squared) x scale", check=_pos),
    _o("augment", "scale_jitter", 0.2, "float", "scale drawn uniformly in scale +/- scale_jitter", check=_nonneg),
    _o("augment", "rotation_deg", 90.0, "float", "in-plane rotation drawn uniformly in +/- this", check=_nonneg),
    _o("augment", "rotation_prob", 0.6, "float", "probability of rotating a view", check=_prob),
    _o("augment", "shift", 1.0, "float",
       "centre shift, uniform up to shift x bbox x (scale - 1) / 2 per axis (1 = released setting)",
       check=_nonneg),
    _o("augment", "brightness", 0.3, "float", "colour jitter: brightness factor in 1 +/- this (ours)",
       check=_nonneg),
    _o("augment", "contrast", 0.3, "float", "colour jitter: contrast factor in 1 +/- this (ours)",
       check=_nonneg),
    _o("augment", "saturation", 0.3, "float", "colour jitter: saturation factor in 1 +/- this (ours)",
       check=_nonneg),
    _o("augment", "hue", 0.05, "float", "colour jitter: hue shift in +/- this fraction of the circle (ours)",
       check=_nonneg),
    # Image statistics and sensor effects (ours, off by default; docs/TRAINING.md)
    _o("augment", "amplitude_mix_prob", 0.0, "float",
       "probability that a view's Fourier amplitude is mixed with another sample's crop, its phase kept "
       "(HandSynthesis-style image-statistics augmentation); 0 = off", check=_prob),
    _o("augment", "amplitude_mix_ratio", 0.5, "float",
       "amplitude mixing: the other sample's share drawn uniformly in [0, this]", check=_prob),
    _o("augment", "blur_prob", 0.0, "float", "probability of a Gaussian (lens) blur of a view; 0 = off",
       check=_prob),
    _o("augment", "blur_sigma_px", 1.5, "float", "blur sigma drawn uniformly in [0.3, this] crop pixels",
       check=_pos),
    _o("augment", "noise_prob", 0.0, "float", "probability of sensor noise on a view; 0 = off", check=_prob),
    _o("augment", "noise_sigma", 6.0, "float", "Gaussian read noise: sigma drawn uniformly in [0, this] (0..255 "
       "units)", check=_nonneg),
    _o("augment", "noise_photons", 0.0, "float",
       "Poisson shot noise with this many photons at white before the read noise; 0 = no shot noise",
       check=_nonneg),
    _o("augment", "white_balance", 0.0, "float",
       "white-balance error: per-channel gains in 1 +/- this (luminance kept), every view; 0 = off",
       check=((lambda v: 0 <= v < 1), "must be in [0, 1)")),
    _o("augment", "jpeg_prob", 0.0, "float", "probability of JPEG re-compression of a view; 0 = off", check=_prob),
    _o("augment", "jpeg_quality", [40, 95], "ints", "JPEG quality drawn uniformly in [low, high]",
       check=((lambda v: len(v) == 2 and 1 <= v[0] <= v[1] <= 100), "must be [low, high] within 1..100"),
       metavar="Q"),
]

RUN = [
    _o("run", "out", "out/train", "str", "output folder: checkpoints, TensorBoard logs, config, metrics",
       metavar="DIR"),
    _o("run", "seed", 0, "int", "seed of initialisation, data order and augmentation"),
    _o("run", "device", "cpu", "str", "torch device: cpu, cuda, cuda:1, ... (DDP: one process per GPU)"),
    _o("run", "threads", 0, "int", "torch CPU threads per process; 0 = torch's default", check=_nonneg),
    _o("run", "resume", "", "str",
       "checkpoint to resume exactly (model, optimiser, scheduler, RNG, data position); "
       "\"auto\" = OUT/last.pt if it exists", metavar="CKPT"),
    _o("run", "log_every", 20, "int", "steps between TensorBoard scalar logs", check=_pos),
    _o("run", "checkpoint_every", 500, "int",
       "steps between mid-epoch checkpoints (OUT/last.pt; always written at epoch end); 0 = epoch ends only",
       check=_nonneg),
    _o("run", "val_every", 1, "int", "epochs between validations; 0 = never", check=_nonneg),
    _o("run", "val_max", 512, "int", "at most this many validation samples (0 = all)", check=_nonneg),
    _o("run", "max_steps", 0, "int",
       "stop after this many steps in total (the schedule is unchanged; for smoke runs); 0 = no limit",
       check=_nonneg),
    _o("run", "progress", True, "bool", "show progress bars"),
    _o("run", "progress_every_s", 30.0, "float",
       "without progress bars (--no-progress, logs): seconds between progress lines; 0 = silent", check=_nonneg),
]

TRAIN_SCHEMA = DATA + AUGMENT + [
    _o("model", "encoder", "densestack", "str", "2D encoder", choices=("densestack", "ghoststack")),
    _o("model", "decoder", "dsconv", "str", "3D decoder: MobRecon's DSConv or the SpiralConv++ baseline",
       choices=("dsconv", "spiralpp")),
    _o("model", "pretrained", "", "str",
       "encoder checkpoint from python -m pretrain (OUT/encoder.pt) to initialise the encoder", metavar="CKPT"),
    _o("model", "load_mapreg", True, "bool", "also initialise the MapReg 2D head from the pretrained checkpoint"),
    _o("model", "template_offset", False, "bool",
       "ours, not in the paper: the decoder predicts offsets from the root-relative rest template instead of "
       "absolute coordinates, so an untrained network already outputs the rest hand (off = the paper's decoder; "
       "on the demo's short schedule it measured no better, docs/TRAINING.md)"),
    _o("loss", "mesh", 1.0, "float", "L1 on root-relative vertices (units of 0.2 m), per view", check=_nonneg),
    _o("loss", "pose2d", 1.0, "float", "L1 on 2D joints (crop pixels / crop size), per view", check=_nonneg),
    _o("loss", "normal", 0.05, "float", "normal loss per view (two views)", check=_nonneg),
    _o("loss", "edge", 0.5, "float", "edge-length loss per view (two views)", check=_nonneg),
    _o("loss", "normal_one_view", 0.1, "float", "normal loss weight when consistency is off (one view)",
       check=_nonneg),
    _o("loss", "edge_one_view", 1.0, "float", "edge-length loss weight when consistency is off (one view)",
       check=_nonneg),
    _o("loss", "con3d", 1.0, "float", "3D consistency |R12 V1 - V2|_1 between the two views", check=_nonneg),
    _o("loss", "con2d", 1.0, "float", "2D consistency |T12 uv1 - uv2|_1 between the two views", check=_nonneg),
    _o("loss", "consistency", True, "bool", "two augmented views per image with con2D/con3D (off: one view)"),
    _o("loss", "consistency_from_epoch", 5, "int", "epoch (0-based) from which con2D/con3D are on",
       check=_nonneg),
    _o("optim", "epochs", 38, "int", "training epochs", check=_pos),
    _o("optim", "batch_size", 32, "int", "images per step per process (each gives two views)", check=_pos),
    _o("optim", "lr", 1e-3, "float", "Adam learning rate", check=_pos),
    _o("optim", "milestones", [30], "ints", "epochs at which the learning rate is multiplied by gamma",
       metavar="EPOCH"),
    _o("optim", "gamma", 0.1, "float", "learning-rate factor at each milestone", check=_pos),
    _o("optim", "weight_decay", 0.0, "float", "Adam weight decay", check=_nonneg),
    _o("optim", "grad_clip", 0.0, "float", "clip the gradient norm to this; 0 = off", check=_nonneg),
] + RUN

PRETRAIN_SCHEMA = DATA + AUGMENT + [
    _o("model", "encoder", "densestack", "str", "2D encoder to pretrain", choices=("densestack", "ghoststack")),
    _o("loss", "heatmap", 1.0, "float",
       "heatmap loss on MapReg's 21 maps (16x16): squared error summed over the map, mean over joints",
       check=_nonneg),
    _o("loss", "pose2d", 1.0, "float", "L1 on MapReg's positions (crop pixels / crop size)", check=_nonneg),
    _o("loss", "heatmap_sigma", 1.0, "float", "Gaussian heatmap sigma in map cells (1 cell = crop/16 px)",
       check=_pos),
    _o("optim", "epochs", 80, "int", "pretraining epochs", check=_pos),
    _o("optim", "batch_size", 128, "int", "images per step per process", check=_pos),
    _o("optim", "lr", 1e-3, "float", "Adam learning rate", check=_pos),
    _o("optim", "milestones", [20, 40, 60], "ints", "epochs at which the learning rate is divided by 1/gamma",
       metavar="EPOCH"),
    _o("optim", "gamma", 0.1, "float", "learning-rate factor at each milestone", check=_pos),
    _o("optim", "weight_decay", 0.0, "float", "Adam weight decay", check=_nonneg),
    _o("optim", "grad_clip", 0.0, "float", "clip the gradient norm to this; 0 = off", check=_nonneg),
] + [o if o.key != "out" else _o("run", "out", "out/pretrain", "str",
                                  "output folder: checkpoints (encoder.pt for python -m train), logs",
                                  metavar="DIR") for o in RUN]
