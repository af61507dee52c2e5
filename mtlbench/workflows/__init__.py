"""What the commands do beyond training: evaluation with figures and prediction on image files.

These combine the engine (rebuilding a run, evaluating it) with the report (figures); the engine
itself never draws.
"""
