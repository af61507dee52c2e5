"""The workflows the commands run: training (one function for `run` and `ablate`), evaluation with
figures and prediction on image files.

These combine the engine (rebuilding a run, evaluating it) with the report (figures); the engine
itself never draws.
"""
