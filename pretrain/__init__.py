"""2D pose pretraining of MobRecon's encoder (supplement Sec. 6, Fig. 14): ``python -m pretrain``.

The stacked encoder and MapReg learn 2D joints with heatmap supervision on MapReg's 21 maps
and position supervision on its regressed uv.  The result, ``OUT/encoder.pt``, initialises
``python -m train --pretrained OUT/encoder.pt``.
"""
