"""rankset: nested ranked patch sets (Liu et al., CVPR 2018, Algorithm 1), labeled benchmarks, synthetic crowds."""

__version__ = "0.1.0"
