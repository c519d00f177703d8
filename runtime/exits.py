"""Exit statuses the PS, the workers and the launchers agree on."""

# A process whose run a resume from the run's last checkpoint can finish: a step that stalled or that
# TensorFlow's runtime failed, not a user's mistake and not a peer that is gone. (BSD's EX_TEMPFAIL.)
STALLED = 75
