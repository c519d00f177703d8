"""TensorFlow without Keras: import this module before anything imports tensorflow.

`import tensorflow` (2.21) loads Keras eagerly, and Keras loads scikit-learn: about 2.5 s of the 6–7 s
that every PS, worker and stage process spends starting on a 2-core machine. The project needs Keras only
to download a dataset (MP2_DOWNLOAD=1, through `tf.keras.datasets`); otherwise `keras` is marked as not
importable, TensorFlow skips it (it catches the ImportError) and `tf.keras` is unavailable in the process.
"""
import os
import sys

if os.environ.get("MP2_DOWNLOAD") != "1":  # data.locate.DOWNLOAD_ENV; data is not imported this early
    sys.modules.setdefault("keras", None)
