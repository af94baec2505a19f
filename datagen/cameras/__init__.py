"""Camera samplers (the paper's 216-view hemisphere is one) and the framing report.
`python -m datagen.cameras --report`.
"""
