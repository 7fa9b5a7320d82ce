"""Where the control plane's inputs come from, each behind one interface so the compiler never knows which:
config and policies (`config`), endpoints (`endpoints`)."""
