"""The GPU window's parts. device/window.py (the one command a session runs) calls them in this order:

  data.py      1. unpack the carried CIFAR-10 JPEG copy, describe the machine (env.txt)
  keep.py      2. a second call of the session takes over the runs the first call kept ...
  plan.py         ... else the plan: the speed matrix, or an earlier window's plan checked on this machine
  seeds.py        ... and seeds no earlier window trained at the plan's precision
  train.py     3. train the set (fused, on CUDA streams, or as concurrent processes) with its fallbacks
  pack.py      4. pack runs, logs and speed table into $OUT/window.tar.gz; keep the runs for a later call

Shared by them: settings.py (the environment's settings, each with its default, checked first), call.py (one
call's state: scratch folders, log, summary, the children it runs), files.py (reading back the small files windows
write: plan.env, keep.env, speed.json, status.json; plan.env's keys and the default plan). preview.py says what a
window started now would train (device/prepare.sh).
Only the standard library: the device's python3 beside its preinstalled torch runs them.
"""
