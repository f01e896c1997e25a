"""Training scripts for the shipped Shapes unCLIP stack: one short, linear script per stage.

`python -m train all` regenerates every shipped weight under `models/`; `python -m train all --smoke`
runs each stage for a few steps on tiny models into a temporary directory (CI runs it).
"""
